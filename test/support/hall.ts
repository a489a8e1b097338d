// A whole data hall for chaos tests and the failover bench, as real processes: a 3-member etcd
// cluster, the simulator (Modbus TCP, Modbus RTU and OPC-UA units), and N controllers, each
// reaching every etcd member through its own blackhole proxy so one controller can be cut off while
// the rest works. A Modbus RTU unit sits on its own serial line of ptys (`SerialLine`) whose one
// master is a TCP→RTU gateway; the controllers dial the gateway, never the line. Vendor-profile
// units (`vendor`) cannot check an epoch: a lease unit the controllers dial directly, and a gateway
// unit behind a real `coolctl gateway` process the hall starts like the controllers.
// Every process logs to a file in the hall's tmp dir; `stopAll()` is bounded and kills leftovers.
// `secure`: every link as a site should run it — etcd on TLS with client certificates and a
// prefix user, the broker on TLS with a required user, OPC-UA on SignAndEncrypt with the
// simulator's certificate trusted explicitly in each controller's PKI (nothing accepted blindly).
// Left out, it follows the suite's mode (links.ts, `COOLCTL_TEST_LINKS=secure`).
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectAsync, type IClientOptions } from 'mqtt';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { DEFAULT_PKI_DIR } from '../../firmware-sim/ahu/opcua-server.ts';
import { RtuGateway, SerialMasterLink } from '../../firmware-sim/ahu/rtu-gateway.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { BlackholeProxy } from '../../scripts/lib/blackhole-proxy.ts';
import { type FencingKind, type Site, unitFencing } from '../../src/config/site-schema.ts';
import { encodeFencedWrite, writeAddress } from '../../src/devices/modbus/gateway-fencing.ts';
import { ModbusExceptionError, ModbusTcpClient } from '../../src/devices/modbus/modbus-tcp.ts';
import { STALE_EPOCH_EXCEPTION } from '../../src/devices/modbus/point-map.ts';
import { waitFor } from '../helpers.ts';
import { type SeededAdmin, seedApiAdmin } from './api-seed.ts';
import { type EtcdCluster, type EtcdClusterSecurity, freePort, startEtcdCluster } from './etcd-cluster.ts';
import {
  attributeLeaseWrites,
  checkGatewayUnit,
  type EpochOwner,
  type FencingViolation,
  type GatewayRecord,
  termsSeen,
} from './fencing-proofs.ts';
import {
  attemptsWithEpoch,
  type ClaimSample,
  checkJournal,
  checkLiveness,
  claimSpans,
  findHandover,
  groupsWithoutWrites,
  type InvariantReport,
  type JournalEntry,
  type JournalRead,
  type LivenessExemption,
  readJournal,
} from './journal-invariants.ts';

import { secureLinks } from './links.ts';
import { REPO_ROOT, simArgs } from './repo.ts';
import { SerialLine } from './serial-line.ts';
import {
  makeSimBrokerSecurity,
  type SimBrokerSecurity,
  simBrokerFlags,
  simBrokerSensors,
} from './sim-broker.ts';

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
  /**
   * Every sensor node's report interval, s (default the generated site's 10). Shorter makes the
   * stale window (`sensing.staleIntervals` of them) shorter in proportion: for files that wait on
   * sensors going stale, not on the interval itself.
   */
  reportIntervalS?: number;
  /** The site's `sensing` thresholds (default the product's), e.g. a shorter `verdictRecoveryS`. */
  sensing?: Site['sensing'];
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
  /** Each Modbus TCP unit behind a proxy the controllers dial, so its link can be slowed, made lossy or reset. */
  deviceProxies?: boolean;
  /** etcd members reach each other through proxies, so one member's followers can stop hearing it. */
  etcdPeerProxies?: boolean;
  /** More flags for every etcd member (e.g. a small `--quota-backend-bytes`). */
  etcdFlags?: string[];
  /** Sample the controllers' claims (API + readyz) for the liveness invariant; default true. */
  liveness?: boolean;
  /**
   * Units moved onto Modbus RTU: each on its own serial line (`SerialLine`: ptys, the simulator at
   * the device end), whose one master is a TCP→RTU gateway the controllers dial over Modbus TCP
   * (behind a device proxy with `deviceProxies`). A serial line has one master: three controllers
   * cannot share it, so a real site puts a gateway there too.
   */
  rtu?: { units: string[] };
  /**
   * Vendor-profile units added to the generated site, one per entry, each in `group` beside its
   * epoch units: `lease` — the controllers dial it directly, it checks nothing; `gateway` — it sits
   * behind a `coolctl gateway` process (src/gateway/main.ts, as the systemd unit runs it) that the
   * hall starts, and the controllers dial the gateway.
   */
  vendor?: VendorUnit[];
  /**
   * Every link secured (docs/chaos.md "The secure hall"): etcd on TLS with client certificates and
   * auth (a user whose role reaches only the hall's prefix), the simulator's broker on TLS with a
   * required user, the OPC-UA units on SignAndEncrypt with the simulator's certificate in each
   * controller's trusted folder. The hall's own etcd, MQTT and mosquitto_pub clients use the same.
   * Default: the suite's mode (links.ts); `false` pins plain.
   */
  secure?: boolean;
  /**
   * The directory each controller runs from (read at every start; default the repository): a
   * release's folder, or a `current` link to one, holding `src/cli.ts` — how a rolling upgrade
   * moves a node onto another build (test/upgrade).
   */
  controllerDir?: (node: string) => string;
}

/** The hall's etcd prefix (the secure hall's etcd user reaches only this). */
const HALL_PREFIX = '/coolctl-chaos';

/** What the secure hall's clients need; every secret is in a file too, as a deployment has it. */
export interface HallSecurity {
  etcd: EtcdClusterSecurity;
  mqtt: SimBrokerSecurity;
  /** The simulator's OPC-UA certificate, as copied into each controller's trusted folder. */
  opcuaServerCertFile: string;
}

export interface VendorUnit {
  id: string;
  group: string;
  /** A shipped profile (config/profiles/NAME.yaml), served by the simulator. */
  profile: string;
  fencing: 'lease' | 'gateway';
}

/** The RTU line's settings, the same at both ends. */
const RTU_LINE = { baudRate: 19_200, parity: 'even' } as const;
/**
 * How long the gateway waits for an RTU unit's answer before it answers 0x0B itself: under the
 * controllers' 1 s call timeout, as a gateway in front of units with that timeout is configured.
 */
const RTU_GATEWAY_RESPONSE_MS = 500;

/**
 * Timing of the vendor units. A lease unit applies (or drops) a write within 300 ms of its arrival,
 * and its profile writes a command in 3 requests (4 on a new connection): 900 and 1 200 ms, inside
 * what a 2 s lease leaves (1 300 and 1 600 ms; the config's timing rule checks it). Behind the
 * fencing gateway a request waits at most 500 ms for the line and 500 ms on it; the controllers
 * count 1 000 ms for it. The unit behind the gateway keeps a 300 ms bound, under the gateway's
 * 500 ms: a write it applies is applied before the gateway puts the next request on the line, so the
 * journal's order is the gateway's.
 */
const VENDOR_TIMING = {
  lease: { timeoutMs: 1000, maxApplyDelayMs: 300 },
  gateway: { timeoutMs: 1500, maxApplyDelayMs: 1000 },
  behindGateway: { timeoutMs: 500, maxApplyDelayMs: 300 },
  gatewayLine: { queueTimeoutMs: 500, timeoutMs: 500 },
} as const;

/** The vendor profile's fan speed command (holding 45071, float32-lsw-toggle-inverted-coil) on the wire. */
const VENDOR_FAN_WIRE_ADDRESS = 5070;

/** A `coolctl gateway` process of the hall, fronting one simulated vendor unit. */
export interface FencingGatewayProc {
  ahu: string;
  group: string;
  /** The gateway's name (`fgw-<unit>`): its log is `<name>.log`, its state `<name>/epochs.json`. */
  name: string;
  /** The unit id the controllers send; the unit itself is unit id 1 on the simulator's port. */
  unitId: number;
  configPath: string;
  logPath: string;
  stateFile: string;
  simPort: number;
  modbusPort: number;
  httpUrl: string;
  child: ChildProcess | null;
  exited: Promise<number | null> | null;
  starts: number;
}

/** One serial line of the hall with its gateway. */
export interface RtuLink {
  ahu: string;
  /** The unit's address on its line, and the unit id the controllers send to the gateway. */
  unitId: number;
  line: SerialLine;
  gateway: RtuGateway;
  /** The gateway's log file (`gw-<unit>.log`), closed with it. */
  log: { end(): void };
}

/** What the vendor units' witnesses gave: their writes' terms, and what each witness says. */
export interface FencingProof {
  /** Journal seq → the epoch of the term a vendor unit's accepted write belongs to. */
  epochs: Map<number, number>;
  violations: FencingViolation[];
  /** Accepted lease-unit writes per writer (the process that owned the connection). */
  leaseWriters: Map<string, number>;
  gateways: {
    ahu: string;
    raises: number;
    starts: number;
    refusedStale: number | null;
    forwardedWrites: number | null;
    /** Journal entries (accepted or refused) of the unit behind the gateway. */
    reached: number;
  }[];
}

/** `Hall.check()`: the invariant report over the whole journal, vendor units' writes placed in their terms. */
export type HallReport = InvariantReport & { read: JournalRead; fencing: FencingProof };

/** How often the claim monitor asks every live controller what it leads. */
const CLAIM_SAMPLE_MS = 250;
/** How often the hall looks for new connections to a vendor unit (and which process owns each). */
const SOCKET_SAMPLE_MS = 100;
/** Samples of one node further apart than this do not join one claim span. */
const CLAIM_MAX_GAP_MS = 1500;

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

async function getJson<T>(url: string, timeoutMs = 1000, headers: Record<string, string> = {}): Promise<T> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`${url} answered ${res.status}`);
  return (await res.json()) as T;
}

/** One JSON log line of a controller, as Hall.logLines() gives it. */
export interface HallLogLine {
  node: string;
  time: number;
  level: number;
  msg: string;
  [field: string]: unknown;
}

export class Hall {
  readonly dir: string;
  readonly timing: HallTiming;
  readonly groups: Record<string, string[]> = {};
  readonly etcd: EtcdCluster;
  /** The controllers' API admin and token (seeded in etcd before they start): send `apiHeaders`. */
  apiAdmin: SeededAdmin | undefined;
  /** Set on a `secure` hall: what a client of its etcd and broker needs. */
  security: HallSecurity | undefined;
  readonly simUrl: string;
  /** The simulator's broker: the controllers read the sensor mesh there (closed loop). */
  readonly mqttUrl: string;
  private readonly controllers = new Map<string, ControllerProc>();
  private sim: ChildProcess;
  private readonly opts: HallOptions;
  /** The longest report interval of the hall's sensor nodes (`reportIntervalS`; the site's 10 s by default). */
  readonly reportIntervalMs: number;
  private stopping: Promise<void> | undefined;
  /** Proxies in front of Modbus TCP units (with `deviceProxies`), by unit id. */
  readonly deviceProxies = new Map<string, BlackholeProxy>();
  /** Units by protocol, as the simulator serves them (an RTU unit is `modbus-rtu`, whatever dials it). */
  readonly protocols = new Map<string, string>();
  /** The RTU units' serial lines and gateways, by unit id. */
  readonly rtuLinks = new Map<string, RtuLink>();
  /** What keeps a deposed leader off each unit (`unitFencing` of the controllers' site). */
  readonly fencing = new Map<string, FencingKind>();
  /** The units' watchdog (s): the liveness bound is half of it. */
  readonly watchdogS: number;
  /** Journal entries of earlier simulator runs (seq already shifted) and the shift of the current run. */
  private readonly journalArchive: JournalEntry[] = [];
  private journalBase = 0;
  private archiveTruncated = false;
  /** The simulator's site with the ports it really bound, for a restart on the same ports. */
  private simRestartArgs: string[] = [];
  readonly claims: ClaimSample[] = [];
  readonly exemptions: LivenessExemption[] = [];
  private monitorStop: (() => void) | null = null;
  private monitorDone: Promise<void> | null = null;
  /** The `coolctl gateway` processes in front of gateway-fenced units, by unit id. */
  readonly fencingGateways = new Map<string, FencingGatewayProc>();
  /**
   * Who owned each TCP connection to a vendor unit (lease units, and the units behind a gateway),
   * by the connection's local port — the port the journal's `client` names: the socket's owner
   * process, read from /proc (`sampleSockets`). A port the kernel reused has several owners.
   */
  private readonly socketOwners = new Map<number, { owner: string; inode: string; firstMs: number }[]>();
  /** The simulator's ports of the vendor units (connections to them are the ones sampled). */
  private vendorSimPorts = new Set<number>();
  private samplerStop: (() => void) | null = null;
  private samplerDone: Promise<void> | null = null;

  private constructor(args: {
    dir: string;
    timing: HallTiming;
    etcd: EtcdCluster;
    sim: ChildProcess;
    simUrl: string;
    opts: HallOptions;
    site: Site;
    /** The site as the simulator serves it (RTU units as `modbus-rtu`). */
    simSite: Site;
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
    for (const a of args.simSite.airHandlers) this.protocols.set(a.id, a.protocol);
    for (const a of args.site.airHandlers) this.fencing.set(a.id, unitFencing(a));
    this.watchdogS = args.opts.watchdogS ?? 5;
    // Site seconds, taken as wall seconds: with a time scale above 1 that only over-counts.
    this.reportIntervalMs = Math.max(...args.site.sensorNodes.map((n) => n.reportIntervalS)) * 1000;
  }

  /** Half the units' watchdog: a driving leader never leaves its group longer without a write. */
  get halfPeriodMs(): number {
    return (this.watchdogS * 1000) / 2;
  }

  /**
   * The bound for a ready leader that leads a group without driving it to hand it on: one watchdog
   * period — by then its units would fall back to local control.
   */
  get handOnMs(): number {
    return this.watchdogS * 1000;
  }

  /** Starts etcd, the simulator and the controllers; waits until every group has a driving leader. */
  static async start(options: HallOptions = {}): Promise<Hall> {
    const opts = { ...options, secure: options.secure ?? secureLinks() };
    const dir = await mkdtemp(join(tmpdir(), `coolctl-${opts.name ?? 'hall'}-`));
    const timing = { ...CHAOS_TIMING, ...opts.timing };
    const started: {
      etcd?: EtcdCluster;
      sim?: ChildProcess;
      lines: SerialLine[];
      gateways: RtuGateway[];
      fencingGateways: FencingGatewayProc[];
    } = { lines: [], gateways: [], fencingGateways: [] };
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
      if (opts.reportIntervalS !== undefined)
        for (const n of site.sensorNodes) n.reportIntervalS = opts.reportIntervalS;
      if (opts.sensing) site.sensing = { ...site.sensing, ...opts.sensing };
      // The generated site says None for a simulator nobody trusted yet; the secure hall trusts it.
      if (opts.secure)
        for (const a of site.airHandlers)
          if (a.protocol === 'opcua') a.endpoint.securityMode = 'SignAndEncrypt';
      addVendorUnits(site, opts.vendor ?? []);
      // The simulator's copy: each RTU unit at the device end of its own serial line, each unit
      // behind a fencing gateway with the bound the gateway holds it to.
      const simSite = structuredClone(site);
      for (const v of opts.vendor ?? []) {
        const a = simSite.airHandlers.find((x) => x.id === v.id)!;
        if (v.fencing === 'gateway') {
          a.client = { ...VENDOR_TIMING.behindGateway };
          delete a.fencing;
        }
      }
      const lines = new Map<string, { line: SerialLine; unitId: number }>();
      for (const id of opts.rtu?.units ?? []) {
        const i = simSite.airHandlers.findIndex((a) => a.id === id);
        const a = simSite.airHandlers[i];
        if (a?.protocol !== 'modbus-tcp')
          throw new Error(`rtu.units: ${id} is not a Modbus TCP unit of the generated site`);
        const line = await SerialLine.start({ dir, name: `rtu-${id}` });
        started.lines.push(line);
        const unitId = i + 1;
        const { endpoint: _tcp, protocol: _tcpProtocol, ...unit } = a;
        simSite.airHandlers[i] = {
          ...unit,
          protocol: 'modbus-rtu',
          endpoint: { path: line.masterPath, simPath: line.devicePath, unitId, ...RTU_LINE },
        };
        lines.set(id, { line, unitId });
      }
      const simSitePath = join(dir, 'site-sim.yaml');
      await writeFile(simSitePath, stringify(simSite));

      started.etcd = await startEtcdCluster({
        dataDir: join(dir, 'etcd'),
        heartbeatMs: 50,
        electionMs: ETCD_ELECTION_MS,
        ...(opts.etcdPeerProxies ? { peerProxies: true } : {}),
        ...(opts.etcdFlags ? { extraFlags: opts.etcdFlags } : {}),
        secure: opts.secure ? { prefix: `${HALL_PREFIX}/` } : false,
      });
      const mqttSecurity = opts.secure ? await makeSimBrokerSecurity(dir) : undefined;
      // A restarted simulator (and its restarted broker) gets the same certificate and user.
      const simExtra = [
        '--time-scale',
        String(opts.timeScale ?? 1),
        ...(mqttSecurity ? simBrokerFlags(mqttSecurity) : []),
      ];
      const simLog = join(dir, 'sim.log');
      started.sim = spawnLogged(process.execPath, simArgs(simSitePath, { extra: simExtra }), simLog, {});
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
      for (const a of [...site.airHandlers, ...simSite.airHandlers]) {
        const ep = endpoints.get(a.id);
        if (!ep || lines.has(a.id)) continue;
        // The controllers dial a gateway unit at its gateway (below), never the unit.
        if (a.fencing === 'gateway' && site.airHandlers.includes(a)) continue;
        if (a.protocol === 'modbus-tcp') a.endpoint.port = Number(new URL(ep).port);
        else if (a.protocol === 'opcua') a.endpoint.url = ep;
      }
      // A restarted simulator binds the same ports (the controllers' site names them).
      const simFixedPath = join(dir, 'site-sim-fixed.yaml');
      await writeFile(simFixedPath, stringify(simSite));
      const simRestartArgs = simArgs(simFixedPath, { extra: simExtra })
        .filter((a) => a !== '--ephemeral-ports')
        .map((a, i, all) => (all[i - 1] === '--port' ? new URL(simUrl).port : a));
      simRestartArgs.push('--mqtt-port', new URL(state.mqttBrokerUrl).port);
      // Each line's one master: a TCP→RTU gateway (in this process, as a proxy is: a box of its
      // own that outlives a simulator restart). The controllers' site dials it over Modbus TCP.
      const rtuLinks = new Map<string, RtuLink>();
      for (const [id, { line, unitId }] of lines) {
        const log = pino.destination({ dest: join(dir, `gw-${id}.log`), sync: true });
        const logger = pino(log);
        const gateway = new RtuGateway({
          id: `gw-${id}`,
          host: '127.0.0.1',
          port: 0,
          link: new SerialMasterLink(line.masterPath, RTU_LINE, logger),
          units: [{ unitId, responseTimeoutMs: RTU_GATEWAY_RESPONSE_MS }],
          logger,
        });
        started.gateways.push(gateway);
        const { port } = await gateway.start();
        const a = site.airHandlers.find((x) => x.id === id);
        if (a?.protocol === 'modbus-tcp') a.endpoint = { host: '127.0.0.1', port, unitId };
        rtuLinks.set(id, { ahu: id, unitId, line, gateway, log });
      }
      // Each gateway unit's `coolctl gateway`, a process of its own (it outlives a simulator
      // restart, as the RTU gateways do), dialling the unit's port on the simulator.
      const fencingGateways = new Map<string, FencingGatewayProc>();
      for (const v of opts.vendor ?? []) {
        if (v.fencing !== 'gateway') continue;
        const simUnit = simSite.airHandlers.find((x) => x.id === v.id);
        if (simUnit?.protocol !== 'modbus-tcp')
          throw new Error(`vendor: ${v.id} is not served over Modbus TCP`);
        const g = fencingGatewayProc(dir, v, simUnit.endpoint.port);
        await mkdir(join(dir, g.name), { recursive: true });
        await writeGatewayConfig(g, 0);
        started.fencingGateways.push(g);
        await startGatewayProc(g);
        const a = site.airHandlers.find((x) => x.id === v.id);
        if (a?.protocol === 'modbus-tcp')
          a.endpoint = { host: '127.0.0.1', port: g.modbusPort, unitId: g.unitId };
        // A restart binds the same port: the controllers' site names it.
        await writeGatewayConfig(g, g.modbusPort);
        fencingGateways.set(v.id, g);
      }
      const deviceProxies = new Map<string, BlackholeProxy>();
      if (opts.deviceProxies) {
        for (const a of site.airHandlers) {
          if (a.protocol !== 'modbus-tcp') continue;
          // A lease unit is dialled directly: the journal's client must be the writer's own
          // connection, which is how the hall knows who wrote (a proxy would stand in for all).
          if (unitFencing(a) === 'lease') continue;
          const p = await BlackholeProxy.start({ target: { host: '127.0.0.1', port: a.endpoint.port } });
          deviceProxies.set(a.id, p);
          a.endpoint.port = p.port;
        }
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
        simSite,
        mqttUrl: state.mqttBrokerUrl,
      });
      hall.simRestartArgs = simRestartArgs;
      if (started.etcd.security && mqttSecurity) {
        if (!state.mqttBrokerUrl.startsWith('mqtts://'))
          throw new Error(`secure hall: the simulator's broker is at ${state.mqttBrokerUrl}, not mqtts://`);
        hall.security = {
          etcd: started.etcd.security,
          mqtt: mqttSecurity,
          opcuaServerCertFile: join(DEFAULT_PKI_DIR, 'own', 'certs', 'certificate.pem'),
        };
      }
      for (const v of opts.vendor ?? []) {
        const a = simSite.airHandlers.find((x) => x.id === v.id);
        if (a?.protocol === 'modbus-tcp') hall.vendorSimPorts.add(a.endpoint.port);
      }
      for (const [id, l] of rtuLinks) hall.rtuLinks.set(id, l);
      for (const [id, p] of deviceProxies) hall.deviceProxies.set(id, p);
      for (const [id, g] of fencingGateways) hall.fencingGateways.set(id, g);
      await hall.createControllers(opts.controllers ?? 3);
      hall.startSocketSampler();
      await Promise.all(hall.nodes.map((n) => hall!.start(n)));
      // Faults start from a settled hall: every group led, placement even (rebalancing done).
      await settle(hall, { even: true, timeoutMs: timing.rebalanceHoldMs + 30_000 });
      if (opts.liveness !== false) hall.startClaimMonitor();
      return hall;
    } catch (err) {
      if (hall) {
        process.stderr.write(await hall.logTails());
        // The tails are cut short; a start that failed keeps every log for whoever looks next.
        await hall.stopAll({ keepDir: true });
        process.stderr.write(`hall start failed; logs kept in ${dir}\n`);
      } else {
        if (started.sim && started.sim.exitCode === null) started.sim.kill('SIGKILL');
        await Promise.all(started.gateways.map((g) => g.stop()));
        await Promise.all(started.fencingGateways.map((g) => stopGatewayProc(g)));
        await Promise.all(started.lines.map((l) => l.stop()));
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
    this.apiAdmin = await seedApiAdmin(this.etcd.endpoints, HALL_PREFIX, (args) => this.etcdctl(args));
    await writeFile(join(this.dir, 'cluster.secret'), `${randomBytes(32).toString('hex')}\n`, {
      mode: 0o600,
    });
    for (const [i, name] of names.entries()) {
      const proxies = await Promise.all(
        this.etcd.endpoints.map((e) => {
          const [host, port] = e.split(':');
          return BlackholeProxy.start({ target: { host: host!, port: Number(port) } });
        }),
      );
      const configPath = join(this.dir, `${name}.yaml`);
      const t = this.timing;
      // The proxies pass TLS through (they are TCP-level): the members' certificates name
      // 127.0.0.1, which is what the controllers dial at each proxy.
      const sec = this.security;
      const cfg = {
        site: 'site.yaml',
        cluster: {
          etcd: this.etcd.clientConfig(proxies.map((p) => p.address)),
          prefix: HALL_PREFIX,
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
        sensors: simBrokerSensors(this.mqttUrl, sec?.mqtt),
        timeScale: this.opts.timeScale ?? 1,
        control: { periodMs: t.periodMs },
      };
      await writeFile(configPath, stringify(cfg));
      // A hall without OPC-UA units never starts the simulator's OPC-UA server, so its certificate
      // may not exist (a fresh clone): nothing to trust then.
      if (sec && [...this.protocols.values()].includes('opcua')) {
        // The simulator's OPC-UA certificate trusted by hand, as an operator would after checking
        // it: the controllers accept no unknown certificate (dataDir is var/{node}, above).
        const trusted = join(this.dir, 'var', name, 'opcua-pki', 'trusted', 'certs');
        await mkdir(trusted, { recursive: true });
        await copyFile(sec.opcuaServerCertFile, join(trusted, 'coolctl-sim.pem'));
      }
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
      this.opts.controllerDir?.(node),
    );
    c.child = child;
    c.stopped = false;
    c.exited = new Promise((r) => child.once('exit', (code) => r(code)));
    const sinceMark = async () => {
      const log = await readFile(c.logPath, 'utf8');
      return log.slice(log.lastIndexOf(mark));
    };
    // A child that exits fails the start at once (waitFor would keep polling until its timeout).
    const exitedOnStart = c.exited.then(async (code) => {
      const since = await sinceMark();
      if (since.includes(`coolctl: node ${node} running`)) return true; // started, then exited
      throw new Error(`${node} exited ${code} on start:\n${since.slice(-3000)}`);
    });
    // When the start is decided otherwise (started, or timed out), a later exit is no test's failure.
    exitedOnStart.catch(() => undefined);
    await Promise.race([
      exitedOnStart,
      waitFor(`${node} to start`, async () => (await sinceMark()).includes(`coolctl: node ${node} running`), {
        timeoutMs,
        intervalMs: 50,
      }),
    ]);
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
    return getJson<ClusterView>(`${this.apiUrl(node)}/api/v1/cluster`, timeoutMs, this.apiHeaders);
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

  /**
   * The journal after `since`, across simulator restarts: an earlier run's entries are kept here
   * and the current run's seqs are shifted past them, so seq marks stay comparable.
   */
  async journal(since = 0): Promise<JournalRead> {
    const base = this.journalBase;
    const old = this.journalArchive.filter((e) => e.seq > since);
    const cur = await readJournal(this.simUrl, { since: Math.max(0, since - base) });
    const entries = [...old, ...cur.entries.map((e) => ({ ...e, seq: e.seq + base }))];
    return {
      entries,
      truncated: cur.truncated || (this.archiveTruncated && since < base),
      lastSeq: entries.at(-1)?.seq ?? since,
    };
  }

  /**
   * Reads the whole journal and checks the safety invariants over it, and the liveness invariant
   * against the controllers' claims sampled so far; liveness violations join `violations`.
   */
  async check(): Promise<HallReport> {
    const read = await this.journal();
    // Vendor units journal epoch 0: each accepted write gets its term from outside the unit first
    // (fencing-proofs.ts), then every unit is held to the same invariants.
    const fencing = await this.fencingProof(read.entries);
    // A vendor unit's accepted write its witness could not place is reported as such (above), not
    // again as an epoch-0 interleave.
    const vendor = (ahu: string) => (this.fencing.get(ahu) ?? 'epoch') !== 'epoch';
    const entries = read.entries
      .filter((e) => !(e.accepted && vendor(e.ahu) && !fencing.epochs.has(e.seq)))
      .map((e) => (fencing.epochs.has(e.seq) ? { ...e, epoch: fencing.epochs.get(e.seq)! } : e));
    const report = checkJournal(entries, this.groups, { truncated: read.truncated });
    report.violations.push(...fencing.violations);
    report.ok = report.violations.length === 0;
    if (this.claims.length > 0) {
      const spans = claimSpans(this.claims, CLAIM_MAX_GAP_MS);
      const live = checkLiveness(entries, this.groups, spans, {
        halfPeriodMs: this.halfPeriodMs,
        handOnMs: this.handOnMs,
        maxSampleGapMs: CLAIM_MAX_GAP_MS,
        exemptions: this.exemptions,
      });
      for (const v of live) report.violations.push({ kind: v.kind, group: v.group, message: v.message });
      report.ok = report.violations.length === 0;
    }
    return { ...report, read, fencing };
  }

  /** Units of one fencing kind. */
  unitsFenced(kind: FencingKind): string[] {
    return [...this.fencing].filter(([, k]) => k === kind).map(([a]) => a);
  }

  /**
   * Which node held each epoch and for which group: the controllers' logs ('driving the group'),
   * and the claim monitor's samples for a term whose log line a kill -9 lost.
   */
  async termOwners(): Promise<Map<number, EpochOwner>> {
    const owners = await this.epochOwners();
    for (const c of this.claims)
      if (c.leader && c.epoch > 0 && !owners.has(c.epoch))
        owners.set(c.epoch, { node: c.node, group: c.group });
    return owners;
  }

  /**
   * Records the owner of every established connection to a vendor unit the hall has not placed
   * yet: /proc/net/tcp gives the connection's socket inode, /proc/<pid>/fd of the hall's controllers
   * and fencing gateways the process holding it. Only new connections are looked up.
   */
  async sampleSockets(): Promise<void> {
    if (this.vendorSimPorts.size === 0) return;
    const fresh = new Map<string, number>();
    for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
      const text = await readFile(table, 'utf8').catch(() => '');
      for (const line of text.split('\n').slice(1)) {
        const f = line.trim().split(/\s+/);
        // local, remote, state (01 = established), …, inode
        if (f.length < 10 || f[3] !== '01') continue;
        const remote = Number.parseInt(f[2]!.split(':').at(-1)!, 16);
        if (!this.vendorSimPorts.has(remote)) continue;
        const local = Number.parseInt(f[1]!.split(':').at(-1)!, 16);
        if (this.socketOwners.get(local)?.some((o) => o.inode === f[9])) continue;
        fresh.set(f[9]!, local);
      }
    }
    if (fresh.size === 0) return;
    const procs: [string, number | undefined][] = [
      ...[...this.controllers.values()].map((c): [string, number | undefined] => [c.name, c.child?.pid]),
      ...[...this.fencingGateways.values()].map((g): [string, number | undefined] => [
        `gateway:${g.name}`,
        g.child?.pid,
      ]),
    ];
    const nowMs = Date.now();
    for (const [owner, pid] of procs) {
      if (pid === undefined) continue;
      const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
      for (const fd of fds.slice(0, 10_000)) {
        const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
        const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
        const port = inode === undefined ? undefined : fresh.get(inode);
        if (port === undefined) continue;
        const list = this.socketOwners.get(port) ?? [];
        this.socketOwners.set(port, list);
        list.push({ owner, inode: inode!, firstMs: nowMs });
      }
    }
  }

  /** The process that owned the connection a journal entry names (null: not seen). */
  writerOf(e: JournalEntry): string | null {
    const port = Number(/:(\d+)$/.exec(e.client)?.[1]);
    const list = this.socketOwners.get(port);
    if (!list || list.length === 0) return null;
    // A reused port: the owner whose connection was seen last before the write (the sampler runs
    // every SOCKET_SAMPLE_MS, so a connection may be seen a little after its first write).
    const seen = list.filter((o) => o.firstMs <= e.wallMs + 10 * SOCKET_SAMPLE_MS);
    return (seen.at(-1) ?? list[0]!).owner;
  }

  /** What a fencing gateway recorded about its unit: its log's starts and raises, its state file, its metric. */
  async gatewayRecord(
    g: FencingGatewayProc,
  ): Promise<GatewayRecord & { refusedStale: number | null; forwardedWrites: number | null }> {
    const state = await readFile(g.stateFile, 'utf8')
      .then((t) => (JSON.parse(t) as { units: Record<string, string> }).units[String(g.unitId)])
      .catch(() => undefined);
    const running = !!g.child && g.child.exitCode === null && g.child.signalCode === null;
    const metrics = running
      ? await fetch(`${g.httpUrl}/metrics`, { signal: AbortSignal.timeout(2000) })
          .then((r) => r.text())
          .catch(() => '')
      : '';
    const events: GatewayRecord['events'] = [];
    const log = await readFile(g.logPath, 'utf8').catch(() => '');
    for (const line of log.split('\n')) {
      if (!line.startsWith('{')) continue;
      let j: {
        time?: number;
        msg?: string;
        unit?: string;
        from?: string;
        to?: string;
        epochs?: Record<string, string>;
      };
      try {
        j = JSON.parse(line);
      } catch {
        continue; // a line cut by kill -9
      }
      const atMs = j.time ?? 0;
      if (j.msg === 'epoch state loaded')
        events.push({ kind: 'start', atMs, epoch: Number(j.epochs?.[String(g.unitId)] ?? 0) });
      else if (j.msg?.startsWith('no epoch state file')) events.push({ kind: 'start', atMs, epoch: 0 });
      else if (j.msg === 'epoch raised' && j.unit === g.ahu)
        events.push({ kind: 'raise', atMs, from: Number(j.from), to: Number(j.to) });
    }
    // Prometheus text: `name{a="x",b="y"} value`, whatever the order of the labels.
    // A counter never incremented has no sample yet: 0, once the metrics were read at all.
    const metric = (name: string, labels: Record<string, string>): number | null => {
      for (const line of metrics.split('\n')) {
        const m = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line);
        if (!m || m[1] !== name) continue;
        const have = Object.fromEntries([...m[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
        if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
      }
      return metrics && name.endsWith('_total') ? 0 : null;
    };
    return {
      ahu: g.ahu,
      group: g.group,
      events,
      stateEpoch: state === undefined ? null : Number(state),
      metricEpoch: metric('coolctl_gateway_unit_epoch', { unit: g.ahu }),
      refusedStale: metric('coolctl_gateway_refused_stale_total', { unit: g.ahu }),
      forwardedWrites: metric('coolctl_gateway_forwarded_total', { unit: g.ahu, kind: 'write' }),
    };
  }

  /**
   * Gives the vendor units' accepted writes their terms and checks what each kind's witness says
   * (fencing-proofs.ts): lease units by who wrote, gateway units by the gateway's own record.
   */
  async fencingProof(entries: readonly JournalEntry[]): Promise<FencingProof> {
    const proof: FencingProof = { epochs: new Map(), violations: [], leaseWriters: new Map(), gateways: [] };
    const lease = new Set(this.unitsFenced('lease'));
    const gateway = new Set(this.unitsFenced('gateway'));
    if (lease.size === 0 && gateway.size === 0) return proof;
    await this.sampleSockets();
    const owners = await this.termOwners();
    const epochUnits = new Set(this.unitsFenced('epoch'));
    for (const g of this.fencingGateways.values()) {
      const rec = await this.gatewayRecord(g);
      const a = checkGatewayUnit(entries, rec, owners, (e) => {
        const w = this.writerOf(e);
        return w === null ? null : w === `gateway:${g.name}`;
      });
      for (const [seq, epoch] of a.epochs) proof.epochs.set(seq, epoch);
      proof.violations.push(...a.violations);
      proof.gateways.push({
        ahu: g.ahu,
        raises: rec.events.filter((e) => e.kind === 'raise').length,
        starts: g.starts,
        refusedStale: rec.refusedStale,
        forwardedWrites: rec.forwardedWrites,
        reached: entries.filter((e) => e.ahu === g.ahu).length,
      });
    }
    const l = attributeLeaseWrites(
      entries,
      this.groups,
      lease,
      epochUnits,
      (e) => this.writerOf(e),
      owners,
      termsSeen(this.claims, owners),
    );
    for (const [seq, epoch] of l.epochs) proof.epochs.set(seq, epoch);
    proof.violations.push(...l.violations);
    for (const [w, n] of l.writers) proof.leaseWriters.set(w, n);
    return proof;
  }

  /** The newest journal seq, for "after this" marks. */
  async lastSeq(): Promise<number> {
    const s = await getJson<{ journal: { lastSeq: number } }>(`${this.simUrl}/sim/state`, 2000);
    return this.journalBase + s.journal.lastSeq;
  }

  /**
   * Samples every live controller's claims every CLAIM_SAMPLE_MS: `/api/v1/cluster` and `/readyz`
   * at once, stamped with the send time. A node that does not answer (stopped, killed) gives no
   * sample, which ends its spans. Bounded: one round at a time, 800 ms per request.
   */
  private startClaimMonitor(): void {
    let stopped = false;
    let wake: (() => void) | null = null;
    this.monitorStop = () => {
      stopped = true;
      wake?.();
    };
    this.monitorDone = (async () => {
      while (!stopped) {
        const atMs = Date.now();
        await Promise.all(
          this.live().map(async (node) => {
            const [view, ready] = await Promise.all([
              this.cluster(node, 800).catch(() => null),
              fetch(`${this.apiUrl(node)}/readyz`, { signal: AbortSignal.timeout(800) })
                .then((r) => r.ok)
                .catch(() => null),
            ]);
            if (!view || ready === null) return;
            for (const g of view.groups) {
              this.claims.push({
                atMs,
                node,
                group: g.id,
                epoch: g.epoch ?? 0,
                leader: g.state === 'leader' && g.epoch !== null,
                driving: g.driving,
                ready,
              });
            }
          }),
        );
        const wait = Math.max(0, atMs + CLAIM_SAMPLE_MS - Date.now());
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, wait);
        });
      }
    })();
  }

  /**
   * Looks for new connections to the vendor units every SOCKET_SAMPLE_MS, from before the first
   * controller starts until the hall stops: a writer is known only while its connection lives (a
   * connection that opened, wrote and closed between two looks leaves its writes unplaced, which
   * the check reports).
   */
  private startSocketSampler(): void {
    if (this.vendorSimPorts.size === 0) return;
    let stopped = false;
    let wake: (() => void) | null = null;
    this.samplerStop = () => {
      stopped = true;
      wake?.();
    };
    this.samplerDone = (async () => {
      while (!stopped) {
        await this.sampleSockets().catch(() => {});
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, SOCKET_SAMPLE_MS);
        });
      }
    })();
  }

  /** Marks a group deliberately undriven from now (an operator pause); returns the exemption to close. */
  exempt(group: string, why: string): LivenessExemption {
    const x: LivenessExemption = { group, fromMs: Date.now(), toMs: null, why };
    this.exemptions.push(x);
    return x;
  }

  /** Groups without an accepted write in the wall-time window (a trial must show writes around its fault). */
  async groupsWithoutWrites(fromMs: number, toMs: number, sinceSeq = 0): Promise<string[]> {
    const read = await this.journal(sinceSeq);
    return groupsWithoutWrites(read.entries, this.groups, fromMs, toMs);
  }

  /**
   * One line, per fencing kind of the hall's units: its units by protocol, the journal's accepted
   * writes on them and its refusals by reason, and each kind's own witness — lease writes by their
   * writer, a gateway's raises, stale refusals and forwarded writes (docs/chaos.md, "Fencing kinds").
   */
  fencingSummary(report: Pick<HallReport, 'read' | 'fencing'>): string {
    const kinds = new Map<
      FencingKind,
      { units: Map<string, number>; accepted: number; refused: Map<string, number> }
    >();
    for (const [ahu, kind] of this.fencing) {
      const k = kinds.get(kind) ?? { units: new Map(), accepted: 0, refused: new Map() };
      kinds.set(kind, k);
      const protocol = this.protocols.get(ahu) ?? '?';
      k.units.set(protocol, (k.units.get(protocol) ?? 0) + 1);
    }
    for (const e of report.read.entries) {
      const k = kinds.get(this.fencing.get(e.ahu) ?? 'epoch');
      if (!k) continue;
      if (e.accepted) k.accepted++;
      else k.refused.set(e.reason ?? 'unknown', (k.refused.get(e.reason ?? 'unknown') ?? 0) + 1);
    }
    const list = (m: Map<string, number>) =>
      [...m]
        .sort()
        .map(([x, n]) => `${x} ${n}`)
        .join(', ');
    const witness = (kind: FencingKind): string => {
      const unplaced = report.fencing.violations.filter((v) => v.kind.startsWith(kind)).length;
      if (kind === 'lease')
        return ` (writers: ${list(report.fencing.leaseWriters) || 'none'}; ${unplaced} not placed in a term)`;
      if (kind === 'gateway')
        return report.fencing.gateways
          .map(
            (g) =>
              ` (${g.ahu}'s coolctl gateway: ${g.starts} start(s), ${g.raises} epoch raises, ` +
              `${g.refusedStale ?? '?'} stale refused, ${g.forwardedWrites ?? '?'} writes forwarded this run, ` +
              `${g.reached} reached the unit; ${unplaced} witness violations)`,
          )
          .join('');
      return '';
    };
    const order: FencingKind[] = ['epoch', 'lease', 'gateway'];
    return `chaos: fencing ${[...kinds]
      .sort((a, b) => order.indexOf(a[0]) - order.indexOf(b[0]))
      .map(([kind, k]) => {
        const n = [...k.units.values()].reduce((a, b) => a + b, 0);
        const refused = [...k.refused.values()].reduce((a, b) => a + b, 0);
        return (
          `${kind}: ${n} unit${n === 1 ? '' : 's'} (${list(k.units)}), ${k.accepted} accepted${witness(kind)}, ` +
          `${refused} refused${k.refused.size ? ` (${list(k.refused)})` : ''}`
        );
      })
      .join('; ')}`;
  }

  /**
   * Units without an accepted write in the wall-time window. Liveness is judged per group (one
   * slow unit does not stop its group), so a unit nobody reached — an RTU unit behind a gateway
   * that never got through — would pass every group check: the trials look at units too.
   */
  async unitsWithoutWrites(fromMs: number, toMs: number, sinceSeq = 0): Promise<string[]> {
    const read = await this.journal(sinceSeq);
    const seen = new Set<string>();
    for (const e of read.entries) if (e.accepted && e.wallMs >= fromMs && e.wallMs <= toMs) seen.add(e.ahu);
    return [...this.protocols.keys()].filter((a) => !seen.has(a));
  }

  /**
   * Kills the simulator (as a power cut would) and starts it again on the same ports: every unit
   * comes back in local control with epoch 0 and no memory of who wrote it. The journal so far is
   * kept (its seqs continue), so the invariants span both runs. Returns the wall time of the kill.
   */
  async restartSim({ downMs = 500 }: { downMs?: number } = {}): Promise<number> {
    const before = await readJournal(this.simUrl, { since: 0 });
    const fromSeq = this.journalArchive.at(-1)?.seq ?? 0;
    for (const e of before.entries) {
      const seq = e.seq + this.journalBase;
      if (seq > fromSeq) this.journalArchive.push({ ...e, seq });
    }
    this.archiveTruncated ||= before.truncated;
    const nextBase = this.journalBase + before.lastSeq;
    const atMs = Date.now();
    const exited = new Promise((r) => this.sim.once('exit', r));
    this.sim.kill('SIGKILL');
    await Promise.race([exited, sleep(5000)]);
    // Whatever it had journaled after our read died with it; the run is read once more below only
    // if the process lived on (it cannot after SIGKILL).
    this.journalBase = nextBase;
    await sleep(downMs);
    const simLog = join(this.dir, 'sim.log');
    const mark = `--- simulator restart at ${new Date().toISOString()} ---`;
    const fd = openSync(simLog, 'a');
    writeSync(fd, `${mark}\n`);
    closeSync(fd);
    const sim = spawnLogged(process.execPath, this.simRestartArgs, simLog, {});
    this.sim = sim;
    await waitFor(
      'the restarted simulator to serve its API',
      async () => {
        if (sim.exitCode !== null) {
          const log = await readFile(simLog, 'utf8').catch(() => '');
          throw new Error(
            `the simulator exited ${sim.exitCode} on restart:\n${log.slice(log.lastIndexOf(mark))}`,
          );
        }
        await getJson(`${this.simUrl}/sim/state`, 1000);
        return true;
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    return atMs;
  }

  /**
   * Kills a unit's `coolctl gateway` (SIGKILL, as a power cut would) and starts it again on the same
   * port after `downMs`: it must come back holding the epoch its state file kept. Returns the wall
   * time of the kill.
   */
  async restartFencingGateway(ahu: string, { downMs = 1000 }: { downMs?: number } = {}): Promise<number> {
    const g = this.fencingGateways.get(ahu);
    if (!g) throw new Error(`${ahu} has no fencing gateway in this hall`);
    const atMs = Date.now();
    await stopGatewayProc(g, { kill9: true });
    await sleep(downMs);
    await startGatewayProc(g);
    return atMs;
  }

  /**
   * Sends one fenced write to a unit's `coolctl gateway` as a deposed leader would: `epoch`, the
   * fan speed register of the hall's vendor profile (wire 5070, FC6) set to `fanPct`. Returns the
   * Modbus exception the gateway answered, or null when it took the write.
   */
  async gatewayWrite(ahu: string, epoch: number, fanPct: number): Promise<number | null> {
    const g = this.fencingGateways.get(ahu);
    if (!g) throw new Error(`${ahu} has no fencing gateway in this hall`);
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port: g.modbusPort });
      s.once('connect', () => resolve(s));
      s.once('error', reject);
    });
    const client = new ModbusTcpClient(g.unitId);
    socket.on('data', (chunk: Buffer) => client.receive(chunk));
    socket.on('error', () => undefined);
    client.attach(socket);
    try {
      const words = encodeFencedWrite({ epoch, fc: 6, address: VENDOR_FAN_WIRE_ADDRESS, values: [fanPct] });
      const answer = client.writeRegisters(writeAddress(), words).then(
        () => null,
        (err: unknown) => (err instanceof ModbusExceptionError ? err.modbusCode : Promise.reject(err)),
      );
      const late = sleep(5000).then(() => Promise.reject(new Error(`${g.name} did not answer within 5 s`)));
      return await Promise.race([answer, late]);
    } finally {
      client.destroy();
    }
  }

  /** Injects (or clears) simulator faults through POST /sim/faults. */
  async simFault(fault: Record<string, unknown> | Record<string, unknown>[]): Promise<void> {
    const res = await fetch(`${this.simUrl}/sim/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(fault),
      signal: AbortSignal.timeout(5000),
    });
    if (!res.ok)
      throw new Error(
        `POST /sim/faults ${JSON.stringify(fault)} answered ${res.status}: ${await res.text()}`,
      );
  }

  /** What every API request of a test sends: the seeded admin's bearer token. */
  get apiHeaders(): Record<string, string> {
    return this.apiAdmin?.headers ?? {};
  }

  /** An operator call to a controller's HTTP API; throws with the answer on a non-2xx. */
  async operator(node: string, method: string, path: string, body?: unknown): Promise<unknown> {
    const res = await fetch(`${this.apiUrl(node)}${path}`, {
      method,
      headers: { ...this.apiHeaders, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(15_000),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path} on ${node} answered ${res.status}: ${text}`);
    return text ? JSON.parse(text) : null;
  }

  /** Sends SIGHUP (a hot reload) to a controller. */
  reload(node: string): void {
    this.signal(node, 'SIGHUP');
  }

  /** Rewrites a controller's config file with the same settings (a watched change: a reload). */
  async touchConfig(node: string): Promise<void> {
    const c = this.proc(node);
    const text = await readFile(c.configPath, 'utf8');
    const body = text.replace(/^# touched .*\n/m, '');
    await writeFile(c.configPath, `# touched ${new Date().toISOString()}\n${body}`);
  }

  /** Sends `signal` to an etcd member without waiting (SIGSTOP/SIGCONT). */
  async etcdSignal(member: number, signal: NodeJS.Signals): Promise<void> {
    await this.etcd.kill(member, signal);
  }

  /** etcdctl against every member, as the hall's admin (a secure hall: certificates and root). */
  etcdctl(args: string[], timeoutMs = 5000): Promise<string> {
    return this.etcd.ctl(args, { asRoot: true, timeoutMs });
  }

  /**
   * Options of an MQTT client of the hall's broker (`connectAsync(hall.mqttUrl, …)`): on a secure
   * hall the broker's CA and the hall's user.
   */
  mqttOptions(extra: IClientOptions = {}): IClientOptions {
    const m = this.security?.mqtt;
    return {
      connectTimeout: 5000,
      reconnectPeriod: 0,
      ...(m ? { ca: [readFileSync(m.caFile)], username: m.username, password: m.password } : {}),
      ...extra,
    };
  }

  /** The etcd member that is raft leader now (by `endpoint status`), or null. */
  etcdLeader(): Promise<number | null> {
    return this.etcd.leader();
  }

  /**
   * Which node drove which epoch, from the controllers' logs ('driving the group'), and when its
   * node first said so (the line's time, on the host's clock).
   */
  async epochOwners(): Promise<Map<number, EpochOwner>> {
    const owners = new Map<number, EpochOwner>();
    for (const c of this.controllers.values()) {
      const log = await readFile(c.logPath, 'utf8').catch(() => '');
      for (const line of log.split('\n')) {
        if (!line.includes('driving the group')) continue;
        try {
          const j = JSON.parse(line) as { epoch?: number; group?: string; time?: number };
          if (typeof j.epoch !== 'number' || !j.group || owners.has(j.epoch)) continue;
          owners.set(j.epoch, {
            node: c.name,
            group: j.group,
            ...(typeof j.time === 'number' ? { drivingAtMs: j.time } : {}),
          });
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
    for (const id of this.rtuLinks.keys())
      parts.push(`--- gw-${id} ---\n${await tail(join(this.dir, `gw-${id}.log`), lines)}`);
    for (const g of this.fencingGateways.values())
      parts.push(`--- ${g.name} ---\n${await tail(g.logPath, lines)}`);
    for (const c of this.controllers.values())
      parts.push(`--- ${c.name} ---\n${await tail(c.logPath, lines)}`);
    return `${parts.join('\n')}\n`;
  }

  /**
   * Every controller's JSON log lines since `sinceWallMs` (pino's `time`), each with the node that
   * wrote it: what a test counts or looks for in the logs.
   */
  async logLines(sinceWallMs = 0): Promise<HallLogLine[]> {
    const out: HallLogLine[] = [];
    for (const c of this.controllers.values()) {
      const text = await readFile(c.logPath, 'utf8').catch(() => '');
      for (const raw of text.split('\n')) {
        if (!raw.startsWith('{')) continue;
        let j: HallLogLine;
        try {
          j = { ...JSON.parse(raw), node: c.name };
        } catch {
          continue;
        }
        if (j.time >= sinceWallMs) out.push(j);
      }
    }
    return out;
  }

  /**
   * A controller's warnings and errors about its lease since `sinceWallMs` (lease lost, guard lapsed,
   * fenced, revoked), each as `+MS msg: reason`: what a trial names when a leadership moved.
   */
  async leaseTrouble(node: string, sinceWallMs: number): Promise<string[]> {
    const c = this.controllers.get(node);
    if (!c) return [];
    const text = await readFile(c.logPath, 'utf8').catch(() => '');
    const out: string[] = [];
    for (const line of text.split('\n')) {
      if (!line.includes('lease') && !line.includes('fenced')) continue;
      let j: { level?: number; time?: number; msg?: string; reason?: string };
      try {
        j = JSON.parse(line);
      } catch {
        continue;
      }
      if ((j.level ?? 0) < 40 || (j.time ?? 0) < sinceWallMs) continue;
      out.push(`+${(j.time ?? 0) - sinceWallMs} ms ${j.msg ?? ''}${j.reason ? `: ${j.reason}` : ''}`);
    }
    return out;
  }

  /** Stops everything, bounded: SIGCONT, SIGTERM, then SIGKILL after 3 s; etcd and proxies last. */
  stopAll({ keepDir = false }: { keepDir?: boolean } = {}): Promise<void> {
    this.stopping ??= (async () => {
      this.monitorStop?.();
      this.samplerStop?.();
      await Promise.race([Promise.all([this.monitorDone, this.samplerDone]), sleep(2000)]);
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
      await Promise.all([...this.deviceProxies.values()].map((p) => p.close()));
      await Promise.all([...this.fencingGateways.values()].map((g) => stopGatewayProc(g)));
      await Promise.all([...this.rtuLinks.values()].map((l) => l.gateway.stop()));
      await Promise.all([...this.rtuLinks.values()].map((l) => l.line.stop()));
      for (const l of this.rtuLinks.values()) l.log.end();
      await this.etcd.stop().catch(() => {});
      if (!keepDir) await rm(this.dir, { recursive: true, force: true }).catch(() => {});
    })();
    return this.stopping;
  }
}

/** Adds each vendor unit to the site and its group: a Modbus TCP unit beside the group's first. */
export function addVendorUnits(site: Site, vendor: readonly VendorUnit[]): void {
  for (const v of vendor) {
    const group = site.controlGroups.find((g) => g.id === v.group);
    if (!group) throw new Error(`vendor: ${v.id}'s group ${v.group} is not in the generated site`);
    if (site.airHandlers.some((a) => a.id === v.id))
      throw new Error(`vendor: ${v.id} is already in the site`);
    const base = site.airHandlers.find((a) => a.id === group.airHandlers[0])!;
    site.airHandlers.push({
      id: v.id,
      room: base.room,
      xM: base.xM,
      yM: base.yM + 0.5,
      capacityKw: base.capacityKw,
      maxAirflowM3s: base.maxAirflowM3s,
      fanMaxKw: base.fanMaxKw,
      localSetpointC: base.localSetpointC,
      localFanPct: base.localFanPct,
      watchdogS: base.watchdogS,
      supplyTauS: base.supplyTauS,
      protocol: 'modbus-tcp',
      endpoint: { host: '127.0.0.1', port: 0, unitId: 1 },
      profile: v.profile,
      fencing: v.fencing,
      client: { ...VENDOR_TIMING[v.fencing] },
    });
    group.airHandlers.push(v.id);
  }
}

/** The unit id controllers send to a hall's fencing gateway (the unit's place in the site would do; any 1–247). */
const FENCING_GATEWAY_UNIT_ID = 7;

function fencingGatewayProc(dir: string, v: VendorUnit, simPort: number): FencingGatewayProc {
  const name = `fgw-${v.id}`;
  return {
    ahu: v.id,
    group: v.group,
    name,
    unitId: FENCING_GATEWAY_UNIT_ID,
    configPath: join(dir, `${name}.yaml`),
    logPath: join(dir, `${name}.log`),
    stateFile: join(dir, name, 'epochs.json'),
    simPort,
    modbusPort: 0,
    httpUrl: '',
    child: null,
    exited: null,
    starts: 0,
  };
}

/** The gateway's config (docs/fencing-gateway.md): one TCP line to the simulated unit. */
async function writeGatewayConfig(g: FencingGatewayProc, modbusPort: number): Promise<void> {
  await writeFile(
    g.configPath,
    stringify({
      gateway: g.name,
      listen: { host: '127.0.0.1', port: modbusPort },
      http: { host: '127.0.0.1', port: 0 },
      stateFile: g.stateFile,
      lines: [
        {
          name: 'sim',
          tcp: { host: '127.0.0.1', port: g.simPort },
          queueTimeoutMs: VENDOR_TIMING.gatewayLine.queueTimeoutMs,
        },
      ],
      units: [
        {
          id: g.unitId,
          name: g.ahu,
          line: 'sim',
          unitId: 1,
          timeoutMs: VENDOR_TIMING.gatewayLine.timeoutMs,
        },
      ],
    }),
  );
}

/** Starts (or restarts) a fencing gateway as the systemd unit runs it; waits until it prints its ports. */
async function startGatewayProc(g: FencingGatewayProc, timeoutMs = 20_000): Promise<void> {
  g.starts++;
  const mark = `--- start #${g.starts} of ${g.name} at ${new Date().toISOString()} ---`;
  const fd = openSync(g.logPath, 'a');
  writeSync(fd, `${mark}\n`);
  closeSync(fd);
  const child = spawnLogged(
    process.execPath,
    ['src/gateway/main.ts', '--config', g.configPath],
    g.logPath,
    {},
  );
  g.child = child;
  g.exited = new Promise((r) => child.once('exit', (code) => r(code)));
  const m = await waitFor(
    `${g.name} to print its ports`,
    async () => {
      const log = await readFile(g.logPath, 'utf8');
      const since = log.slice(log.lastIndexOf(mark));
      if (child.exitCode !== null)
        throw new Error(`${g.name} exited ${child.exitCode} on start:\n${since.slice(-3000)}`);
      return /coolctl gateway \S+: modbus [\d.]+:(\d+), http (\S+)/.exec(since);
    },
    { timeoutMs, intervalMs: 50 },
  );
  g.modbusPort = Number(m[1]);
  g.httpUrl = m[2]!;
}

/** SIGTERM (SIGKILL with `kill9`), bounded: SIGKILL after 3 s. */
async function stopGatewayProc(
  g: FencingGatewayProc,
  { kill9 = false }: { kill9?: boolean } = {},
): Promise<void> {
  const c = g.child;
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  c.kill(kill9 ? 'SIGKILL' : 'SIGTERM');
  await Promise.race([g.exited, sleep(3000)]);
  if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.race([g.exited, sleep(1000)]);
}

/** A process with its output appended to `logPath`, as the hall logs every process it starts. */
export function spawnLogged(
  cmd: string,
  args: string[],
  logPath: string,
  env: NodeJS.ProcessEnv,
  cwd = REPO_ROOT,
): ChildProcess {
  const fd = openSync(logPath, 'a');
  try {
    return spawn(cmd, args, { cwd, stdio: ['ignore', fd, fd], env: { ...process.env, ...env } });
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
  | 'clock-jump'
  | 'slow-unit'
  | 'slow-unit-sigstop'
  | 'lossy-link'
  | 'reset-link'
  | 'transient-refusal'
  | 'peer-partition-failsafe'
  | 'gateway-down'
  | 'broker-restart'
  | 'gateway-status-retained'
  | 'mqtt-oversized'
  | 'etcd-leader-isolated'
  | 'etcd-member-sigstop'
  | 'sim-restart'
  | 'reload-during-fault'
  | 'operator-during-fault'
  | 'lossy-line'
  | 'reset-line'
  | 'fencing-gateway-restart';

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
  await checkLeaseDeadline(
    hall,
    r,
    leader.node,
    held.map(([, l]) => l.epoch),
    t0,
  );
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
    await checkLeaseDeadline(
      hall,
      r,
      leader.node,
      held.map(([, l]) => l.epoch),
      t0,
    );
  } finally {
    if (o.restore !== false) hall.heal(leader.node);
  }
  if (o.restore !== false) await settle(hall, { even: true });
  return r;
}

/**
 * The lease units' witness for a leader that lost etcd at `faultWallMs` (stopped, cut off): the
 * last keepalive it can have had answered was sent before then, so its lease guard's deadline is
 * at most fault + TTL − margin; a lease write is sent only while its worst case still lands by the
 * deadline. Each accepted lease write of `node` under an epoch it held then (placed in its term by
 * `Hall.check`) must land by that bound — the simulator and the test process share the host's
 * wall clock, and the controller's monotonic clock runs at the same rate. Adds a note with the
 * last such write, and a problem per late one.
 */
async function checkLeaseDeadline(
  hall: Hall,
  r: TrialResult,
  node: string,
  epochs: readonly number[],
  faultWallMs: number,
): Promise<void> {
  const lease = new Set(hall.unitsFenced('lease'));
  if (lease.size === 0) return;
  const report = await hall.check();
  const boundMs = faultWallMs + hall.timing.leaseTtlS * 1000 - hall.timing.safetyMarginMs;
  const mine = report.read.entries.filter(
    (e) =>
      e.accepted &&
      lease.has(e.ahu) &&
      hall.writerOf(e) === node &&
      epochs.includes(report.fencing.epochs.get(e.seq) ?? -1),
  );
  const last = mine.at(-1);
  if (last)
    r.notes.push(
      `${node}'s last lease write under its old term: ${last.ahu} ${signedMs(last.wallMs - faultWallMs)} from the fault ` +
        `(deadline at most +${boundMs - faultWallMs} ms)`,
    );
  for (const e of mine.filter((x) => x.wallMs > boundMs))
    r.problems.push(
      `${e.ahu} (lease) took ${node}'s write at seq ${e.seq} +${e.wallMs - faultWallMs} ms after the fault, ` +
        `past its lease deadline (at most +${boundMs - faultWallMs} ms: TTL − safety margin)`,
    );
}

/** `+12 ms`, `-783 ms`: a time relative to a fault. */
function signedMs(ms: number): string {
  return `${ms >= 0 ? '+' : '−'}${Math.abs(ms)} ms`;
}

/** Loses one etcd member: leadership stays where it is and every group keeps being written. */
export async function trialEtcdMemberLoss(
  hall: Hall,
  o: TrialOptions & { member?: number; holdMs?: number } = {},
): Promise<TrialResult> {
  const before = await hall.waitForLeaders();
  const member = o.member ?? Math.floor(Math.random() * hall.etcd.clientUrls.length);
  const seq0 = await hall.lastSeq();
  const t0 = Date.now();
  await hall.etcd.kill(member, 'SIGKILL');
  const r = result('etcd-member-loss', `etcd-${member}`, '*', null, t0);
  try {
    const holdMs = o.holdMs ?? hall.timing.leaseTtlS * 1000 * 2;
    await sleep(holdMs);
    const after = await hall.leaders();
    for (const [g, l] of before) {
      const now = after.leaders.get(g);
      if (!now || now.epoch !== l.epoch) {
        const why = await hall.leaseTrouble(l.node, t0);
        r.problems.push(
          `${g}: leadership moved (${l.node}@${l.epoch} → ${now ? `${now.node}@${now.epoch}` : 'none'}) on the loss of one etcd member; ${l.node} after the fault: ${why.length > 0 ? why.join('; ') : 'no lease trouble logged'}`,
        );
      }
    }
    // What a unit notices is a gap in its writes, not when the last one fell: every group is
    // written across the whole hold, from the fault to this read, with no gap a driving leader
    // may not leave (half the watchdog). A fixed "within the last second" fails on a loaded
    // machine while every unit is driven.
    const readMs = Date.now();
    const read = await hall.journal(seq0);
    const gaps: string[] = [];
    for (const [g, ahus] of Object.entries(hall.groups)) {
      const writes = read.entries
        .filter((e) => e.accepted && ahus.includes(e.ahu) && e.wallMs > t0 && e.wallMs <= readMs)
        .map((e) => e.wallMs);
      const gap = maxGapMs([t0, ...writes, readMs]);
      gaps.push(`${g} ${gap} ms`);
      if (gap > hall.halfPeriodMs)
        r.problems.push(
          `${g}: ${gap} ms without an accepted write with one etcd member down (at most ${hall.halfPeriodMs} ms: half the watchdog)`,
        );
    }
    r.notes.push(`longest gap between accepted writes: ${gaps.join(', ')}`);
  } finally {
    if (o.restore !== false) await hall.etcd.restart(member);
  }
  if (o.restore !== false) await settle(hall);
  return r;
}

/** The longest step between consecutive times (sorted here). */
function maxGapMs(times: number[]): number {
  const t = [...times].sort((a, b) => a - b);
  let gap = 0;
  for (let i = 1; i < t.length; i++) gap = Math.max(gap, t[i]! - t[i - 1]!);
  return gap;
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

// ---------------------------------------------------------------------------------------------
// Faults of the device links, the sensor network, etcd's own links, the simulator, and operators
// acting while something is broken. Each states what must hold besides the invariants (safety
// and liveness, checked over the whole journal by the caller) in docs/chaos.md.

/**
 * A unit of `group` fenced by `fencing` (default epoch: the faults that study a protocol study it on
 * the units that check epochs) and of `protocol` when the group has one, at random.
 */
function unitOf(hall: Hall, group: string, protocol?: string, fencing: FencingKind = 'epoch'): string {
  const ahus = hall.groups[group]!.filter((a) => (hall.fencing.get(a) ?? 'epoch') === fencing);
  const of = protocol ? ahus.filter((a) => hall.protocols.get(a) === protocol) : [];
  return pick(of.length > 0 ? of : ahus.length > 0 ? ahus : hall.groups[group]!);
}

/** The protocols the hall's units are served on (`modbus-rtu` only with RTU units). */
function protocolsOf(hall: Hall): string[] {
  return [...new Set(hall.protocols.values())].sort();
}

/** A group with a unit of `protocol` fenced by `fencing`, at random (any group when none has one). */
function groupWith(
  hall: Hall,
  protocol: string | undefined,
  among: string[],
  fencing: FencingKind = 'epoch',
): string {
  const fit = among.filter((g) =>
    hall.groups[g]!.some(
      (a) =>
        (!protocol || hall.protocols.get(a) === protocol) && (hall.fencing.get(a) ?? 'epoch') === fencing,
    ),
  );
  return pick(fit.length > 0 ? fit : among);
}

/** The group of the hall's first unit fenced by `fencing` (undefined: the hall has none). */
export function groupFenced(hall: Hall, fencing: FencingKind): string | undefined {
  const ahu = hall.unitsFenced(fencing)[0];
  return Object.keys(hall.groups).find((g) => ahu !== undefined && hall.groups[g]!.includes(ahu));
}

/** Whether `ahu` took an accepted write after `afterWallMs` within `timeoutMs`. */
async function unitWrittenAfter(
  hall: Hall,
  ahu: string,
  afterWallMs: number,
  sinceSeq: number,
  timeoutMs: number,
) {
  try {
    return await waitFor(
      `${ahu} written again`,
      async () =>
        (await hall.journal(sinceSeq)).entries.find(
          (e) => e.accepted && e.ahu === ahu && e.wallMs > afterWallMs,
        ),
      { timeoutMs, intervalMs: 100 },
    );
  } catch {
    return null;
  }
}

/**
 * One unit answers slowly (the simulator's `ahu-slow`: every request held `ms` before it is served)
 * for 3 TTLs. The group's other unit keeps being written (liveness) and the slow unit's late
 * answers never put an old term's write after a new one's (safety).
 */
export async function trialSlowUnit(hall: Hall, o: TrialOptions & { protocol?: string; ms?: number } = {}) {
  const all = await hall.waitForLeaders();
  const group = o.group ?? groupWith(hall, o.protocol, [...all.keys()]);
  const leader = all.get(group)!;
  const ahu = unitOf(hall, group, o.protocol);
  const ms = o.ms ?? pick([1500, 5000]);
  const t0 = Date.now();
  await hall.simFault({ fault: 'ahu-slow', ahu, ms });
  const r = result('slow-unit', leader.node, group, leader.epoch, t0);
  r.notes.push(`${ahu} (${hall.protocols.get(ahu)}) answers after ${ms} ms`);
  try {
    await sleep(hall.timing.leaseTtlS * 1000 * 3);
  } finally {
    await hall.simFault({ fault: 'ahu-slow', ahu, clear: true });
  }
  if (o.restore !== false) await settle(hall);
  return r;
}

/**
 * Issue 15, item 5: a slow unit (answers after 5 s) and its group's leader SIGSTOPped past the TTL.
 * The old term's write to the slow unit must not land after the new leader's first write.
 */
export async function trialSlowUnitSigstop(
  hall: Hall,
  o: TrialOptions & { protocol?: string; fencing?: FencingKind } = {},
) {
  const all = await hall.waitForLeaders();
  const fencing = o.fencing ?? 'epoch';
  const group =
    o.group ??
    groupWith(
      hall,
      o.protocol ?? (o.fencing ? undefined : pick(protocolsOf(hall))),
      [...all.keys()],
      fencing,
    );
  const ahu = unitOf(hall, group, o.protocol, fencing);
  await hall.simFault({ fault: 'ahu-slow', ahu, ms: 5000 });
  try {
    // Let the leader have a write to the slow unit in flight before it stops.
    await sleep(hall.timing.periodMs * 3);
    const r = await trialSigstop(hall, { ...o, group });
    r.fault = 'slow-unit-sigstop';
    r.notes.unshift(
      `${ahu} (${hall.protocols.get(ahu)}, fencing ${hall.fencing.get(ahu)}) answers after 5000 ms`,
    );
    return r;
  } finally {
    await hall.simFault({ fault: 'ahu-slow', ahu, clear: true });
  }
}

/** A lossy device link (a proxy drops 30 % of the chunks either way, each delayed 50 ms) for 3 TTLs. */
export async function trialLossyLink(hall: Hall, o: TrialOptions & { dropPct?: number } = {}) {
  const all = await hall.waitForLeaders();
  const group = o.group ?? groupWith(hall, 'modbus-tcp', [...all.keys()]);
  const ahu = unitOf(hall, group, 'modbus-tcp');
  const proxy = hall.deviceProxies.get(ahu);
  if (!proxy) throw new Error(`${ahu} has no device proxy (start the hall with deviceProxies)`);
  const leader = all.get(group)!;
  const dropped0 = proxy.stats.droppedChunks;
  const t0 = Date.now();
  proxy.impair({ dropPct: o.dropPct ?? 30, delayMs: 50 });
  const r = result('lossy-link', leader.node, group, leader.epoch, t0);
  try {
    await sleep(hall.timing.leaseTtlS * 1000 * 3);
  } finally {
    proxy.unimpair();
  }
  r.notes.push(`${ahu}: ${proxy.stats.droppedChunks - dropped0} chunks dropped`);
  const seq = Math.max(0, (await hall.lastSeq()) - JOURNAL_BACKLOG);
  if (!(await unitWrittenAfter(hall, ahu, Date.now(), seq, hall.handOnMs)))
    r.problems.push(`${ahu} not written again within ${hall.handOnMs} ms after its link recovered`);
  if (o.restore !== false) await settle(hall);
  return r;
}

/**
 * A resetting device link: the unit serves a request, sends half the answer and resets the
 * connection (`ahu-reset`), and the proxy in front of it resets every connection every 300 ms,
 * for 2 TTLs.
 */
export async function trialResetLink(hall: Hall, o: TrialOptions = {}) {
  const all = await hall.waitForLeaders();
  const group = o.group ?? groupWith(hall, 'modbus-tcp', [...all.keys()]);
  const ahu = unitOf(hall, group, 'modbus-tcp');
  const leader = all.get(group)!;
  const proxy = hall.deviceProxies.get(ahu);
  const t0 = Date.now();
  await hall.simFault({ fault: 'ahu-reset', ahu });
  const r = result('reset-link', leader.node, group, leader.epoch, t0);
  let resets = 0;
  try {
    const end = Date.now() + hall.timing.leaseTtlS * 1000 * 2;
    while (Date.now() < end) {
      resets += proxy?.resetAll() ?? 0;
      await sleep(300);
    }
  } finally {
    await hall.simFault({ fault: 'ahu-reset', ahu, clear: true });
  }
  r.notes.push(`${ahu}: ${resets} connections reset by the proxy`);
  const seq = Math.max(0, (await hall.lastSeq()) - JOURNAL_BACKLOG);
  if (!(await unitWrittenAfter(hall, ahu, Date.now(), seq, hall.handOnMs)))
    r.problems.push(`${ahu} not written again within ${hall.handOnMs} ms after its link recovered`);
  if (o.restore !== false) await settle(hall);
  return r;
}

/** An RTU unit of `group` (or of a group that has one) with its serial line and gateway. */
function rtuLinkOf(hall: Hall, group: string | undefined, among: string[]): { group: string; link: RtuLink } {
  const g = group ?? groupWith(hall, 'modbus-rtu', among);
  const ahu = unitOf(hall, g, 'modbus-rtu');
  const link = hall.rtuLinks.get(ahu);
  if (!link) throw new Error(`${g} has no Modbus RTU unit (start the hall with rtu.units)`);
  return { group: g, link };
}

/**
 * A bad serial line under a Modbus RTU unit, for 3 TTLs: 30 % of the byte stream's chunks lost
 * either way, each delayed 50 ms, and one request in five garbled (a flipped byte: the unit sees a
 * bad CRC and stays quiet). The gateway answers 0x0B for what the unit never answered. The group
 * stays driven (its other unit, at least), and the RTU unit is written again within one watchdog
 * period of the line mending.
 */
export async function trialLossyLine(
  hall: Hall,
  o: TrialOptions & { dropPct?: number; noisePct?: number } = {},
) {
  const all = await hall.waitForLeaders();
  const { group, link } = rtuLinkOf(hall, o.group, [...all.keys()]);
  const leader = all.get(group)!;
  const line0 = link.line.stats;
  const noAnswer0 = link.gateway.counters.targetNoAnswer;
  const t0 = Date.now();
  link.line.impair({ dropPct: o.dropPct ?? 30, delayMs: 50 });
  link.line.setNoise(o.noisePct ?? 20);
  const r = result('lossy-line', leader.node, group, leader.epoch, t0);
  try {
    await sleep(hall.timing.leaseTtlS * 1000 * 3);
  } finally {
    link.line.mend();
  }
  const line1 = link.line.stats;
  r.notes.push(
    `${link.ahu}: ${line1.droppedChunks - line0.droppedChunks} chunks lost, ` +
      `${line1.noisyChunks - line0.noisyChunks} requests garbled, ` +
      `gateway answered 0x0B ${link.gateway.counters.targetNoAnswer - noAnswer0}×`,
  );
  const seq = Math.max(0, (await hall.lastSeq()) - JOURNAL_BACKLOG);
  const again = await unitWrittenAfter(hall, link.ahu, Date.now(), seq, hall.handOnMs);
  if (!again)
    r.problems.push(`${link.ahu} not written again within ${hall.handOnMs} ms after its line mended`);
  if (o.restore !== false) await settle(hall);
  return r;
}

/**
 * A resetting RTU link, for 2 TTLs: the unit breaks its answers off half-way (`ahu-reset`: on a
 * serial line the frame just stops), the line drops out for 300 ms of every 900 ms (a loose
 * connector), and the controllers' TCP connections to the gateway are reset every 300 ms.
 */
export async function trialResetLine(hall: Hall, o: TrialOptions = {}) {
  const all = await hall.waitForLeaders();
  const { group, link } = rtuLinkOf(hall, o.group, [...all.keys()]);
  const leader = all.get(group)!;
  const proxy = hall.deviceProxies.get(link.ahu);
  const t0 = Date.now();
  await hall.simFault({ fault: 'ahu-reset', ahu: link.ahu });
  const r = result('reset-line', leader.node, group, leader.epoch, t0);
  let resets = 0;
  let drops = 0;
  try {
    const end = Date.now() + hall.timing.leaseTtlS * 1000 * 2;
    for (let tick = 0; Date.now() < end && tick < 1000; tick++) {
      if (tick % 3 === 0) {
        link.line.break();
        drops++;
      } else link.line.mend();
      resets += proxy?.resetAll() ?? 0;
      await sleep(300);
    }
  } finally {
    link.line.mend();
    await hall.simFault({ fault: 'ahu-reset', ahu: link.ahu, clear: true });
  }
  r.notes.push(`${link.ahu}: line dropped out ${drops}×, ${resets} gateway connections reset`);
  const seq = Math.max(0, (await hall.lastSeq()) - JOURNAL_BACKLOG);
  const again = await unitWrittenAfter(hall, link.ahu, Date.now(), seq, hall.handOnMs);
  if (!again)
    r.problems.push(`${link.ahu} not written again within ${hall.handOnMs} ms after its line recovered`);
  if (o.restore !== false) await settle(hall);
  return r;
}

/**
 * Issue 15, item 1: a unit refuses writes for ~2 s with the stale-epoch answer (Modbus exception
 * 0x0D, OPC-UA BadInvalidState) while its epoch is not newer (reads are served, so the leader can
 * read the epoch back). The group must stay driven (liveness), and the unit be written again once
 * it accepts.
 */
export async function trialTransientRefusal(
  hall: Hall,
  o: TrialOptions & { protocol?: string; ms?: number } = {},
) {
  const all = await hall.waitForLeaders();
  const protocol = o.protocol ?? pick(protocolsOf(hall));
  const group = o.group ?? groupWith(hall, protocol, [...all.keys()]);
  const ahu = unitOf(hall, group, protocol);
  const leader = all.get(group)!;
  const isOpcua = hall.protocols.get(ahu) === 'opcua';
  const fault = isOpcua
    ? { fault: 'ahu-bad-status', ahu, status: 'BadInvalidState', writesOnly: true }
    : { fault: 'ahu-exception', ahu, code: 0x0d, writesOnly: true };
  const t0 = Date.now();
  await hall.simFault(fault);
  const r = result('transient-refusal', leader.node, group, leader.epoch, t0);
  try {
    await sleep(o.ms ?? 2000);
  } finally {
    await hall.simFault({ fault: fault.fault, ahu, clear: true });
  }
  const clearedMs = Date.now();
  r.notes.push(
    `${ahu} (${hall.protocols.get(ahu)}) refused writes with ${isOpcua ? 'BadInvalidState' : '0x0D'} for ${clearedMs - t0} ms`,
  );
  const seq = Math.max(0, (await hall.lastSeq()) - JOURNAL_BACKLOG);
  const again = await unitWrittenAfter(hall, ahu, clearedMs, seq, hall.handOnMs);
  if (!again) r.problems.push(`${ahu} not written again within ${hall.handOnMs} ms after its refusals ended`);
  else r.notes.push(`${ahu} written again ${again.wallMs - clearedMs} ms after (epoch ${again.epoch})`);
  const now = (await hall.leaders()).leaders.get(group);
  r.newEpoch = now?.epoch ?? null;
  if (o.restore !== false) await settle(hall);
  return r;
}

/**
 * Failsafe on (issue 15, item 9): etcd unreachable for every controller while state-cache peer
 * links are cut too, for 3 TTLs. `all`: every node's incoming peer links (a full peer partition):
 * no leader can be backed by every member, so every one stops by its lease deadline and nobody
 * takes a group meanwhile. `one`: a leader's incoming links only — its own links out still reach
 * its peers, so failsafe may rightly keep it leading; its peers cannot reach it, so they cannot be
 * backed and stop. Either way the invariants hold and leaders return with etcd.
 */
export async function trialPeerPartitionFailsafe(
  hall: Hall,
  o: TrialOptions & { scope?: 'all' | 'one' } = {},
) {
  const { group, leader } = await leaderOf(hall, o.group);
  const scope = o.scope ?? pick(['all', 'one'] as const);
  const ttlMs = hall.timing.leaseTtlS * 1000;
  const cutPeers = scope === 'all' ? hall.nodes : [leader.node];
  const t0 = Date.now();
  for (const n of hall.nodes) hall.cut(n);
  for (const n of cutPeers) hall.cutPeerChannel(n);
  const r = result('peer-partition-failsafe', leader.node, group, leader.epoch, t0);
  r.notes.push(`peer links into ${scope === 'all' ? 'every node' : leader.node} cut`);
  const seq0 = Math.max(0, (await hall.lastSeq()) - JOURNAL_BACKLOG);
  try {
    await sleep(ttlMs * 3);
    const read = await hall.journal(seq0);
    const boundMs = 2 * ETCD_ELECTION_MS + ttlMs;
    for (const [g, ahus] of Object.entries(hall.groups)) {
      const last = read.entries.filter((e) => e.accepted && ahus.includes(e.ahu)).at(-1);
      r.notes.push(`${g}: last write ${last ? `+${last.wallMs - t0} ms (epoch ${last.epoch})` : 'none'}`);
      if (scope === 'all' && last && last.wallMs > t0 + boundMs)
        r.problems.push(
          `${g}: written ${last.wallMs - t0} ms after etcd and every peer link were cut (epoch ${last.epoch}), ` +
            `past the latest lease deadline (${boundMs} ms): failsafe held a leader no member could back`,
        );
    }
  } finally {
    for (const n of cutPeers) hall.healPeerChannel(n);
    for (const n of hall.nodes) hall.heal(n);
  }
  if (o.restore !== false) await settle(hall, { timeoutMs: 30_000 });
  return r;
}

/** The sensor gateway goes down (no reports, its status says offline) for 2 TTLs. */
export async function trialGatewayDown(hall: Hall, o: TrialOptions & { gateway?: string } = {}) {
  await hall.waitForLeaders();
  const gateway = o.gateway ?? 'gw-1';
  const t0 = Date.now();
  await hall.simFault({ fault: 'gateway-down', gateway });
  const r = result('gateway-down', gateway, '*', null, t0);
  try {
    await sleep(hall.timing.leaseTtlS * 1000 * 2);
  } finally {
    await hall.simFault({ fault: 'gateway-down', gateway, clear: true });
  }
  if (o.restore !== false) await settle(hall);
  return r;
}

/** The MQTT broker restarts (connections dropped, retained messages lost, down 1.5 s). */
export async function trialBrokerRestart(hall: Hall, o: TrialOptions & { downMs?: number } = {}) {
  await hall.waitForLeaders();
  const downMs = o.downMs ?? 1500;
  const t0 = Date.now();
  await hall.simFault({ fault: 'broker-restart', downMs });
  const r = result('broker-restart', 'broker', '*', null, t0);
  await sleep(downMs + hall.timing.leaseTtlS * 1000);
  if (o.restore !== false) await settle(hall);
  return r;
}

/**
 * etcd's raft leader isolated from its followers: the proxy in front of its peer port holds what
 * the others send it, and what it sends them over links they opened; for 2 TTLs + 1 s. The
 * followers elect a new etcd leader; the old one may renew leases it still serves until it learns.
 */
export async function trialEtcdLeaderIsolated(hall: Hall, o: TrialOptions = {}) {
  await hall.waitForLeaders();
  const member = await waitFor(
    'an etcd leader',
    () => hall.etcdLeader().then((m) => (m === null ? null : { m })),
    {
      timeoutMs: 10_000,
      intervalMs: 200,
    },
  );
  const proxy = hall.etcd.peerProxy(member.m);
  if (!proxy) throw new Error('start the hall with etcdPeerProxies');
  const t0 = Date.now();
  proxy.blackhole();
  const r = result('etcd-leader-isolated', `etcd-${member.m}`, '*', null, t0);
  try {
    await sleep(hall.timing.leaseTtlS * 1000 * 2 + 1000);
    const now = await hall.etcdLeader();
    r.notes.push(`etcd leader m${member.m} → ${now === null ? 'none seen' : `m${now}`}`);
  } finally {
    proxy.heal();
  }
  if (o.restore !== false) await settle(hall, { timeoutMs: 30_000 });
  return r;
}

/** One etcd member SIGSTOPped (alive, silent) for 2 TTLs; the raft leader half the time. */
export async function trialEtcdMemberSigstop(hall: Hall, o: TrialOptions & { member?: number } = {}) {
  await hall.waitForLeaders();
  const leader = await hall.etcdLeader();
  const member =
    o.member ??
    (leader !== null && Math.random() < 0.5
      ? leader
      : Math.floor(Math.random() * hall.etcd.endpoints.length));
  const t0 = Date.now();
  await hall.etcdSignal(member, 'SIGSTOP');
  const r = result(
    'etcd-member-sigstop',
    `etcd-${member}${member === leader ? ' (raft leader)' : ''}`,
    '*',
    null,
    t0,
  );
  try {
    await sleep(hall.timing.leaseTtlS * 1000 * 2);
  } finally {
    await hall.etcdSignal(member, 'SIGCONT');
  }
  if (o.restore !== false) await settle(hall, { timeoutMs: 30_000 });
  return r;
}

/**
 * The simulator killed and started again on the same ports: every unit forgets its epoch and its
 * writer and comes back in local control. The leaders must take their units back (every group
 * written again), and no old epoch may land after a newer one (the invariants span both runs).
 */
export async function trialSimRestart(hall: Hall, o: TrialOptions = {}) {
  const before = await hall.waitForLeaders();
  const t0 = await hall.restartSim();
  const r = result('sim-restart', 'sim', '*', null, t0);
  const up = Date.now();
  r.notes.push(`simulator back after ${up - t0} ms`);
  // While the simulator is down no unit exists to be written: a term begun then (a leader hands a
  // group on when none of its units takes a write) cannot write, whoever leads. Exempt from the
  // kill until the simulator serves again; liveness still wants writes within H after that.
  for (const g of Object.keys(hall.groups))
    hall.exemptions.push({ group: g, fromMs: t0, toMs: up, why: 'simulator down: no unit to write' });
  const missing = await waitFor(
    'every group written after the simulator restart',
    async () => {
      const m = await hall.groupsWithoutWrites(
        up,
        Date.now() + 1,
        Math.max(0, (await hall.lastSeq()) - JOURNAL_BACKLOG),
      );
      return m.length === 0 ? [] : null;
    },
    { timeoutMs: hall.handOnMs * 3, intervalMs: 200 },
  ).catch(() => null);
  if (!missing)
    r.problems.push(`not every group was written within ${hall.handOnMs * 3} ms of the simulator's restart`);
  const after = await hall.waitForLeaders();
  r.notes.push(
    [...before].filter(([g, l]) => after.get(g)?.epoch !== l.epoch).length === 0
      ? 'every group kept its leader'
      : 'leadership moved',
  );
  if (o.restore !== false) await settle(hall);
  return r;
}

/**
 * Hot reloads while a leader dies: kill -9 of a group's leader, SIGHUP to every other controller
 * and a watched config change on one, during the failover. The failover completes as usual.
 */
export async function trialReloadDuringFault(hall: Hall, o: TrialOptions = {}) {
  const { group, leader } = await leaderOf(hall, o.group);
  const mark = Math.max(0, (await hall.lastSeq()) - JOURNAL_BACKLOG);
  const t0 = await hall.kill(leader.node, 'SIGKILL');
  const r = result('reload-during-fault', leader.node, group, leader.epoch, t0);
  const others = hall.nodes.filter((n) => n !== leader.node && hall.running(n));
  for (const n of others) hall.reload(n);
  if (others[0]) await hall.touchConfig(others[0]);
  r.notes.push(`SIGHUP to ${others.join(', ')}; config of ${others[0]} rewritten`);
  const h = await awaitHandover(hall, group, leader.epoch, {
    sinceSeq: mark,
    faultWallMs: t0,
    timeoutMs: o.timeoutMs ?? hall.timing.leaseTtlS * 1000 + 10_000,
  });
  r.newEpoch = h.newEpoch;
  r.failoverMs = h.sinceFaultMs;
  r.gapMs = h.gapMs;
  for (const n of others) hall.reload(n);
  if (o.restore !== false) {
    await hall.start(leader.node);
    await settle(hall, { even: true });
  }
  return r;
}

/**
 * Operators act while a device link is lossy: one group paused (exempt from liveness until half a
 * watchdog after its resume), a unit of another overridden, a third group switched over through
 * the HTTP API; then everything undone. Every action must answer, the switchover must land, and
 * the paused group must be driven again after its resume.
 */
export async function trialOperatorDuringFault(hall: Hall, o: TrialOptions = {}) {
  const all = await settle(hall, { even: true });
  const groups = Object.keys(hall.groups);
  const [lossyGroup, pausedGroup, switchedGroup] = groups.sort(() => Math.random() - 0.5);
  const t0 = Date.now();
  const r = result('operator-during-fault', '*', lossyGroup!, all.get(lossyGroup!)?.epoch ?? null, t0);
  const lossyUnit = unitOf(hall, lossyGroup!, 'modbus-tcp');
  const proxy = hall.deviceProxies.get(lossyUnit);
  proxy?.impair({ dropPct: 30, delayMs: 50 });
  const api = pick(hall.live());
  let exemption: LivenessExemption | null = null;
  try {
    exemption = hall.exempt(pausedGroup!, 'operator pause');
    await hall.operator(api, 'POST', `/api/v1/groups/${pausedGroup}/pause`, {
      reason: 'chaos: operator during fault',
    });
    const overridden = hall.groups[lossyGroup!]![0]!;
    await hall.operator(api, 'PUT', `/api/v1/groups/${lossyGroup}/overrides/${overridden}`, { fanPct: 60 });
    if (switchedGroup) {
      const from = all.get(switchedGroup)!;
      const to = hall.live().find((n) => n !== from.node)!;
      const started = Date.now();
      await hall.operator(from.node, 'POST', `/api/v1/groups/${switchedGroup}/switchover`, { to });
      const now = await hall.waitForLeaders({
        where: (l) => l.get(switchedGroup)?.node === to,
        timeoutMs: 10_000,
      });
      r.notes.push(
        `${switchedGroup}: ${from.node} → ${to} in ${Date.now() - started} ms (epoch ${now.get(switchedGroup)?.epoch})`,
      );
    }
    await sleep(hall.timing.leaseTtlS * 1000);
    await hall.operator(api, 'DELETE', `/api/v1/groups/${lossyGroup}/overrides/${overridden}`);
    await hall.operator(api, 'POST', `/api/v1/groups/${pausedGroup}/resume`);
  } finally {
    if (exemption) exemption.toMs = Date.now();
    proxy?.unimpair();
  }
  r.notes.push(`paused ${pausedGroup}, overrode a unit of ${lossyGroup} (lossy link on ${lossyUnit})`);
  const resumed = exemption.toMs!;
  const seq = Math.max(0, (await hall.lastSeq()) - JOURNAL_BACKLOG);
  const back = await waitFor(
    `${pausedGroup} driven again after its resume`,
    async () =>
      (await hall.groupsWithoutWrites(resumed, Date.now() + 1, seq)).includes(pausedGroup!) ? null : true,
    { timeoutMs: hall.halfPeriodMs + 2000, intervalMs: 100 },
  ).catch(() => null);
  if (!back)
    r.problems.push(`${pausedGroup} not written within ${hall.halfPeriodMs + 2000} ms of its resume`);
  if (o.restore !== false) await settle(hall, { even: true });
  return r;
}

/** The sensor mesh's topic prefix in the hall (the generated site's default). */
const MQTT_PREFIX = 'coolctl/sim';

/** A group's sensor verdict as its leader sees it (null when nobody answers). */
async function verdictOf(hall: Hall, group: string, leaders: Map<string, Leader>): Promise<string | null> {
  const l = leaders.get(group);
  if (!l) return null;
  const v = (await hall.operator(l.node, 'GET', `/api/v1/groups/${group}`).catch(() => null)) as {
    sensors?: { verdict?: string } | null;
  } | null;
  return v?.sensors?.verdict ?? null;
}

/**
 * Issue 15, item 3: a retained `{"online":false}` on the gateway's status topic while the gateway
 * keeps reporting. Fresh reports are proof of life: once every node has reported again (one report
 * interval + 2 s) no group that read anything but blind before may read blind; watched for 4 s
 * more. The real retained status is put back afterwards.
 */
export async function trialGatewayStatusRetained(hall: Hall, o: TrialOptions & { gateway?: string } = {}) {
  const leaders = await hall.waitForLeaders();
  const gateway = o.gateway ?? 'gw-1';
  const topic = `${MQTT_PREFIX}/gateway/${gateway}/status`;
  const client = await connectAsync(hall.mqttUrl, hall.mqttOptions());
  const r = result('gateway-status-retained', gateway, '*', null, Date.now());
  try {
    // What the gateway itself retained, to put back.
    let original: Buffer | null = null;
    client.on('message', (t, payload, packet) => {
      if (t === topic && packet.retain) original = payload;
    });
    await client.subscribeAsync(topic, { qos: 1 });
    await waitFor('the retained gateway status', () => original !== null, { timeoutMs: 3000 }).catch(
      () => null,
    );
    await client.unsubscribeAsync(topic);
    const before = new Map<string, string | null>();
    for (const g of Object.keys(hall.groups)) before.set(g, await verdictOf(hall, g, leaders));
    r.faultWallMs = Date.now();
    await client.publishAsync(
      topic,
      JSON.stringify({ online: false, gateway, at: null, reason: 'connection-lost' }),
      { qos: 1, retain: true },
    );
    const blind = new Set<string>();
    const graceMs = hall.reportIntervalMs + 2000;
    const end = r.faultWallMs + graceMs + 4000;
    while (Date.now() < end) {
      await sleep(500);
      if (Date.now() < r.faultWallMs + graceMs) continue;
      for (const g of Object.keys(hall.groups))
        if (before.get(g) !== 'blind' && (await verdictOf(hall, g, leaders)) === 'blind') blind.add(g);
    }
    r.notes.push(`verdicts before: ${JSON.stringify(Object.fromEntries(before))}`);
    if (blind.size > 0)
      r.problems.push(
        `${[...blind].join(', ')} read blind ${graceMs} ms after a retained offline status while ${gateway}'s reports kept arriving`,
      );
    if (original) await client.publishAsync(topic, original, { qos: 1, retain: true });
    else r.notes.push('no retained status to put back');
  } finally {
    await client.endAsync().catch(() => {});
  }
  if (o.restore !== false) await settle(hall);
  return r;
}

/**
 * Issue 15, item 10: one oversized publish (default 200 MB) on a report topic. No leader may fail
 * over for it (every group keeps its leader and epoch) and every controller lives on.
 */
export async function trialMqttOversized(hall: Hall, o: TrialOptions & { mb?: number } = {}) {
  const before = await hall.waitForLeaders();
  const mb = o.mb ?? 200;
  const broker = new URL(hall.mqttUrl);
  const m = hall.security?.mqtt;
  // On a secure hall the attacker holds the sensor network's credentials: what is tested is the
  // message's size, not who may publish. (The password goes on the command line of a throwaway
  // test broker only.)
  const auth = m ? ` --cafile ${m.caFile} -u ${m.username} -P ${m.password}` : '';
  const t0 = Date.now();
  const r = result('mqtt-oversized', 'broker', '*', null, t0);
  // Sent by a process of its own (mosquitto_pub), as an attacker on the sensor network would: from
  // this process, building and writing 200 MB stalled the etcd proxies that live here, and every
  // controller's lease with them — the harness's fault, not the controllers'.
  const pub = spawn(
    'sh',
    [
      '-c',
      `head -c ${mb * 1024 * 1024} /dev/zero | tr '\\0' ' ' | ` +
        `mosquitto_pub -h ${broker.hostname} -p ${broker.port}${auth} -q 0 -s -t ${MQTT_PREFIX}/gateway/gw-1/node/n-chaos/report`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  pub.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  const code = await Promise.race([
    new Promise<number | null>((resolve) => pub.once('exit', resolve)),
    sleep(30_000).then(() => 'timeout' as const),
  ]);
  if (code === 'timeout') {
    pub.kill('SIGKILL');
    r.notes.push(`${mb} MB publish still running after 30 s: killed`);
  } else if (code !== 0) {
    r.problems.push(`mosquitto_pub exited ${code} (apt-get install mosquitto-clients): ${stderr.trim()}`);
  } else r.notes.push(`${mb} MB published in ${Date.now() - t0} ms`);
  await sleep(hall.timing.leaseTtlS * 1000 * 2);
  for (const n of hall.nodes)
    if (!hall.running(n)) r.problems.push(`${n} died after a ${mb} MB MQTT message`);
  const after = (await hall.leaders()).leaders;
  for (const [g, l] of before) {
    const now = after.get(g);
    if (!now || now.epoch !== l.epoch)
      r.problems.push(
        `${g}: leadership moved (${l.node}@${l.epoch} → ${now ? `${now.node}@${now.epoch}` : 'none'}) on one ${mb} MB MQTT message`,
      );
  }
  if (o.restore !== false) await settle(hall);
  return r;
}

/**
 * The `coolctl gateway` in front of a unit killed (SIGKILL) and started again 1 s later on the same
 * port. Meanwhile its unit cannot be written (its group stays driven through its epoch units); after
 * the restart the gateway holds the epoch its state file kept (the witness checks its log's chain
 * across the restart), and the unit is written through it again within one watchdog period. Then a
 * deposed leader's write — the epoch the gateway held before its newest — is sent to the restarted
 * gateway: it must be refused with 0x0D, counted, and never reach the unit (the journal).
 */
export async function trialFencingGatewayRestart(hall: Hall, o: TrialOptions & { ahu?: string } = {}) {
  const all = await hall.waitForLeaders();
  const ahu = o.ahu ?? pick(hall.unitsFenced('gateway'));
  if (!ahu) throw new Error('this hall has no gateway-fenced unit');
  const g = hall.fencingGateways.get(ahu)!;
  const group = g.group;
  const leader = all.get(group)!;
  const before = await hall.gatewayRecord(g);
  const t0 = await hall.restartFencingGateway(ahu);
  const r = result('fencing-gateway-restart', leader.node, group, leader.epoch, t0);
  const after = await hall.gatewayRecord(g);
  const loaded = after.events.filter((e) => e.kind === 'start').at(-1);
  const held = before.metricEpoch;
  r.notes.push(
    `${g.name} down ${Date.now() - t0} ms; held epoch ${held}, loaded ${loaded?.epoch ?? 'nothing'}`,
  );
  if (!loaded || held === null || loaded.epoch < held)
    r.problems.push(
      `${g.name} restarted holding epoch ${loaded?.epoch ?? 'none'}, below the ${held} it held before the kill`,
    );
  const seq = Math.max(0, (await hall.lastSeq()) - JOURNAL_BACKLOG);
  const again = await unitWrittenAfter(hall, ahu, Date.now(), seq, hall.handOnMs);
  if (!again) r.problems.push(`${ahu} not written through its restarted gateway within ${hall.handOnMs} ms`);
  else r.notes.push(`${ahu} written again through it (journal seq ${again.seq})`);
  const raises = after.events.filter((e) => e.kind === 'raise');
  const deposed = raises.at(-1)?.kind === 'raise' ? raises.at(-1)!.from : 0;
  if (deposed > 0) {
    // A fan speed no leader of the hall sends (blind groups run safe fans), to find it in the journal.
    const fanPct = 37;
    const refusedBefore = (await hall.gatewayRecord(g)).refusedStale ?? 0;
    const sentMs = Date.now();
    const answer = await hall.gatewayWrite(ahu, deposed, fanPct);
    const refusedAfter = (await hall.gatewayRecord(g)).refusedStale ?? 0;
    await sleep(500);
    const reached = (await hall.journal(seq)).entries.filter(
      (e) => e.ahu === ahu && e.wallMs >= sentMs && e.values.fanPct === fanPct,
    );
    r.notes.push(
      `a write with the deposed epoch ${deposed} answered ${answer === null ? 'ok' : `0x${answer.toString(16).padStart(2, '0')}`}, ` +
        `refused_stale ${refusedBefore} → ${refusedAfter}`,
    );
    if (answer !== STALE_EPOCH_EXCEPTION)
      r.problems.push(
        `${g.name} answered a write with the deposed epoch ${deposed} ${answer ?? 'ok'}, not 0x0D`,
      );
    if (refusedAfter !== refusedBefore + 1)
      r.problems.push(
        `${g.name} counted ${refusedAfter - refusedBefore} stale refusals for one deposed write`,
      );
    if (reached.length > 0)
      r.problems.push(
        `the deposed write reached ${ahu} (journal seq ${reached[0]!.seq}): the gateway forwarded it`,
      );
  } else r.notes.push(`${g.name} has raised only once: no deposed epoch to send`);
  r.newEpoch = (await hall.leaders()).leaders.get(group)?.epoch ?? null;
  if (o.restore !== false) await settle(hall);
  return r;
}

/** Every trial by name, with its default options. */
export const TRIALS: Record<Exclude<FaultName, 'restart-loop'>, (hall: Hall) => Promise<TrialResult>> = {
  'kill9-leader': (h) => trialKill9(h),
  'sigstop-leader': (h) => trialSigstop(h),
  'partition-leader': (h) => trialPartition(h),
  'graceful-leader': (h) => trialGraceful(h),
  'etcd-member-loss': (h) => trialEtcdMemberLoss(h),
  'etcd-quorum-loss': (h) => trialEtcdQuorumLoss(h),
  'clock-jump': (h) => trialClockJump(h),
  'slow-unit': (h) => trialSlowUnit(h),
  // Any fencing kind the hall has: a vendor unit's late apply is what its witness must place.
  'slow-unit-sigstop': (h) =>
    trialSlowUnitSigstop(h, { fencing: pick([...new Set(h.fencing.values())].sort()) }),
  'lossy-link': (h) => trialLossyLink(h),
  'reset-link': (h) => trialResetLink(h),
  'transient-refusal': (h) => trialTransientRefusal(h),
  'peer-partition-failsafe': (h) => trialPeerPartitionFailsafe(h),
  'gateway-down': (h) => trialGatewayDown(h),
  'broker-restart': (h) => trialBrokerRestart(h),
  'etcd-leader-isolated': (h) => trialEtcdLeaderIsolated(h),
  'etcd-member-sigstop': (h) => trialEtcdMemberSigstop(h),
  'sim-restart': (h) => trialSimRestart(h),
  'gateway-status-retained': (h) => trialGatewayStatusRetained(h),
  'mqtt-oversized': (h) => trialMqttOversized(h),
  'reload-during-fault': (h) => trialReloadDuringFault(h),
  'operator-during-fault': (h) => trialOperatorDuringFault(h),
  'lossy-line': (h) => trialLossyLine(h),
  'reset-line': (h) => trialResetLine(h),
  'fencing-gateway-restart': (h) => trialFencingGatewayRestart(h),
};

/** Faults that need a hall with failsafe on (the rest run on a hall with it off). */
export const FAILSAFE_FAULTS: ReadonlySet<FaultName> = new Set(['peer-partition-failsafe']);

/**
 * The units every chaos hall puts on Modbus RTU behind a gateway: one in zone-1 and one in zone-3,
 * each beside a Modbus TCP unit of its group (zone-2 is all OPC-UA in the mixed hall).
 */
export const RTU_UNITS: HallOptions['rtu'] = { units: ['AHU-04', 'AHU-06'] };

/**
 * The vendor-profile units every chaos hall adds, one per fencing kind that is not the unit's own:
 * a lease unit in zone-1 and a unit behind a `coolctl gateway` in zone-3, each beside the group's
 * epoch units (so the group's terms show in the journal around their writes). Their profile
 * watches a toggling heartbeat coil, so a leader writes them every period — a profile whose
 * watchdog any write refreshes lets the controller skip points the unit holds, and a unit that goes
 * unwritten for seconds proves nothing in a trial.
 */
export const VENDOR_UNITS: VendorUnit[] = [
  { id: 'AHU-07', group: 'zone-1', profile: 'float32-lsw-toggle-inverted-coil', fencing: 'lease' },
  { id: 'AHU-08', group: 'zone-3', profile: 'float32-lsw-toggle-inverted-coil', fencing: 'gateway' },
];

/** The hall every fault but the failsafe ones runs on (CI's mixed hall and the soak's). */
export const MIXED_HALL: HallOptions = {
  opcuaShare: 1 / 3,
  deviceProxies: true,
  etcdPeerProxies: true,
  rtu: RTU_UNITS,
  vendor: VENDOR_UNITS,
};

/** The hall of the failsafe faults. */
export const FAILSAFE_HALL: HallOptions = {
  failsafe: true,
  peerProxies: true,
  rtu: RTU_UNITS,
  vendor: VENDOR_UNITS,
};

/** How long the "before" and "after" windows of the no-vacuous-pass rule are. */
const WRITES_WINDOW_MS = 2000;

/**
 * Runs one trial and holds it to the no-vacuous-pass rule: every group — and every unit, RTU units
 * behind their gateways included — had an accepted write in the 2 s before the fault and has one
 * after the trial (within one watchdog period of its end), or the trial has a problem. A trial that
 * throws is a trial with a problem, not a crash.
 */
export async function runTrial(
  hall: Hall,
  fault: FaultName,
  run: (hall: Hall) => Promise<TrialResult> = (h) =>
    fault === 'restart-loop' ? trialRestartLoop(h, { count: 3 }) : TRIALS[fault](h),
): Promise<TrialResult> {
  const startedMs = Date.now();
  const seq0 = Math.max(0, (await hall.lastSeq().catch(() => 0)) - JOURNAL_BACKLOG);
  const unwritten = async (fromMs: number, toMs: number) => [
    ...(await hall.groupsWithoutWrites(fromMs, toMs, seq0)),
    ...(await hall.unitsWithoutWrites(fromMs, toMs, seq0)),
  ];
  let r: TrialResult;
  try {
    // From a settled hall, whatever the last trial left: a trial that restores without waiting
    // for an even placement would leave a rebalancing handover to land inside this one's window
    // (seen: the 200 MB MQTT trial blamed for a rebalance after a simulator restart).
    await settle(hall, { even: true, timeoutMs: hall.timing.rebalanceHoldMs + 20_000 });
    // ...and with every group and unit being written: a test before this one can leave a unit
    // unwritten for a while after its group is driven again (seen: an RTU unit after a pause of its
    // group), and its first write then lands inside this trial's "before" window, or the window is
    // that test's doing. A unit that stays unwritten is left to the rule below to name.
    await waitFor(
      'every group and unit written before the trial',
      async () => (await unwritten(Date.now() - WRITES_WINDOW_MS / 2, Date.now() + 1)).length === 0,
      { timeoutMs: hall.handOnMs + 5000, intervalMs: 100 },
    ).catch(() => undefined);
    r = await run(hall);
  } catch (err) {
    r = result(fault, '?', '?', null, startedMs);
    r.problems.push(`the trial failed: ${(err as Error).message}`);
  }
  try {
    const before = await unwritten(r.faultWallMs - WRITES_WINDOW_MS, r.faultWallMs);
    if (before.length > 0)
      r.problems.push(
        `vacuous: no accepted write in ${before.join(', ')} in the ${WRITES_WINDOW_MS} ms before the fault`,
      );
    const endMs = Date.now();
    const after = await waitFor(
      'every group and unit written after the trial',
      async () => {
        const m = await unwritten(endMs, Date.now() + 1);
        return m.length === 0 ? { m } : null;
      },
      { timeoutMs: hall.handOnMs, intervalMs: 100 },
    ).catch(async () => ({ m: await unwritten(endMs, Date.now() + 1) }));
    if (after.m.length > 0)
      r.problems.push(
        `vacuous: no accepted write in ${after.m.join(', ')} within ${hall.handOnMs} ms after the trial`,
      );
  } catch (err) {
    r.problems.push(`the no-vacuous-pass check failed: ${(err as Error).message}`);
  }
  return r;
}

/** Counts trials by fault and formats the one-line summary every chaos run ends with. */
export class TrialLog {
  readonly results: TrialResult[] = [];
  add(r: TrialResult): TrialResult {
    this.results.push(r);
    return r;
  }
  summary(report?: HallReport, hall?: Hall): string {
    const by: Record<string, number> = {};
    for (const r of this.results) by[r.fault] = (by[r.fault] ?? 0) + 1;
    const problems = this.results.reduce((n, r) => n + r.problems.length, 0);
    const kinds = Object.entries(by)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    const j = report
      ? `, journal ${report.entries} writes (${report.accepted} accepted), ${Object.values(report.terms).reduce((n, t) => n + t.length, 0)} terms, ${report.violations.length} invariant violations`
      : '';
    const l = hall
      ? `, liveness over ${hall.claims.length} claim samples (${hall.exemptions.length} exemptions)`
      : '';
    const f = report && hall ? `\n${hall.fencingSummary(report)}` : '';
    return `chaos: ${this.results.length} trials (${kinds}), ${problems} problems${j}${l}${f}`;
  }
}
