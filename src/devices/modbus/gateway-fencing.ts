// The wire format of the fencing gateway (`coolctl gateway`, docs/fencing-gateway.md), one owner for
// both ends: the controller encodes a fenced write and decodes the epoch block with it, the gateway
// decodes the write and encodes the block with it. Pure functions, no sockets.
// Invariant: a fenced write is ONE Modbus request — an FC16 to the unit's write window carrying the
// epoch, the target function, address, count and values — so nothing can come between the epoch
// check and the write it guards. Epochs are u64 on the wire (most significant word first).

/** Registers per unit id that the gateway answers itself, never forwarded (holding registers). */
export const GATEWAY_FENCE = {
  /** Format version in the epoch block; a controller refuses a gateway that says another. */
  wireVersion: 1,
  /** Default first register of the window; configurable (`fenceBase`) when a unit uses it. */
  defaultBase: 0xf000,
  /** base+0..3 epoch (u64), +4 wire version, +5 largest count per write, +6..7 zero. Read with FC3. */
  epochBlockLen: 8,
  /** The write window: an FC16 that starts exactly at base + 8. */
  writeOffset: 8,
  /** epoch (4 words), target function, target address, count. */
  headerLen: 7,
  /** FC16 carries at most 123 registers; the header takes 7. */
  maxValues: 123 - 7,
} as const;

/** The writes a gateway forwards: single/multiple coils, single/multiple holding registers. */
export const FENCED_FUNCTIONS = [5, 6, 15, 16] as const;
export type FencedFunction = (typeof FENCED_FUNCTIONS)[number];

const U64_MAX = (1n << 64n) - 1n;

/** One write to a unit behind the gateway, fenced by `epoch`. Coil values are 0 or 1, one per register. */
export interface FencedWrite {
  epoch: bigint;
  fc: FencedFunction;
  address: number;
  values: number[];
}

/** What the gateway reports for a unit id: the highest epoch it accepted, and its wire version. */
export interface EpochBlock {
  epoch: bigint;
  wireVersion: number;
  maxValues: number;
}

/** Why a window request is not a fenced write: which Modbus exception answers it, and why. */
export interface FenceDecodeError {
  exception: 0x02 | 0x03;
  reason: string;
}

/** Registers of the FC16 that carries `w`, to be written at `writeAddress(base)`. Throws RangeError on a write that cannot be carried. */
export function encodeFencedWrite(w: {
  epoch: number | bigint;
  fc: FencedFunction;
  address: number;
  values: readonly number[];
}): number[] {
  const epoch = toEpoch(w.epoch);
  const problem = checkTarget(w.fc, w.address, w.values);
  if (problem) throw new RangeError(problem.reason);
  return [...u64Words(epoch), w.fc, w.address, w.values.length, ...w.values];
}

/** The address the fenced FC16 starts at. */
export function writeAddress(base: number = GATEWAY_FENCE.defaultBase): number {
  return base + GATEWAY_FENCE.writeOffset;
}

/** The gateway's side: the FC16 registers written to the window, as a fenced write or why not. */
export function decodeFencedWrite(words: readonly number[]): FencedWrite | FenceDecodeError {
  if (words.length < GATEWAY_FENCE.headerLen + 1) {
    return {
      exception: 0x03,
      reason: `a fenced write is ${GATEWAY_FENCE.headerLen} header registers and at least one value, got ${words.length}`,
    };
  }
  if (!words.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffff)) {
    return { exception: 0x03, reason: 'registers must be 16-bit words' };
  }
  const epoch = fromU64Words(words, 0);
  const fc = words[4]!;
  const address = words[5]!;
  const count = words[6]!;
  const values = words.slice(GATEWAY_FENCE.headerLen);
  if (!(FENCED_FUNCTIONS as readonly number[]).includes(fc)) {
    return {
      exception: 0x03,
      reason: `target function ${fc} is not a write the gateway forwards (5, 6, 15, 16)`,
    };
  }
  if (count !== values.length) {
    return { exception: 0x03, reason: `count ${count} does not match the ${values.length} values carried` };
  }
  const problem = checkTarget(fc as FencedFunction, address, values);
  if (problem) return problem;
  return { epoch, fc: fc as FencedFunction, address, values };
}

/** The gateway's side: the 8 registers of a unit's epoch block. */
export function encodeEpochBlock(epoch: bigint): number[] {
  return [...u64Words(epoch), GATEWAY_FENCE.wireVersion, GATEWAY_FENCE.maxValues, 0, 0];
}

/** The controller's side: the epoch block read back (FC3 of 8 registers at the base); throws RangeError when it is not one. */
export function decodeEpochBlock(words: readonly number[]): EpochBlock {
  if (
    words.length !== GATEWAY_FENCE.epochBlockLen ||
    !words.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffff)
  ) {
    throw new RangeError(
      `an epoch block is ${GATEWAY_FENCE.epochBlockLen} 16-bit registers, got [${words.join(',')}]`,
    );
  }
  const wireVersion = words[4]!;
  if (wireVersion !== GATEWAY_FENCE.wireVersion) {
    throw new RangeError(
      `the gateway speaks fencing wire version ${wireVersion}, this controller ${GATEWAY_FENCE.wireVersion} (upgrade one of them)`,
    );
  }
  return { epoch: fromU64Words(words, 0), wireVersion, maxValues: words[5]! };
}

/** An epoch as the wire carries it; a number must be a safe non-negative integer. */
export function toEpoch(epoch: number | bigint): bigint {
  if (typeof epoch === 'number') {
    if (!Number.isSafeInteger(epoch) || epoch < 0)
      throw new RangeError(`epoch ${epoch} must be a non-negative safe integer`);
    return BigInt(epoch);
  }
  if (epoch < 0n || epoch > U64_MAX) throw new RangeError(`epoch ${epoch} does not fit 64 bits`);
  return epoch;
}

function checkTarget(
  fc: FencedFunction,
  address: number,
  values: readonly number[],
): FenceDecodeError | undefined {
  if (!(FENCED_FUNCTIONS as readonly number[]).includes(fc)) {
    return { exception: 0x03, reason: `target function ${fc} is not one of 5, 6, 15, 16` };
  }
  const n = values.length;
  const single = fc === 5 || fc === 6;
  if (single ? n !== 1 : n < 1 || n > GATEWAY_FENCE.maxValues) {
    return {
      exception: 0x03,
      reason: `function ${fc} writes ${single ? 'exactly 1 value' : `1..${GATEWAY_FENCE.maxValues} values`}, got ${n}`,
    };
  }
  if (!Number.isInteger(address) || address < 0 || address + n > 0x10000) {
    return { exception: 0x02, reason: `target address ${address} + ${n} values runs past 65535` };
  }
  const coils = fc === 5 || fc === 15;
  for (const v of values) {
    if (!Number.isInteger(v) || v < 0 || v > (coils ? 1 : 0xffff)) {
      return {
        exception: 0x03,
        reason: `value ${v} is not ${coils ? 'a coil state (0 or 1)' : 'a 16-bit word'}`,
      };
    }
  }
  return undefined;
}

function u64Words(b: bigint): number[] {
  return [48n, 32n, 16n, 0n].map((shift) => Number((b >> shift) & 0xffffn));
}

function fromU64Words(words: readonly number[], off: number): bigint {
  let b = 0n;
  for (let i = 0; i < 4; i++) b = (b << 16n) | BigInt(words[off + i]!);
  return b;
}
