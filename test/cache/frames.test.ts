import { describe, expect, it } from 'vitest';
import {
  encodeFrame,
  FrameError,
  FrameReader,
  FrameType,
  MAX_BODY_BYTES,
  MAX_FRAME_BYTES,
} from '../../src/cache/frames.ts';
import { compareVersion, RowAssembler, rowHeaderProblem } from '../../src/cache/rows.ts';

describe('peer channel frames', () => {
  it('round-trips frames split at every byte boundary', () => {
    const a = encodeFrame(FrameType.ROW, { group: 'g1', n: 1 }, Buffer.from('hello'));
    const b = encodeFrame(FrameType.ACK, { group: 'g1' });
    const wire = Buffer.concat([a, b]);
    for (let cut = 1; cut < wire.length; cut++) {
      const r = new FrameReader();
      const frames = [...r.push(wire.subarray(0, cut)), ...r.push(wire.subarray(cut))];
      expect(frames.map((f) => [f.type, f.header, f.body.toString()])).toEqual([
        [FrameType.ROW, { group: 'g1', n: 1 }, 'hello'],
        [FrameType.ACK, { group: 'g1' }, ''],
      ]);
    }
  });

  it('refuses a frame longer than the limit before buffering it, and stays broken', () => {
    const r = new FrameReader();
    const head = Buffer.alloc(4);
    head.writeUInt32BE(MAX_FRAME_BYTES + 1);
    expect(() => r.push(head)).toThrow(FrameError);
    expect(() => r.push(encodeFrame(FrameType.PING, {}))).toThrow(/frame length/);
  });

  it.each([
    ['an unknown type', Buffer.from([0, 0, 0, 7, 99, 0, 0, 0, 2, 0x7b, 0x7d])],
    ['a header that is not JSON', Buffer.from([0, 0, 0, 7, 6, 0, 0, 0, 2, 0x7b, 0x7b])],
    ['a header that is an array', Buffer.from([0, 0, 0, 7, 6, 0, 0, 0, 2, 0x5b, 0x5d])],
    ['a header longer than its frame', Buffer.from([0, 0, 0, 7, 6, 0, 0, 0, 9, 0x7b, 0x7d])],
    ['a length too short for a frame', Buffer.from([0, 0, 0, 1, 6])],
  ])('refuses %s as malformed', (_what, bytes) => {
    const r = new FrameReader();
    let err: unknown;
    try {
      r.push(bytes);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FrameError);
    expect((err as FrameError).reason).toBe('malformed');
  });

  it('will not encode a body over the chunk limit', () => {
    expect(() => encodeFrame(FrameType.ROW, {}, Buffer.alloc(MAX_BODY_BYTES + 1))).toThrow(/exceeds/);
  });
});

describe('rows', () => {
  const h = { group: 'g1', epoch: 7, seq: 2, writer: 'n1', atMs: 1, size: 6, off: 0 };

  it('orders versions by epoch, then seq', () => {
    expect(compareVersion([7, 1], [6, 99])).toBeGreaterThan(0);
    expect(compareVersion([7, 1], [7, 2])).toBeLessThan(0);
    expect(compareVersion([7, 2], [7, 2])).toBe(0);
  });

  it('checks row headers field by field', () => {
    expect(rowHeaderProblem(h, 6, 100)).toBeNull();
    expect(rowHeaderProblem({ ...h, group: 'a/b' }, 6, 100)).toMatch(/group/);
    expect(rowHeaderProblem({ ...h, epoch: 0 }, 6, 100)).toMatch(/epoch/);
    expect(rowHeaderProblem({ ...h, seq: 1.5 }, 6, 100)).toMatch(/seq/);
    expect(rowHeaderProblem({ ...h, writer: '' }, 6, 100)).toMatch(/writer/);
    expect(rowHeaderProblem({ ...h, size: 1000 }, 6, 100)).toMatch(/limit/);
    expect(rowHeaderProblem({ ...h, off: 3 }, 6, 100)).toMatch(/fit/);
  });

  it('reassembles chunks, and a newer row replaces one still in progress', () => {
    const asm = new RowAssembler();
    expect(asm.add({ ...h, off: 0 }, Buffer.from('abc'))).toBe('partial');
    expect(asm.add({ ...h, seq: 3, off: 0 }, Buffer.from('xyz'))).toBe('partial');
    expect(asm.add({ ...h, off: 3 }, Buffer.from('def'))).toBe('dropped');
    const row = asm.add({ ...h, seq: 3, off: 3 }, Buffer.from('uvw'));
    expect(row).toMatchObject({ group: 'g1', epoch: 7, seq: 3 });
    expect((row as { body: Buffer }).body.toString()).toBe('xyzuvw');
    expect(asm.heldBytes).toBe(0);
  });
});
