// A config file rewritten every 100–200 ms (a tool saving in a loop, an editor's autosave, a sync
// agent) never leaves its folder quiet for the 0.5 s the watcher waits for: its changes must still
// be read within the 5 s bound while the writes go on, said once in the log and counted, and read
// again after the writer stops. In process, on a real folder, with the daemon's own timings.
import { readFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONFIG_MAX_DEFER_MS, CONFIG_SETTLE_MS, ConfigWatcher } from '../../src/daemon/config-watch.ts';
import { tmpDir } from '../cluster/harness.ts';
import { waitFor } from '../helpers.ts';

let root: { dir: string; cleanup: () => Promise<void> } | undefined;
beforeAll(async () => {
  root = await tmpDir('config-watch-unsettled');
});
afterAll(async () => {
  await root?.cleanup();
});

/** How late a look may come past the bound on a busy 2-core test machine. */
const SLACK_MS = 1_500;

describe('a config file that is never left to settle', () => {
  it('is read within the bound while the writes go on, with one log line and a counter', async () => {
    const dir = join(root!.dir, 'looping');
    await mkdir(dir);
    const file = join(dir, 'site.yaml');
    await writeFile(file, 'a: 0\n');
    const seen: { text: string; atMs: number }[] = [];
    const lines: { level: number; msg: string }[] = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) });
    const registry = new Registry();
    const watcher = new ConfigWatcher(
      [file],
      () => seen.push({ text: readFileSync(file, 'utf8'), atMs: performance.now() }),
      logger,
      CONFIG_SETTLE_MS,
      { registry },
    );
    const forced = async () =>
      (await registry.getSingleMetric('coolctl_config_unsettled_reloads_total')?.get())?.values[0]?.value ??
      0;
    // Two bounds and a second: two forced looks while it writes. Each save whole (by rename, as
    // editors and sync agents save), so what a look reads is one the writer wrote.
    const writeForMs = 2 * CONFIG_MAX_DEFER_MS + 1_000;
    const firstWriteAtMs = performance.now();
    let written = 0;
    let writerDoneAtMs = Number.POSITIVE_INFINITY;
    const writer = (async () => {
      while (performance.now() - firstWriteAtMs < writeForMs) {
        written++;
        await writeFile(`${file}.tmp`, `a: ${written}\n`);
        await rename(`${file}.tmp`, file);
        // The writer's own pace (100–200 ms between saves), not a wait for the watcher.
        await new Promise((r) => setTimeout(r, 100 + (written % 2) * 100));
      }
      writerDoneAtMs = performance.now();
    })();
    try {
      await waitFor('a look while the writer still writes', () => seen.length >= 1, {
        timeoutMs: writeForMs + 5_000,
        intervalMs: 20,
      });
      const first = seen[0]!;
      // Taken while the writes went on, within the bound, and what the writer had written by then.
      expect(first.atMs).toBeLessThan(writerDoneAtMs);
      expect(first.atMs - firstWriteAtMs).toBeLessThan(CONFIG_MAX_DEFER_MS + SLACK_MS);
      expect(first.text).toMatch(/^a: [1-9]\d*\n$/);
      expect(await forced()).toBeGreaterThanOrEqual(1);
      await writer;
      const last = `a: ${written}\n`;
      // Once the writes stop, the last save is read after the settle, as any edit.
      await waitFor('the last save read', () => seen.at(-1)?.text === last, {
        timeoutMs: 10_000,
        intervalMs: 20,
      });
      await waitFor('the settle said', () => lines.some((l) => l.msg === 'the config files settled again'), {
        timeoutMs: 10_000,
        intervalMs: 20,
      });
      expect(seen.length).toBeGreaterThanOrEqual(3); // ~5 s, ~10 s, and the last save
      expect(await forced()).toBeGreaterThanOrEqual(2);
      // One warn line for the whole episode, whatever the saves and forced looks (~80 and 2).
      const warned = lines.filter((l) => l.msg.startsWith('the config files keep changing'));
      expect(warned).toHaveLength(1);
      expect(warned[0]!.level).toBe(40);
    } finally {
      watcher.close();
      await writer;
    }
  }, 60_000);

  it('a save in a few quick steps is still one look after the settle, not a forced one', async () => {
    const dir = join(root!.dir, 'steps');
    await mkdir(dir);
    const file = join(dir, 'site.yaml');
    await writeFile(file, 'a: 0\n');
    const seen: string[] = [];
    const registry = new Registry();
    const watcher = new ConfigWatcher(
      [file],
      () => seen.push(readFileSync(file, 'utf8')),
      pino({ level: 'silent' }),
      CONFIG_SETTLE_MS,
      { registry },
    );
    try {
      for (let i = 1; i <= 5; i++) await writeFile(file, `a: ${i}\n`);
      await waitFor('the save read', () => seen.length >= 1, { timeoutMs: 10_000, intervalMs: 20 });
      expect(seen).toEqual(['a: 5\n']);
      const m = await registry.getSingleMetric('coolctl_config_unsettled_reloads_total')?.get();
      expect(m?.values[0]?.value ?? 0).toBe(0);
    } finally {
      watcher.close();
    }
  });
});
