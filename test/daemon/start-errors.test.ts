// How `coolctl run` fails at start, as systemd and the operator see it: a file the operator must
// fix exits 2 (RestartPreventExitStatus=2: no restart loop) with what to fix; an etcd that cannot be
// reached exits 1 (systemd tries again) and says which setting, which addresses, what to check.
// Real processes; the second case a real single-member etcd whose cluster has no user yet.
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { tmpDir } from '../cluster/harness.ts';
import { type EtcdCluster, freePort, startEtcdCluster } from '../support/etcd-cluster.ts';

let root: { dir: string; cleanup: () => Promise<void> } | undefined;
beforeAll(async () => {
  root = await tmpDir('start-errors');
});
afterAll(async () => {
  await root?.cleanup();
});

/** `coolctl run --node n1` until it exits (bounded): its status and what it printed. */
function run(config: string, timeoutMs: number): Promise<{ status: number | null; out: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, ['src/cli.ts', 'run', '--config', config, '--node', 'n1'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c) => {
      out += c;
    });
    child.stderr.on('data', (c) => {
      out += c;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (status) => {
      clearTimeout(timer);
      done({ status, out });
    });
  });
}

async function writeConfig(name: string, doc: Record<string, unknown>): Promise<string> {
  const file = join(root!.dir, `${name}.yaml`);
  await writeFile(
    file,
    stringify({
      site: resolve('config/demo-site.yaml'),
      nodes: { n1: { api: `127.0.0.1:${await freePort()}` } },
      dataDir: join(root!.dir, `${name}-var`),
      ...doc,
    }),
  );
  return file;
}

describe('coolctl run: start-up failures', () => {
  it('etcd unreachable: exit 1, naming cluster.etcd, its file, the addresses and what to check', async () => {
    const port = await freePort(); // nothing listens there
    const config = await writeConfig('no-etcd', {
      cluster: {
        etcd: [`http://127.0.0.1:${port}`],
        prefix: '/coolctl/start-errors',
        etcdCallTimeoutMs: 500,
      },
    });
    const r = await run(config, 90_000);
    expect(r.status, r.out).toBe(1);
    expect(r.out).toContain(
      `coolctl: cannot use etcd: cluster.etcd in ${config} names http://127.0.0.1:${port}`,
    );
    expect(r.out).toMatch(/tried for \d+ s, last: etcd \w+: /);
    expect(r.out).toMatch(/Check that the etcd members run and listen on those addresses/);
  }, 120_000);

  describe('with an etcd whose cluster has no user yet', () => {
    let etcd: EtcdCluster | undefined;
    beforeAll(async () => {
      etcd = await startEtcdCluster({ size: 1 });
    }, 60_000);
    afterAll(async () => {
      await etcd?.stop();
    });

    it('a bootstrap admin file that is gone is the operator’s to fix: exit 2, saying which setting', async () => {
      const config = await writeConfig('no-admin', {
        cluster: {
          etcd: etcd!.clientConfig(),
          prefix: '/coolctl/start-errors-admin',
          leaseTtlS: 2,
          keepaliveIntervalMs: 300,
          safetyMarginMs: 400,
          etcdCallTimeoutMs: 500,
        },
        api: { bootstrapAdminFile: 'admin-gone.yaml' },
      });
      const r = await run(config, 60_000);
      expect(r.status, r.out).toBe(2);
      expect(r.out).toMatch(/configuration is not valid — nothing was started/);
      expect(r.out).toMatch(
        /\/api\/bootstrapAdminFile: the cluster has no API user yet, so this node creates the first admin from it, but cannot read .*admin-gone\.yaml \(ENOENT\)/,
      );
    }, 90_000);
  });
});
