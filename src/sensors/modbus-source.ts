// Sensor readings from Modbus TCP gateways (one slave id per node; register map in
// modbus-gateway-map.ts): polls every node of every such gateway at the gateway's interval and
// hands new reports (a changed seq) to the SensorStore. A gateway that cannot be reached is marked
// offline in the store at once, so its nodes' readings stop being trusted before they go stale.
// Invariants: one request in flight per gateway connection; every request has a deadline; a
// malformed answer is counted and dropped; stop() ends the loops and closes every socket.
import modbusSerial from 'modbus-serial';
import type { Logger } from 'pino';
import { nodeUnitIds } from '../config/site-rules.ts';
import type { Site } from '../config/site-schema.ts';
import { decodeNode, NODE_HEADER_LEN } from './modbus-gateway-map.ts';
import type { Report } from './report.ts';
import type { SensorStore } from './sensor-store.ts';

const ModbusRTU = modbusSerial.default;
type ModbusClient = InstanceType<typeof ModbusRTU>;

export interface ModbusSourceOptions {
  /** Where each gateway really listens, when it differs from the site file (the simulator's ephemeral ports). */
  endpoints?: Record<string, { host: string; port: number }>;
  timeoutMs?: number;
  /** Simulation only: site time runs this many times faster than the wall clock. */
  timeScale?: number;
  logger?: Logger;
}

interface PolledNode {
  id: string;
  unitId: number;
  sensors: { id: string; kind: string }[];
  lastSeq: number;
}

interface GatewayPoller {
  id: string;
  host: string;
  port: number;
  intervalMs: number;
  nodes: PolledNode[];
  client: ModbusClient | undefined;
}

const GATEWAY_TARGET_FAILED = 0x0b;

export class ModbusSource {
  readonly counters = { polls: 0, newReports: 0, pollErrors: 0, malformed: 0, noReportYet: 0, connects: 0 };
  private readonly store: SensorStore;
  private readonly pollers: GatewayPoller[] = [];
  private readonly opts: ModbusSourceOptions;
  private readonly log: Logger | undefined;
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly wake = new Set<() => void>();

  constructor(site: Site, store: SensorStore, opts: ModbusSourceOptions = {}) {
    this.store = store;
    this.opts = opts;
    this.log = opts.logger;
    const units = nodeUnitIds(site);
    for (const g of site.gateways) {
      if (g.transport !== 'modbus-tcp') continue;
      const ep = opts.endpoints?.[g.id] ?? g.endpoint;
      if (!ep) continue; // the site rules refuse such a file; nothing to poll
      const ids = units.get(g.id) ?? new Map<string, number>();
      this.pollers.push({
        id: g.id,
        host: ep.host,
        port: ep.port,
        intervalMs: ((g.pollIntervalS ?? 5) * 1000) / (opts.timeScale ?? 1),
        nodes: site.sensorNodes
          .filter((n) => n.gateway === g.id)
          .map((n) => ({ id: n.id, unitId: ids.get(n.id)!, sensors: n.sensors, lastSeq: 0 })),
        client: undefined,
      });
    }
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loops = this.pollers.map((p) => this.loop(p));
  }

  async stop(): Promise<void> {
    this.running = false;
    for (const w of this.wake) w();
    for (const p of this.pollers) this.disconnect(p);
    await Promise.all(this.loops);
  }

  private async loop(p: GatewayPoller): Promise<void> {
    while (this.running) {
      const started = performance.now();
      try {
        await this.pollOnce(p);
      } catch (err) {
        this.counters.pollErrors++;
        this.disconnect(p);
        this.store.setGatewayOnline(p.id, false, `poll failed: ${(err as Error).message}`);
      }
      await this.sleep(Math.max(0, p.intervalMs - (performance.now() - started)));
    }
  }

  private async pollOnce(p: GatewayPoller): Promise<void> {
    const client = await this.connect(p);
    for (const node of p.nodes) {
      if (!this.running) return;
      client.setID(node.unitId);
      let regs: number[];
      try {
        this.counters.polls++;
        regs = (await client.readHoldingRegisters(0, NODE_HEADER_LEN + node.sensors.length)).data;
      } catch (err) {
        // The gateway answers 0x0B for a node it has not heard from: the node is silent, not the gateway.
        if ((err as { modbusCode?: number }).modbusCode === GATEWAY_TARGET_FAILED) {
          this.counters.noReportYet++;
          continue;
        }
        throw err;
      }
      this.store.setGatewayOnline(p.id, true, 'poll answered');
      this.ingest(p, node, regs);
    }
  }

  private ingest(p: GatewayPoller, node: PolledNode, regs: number[]): void {
    let decoded: ReturnType<typeof decodeNode>;
    try {
      decoded = decodeNode(regs);
      if (decoded.values.length !== node.sensors.length)
        throw new RangeError(`${decoded.values.length} slots, configured ${node.sensors.length}`);
    } catch (err) {
      this.counters.malformed++;
      this.log?.warn(
        { gateway: p.id, sensorNode: node.id, err: (err as Error).message },
        'malformed node block from Modbus gateway',
      );
      return;
    }
    if (decoded.seq === 0 || decoded.ageS === null || decoded.seq === node.lastSeq) return; // nothing new
    node.lastSeq = decoded.seq;
    this.counters.newReports++;
    const readings: Report['readings'] = [];
    decoded.values.forEach((value, i) => {
      const s = node.sensors[i]!;
      if (value !== null) readings.push({ sensor: s.id, kind: s.kind, value });
    });
    if (readings.length === 0) return;
    // The gateway's age is real seconds (a real gateway's clock), whatever the simulation's time
    // scale; a duration, so it is taken off the store's monotonic clock, never off wall time.
    const receivedAtMs = this.store.nowMs() - decoded.ageS * 1000;
    this.store.ingestReport(
      {
        node: node.id,
        gateway: p.id,
        seq: decoded.seq,
        hops: decoded.hops,
        rssiDbm: decoded.rssiDbm,
        batteryPct: decoded.batteryPct,
        readings,
      },
      'modbus',
      receivedAtMs,
    );
  }

  private async connect(p: GatewayPoller): Promise<ModbusClient> {
    if (p.client?.isOpen) return p.client;
    this.disconnect(p);
    const client = new ModbusRTU();
    client.setTimeout(this.opts.timeoutMs ?? 1000);
    p.client = client;
    // connectTCP has no deadline of its own: a blackholed gateway would hold the loop forever.
    let timer: NodeJS.Timeout | undefined;
    try {
      const connecting = client.connectTCP(p.host, { port: p.port });
      connecting.catch(() => {}); // when the deadline wins, a late failure must not go unhandled
      await Promise.race([
        connecting,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no TCP connection within ${this.opts.timeoutMs ?? 1000} ms`)),
            this.opts.timeoutMs ?? 1000,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
    this.counters.connects++;
    return client;
  }

  private disconnect(p: GatewayPoller): void {
    const client = p.client;
    p.client = undefined;
    if (!client) return;
    if (client.isOpen) client.close(() => {});
    else client.destroy(() => {});
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wake.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake.add(done);
    });
  }
}
