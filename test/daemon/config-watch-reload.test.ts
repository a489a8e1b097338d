// The config watcher as an operator's tools treat the config folder: a burst of saves is one
// change, a touch none, a file deleted and restored two (the reload of the missing file is refused,
// the running config kept), and a folder removed and made again (`rm -rf /etc/coolctl; cp -r …`)
// is watched again: its later edits still reload. In process, on a real folder.
import { readFileSync } from 'node:fs';
import { mkdir, rename, rm, unlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigWatcher } from '../../src/daemon/config-watch.ts';
import { tmpDir } from '../cluster/harness.ts';
import { waitFor } from '../helpers.ts';

let root: { dir: string; cleanup: () => Promise<void> } | undefined;
beforeAll(async () => {
  root = await tmpDir('config-watch-reload');
});
afterAll(async () => {
  await root?.cleanup();
});

/**
 * A watcher on `file` that keeps, for each call, what the file then held ('missing' when nothing),
 * and collects its log lines.
 */
function watching(
  file: string,
  settleMs = 100,
): { calls: () => number; seen: string[]; lines: string[]; watcher: ConfigWatcher } {
  const seen: string[] = [];
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(s) });
  const held = () => {
    try {
      return readFileSync(file, 'utf8');
    } catch {
      return 'missing';
    }
  };
  const watcher = new ConfigWatcher([file], () => seen.push(held()), logger, settleMs);
  return { calls: () => seen.length, seen, lines, watcher };
}

describe('the config watcher', () => {
  it('a burst of 100 saves is one change; a touch none; a delete and a restore one each', async () => {
    const dir = join(root!.dir, 'burst');
    await mkdir(dir);
    const file = join(dir, 'site.yaml');
    await writeFile(file, 'a: 0\n');
    const w = watching(file, 300);
    try {
      for (let i = 1; i <= 100; i++) {
        // Half by rename (editors), half in place (shell redirection), none waiting for the watcher.
        if (i % 2) {
          await writeFile(`${file}.tmp`, `a: ${i}\n`);
          await rename(`${file}.tmp`, file);
        } else await writeFile(file, `a: ${i}\n`);
      }
      await waitFor('the burst seen', () => w.calls() >= 1, { timeoutMs: 10_000, intervalMs: 20 });
      // A touch changes no byte; the deletion and the restore are a change each. Calls come one
      // after another: once the restore is seen, every call before it is in the list.
      await utimes(file, new Date(), new Date());
      await unlink(file);
      await waitFor('the deletion seen', () => w.seen.includes('missing'), {
        timeoutMs: 10_000,
        intervalMs: 20,
      });
      await writeFile(file, 'restored: 1\n');
      await waitFor('the restore seen', () => w.seen.at(-1) === 'restored: 1\n', {
        timeoutMs: 10_000,
        intervalMs: 20,
      });
      expect(w.seen).toEqual(['a: 100\n', 'missing', 'restored: 1\n']);
    } finally {
      w.watcher.close();
    }
  });

  it('a folder removed and made again is watched again, with a line for each', async () => {
    const dir = join(root!.dir, 'replaced');
    await mkdir(dir);
    const file = join(dir, 'site.yaml');
    await writeFile(file, 'a: 0\n');
    const w = watching(file);
    try {
      await rm(dir, { recursive: true });
      await waitFor('the removal seen', () => w.calls() >= 1, { timeoutMs: 10_000, intervalMs: 20 });
      await mkdir(dir);
      await writeFile(file, 'a: 1\n');
      await waitFor('the new folder’s file seen', () => w.calls() >= 2, {
        timeoutMs: 10_000,
        intervalMs: 20,
      });
      // An edit in the new folder: the one its watch (not a poll) sees.
      await writeFile(file, 'a: 2\n');
      await waitFor('an edit in the new folder seen', () => w.calls() >= 3, {
        timeoutMs: 10_000,
        intervalMs: 20,
      });
      const msgs = w.lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
      expect(msgs).toContain('the config folder is gone; watching for it to come back');
      expect(msgs).toContain('the config folder was replaced; watching the new one');
    } finally {
      w.watcher.close();
    }
  });
});
