// A one-node controller config for daemon tests: the demo site (no simulator needed: its units stay
// unreachable, the loops still run), the test's etcd cluster (its `clientConfig()`: plain or secured
// as the suite runs), a free API port, and the first admin's bootstrap file (mode 600); and
// `useOneNodeDaemon`, the fixture of a test file that runs one such daemon as a real process.
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { stringify } from 'yaml';
import type { EtcdSettings } from '../../src/config/link-secrets.ts';
import { tmpDir } from '../cluster/harness.ts';
import { type EtcdCluster, freePort, startEtcdCluster } from '../support/etcd-cluster.ts';

export async function writeOneNodeConfig(opts: {
  dir: string;
  etcd: EtcdSettings;
  prefix: string;
  periodMs?: number;
}): Promise<{ config: string; api: string; admin: { name: string; password: string; file: string } }> {
  const port = await freePort();
  const config = join(opts.dir, 'controller.yaml');
  const admin = { name: 'admin', password: 'one-node admin password', file: join(opts.dir, 'admin.yaml') };
  await writeFile(admin.file, stringify({ name: admin.name, password: admin.password }), { mode: 0o600 });
  await writeFile(
    config,
    stringify({
      site: resolve('config/demo-site.yaml'),
      cluster: {
        etcd: opts.etcd,
        prefix: opts.prefix,
        leaseTtlS: 2,
        keepaliveIntervalMs: 300,
        safetyMarginMs: 400,
        etcdCallTimeoutMs: 500,
      },
      nodes: { n1: { api: `127.0.0.1:${port}` } },
      dataDir: join(opts.dir, 'var'),
      api: { bootstrapAdminFile: admin.file },
      ...(opts.periodMs ? { control: { periodMs: opts.periodMs } } : {}),
    }),
  );
  return { config, api: `http://127.0.0.1:${port}`, admin };
}

export interface OneNodeDaemon {
  /** The file's tmp dir (removed after its tests). */
  dir(): string;
  etcd(): EtcdCluster;
  /** Starts `coolctl run --node n1` on `config`; its stdout and stderr collect in `log()`. */
  run(config: string): ChildProcess;
  log(): string;
}

/**
 * One single-member etcd cluster and a tmp dir for the test file, and the daemon it runs: stopped
 * (SIGTERM, then SIGKILL after 10 s) and everything removed after the file's tests.
 */
export function useOneNodeDaemon(name: string): OneNodeDaemon {
  let etcd: EtcdCluster | undefined;
  let root: { dir: string; cleanup: () => Promise<void> } | undefined;
  let daemon: ChildProcess | undefined;
  let log = '';
  beforeAll(async () => {
    root = await tmpDir(name);
    etcd = await startEtcdCluster({ size: 1 });
  }, 60_000);
  afterAll(async () => {
    if (daemon && daemon.exitCode === null) {
      const exited = new Promise((r) => daemon!.once('exit', r));
      daemon.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000).unref())]);
      if (daemon.exitCode === null) daemon.kill('SIGKILL');
    }
    await etcd?.stop();
    await root?.cleanup();
  });
  return {
    dir: () => root!.dir,
    etcd: () => etcd!,
    run: (config) => {
      daemon = spawn(process.execPath, ['src/cli.ts', 'run', '--config', config, '--node', 'n1'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      daemon.stdout!.on('data', (c) => {
        log += c;
      });
      daemon.stderr!.on('data', (c) => {
        log += c;
      });
      return daemon;
    },
    log: () => log,
  };
}
