// The fencing gateway's wire format, pure: what the controller encodes is what the gateway decodes
// (every target function, the limits, u64 epochs), the gateway turns it into the plain write the
// unit gets, and a window write that is not a fenced write is refused with the exception a
// controller can act on. The same encoding against the real gateway and an independent Modbus
// server is in gateway.test.ts.
import { describe, expect, it } from 'vitest';
import {
  decodeEpochBlock,
  decodeFencedWrite,
  encodeEpochBlock,
  encodeFencedWrite,
  type FencedFunction,
  GATEWAY_FENCE,
  writeAddress,
} from '../../src/devices/modbus/gateway-fencing.ts';
import { targetPdu } from '../../src/gateway/gateway.ts';

describe('fenced write: controller encoding = gateway decoding', () => {
  const cases: { fc: FencedFunction; address: number; values: number[] }[] = [
    { fc: 5, address: 62, values: [1] },
    { fc: 5, address: 0, values: [0] },
    { fc: 6, address: 40_004, values: [0xffff] },
    { fc: 15, address: 10, values: [1, 0, 1, 1, 0, 0, 0, 1, 1] },
    { fc: 16, address: 0, values: [0, 0, 0, 12, 7, 1, 450, 210] },
    {
      fc: 16,
      address: 0x10000 - GATEWAY_FENCE.maxValues,
      values: Array.from({ length: GATEWAY_FENCE.maxValues }, (_, i) => i),
    },
  ];
  for (const c of cases) {
    it(`FC${c.fc} at ${c.address}, ${c.values.length} value(s), round-trips with its epoch`, () => {
      for (const epoch of [0, 1, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER]) {
        const words = encodeFencedWrite({ epoch, ...c });
        expect(words.length).toBe(GATEWAY_FENCE.headerLen + c.values.length);
        // One FC16 carries it: the Modbus limit of 123 registers is never passed.
        expect(words.length).toBeLessThanOrEqual(123);
        expect(decodeFencedWrite(words)).toEqual({ epoch: BigInt(epoch), ...c });
      }
    });
  }

  it('a u64 epoch beyond 2^53 survives (etcd revisions are int64)', () => {
    const epoch = (1n << 63n) + 12345n;
    expect(decodeFencedWrite(encodeFencedWrite({ epoch, fc: 6, address: 1, values: [2] }))).toMatchObject({
      epoch,
    });
    expect(decodeEpochBlock(encodeEpochBlock(epoch)).epoch).toBe(epoch);
  });

  it('the write window sits right after the 8-register epoch block', () => {
    expect(writeAddress()).toBe(GATEWAY_FENCE.defaultBase + 8);
    expect(writeAddress(1000)).toBe(1008);
    expect(encodeEpochBlock(7n)).toEqual([
      0,
      0,
      0,
      7,
      GATEWAY_FENCE.wireVersion,
      GATEWAY_FENCE.maxValues,
      0,
      0,
    ]);
  });

  it('the encoder refuses what one request cannot carry, with the reason', () => {
    expect(() => encodeFencedWrite({ epoch: -1, fc: 6, address: 0, values: [1] })).toThrow(/non-negative/);
    expect(() => encodeFencedWrite({ epoch: 1.5, fc: 6, address: 0, values: [1] })).toThrow(/safe integer/);
    expect(() => encodeFencedWrite({ epoch: 1, fc: 6, address: 0, values: [1, 2] })).toThrow(/exactly 1/);
    expect(() => encodeFencedWrite({ epoch: 1, fc: 16, address: 0, values: new Array(117).fill(0) })).toThrow(
      /1\.\.116/,
    );
    expect(() => encodeFencedWrite({ epoch: 1, fc: 15, address: 0, values: [2] })).toThrow(/coil state/);
    expect(() => encodeFencedWrite({ epoch: 1, fc: 16, address: 65_535, values: [1, 2] })).toThrow(
      /past 65535/,
    );
    expect(() => encodeFencedWrite({ epoch: 1, fc: 3 as FencedFunction, address: 0, values: [1] })).toThrow(
      /not one of/,
    );
  });

  it('the decoder answers a bad window write with 03 (value) or 02 (address), never throws', () => {
    const good = encodeFencedWrite({ epoch: 9, fc: 16, address: 100, values: [1, 2, 3] });
    expect(decodeFencedWrite(good.slice(0, 7))).toMatchObject({ exception: 3 });
    const badFc = [...good];
    badFc[4] = 23;
    expect(decodeFencedWrite(badFc)).toMatchObject({
      exception: 3,
      reason: expect.stringMatching(/target function 23/),
    });
    const badCount = [...good];
    badCount[6] = 4;
    expect(decodeFencedWrite(badCount)).toMatchObject({
      exception: 3,
      reason: expect.stringMatching(/count 4/),
    });
    const pastEnd = [...good];
    pastEnd[5] = 65_534;
    expect(decodeFencedWrite(pastEnd)).toMatchObject({ exception: 2 });
    expect(decodeFencedWrite([0, 0, 0, 1, 5, 0, 1, 7])).toMatchObject({
      exception: 3,
      reason: expect.stringMatching(/coil/),
    });
  });

  it('an epoch block of another wire version or length is refused, not misread', () => {
    const block = encodeEpochBlock(5n);
    block[4] = 2;
    expect(() => decodeEpochBlock(block)).toThrow(/wire version 2/);
    expect(() => decodeEpochBlock([0, 0, 0, 5])).toThrow(/8 16-bit registers/);
  });
});

describe('the plain write the unit gets', () => {
  it('FC5 on = FF00, off = 0000; FC15 packs coils LSB first; FC6/FC16 carry the words', () => {
    expect([...targetPdu({ epoch: 1n, fc: 5, address: 62, values: [1] })]).toEqual([5, 0, 62, 0xff, 0x00]);
    expect([...targetPdu({ epoch: 1n, fc: 5, address: 62, values: [0] })]).toEqual([5, 0, 62, 0x00, 0x00]);
    expect([...targetPdu({ epoch: 1n, fc: 15, address: 10, values: [1, 0, 1, 1, 0, 0, 0, 1, 1] })]).toEqual([
      15, 0, 10, 0, 9, 2, 0b10001101, 0b1,
    ]);
    expect([...targetPdu({ epoch: 1n, fc: 6, address: 0x0102, values: [0xabcd] })]).toEqual([
      6, 1, 2, 0xab, 0xcd,
    ]);
    expect([...targetPdu({ epoch: 1n, fc: 16, address: 3, values: [1, 0x8000] })]).toEqual([
      16, 0, 3, 0, 2, 4, 0, 1, 0x80, 0,
    ]);
  });
});
