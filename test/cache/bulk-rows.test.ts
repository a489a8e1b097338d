// A 10 MB row next to a lease: the leader process broadcasts 10 MB rows to two peer processes while
// its etcd lease keepalive runs on the same event loop against a real 3-member etcd. The rows arrive
// intact, the lease guard never lapses, and keepalives keep their pace (their round trips are
// printed; `npm run bench -- cache` holds the figures and the ≤ 2× target).
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { percentile } from '../../bench/lib/stats.ts';
import { StateCache } from '../../src/cache/state-cache.ts';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import { EtcdSession } from '../../src/cluster/etcd/etcd-session.ts';
import { useEtcdFixture } from '../cluster/harness.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { sessionSettings } from '../support/etcd-cluster.ts';

const PEER = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'peer-process.ts');
const fx = useEtcdFixture('bulk-rows');
const children: ChildProcess[] = [];

interface RowLine {
  ev: string;
  port?: number;
  group?: string;
  seq?: number;
  sha256?: string;
}

function startPeer(node: string, secret: Buffer): { lines: RowLine[]; proc: ChildProcess } {
  const proc = spawn(
    process.execPath,
    [PEER, JSON.stringify({ node, cluster: '/coolctl/bulk', secretHex: secret.toString('hex') })],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  children.push(proc);
  const lines: RowLine[] = [];
  let buf = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      lines.push(JSON.parse(buf.slice(0, i)) as RowLine);
      buf = buf.slice(i + 1);
    }
  });
  return { lines, proc };
}

afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
});

describe('big rows and the lease', () => {
  it('10 MB rows reach two peer processes intact while the lease keepalive keeps its pace', async () => {
    const secret = randomBytes(32);
    const peers = ['p1', 'p2'].map((n) => ({ node: n, ...startPeer(n, secret) }));
    const ports = await Promise.all(
      peers.map((p) => waitFor(`${p.node} ready`, () => p.lines.find((l) => l.ev === 'ready')?.port)),
    );
    const writer = new StateCache({
      node: 'leader',
      cluster: '/coolctl/bulk',
      secret,
      listen: { host: '127.0.0.1', port: 0 },
      logger: quietLogger,
    });
    await writer.start();
    writer.setMembers(peers.map((p, i) => ({ node: p.node, peerUrl: `tcp://127.0.0.1:${ports[i]}` })));
    await waitFor('links up', () => writer.peers().every((p) => p.up));

    const client = createEtcdClient({ ...fx.etcd.clientOptions(), callTimeoutMs: 500 });
    const session = new EtcdSession({
      ...sessionSettings(fx.etcd.clientOptions()),
      node: 'leader',
      ttlS: 2,
      keepaliveIntervalMs: 300,
      safetyMarginMs: 400,
      callTimeoutMs: 500,
      dataDir: fx.root.dir,
      logger: quietLogger,
    });
    let phase: 'idle' | 'bulk' = 'idle';
    const rtt = { idle: [] as number[], bulk: [] as number[] };
    let lapses = 0;
    session.on('keepalive', (s: number) => rtt[phase].push(s * 1000));
    session.on('expired', () => lapses++);
    session.on('lost', () => lapses++);
    try {
      await session.start(AbortSignal.timeout(10_000));
      const bigs = [randomBytes(10 * 1024 * 1024), randomBytes(10 * 1024 * 1024)];
      const shas = bigs.map((b) => createHash('sha256').update(b).digest('hex'));
      await waitFor('10 idle keepalives', () => rtt.idle.length >= 10);
      phase = 'bulk';
      const t0 = performance.now();
      // 10 MB rows back to back, each delivered to both peers before the next, for 15 keepalives.
      let seq = 0;
      while (rtt.bulk.length < 15 && seq < 60) {
        seq++;
        const i = seq % 2;
        writer.write('bulk', 1, bigs[i]!);
        await waitFor(
          `row ${seq} intact at both peers`,
          () =>
            peers.every((p) => p.lines.some((l) => l.ev === 'row' && l.seq === seq && l.sha256 === shas[i])),
          { timeoutMs: 30_000, intervalMs: 5 },
        );
      }
      const bulkMs = performance.now() - t0;
      expect(lapses).toBe(0);
      expect(session.guard.mayAct()).toBe(true);
      // Keepalives went out at their interval throughout (a blocked loop would have skipped them).
      expect(rtt.bulk.length).toBeGreaterThanOrEqual(Math.floor((bulkMs / 300) * 0.7));
      process.stdout.write(
        `keepalive p99 idle ${percentile(rtt.idle, 99).toFixed(1)} ms, during ${seq} × 10 MB (${Math.round(bulkMs)} ms) ${percentile(rtt.bulk, 99).toFixed(1)} ms over ${rtt.bulk.length} keepalives\n`,
      );
    } finally {
      await session.stop().catch(() => {});
      client.close();
      await writer.stop();
    }
  }, 90_000);
});
