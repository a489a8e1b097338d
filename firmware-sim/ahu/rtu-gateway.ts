// A simulated Modbus TCP→RTU gateway (the Moxa/Lantronix/Schneider kind): one TCP endpoint in
// front of the unit ids of one serial line. It answers as those gateways do (REAL-PLANT-NOTES.md):
// one request at a time on the line, a response timeout per unit, exception 0x0A for a unit id
// not in its map, 0x0B when the target did not answer in time (a dead unit; the others keep
// answering), and a bounded queue per TCP master with exception 06 when it is full.
// The line behind it is either in-process (`RtuLine`) or a real serial port (one end of a pty pair
// whose other end a `ModbusRtuLineServer` serves), so the gateway is an honest RTU master.
// Invariants: at most one request on the line at a time; a request is answered once (an answer,
// 0x0A, 0x0B or 06) or dropped with its connection; stop() is bounded and leaves no timer behind.
import { type Logger, pino } from 'pino';
import { SerialPort } from 'serialport';
import { CoolctlError, ErrorCodes } from '../../src/errors.ts';
import { Delays, settlesWithin } from '../../src/util/async.ts';
import { RateLimitedLog } from '../../src/util/log-limit.ts';
import { MBAP_HEADER_LEN, mbapAnswer } from './mbap-stream.ts';
import {
  type ModbusTcpConnection,
  type ModbusTcpCounters,
  type ModbusTcpEndpointOptions,
  ModbusTcpListener,
  newModbusTcpCounters,
} from './modbus-tcp-listener.ts';
import { crc16, DEFAULT_BAUD, type RtuLine, type RtuLineSettings, rtuFrame } from './rtu-line.ts';

/** The exceptions a gateway itself answers (Modbus Application Protocol v1.1b3, 7). */
export const GATEWAY_EXCEPTION = {
  serverBusy: 0x06,
  pathUnavailable: 0x0a,
  targetFailedToRespond: 0x0b,
} as const;

export const DEFAULT_RESPONSE_TIMEOUT_MS = 1_000;
/** Requests one TCP master may have waiting (one gateway family holds 32). */
export const DEFAULT_QUEUE_DEPTH = 32;
const STOP_DEADLINE_MS = 3_000;
const LOG_INTERVAL_MS = 1_000;

/** The gateway's serial side: one RTU transaction at a time. */
export interface RtuMasterLink {
  readonly name: string;
  open(): Promise<void>;
  /**
   * Sends `frame` and resolves the addressed unit's answer (address + PDU + CRC, CRC checked), or
   * null when none came within the request's own line time plus `responseTimeoutMs`.
   * `broadcast`: nothing is awaited beyond the request's line time.
   */
  transact(req: LinkRequest): Promise<Buffer | null>;
  close(): Promise<void>;
}

export interface LinkRequest {
  client: string;
  unitId: number;
  frame: Buffer;
  /** When the request reached the gateway (`performance.now()`); the unit's apply bound counts from it. */
  arrivedAtMs: number;
  responseTimeoutMs: number;
}

export interface GatewayCounters extends ModbusTcpCounters {
  requests: number;
  /** Sent on the line (broadcasts included). */
  forwarded: number;
  answered: number;
  /** Exception 0x0A: unit id not in the gateway's map. */
  pathUnavailable: number;
  /** Exception 0x0B: the unit did not answer within its response timeout. */
  targetNoAnswer: number;
  /** Exception 0x0B without using the line: the request waited in the queue past its unit's queue timeout. */
  queueExpired: number;
  /** Exception 06: the master's queue was full. */
  busy: number;
  broadcasts: number;
}

export interface RtuGatewayOptions extends ModbusTcpEndpointOptions {
  /** Name in logs and `GET /sim/state`. */
  id: string;
  link: RtuMasterLink;
  /**
   * The unit ids the gateway maps onto its line, each with its own response timeout and, if set, a
   * queue timeout: a request that waited longer than that is answered 0x0B and never sent.
   */
  units: { unitId: number; responseTimeoutMs?: number; queueTimeoutMs?: number }[];
  queueDepth?: number;
  logger?: Logger;
}

/**
 * A master's connection; its state is how many of its requests wait for the line (the queue depth
 * bounds these) and whether one of them is on the line now.
 */
interface MasterState {
  queued: number;
  onLine: boolean;
}
type Connection = ModbusTcpConnection<MasterState>;

interface Pending {
  conn: Connection;
  frame: Buffer;
  atMs: number;
}

export class RtuGateway {
  readonly id: string;
  readonly counters: GatewayCounters = {
    ...newModbusTcpCounters(),
    requests: 0,
    forwarded: 0,
    answered: 0,
    pathUnavailable: 0,
    targetNoAnswer: 0,
    queueExpired: 0,
    busy: 0,
    broadcasts: 0,
  };
  private readonly opts: RtuGatewayOptions;
  private readonly link: RtuMasterLink;
  private readonly timeouts = new Map<number, number>();
  private readonly queueTimeouts = new Map<number, number>();
  private readonly queueDepth: number;
  private readonly log: Logger;
  private readonly warns: RateLimitedLog;
  private readonly listener: ModbusTcpListener<MasterState>;
  private readonly pending: Pending[] = [];
  private pumping = false;
  private started = false;
  private stopping: Promise<void> | undefined;

  constructor(opts: RtuGatewayOptions) {
    for (const u of opts.units) {
      if (!Number.isInteger(u.unitId) || u.unitId < 1 || u.unitId > 247) {
        throw new CoolctlError(
          ErrorCodes.STARTUP,
          `RTU gateway ${opts.id}: unit id ${u.unitId} must be 1..247 (a serial slave address)`,
        );
      }
      this.timeouts.set(u.unitId, u.responseTimeoutMs ?? DEFAULT_RESPONSE_TIMEOUT_MS);
      if (u.queueTimeoutMs !== undefined) this.queueTimeouts.set(u.unitId, u.queueTimeoutMs);
    }
    this.id = opts.id;
    this.opts = opts;
    this.link = opts.link;
    this.queueDepth = opts.queueDepth ?? DEFAULT_QUEUE_DEPTH;
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.warns = new RateLimitedLog(this.log, LOG_INTERVAL_MS);
    this.listener = new ModbusTcpListener({
      endpoint: opts,
      name: `RTU gateway ${opts.id}`,
      portSetting: 'the endpoint of the units behind it',
      logFields: { gateway: opts.id },
      log: this.log,
      warns: this.warns,
      counters: this.counters,
      newState: () => ({ queued: 0, onLine: false }),
      // Queued or on the line is in flight, not idle: a slow line never gets a master's connection
      // closed for idleness while its answer is still coming.
      inFlight: (conn) => conn.state.queued + (conn.state.onLine ? 1 : 0),
      // Copied: the request waits for the line, past this chunk.
      onFrame: (conn, frame) => {
        this.onRequest(conn, Buffer.from(frame));
        return true;
      },
    });
  }

  get port(): number {
    return this.listener.port;
  }

  get unitIds(): number[] {
    return [...this.timeouts.keys()].sort((a, b) => a - b);
  }

  /** Opens the line and binds host:port; rejects with COOLCTL_E_STARTUP saying what to fix. */
  async start(): Promise<{ host: string; port: number }> {
    if (this.started) throw new Error(`RtuGateway ${this.id}: already started`);
    this.started = true;
    await this.link.open();
    await this.listener.listen(this.opts.port);
    this.log.info(
      {
        gateway: this.id,
        host: this.opts.host,
        port: this.port,
        line: this.link.name,
        unitIds: this.unitIds,
      },
      'modbus tcp→rtu gateway listening',
    );
    return { host: this.opts.host, port: this.port };
  }

  /** Closes the listener, every connection and the line; bounded, idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.pending.length = 0;
      await this.listener.stop();
      await settlesWithin(this.link.close(), STOP_DEADLINE_MS);
      if (this.started) this.log.info({ gateway: this.id }, 'modbus tcp→rtu gateway stopped');
    })();
    return this.stopping;
  }

  private onRequest(conn: Connection, frame: Buffer): void {
    this.counters.requests++;
    const unitId = frame.readUInt8(6);
    if (unitId !== 0 && !this.timeouts.has(unitId)) {
      this.counters.pathUnavailable++;
      this.warns.warn(
        'path',
        { gateway: this.id, client: conn.client, unitId, unitIds: this.unitIds },
        'request for a unit id not behind this gateway; exception 0x0A',
      );
      this.answerException(conn, frame, GATEWAY_EXCEPTION.pathUnavailable);
      return;
    }
    if (conn.state.queued >= this.queueDepth) {
      this.counters.busy++;
      this.warns.warn(
        'busy',
        { gateway: this.id, client: conn.client, queued: conn.state.queued },
        'master queue full; exception 06',
      );
      this.answerException(conn, frame, GATEWAY_EXCEPTION.serverBusy);
      return;
    }
    conn.state.queued++;
    this.pending.push({ conn, frame, atMs: performance.now() });
    if (!this.pumping) void this.pump();
  }

  /** The line: one request at a time, in arrival order across all masters. */
  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      for (let p = this.pending.shift(); p && !this.stopping; p = this.pending.shift()) {
        p.conn.state.queued--;
        if (p.conn.closed) continue;
        p.conn.state.onLine = true;
        try {
          await this.forward(p);
        } finally {
          p.conn.state.onLine = false;
        }
      }
    } catch (err) {
      this.log.error({ err, gateway: this.id }, 'gateway line failed');
    } finally {
      this.pumping = false;
    }
  }

  private async forward(p: Pending): Promise<void> {
    const unitId = p.frame.readUInt8(6);
    const pdu = p.frame.subarray(MBAP_HEADER_LEN);
    const queueTimeoutMs = this.queueTimeouts.get(unitId);
    if (queueTimeoutMs !== undefined && performance.now() - p.atMs > queueTimeoutMs) {
      // Too late for the unit's apply bound: the line is not spent on it, the master hears at once.
      this.counters.queueExpired++;
      this.warns.warn(
        'queue-expired',
        { gateway: this.id, client: p.conn.client, unitId, queueTimeoutMs },
        'request waited past its queue timeout; exception 0x0B, not sent',
      );
      this.answerException(p.conn, p.frame, GATEWAY_EXCEPTION.targetFailedToRespond);
      return;
    }
    this.counters.forwarded++;
    const answer = await this.link.transact({
      client: p.conn.client,
      unitId,
      frame: rtuFrame(unitId, pdu),
      arrivedAtMs: p.atMs,
      responseTimeoutMs: unitId === 0 ? 0 : (this.timeouts.get(unitId) ?? DEFAULT_RESPONSE_TIMEOUT_MS),
    });
    if (unitId === 0) {
      // A broadcast has no answer on the line, so none goes back to the master either.
      this.counters.broadcasts++;
      return;
    }
    if (p.conn.closed) return;
    if (!answer) {
      this.counters.targetNoAnswer++;
      this.warns.warn(
        'no-answer',
        { gateway: this.id, client: p.conn.client, unitId },
        'unit did not answer within its response timeout; exception 0x0B',
      );
      this.answerException(p.conn, p.frame, GATEWAY_EXCEPTION.targetFailedToRespond);
      return;
    }
    this.counters.answered++;
    p.conn.socket.write(mbapAnswer(p.frame, answer.subarray(1, -2)));
  }

  private answerException(conn: Connection, request: Buffer, code: number): void {
    if (conn.closed) return;
    const fc = request.length > MBAP_HEADER_LEN ? request.readUInt8(MBAP_HEADER_LEN) : 0;
    conn.socket.write(mbapAnswer(request, Buffer.from([(fc | 0x80) & 0xff, code])));
  }
}

/** A well-formed answer from `unitId`: at least address + function code + CRC, and the CRC right. */
function validAnswer(bytes: Buffer | null, unitId: number): bytes is Buffer {
  return (
    bytes !== null &&
    bytes.length >= 4 &&
    bytes.readUInt8(0) === unitId &&
    crc16(bytes.subarray(0, -2)) === bytes.readUInt16LE(bytes.length - 2)
  );
}

/** The gateway's line in the same process: no serial port, same timing and units. */
export class InProcessLink implements RtuMasterLink {
  readonly name: string;
  private readonly line: RtuLine;
  private readonly delays = new Delays();

  constructor(line: RtuLine) {
    this.line = line;
    this.name = line.name;
  }

  async open(): Promise<void> {}

  async transact(req: LinkRequest): Promise<Buffer | null> {
    const waitMs = this.line.frameMs(req.frame.length) + req.responseTimeoutMs;
    const sentAt = performance.now();
    const answer = this.line.transact(req.client, req.frame, req.arrivedAtMs, req.responseTimeoutMs);
    const got = await Promise.race([answer, this.delays.wait(waitMs).then(() => null)]);
    if (req.unitId === 0) return null;
    if (validAnswer(got, req.unitId)) return got;
    // No answer, or one the gateway cannot use: it keeps listening until its timeout, as a real one.
    const left = waitMs - (performance.now() - sentAt);
    if (left > 0) await this.delays.wait(left);
    return null;
  }

  async close(): Promise<void> {
    this.delays.cancelAll();
  }
}

/** The gateway's line over a serial port (the master end of a pty pair, or a real RS-485 adapter). */
export class SerialMasterLink implements RtuMasterLink {
  readonly name: string;
  private readonly settings: Required<RtuLineSettings>;
  private readonly log: Logger;
  private port: SerialPort | undefined;
  private buffer: Buffer = Buffer.alloc(0);
  private onBytes: (() => void) | undefined;
  private readonly charMs: number;
  readonly counters = { badAnswers: 0, portErrors: 0 };

  constructor(path: string, settings: RtuLineSettings = {}, logger?: Logger) {
    this.name = path;
    this.settings = {
      baudRate: settings.baudRate ?? DEFAULT_BAUD,
      parity: settings.parity ?? 'even',
      dataBits: settings.dataBits ?? 8,
      stopBits: settings.stopBits ?? 1,
    };
    const s = this.settings;
    this.charMs = ((1 + s.dataBits + (s.parity === 'none' ? 0 : 1) + s.stopBits) * 1000) / s.baudRate;
    this.log = logger ?? pino({ level: 'silent' });
  }

  async open(): Promise<void> {
    const port = new SerialPort({ path: this.name, ...this.settings, autoOpen: false });
    await new Promise<void>((resolve, reject) =>
      port.open((err) =>
        err
          ? reject(
              new CoolctlError(
                ErrorCodes.STARTUP,
                `RTU gateway line ${this.name} cannot be opened: ${err.message}`,
                {
                  cause: err,
                },
              ),
            )
          : resolve(),
      ),
    );
    port.on('error', (err) => {
      this.counters.portErrors++;
      this.log.warn({ line: this.name, err: err.message }, 'gateway serial port error');
    });
    port.on('data', (chunk: Buffer) => {
      this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
      this.onBytes?.();
    });
    this.port = port;
  }

  transact(req: LinkRequest): Promise<Buffer | null> {
    const port = this.port;
    if (!port?.isOpen) return Promise.resolve(null);
    // Whatever a unit said after the last transaction gave up on it belongs to nobody now.
    this.buffer = Buffer.alloc(0);
    const waitMs = (req.frame.length + 3.5) * this.charMs + req.responseTimeoutMs;
    return new Promise<Buffer | null>((resolve) => {
      const finish = (answer: Buffer | null): void => {
        clearTimeout(timer);
        this.onBytes = undefined;
        resolve(answer);
      };
      const timer = setTimeout(() => finish(null), waitMs);
      if (req.unitId === 0) {
        clearTimeout(timer);
        port.write(req.frame, () => setTimeout(() => finish(null), waitMs));
        return;
      }
      this.onBytes = () => {
        // Drop bytes until one that can start this unit's answer.
        while (this.buffer.length > 0 && this.buffer.readUInt8(0) !== req.unitId)
          this.buffer = this.buffer.subarray(1);
        const len = expectedResponseLength(this.buffer);
        if (len === undefined || this.buffer.length < len) return;
        const frame = this.buffer.subarray(0, len);
        this.buffer = this.buffer.subarray(len);
        if (validAnswer(frame, req.unitId)) finish(Buffer.from(frame));
        else this.counters.badAnswers++;
      };
      port.write(req.frame);
    });
  }

  async close(): Promise<void> {
    this.onBytes = undefined;
    const port = this.port;
    this.port = undefined;
    if (port?.isOpen) await settlesWithin(new Promise<void>((r) => port.close(() => r())), STOP_DEADLINE_MS);
  }
}

/** Length of the answer frame at the start of `buf`, from its function code; undefined if not yet known. */
function expectedResponseLength(buf: Buffer): number | undefined {
  if (buf.length < 2) return undefined;
  const fc = buf.readUInt8(1);
  if (fc & 0x80) return 5;
  switch (fc) {
    case 0x01:
    case 0x02:
    case 0x03:
    case 0x04:
      return buf.length >= 3 ? 5 + buf.readUInt8(2) : undefined;
    case 0x05:
    case 0x06:
    case 0x0f:
    case 0x10:
      return 8;
    default:
      // A function the gateway does not know the shape of: take what has come as the answer.
      return buf.length >= 4 ? buf.length : undefined;
  }
}
