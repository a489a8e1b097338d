// A reload that changes API settings on a running daemon (a real process, real etcd): the change is
// refused as restart-only, with its path, and the API keeps the settings it runs with — /metrics
// stays open (api.metricsAuth: none) and the sign-in limit stays 2 a minute, not the 50 written.
import { readFile, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { useOneNodeDaemon, writeOneNodeConfig } from '../daemon/one-node.ts';
import { waitFor } from '../helpers.ts';

const fx = useOneNodeDaemon('reload-class');

async function refusedReloads(api: string): Promise<number> {
  const text = await (await fetch(`${api}/metrics`)).text();
  return Number(/coolctl_config_reloads_total\{result="refused"\} (\d+)/.exec(text)?.[1] ?? 0);
}

async function signIn(api: string): Promise<number> {
  const res = await fetch(`${api}/api/v1/auth/sign-in`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-coolctl-request': '1' },
    body: JSON.stringify({ name: 'nobody', password: 'not the password at all' }),
    signal: AbortSignal.timeout(10_000),
  });
  await res.body?.cancel();
  return res.status;
}

describe('reload of API settings on a running daemon', () => {
  it('is refused as restart-only, and the API keeps the settings it runs with', async () => {
    const { config, api } = await writeOneNodeConfig({
      dir: fx.dir(),
      etcd: fx.etcd().clientConfig(),
      prefix: '/coolctl/reload-class',
    });
    const doc = parse(await readFile(config, 'utf8')) as { api: Record<string, unknown> };
    doc.api = { ...doc.api, metricsAuth: 'none', signInsPerMinute: 2 };
    await writeFile(config, stringify(doc));
    const daemon = fx.run(config);
    await waitFor('the daemon API', async () => (await fetch(`${api}/readyz`).catch(() => null))?.ok, {
      timeoutMs: 30_000,
      intervalMs: 100,
    });
    expect((await fetch(`${api}/metrics`)).status).toBe(200);
    const before = await refusedReloads(api);

    // The file watcher reloads it.
    doc.api = { ...doc.api, metricsAuth: 'viewer', signInsPerMinute: 50 };
    await writeFile(config, stringify(doc));
    await waitFor('the reload refused', async () => (await refusedReloads(api)) > before, {
      timeoutMs: 20_000,
      intervalMs: 200,
    });

    const line = fx
      .log()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; problems?: { path: string; allowed: string }[] })
      .find((l) => l.msg === 'config reload refused: the running config is kept');
    expect(line?.problems?.map((p) => p.path).sort()).toEqual(['/api/metricsAuth', '/api/signInsPerMinute']);
    expect(line?.problems?.[0]?.allowed).toMatch(/^restart the node \(systemctl restart coolctl@n1\)/);
    // Still what it started with: metrics without a token, two sign-ins a minute.
    expect((await fetch(`${api}/metrics`)).status).toBe(200);
    expect([await signIn(api), await signIn(api), await signIn(api)]).toEqual([401, 401, 429]);
    expect(daemon.exitCode).toBe(null);
  }, 90_000);
});
