// The baseline of the failover bench: the same kill -9 with two `etcdctl elect` processes on the
// same etcd cluster. `etcdctl elect` (3.4) has no TTL flag: its session lease is always 60 s. So
// it reaches etcd through a proxy that rewrites its LeaseGrant TTL to ours — a 7-byte gRPC message
// (no compression, length 2, field 1 = 60) becomes the same message with our TTL — and every
// trial checks with etcd that the election key's lease was granted with our TTL before it counts.
import { type ChildProcess, spawn } from 'node:child_process';
import { BlackholeProxy } from '../../scripts/lib/blackhole-proxy.ts';
import { ETCDCTL_BIN, etcdctl } from '../../test/support/etcd-cluster.ts';

const DEFAULT_SESSION_TTL_S = 60;

/** gRPC frame prefix (uncompressed, length 2) + LeaseGrantRequest{TTL: 60}. */
const GRANT_60 = Buffer.from([0x00, 0x00, 0x00, 0x00, 0x02, 0x08, DEFAULT_SESSION_TTL_S]);

export function rewriteLeaseGrantTtl(ttlS: number): (chunk: Buffer) => Buffer {
  if (!Number.isInteger(ttlS) || ttlS < 1 || ttlS > 127)
    throw new Error('the rewrite keeps the varint one byte: 1 ≤ TTL ≤ 127');
  return (chunk) => {
    let at = chunk.indexOf(GRANT_60);
    if (at < 0) return chunk;
    const out = Buffer.from(chunk);
    while (at >= 0) {
      out[at + 6] = ttlS;
      at = out.indexOf(GRANT_60, at + 7);
    }
    return out;
  };
}

export interface EtcdctlBaseline {
  proxy: BlackholeProxy;
  endpoints: string[];
  close(): Promise<void>;
}

/** One proxy (rewriting the session TTL) in front of one etcd member for both etcdctl processes. */
export async function startBaseline(etcdClientUrl: string, ttlS: number): Promise<EtcdctlBaseline> {
  const u = new URL(etcdClientUrl);
  const proxy = await BlackholeProxy.start({
    target: { host: u.hostname, port: Number(u.port) },
    clientToUpstream: rewriteLeaseGrantTtl(ttlS),
  });
  return { proxy, endpoints: [proxy.address], close: () => proxy.close() };
}

interface Elector {
  child: ChildProcess;
  /** Resolves with the wall time the process printed that it leads. */
  elected: Promise<number>;
}

function elect(endpoints: string[], name: string, proposal: string): Elector {
  const child = spawn(ETCDCTL_BIN, [`--endpoints=${endpoints.join(',')}`, 'elect', name, proposal], {
    env: { ...process.env, ETCDCTL_API: '3' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const elected = new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      const at = Date.now();
      out += d.toString();
      // etcdctl prints the election key, then the proposal, once it leads.
      if (out.split('\n').includes(proposal)) resolve(at);
    });
    child.once('exit', (code, sig) =>
      reject(new Error(`etcdctl elect ${proposal} exited (${code ?? sig}) before leading: ${out}`)),
    );
  });
  elected.catch(() => {});
  child.stderr!.resume();
  return { child, elected };
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>(
        (_, rej) => (t = setTimeout(() => rej(new Error(`timed out after ${ms} ms: ${what}`)), ms)),
      ),
    ]);
  } finally {
    clearTimeout(t);
  }
}

/** The TTL etcd granted the lease holding `key` (seconds), read with etcdctl. */
async function grantedTtlS(etcdEndpoints: string[], name: string): Promise<number> {
  // Lease ids are 64-bit: read them from the JSON text, not through a lossy JSON number.
  const raw = await etcdctl(etcdEndpoints, ['get', name, '--prefix', '-w', 'json']);
  const lease = /"lease":(\d+)/.exec(raw)?.[1];
  if (lease === undefined) throw new Error(`no lease on election ${name}`);
  const hex = BigInt(lease).toString(16);
  const ttl = JSON.parse(await etcdctl(etcdEndpoints, ['lease', 'timetolive', hex, '-w', 'json'])) as {
    'granted-ttl'?: number;
  };
  return Number(ttl['granted-ttl']);
}

export interface BaselineTrial {
  failoverMs: number;
  grantedTtlS: number;
}

/**
 * One trial: A leads `name`, B campaigns behind it, A is killed -9; the failover is the time from
 * the kill to B printing that it leads. Both processes are killed before it returns.
 */
export async function baselineTrial(
  b: EtcdctlBaseline,
  etcdEndpoints: string[],
  name: string,
  ttlS: number,
): Promise<BaselineTrial> {
  const a = elect(b.endpoints, name, 'A');
  let bb: Elector | undefined;
  try {
    await within(a.elected, 10_000, 'etcdctl elect A to lead');
    const granted = await grantedTtlS(etcdEndpoints, name);
    bb = elect(b.endpoints, name, 'B');
    // B must be queued (its key written) before A dies, or B would simply win a free election.
    const deadline = Date.now() + 5000;
    for (;;) {
      const got = JSON.parse(
        await etcdctl(etcdEndpoints, ['get', name, '--prefix', '--keys-only', '-w', 'json']),
      ) as { kvs?: unknown[] };
      if ((got.kvs?.length ?? 0) >= 2) break;
      if (Date.now() > deadline) throw new Error('etcdctl elect B never queued');
      await new Promise((r) => setTimeout(r, 20));
    }
    const t0 = Date.now();
    a.child.kill('SIGKILL');
    const at = await within(bb.elected, ttlS * 1000 + 70_000, 'etcdctl elect B to lead');
    return { failoverMs: at - t0, grantedTtlS: granted };
  } finally {
    a.child.kill('SIGKILL');
    bb?.child.kill('SIGKILL');
  }
}
