// One data dir, one live node: a second process pointed at the same dataDir is refused at start and
// names the holder, while the first keeps its lease; a node restarted on its own dataDir still revokes
// its previous lease; a lease-id file that names no node (the old shared layout) is never revoked.
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DataDirLock } from '../../src/cluster/data-dir-lock.ts';
import { ClusterErrorCodes } from '../../src/cluster/errors.ts';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import type { EtcdLeadership } from '../../src/cluster/etcd/etcd-leadership.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { ChildNode } from './child-node.ts';
import { makeNode, TEST_TIMING, useEtcdFixture } from './harness.ts';

const GROUPS = ['g1', 'g2'];
const fx = useEtcdFixture('data-dir');
let child: ChildNode | undefined;
let inProc: EtcdLeadership[] = [];
let seq = 0;

afterEach(async () => {
  await child?.kill();
  child = undefined;
  await Promise.all(inProc.map((n) => n.stop()));
  inProc = [];
});

/** Remaining TTL etcd reports for a lease (−1: gone). */
async function leaseTtl(id: string): Promise<number> {
  const client = createEtcdClient({ ...fx.etcd.clientOptions(), callTimeoutMs: 1_000 });
  try {
    const res = await client.leaseClient.leaseTimeToLive({ ID: id, keys: false });
    return Number(res.TTL);
  } finally {
    client.close();
  }
}

/** Groups the child stopped being able to write after it first could (its fixture prints null first). */
function fencedAfterLeading(c: ChildNode): string[] {
  const led = new Set<string>();
  const fenced: string[] = [];
  for (const l of c.lines) {
    if (l.ev !== 'fence' || !l.group) continue;
    if (l.epoch !== null && l.epoch !== undefined) led.add(l.group);
    else if (led.has(l.group)) fenced.push(l.group);
  }
  return fenced;
}

async function startChild(node: string, dataDir: string, prefix: string, timing = {}): Promise<ChildNode> {
  const c = new ChildNode({
    node,
    apiUrl: `http://${node}.test`,
    groups: GROUPS,
    etcd: fx.etcd.clientOptions(),
    prefix,
    dataDir,
    ...TEST_TIMING,
    ...timing,
  });
  await c.ready();
  await waitFor(`${node} leads both groups`, () => c.writable().size === GROUPS.length, {
    timeoutMs: 10_000,
  });
  return c;
}

describe('data dir: one live node each', () => {
  it('a second process on the same dataDir is refused, names the holder, and the first keeps its lease', async () => {
    const prefix = `/coolctl-test/data-dir-${++seq}`;
    const shared = join(fx.root.dir, `shared-${seq}`);
    child = await startChild('n1', shared, prefix);
    const leaseId = (await readFile(join(shared, 'lease-id.n1'), 'utf8')).trim();

    const n2 = makeNode(
      'n2',
      { etcd: fx.etcd.clientOptions(), prefix, groups: GROUPS, dataRoot: fx.root.dir },
      {
        dataDir: shared,
      },
    );
    inProc.push(n2);
    const err = await n2.start().then(
      () => null,
      (e: unknown) => e as Error & { code?: string },
    );
    expect(err?.code).toBe(ClusterErrorCodes.DATA_DIR_IN_USE);
    expect(err?.message).toContain('node n1');
    expect(err?.message).toContain(`pid ${child.proc.pid}`);

    // The old code revoked the lease it found in the shared dir during start: n1's would be gone now.
    expect(await leaseTtl(leaseId)).toBeGreaterThan(0);
    expect(fencedAfterLeading(child)).toEqual([]);
    expect(child.writable().size).toBe(GROUPS.length);
  });

  it('a node restarted on its own dataDir takes over its stale lock and revokes its previous lease', async () => {
    // A long TTL makes the revoke plain: without it the old lease would live on for ≈ 6 s.
    const timing = { leaseTtlS: 6, keepaliveIntervalMs: 500, safetyMarginMs: 1000, etcdCallTimeoutMs: 1000 };
    const prefix = `/coolctl-test/data-dir-${++seq}`;
    const dir = join(fx.root.dir, `own-${seq}`);
    child = await startChild('n1', dir, prefix, timing);
    const oldLease = (await readFile(join(dir, 'lease-id.n1'), 'utf8')).trim();
    await child.kill(); // SIGKILL: the lock file stays behind with a dead pid

    const again = makeNode(
      'n1',
      { etcd: fx.etcd.clientOptions(), prefix, groups: GROUPS, dataRoot: fx.root.dir },
      {
        ...timing,
        dataDir: dir,
      },
    );
    inProc.push(again);
    await again.start();
    expect(await leaseTtl(oldLease)).toBe(-1);
    const lock = JSON.parse(await readFile(join(dir, 'coolctl.lock'), 'utf8')) as {
      node: string;
      pid: number;
    };
    expect(lock).toMatchObject({ node: 'n1', pid: process.pid });
  });

  it('a lease-id file that names no node (the old shared layout) is never revoked', async () => {
    const prefix = `/coolctl-test/data-dir-${++seq}`;
    const d1 = join(fx.root.dir, `legacy-${seq}-n1`);
    const d2 = join(fx.root.dir, `legacy-${seq}-n2`);
    child = await startChild('n1', d1, prefix);
    const n1Lease = (await readFile(join(d1, 'lease-id.n1'), 'utf8')).trim();
    // What the old code left when n1 and n2 shared /var/lib/coolctl: n1's live lease, no node name.
    await mkdir(d2, { recursive: true });
    await writeFile(join(d2, 'lease-id'), `${n1Lease}\n`);

    const n2 = makeNode(
      'n2',
      { etcd: fx.etcd.clientOptions(), prefix, groups: GROUPS, dataRoot: fx.root.dir },
      {
        dataDir: d2,
      },
    );
    inProc.push(n2);
    await n2.start();
    expect(await leaseTtl(n1Lease)).toBeGreaterThan(0);
    expect(fencedAfterLeading(child)).toEqual([]);
    await expect(readFile(join(d2, 'lease-id'), 'utf8')).rejects.toThrow(/ENOENT/);
  });
});

describe('DataDirLock', () => {
  it('takes over the lock of a process that is gone, and refuses one that lives', async () => {
    const dir = join(fx.root.dir, `lock-${++seq}`);
    await mkdir(dir, { recursive: true });
    const gone = spawnSync(process.execPath, ['-e', '0']).pid!;
    await writeFile(join(dir, 'coolctl.lock'), `${JSON.stringify({ node: 'old', pid: gone })}\n`);
    const warned: string[] = [];
    const logger = Object.assign(Object.create(quietLogger), {
      warn: (_o: object, msg: string) => warned.push(msg),
    });
    const a = new DataDirLock(dir, 'a', logger);
    await a.acquire();
    expect(warned).toEqual(['took over the data dir lock of a process that is gone']);

    const b = new DataDirLock(dir, 'b', quietLogger);
    await expect(b.acquire()).rejects.toThrow(/in use by node a \(pid \d+/);
    await a.release();
    await b.acquire();
    await b.release();
  });

  it('a lock written before a reboot is stale whatever its pid', async () => {
    const dir = join(fx.root.dir, `lock-${++seq}`);
    await mkdir(dir, { recursive: true });
    // Our own pid, alive: only the boot id says the lock is from another boot.
    const stale = { node: 'old', pid: process.pid, bootId: 'not-this-boot', startTicks: '1' };
    await writeFile(join(dir, 'coolctl.lock'), `${JSON.stringify(stale)}\n`);
    const lock = new DataDirLock(dir, 'a', quietLogger);
    await lock.acquire();
    await lock.release();
  });
});
