// One simulated Modbus TCP air handler: the simulator's Modbus TCP listener and strict MBAP framing
// (./modbus-tcp-listener.ts) around the PDU layer it shares with the RTU server (./modbus-pdu.ts)
// (modbus-serial's ServerTCP drops a malformed FC16 unanswered, answers a bad quantity with 04,
// calls back twice for quantity 0 and never times out a partial frame; a simulator that must be
// honest about bad frames answers with the exact exceptions of Modbus Application Protocol v1.1b3).
// Invariants: requests on one connection are answered in order; every write attempt that reaches
// the server is journaled exactly once; bad input closes at most its own connection, never the
// server; faults are read from `unit.faults` on every request; stop() is bounded and leaves no
// timer or socket behind. Register map and behaviour: docs/modbus-register-map.md.
import { type Logger, pino } from 'pino';
import { maxApplyDelayMs } from '../../src/config/site-schema.ts';
import { type ModbusPointMap, resolvePointMap } from '../../src/devices/modbus/point-map.ts';
import { CoolctlError, ErrorCodes } from '../../src/errors.ts';
import { Delays, settlesWithin } from '../../src/util/async.ts';
import { RateLimitedLog } from '../../src/util/log-limit.ts';
import { mulberry32 } from '../random.ts';
import { MBAP_HEADER_LEN, mbapAnswer } from './mbap-stream.ts';
import {
  GARBAGE_FUNCTION_CODE,
  ModbusAhuPdu,
  newPduCounters,
  type PduCounters,
  type PduHandler,
} from './modbus-pdu.ts';
import {
  MAX_PIPELINED_REQUESTS,
  type ModbusTcpConnection,
  type ModbusTcpEndpointOptions,
  ModbusTcpListener,
  newModbusTcpCounters,
} from './modbus-tcp-listener.ts';
import type { SimAirHandler } from './unit.ts';

/** `port`: an offline fault re-opens the same one. */
export interface ModbusAhuServerOptions extends ModbusTcpEndpointOptions {
  /** The unit id this device answers; 0 answers every unit id. 255 is always answered (see doc). */
  unitId: number;
  pointMap?: Partial<ModbusPointMap>;
  logger?: Logger;
  /** Seed of the `garbage` fault's bytes, so a failing test can be replayed. */
  garbageSeed?: number;
  /** The unit's application layer; default the native map (`pointMap`). A profile unit: `ProfilePdu`. */
  handler?: (counters: PduCounters, log: Logger) => PduHandler;
}

/** Unit id a client uses for a device addressed directly by its IP address (MB TCP guide 4.4.1.3). */
const DIRECT_UNIT_ID = 0xff;
const STOP_DEADLINE_MS = 3_000;
const LOG_INTERVAL_MS = 1_000;
/** What the unit holds for one connection; the connection itself is the listener's. */
interface ConnectionState {
  /** Requests not yet answered, each with when its last byte arrived (`performance.now()`). */
  readonly queue: QueuedRequest[];
  pumping: boolean;
}
type Connection = ModbusTcpConnection<ConnectionState>;

interface QueuedRequest {
  frame: Buffer;
  atMs: number;
}

export class ModbusAhuServer {
  readonly unit: SimAirHandler;
  /** The unit's (./modbus-pdu.ts), the connections' (./modbus-tcp-listener.ts) and requests for other unit ids. */
  readonly counters = {
    ...newPduCounters(),
    ...newModbusTcpCounters(),
    wrongUnitId: 0,
  };
  private readonly opts: ModbusAhuServerOptions;
  private readonly pm: ModbusPointMap;
  private readonly log: Logger;
  private readonly garbageRandom: () => number;
  private readonly listener: ModbusTcpListener<ConnectionState>;
  /** Fault delays in flight; stop() settles them so no timer outlives the server. */
  private readonly delays = new Delays();
  private readonly warns: RateLimitedLog;
  private started = false;
  private stopping: Promise<void> | undefined;
  /** applyFaults() calls run one after another, so listen and close never interleave. */
  private faultSync: Promise<void> = Promise.resolve();
  private readonly pdu: PduHandler;

  /** The site's `client.maxApplyDelayMs` for this unit: what the controller relies on, kept here. */
  private get applyBoundMs(): number {
    return maxApplyDelayMs(this.unit.config.client);
  }

  constructor(unit: SimAirHandler, opts: ModbusAhuServerOptions) {
    if (!Number.isInteger(opts.unitId) || opts.unitId < 0 || opts.unitId > 255) {
      throw new CoolctlError(
        ErrorCodes.STARTUP,
        `Modbus server for ${unit.id}: unit id ${opts.unitId} must be an integer 0..255 (airHandlers[].endpoint.unitId)`,
      );
    }
    try {
      this.pm = resolvePointMap(opts.pointMap);
    } catch (err) {
      throw new CoolctlError(
        ErrorCodes.STARTUP,
        `Modbus server for ${unit.id}: ${(err as Error).message} (fix airHandlers[].pointMap)`,
        { cause: err },
      );
    }
    this.unit = unit;
    this.opts = opts;
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.warns = new RateLimitedLog(this.log, LOG_INTERVAL_MS);
    this.garbageRandom = mulberry32(opts.garbageSeed ?? 1);
    this.pdu = opts.handler
      ? opts.handler(this.counters, this.log)
      : new ModbusAhuPdu(unit, this.pm, this.counters, this.log);
    this.listener = new ModbusTcpListener<ConnectionState>({
      endpoint: opts,
      name: `Modbus server for ${unit.id}`,
      portSetting: 'airHandlers[].endpoint.port',
      logFields: { ahu: unit.id },
      log: this.log,
      warns: this.warns,
      counters: this.counters,
      // Stopping refuses while stop() waits for a fault's listen or close to settle.
      refusing: () =>
        this.stopping ? 'server stopping' : this.unit.faults.offline ? 'unit offline' : undefined,
      newState: () => ({ queue: [], pumping: false }),
      // The request pump() took off the queue is in flight until answered (a slow unit's delay).
      inFlight: (conn) => conn.state.queue.length + (conn.state.pumping ? 1 : 0),
      onFrame: (conn, frame) => this.enqueue(conn, frame),
      onFramesRead: (conn) => {
        if (!conn.state.pumping) void this.pump(conn);
      },
      onClose: (conn) => {
        conn.state.queue.length = 0;
      },
    });
  }

  /** Binds host:port; rejects with COOLCTL_E_STARTUP saying what to fix when it cannot. */
  async start(): Promise<{ host: string; port: number }> {
    if (this.started) throw new Error(`ModbusAhuServer for ${this.unit.id}: already started`);
    this.started = true;
    await this.listener.listen(this.opts.port);
    this.log.info(
      {
        ahu: this.unit.id,
        host: this.opts.host,
        port: this.listener.port,
        unitId: this.opts.unitId,
        pointMap: this.pm,
      },
      'modbus server listening',
    );
    // A unit configured offline before start refuses connections from the first moment.
    if (this.unit.faults.offline) await this.applyFaults();
    return { host: this.opts.host, port: this.listener.port };
  }

  get port(): number {
    return this.listener.port;
  }

  /**
   * Brings the listener in line with `unit.faults.offline`: offline closes it and drops every
   * connection (clients see ECONNREFUSED); cleared listens again on the same port. Other faults
   * are read on every request and need nothing here.
   */
  applyFaults(): Promise<void> {
    const run = this.faultSync.then(() => this.syncListener());
    // The chain must survive a failed re-listen so that a later call can try again.
    this.faultSync = run.catch(() => undefined);
    return run;
  }

  /** Closes the listener and every connection; bounded, idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.delays.cancelAll();
      await settlesWithin(this.faultSync, STOP_DEADLINE_MS);
      await this.listener.stop();
      if (this.started) this.log.info({ ahu: this.unit.id, port: this.port }, 'modbus server stopped');
    })();
    return this.stopping;
  }

  private async syncListener(): Promise<void> {
    if (this.stopping || !this.started) return;
    if (this.unit.faults.offline) {
      if (!this.listener.listening && this.listener.connectionCount === 0) return;
      await this.listener.close('unit offline');
      this.log.warn({ ahu: this.unit.id, port: this.port }, 'unit offline: refusing connections');
    } else if (!this.listener.listening) {
      try {
        await this.listener.listen(this.port);
      } catch (err) {
        this.log.error(
          { err, ahu: this.unit.id, port: this.port },
          'unit online again but its port is taken',
        );
        throw err;
      }
      this.log.warn({ ahu: this.unit.id, port: this.port }, 'unit online again: accepting connections');
    }
  }

  /** Queues a whole request for pump(); pipelining is bounded. Returns false when it closed the connection. */
  private enqueue(conn: Connection, frame: Buffer): boolean {
    const { queue } = conn.state;
    if (queue.length >= MAX_PIPELINED_REQUESTS) {
      this.counters.pipelineOverflows++;
      this.warns.warn(
        'pipeline',
        { ahu: this.unit.id, client: conn.client, queued: queue.length },
        'modbus client pipelines more requests than it reads answers; closing the connection',
      );
      this.listener.closeConnection(conn);
      return false;
    }
    queue.push({ frame, atMs: performance.now() });
    return true;
  }

  /** Answers queued requests one at a time, so pipelined requests are answered in order. */
  private async pump(conn: Connection): Promise<void> {
    conn.state.pumping = true;
    try {
      for (let q = conn.state.queue.shift(); q && !conn.closed; q = conn.state.queue.shift()) {
        // The unit's apply bound: a request it cannot serve by then is dropped, as a TCP→RTU
        // gateway drops one past its response timeout; it never lands later (docs/modbus-register-map.md).
        const dueMs = q.atMs + this.applyBoundMs;
        const slowMs =
          this.unit.faults.slowMs + (this.pdu.serviceDelayMs?.(q.frame.subarray(MBAP_HEADER_LEN)) ?? 0);
        if (performance.now() + slowMs > dueMs) {
          await this.delays.wait(Math.max(0, dueMs - performance.now()));
          if (conn.closed || this.stopping) return;
          this.expire(conn, q.frame);
          continue;
        }
        if (slowMs > 0) await this.delays.wait(slowMs);
        if (conn.closed || this.stopping) return;
        this.answer(conn, q.frame);
      }
    } finally {
      conn.state.pumping = false;
    }
  }

  /** A request past the unit's apply bound: never served; a write to this unit is journaled 'expired'. */
  private expire(conn: Connection, frame: Buffer): void {
    const unitId = frame.readUInt8(6);
    if (this.opts.unitId !== 0 && unitId !== this.opts.unitId && unitId !== DIRECT_UNIT_ID) return;
    this.pdu.expire(conn.client, frame.subarray(MBAP_HEADER_LEN));
  }

  /** One complete frame in; answers it as the unit and its faults say. Reads faults now, so they act at once. */
  private answer(conn: Connection, frame: Buffer): void {
    const unitId = frame.readUInt8(6);
    if (this.opts.unitId !== 0 && unitId !== this.opts.unitId && unitId !== DIRECT_UNIT_ID) {
      // A gateway with nothing at that address stays silent; the client's timeout is the answer.
      this.counters.wrongUnitId++;
      this.warns.warn(
        'unit-id',
        { ahu: this.unit.id, client: conn.client, unitId, expected: this.opts.unitId },
        'modbus request for another unit id; not answered',
      );
      return;
    }
    const outcome = this.pdu.handle(conn.client, frame.subarray(MBAP_HEADER_LEN));
    switch (outcome.kind) {
      case 'reply':
        conn.socket.write(mbapAnswer(frame, outcome.pdu));
        return;
      case 'garbage':
        conn.socket.write(this.garbage(frame));
        return;
      case 'reset': {
        // Half the answer, then RST: the client sees a connection reset in the middle of a frame.
        const whole = mbapAnswer(frame, outcome.pdu);
        conn.socket.write(whole.subarray(0, Math.max(1, whole.length >> 1)), () => {
          if (!conn.socket.destroyed) conn.socket.resetAndDestroy();
        });
        return;
      }
      case 'silent':
        return;
      case 'offline':
        // applyFaults() is on its way to close the listener; this connection goes now.
        this.listener.closeConnection(conn);
        return;
    }
  }

  /**
   * Not a Modbus frame, yet one the client can step over: its transaction id (so the client pairs it
   * with its request and fails now, not at its timeout), a protocol id that is never 0, a length
   * that matches the bytes sent (so the stream stays framed), and function code 0 before seeded noise.
   */
  private garbage(request: Buffer): Buffer {
    const rnd = this.garbageRandom;
    const pduLen = 4 + Math.floor(rnd() * 8);
    const out = Buffer.alloc(MBAP_HEADER_LEN + pduLen);
    out.writeUInt16BE(request.readUInt16BE(0), 0);
    out.writeUInt16BE(1 + Math.floor(rnd() * 0xfffe), 2);
    out.writeUInt16BE(1 + pduLen, 4);
    out.writeUInt8(request.readUInt8(6), 6);
    out.writeUInt8(GARBAGE_FUNCTION_CODE, MBAP_HEADER_LEN);
    for (let i = MBAP_HEADER_LEN + 1; i < out.length; i++) out.writeUInt8(Math.floor(rnd() * 256), i);
    return out;
  }
}
