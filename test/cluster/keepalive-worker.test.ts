// The keepalive worker's life: one that dies is reported as 'lost' and replaced (the new one revokes
// the old lease from the lease-id file, then grants a fresh one); stop() revokes the lease and ends
// the thread; and the thread never keeps a process alive on its own. Real etcd.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import { EtcdSession, type SessionLease } from '../../src/cluster/etcd/etcd-session.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { sessionSettings } from '../support/etcd-cluster.ts';
import { REPO_ROOT } from '../support/repo.ts';
import { TEST_TIMING, useEtcdFixture } from './harness.ts';

const fx = useEtcdFixture('keepalive-worker');
let session: EtcdSession | undefined;
let seq = 0;

afterEach(async () => {
  await session?.stop();
  session = undefined;
});

async function leaseTtl(id: string): Promise<number> {
  const client = createEtcdClient({ ...fx.etcd.clientOptions(), callTimeoutMs: 1_000 });
  try {
    return Number((await client.leaseClient.leaseTimeToLive({ ID: id, keys: false })).TTL);
  } finally {
    client.close();
  }
}

function newSession(): EtcdSession {
  return new EtcdSession({
    ...sessionSettings(fx.etcd.clientOptions()),
    node: 'n1',
    ttlS: TEST_TIMING.leaseTtlS,
    keepaliveIntervalMs: TEST_TIMING.keepaliveIntervalMs,
    safetyMarginMs: TEST_TIMING.safetyMarginMs,
    callTimeoutMs: TEST_TIMING.etcdCallTimeoutMs,
    dataDir: join(fx.root.dir, `s-${++seq}`),
    logger: quietLogger,
  });
}

describe('keepalive worker', () => {
  it('a worker that dies is reported as lost; a new one revokes that lease and grants a fresh one', async () => {
    session = newSession();
    const first = await session.start(AbortSignal.timeout(10_000));
    expect(session.guard.mayAct()).toBe(true);
    const lost: string[] = [];
    const leases: SessionLease[] = [];
    session.on('lost', (r: string) => lost.push(r));
    session.on('lease', (l: SessionLease) => leases.push(l));
    // The thread dies as an uncaught error or an OOM would end it.
    await (session as unknown as { worker: Worker }).worker.terminate();
    expect(session.guard.mayAct()).toBe(false);
    expect(lost).toEqual([expect.stringMatching(/keepalive worker exited/)]);
    await waitFor('a fresh lease', () => leases.length === 1 && session!.guard.mayAct());
    expect(leases[0]!.id).not.toBe(first.id);
    expect(await leaseTtl(first.id)).toBe(-1);
    expect(await leaseTtl(leases[0]!.id)).toBeGreaterThan(0);
  });

  it('stop() revokes the lease and ends the thread', async () => {
    session = newSession();
    const lease = await session.start(AbortSignal.timeout(10_000));
    const worker = (session as unknown as { worker: Worker }).worker;
    let exited = false;
    worker.once('exit', () => {
      exited = true;
    });
    await session.stop();
    expect(exited).toBe(true);
    expect(session.guard.mayAct()).toBe(false);
    expect(await leaseTtl(lease.id)).toBe(-1);
  });

  it('does not keep a process alive: a process whose main loop has nothing left exits with the lease held', async () => {
    const opts = {
      ...sessionSettings(fx.etcd.clientOptions()),
      node: 'n1',
      ttlS: TEST_TIMING.leaseTtlS,
      keepaliveIntervalMs: TEST_TIMING.keepaliveIntervalMs,
      safetyMarginMs: TEST_TIMING.safetyMarginMs,
      callTimeoutMs: TEST_TIMING.etcdCallTimeoutMs,
      dataDir: join(fx.root.dir, `s-${++seq}`),
    };
    const script = `
      import { pino } from 'pino';
      import { EtcdSession } from './src/cluster/etcd/etcd-session.ts';
      import { reviveBytes } from './test/support/etcd-cluster.ts';
      const opts = JSON.parse(${JSON.stringify(JSON.stringify(opts))}, reviveBytes);
      const s = new EtcdSession({ ...opts, logger: pino({ level: 'silent' }) });
      console.log((await s.start(AbortSignal.timeout(10_000))).id);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    try {
      await waitFor('the process exits on its own', () => child.exitCode !== null, { timeoutMs: 8_000 });
    } finally {
      child.kill('SIGKILL');
    }
    // grpc-js names the TLS server by the IP it dials, and Node warns about that once (DEP0123):
    // a secured etcd on 127.0.0.1 says so on stderr; nothing else may.
    const dep0123 = /^\(node:\d+\) \[DEP0123\].*\n\(Use `node --trace-deprecation.*\n?/m;
    expect(err.replace(dep0123, '')).toBe('');
    expect(child.exitCode).toBe(0);
    expect(out.trim()).toMatch(/^\d+$/);
  });
});
