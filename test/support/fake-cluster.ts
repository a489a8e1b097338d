// A cluster without etcd for API and dashboard tests: one `FakeCluster` says who leads each group
// (and with which epoch); each node's `FakeLeadership` reads it, so every node agrees, and a
// switchover moves the group and emits 'role' on both nodes as the real one does. `fakeUnit` is an
// air handler that answers at once and records every write with the node that sent it.
import { EventEmitter } from 'node:events';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { buildApp } from '../../src/api/app.ts';
import type { AuditTrail } from '../../src/api/audit/audit-trail.ts';
import type { GroupLeadership, Leadership, Member } from '../../src/cluster/leadership.ts';
import { NO_OPERATOR_STATE, type OperatorState } from '../../src/cluster/operator-state.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { GroupDriver } from '../../src/control/group-driver.ts';
import type { AhuCommandSet, DeviceIo } from '../../src/devices/device-io.ts';
import type { SensorView } from '../../src/sensors/sensor-store.ts';
import { quietLogger } from '../helpers.ts';
import { type ApiAuth, apiAuth, injectAs } from './api-auth.ts';
import { FakeAlarms } from './fake-alarms.ts';
import { MemoryKv } from './memory-kv.ts';

/** The demo site's four groups led two and two by node-a and node-b (the dashboard's browser tests). */
export const DEMO_TWO_NODES: Record<string, [string, number]> = {
  'zone-1': ['node-a', 41],
  'zone-2': ['node-a', 42],
  'zone-3': ['node-b', 57],
  'zone-4': ['node-b', 58],
};

/** The demo site's four groups all led by node-a (the one-node browser tests). */
export const DEMO_ONE_NODE: Record<string, [string, number]> = {
  'zone-1': ['node-a', 41],
  'zone-2': ['node-a', 42],
  'zone-3': ['node-a', 57],
  'zone-4': ['node-a', 58],
};

export class FakeCluster {
  readonly leaders = new Map<string, { leader: string | null; epoch: number | null }>();
  readonly members: Member[] = [];
  readonly nodes = new Map<string, FakeLeadership>();
  switched: { group: string; from: string; to: string }[] = [];
  /** Every relinquish, in order: the group went to the next node (or back to the sole one). */
  relinquished: { group: string; from: string; to: string; reason: string }[] = [];
  /** The cluster's users, tokens and audit trail, as etcd would hold them for every node. */
  readonly controlPlane = new MemoryKv();
  /** The cluster's alarms, as etcd would hold them for every node. */
  readonly alarms = new FakeAlarms();
  /** The operators' state per group, as etcd would hold it (pause, overrides). */
  readonly operators = new Map<string, OperatorState>();

  constructor(leaders: Record<string, [string | null, number | null]>) {
    for (const [g, [leader, epoch]] of Object.entries(leaders)) this.leaders.set(g, { leader, epoch });
  }

  node(name: string): FakeLeadership {
    const l = new FakeLeadership(name, this);
    this.nodes.set(name, l);
    return l;
  }

  /** Moves `group` to `to` with a new epoch; each node hears its own role change. */
  move(group: string, to: string | null, reason: string): void {
    const cur = this.leaders.get(group)!;
    const before = new Map([...this.nodes].map(([n, l]) => [n, l.roleOf(group)]));
    const epoch = to === null ? cur.epoch : (cur.epoch ?? 0) + 10;
    this.leaders.set(group, { leader: to, epoch });
    for (const [n, l] of this.nodes) {
      const from = before.get(n)!;
      const now = l.roleOf(group);
      if (from !== now) l.emit('role', { group, from, to: now, epoch, reason });
    }
  }
}

export class FakeLeadership extends EventEmitter implements Leadership {
  readonly node: string;
  healthy = true;
  private readonly cluster: FakeCluster;
  private readonly relinquishedLast = new Map<string, { reason: string; atMs: number }>();

  constructor(node: string, cluster: FakeCluster) {
    super();
    // A driver per group listens for role changes: a site of many groups has more than ten.
    this.setMaxListeners(0);
    this.node = node;
    this.cluster = cluster;
  }
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  roleOf(group: string): GroupLeadership['role'] {
    return this.cluster.leaders.get(group)?.leader === this.node ? 'leader' : 'follower';
  }
  groups(): GroupLeadership[] {
    return [...this.cluster.leaders].map(([group, l]) => ({
      group,
      role: this.roleOf(group),
      leader: l.leader,
      epoch: l.epoch,
      sinceMs: 1,
      relinquished: this.relinquishedLast.get(group) ?? null,
    }));
  }
  members(): Member[] {
    return this.cluster.members;
  }
  fence(group: string): { epoch: number; untilMs: number } | null {
    const l = this.cluster.leaders.get(group);
    return l?.leader === this.node && l.epoch !== null
      ? { epoch: l.epoch, untilMs: Number.POSITIVE_INFINITY }
      : null;
  }
  operator(group: string): OperatorState {
    return this.cluster.operators.get(group) ?? NO_OPERATOR_STATE;
  }
  async updateOperator(group: string, change: (cur: OperatorState) => OperatorState): Promise<OperatorState> {
    const next = change(this.operator(group));
    this.cluster.operators.set(group, next);
    return next;
  }
  async switchover(group: string, target: string): Promise<void> {
    this.cluster.switched.push({ group, from: this.node, to: target });
    this.cluster.move(group, target, `switchover to ${target}`);
  }
  /** As etcd's: the next node in line leads with a newer epoch; a sole node leads again, newer too. */
  relinquish(group: string, reason: string): void {
    if (this.roleOf(group) !== 'leader') return;
    const names = [...this.cluster.nodes.keys()];
    const to = names[(names.indexOf(this.node) + 1) % names.length]!;
    this.relinquishedLast.set(group, { reason, atMs: Date.now() });
    this.cluster.relinquished.push({ group, from: this.node, to, reason });
    this.cluster.move(group, to, `relinquished: ${reason}`);
  }
}

export interface UnitWrite {
  ahu: string;
  /** The node whose connection wrote it. */
  node: string;
  cmd: AhuCommandSet;
}

/** A unit (as `node` reaches it) that answers at once, reads 50 % / 18 °C, and pushes every write onto `written`. */
export function fakeUnit(ahu: string, written: UnitWrite[], node: string): DeviceIo {
  const unit = new EventEmitter();
  return Object.assign(unit, {
    id: ahu,
    protocol: 'modbus-tcp' as const,
    linkState: 'up' as const,
    remoteControlLost: false,
    open: async () => {},
    read: async () => ({ fanPct: 50, supplySetpointC: 18 }),
    writeCommand: async (cmd: AhuCommandSet) => {
      written.push({ ahu, node, cmd });
    },
    close: async () => {},
  }) as unknown as DeviceIo;
}

export interface FakeNode {
  name: string;
  app: FastifyInstance;
  leadership: FakeLeadership;
  /** The group ids the API serves, changed in place as the daemon's reload changes them. */
  groups: string[];
  drivers: Map<string, GroupDriver>;
  /** The units it reaches, by id (a test may change what one says of itself). */
  devices: Map<string, DeviceIo>;
  registry: Registry;
  audit: AuditTrail;
  /** Its auth store and the tokens of the seeded users (shared by the cluster's nodes). */
  auth: ApiAuth;
  /** Stops the drivers and closes the API. */
  close(): Promise<void>;
}

/**
 * One controller node's API over the fakes: a GroupDriver per group of `site` (period 100 ms) over
 * fake units that push onto `written`, started; the API built but not listening, its users and
 * tokens on the cluster's shared control-plane KV (./api-auth.ts); `opts.sensors` its sensor view.
 */
export async function fakeNode(
  cluster: FakeCluster,
  name: string,
  site: Site,
  written: UnitWrite[],
  opts: { sensors?: SensorView } = {},
): Promise<FakeNode> {
  const leadership = cluster.node(name);
  const devices = new Map(site.airHandlers.map((a) => [a.id, fakeUnit(a.id, written, name)]));
  const drivers = new Map(
    site.controlGroups.map((g) => [
      g.id,
      new GroupDriver(g, devices, leadership, { periodMs: 100, logger: quietLogger }),
    ]),
  );
  const registry = new Registry();
  const auth = await apiAuth(registry, quietLogger, cluster.controlPlane);
  const { audit } = auth;
  const groups = site.controlGroups.map((g) => g.id);
  const app = await buildApp({
    auth: auth.auth,
    node: name,
    version: '0.1.0',
    leadership,
    registry,
    groups,
    drivers,
    logger: quietLogger,
    startedAtMs: Date.now(),
    site,
    devices,
    audit,
    alarms: cluster.alarms,
    ...(opts.sensors ? { sensors: opts.sensors } : {}),
  });
  for (const d of drivers.values()) d.start();
  return {
    name,
    // inject() runs as the operator unless a request sends its own Authorization (tests of the guard do).
    app: injectAs(app, auth.as('operator')),
    leadership,
    groups,
    drivers,
    devices,
    registry,
    audit,
    auth,
    close: async () => {
      for (const d of drivers.values()) d.stop();
      await app.close();
      await auth.auth.stop();
    },
  };
}
