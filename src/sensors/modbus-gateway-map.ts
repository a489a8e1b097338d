// The register map of a Modbus TCP sensor gateway (one slave id per node, as Packet Power gateways
// do), shared by the simulator's gateway and the controller's poller: plain data and pure functions.
// Documented in docs/sensor-ingest.md. Holding registers (FC3; FC4 gives the same words) from 0.

export const NODE_HEADER_LEN = 7;
/** A sensor slot with no reading (a dead sensor, or no report yet). */
export const NO_VALUE = 0x8000;
/** Age register value when the gateway has heard nothing from the node since it started. */
export const AGE_NEVER = 0xffff;
export const VALUE_SCALE = 100;

export const NODE_OFFSET = {
  seqHigh: 0,
  seqLow: 1,
  /** Seconds since the gateway received the node's latest report (saturates at 65534). */
  ageS: 2,
  /** Battery % × 10. */
  battery: 3,
  /** RSSI dBm, signed. */
  rssi: 4,
  hops: 5,
  sensorCount: 6,
  /** First sensor slot: value × 100, signed, in the node's configured sensor order. */
  values: 7,
} as const;

export interface NodeRegisters {
  seq: number;
  ageS: number | null;
  batteryPct: number;
  rssiDbm: number;
  hops: number;
  /** One per configured sensor, null where there is no reading. */
  values: (number | null)[];
}

export function encodeNode(n: NodeRegisters): number[] {
  const i16 = (x: number) => Math.max(-0x8000 + 1, Math.min(0x7fff, Math.round(x))) & 0xffff;
  return [
    (n.seq >>> 16) & 0xffff,
    n.seq & 0xffff,
    n.ageS === null ? AGE_NEVER : Math.min(AGE_NEVER - 1, Math.max(0, Math.floor(n.ageS))),
    Math.max(0, Math.min(1000, Math.round(n.batteryPct * 10))),
    i16(n.rssiDbm),
    Math.max(0, Math.min(0xffff, n.hops)),
    n.values.length,
    ...n.values.map((v) => (v === null || !Number.isFinite(v) ? NO_VALUE : i16(v * VALUE_SCALE))),
  ];
}

/** Decodes a node's block; throws RangeError when it is not one (wrong length, sensor count). */
export function decodeNode(regs: readonly number[]): NodeRegisters {
  if (regs.length < NODE_HEADER_LEN)
    throw new RangeError(`node block is at least ${NODE_HEADER_LEN} registers, got ${regs.length}`);
  const at = (i: number): number => {
    const v = regs[i];
    if (v === undefined || !Number.isInteger(v) || v < 0 || v > 0xffff)
      throw new RangeError(`register ${i} is ${v}, not a word`);
    return v;
  };
  const count = at(NODE_OFFSET.sensorCount);
  if (regs.length !== NODE_HEADER_LEN + count) {
    throw new RangeError(`node block says ${count} sensors but has ${regs.length - NODE_HEADER_LEN} slots`);
  }
  const s16 = (w: number) => (w >= 0x8000 ? w - 0x10000 : w);
  const age = at(NODE_OFFSET.ageS);
  return {
    seq: at(NODE_OFFSET.seqHigh) * 0x10000 + at(NODE_OFFSET.seqLow),
    ageS: age === AGE_NEVER ? null : age,
    batteryPct: at(NODE_OFFSET.battery) / 10,
    rssiDbm: s16(at(NODE_OFFSET.rssi)),
    hops: at(NODE_OFFSET.hops),
    values: Array.from({ length: count }, (_, i) => {
      const w = at(NODE_OFFSET.values + i);
      return w === NO_VALUE ? null : s16(w) / VALUE_SCALE;
    }),
  };
}
