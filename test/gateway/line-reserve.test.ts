// A line's queue keeps places that only fenced writes may take: clients pipelining reads on a slow
// line (a poller, a scan, a stuck controller) fill the rest and get 0x06 busy, while the leader's
// write still gets in and reaches the unit before its watchdog runs out. Pure: the Line's own queue.
import { describe, expect, it } from 'vitest';
import { Line, type LineJob, reservedForWrites } from '../../src/gateway/line.ts';
import type { Transport } from '../../src/gateway/transport.ts';

describe('a line queue crowded with reads', () => {
  it('still takes the leader’s fenced writes, and runs them in turn', async () => {
    const line = new Line('rs485', {} as Transport, 60_000, 64);
    let release: () => void = () => {};
    const blocked = new Promise<void>((r) => {
      release = r;
    });
    const ran: string[] = [];
    const job = (name: string, unitId: number, write = false): LineJob<string> => ({
      unitId,
      arrivedMs: performance.now(),
      expire: () => `${name}: expired`,
      run: async () => {
        await blocked;
        ran.push(name);
        return name;
      },
      ...(write ? { write: true } : {}),
    });
    // The first read takes the line (and waits there); then reads from unit 7 until refused.
    const answers: Promise<string>[] = [];
    let reads = 0;
    for (let i = 0; i < 200; i++) {
      const a = line.submit(job(`read-${i}`, 7));
      if (!a) break;
      answers.push(a);
      reads++;
    }
    const kept = reservedForWrites(64);
    expect(kept).toBe(8);
    // One on the line, the rest waiting up to what reads may fill.
    expect(reads).toBe(1 + 64 - kept);
    // The leader's writes for unit 3 still get in, up to the whole queue; then busy for them too.
    const writes: Promise<string>[] = [];
    for (let i = 0; i < kept; i++) {
      const a = line.submit(job(`write-${i}`, 3, true));
      expect(a, `write ${i}`).toBeDefined();
      writes.push(a!);
    }
    expect(line.submit(job('write-extra', 3, true))).toBeUndefined();
    expect(line.submit(job('read-extra', 7))).toBeUndefined();
    release();
    expect(await Promise.all(writes)).toEqual(Array.from({ length: kept }, (_, i) => `write-${i}`));
    await Promise.all(answers);
    // Units take turns: the writes did not wait behind all 56 queued reads.
    expect(ran.indexOf('write-0')).toBeLessThan(3);
  });

  it('keeps no place on a queue too small to share', () => {
    expect([1, 2, 3].map(reservedForWrites)).toEqual([0, 0, 0]);
    expect([4, 16, 10_000].map(reservedForWrites)).toEqual([1, 2, 1_250]);
  });
});
