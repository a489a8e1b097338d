// The epoch's four Modbus registers (src/devices/modbus/point-map.ts): encoded and decoded with
// plain arithmetic, word for word and value for value what the 64-bit integer arithmetic of BigInt
// gives, at the edges (2^32, 2^53, 2^64) and for random words.
import { describe, expect, it } from 'vitest';
import {
  COMMAND_BLOCK_LEN,
  COMMAND_OFFSET,
  decodeCommand,
  decodeStatus,
  encodeCommand,
  encodeStatus,
  STATUS_OFFSET,
} from '../../src/devices/modbus/point-map.ts';

const refWords = (n: number) => [48n, 32n, 16n, 0n].map((s) => Number((BigInt(n) >> s) & 0xffffn));
const refValue = (w: readonly number[]) => Number(w.reduce((b, x) => (b << 16n) | BigInt(x), 0n));

const status = (epoch: number) =>
  encodeStatus({
    mode: 'remote',
    fanPct: 50,
    supplySetpointC: 18,
    supplyC: 18,
    returnC: 26,
    cwValvePct: 40,
    alarms: 0,
    epoch,
    heartbeat: 1,
    fanKw: 1,
    coolingKw: 10,
    watchdogS: 30,
    localSetpointC: 18,
  });

const commandWords = (epoch: number) =>
  encodeCommand({ epoch, heartbeat: 7, remoteEnable: true, fanPct: 55, supplySetpointC: 18.5 }).slice(
    COMMAND_OFFSET.epoch,
    COMMAND_OFFSET.epoch + 4,
  );

function commandBlock(words: readonly number[]): number[] {
  const regs = new Array<number>(COMMAND_BLOCK_LEN).fill(0);
  regs.splice(COMMAND_OFFSET.epoch, 4, ...words);
  return regs;
}

describe('epoch registers', () => {
  const edges = [0, 1, 0xffff, 0x10000, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 48, 2 ** 53 - 1];

  it('encodes a command epoch as BigInt would, and decodes it back', () => {
    for (const e of edges) {
      expect(commandWords(e)).toEqual(refWords(e));
      expect(
        decodeCommand(
          encodeCommand({ epoch: e, heartbeat: 0, remoteEnable: false, fanPct: 0, supplySetpointC: 0 }),
        ).epoch,
      ).toBe(e);
    }
  });

  it('encodes a status epoch past 2^53, and wraps past 2^64, as a u64 would', () => {
    for (const e of [...edges, 2 ** 53, 2 ** 60 + 2 ** 20, 2 ** 64 - 2 ** 11, 2 ** 64, 2 ** 64 + 2 ** 12])
      expect(status(e).slice(STATUS_OFFSET.epoch, STATUS_OFFSET.epoch + 4)).toEqual(refWords(e));
  });

  it('decodes any four words to the nearest double, rounding as Number(BigInt) does', () => {
    const words: number[][] = [
      [0x1f, 0xffff, 0xffff, 0xffff], // 2^53 − 1
      [0x20, 0, 0, 0], // 2^53
      [0x20, 0, 0, 1], // 2^53 + 1: a tie, to even (2^53)
      [0x20, 0, 0, 3], // 2^53 + 3: a tie, to even (2^53 + 4)
      [0xffff, 0xffff, 0xffff, 0xffff], // 2^64 − 1 → 2^64
    ];
    let seed = 12345;
    const next = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % 0x10000;
    };
    for (let i = 0; i < 5000; i++)
      words.push([next() % (i % 3 === 0 ? 0x40 : 0x10000), next(), next(), next()]);
    for (const w of words) {
      const ref = refValue(w);
      expect(decodeCommand(commandBlock(w)).epoch).toBe(ref);
      const regs = status(0);
      regs.splice(STATUS_OFFSET.epoch, 4, ...w);
      expect(decodeStatus(regs).epoch).toBe(ref);
    }
  });

  it('still refuses a command epoch that is not a safe integer', () => {
    for (const e of [-1, 1.5, 2 ** 53, Number.NaN])
      expect(() =>
        encodeCommand({ epoch: e, heartbeat: 0, remoteEnable: true, fanPct: 0, supplySetpointC: 0 }),
      ).toThrow(RangeError);
  });
});
