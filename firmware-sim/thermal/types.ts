// What the thermal model offers the rest of the simulator: the climate at a rack (read by the
// sensor mesh) and the state of each AHU's air side (read back by the AHU device servers).

/** True physical values at one rack's front (before any sensor noise or fault). */
export interface RackClimate {
  inletTopC: number;
  inletMiddleC: number;
  inletBottomC: number;
  relativeHumidityPct: number;
  /** Subfloor static pressure under the rack's tile, Pa. */
  subfloorPa: number;
}

/** Reads the current climate at a rack; throws for an unknown rack id. */
export type RackClimateReader = (rackId: string) => RackClimate;
