// `npm run bench -- cluster [--groups 1000] [--nodes 9] [--timing production|chaos] [--window-s 20]
//   [--base-groups 10] [--row-period-ms 1000] [--settle-s 180]`: a cluster of controller nodes, each
// its own process (bench/lib/cluster-node.ts: leadership on etcd for every group and the state
// cache's peer channel, no devices), on a real 3-member etcd. Two phases on the same etcd, each on
// its own key prefix — first the baseline (the same nodes with --base-groups groups), then the
// measured size — and, before both, etcd with no controllers at all. Each phase:
//   1. start every node at once; time until every group is led and placement is even;
//   2. steady state: etcd's own counters (requests/s, bytes/s, bench/lib/etcd-metrics.ts) over a
//      window, per node and in total; CPU, event-loop delay and RSS per node; what one snapshot
//      read carries;
//   3. kill -9 of the node leading the most groups: per group it led, the time from the kill to a
//      live node reporting that it leads it (the nodes' own role changes, stamped by each node);
//   4. after the survivors settle, a new node joins: time until placement is even again
//      (max − min leaders per node ≤ 1, placement.ts's target), moves per group, none twice.
// Timing: 'production' is the daemon's defaults (controller-config.ts: TTL 5 s), 'chaos' the
// chaos hall's (TTL 2 s). Every wait has a deadline; every process is killed at the end, even on
// failure or Ctrl-C.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createEtcdClient } from '../src/cluster/etcd/etcd-client.ts';
import { settlesWithin } from '../src/util/async.ts';
import { type EtcdCluster, startEtcdCluster } from '../test/support/etcd-cluster.ts';
import { CHAOS_TIMING } from '../test/support/hall.ts';
import { intOption } from './lib/args.ts';
import { NodeProcess } from './lib/cluster-node-process.ts';
import type { ClusterTiming, NodeStats, RoleEvent } from './lib/cluster-node-protocol.ts';
import { type EtcdRates, ratesBetween, readEtcdCounters } from './lib/etcd-metrics.ts';
import { delay, percentile } from './lib/stats.ts';

const say = (s: string) => process.stderr.write(`${s}\n`);

/** The daemon's defaults when the config says nothing (src/config/controller-config.ts). */
const PRODUCTION_TIMING: ClusterTiming = {
  leaseTtlS: 5,
  keepaliveIntervalMs: 1000,
  safetyMarginMs: 500,
  etcdCallTimeoutMs: 1000,
  rebalanceHoldMs: 5000,
};
const CHAOS: ClusterTiming = {
  leaseTtlS: CHAOS_TIMING.leaseTtlS,
  keepaliveIntervalMs: CHAOS_TIMING.keepaliveIntervalMs,
  safetyMarginMs: CHAOS_TIMING.safetyMarginMs,
  etcdCallTimeoutMs: CHAOS_TIMING.etcdCallTimeoutMs,
  rebalanceHoldMs: CHAOS_TIMING.rebalanceHoldMs,
};
/** Placement is even when the most and the least loaded member differ by at most this (placement.ts). */
const PLACEMENT_BOUND = 1;
/**
 * A join must be even within this of the new node's spawn: its start and registration, the
 * rebalance hold, then the whole move set at once (placement.ts) — one round of parallel handovers,
 * each bounded by the switchover timeout (5 s), with one more round for what the first could not
 * place. Production timing: 5 s + 15 s = 20 s.
 */
const joinBoundMs = (t: ClusterTiming): number => t.rebalanceHoldMs + 15_000;

interface Options {
  groups: number;
  nodes: number;
  timing: ClusterTiming;
  windowS: number;
  baseGroups: number;
  rowPeriodMs: number;
  settleMs: number;
}

export async function run(argv: string[]): Promise<Record<string, number>> {
  const { values } = parseArgs({
    args: argv,
    options: {
      groups: { type: 'string', default: '1000' },
      nodes: { type: 'string', default: '9' },
      timing: { type: 'string', default: 'production' },
      'window-s': { type: 'string', default: '20' },
      'base-groups': { type: 'string', default: '10' },
      'row-period-ms': { type: 'string', default: '1000' },
      'settle-s': { type: 'string', default: '180' },
    },
    strict: true,
  });
  const num = (name: keyof typeof values, min: number, max: number): number =>
    intOption(values, name, min, max);
  if (values.timing !== 'production' && values.timing !== 'chaos')
    throw new Error(`--timing must be production or chaos, got ${values.timing}`);
  const o: Options = {
    groups: num('groups', 1, 20_000),
    nodes: num('nodes', 2, 32),
    timing: values.timing === 'chaos' ? CHAOS : PRODUCTION_TIMING,
    windowS: num('window-s', 2, 300),
    baseGroups: num('base-groups', 1, 20_000),
    rowPeriodMs: num('row-period-ms', 0, 60_000),
    settleMs: num('settle-s', 10, 1800) * 1000,
  };

  const undo: { what: string; fn: () => Promise<unknown> }[] = [];
  const cleanup = async (): Promise<void> => {
    while (undo.length > 0) {
      const u = undo.pop()!;
      const done = await settlesWithin(
        u.fn().catch((err: unknown) => say(`cleanup: ${u.what}: ${String(err)}`)),
        15_000,
      );
      if (!done) say(`cleanup: ${u.what} did not finish within 15 s`);
    }
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    say(`${sig}: stopping the nodes and the etcd cluster`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  let failed = true;
  try {
    const dir = await mkdtemp(join(tmpdir(), 'coolctl-bench-cluster-'));
    // A failed run keeps the nodes' logs for a look (COOLCTL_BENCH_KEEP_LOGS=1: any run); a good one
    // leaves nothing behind.
    undo.push({
      what: 'node data dirs',
      fn: () =>
        failed || process.env.COOLCTL_BENCH_KEEP_LOGS
          ? Promise.resolve(say(`node logs kept in ${dir}`))
          : rm(dir, { recursive: true, force: true }),
    });
    const etcd = await startEtcdCluster({ dataDir: join(dir, 'etcd') });
    undo.push({ what: 'etcd cluster', fn: () => etcd.stop() });
    say(
      `cluster bench: ${o.nodes} nodes, ${o.groups} groups (baseline ${o.baseGroups}), ` +
        `timing ${values.timing} (TTL ${o.timing.leaseTtlS} s), rows every ${o.rowPeriodMs} ms, logs in ${dir}`,
    );

    const idleWindowS = Math.min(o.windowS, 10);
    const a = await readEtcdCounters(etcd.clientUrls);
    await delay(idleWindowS * 1000);
    const idle = ratesBetween(a, await readEtcdCounters(etcd.clientUrls));
    say(
      `etcd with no controllers: ${idle.requestsPerS.toFixed(1)} requests/s over ${idle.windowS.toFixed(1)} s`,
    );

    const base = await Phase.run('base', o.baseGroups, o, etcd, dir, undo);
    const main = await Phase.run('main', o.groups, o, etcd, dir, undo);
    const ratio = (k: string): number => round(main[k]! / base[k]!, 2);
    const figures: Record<string, number> = {
      groups: o.groups,
      nodes: o.nodes,
      lease_ttl_ms: o.timing.leaseTtlS * 1000,
      rebalance_hold_ms: o.timing.rebalanceHoldMs,
      row_period_ms: o.rowPeriodMs,
      placement_bound: PLACEMENT_BOUND,
      join_converge_bound_ms: joinBoundMs(o.timing),
      ...main,
      idle_etcd_requests_per_s: round(idle.requestsPerS, 1),
      baseline_groups: o.baseGroups,
      ...Object.fromEntries(Object.entries(base).map(([k, v]) => [`baseline_${k}`, v])),
      etcd_requests_per_s_ratio: ratio('etcd_requests_per_s'),
      etcd_sent_bytes_per_s_ratio: ratio('etcd_sent_bytes_per_s'),
      rss_mb_per_node_ratio: ratio('rss_mb_per_node'),
      cpu_pct_per_node_ratio: ratio('cpu_pct_per_node'),
      kill_node_relead_p99_ratio: ratio('kill_node_relead_p99_ms'),
    };
    const goalMs = o.timing.leaseTtlS * 1000 + 1000;
    say(
      `targets: relead p99 ${main.kill_node_relead_p99_ms} ≤ TTL + 1 s = ${goalMs} ${main.kill_node_relead_p99_ms! <= goalMs ? 'OK' : 'MISSED'}; ` +
        `join placement max − min ${main.join_max_minus_min} ≤ ${PLACEMENT_BOUND} ${main.join_max_minus_min! <= PLACEMENT_BOUND ? 'OK' : 'MISSED'}; ` +
        `join even in ${main.join_converge_ms} ms ≤ ${joinBoundMs(o.timing)} ${main.join_converged && main.join_converge_ms! <= joinBoundMs(o.timing) ? 'OK' : 'MISSED'}; ` +
        `groups moved twice ${main.join_groups_moved_twice} = 0 ${main.join_groups_moved_twice === 0 ? 'OK' : 'MISSED'}`,
    );
    failed = false;
    return figures;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanup();
  }
}

/** One cluster of nodes on one key prefix: start, steady state, kill -9, join; then stopped. */
class Phase {
  private readonly nodes = new Map<string, NodeProcess>();
  /** Per group, the node that last said it leads it (null once that node said it stopped). */
  private readonly leader = new Map<string, string | null>();
  /** Per group, the last node that led it: a new leader other than this one is a move. */
  private readonly lastLeader = new Map<string, string>();
  private readonly moves = new Map<string, number>();
  /** Per group that moved since the moves were last cleared, the leaders in turn (for the log). */
  private readonly paths = new Map<string, string>();
  private roleChanges = 0;
  /** While a kill is measured: the dead node, and per group it led the first live leader's stamp. */
  private kill: { node: string; atMs: number; releadAtMs: Map<string, number> } | null = null;

  private readonly name: string;
  private readonly groups: string[];
  private readonly o: Options;
  private readonly etcd: EtcdCluster;
  private readonly prefix: string;
  private readonly dir: string;

  private constructor(name: string, groups: string[], o: Options, etcd: EtcdCluster, dir: string) {
    this.name = name;
    this.groups = groups;
    this.o = o;
    this.etcd = etcd;
    this.prefix = `/bench-cluster/${name}`;
    this.dir = join(dir, name);
    for (const g of groups) this.leader.set(g, null);
  }

  static async run(
    name: string,
    groupCount: number,
    o: Options,
    etcd: EtcdCluster,
    dir: string,
    undo: { what: string; fn: () => Promise<unknown> }[],
  ): Promise<Record<string, number>> {
    const groups = Array.from({ length: groupCount }, (_, i) => `g${String(i).padStart(5, '0')}`);
    const p = new Phase(name, groups, o, etcd, dir);
    const stop = { what: `${name} nodes`, fn: () => p.stopAll() };
    undo.push(stop);
    try {
      return await p.measure();
    } finally {
      undo.splice(undo.indexOf(stop), 1);
      await p.stopAll();
    }
  }

  private async measure(): Promise<Record<string, number>> {
    const { o } = this;
    const secretHex = randomBytes(32).toString('hex');
    const say2 = (s: string) => say(`[${this.name} ${this.groups.length}g] ${s}`);
    const f: Record<string, number> = {};

    // 1. Start, seeded: node k first takes part in every N-th group only (so it leads them at once),
    // then every node joins the queues of all groups at once (hot reload, setGroups): an even
    // placement, and each group's queue behind its leader in the order the nodes' enqueues raced.
    // That skips a cold start's hundreds of handovers one at a time (the first node up leads
    // everything, see docs/cluster-scale.md); the join in step 4 measures exactly those handovers.
    // One round, not several: a node that knows only some of the groups counts leaders over those
    // alone and hands groups to nodes that do not have them yet.
    let t0 = performance.now();
    const names = Array.from({ length: o.nodes }, (_, i) => `n${i}`);
    const share = new Map(names.map((n, k) => [n, this.groups.filter((_, i) => i % o.nodes === k)]));
    await Promise.all(names.map((n) => this.startNode(n, secretHex, share.get(n)!)));
    await this.settled(o.nodes, o.settleMs);
    await Promise.all(names.map((n) => this.nodes.get(n)!.setGroups(this.groups)));
    await this.queued(new Map(names.map((n) => [n, this.groups.length])), o.settleMs);
    await this.settled(o.nodes, o.settleMs);
    f.start_ms = Math.round(performance.now() - t0);
    say2(`${o.nodes} nodes started and queued in every group (seeded); placement even in ${f.start_ms} ms`);

    // 2. Steady state.
    await Promise.all(this.live().map((n) => n.stats(true)));
    const changesBefore = this.roleChanges;
    const c0 = await readEtcdCounters(this.etcd.clientUrls);
    await delay(o.windowS * 1000);
    const c1 = await readEtcdCounters(this.etcd.clientUrls);
    const stats = await Promise.all(this.live().map((n) => n.stats(true)));
    const r = ratesBetween(c0, c1);
    Object.assign(f, this.rateFigures(r, o.nodes), this.statFigures(stats, r.windowS));
    f.steady_role_changes = this.roleChanges - changesBefore;
    Object.assign(f, await this.snapshotFigures());
    say2(
      `steady: ${f.etcd_requests_per_s} etcd requests/s (${f.etcd_range_per_s} ranges/s), ` +
        `${f.etcd_sent_bytes_per_s} B/s out of etcd, ${f.etcd_received_bytes_per_s} B/s in; ` +
        `RSS ${f.rss_mb_per_node} MB/node, CPU ${f.cpu_pct_per_node} %/node, loop delay p99 ≤ ${f.loop_delay_p99_ms} ms; ` +
        `snapshot ${f.snapshot_keys} keys, ${f.snapshot_bytes} B`,
    );

    // 3. kill -9 of the node leading the most groups.
    const counts = this.leaderCounts();
    const victim = [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0]![0];
    const itsGroups = this.groups.filter((g) => this.leader.get(g) === victim);
    const others = new Map(this.groups.filter((g) => this.leader.get(g) !== victim).map((g) => [g, 0]));
    const movesBefore = new Map(this.moves);
    const killAtMs = Date.now();
    this.kill = { node: victim, atMs: killAtMs, releadAtMs: new Map() };
    await this.nodes.get(victim)!.kill();
    const reledBoundMs = o.timing.leaseTtlS * 1000 + 30_000;
    const kill = this.kill;
    const deadline = performance.now() + reledBoundMs;
    while (performance.now() < deadline && itsGroups.some((g) => !kill.releadAtMs.has(g))) await delay(50);
    this.kill = null;
    const relead = itsGroups.map((g) => (kill.releadAtMs.get(g) ?? killAtMs + reledBoundMs) - killAtMs);
    f.kill_node_groups = itsGroups.length;
    f.kill_node_relead_p50_ms = percentile(relead, 50);
    f.kill_node_relead_p99_ms = percentile(relead, 99);
    f.kill_node_relead_max_ms = Math.max(...relead);
    f.kill_node_unled_groups = itsGroups.filter((g) => !kill.releadAtMs.has(g)).length;
    f.kill_other_groups_moved = [...others.keys()].filter(
      (g) => (this.moves.get(g) ?? 0) !== (movesBefore.get(g) ?? 0),
    ).length;
    say2(
      `kill -9 ${victim} at ${new Date(killAtMs).toISOString()} (led ${itsGroups.length}): led again p50 ${f.kill_node_relead_p50_ms} ms, ` +
        `p99 ${f.kill_node_relead_p99_ms} ms, max ${f.kill_node_relead_max_ms} ms; ` +
        `${f.kill_node_unled_groups} not led within ${reledBoundMs} ms`,
    );
    t0 = performance.now();
    f.kill_settled = (await this.settled(o.nodes - 1, o.settleMs, false)) ? 1 : 0;
    f.kill_settle_ms = Math.round(performance.now() - t0);
    say2(
      f.kill_settled
        ? `survivors even again ${f.kill_settle_ms} ms after every group was led`
        : `survivors NOT even within ${f.kill_settle_ms} ms: ${this.placement()}`,
    );

    // 4. A new node joins.
    const joiner = `n${o.nodes}`;
    this.moves.clear();
    this.paths.clear();
    t0 = performance.now();
    await this.startNode(joiner, secretHex, this.groups);
    f.join_converged = (await this.settled(o.nodes, o.settleMs, false)) ? 1 : 0;
    f.join_converge_ms = Math.round(performance.now() - t0);
    f.join_moves_per_s = round(
      [...this.moves.values()].reduce((s, n) => s + n, 0) / (f.join_converge_ms / 1000),
      2,
    );
    // Anything still moving after this long past convergence would be a second round of moves.
    if (f.join_converged) await delay(o.timing.rebalanceHoldMs + 3000);
    const after = this.leaderCounts();
    f.join_max_minus_min = Math.max(...after.values()) - Math.min(...after.values());
    f.join_new_node_leads = after.get(joiner) ?? 0;
    f.join_moves = [...this.moves.values()].reduce((s, n) => s + n, 0);
    f.join_groups_moved_twice = [...this.moves.values()].filter((n) => n >= 2).length;
    for (const [g, n] of this.moves) if (n >= 2) say2(`moved ${n} times: ${g} ${this.paths.get(g)}`);
    say2(
      `${joiner} joined: ${f.join_converged ? 'even' : 'NOT even'} (max − min ${f.join_max_minus_min}) after ${f.join_converge_ms} ms; ` +
        `${f.join_moves} moves, it leads ${f.join_new_node_leads}; ${f.join_groups_moved_twice} groups moved twice`,
    );
    return f;
  }

  private live(): NodeProcess[] {
    return [...this.nodes.values()].filter((n) => n.alive);
  }

  private async startNode(name: string, secretHex: string, groups: string[]): Promise<void> {
    const p = new NodeProcess(name, (node, roles) => this.onRoles(node, roles));
    this.nodes.set(name, p);
    const t = this.o.timing;
    await p.start(
      {
        node: name,
        prefix: this.prefix,
        groups,
        etcdHosts: this.etcd.endpoints,
        timing: t,
        secretHex,
        dataDir: join(this.dir, name),
        rowPeriodMs: this.o.rowPeriodMs,
      },
      // cluster-node.ts tries start() up to three times on a loaded machine.
      3 * (t.leaseTtlS * 1000 + 4 * t.etcdCallTimeoutMs) + 30_000,
    );
  }

  private onRoles(node: string, roles: RoleEvent[]): void {
    for (const r of roles) {
      this.roleChanges++;
      if (r.to === 'leader') {
        this.leader.set(r.group, node);
        const last = this.lastLeader.get(r.group);
        if (last !== undefined && last !== node) {
          this.moves.set(r.group, (this.moves.get(r.group) ?? 0) + 1);
          this.paths.set(r.group, `${this.paths.get(r.group) ?? last} → ${node}`);
        }
        this.lastLeader.set(r.group, node);
        const k = this.kill;
        if (k && node !== k.node && r.atMs >= k.atMs && !k.releadAtMs.has(r.group))
          k.releadAtMs.set(r.group, r.atMs);
      } else if (r.from === 'leader' && this.leader.get(r.group) === node) {
        this.leader.set(r.group, null);
      }
    }
  }

  /** Leaders per live node (0 for a node leading none). */
  private leaderCounts(): Map<string, number> {
    const counts = new Map(this.live().map((n) => [n.name, 0]));
    for (const l of this.leader.values()) if (l !== null && counts.has(l)) counts.set(l, counts.get(l)! + 1);
    return counts;
  }

  private placement(): string {
    const counts = this.leaderCounts();
    const led = [...this.leader.values()].filter((l) => l !== null && counts.has(l)).length;
    return `${led}/${this.groups.length} groups led, leaders per node ${[...counts.values()].join(' ')}`;
  }

  /**
   * Waits until `nodes` nodes live, every group is led by one of them, and placement is even; false
   * (or, with `must`, an error) when that takes longer than `timeoutMs`.
   */
  private async settled(nodes: number, timeoutMs: number, must = true): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    let lastSaidMs = performance.now();
    for (;;) {
      const counts = this.leaderCounts();
      const led = [...this.leader.values()].filter((l) => l !== null && counts.has(l)).length;
      const spread = Math.max(...counts.values()) - Math.min(...counts.values());
      if (counts.size === nodes && led === this.groups.length && spread <= PLACEMENT_BOUND) return true;
      if (performance.now() > deadline) {
        if (must) throw new Error(`[${this.name}] not settled within ${timeoutMs} ms: ${this.placement()}`);
        return false;
      }
      if (performance.now() - lastSaidMs > 10_000) {
        lastSaidMs = performance.now();
        await this.progress(`settling: ${this.placement()}`);
      }
      await delay(50);
    }
  }

  /** Waits until every node is queued (leader or candidate) in as many groups as `expected` says. */
  private async queued(expected: ReadonlyMap<string, number>, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    let lastSaidMs = performance.now();
    for (;;) {
      const names = [...expected.keys()];
      const stats = await Promise.all(names.map((n) => this.nodes.get(n)!.stats()));
      const short = names.filter((n, k) => stats[k]!.leading + stats[k]!.candidates < expected.get(n)!);
      if (short.length === 0) return;
      if (performance.now() > deadline)
        throw new Error(
          `[${this.name}] ${short.join(', ')} not queued in every group within ${timeoutMs} ms`,
        );
      if (performance.now() - lastSaidMs > 10_000) {
        lastSaidMs = performance.now();
        await this.progress(`queueing: ${short.length} nodes not queued in every group yet`);
      }
      await delay(200);
    }
  }

  /** A progress line with what the nodes go through meanwhile (evidence when the machine is overloaded). */
  private async progress(what: string): Promise<void> {
    const stats = await Promise.all(this.live().map((n) => n.stats(true).catch(() => null)));
    const ok = stats.filter((x): x is NodeStats => x !== null);
    const worst = ok.length ? Math.max(...ok.map((x) => x.loopDelayP99Ms)) : Number.NaN;
    say(
      `[${this.name}] ${what}; loop delay p99 worst ${worst.toFixed(0)} ms, ` +
        `${stats.length - ok.length} nodes not answering`,
    );
  }

  private rateFigures(r: EtcdRates, nodes: number): Record<string, number> {
    const m = (method: string) => round(r.byMethod.get(method) ?? 0, 1);
    return {
      etcd_requests_per_s: round(r.requestsPerS, 1),
      etcd_requests_per_s_per_node: round(r.requestsPerS / nodes, 1),
      etcd_range_per_s: m('Range'),
      etcd_txn_per_s: m('Txn'),
      etcd_keepalive_per_s: m('LeaseKeepAlive'),
      etcd_lease_ttl_calls_per_s: m('LeaseTimeToLive'),
      etcd_sent_bytes_per_s: Math.round(r.sentBytesPerS),
      etcd_sent_bytes_per_s_per_node: Math.round(r.sentBytesPerS / nodes),
      etcd_received_bytes_per_s: Math.round(r.receivedBytesPerS),
      etcd_received_bytes_per_s_per_node: Math.round(r.receivedBytesPerS / nodes),
      steady_window_s: round(r.windowS, 1),
    };
  }

  private statFigures(stats: NodeStats[], windowS: number): Record<string, number> {
    const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
    return {
      rss_mb_per_node: round(mean(stats.map((s) => s.rssMb)), 1),
      rss_mb_max: round(Math.max(...stats.map((s) => s.rssMb)), 1),
      heap_used_mb_per_node: round(mean(stats.map((s) => s.heapUsedMb)), 1),
      cpu_pct_per_node: round(mean(stats.map((s) => s.cpuUs / 1e4 / windowS)), 1),
      loop_delay_p99_ms: round(Math.max(...stats.map((s) => s.loopDelayP99Ms)), 1),
      loop_delay_max_ms: round(Math.max(...stats.map((s) => s.loopDelayMaxMs)), 1),
      cache_rows_min: Math.min(...stats.map((s) => s.rows)),
      peer_links_up_min: Math.min(...stats.map((s) => s.peersUp)),
    };
  }

  /**
   * What a full read of the leadership keys carries (a node's view is loaded by one at start, after a
   * lost watch and once a minute; a decision pass reads nothing): the whole prefix, one range, idle.
   */
  private async snapshotFigures(): Promise<Record<string, number>> {
    const client = createEtcdClient({ hosts: this.etcd.endpoints, callTimeoutMs: 5_000 });
    try {
      const t0 = performance.now();
      const res = await client.getAll().prefix(`${this.prefix}/`).exec();
      const ms = performance.now() - t0;
      const bytes = res.kvs.reduce((s, kv) => s + kv.key.length + kv.value.length, 0);
      return { snapshot_keys: res.kvs.length, snapshot_bytes: bytes, snapshot_read_ms: round(ms, 1) };
    } finally {
      client.close();
    }
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.nodes.values()].map((n) => n.stop()));
  }
}

function round(v: number, digits: number): number {
  const k = 10 ** digits;
  return Math.round(v * k) / k;
}
