// Sensor readings from Modbus TCP gateways (one slave id per node; register map in
// modbus-gateway-map.ts): polls every node of every such gateway at the gateway's interval and
// hands new reports (a changed seq) to the SensorStore. A gateway that cannot be reached is marked
// offline in the store at once, so its nodes' readings stop being trusted before they go stale.
// One Modbus TCP stack with the air handlers: the devices' MBAP client (ModbusTcpClient) on a
// socket opened here, each request a call in the devices' CallLane (one at a time per gateway, each
// under the same deadline, settled by it whatever the socket does), and the devices' reconnect
// backoff after a failed poll. Invariants: a connection that timed out or answered garbage is
// destroyed (a late answer must never pair with a later request); a malformed node block (one that
// does not decode, or a report the report schema refuses) is counted and dropped, and a node
// answered with an exception is that node's fault, not the gateway's (each line at most once every
// 10 s); a gateway that answers no node with a block but some with an exception is offline; bytes
// no read asked for (while idle, or glued after an answer) are counted and cost the connection,
// since the next such bytes could pair with a later read; stop() ends the loops and closes every socket.
import { type Socket, connect as tcpConnect } from 'node:net';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { nodeUnitIds } from '../config/site-rules.ts';
import type { Site } from '../config/site-schema.ts';
import {
  ModbusExceptionError,
  ModbusFrameError,
  ModbusTcpClient,
  STRAY_TEXT,
  type StrayKind,
} from '../devices/modbus/modbus-tcp.ts';
import { CallLane, LaneCall, pause, reconnectBackoff } from '../devices/resilience.ts';
import { DeviceError, ErrorCodes } from '../errors.ts';
import type { Backoff } from '../util/async.ts';
import { clip, LogLimiter } from '../util/log-limit.ts';
import { decodeNode, NODE_HEADER_LEN } from './modbus-gateway-map.ts';
import { checkReport, type Report } from './report.ts';
import type { SensorStore } from './sensor-store.ts';

export interface ModbusSourceOptions {
  /** Where each gateway really listens, when it differs from the site file (the simulator's ephemeral ports). */
  endpoints?: Record<string, { host: string; port: number }>;
  /** Deadline of each request, connect included (ms). */
  timeoutMs?: number;
  /** Simulation only: site time runs this many times faster than the wall clock. */
  timeScale?: number;
  logger?: Logger;
  /** Where the poll counters are served (/metrics), read when it is scraped. */
  registry?: Registry;
}

export const DEFAULT_SENSOR_POLL_TIMEOUT_MS = 1_000;

interface PolledNode {
  id: string;
  unitId: number;
  sensors: { id: string; kind: string }[];
  lastSeq: number;
}

/**
 * One TCP connection to a gateway. Its nodes have different slave ids and ModbusTcpClient speaks
 * for one, so there is a client per slave id on the one socket; one request at a time (the lane),
 * so the bytes that arrive belong to the client whose request is in flight.
 */
interface GatewayConnection {
  readonly socket: Socket;
  readonly clients: Map<number, ModbusTcpClient>;
  current: ModbusTcpClient | undefined;
  dead: boolean;
}

interface GatewayPoller {
  id: string;
  host: string;
  port: number;
  intervalMs: number;
  nodes: PolledNode[];
  lane: CallLane;
  backoff: Backoff;
  conn: GatewayConnection | undefined;
}

const GATEWAY_TARGET_FAILED = 0x0b;
const MODBUS_SENSOR_METRICS = [
  'coolctl_sensor_modbus_polls_total',
  'coolctl_sensor_modbus_connects_total',
  'coolctl_sensor_modbus_stray_frames_total',
];
const STRAY_KINDS: readonly StrayKind[] = ['idle', 'after-answer'];

export class ModbusSource {
  readonly counters = {
    polls: 0,
    newReports: 0,
    pollErrors: 0,
    malformed: 0,
    noReportYet: 0,
    /** Node reads answered with an exception other than 0x0B. */
    exceptions: 0,
    connects: 0,
    /** Times a gateway sent bytes no read asked for, by kind; each dropped its connection. */
    strays: { idle: 0, 'after-answer': 0 } as Record<StrayKind, number>,
  };
  private readonly store: SensorStore;
  private readonly pollers: GatewayPoller[] = [];
  private readonly log: Logger | undefined;
  /** A gateway that garbles every node's block would otherwise write a line per node per poll. */
  private readonly nodeLog = new LogLimiter(() => performance.now(), 10_000);
  private readonly timeoutMs: number;
  private running = false;

  /** Started and not stopped: its poll loops run (for /healthz). */
  get polling(): boolean {
    return this.running;
  }
  private stopCtl = new AbortController();
  private loops: Promise<void>[] = [];

  constructor(site: Site, store: SensorStore, opts: ModbusSourceOptions = {}) {
    this.store = store;
    this.log = opts.logger;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_SENSOR_POLL_TIMEOUT_MS;
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
          // A store carried over by a reload already has the block a gateway still holds: polled
          // again from 0, it would come back as a duplicate of every node.
          .map((n) => ({
            id: n.id,
            unitId: ids.get(n.id)!,
            sensors: n.sensors,
            lastSeq: store.nodeLastSeq(n.id),
          })),
        lane: new CallLane(`gateway ${g.id}`, this.timeoutMs),
        backoff: reconnectBackoff(),
        conn: undefined,
      });
    }
    if (opts.registry) this.registerMetrics(opts.registry);
  }

  private registerMetrics(registry: Registry): void {
    // A reload that changes the sensors builds a new source on the same registry.
    for (const name of MODBUS_SENSOR_METRICS) registry.removeSingleMetric(name);
    const c = this.counters;
    new Counter({
      name: 'coolctl_sensor_modbus_polls_total',
      help:
        'Node reads from Modbus sensor gateways by outcome: new_report, unchanged (no new seq), no_report_yet (0x0B), ' +
        'exception (any other Modbus exception: that node gave nothing), ' +
        'malformed (a node block that does not decode or is no valid report: dropped), ' +
        'failed (timeout, refused, garbage: ends that poll)',
      labelNames: ['outcome'],
      registers: [registry],
      collect() {
        this.reset();
        const failed = c.pollErrors;
        const unchanged = Math.max(
          0,
          c.polls - c.newReports - c.noReportYet - c.exceptions - c.malformed - failed,
        );
        this.inc({ outcome: 'new_report' }, c.newReports);
        this.inc({ outcome: 'unchanged' }, unchanged);
        this.inc({ outcome: 'no_report_yet' }, c.noReportYet);
        this.inc({ outcome: 'exception' }, c.exceptions);
        this.inc({ outcome: 'malformed' }, c.malformed);
        this.inc({ outcome: 'failed' }, failed);
      },
    });
    new Counter({
      name: 'coolctl_sensor_modbus_connects_total',
      help: 'TCP connections opened to Modbus sensor gateways (a new one after every timeout or garbage)',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(c.connects);
      },
    });

    new Counter({
      name: 'coolctl_sensor_modbus_stray_frames_total',
      help:
        'Times a Modbus sensor gateway sent bytes no read asked for, by reason: idle (no read in flight), ' +
        'after-answer (glued after an answer); each drops the connection',
      labelNames: ['reason'],
      registers: [registry],
      collect() {
        this.reset();
        for (const reason of STRAY_KINDS) this.inc({ reason }, c.strays[reason]);
      },
    });
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.stopCtl = new AbortController();
    this.loops = this.pollers.map((p) => this.loop(p));
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    const closed = (p: GatewayPoller) =>
      new DeviceError(ErrorCodes.DEVICE_CLOSED, `gateway ${p.id}`, 'sensor polling stopped');
    this.stopCtl.abort(new Error('sensor polling stopped'));
    for (const p of this.pollers) {
      p.lane.close(closed(p));
      this.drop(p);
    }
    await Promise.all(this.loops);
    // A stopped source may start again: fresh lanes, since a closed lane takes no more calls.
    for (const p of this.pollers) p.lane = new CallLane(`gateway ${p.id}`, this.timeoutMs);
  }

  private async loop(p: GatewayPoller): Promise<void> {
    while (this.running) {
      const started = performance.now();
      let waitMs: number;
      try {
        await this.pollOnce(p);
        p.backoff.reset();
        waitMs = p.intervalMs - (performance.now() - started);
      } catch (err) {
        if (!this.running) return;
        this.counters.pollErrors++;
        this.drop(p);
        const message = err instanceof Error ? err.message : String(err);
        const code = err instanceof DeviceError ? err.code : ErrorCodes.DEVICE_UNREACHABLE;
        this.store.setGatewayOnline(p.id, false, `poll failed: ${code}: ${message}`);
        // Never sooner than the interval, and for a gateway that stays dead no more often than the
        // devices' reconnect backoff: each try there may cost a whole deadline.
        waitMs = Math.max(p.backoff.next(), p.intervalMs - (performance.now() - started));
      }
      try {
        await pause(Math.max(0, waitMs), this.stopCtl.signal);
      } catch {
        return; // stopped
      }
    }
  }

  private async pollOnce(p: GatewayPoller): Promise<void> {
    let blocks = 0;
    let refusal: ModbusExceptionError | undefined;
    for (const node of p.nodes) {
      if (!this.running) return;
      let regs: number[];
      this.counters.polls++;
      try {
        regs = await p.lane.run(
          new LaneCall(`read node ${node.id} (slave id ${node.unitId})`, undefined),
          (call) => this.readNode(p, node, call),
        );
      } catch (err) {
        if (!(err instanceof ModbusExceptionError)) throw err;
        // The gateway answers 0x0B for a node it has not heard from: the node is silent, not the
        // gateway. Any other exception is about this node's read too (a block shorter than the
        // site says: 0x02; the gateway failed it: 0x04): the gateway's other nodes stay trusted,
        // and this one's readings go stale. Ending the poll there blinded every group behind it.
        if (err.modbusCode === GATEWAY_TARGET_FAILED) this.counters.noReportYet++;
        else {
          this.counters.exceptions++;
          refusal = err;
          this.logNode(p, node, 'exception', {
            modbusCode: err.modbusCode,
            msg: 'Modbus gateway answered a node read with an exception',
          });
        }
        continue;
      }
      blocks++;
      this.store.setGatewayOnline(p.id, true, 'poll answered');
      this.ingest(p, node, regs);
    }
    // A gateway that refuses every node delivers nothing: as good as down, though it answers at
    // once (no deadline spent, so no backoff: the next poll comes at the interval).
    if (blocks === 0 && refusal)
      this.store.setGatewayOnline(
        p.id,
        false,
        `poll failed: ${ErrorCodes.DEVICE_EXCEPTION}: no node answered with a block (${refusal.message})`,
      );
  }

  /** A line about one node's read, at most one per `kind` every 10 s (with how many were not written). */
  private logNode(
    p: GatewayPoller,
    node: PolledNode,
    kind: string,
    fields: { msg: string } & Record<string, unknown>,
  ): void {
    if (!this.log) return;
    const notLogged = this.nodeLog.admit(kind);
    if (notLogged < 0) return;
    const { msg, ...rest } = fields;
    this.log.warn({ gateway: p.id, sensorNode: node.id, ...rest, notLogged }, msg);
  }

  /** One request, the lane's call: on the gateway's connection, opened within the call's deadline if need be. */
  private async readNode(p: GatewayPoller, node: PolledNode, call: LaneCall): Promise<number[]> {
    const conn = p.conn && !p.conn.dead ? p.conn : await this.connect(p, call);
    if (call.abandoned) throw call.abandoned;
    let client = conn.clients.get(node.unitId);
    if (!client) {
      client = new ModbusTcpClient(node.unitId, (bytes, kind) => this.onStray(p, conn, bytes, kind));
      client.attach(conn.socket);
      conn.clients.set(node.unitId, client);
    }
    conn.current = client;
    // At the deadline the answer may still come; on this stream it would pair with the next request.
    call.onAbandon = () => this.drop(p, conn);
    try {
      return (await client.readHoldingRegisters(0, NODE_HEADER_LEN + node.sensors.length)).data;
    } catch (err) {
      if (!(err instanceof ModbusExceptionError)) this.drop(p, conn);
      throw err instanceof ModbusFrameError
        ? new DeviceError(ErrorCodes.DEVICE_GARBAGE, `gateway ${p.id}`, err.message, {
            cause: err,
            retryable: true,
          })
        : err;
    } finally {
      call.onAbandon = undefined;
      conn.current = undefined;
    }
  }

  /** A TCP connection, inside the call's deadline: the lane abandons the call, and the socket goes with it. */
  private connect(p: GatewayPoller, call: LaneCall): Promise<GatewayConnection> {
    this.drop(p);
    return new Promise<GatewayConnection>((resolve, reject) => {
      const conn: GatewayConnection = {
        socket: tcpConnect({ host: p.host, port: p.port }),
        clients: new Map(),
        current: undefined,
        dead: false,
      };
      const { socket } = conn;
      // Each slave id's client listens for the close: as many listeners as the gateway has nodes.
      socket.setMaxListeners(p.nodes.length + 10);
      const fail = (err: unknown): void => {
        call.onAbandon = undefined;
        conn.dead = true;
        socket.destroy();
        reject(err);
      };
      const onError = (err: NodeJS.ErrnoException): void =>
        fail(
          new DeviceError(
            ErrorCodes.DEVICE_UNREACHABLE,
            `gateway ${p.id}`,
            `connect to ${p.host}:${p.port}: ${err.code ?? err.message}`,
            { cause: err, retryable: true },
          ),
        );
      call.onAbandon = fail;
      socket.once('error', onError);
      socket.once('connect', () => {
        call.onAbandon = undefined;
        socket.off('error', onError);
        // Later errors arrive as 'close', which fails the request in flight (ModbusTcpClient).
        socket.on('error', () => undefined);
        socket.on('data', (chunk: Buffer) => {
          if (conn.current) conn.current.receive(chunk);
          else this.onStray(p, conn, chunk.length, 'idle');
        });
        socket.once('close', () => {
          conn.dead = true;
        });
        socket.setNoDelay(true);
        this.counters.connects++;
        p.conn = conn;
        resolve(conn);
      });
    });
  }

  /**
   * The gateway sent bytes no read asked for: counted, logged (one line per gateway every 10 s), and
   * the connection dropped — the answer just taken stands, but the next such bytes could carry the
   * transaction id of a later read and pair with it. The next read opens a fresh connection.
   */
  private onStray(p: GatewayPoller, conn: GatewayConnection, bytes: number, kind: StrayKind): void {
    if (conn.dead) return;
    this.counters.strays[kind]++;
    this.drop(p, conn);
    if (!this.log) return;
    const notLogged = this.nodeLog.admit(`stray ${p.id}`);
    if (notLogged < 0) return;
    this.log.warn(
      { gateway: p.id, bytes, why: STRAY_TEXT[kind], notLogged },
      'unsolicited bytes from Modbus gateway; connection dropped',
    );
  }

  /** Destroys the gateway's connection (or `only` that one, if it is still current); the next poll opens a new one. */
  private drop(p: GatewayPoller, only?: GatewayConnection): void {
    const conn = only ?? p.conn;
    if (!conn) return;
    if (p.conn === conn) p.conn = undefined;
    if (conn.dead) return;
    conn.dead = true;
    conn.socket.destroy();
  }

  private ingest(p: GatewayPoller, node: PolledNode, regs: number[]): void {
    const malformed = (why: string): void => {
      this.counters.malformed++;
      this.logNode(p, node, 'malformed', { err: clip(why), msg: 'malformed node block from Modbus gateway' });
    };
    let decoded: ReturnType<typeof decodeNode>;
    try {
      decoded = decodeNode(regs);
      if (decoded.values.length !== node.sensors.length)
        throw new RangeError(`${decoded.values.length} slots, configured ${node.sensors.length}`);
    } catch (err) {
      malformed((err as Error).message);
      return;
    }
    if (decoded.seq === 0 || decoded.ageS === null || decoded.seq === node.lastSeq) return; // nothing new
    node.lastSeq = decoded.seq;
    const readings: Report['readings'] = [];
    decoded.values.forEach((value, i) => {
      const s = node.sensors[i]!;
      if (value !== null) readings.push({ sensor: s.id, kind: s.kind, value });
    });
    if (readings.length === 0) {
      this.counters.newReports++;
      return;
    }
    const report: Report = {
      node: node.id,
      gateway: p.id,
      seq: decoded.seq,
      hops: decoded.hops,
      rssiDbm: decoded.rssiDbm,
      batteryPct: decoded.batteryPct,
      readings,
    };
    // Registers hold figures no report may carry (battery 6553.5 %, 65 535 hops): the same limits
    // as an MQTT report's, from the one schema, else an operator is shown them.
    const checked = checkReport(report);
    if (!checked.ok) {
      malformed(checked.detail);
      return;
    }
    this.counters.newReports++;
    // The gateway's age is real seconds (a real gateway's clock), whatever the simulation's time
    // scale; a duration, so it is taken off the store's monotonic clock, never off wall time.
    const receivedAtMs = this.store.nowMs() - decoded.ageS * 1000;
    this.store.ingestReport(report, 'modbus', receivedAtMs);
  }
}
