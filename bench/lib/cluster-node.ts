// One controller node of bench/cluster.ts in its own process, without devices: EtcdLeadership for
// every group plus the state cache's peer channel, wired as src/daemon/controller.ts wires them
// (members → cache peers, the node's peer URL in its member record), and — standing in for the
// group drivers — each group it leads writes a process-state row to the cache every control period.
// Role changes go to the bench over IPC; the node exits when the bench goes away.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { StateCache } from '../../src/cache/state-cache.ts';
import { EtcdLeadership } from '../../src/cluster/etcd/etcd-leadership.ts';
import type { Member, RoleChange } from '../../src/cluster/leadership.ts';
import { processState } from './cache-rows.ts';
import type {
  NodeMessage,
  NodeRequest,
  NodeStartArgs,
  NodeStats,
  RoleEvent,
} from './cluster-node-protocol.ts';

/** Row writes are spread over this many slots per control period, as independent drivers would be. */
const ROW_SLOTS = 10;

let leadership: EtcdLeadership | undefined;
let cache: StateCache | undefined;
let rowTimer: NodeJS.Timeout | undefined;
let nodeName = '';
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
let cpuAt = process.cpuUsage();
let pendingRoles: RoleEvent[] = [];

function send(m: NodeMessage): void {
  if (process.connected) process.send?.(m);
}

function queueRole(c: RoleChange): void {
  if (pendingRoles.length === 0)
    setImmediate(() => {
      const roles = pendingRoles;
      pendingRoles = [];
      send({ roles, node: nodeName });
    });
  pendingRoles.push({ group: c.group, from: c.from, to: c.to, atMs: Date.now() });
}

async function start(a: NodeStartArgs): Promise<{ peerPort: number }> {
  nodeName = a.node;
  await mkdir(a.dataDir, { recursive: true });
  const logger = pino(
    { level: 'info', base: { node: a.node } },
    pino.destination({ dest: join(a.dataDir, 'node.log'), sync: false }),
  );
  const registry = new Registry();
  const t = a.timing;
  cache = new StateCache({
    node: a.node,
    cluster: a.prefix,
    secret: Buffer.from(a.secretHex, 'hex'),
    listen: { host: '127.0.0.1', port: 0 },
    logger,
    registry,
    pingIntervalMs: t.keepaliveIntervalMs,
    idleTimeoutMs: t.leaseTtlS * 3000,
    connectTimeoutMs: t.etcdCallTimeoutMs,
  });
  await cache.start();
  const c = cache;
  // Nine nodes starting at once on a shared 2-core machine can miss start()'s own budget (one TTL
  // plus four call timeouts); a daemon would be restarted by systemd, so the bench starts it again.
  let l: EtcdLeadership | undefined;
  for (let attempt = 1; !l; attempt++) {
    const candidate = new EtcdLeadership({
      node: a.node,
      apiUrl: `http://${a.node}.test`,
      peerUrl: `tcp://127.0.0.1:${c.port}`,
      groups: a.groups,
      etcd: { hosts: a.etcdHosts },
      prefix: a.prefix,
      ...t,
      dataDir: a.dataDir,
      logger,
      registry: attempt === 1 ? registry : new Registry(),
    });
    candidate.on('members', (members: Member[]) => c.setMembers(members));
    candidate.on('role', queueRole);
    try {
      await candidate.start(AbortSignal.timeout(Math.max(10_000, t.leaseTtlS * 3000)));
      l = candidate;
    } catch (err) {
      await candidate.stop().catch(() => {});
      if (attempt >= 3) throw err;
      logger.warn({ err, attempt }, 'bench node: leadership start failed; starting it again');
    }
  }
  leadership = l;
  c.setMembers(l.members());
  if (a.rowPeriodMs > 0) {
    const index = new Map(a.groups.map((g, i) => [g, i]));
    let tick = 0;
    rowTimer = setInterval(() => {
      const slot = tick % ROW_SLOTS;
      const n = Math.floor(tick / ROW_SLOTS);
      tick++;
      for (const g of l.groups()) {
        const i = index.get(g.group)!;
        if (i % ROW_SLOTS !== slot) continue;
        const fence = l.fence(g.group);
        if (fence) c.write(g.group, fence.epoch, processState(i, n));
      }
    }, a.rowPeriodMs / ROW_SLOTS);
  }
  loopDelay.enable();
  return { peerPort: c.port };
}

function stats(reset: boolean): NodeStats {
  const mem = process.memoryUsage();
  const cpu = process.cpuUsage(cpuAt);
  const s: NodeStats = {
    rssMb: mem.rss / 2 ** 20,
    heapUsedMb: mem.heapUsed / 2 ** 20,
    cpuUs: cpu.user + cpu.system,
    loopDelayP99Ms: loopDelay.count > 0 ? loopDelay.percentile(99) / 1e6 : 0,
    loopDelayMaxMs: loopDelay.count > 0 ? loopDelay.max / 1e6 : 0,
    leading: leadership?.groups().filter((g) => g.role === 'leader').length ?? 0,
    candidates: leadership?.groups().filter((g) => g.role === 'candidate').length ?? 0,
    members: leadership?.members().length ?? 0,
    rows: cache?.rowCount ?? 0,
    peersUp: cache?.peers().filter((p) => p.up).length ?? 0,
  };
  if (reset) {
    cpuAt = process.cpuUsage();
    loopDelay.reset();
  }
  return s;
}

async function stop(): Promise<void> {
  clearInterval(rowTimer);
  await leadership?.stop().catch(() => {});
  await cache?.stop().catch(() => {});
}

process.on('message', (req: NodeRequest) => {
  const reply = (p: Promise<unknown> | unknown): void => {
    Promise.resolve(p).then(
      (result) => send({ id: req.id, ok: true, result }),
      (err: unknown) => send({ id: req.id, ok: false, error: withCauses(err) }),
    );
  };
  switch (req.cmd) {
    case 'start':
      return reply(start(req.args));
    case 'stats':
      return reply(stats(req.reset));
    case 'groups':
      return reply(leadership?.setGroups(req.groups));
    case 'stop':
      return reply(
        stop().then(() => {
          setImmediate(() => process.exit(0));
        }),
      );
  }
});
// The bench went away (finished or crashed): nothing may linger.
process.on('disconnect', () => {
  void stop().finally(() => process.exit(0));
  setTimeout(() => process.exit(1), 3000).unref();
});

function withCauses(err: unknown): string {
  const parts: string[] = [];
  for (let e = err, i = 0; e instanceof Error && i < 5; e = e.cause, i++) parts.push(e.message);
  return parts.join(' ← ');
}
