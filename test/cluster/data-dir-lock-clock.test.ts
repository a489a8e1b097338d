// The data dir lock's takeover file across a wall-clock step: whether a starter holding it is alive
// is asked of the process table, never read from the file's age, so a clock a day ahead cannot
// delete a live starter's (two takeovers at once) and one a day behind cannot wait on a dead one's.
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DataDirLock } from '../../src/cluster/data-dir-lock.ts';
import { ClusterErrorCodes } from '../../src/cluster/errors.ts';
import { quietLogger } from '../helpers.ts';

const DAY_MS = 86_400_000;
const realNow = Date.now.bind(Date);
const dirs: string[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A data dir whose lock a process that is gone left behind, and a takeover file with `takeover`. */
async function staleDir(takeover: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'coolctl-lock-'));
  dirs.push(dir);
  const gone = spawnSync('true').pid!;
  await writeFile(
    join(dir, 'coolctl.lock'),
    `${JSON.stringify({ node: 'n-old', pid: gone, bootId: null, startTicks: null })}\n`,
  );
  await writeFile(join(dir, 'coolctl.lock.takeover'), takeover);
  return dir;
}

const holder = (pid: number) =>
  `${JSON.stringify({ node: 'n-starter', pid, bootId: null, startTicks: null })}\n`;

describe('data dir lock between starters racing', () => {
  it('of eight starters on one stale lock, exactly one takes it', async () => {
    for (let round = 0; round < 5; round++) {
      const dir = await staleDir(''); // a stale lock, and a damaged takeover file besides
      const locks = Array.from({ length: 8 }, (_, i) => new DataDirLock(dir, `n-${i}`, quietLogger));
      const results = await Promise.allSettled(locks.map((l) => l.acquire()));
      const won = results.filter((r) => r.status === 'fulfilled');
      expect(won, `round ${round}`).toHaveLength(1);
      for (const r of results)
        if (r.status === 'rejected')
          expect(r.reason).toMatchObject({ code: ClusterErrorCodes.DATA_DIR_IN_USE });
      const holderNode = JSON.parse(await readFile(join(dir, 'coolctl.lock'), 'utf8')).node as string;
      expect(results.map((r, i) => (r.status === 'fulfilled' ? `n-${i}` : null)).filter(Boolean)).toEqual([
        holderNode,
      ]);
      for (const l of locks) await l.release();
    }
  });
});

describe('data dir lock takeover across a wall-clock step', () => {
  it('a clock a day ahead does not take a lock another live starter is taking over', async () => {
    const dir = await staleDir(holder(process.pid)); // this process plays the live starter
    vi.spyOn(Date, 'now').mockImplementation(() => realNow() + DAY_MS);
    const late = new DataDirLock(dir, 'n-late', quietLogger);
    await expect(late.acquire()).rejects.toMatchObject({ code: ClusterErrorCodes.DATA_DIR_IN_USE });
    expect(await readFile(join(dir, 'coolctl.lock.takeover'), 'utf8')).toBe(holder(process.pid));
    expect(await readFile(join(dir, 'coolctl.lock'), 'utf8')).toContain('n-old');
  });

  it('a clock a day behind takes over from a starter that died inside its takeover', async () => {
    const dir = await staleDir(holder(spawnSync('true').pid!));
    vi.spyOn(Date, 'now').mockImplementation(() => realNow() - DAY_MS);
    const late = new DataDirLock(dir, 'n-late', quietLogger);
    await late.acquire();
    expect(JSON.parse(await readFile(join(dir, 'coolctl.lock'), 'utf8'))).toMatchObject({
      node: 'n-late',
      pid: process.pid,
    });
    await late.release();
  });

  it('an empty or damaged takeover file is taken at the next look, whatever the clock', async () => {
    // Files are published whole (written aside, then linked), so an empty one is never a starter's
    // in the middle of its write.
    const dir = await staleDir('');
    vi.spyOn(Date, 'now').mockImplementation(() => realNow() - DAY_MS);
    const late = new DataDirLock(dir, 'n-late', quietLogger);
    await late.acquire();
    expect(await readFile(join(dir, 'coolctl.lock'), 'utf8')).toContain('n-late');
  });
});
