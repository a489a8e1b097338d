// Rooms small enough to work out by hand (docs/thermal-model.md): the thermal, plant and
// influence tests check the model against numbers computed on paper from these sites.
import type { ThermalModel } from '../../firmware-sim/thermal/model.ts';
import type { Site } from '../../src/config/site-schema.ts';

type AirHandler = Site['airHandlers'][number];

/** A 40 kW, 2 m³/s unit at (xM, 5) of room `r`. */
export function labUnit(id: string, xM: number, overrides: { capacityKw?: number } = {}): AirHandler {
  return {
    id,
    room: 'r',
    xM,
    yM: 5,
    capacityKw: overrides.capacityKw ?? 40,
    maxAirflowM3s: 2,
    fanMaxKw: 1.5,
    localSetpointC: 18,
    localFanPct: 100,
    watchdogS: 30,
    supplyTauS: 60,
    protocol: 'modbus-tcp',
    endpoint: { host: '127.0.0.1', port: 0, unitId: 1 },
  } as AirHandler;
}

/** A 10 × 10 m room with the given units and 10 kW / 0.8 m³/s racks at (xM, 5). */
export function labRoom(name: string, units: AirHandler[], rackXs: Record<string, number>): Site {
  return {
    site: { id: 'lab', name, supplyAirDewPointC: 8, subfloorPressurePaPerM3s: 12 },
    rooms: [{ id: 'r', widthM: 10, depthM: 10 }],
    racks: Object.entries(rackXs).map(([id, xM]) => ({
      id,
      room: 'r',
      row: 'a',
      xM,
      yM: 5,
      itLoadKw: 10,
      airflowM3s: 0.8,
    })),
    airHandlers: units,
    gateways: [{ id: 'g', topicPrefix: 'coolctl/sim' }],
    sensorNodes: [],
    controlGroups: [],
  } as Site;
}

/** One rack at the room's centre, one unit 4 m from it. */
export function oneRackRoom(overrides: { capacityKw?: number } = {}): Site {
  return labRoom('one rack', [labUnit('A1', 1, overrides)], { R1: 5 });
}

/** Runs the model `seconds` in 5 s steps (an hour by default: steady for these rooms). */
export function settle(m: ThermalModel, seconds = 3600): void {
  for (let t = 0; t < seconds; t += 5) m.step(5);
}
