// The controller config: defaults, paths relative to the file, and the timing rules that keep a
// single leader — an unsafe file is refused with every problem and why, by the CLI too (exit 2).
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { loadControllerConfig } from '../../src/config/controller-config.ts';
import { ConfigError } from '../../src/errors.ts';

const fixture = 'test/fixtures/cluster/controller.yaml';

async function problemsOf(yaml: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'coolctl-cfg-'));
  const file = join(dir, 'c.yaml');
  await writeFile(file, yaml.replace('SITE', resolve('config/demo-site.yaml')));
  try {
    await loadControllerConfig(file, 'a');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected the config to be refused');
}

const base = (cluster: string) => `site: SITE
cluster:
  etcd: [http://127.0.0.1:2379]
${cluster}
nodes:
  a: { api: 127.0.0.1:8101 }
`;

describe('controller config', () => {
  it('loads with defaults filled in and paths resolved against the file', async () => {
    const c = await loadControllerConfig(fixture, 'node-b');
    expect(c.node).toBe('node-b');
    expect(c.apiPort).toBe(8102);
    expect(c.site.controlGroups).toHaveLength(4);
    expect(c.sitePath).toBe(resolve('config/demo-site.yaml'));
    expect(c.dataDir).toBe('/tmp/coolctl-test/node-b');
    expect(c.cluster).toMatchObject({
      leaseTtlS: 2,
      keepaliveIntervalMs: 300,
      safetyMarginMs: 400,
      rebalanceHoldMs: 5000,
    });
    expect(c.periodMs).toBe(500);
  });

  it('refuses keepalive timings that cannot keep a lease safely, and says why', async () => {
    const msg = await problemsOf(base('  leaseTtlS: 2\n  keepaliveIntervalMs: 600\n  safetyMarginMs: 300'));
    expect(msg).toMatch(
      /keepaliveIntervalMs × 3 \+ safetyMarginMs = 2100 ms is not below the 2000 ms lease TTL/,
    );
    expect(msg).toMatch(/allowed: keepaliveIntervalMs × 3 \+ safetyMarginMs < leaseTtlS × 1000/);
  });

  it('reports a TTL below etcd’s minimum instead of letting etcd raise it silently', async () => {
    const msg = await problemsOf(
      base('  leaseTtlS: 1\n  keepaliveIntervalMs: 100\n  safetyMarginMs: 100\n  etcdCallTimeoutMs: 200'),
    );
    expect(msg).toMatch(/etcd would silently raise a 1 s TTL/);
  });

  it('refuses units whose worst-case write cannot end inside the lease, every one at once, and says what to change', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coolctl-cfg-'));
    const siteDoc = parseYaml(await readFile('config/demo-site.yaml', 'utf8')) as {
      airHandlers: { id: string; client?: Record<string, number> }[];
    };
    const [a0, a1, a2] = siteDoc.airHandlers;
    a0!.client = { maxApplyDelayMs: 1_400 };
    a1!.client = { timeoutMs: 2_000 };
    a2!.client = { timeoutMs: 2_000, maxApplyDelayMs: 1_300 };
    const sitePath = join(dir, 'site.yaml');
    await writeFile(sitePath, stringifyYaml(siteDoc));
    const file = join(dir, 'c.yaml');
    const cluster = (ttl: number) =>
      `site: site.yaml\ncluster:\n  etcd: [http://127.0.0.1:2379]\n  leaseTtlS: ${ttl}\n  keepaliveIntervalMs: 300\n  safetyMarginMs: 400\nnodes:\n  a: { api: 127.0.0.1:8101 }\n`;
    await writeFile(file, cluster(2));
    const err = await loadControllerConfig(file, 'a').then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems;
    // 2000 − 400 − 300 = 1300 ms: a0 (1400) and a1 (its 2000 ms timeout) do not fit; a2 (1300) does.
    expect(problems.map((p) => p.path)).toEqual([
      '/airHandlers/0/client/maxApplyDelayMs',
      '/airHandlers/1/client/timeoutMs',
    ]);
    expect(problems[0]).toMatchObject({ file: sitePath });
    expect(problems[0]!.message).toMatch(
      new RegExp(
        `air handler ${a0!.id} may take 1400 ms to apply a write \\(client.maxApplyDelayMs\\), more than the 1300 ms`,
      ),
    );
    expect(problems[1]!.message).toMatch(/2000 ms .*client.timeoutMs, the default of client.maxApplyDelayMs/);
    expect(problems[1]!.allowed).toMatch(/client.maxApplyDelayMs ≤ 1300 .* or leaseTtlS ≥ 3/);
    // A longer lease leaves room for them all.
    await writeFile(file, cluster(3));
    await expect(loadControllerConfig(file, 'a')).resolves.toMatchObject({ node: 'a' });
  });

  it('lists every problem at once, with lines: unknown settings, bad URLs, a missing node', async () => {
    const msg = await problemsOf(`site: SITE
cluster:
  etcd: [ftp://x]
  leaseTTL: 3
nodes:
  a: { api: nowhere }
`);
    expect(msg).toMatch(/:3 \/cluster\/etcd\/0/);
    expect(msg).toMatch(/:4 \/cluster\/leaseTTL: unknown setting/);
    expect(msg).toMatch(/\/nodes\/a\/api/);
  });

  it('coolctl config validate: exit 0 for a good file, 2 with the problems for a bad one', async () => {
    const ok = spawnSync(process.execPath, ['src/cli.ts', 'config', 'validate', fixture], {
      encoding: 'utf8',
    });
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/valid — 4 groups, 8 air handlers, 3 nodes, lease TTL 2 s/);
    const dir = await mkdtemp(join(tmpdir(), 'coolctl-cfg-'));
    const bad = join(dir, 'bad.yaml');
    await writeFile(
      bad,
      base('  leaseTtlS: 2\n  keepaliveIntervalMs: 900').replace('SITE', resolve('config/demo-site.yaml')),
    );
    const res = spawnSync(process.execPath, ['src/cli.ts', 'config', 'validate', bad], { encoding: 'utf8' });
    expect(res.status).toBe(2);
    expect(res.stderr).toMatch(/not valid — nothing was started/);
    expect(res.stderr).toMatch(/keepaliveIntervalMs/);
    const missing = spawnSync(
      process.execPath,
      ['src/cli.ts', 'run', '--config', fixture, '--node', 'node-z'],
      { encoding: 'utf8' },
    );
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/no node "node-z".*one of node-a, node-b, node-c/s);
  });

  describe('peer channel and failsafe settings', () => {
    const peers = (
      cluster: string,
      nodes = '  a: { api: 127.0.0.1:8101, peer: 127.0.0.1:8201 }\n  b: { api: 127.0.0.1:8102, peer: 127.0.0.1:8202 }',
    ) => `site: SITE\ncluster:\n  etcd: [http://127.0.0.1:2379]\n${cluster}\nnodes:\n${nodes}\n`;

    it('reads the cluster secret relative to the file, and what peers dial', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'coolctl-cfg-'));
      await writeFile(join(dir, 'secret'), 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n', { mode: 0o600 });
      const file = join(dir, 'c.yaml');
      await writeFile(
        file,
        peers(
          '  secretFile: secret\n  failsafe: true',
          '  a: { api: 127.0.0.1:8101, peer: 127.0.0.1:8201, peerAdvertise: 10.0.0.1:9201 }\n  b: { api: 127.0.0.1:8102, peer: 127.0.0.1:8202 }',
        ).replace('SITE', resolve('config/demo-site.yaml')),
      );
      const c = await loadControllerConfig(file, 'a');
      expect(c.secret?.toString()).toBe('a'.repeat(32));
      expect(c.peer).toEqual({ host: '127.0.0.1', port: 8201 });
      expect(c.peerUrl).toBe('tcp://10.0.0.1:9201');
      expect(c.cluster).toMatchObject({ failsafe: true, pullTimeoutMs: 500 });
    });

    it('refuses peers without a secret, a missing or short secret, peers on some nodes only, failsafe without peers', async () => {
      expect(await problemsOf(peers(''))).toMatch(
        /\/cluster\/secretFile: nodes have peer addresses but no cluster secret/,
      );
      expect(await problemsOf(peers('  secretFile: /nonexistent/secret'))).toMatch(
        /cannot read \/nonexistent\/secret/,
      );
      const dir = await mkdtemp(join(tmpdir(), 'coolctl-cfg-'));
      await writeFile(join(dir, 'short'), 'tooshort\n', { mode: 0o600 });
      expect(await problemsOf(peers(`  secretFile: ${join(dir, 'short')}`))).toMatch(
        /has 8 bytes \(allowed: at least 16 bytes/,
      );
      expect(
        await problemsOf(
          peers(
            `  secretFile: ${join(dir, 'short')}`,
            '  a: { api: 127.0.0.1:8101, peer: 127.0.0.1:8201 }\n  b: { api: 127.0.0.1:8102 }',
          ),
        ),
      ).toMatch(/only a have a peer address/);
      expect(await problemsOf(base('  failsafe: true'))).toMatch(
        /\/cluster\/failsafe: failsafe needs the peer channel/,
      );
    });
  });
});
