// Hostile site files handed to a running daemon (a real process, real etcd) by SIGHUP: a value that
// holds itself through an alias, an alias bomb, a key with terminal escapes, a unit without a
// protocol, YAML that does not parse. Each reload is refused in a moment with one log line and one
// more on the refused counter; the node keeps running the config it has and stays ready.
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { useOneNodeDaemon, writeOneNodeConfig } from '../daemon/one-node.ts';
import { waitFor } from '../helpers.ts';

const fx = useOneNodeDaemon('reload-hostile');

/** Nine anchors, each nine aliases of the one before: 9^9 values from ~400 bytes. */
const bomb = (levels: number): string =>
  Array.from({ length: levels }, (_, i) =>
    i === 0
      ? 'lol0: &l0 [lol, lol, lol]'
      : `lol${i}: &l${i} [${Array(9)
          .fill(`*l${i - 1}`)
          .join(', ')}]`,
  ).join('\n');

async function refusedReloads(api: string): Promise<number> {
  const text = await (await fetch(`${api}/metrics`)).text();
  return Number(/coolctl_config_reloads_total\{result="refused"\} (\d+)/.exec(text)?.[1] ?? 0);
}

const refusedLines = () =>
  fx
    .log()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg: string; problems?: { path: string; message: string }[] })
    .filter((l) => l.msg === 'config reload refused: the running config is kept');

describe('hostile site files on reload', () => {
  it('are each refused with one line and a counter, and the node keeps running', async () => {
    const { config, api } = await writeOneNodeConfig({
      dir: fx.dir(),
      etcd: fx.etcd().clientConfig(),
      prefix: '/coolctl/reload-hostile',
    });
    const site = join(fx.dir(), 'site.yaml');
    await copyFile('config/demo-site.yaml', site);
    const doc = parse(await readFile(config, 'utf8')) as { site: string; api: Record<string, unknown> };
    doc.site = site;
    doc.api = { ...doc.api, metricsAuth: 'none' };
    await writeFile(config, stringify(doc));
    const good = await readFile(site, 'utf8');
    const daemon = fx.run(config);
    await waitFor('the daemon API', async () => (await fetch(`${api}/readyz`).catch(() => null))?.ok, {
      timeoutMs: 30_000,
      intervalMs: 100,
    });

    const hostile: [string, string, RegExp][] = [
      ['cycle', `${good}\nloop: &c [*c]\n`, /holds it/],
      ['alias bomb', `${good}\n${bomb(9)}`, /alias bomb/],
      ['escape key', `${good}\n"a\\e]0;x\\a\\u202eb": 1\n`, /unknown setting/],
      ['no protocol', good.replace(/^( +)protocol: modbus-tcp\n/m, ''), /is required/],
      ['broken YAML', `${good}\nzz: [1, 2\n`, /YAML syntax/],
    ];
    for (const [what, text, expected] of hostile) {
      const before = await refusedReloads(api);
      await writeFile(site, text);
      daemon.kill('SIGHUP');
      await waitFor(`${what}: the reload refused`, async () => (await refusedReloads(api)) > before, {
        timeoutMs: 20_000,
        intervalMs: 100,
      });
      // The file watcher asks too, maybe while the file is half written: whatever the count, every
      // refused reload is one line (the line comes through a pipe, the counter through HTTP: poll).
      await waitFor(
        `${what}: its line, and one line per refused reload`,
        async () =>
          expected.test(
            refusedLines()
              .at(-1)
              ?.problems?.map((p) => p.message)
              .join(' ') ?? '',
          ) && refusedLines().length === (await refusedReloads(api)),
        { timeoutMs: 10_000, intervalMs: 100 },
      );
      expect(JSON.stringify(refusedLines().at(-1)), what).not.toMatch(/\\u001b|\u202e/);
      expect((await fetch(`${api}/readyz`)).ok, what).toBe(true);
      expect(daemon.exitCode, what).toBe(null);
    }
  }, 120_000);
});
