// The simulated wireless sensor mesh and its gateways: nodes sample their rack's climate on a sim-time
// schedule, reports cross the lossy mesh (radio.ts) and each gateway publishes what reaches it over
// its own MQTT connection. Invariants: every report is counted exactly once as delivered or lost
// (`sent = delivered + lost + inFlight`), seq numbers never go back, and stop() leaves no timer behind.
// Wire format: docs/mqtt-topics.md.
import { randomBytes } from 'node:crypto';
import { connect, type MqttClient } from 'mqtt';
import { type Logger, pino } from 'pino';
import type { SensorKindName, SensorNode, Site } from '../../src/config/site-schema.ts';
import { BadRequestError, CoolctlError, ErrorCodes } from '../../src/errors.ts';
import { mulberry32 } from '../random.ts';
import type { RackClimate, RackClimateReader } from '../thermal/types.ts';
import { gaussian, type LinkModel, transmit } from './radio.ts';
import { DueHeap } from './schedule.ts';

export type SensorFault =
  | { kind: 'stuck' }
  | { kind: 'dead' }
  | { kind: 'noisy'; sigma: number }
  | { kind: 'out-of-range'; value: number };

export interface SensorMeshOptions {
  brokerUrl: string;
  /** How gateways prove themselves to a secured broker: its user, and the CA for an mqtts:// URL. */
  brokerLogin?:
    | { username?: string | undefined; password?: string | undefined; ca?: Buffer | undefined }
    | undefined;
  seed: number;
  /** The simulation clock; report intervals run on it. Mesh latency runs on the wall clock. */
  simNowMs: () => number;
  logger?: Logger;
}

export interface MeshStats {
  /** Reports the nodes transmitted. */
  sent: number;
  /** Reports that reached an online gateway at least once. */
  delivered: number;
  /** Reports that never reached an online gateway (mesh loss, gateway down, gateway queue full). */
  lost: number;
  /** Extra copies of an already delivered report that a gateway received and published again. */
  duplicates: number;
  /** Reports still crossing the mesh. */
  inFlight: number;
  /** MQTT publishes of reports the broker connection accepted. */
  published: number;
  publishErrors: number;
}

export interface GatewayState {
  id: string;
  online: boolean;
  nodes: number;
}

export interface NodeState {
  id: string;
  gateway: string;
  batteryPct: number;
  rssiDbm: number;
  /** Last sequence number the node used; 0 before its first report. */
  lastSeq: number;
}

/** One reading in a report; units are SenML names (RFC 8428): Cel, %RH, Pa. */
export interface Reading {
  sensor: string;
  kind: SensorKindName;
  value: number;
  unit: string;
}

export interface NodeReport {
  node: string;
  rack: string;
  gateway: string;
  seq: number;
  sampledAt: string;
  simTimeS: number;
  hops: number;
  rssiDbm: number;
  batteryPct: number;
  retries: number;
  readings: Reading[];
}

export interface GatewayStatus {
  online: boolean;
  gateway: string;
  nodes: number;
  /** When the gateway published this; null in the last will (the broker sends it later). */
  at: string | null;
  reason: 'connected' | 'shutdown' | 'connection-lost';
}

interface SensorSpec {
  unit: string;
  sigma: number;
  decimals: number;
  min: number;
  max: number;
  read: (c: RackClimate) => number;
}

// Noise σ of a healthy sensor of each kind (typical for cheap digital sensors) and a physical clamp.
const SENSOR_SPECS: Record<SensorKindName, SensorSpec> = {
  'inlet-top': { unit: 'Cel', sigma: 0.1, decimals: 2, min: -50, max: 150, read: (c) => c.inletTopC },
  'inlet-middle': { unit: 'Cel', sigma: 0.1, decimals: 2, min: -50, max: 150, read: (c) => c.inletMiddleC },
  'inlet-bottom': { unit: 'Cel', sigma: 0.1, decimals: 2, min: -50, max: 150, read: (c) => c.inletBottomC },
  humidity: { unit: '%RH', sigma: 1, decimals: 1, min: 0, max: 100, read: (c) => c.relativeHumidityPct },
  'subfloor-pressure': {
    unit: 'Pa',
    sigma: 0.2,
    decimals: 2,
    min: -500,
    max: 500,
    read: (c) => c.subfloorPa,
  },
};

/** Report intervals vary by ±5 % (crystal drift, radio back-off), so nodes never lock into step. */
const INTERVAL_JITTER = 0.05;
/** A gateway's receive queue: beyond this many reports in flight, new ones are dropped (and counted lost). */
const MAX_IN_FLIGHT = 50_000;
const CONNECT_DEADLINE_MS = 10_000;
const STOP_DEADLINE_MS = 2_000;

interface GatewayRt {
  id: string;
  /** mqtt: publishes reports; modbus-tcp: keeps each node's latest report for polling. */
  transport: 'mqtt' | 'modbus-tcp';
  latest: Map<string, HeldReport>;
  statusTopic: string;
  reportTopicPrefix: string;
  nodes: number;
  down: boolean;
  client: MqttClient | undefined;
  online: boolean;
}

interface NodeRt {
  cfg: SensorNode;
  gw: GatewayRt;
  sensors: { id: string; kind: SensorKindName; spec: SensorSpec }[];
  /** Last value reported per sensor (index as in `sensors`), for stuck sensors. */
  lastValues: number[];
  faults: Map<string, SensorFault> | undefined;
  intervalMs: number;
  dueMs: number;
  seq: number;
  batteryPct: number;
  baseRssiDbm: number;
  rssiDbm: number;
}

/** A report a Modbus gateway holds for its node until the next one arrives. */
export interface HeldReport {
  report: NodeReport;
  /** Wall ms (Date.now) when the gateway received it. */
  receivedAtMs: number;
}

/** One report in flight; shared by its copies so exactly one of them counts as delivered. */
interface InFlight {
  body: Omit<NodeReport, 'retries'>;
  gw: GatewayRt;
  copiesLeft: number;
  delivered: boolean;
}

export class SensorMesh {
  private readonly site: Site;
  private readonly readRack: RackClimateReader;
  private readonly opts: SensorMeshOptions;
  private readonly log: Logger;
  private readonly rnd: () => number;
  private readonly gws = new Map<string, GatewayRt>();
  private readonly nodes = new Map<string, NodeRt>();
  private readonly heap = new DueHeap<NodeRt>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly clientSuffix = randomBytes(3).toString('hex');
  private readonly counters = {
    sent: 0,
    delivered: 0,
    lost: 0,
    duplicates: 0,
    published: 0,
    publishErrors: 0,
  };
  private inFlight = 0;
  private extraLossPct: number | null = null;
  private scheduled = false;
  private lastTickSimMs = 0;
  private started = false;
  private stopping: Promise<void> | undefined;
  private readErrorLogged = false;

  constructor(site: Site, readRack: RackClimateReader, opts: SensorMeshOptions) {
    this.site = site;
    this.readRack = readRack;
    this.opts = opts;
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.rnd = mulberry32(opts.seed);
    for (const g of site.gateways) {
      const prefix = g.topicPrefix ?? 'coolctl/sim';
      this.gws.set(g.id, {
        id: g.id,
        transport: g.transport ?? 'mqtt',
        latest: new Map(),
        statusTopic: `${prefix}/gateway/${g.id}/status`,
        reportTopicPrefix: `${prefix}/gateway/${g.id}/node/`,
        nodes: 0,
        down: false,
        client: undefined,
        online: false,
      });
    }
    for (const n of site.sensorNodes) {
      const gw = this.gws.get(n.gateway);
      if (!gw)
        throw new CoolctlError(
          ErrorCodes.CONFIG_INVALID,
          `sensor node ${n.id}: unknown gateway "${n.gateway}"`,
        );
      gw.nodes++;
      const hops = n.hops ?? 1;
      // Each hop costs about 12 dB of margin on a typical 2.4 GHz indoor mesh; the rest is placement.
      const baseRssiDbm = -40 - (hops - 1) * 12 - this.rnd() * 8;
      this.nodes.set(n.id, {
        cfg: n,
        gw,
        sensors: n.sensors.map((s) => ({ id: s.id, kind: s.kind, spec: SENSOR_SPECS[s.kind] })),
        lastValues: n.sensors.map(() => Number.NaN),
        faults: undefined,
        intervalMs: (n.reportIntervalS ?? 10) * 1000,
        dueMs: 0,
        seq: 0,
        batteryPct: n.batteryPct ?? 100,
        baseRssiDbm,
        rssiDbm: Math.round(baseRssiDbm),
      });
    }
  }

  /** Connects one MQTT client per gateway; resolves when all are online, rejects (and cleans up) otherwise. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    // A Modbus gateway has no broker session: it is online while it is not down.
    for (const gw of this.gws.values()) if (gw.transport === 'modbus-tcp') gw.online = !gw.down;
    try {
      await Promise.all(
        [...this.gws.values()]
          .filter((gw) => !gw.down && gw.transport === 'mqtt')
          .map((gw) => this.connectGateway(gw, true)),
      );
    } catch (err) {
      await this.stop();
      throw new CoolctlError(
        ErrorCodes.STARTUP,
        `sensor mesh cannot reach the MQTT broker at ${this.opts.brokerUrl}: ${(err as Error).message}`,
        { cause: err, retryable: true },
      );
    }
    this.log.info(
      { gateways: this.gws.size, nodes: this.nodes.size, broker: this.opts.brokerUrl },
      'sensor mesh started',
    );
  }

  /** Sends every report that is due in sim time. Called by the simulation about every 100 ms. */
  tick(): void {
    if (!this.started || this.stopping) return;
    const nowMs = this.opts.simNowMs();
    // The simulation may reset its clock (e.g. after settling the physics): start the schedule afresh.
    if (!this.scheduled || nowMs < this.lastTickSimMs) this.schedule(nowMs);
    this.lastTickSimMs = nowMs;
    for (let n = this.heap.peek(); n && n.dueMs <= nowMs; n = this.heap.peek()) {
      if (n.batteryPct <= 0) {
        this.heap.pop(); // a dead battery never comes back
        this.log.warn({ node: n.cfg.id }, 'sensor node battery empty; node silent');
        continue;
      }
      this.report(n, nowMs);
      // Keep the node's phase; when the sim clock outruns the ticks, skip missed slots rather than burst.
      let next = n.dueMs + n.intervalMs * (1 + INTERVAL_JITTER * (2 * this.rnd() - 1));
      if (next <= nowMs) next += Math.ceil((nowMs - next) / n.intervalMs + 1e-9) * n.intervalMs;
      this.heap.replaceTop(next);
    }
  }

  setSensorFault(nodeId: string, sensorId: string, fault: SensorFault | null): void {
    const node = this.requireNode(nodeId);
    if (sensorId !== '*' && !node.sensors.some((s) => s.id === sensorId)) {
      throw invalid(
        `unknown sensor "${sensorId}" on node ${nodeId}; known: ${node.sensors.map((s) => s.id).join(', ')}, *`,
      );
    }
    if (fault !== null) checkFault(fault);
    const ids = sensorId === '*' ? node.sensors.map((s) => s.id) : [sensorId];
    node.faults ??= new Map();
    for (const id of ids) {
      if (fault) node.faults.set(id, { ...fault });
      else node.faults.delete(id);
    }
    if (node.faults.size === 0) node.faults = undefined;
    this.log.warn(
      { node: nodeId, sensor: sensorId, fault },
      fault ? 'sensor fault set' : 'sensor fault cleared',
    );
  }

  /** Down: the gateway's connection drops without DISCONNECT (the broker sends its last will). */
  setGatewayDown(gwId: string, down: boolean): void {
    const gw = this.gws.get(gwId);
    if (!gw) throw invalid(`unknown gateway "${gwId}"; known: ${[...this.gws.keys()].join(', ')}`);
    if (typeof down !== 'boolean') throw invalid('gateway down must be true or false');
    if (gw.down === down) return;
    gw.down = down;
    if (gw.transport === 'modbus-tcp') {
      // The box restarts: what it held for its nodes is gone; the simulation closes its Modbus server.
      gw.online = !down;
      gw.latest.clear();
      this.log.warn({ gateway: gwId }, down ? 'modbus gateway down' : 'modbus gateway up again');
      return;
    }
    if (down) {
      const client = gw.client;
      gw.client = undefined;
      gw.online = false;
      if (client) {
        // Destroy the socket first so no DISCONNECT goes out; end(true) then stops reconnecting.
        client.stream?.destroy();
        client.end(true);
      }
      this.log.warn({ gateway: gwId }, 'gateway down (connection dropped)');
    } else {
      this.log.warn({ gateway: gwId }, 'gateway up again');
      if (this.started && !this.stopping) {
        this.connectGateway(gw, false).catch((err: unknown) => {
          this.log.error({ gateway: gwId, err }, 'gateway reconnect failed');
        });
      }
    }
  }

  /** Extra loss on every hop, on top of the site's perHopLossPct; null clears it. */
  setPacketLoss(pct: number | null): void {
    if (pct !== null && (typeof pct !== 'number' || !Number.isFinite(pct) || pct < 0 || pct > 100)) {
      throw invalid(`packet loss must be a number from 0 to 100 (%), got ${String(pct)}`);
    }
    this.extraLossPct = pct;
    this.log.warn({ extraLossPct: pct }, pct === null ? 'packet loss cleared' : 'packet loss set');
  }

  stats(): MeshStats {
    return { ...this.counters, inFlight: this.inFlight };
  }

  /** A node's sensor ids in config order (the Modbus gateway's slot order). */
  nodeSensorIds(nodeId: string): string[] {
    return this.requireNode(nodeId).sensors.map((s) => s.id);
  }

  /** The newest report a Modbus gateway holds for `nodeId`, if any. */
  heldReport(gatewayId: string, nodeId: string): HeldReport | undefined {
    return this.gws.get(gatewayId)?.latest.get(nodeId);
  }

  gateways(): GatewayState[] {
    return [...this.gws.values()].map((g) => ({ id: g.id, online: g.online, nodes: g.nodes }));
  }

  nodeStates(): NodeState[] {
    return [...this.nodes.values()].map((n) => ({
      id: n.cfg.id,
      gateway: n.gw.id,
      batteryPct: round(n.batteryPct, 3),
      rssiDbm: n.rssiDbm,
      lastSeq: n.seq,
    }));
  }

  /** Cancels every pending delivery, publishes each gateway's graceful offline status, disconnects. Bounded. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      for (const t of this.timers) clearTimeout(t);
      this.timers.clear();
      this.heap.clear();
      await Promise.all([...this.gws.values()].map((gw) => this.disconnectGateway(gw)));
      this.log.info(this.stats(), 'sensor mesh stopped');
    })();
    return this.stopping;
  }

  private schedule(nowMs: number): void {
    this.heap.clear();
    // Staggered start: each node's first report falls at a random point of its first interval.
    for (const n of this.nodes.values()) {
      if (n.batteryPct <= 0) continue;
      n.dueMs = nowMs + this.rnd() * n.intervalMs;
      this.heap.push(n);
    }
    this.scheduled = true;
  }

  private report(n: NodeRt, nowMs: number): void {
    const readings = this.sample(n);
    if (readings === undefined || readings.length === 0) return; // every sensor dead: the node says nothing
    n.seq = (n.seq + 1) >>> 0 || 1;
    const mesh = this.site.mesh;
    n.batteryPct = Math.max(0, n.batteryPct - (mesh?.batteryDrainPctPerReport ?? 0.0005));
    n.rssiDbm = Math.round(Math.max(-100, Math.min(-30, n.baseRssiDbm + 2 * gaussian(this.rnd))));
    this.counters.sent++;
    const gw = n.gw;
    if (gw.down) {
      this.counters.lost++;
      return;
    }
    const copies = transmit(n.cfg.hops ?? 1, this.linkModel(), this.rnd);
    if (copies.length === 0 || this.inFlight >= MAX_IN_FLIGHT) {
      this.counters.lost++;
      return;
    }
    const flight: InFlight = {
      body: {
        node: n.cfg.id,
        rack: n.cfg.rack,
        gateway: gw.id,
        seq: n.seq,
        sampledAt: new Date().toISOString(),
        simTimeS: round(nowMs / 1000, 3),
        hops: n.cfg.hops ?? 1,
        rssiDbm: n.rssiDbm,
        batteryPct: round(n.batteryPct, 3),
        readings,
      },
      gw,
      copiesLeft: copies.length,
      delivered: false,
    };
    this.inFlight++;
    for (const copy of copies) {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        this.arrive(flight, copy.retries);
      }, copy.latencyMs);
      this.timers.add(timer);
    }
  }

  /** One copy reaches its gateway; the first one to arrive counts as the delivery. */
  private arrive(f: InFlight, retries: number): void {
    f.copiesLeft--;
    const held = f.gw.transport === 'modbus-tcp' && f.gw.online;
    const client = f.gw.online ? f.gw.client : undefined;
    if (!f.delivered) {
      if (client || held) {
        f.delivered = true;
        this.counters.delivered++;
        this.inFlight--;
      } else if (f.copiesLeft === 0) {
        this.counters.lost++; // every copy reached a gateway that was down
        this.inFlight--;
      }
    } else if (client || held) {
      this.counters.duplicates++;
    }
    if (held) {
      // The gateway keeps the newest report per node; a late copy of an older one does not replace it.
      const prev = f.gw.latest.get(f.body.node);
      if (!prev || isNewerSeq(f.body.seq, prev.report.seq)) {
        f.gw.latest.set(f.body.node, { report: { ...f.body, retries }, receivedAtMs: Date.now() });
      }
      return;
    }
    if (!client) return;
    const report: NodeReport = { ...f.body, retries };
    const topic = `${f.gw.reportTopicPrefix}${f.body.node}/report`;
    // QoS 0: a report is superseded by the next one seconds later, so re-sending a stale one buys nothing.
    client.publish(topic, JSON.stringify(report), { qos: 0 }, (err) => {
      if (err) this.counters.publishErrors++;
      else this.counters.published++;
    });
  }

  private sample(n: NodeRt): Reading[] | undefined {
    let climate: RackClimate;
    try {
      climate = this.readRack(n.cfg.rack);
    } catch (err) {
      if (!this.readErrorLogged) {
        this.readErrorLogged = true;
        this.log.error({ node: n.cfg.id, rack: n.cfg.rack, err }, 'cannot read rack climate; node skipped');
      }
      return undefined;
    }
    const readings: Reading[] = [];
    for (let i = 0; i < n.sensors.length; i++) {
      const s = n.sensors[i]!;
      const fault = n.faults?.get(s.id);
      let value: number;
      if (fault?.kind === 'dead') continue;
      if (fault?.kind === 'out-of-range') value = fault.value;
      else if (fault?.kind === 'stuck' && !Number.isNaN(n.lastValues[i]!)) value = n.lastValues[i]!;
      else {
        const extraSigma = fault?.kind === 'noisy' ? fault.sigma : 0;
        const raw =
          s.spec.read(climate) + gaussian(this.rnd) * s.spec.sigma + gaussian(this.rnd) * extraSigma;
        value = round(Math.max(s.spec.min, Math.min(s.spec.max, raw)), s.spec.decimals);
      }
      n.lastValues[i] = value;
      readings.push({ sensor: s.id, kind: s.kind, value, unit: s.spec.unit });
    }
    return readings;
  }

  private linkModel(): LinkModel {
    const mesh = this.site.mesh;
    const baseP = (mesh?.perHopLossPct ?? 2) / 100;
    const extraP = (this.extraLossPct ?? 0) / 100;
    return {
      // Two independent loss causes on one hop: a frame survives only if it survives both.
      lossP: 1 - (1 - baseP) * (1 - extraP),
      perHopLatencyMs: mesh?.perHopLatencyMs ?? 20,
      maxRetries: mesh?.maxRetries ?? 3,
    };
  }

  private requireNode(nodeId: string): NodeRt {
    const node = this.nodes.get(nodeId);
    if (!node) {
      const ids = [...this.nodes.keys()];
      const sample = ids.slice(0, 10).join(', ') + (ids.length > 10 ? ', …' : '');
      throw invalid(`unknown sensor node "${nodeId}"; known: ${sample}`);
    }
    return node;
  }

  private status(gw: GatewayRt, online: boolean, reason: GatewayStatus['reason']): string {
    const s: GatewayStatus = {
      online,
      gateway: gw.id,
      nodes: gw.nodes,
      at: reason === 'connection-lost' ? null : new Date().toISOString(),
      reason,
    };
    return JSON.stringify(s);
  }

  private connectGateway(gw: GatewayRt, failFast: boolean): Promise<void> {
    // One client id per gateway: a reconnect takes over the old session, so the broker sends the old
    // connection's will before the new one says online, never after.
    const client = connect(this.opts.brokerUrl, {
      clientId: `coolctl-sim-${this.site.site.id}-${gw.id}-${this.clientSuffix}`,
      ...this.opts.brokerLogin,
      clean: true,
      reconnectPeriod: 1000,
      connectTimeout: 5000,
      keepalive: 10,
      queueQoSZero: false,
      will: {
        topic: gw.statusTopic,
        payload: Buffer.from(this.status(gw, false, 'connection-lost')),
        qos: 1,
        retain: true,
      },
    });
    gw.client = client;
    client.on('connect', () => {
      if (gw.client !== client) return;
      gw.online = true;
      this.log.info({ gateway: gw.id }, 'gateway online');
      client.publish(gw.statusTopic, this.status(gw, true, 'connected'), { qos: 1, retain: true }, (err) => {
        if (err) this.log.warn({ gateway: gw.id, err: err.message }, 'gateway status publish failed');
      });
    });
    client.on('close', () => {
      if (gw.client !== client || !gw.online) return;
      gw.online = false;
      this.log.warn({ gateway: gw.id }, 'gateway lost its broker connection; reconnecting');
    });
    // Reconnect attempts repeat every second while the broker is away: debug, not a warning each time.
    client.on('error', (err) => this.log.debug({ gateway: gw.id, err: err.message }, 'gateway MQTT error'));
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => done(new Error(`gateway ${gw.id}: no CONNACK within ${CONNECT_DEADLINE_MS} ms`)),
        CONNECT_DEADLINE_MS,
      );
      timer.unref(); // a reconnect still pending at stop() must not keep the process alive
      const onConnect = (): void => done();
      const onError = (err: Error): void => {
        if (failFast) done(err);
      };
      const done = (err?: Error): void => {
        clearTimeout(timer);
        client.off('connect', onConnect);
        client.off('error', onError);
        if (err) reject(err);
        else resolve();
      };
      client.once('connect', onConnect);
      client.on('error', onError);
    });
  }

  private async disconnectGateway(gw: GatewayRt): Promise<void> {
    const client = gw.client;
    gw.client = undefined;
    gw.online = false;
    if (!client) return;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), STOP_DEADLINE_MS);
    });
    const graceful = (async () => {
      if (client.connected) {
        await client.publishAsync(gw.statusTopic, this.status(gw, false, 'shutdown'), {
          qos: 1,
          retain: true,
        });
      }
      await client.endAsync(false);
    })();
    const outcome = await Promise.race([graceful.catch(() => 'failed' as const), deadline]);
    clearTimeout(timer);
    if (outcome !== undefined) client.end(true);
  }
}

function checkFault(fault: SensorFault): void {
  if (typeof fault !== 'object' || fault === null) throw invalid('sensor fault must be an object or null');
  switch (fault.kind) {
    case 'stuck':
    case 'dead':
      return;
    case 'noisy':
      if (typeof fault.sigma !== 'number' || !Number.isFinite(fault.sigma) || fault.sigma <= 0) {
        throw invalid(`noisy sensor fault needs sigma > 0, got ${String(fault.sigma)}`);
      }
      return;
    case 'out-of-range':
      if (typeof fault.value !== 'number' || !Number.isFinite(fault.value)) {
        throw invalid(`out-of-range sensor fault needs a finite value, got ${String(fault.value)}`);
      }
      return;
    default:
      throw invalid(
        `unknown sensor fault kind "${String((fault as { kind: unknown }).kind)}"; known: stuck, dead, noisy, out-of-range`,
      );
  }
}

function invalid(message: string): BadRequestError {
  return new BadRequestError(ErrorCodes.FAULT_INVALID, message, [message]);
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Sequence numbers wrap from 2^32 − 1 to 1: `a` is newer when it is less than half the circle ahead. */
function isNewerSeq(a: number, b: number): boolean {
  const ahead = (a - b + 0x1_0000_0000) % 0x1_0000_0000;
  return ahead > 0 && ahead < 0x8000_0000;
}
