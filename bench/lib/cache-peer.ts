// A peer node of bench/cache.ts in its own process: a StateCache that receives the writer's rows
// and acks them (the cache's own ACK), and, for the baseline, an etcd watch whose every put is cached
// the same way and acked over a PeerChannel of its own — the same TLS-PSK link, framing and send pump
// as the cache's ACK, so only the delivery path (our peer channel vs. etcd put → watch) differs.
// Driven over IPC (cache-peer-protocol.ts); exits when the writer goes away.
import type { Etcd3, Watcher } from 'etcd3';
import { pino } from 'pino';
import { FrameType } from '../../src/cache/frames.ts';
import { PeerChannel } from '../../src/cache/peer-channel.ts';
import type { PeerConnection } from '../../src/cache/peer-connection.ts';
import { StateCache } from '../../src/cache/state-cache.ts';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import type { PeerPorts, PeerReply, PeerRequest, PeerStartArgs, PeerStats } from './cache-peer-protocol.ts';

const BIG_ROW_BYTES = 1024 * 1024;
const logger = pino({ level: 'warn' }, pino.destination(2));

const stats: PeerStats = {
  applied: 0,
  appliedBytes: 0,
  bigApplied: 0,
  watched: 0,
  peersUp: 0,
  ackLinks: 0,
  cpuUs: 0,
};
let cache: StateCache | undefined;
let acks: PeerChannel | undefined;
const ackLinks = new Set<PeerConnection>();
let etcd: Etcd3 | undefined;
let watcher: Watcher | undefined;
const watchedRows = new Map<string, Buffer>();

async function start(a: PeerStartArgs): Promise<PeerPorts> {
  const secret = Buffer.from(a.secretHex, 'hex');
  const common = {
    node: a.node,
    cluster: a.cluster,
    secret,
    listen: { host: '127.0.0.1', port: 0 },
    logger,
  };
  cache = new StateCache(common);
  cache.on('row', (row: { body: Buffer }) => {
    stats.applied++;
    stats.appliedBytes += row.body.length;
    if (row.body.length >= BIG_ROW_BYTES) stats.bigApplied++;
  });
  await cache.start();
  acks = new PeerChannel({
    ...common,
    cluster: `${a.cluster}/baseline`,
    chunkBytes: 64 * 1024,
    idleTimeoutMs: 2000,
    pingIntervalMs: 500,
    connectTimeoutMs: 1000,
  });
  acks.on('incoming', (conn: PeerConnection) => {
    ackLinks.add(conn);
    conn.once('close', () => ackLinks.delete(conn));
  });
  await acks.start();
  return { port: cache.port, basePort: acks.port };
}

async function watch(hosts: string[], prefix: string): Promise<void> {
  etcd = createEtcdClient({ hosts, callTimeoutMs: 2000 });
  watcher = await etcd.watch().prefix(prefix).create();
  watcher.on('error', (err) => logger.error({ err }, 'baseline watch error'));
  watcher.on('put', (kv) => {
    // Value: "<seq> <row JSON>" — the seq says which write is acked, like a ROW frame's header.
    const value = kv.value;
    const space = value.indexOf(32);
    const seq = Number(value.toString('latin1', 0, space));
    const group = kv.key.toString('utf8', Buffer.byteLength(prefix));
    watchedRows.set(group, Buffer.from(value.subarray(space + 1)));
    stats.watched++;
    for (const conn of ackLinks) conn.send(FrameType.ACK, { group, epoch: 1, seq });
  });
}

function currentStats(): PeerStats {
  stats.peersUp = cache ? cache.peers().filter((p) => p.up).length : 0;
  stats.ackLinks = [...ackLinks].filter((c) => c.isOpen).length;
  const cpu = process.cpuUsage();
  stats.cpuUs = cpu.user + cpu.system;
  return { ...stats };
}

async function stop(): Promise<void> {
  await watcher?.cancel().catch(() => {});
  etcd?.close();
  await cache?.stop();
  await acks?.stop();
}

async function handle(req: PeerRequest): Promise<unknown> {
  switch (req.cmd) {
    case 'start':
      return start(req.args);
    case 'members':
      cache!.setMembers(req.args);
      return null;
    case 'watch':
      return watch(req.args.hosts, req.args.prefix);
    case 'stats':
      return currentStats();
    case 'stop':
      return stop();
  }
}

process.on('message', (req: PeerRequest) => {
  handle(req).then(
    (result) => reply({ id: req.id, ok: true, result: result ?? null }, req.cmd === 'stop'),
    (err: unknown) => reply({ id: req.id, ok: false, error: String((err as Error)?.stack ?? err) }, false),
  );
});
// The writer is gone (crashed, killed): nothing to serve.
process.on('disconnect', () => process.exit(0));

function reply(r: PeerReply, thenExit: boolean): void {
  process.send!(r, undefined, undefined, () => {
    if (thenExit) process.exit(0);
  });
}
