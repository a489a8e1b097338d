// What an on-call engineer is told about a failing data dir, tried from outside on a tmpfs of its
// own: a node whose lease-id file cannot be written says so on /metrics (a gauge while it fails, a
// counter of failed writes) and clears the gauge once space returns; and a start that fails on the
// data dir names the data dir with its own code, never "cannot use etcd".
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { CoolctlError, ErrorCodes } from '../../src/errors.ts';
import { makeNode } from '../cluster/harness.ts';
import { mountTmpfs, type Tmpfs } from '../gateway/tmpfs.ts';
import { waitFor } from '../helpers.ts';
import { useOneNodeDaemon, writeOneNodeConfig } from './one-node.ts';

const fx = useOneNodeDaemon('data-dir-alerts');
const mounts: Tmpfs[] = [];
const appendOnly: string[] = [];
afterAll(() => {
  for (const d of appendOnly.splice(0)) execFileSync('chattr', ['-a', d]);
  for (const m of mounts.splice(0)) m.unmount();
});

function tmpfs(name: string, sizeKiB?: number): Tmpfs {
  const m = mountTmpfs(join(fx.dir(), name), sizeKiB);
  mounts.push(m);
  return m;
}

async function sample(registry: Registry, name: string): Promise<number | undefined> {
  const m = await registry.getSingleMetric(name)?.get();
  return m?.values[0]?.value;
}

describe('the lease-id file failing while the node runs', () => {
  it('coolctl_data_dir_failing says 1 while it fails and 0 again once written; each failed write counts', async () => {
    const disk = tmpfs('metrics');
    const registry = new Registry();
    const node = makeNode(
      'm1',
      { etcd: fx.etcd().clientOptions(), prefix: '/coolctl-test/dd-metrics', groups: ['g1'], dataRoot: '' },
      { dataDir: disk.dir, registry },
    );
    try {
      await node.start();
      await waitFor(
        'the first write to be seen',
        async () => (await sample(registry, 'coolctl_data_dir_failing')) === 0,
      );
      expect(await sample(registry, 'coolctl_data_dir_write_errors_total')).toBe(0);

      disk.fill();
      // etcd takes the lease away: the new one's id cannot be written on the full disk.
      const first = readFileSync(join(disk.dir, 'lease-id.m1'), 'utf8').trim();
      await fx.etcd().ctl(['lease', 'revoke', BigInt(first).toString(16)], { asRoot: true });
      await waitFor(
        'the gauge to say the data dir fails',
        async () => (await sample(registry, 'coolctl_data_dir_failing')) === 1,
        {
          timeoutMs: 15_000,
        },
      );
      // Tried again every second while it fails: the counter grows, the gauge stays.
      await waitFor(
        'a retry to be counted',
        async () => ((await sample(registry, 'coolctl_data_dir_write_errors_total')) ?? 0) >= 2,
        {
          timeoutMs: 10_000,
        },
      );
      expect(await sample(registry, 'coolctl_data_dir_failing')).toBe(1);

      disk.free();
      await waitFor(
        'the gauge to clear',
        async () => (await sample(registry, 'coolctl_data_dir_failing')) === 0,
        {
          timeoutMs: 10_000,
        },
      );
    } finally {
      await node.stop();
    }
  }, 60_000);
});

describe('a start that fails on the data dir', () => {
  it('the data dir lock on a full disk: COOLCTL_E_STARTUP naming the lock, not an etcd error', async () => {
    const disk = tmpfs('lock-full');
    disk.fill();
    const node = makeNode(
      'f1',
      { etcd: fx.etcd().clientOptions(), prefix: '/coolctl-test/dd-full', groups: ['g1'], dataRoot: '' },
      { dataDir: disk.dir },
    );
    const err = await node.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    await node.stop();
    expect(err).toBeInstanceOf(CoolctlError);
    expect((err as CoolctlError).code).toBe(ErrorCodes.STARTUP);
    expect((err as Error).message).toMatch(/cannot write the data dir lock .*coolctl\.lock: ENOSPC/);
    expect((err as Error).message).not.toMatch(/etcd/);
  }, 30_000);

  it('a stale lock that cannot be removed: `coolctl run` exits 1 naming the data dir and the errno, not etcd', async () => {
    const disk = tmpfs('stale-lock', 512); // room for the start's 64 KiB probe
    // A lock from another boot: stale, so the start takes it over, which means removing it. The
    // data dir is append-only (files can be made, none removed): the takeover's unlink fails.
    writeFileSync(
      join(disk.dir, 'coolctl.lock'),
      `${JSON.stringify({ node: 'n1', pid: 1, bootId: 'a-boot-long-gone', startTicks: null })}\n`,
    );
    execFileSync('chattr', ['+a', disk.dir]);
    appendOnly.push(disk.dir);
    const cfg = await writeOneNodeConfig({
      dir: fx.dir(),
      etcd: fx.etcd().clientConfig(),
      prefix: '/coolctl-test/dd-stale',
    });
    writeFileSync(
      cfg.config,
      readFileSync(cfg.config, 'utf8').replace(/dataDir: .*/, `dataDir: ${disk.dir}`),
    );
    const r = await startRefused(cfg.config);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/cannot use the data dir .*stale-lock: EPERM \(unlink .*coolctl\.lock\)/);
    expect(r.out).not.toMatch(/cannot use etcd|etcd not usable/);
  }, 90_000);
});

/** Runs `coolctl run` expected to refuse to start: exit code and output, bounded. */
function startRefused(config: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, ['src/cli.ts', 'run', '--config', config, '--node', 'n1'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const add = (d: Buffer): void => {
      out += d.toString();
    };
    proc.stdout.on('data', add);
    proc.stderr.on('data', add);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 60_000); // a loaded 2-core box starts slowly
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}
