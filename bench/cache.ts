// `npm run bench -- cache`: the process-state cache between three nodes on loopback, each in its
// own process — the writer here, two peers as children (bench/lib/cache-peer.ts) — with a real
// 3-member etcd cluster for the writer's lease session and for the baseline.
//   1. Replication latency: 100 groups × 10 Hz of real process-state rows (~440 B), write → acked
//      by both peers ('replicated'); side by side, alternating in rounds, the same broadcast over
//      etcd (put → both watchers got it → acked back over the same TLS-PSK ack path).
//   2. Throughput: rows/s the peers apply, 4 000 distinct groups, a window of rows in flight and a
//      group rewritten only once its last row was acked (so nothing is coalesced away).
//   3. Lease keepalive round trip (EtcdSession in this process) idle vs. while a 10 MB row is
//      written to one group every 500 ms and streamed to both peers, alternating in rounds.
// Args: [--rounds 2] [--latency-s 5] [--groups 100] [--hz 10] [--throughput-s 5] [--window 1000]
//       [--keepalive-s 10] [--keepalive-interval-ms 50]
import { randomBytes, randomFillSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Etcd3 } from 'etcd3';
import { pino } from 'pino';
import { type Frame, FrameType } from '../src/cache/frames.ts';
import { PeerChannel } from '../src/cache/peer-channel.ts';
import type { PeerConnection } from '../src/cache/peer-connection.ts';
import { StateCache } from '../src/cache/state-cache.ts';
import { createEtcdClient } from '../src/cluster/etcd/etcd-client.ts';
import { EtcdSession } from '../src/cluster/etcd/etcd-session.ts';
import { settlesWithin } from '../src/util/async.ts';
import { startEtcdCluster } from '../test/support/etcd-cluster.ts';
import { PeerProcess } from './lib/cache-peer-process.ts';
import type { PeerPorts, PeerStats } from './lib/cache-peer-protocol.ts';
import { PhaseProbe, type ProbeReading } from './lib/cache-probe.ts';
import { groupName, processState } from './lib/cache-rows.ts';
import { delay, median, percentile } from './lib/stats.ts';

const BULK_BYTES = 10 * 1024 * 1024;
const BULK_EVERY_MS = 500;
const THROUGHPUT_GROUPS = 4000;
const EPOCH = 1;
const say = (s: string) => process.stderr.write(`${s}\n`);

export async function run(argv: string[]): Promise<Record<string, number>> {
  const { values } = parseArgs({
    args: argv,
    options: {
      rounds: { type: 'string', default: '2' },
      'latency-s': { type: 'string', default: '5' },
      groups: { type: 'string', default: '100' },
      hz: { type: 'string', default: '10' },
      'throughput-s': { type: 'string', default: '5' },
      window: { type: 'string', default: '1000' },
      'keepalive-s': { type: 'string', default: '10' },
      'keepalive-interval-ms': { type: 'string', default: '50' },
    },
    strict: true,
  });
  const num = (name: keyof typeof values, min: number, max: number): number => {
    const v = Number(values[name]);
    if (!Number.isFinite(v) || v < min || v > max) throw new Error(`--${name} must be ${min}…${max}`);
    return v;
  };
  const o = {
    rounds: num('rounds', 1, 20),
    latencyS: num('latency-s', 1, 120),
    groups: num('groups', 1, 1000),
    hz: num('hz', 1, 100),
    throughputS: num('throughput-s', 1, 120),
    window: num('window', 1, THROUGHPUT_GROUPS),
    keepaliveS: num('keepalive-s', 1, 120),
    keepaliveIntervalMs: num('keepalive-interval-ms', 10, 1000),
  };

  const undo: { what: string; fn: () => Promise<unknown> }[] = [];
  const cleanup = async (): Promise<void> => {
    while (undo.length > 0) {
      const u = undo.pop()!;
      const done = await settlesWithin(
        u.fn().catch((err: unknown) => say(`cleanup: ${u.what}: ${String(err)}`)),
        10_000,
      );
      if (!done) say(`cleanup: ${u.what} did not finish within 10 s`);
    }
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    say(`${sig}: stopping the peers and the etcd cluster`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    const bench = await Bench.start(o, undo);
    return await bench.measure();
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanup();
  }
}

interface Options {
  rounds: number;
  latencyS: number;
  groups: number;
  hz: number;
  throughputS: number;
  window: number;
  keepaliveS: number;
  keepaliveIntervalMs: number;
}

/** Write → acked by every peer, for one kind of broadcast. */
class LatencySink {
  samples: number[] = [];
  /** Writes made while sampling (the samples should match them). */
  writes = 0;
  /** Every write acked by all, sampled or not. */
  acked = 0;
  sampling = false;
  note(ms: number): void {
    this.acked++;
    if (this.sampling) this.samples.push(ms);
  }
  /** The samples, plus +Infinity for each write made while sampling that was never acked on its own. */
  withUnacked(): number[] {
    return [...this.samples, ...Array<number>(Math.max(0, this.writes - this.samples.length)).fill(Infinity)];
  }
}

interface Probe extends ProbeReading {
  wallMs: number;
  /** CPU both peer processes used in the phase. */
  peerCpuMs: number;
}

function describeProbe(p: Probe): string {
  return (
    `[writer loop delay p99 ${p.loopP99Ms.toFixed(1)} max ${p.loopMaxMs.toFixed(1)} ms, GC max ${p.gcMaxMs.toFixed(1)} ms, ` +
    `CPU writer ${((100 * p.cpuMs) / p.wallMs).toFixed(0)} % peers ${((100 * p.peerCpuMs) / p.wallMs).toFixed(0)} %]`
  );
}

class Bench {
  private readonly logger = pino({ level: 'warn' }, pino.destination(2));
  private readonly prefix = `/bench-cache/${process.pid}/rows/`;
  private mode: 'idle' | 'latency' | 'throughput' = 'idle';
  private readonly ours = new LatencySink();
  private readonly base = new LatencySink();
  private readonly bulkMs: number[] = [];
  /** Baseline writes waiting for both acks, by "group seq": each write is timed, none replaced. */
  private readonly basePending = new Map<string, { t0: number; waiting: Set<string> }>();
  private readonly baseSeq = new Map<string, number>();
  private basePutErrors = 0;

  private readonly o: Options;
  private readonly peers: PeerProcess[];
  private readonly writer: StateCache;
  private readonly etcd: Etcd3;
  private readonly etcdHosts: string[];
  private readonly dataDir: string;

  private constructor(
    o: Options,
    peers: PeerProcess[],
    writer: StateCache,
    acks: PeerChannel,
    etcd: Etcd3,
    etcdHosts: string[],
    dataDir: string,
  ) {
    this.o = o;
    this.peers = peers;
    this.writer = writer;
    this.etcd = etcd;
    this.etcdHosts = etcdHosts;
    this.dataDir = dataDir;
    writer.on('replicated', (group: string, ms: number) => this.onReplicated(group, ms));
    acks.on('frame', (conn: PeerConnection, f: Frame) => {
      if (f.type === FrameType.ACK) this.onBaselineAck(conn.node, f.header);
    });
  }

  static async start(o: Options, undo: { what: string; fn: () => Promise<unknown> }[]): Promise<Bench> {
    say('starting a 3-member etcd cluster on 127.0.0.1');
    const etcdCluster = await startEtcdCluster();
    undo.push({ what: 'etcd cluster', fn: () => etcdCluster.stop() });
    const dataDir = await mkdtemp(join(tmpdir(), 'coolctl-bench-cache-'));
    undo.push({ what: 'tmp dir', fn: () => rm(dataDir, { recursive: true, force: true }) });

    const secret = randomBytes(32);
    const cluster = `/coolctl/bench-cache-${process.pid}`;
    const peers = ['p1', 'p2'].map((n) => PeerProcess.spawn(n));
    for (const p of peers) undo.push({ what: `peer ${p.name}`, fn: () => p.stop() });
    const ports = await Promise.all(
      peers.map((p) =>
        p.call<PeerPorts>({
          cmd: 'start',
          args: { node: p.name, cluster, secretHex: secret.toString('hex') },
        }),
      ),
    );
    const logger = pino({ level: 'warn' }, pino.destination(2));
    const common = { node: 'w', cluster, secret, listen: { host: '127.0.0.1', port: 0 }, logger };
    const writer = new StateCache(common);
    await writer.start();
    undo.push({ what: 'writer cache', fn: () => writer.stop() });
    const members = [
      { node: 'w', peerUrl: `tcp://127.0.0.1:${writer.port}` },
      ...peers.map((p, i) => ({ node: p.name, peerUrl: `tcp://127.0.0.1:${ports[i]!.port}` })),
    ];
    writer.setMembers(members);
    await Promise.all(peers.map((p) => p.call({ cmd: 'members', args: members })));

    const acks = new PeerChannel({
      ...common,
      cluster: `${cluster}/baseline`,
      chunkBytes: 64 * 1024,
      idleTimeoutMs: 2000,
      pingIntervalMs: 500,
      connectTimeoutMs: 1000,
    });
    await acks.start();
    undo.push({ what: 'baseline ack channel', fn: () => acks.stop() });
    acks.setPeers(peers.map((p, i) => ({ node: p.name, peerUrl: `tcp://127.0.0.1:${ports[i]!.basePort}` })));

    const etcd = createEtcdClient({ hosts: etcdCluster.endpoints, callTimeoutMs: 2000 });
    undo.push({ what: 'etcd client', fn: async () => etcd.close() });
    const b = new Bench(o, peers, writer, acks, etcd, etcdCluster.endpoints, dataDir);
    await Promise.all(
      peers.map((p) => p.call({ cmd: 'watch', args: { hosts: etcdCluster.endpoints, prefix: b.prefix } })),
    );
    await b.poll('every link up (3 caches in a mesh, 2 baseline ack links)', 15_000, async () => {
      if (!writer.peers().every((p) => p.up) || acks.upLinks().length !== 2) return false;
      const s = await b.stats();
      return s.every((x) => x.peersUp === 2 && x.ackLinks === 1);
    });
    say(
      `peers up: p1 pid ${peers[0]!.pid}, p2 pid ${peers[1]!.pid}; etcd ${etcdCluster.endpoints.join(',')}`,
    );
    return b;
  }

  async measure(): Promise<Record<string, number>> {
    const o = this.o;
    const rowBytes = Buffer.byteLength(JSON.stringify(processState(o.groups - 1, 1)));

    // 1. Replication latency, ours and etcd's alternating; round 0 only warms up both paths.
    for (let round = 0; round <= o.rounds; round++) {
      const seconds = round === 0 ? 1 : o.latencyS;
      const order = round % 2 === 0 ? (['ours', 'etcd'] as const) : (['etcd', 'ours'] as const);
      for (const kind of order) {
        const sink = kind === 'ours' ? this.ours : this.base;
        const before = sink.samples.length;
        const ackedBefore = sink.acked;
        sink.sampling = round > 0;
        this.mode = 'latency';
        const writes = await this.paced(seconds, kind === 'ours' ? this.writeOurs : this.writeBaseline);
        if (round > 0) sink.writes += writes;
        // Ours: a write overtaken by its group's next row is acked with it, not on its own; so wait
        // for the acks to stop coming rather than for one per write.
        await this.settle(kind, () => sink.acked - ackedBefore, writes);
        sink.sampling = false;
        this.mode = 'idle';
        if (round > 0) {
          const got = sink.samples.slice(before);
          say(
            `round ${round} ${kind.padEnd(4)}: ${writes} writes, ${got.length} acked, ` +
              `p50 ${median(got).toFixed(3)} p90 ${percentile(got, 90).toFixed(3)} ` +
              `p99 ${percentile(got, 99).toFixed(3)} max ${percentile(got, 100).toFixed(3)} ms`,
          );
        }
      }
    }

    // 2. Throughput.
    const tp = await this.throughput();

    // 3. Keepalives, idle vs. during 10 MB rows.
    const ka = await this.keepalives();

    // A write never acked on its own (the group's next row overtook it) counts as slower than any
    // sample: the cache then times the group from its oldest unacked row, so the tail is not lost.
    const ours = this.ours.withUnacked();
    const baseline = this.base.withUnacked();
    const p99 = percentile(ours, 99);
    const baseP99 = percentile(baseline, 99);
    const figures = {
      nodes: 3,
      row_bytes: rowBytes,
      latency_rows_per_s: o.groups * o.hz,
      replication_p50_ms: median(ours),
      replication_p99_ms: p99,
      replication_max_ms: percentile(this.ours.samples, 100),
      replication_samples: this.ours.samples.length,
      replication_unacked: this.ours.writes - this.ours.samples.length,
      baseline_etcd_put_watch_p50_ms: median(baseline),
      baseline_etcd_put_watch_p99_ms: baseP99,
      baseline_etcd_put_watch_max_ms: percentile(this.base.samples, 100),
      baseline_etcd_put_watch_samples: this.base.samples.length,
      baseline_etcd_put_watch_unacked: this.base.writes - this.base.samples.length,
      baseline_etcd_put_errors: this.basePutErrors,
      replication_vs_etcd_p99: p99 / baseP99,
      ...tp,
      ...ka,
    };
    say(
      `targets: replication p99 ${p99.toFixed(3)} < 5 ms ${p99 < 5 ? 'OK' : 'MISSED'}; ` +
        `rows/s ${Math.round(tp.rows_per_s)} ≥ 20000 ${tp.rows_per_s >= 20_000 ? 'OK' : 'MISSED'}; ` +
        `keepalive during 10 MB / idle ${ka.keepalive_during_10mb_vs_idle.toFixed(2)} ≤ 2 ` +
        `${ka.keepalive_during_10mb_vs_idle <= 2 ? 'OK' : 'MISSED'}`,
    );
    return figures;
  }

  // --- 1. latency ---------------------------------------------------------------------------------

  /** Writes `groups` rows `hz` times a second, evenly spread, for `seconds`; returns the writes made. */
  private async paced(seconds: number, write: (group: number, tick: number) => void): Promise<number> {
    const { groups, hz } = this.o;
    const slotMs = 1000 / (groups * hz);
    const total = Math.round(seconds * groups * hz);
    const t0 = performance.now();
    let i = 0;
    while (i < total) {
      const now = performance.now();
      while (i < total && t0 + i * slotMs <= now) {
        write(i % groups, Math.floor(i / groups));
        i++;
      }
      await delay(t0 + i * slotMs - performance.now());
    }
    return total;
  }

  private readonly writeOurs = (group: number, tick: number): void => {
    this.writer.write(groupName('lat', group), EPOCH, processState(group, tick));
  };

  private readonly writeBaseline = (group: number, tick: number): void => {
    const name = groupName('lat', group);
    const seq = (this.baseSeq.get(name) ?? 0) + 1;
    this.baseSeq.set(name, seq);
    const value = `${seq} ${JSON.stringify(processState(group, tick))}`;
    this.basePending.set(`${name} ${seq}`, { t0: performance.now(), waiting: new Set(['p1', 'p2']) });
    this.etcd
      .put(this.prefix + name)
      .value(value)
      .exec()
      .catch(() => {
        this.basePutErrors++;
      });
  };

  private onBaselineAck(node: string, h: Record<string, unknown>): void {
    const key = `${String(h.group)} ${String(h.seq)}`;
    const p = this.basePending.get(key);
    if (!p) return;
    p.waiting.delete(node);
    if (p.waiting.size > 0) return;
    this.basePending.delete(key);
    this.base.note(performance.now() - p.t0);
  }

  private onReplicated(group: string, ms: number): void {
    if (group === 'bulk') this.bulkMs.push(ms);
    else if (this.mode === 'latency') this.ours.note(ms);
  }

  // --- 2. throughput ------------------------------------------------------------------------------

  private async throughput(): Promise<Record<string, number> & { rows_per_s: number }> {
    const { window, throughputS } = this.o;
    const names = Array.from({ length: THROUGHPUT_GROUPS }, (_, i) => groupName('tp', i));
    const states = names.map((_, i) => processState(i, 0));
    // Free groups in a ring: a group goes back in once its row was acked by both peers.
    const ring = names.map((_, i) => i);
    let head = 0;
    let tail = 0;
    let free = THROUGHPUT_GROUPS;
    let inFlight = 0;
    let written = 0;
    let acked = 0;
    let writing = true;
    let tick = 0;
    const inFlightGroups = new Map<string, number>();
    const writeOne = (): void => {
      const gi = ring[head]!;
      head = (head + 1) % THROUGHPUT_GROUPS;
      free--;
      const s = states[gi]!;
      // The row changes every write, as a control loop's would.
      const first = Object.values(s.commands)[0]!;
      first.fanPct = 50 + (tick++ % 500) / 10;
      this.writer.write(names[gi]!, EPOCH, s);
      inFlightGroups.set(names[gi]!, gi);
      inFlight++;
      written++;
    };
    let drained: () => void = () => {};
    const allAcked = new Promise<void>((r) => {
      drained = r;
    });
    const onGroup = (group: string): void => {
      const gi = inFlightGroups.get(group);
      if (gi === undefined) return;
      inFlightGroups.delete(group);
      inFlight--;
      acked++;
      ring[tail] = gi;
      tail = (tail + 1) % THROUGHPUT_GROUPS;
      free++;
      if (writing) {
        while (inFlight < window && free > 0) writeOne();
      } else if (inFlight === 0) drained();
    };
    this.writer.on('replicated', onGroup);
    const before = await this.stats();
    this.mode = 'throughput';
    const t0 = performance.now();
    while (inFlight < window && free > 0) writeOne();
    await delay(throughputS * 1000);
    writing = false;
    const stoppedAt = performance.now();
    if (inFlight > 0) await Promise.race([allAcked, delay(10_000)]);
    const t1 = performance.now();
    this.mode = 'idle';
    this.writer.off('replicated', onGroup);
    // A peer acks a row after applying it, so its counts are complete once all were acked.
    const after = await this.stats();
    const applied = after.map((a, i) => a.applied - before[i]!.applied);
    const seconds = (t1 - t0) / 1000;
    say(
      `throughput: ${written} written in ${((stoppedAt - t0) / 1000).toFixed(2)} s, ${acked} acked by both ` +
        `after ${seconds.toFixed(2)} s; applied at the peers ${applied.join(', ')}; window ${window}`,
    );
    return {
      rows_per_s: Math.min(...applied) / seconds,
      rows_per_s_acked_by_all: acked / seconds,
      throughput_rows_written: written,
      throughput_rows_not_applied: written - Math.min(...applied),
      throughput_groups: THROUGHPUT_GROUPS,
      throughput_window: window,
    };
  }

  // --- 3. keepalives ------------------------------------------------------------------------------

  private async keepalives(): Promise<Record<string, number> & { keepalive_during_10mb_vs_idle: number }> {
    const { keepaliveS, keepaliveIntervalMs, rounds } = this.o;
    const session = new EtcdSession({
      hosts: this.etcdHosts,
      node: 'bench',
      ttlS: 2,
      keepaliveIntervalMs,
      safetyMarginMs: 500,
      callTimeoutMs: 1000,
      dataDir: join(this.dataDir, 'session'),
      logger: this.logger,
    });
    const idle: number[] = [];
    const busy: number[] = [];
    let sink: number[] | null = null;
    const idleProbes: Probe[] = [];
    const busyProbes: Probe[] = [];
    session.on('keepalive', (s: number) => sink?.push(s * 1000));
    await session.start(AbortSignal.timeout(10_000));
    const bulk = Buffer.allocUnsafe(BULK_BYTES);
    randomFillSync(bulk);
    let bulkWritten = 0;
    const bulkBefore = await this.stats();
    try {
      await delay(1000); // the session's first keepalives and the channel settle
      for (let round = 1; round <= rounds; round++) {
        const i0 = idle.length;
        sink = idle;
        let probe = await this.probe();
        await delay(keepaliveS * 1000);
        const idleProbe = await probe.stop();
        const b0 = busy.length;
        sink = busy;
        probe = await this.probe();
        const end = performance.now() + keepaliveS * 1000;
        let lastWriteAt = 0;
        let ackedBeforeLast = 0;
        while (performance.now() < end) {
          // A newer row of the group replaces the ack wait of the one before: whatever is acked
          // after this write is this write.
          ackedBeforeLast = this.bulkMs.length;
          this.writer.write('bulk', EPOCH, bulk);
          bulkWritten++;
          lastWriteAt = performance.now();
          await delay(lastWriteAt + BULK_EVERY_MS - performance.now());
        }
        // The last row is still on its way: its transfer is part of "during".
        await this.poll('the last 10 MB row acked', 15_000, () => this.bulkMs.length > ackedBeforeLast).catch(
          () => say('the last 10 MB row was not acked within 15 s'),
        );
        sink = null;
        const busyProbe = await probe.stop();
        idleProbes.push(idleProbe);
        busyProbes.push(busyProbe);
        const gi = idle.slice(i0);
        const gb = busy.slice(b0);
        say(
          `keepalive round ${round}: idle p50 ${median(gi).toFixed(2)} p99 ${percentile(gi, 99).toFixed(2)} ms ` +
            `(${gi.length}) ${describeProbe(idleProbe)}\n` +
            `  during 10 MB p50 ${median(gb).toFixed(2)} p99 ${percentile(gb, 99).toFixed(2)} ms ` +
            `(${gb.length}) ${describeProbe(busyProbe)}`,
        );
      }
    } finally {
      sink = null;
      await session.stop();
    }
    const bulkAfter = await this.stats();
    const delivered = Math.min(...bulkAfter.map((a, i) => a.bigApplied - bulkBefore[i]!.bigApplied));
    const idleP99 = percentile(idle, 99);
    const busyP99 = percentile(busy, 99);
    return {
      keepalive_interval_ms: keepaliveIntervalMs,
      keepalive_p50_ms_idle: median(idle),
      keepalive_p99_ms_idle: idleP99,
      keepalive_samples_idle: idle.length,
      keepalive_p50_ms_during_10mb: median(busy),
      keepalive_p99_ms_during_10mb: busyP99,
      keepalive_samples_during_10mb: busy.length,
      keepalive_during_10mb_vs_idle: busyP99 / idleP99,
      rows_10mb_written: bulkWritten,
      rows_10mb_delivered: delivered,
      row_10mb_replication_p50_ms: median(this.bulkMs),
      writer_loop_delay_p99_ms_idle: Math.max(...idleProbes.map((p) => p.loopP99Ms)),
      writer_loop_delay_p99_ms_during_10mb: Math.max(...busyProbes.map((p) => p.loopP99Ms)),
      writer_gc_max_ms_during_10mb: Math.max(...busyProbes.map((p) => p.gcMaxMs)),
    };
  }

  /** Starts a PhaseProbe here and reads the peers' CPU; stop() reports both. */
  private async probe(): Promise<{ stop: () => Promise<Probe> }> {
    const peers0 = await this.stats();
    const t0 = performance.now();
    const local = new PhaseProbe();
    return {
      stop: async () => {
        const r = local.stop();
        const wallMs = performance.now() - t0;
        const peers1 = await this.stats();
        const peerCpuMs = peers1.reduce((n, p, i) => n + (p.cpuUs - peers0[i]!.cpuUs) / 1000, 0);
        return { ...r, wallMs, peerCpuMs };
      },
    };
  }

  // --- helpers ------------------------------------------------------------------------------------

  private stats(): Promise<PeerStats[]> {
    return Promise.all(this.peers.map((p) => p.call<PeerStats>({ cmd: 'stats' })));
  }

  /** Waits until `count()` reaches `expected`, or stops moving for 1 s (bounded by 10 s). */
  private async settle(what: string, count: () => number, expected: number): Promise<void> {
    const deadline = performance.now() + 10_000;
    let last = -1;
    let movedAt = performance.now();
    while (count() < expected) {
      const now = performance.now();
      if (count() !== last) {
        last = count();
        movedAt = now;
      } else if (now - movedAt > 1000 || now > deadline) {
        say(`${what}: ${expected - count()} of ${expected} writes not acked on their own`);
        return;
      }
      await delay(20);
    }
  }

  private async poll(what: string, timeoutMs: number, fn: () => boolean | Promise<boolean>): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!(await fn())) {
      if (performance.now() > deadline)
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await delay(20);
    }
  }
}
