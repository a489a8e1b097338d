import { describe, expect, it } from 'vitest';
import {
  encodeFrame,
  FrameError,
  FrameReader,
  FrameType,
  MAX_BODY_BYTES,
  MAX_FRAME_BYTES,
} from '../../src/cache/frames.ts';
import {
  digestEntryBytes,
  failsafeGroupBytes,
  PAGE_BYTES,
  paginate,
  rowRefBytes,
  rowRefMaxBytes,
  syncGroupBytes,
} from '../../src/cache/pages.ts';
import { AssemblyBudget, compareVersion, RowAssembler, rowHeaderProblem } from '../../src/cache/rows.ts';

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
    const asm = new RowAssembler(new AssemblyBudget(1024, 1000));
    expect(asm.add({ ...h, off: 0 }, Buffer.from('abc'))).toBe('partial');
    expect(asm.add({ ...h, seq: 3, off: 0 }, Buffer.from('xyz'))).toBe('partial');
    expect(asm.add({ ...h, off: 3 }, Buffer.from('def'))).toBe('dropped');
    const row = asm.add({ ...h, seq: 3, off: 3 }, Buffer.from('uvw'));
    expect(row).toMatchObject({ group: 'g1', epoch: 7, seq: 3 });
    expect((row as { body: Buffer }).body.toString()).toBe('xyzuvw');
    expect(asm.heldBytes).toBe(0);
  });

  it('holds one row in assembly per link, reserves its declared size, and gives it back', () => {
    const budget = new AssemblyBudget(100, 1000);
    const [a, b] = [new RowAssembler(budget), new RowAssembler(budget)];
    const row = (group: string, size: number, off: number) => ({ ...h, group, size, off });
    expect(a.add(row('g1', 60, 0), Buffer.alloc(10), 0)).toBe('partial');
    expect(budget.reservedBytes).toBe(60);
    // A whole row in one frame needs no assembly, and leaves the row in progress alone.
    expect(a.add(row('g9', 3, 0), Buffer.from('abc'), 1)).toMatchObject({ group: 'g9' });
    // A first chunk of another row supersedes the one in progress: still one row's bytes.
    expect(a.add(row('g2', 50, 0), Buffer.alloc(10), 2)).toBe('partial');
    expect(budget.reservedBytes).toBe(50);
    expect(a.add(row('g1', 60, 10), Buffer.alloc(10), 3)).toBe('dropped');
    // Another link's row that does not fit is refused before anything is kept…
    expect(b.add(row('g3', 60, 0), Buffer.alloc(10), 4)).toBe('over-budget');
    expect(b.heldBytes).toBe(0);
    // …until the row in the way stalls for longer than the budget's stall time.
    expect(b.add(row('g3', 60, 0), Buffer.alloc(10), 1003)).toBe('partial');
    expect(budget.reservedBytes).toBe(60);
    expect(a.add(row('g2', 50, 10), Buffer.alloc(10), 1004)).toBe('dropped');
    // A gap can never complete: the row goes.
    expect(b.add(row('g3', 60, 30), Buffer.alloc(10), 1005)).toBe('dropped');
    expect(budget.reservedBytes).toBe(0);
  });

  it('copies chunks out of the frames they came in, growing to the declared size', () => {
    const asm = new RowAssembler(new AssemblyBudget(4 * 1024 * 1024, 1000));
    const frame = Buffer.alloc(300 * 1024, 7);
    const size = 3 * 256 * 1024 + 1;
    let off = 0;
    let res: ReturnType<RowAssembler['add']> = 'partial';
    for (const n of [1, 256 * 1024, 256 * 1024, 256 * 1024 - 1, 1]) {
      res = asm.add({ ...h, size, off }, frame.subarray(0, n));
      off += n;
    }
    const row = res as { body: Buffer };
    expect(row.body.length).toBe(size);
    expect(row.body.buffer).not.toBe(frame.buffer);
    expect(row.body.every((b) => b === 7)).toBe(true);
  });

  it('pages a list so that each page, and any answer to it, fits one header', () => {
    const names = Array.from({ length: 10_000 }, (_, i) => `${'z'.repeat(120)}${String(i).padStart(8, '0')}`);
    const epoch = Number.MAX_SAFE_INTEGER;
    const pages = paginate(names, (g) => syncGroupBytes(g, [epoch, epoch]));
    expect(pages.length).toBeGreaterThan(1);
    expect(pages.flat()).toEqual(names);
    for (const page of pages) {
      const digest = Object.fromEntries(page.map((g) => [g, [epoch, epoch]]));
      const sync = encodeFrame(FrameType.SYNC, { id: 4_000_000_000, digest, groups: page });
      const answer = encodeFrame(FrameType.SYNC_DONE, {
        id: 4_000_000_000,
        rows: page.map((g) => [g, epoch, epoch]),
        more: true,
      });
      expect(sync.length).toBeLessThan(PAGE_BYTES + 1024);
      expect(answer.length).toBeLessThan(PAGE_BYTES + 1024);
    }
    // The byte counts are exact JSON lengths, separators included.
    expect(digestEntryBytes('g1', 12, 3)).toBe(`"g1":[12,3],`.length);
    expect(rowRefBytes(['g1', 12, 3])).toBe(`["g1",12,3],`.length);
    expect(rowRefMaxBytes('g1')).toBe(`["g1",${epoch},${epoch}],`.length);
    expect(failsafeGroupBytes({ group: 'g1', epoch: 12 })).toBe(`{"group":"g1","epoch":12},`.length);
  });
});
