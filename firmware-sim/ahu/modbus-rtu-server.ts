// A simulated Modbus RTU serial line as a master sees it (in tests and the demo, one end of a pty
// pair): the port cuts the byte stream into RTU frames and hands them to the line (./rtu-line.ts),
// which dispatches them to its units by slave address, with line timing at the configured baud.
// Frames end at their expected length (read from the function code, and the byte count of FC15/16)
// or at a silent gap; a frame cut short by a gap is dropped unanswered, as on a real line.
// Invariants: one request at a time on the line (half duplex); answers go out in request order;
// stop() is bounded and leaves no timer behind. Register map and behaviour: docs/modbus-register-map.md.
import { type Logger, pino } from 'pino';
import { SerialPort } from 'serialport';
import { type ModbusPointMap, resolvePointMap } from '../../src/devices/modbus/point-map.ts';
import { CoolctlError, ErrorCodes } from '../../src/errors.ts';
import { settlesWithin } from '../../src/util/async.ts';
import { RateLimitedLog } from '../../src/util/log-limit.ts';
import { FC, ModbusAhuPdu, newPduCounters, type PduCounters, type PduHandler } from './modbus-pdu.ts';
import { DEFAULT_BAUD, RtuLine, type RtuLineSettings } from './rtu-line.ts';
import type { SimAirHandler } from './unit.ts';

export interface ModbusRtuLineServerOptions extends RtuLineSettings {
  /** The device end of the line, e.g. one end of a pty pair (`endpoint.simPath`). */
  path: string;
  logger?: Logger;
  /**
   * Silence that ends a frame whose length the function code does not say, and drops a frame
   * left incomplete. Longer than RTU's 3.5 characters because a pty delivers bytes in bursts.
   */
  frameGapMs?: number;
  /** false: no simulated line time (unit tests of the application layer only). */
  simulateTiming?: boolean;
}

export const DEFAULT_FRAME_GAP_MS = 50;
/** Largest RTU frame: address + 253-byte PDU + CRC. */
const MAX_RTU_FRAME = 256;
/** Requests waiting while one is on the line; more is a master that does not wait for answers. */
const MAX_QUEUED_REQUESTS = 8;
const STOP_DEADLINE_MS = 3_000;
const LOG_INTERVAL_MS = 1_000;

export interface RtuPortCounters {
  /** Frames longer than 256 bytes: dropped unanswered. */
  tooLong: number;
  /** Frames cut short by a silent gap: dropped unanswered. */
  frameTimeouts: number;
  queueOverflows: number;
  portErrors: number;
}

/** One serial line with any number of units on it, served on one port. */
export class ModbusRtuLineServer {
  readonly line: RtuLine;
  readonly portCounters: RtuPortCounters = { tooLong: 0, frameTimeouts: 0, queueOverflows: 0, portErrors: 0 };
  private readonly opts: ModbusRtuLineServerOptions;
  private readonly log: Logger;
  private readonly frameGapMs: number;
  private readonly client: string;
  private readonly warns: RateLimitedLog;
  private port: SerialPort | undefined;
  private buffer: Buffer = Buffer.alloc(0);
  private gapTimer: NodeJS.Timeout | undefined;
  /** Requests handed to the line and not yet answered (or given up). */
  private inFlight = 0;
  /** Answers are written in request order: each waits for the one before it. */
  private answerTail: Promise<unknown> = Promise.resolve();
  private started = false;
  private stopping: Promise<void> | undefined;

  constructor(opts: ModbusRtuLineServerOptions) {
    this.opts = opts;
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.warns = new RateLimitedLog(this.log, LOG_INTERVAL_MS);
    this.frameGapMs = opts.frameGapMs ?? DEFAULT_FRAME_GAP_MS;
    this.client = `modbus-rtu:${opts.path}`;
    this.line = new RtuLine({
      name: opts.path,
      ...pick(opts),
      ...(opts.simulateTiming !== undefined ? { simulateTiming: opts.simulateTiming } : {}),
      logger: this.log,
    });
  }

  /** Puts a unit on this line at slave address `unitId` (before start). */
  addUnit(unitId: number, pdu: PduHandler): void {
    this.line.addUnit(unitId, pdu);
  }

  get path(): string {
    return this.opts.path;
  }

  /** Opens the serial line; rejects with COOLCTL_E_STARTUP saying what to fix when it cannot. */
  async start(): Promise<{ path: string }> {
    if (this.started) throw new Error(`ModbusRtuLineServer on ${this.opts.path}: already started`);
    this.started = true;
    const s = this.line.settings;
    const port = new SerialPort({
      path: this.opts.path,
      baudRate: s.baudRate,
      parity: s.parity,
      dataBits: s.dataBits,
      stopBits: s.stopBits,
      autoOpen: false,
    });
    const units = this.line.unitIds.map((id) => `${this.line.unitAt(id)?.unit.id}@${id}`).join(', ');
    await new Promise<void>((resolve, reject) =>
      port.open((err) =>
        err
          ? reject(
              new CoolctlError(
                ErrorCodes.STARTUP,
                `Modbus RTU line ${this.opts.path} (${units}) cannot be opened: ${err.message} ` +
                  '(check airHandlers[].endpoint.simPath: the device end of the serial line)',
                { cause: err },
              ),
            )
          : resolve(),
      ),
    );
    // Errors (the other end of a pty closing) are counted, never thrown.
    port.on('error', (err) => {
      this.portCounters.portErrors++;
      this.warns.warn('port-error', { line: this.opts.path, err: err.message }, 'modbus rtu port error');
    });
    port.on('data', (chunk: Buffer) => this.onData(chunk));
    this.port = port;
    this.log.info(
      { line: this.opts.path, units, baudRate: s.baudRate, charMs: this.line.charMs },
      'modbus rtu line listening',
    );
    return { path: this.opts.path };
  }

  /** Nothing to do: an offline RTU unit simply stops answering, which is checked per request. */
  async applyFaults(): Promise<void> {}

  /** Closes the line; bounded, idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      clearTimeout(this.gapTimer);
      this.line.stop();
      const port = this.port;
      this.port = undefined;
      if (port?.isOpen) {
        const closed = await settlesWithin(
          new Promise<void>((resolve) => port.close(() => resolve())),
          STOP_DEADLINE_MS,
        );
        if (!closed) this.log.warn({ line: this.opts.path }, 'modbus rtu port did not close in time');
      }
      if (this.started) this.log.info({ line: this.opts.path }, 'modbus rtu line stopped');
    })();
    return this.stopping;
  }

  /** Cuts the byte stream into frames by expected length; the gap timer handles the rest. */
  private onData(chunk: Buffer): void {
    if (this.stopping) return;
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    for (;;) {
      const len = expectedRequestLength(this.buffer);
      if (len === undefined || this.buffer.length < len) break;
      const frame = this.buffer.subarray(0, len);
      this.buffer = this.buffer.subarray(len);
      this.accept(frame);
    }
    if (this.buffer.length > MAX_RTU_FRAME) {
      this.portCounters.tooLong++;
      this.warns.warn(
        'bad-frame',
        { line: this.opts.path, bytes: this.buffer.length },
        'rtu frame too long; dropped',
      );
      this.buffer = Buffer.alloc(0);
    }
    clearTimeout(this.gapTimer);
    this.gapTimer = undefined;
    if (this.buffer.length > 0) this.gapTimer = setTimeout(() => this.onGap(), this.frameGapMs);
  }

  /** Silence: what is buffered is a whole frame of unknown length, or a frame cut short. */
  private onGap(): void {
    this.gapTimer = undefined;
    const rest = this.buffer;
    this.buffer = Buffer.alloc(0);
    if (rest.length === 0) return;
    if (expectedRequestLength(rest) === undefined && rest.length >= 4) {
      this.accept(rest);
      return;
    }
    this.portCounters.frameTimeouts++;
    this.warns.warn(
      'frame-timeout',
      { line: this.opts.path, bytes: rest.length },
      'incomplete rtu frame; dropped',
    );
  }

  /** A complete frame: onto the line, its answer (if any) written back in order. */
  private accept(frame: Buffer): void {
    if (this.inFlight >= MAX_QUEUED_REQUESTS) {
      this.portCounters.queueOverflows++;
      this.warns.warn(
        'queue',
        { line: this.opts.path },
        'modbus rtu master does not wait for answers; request dropped',
      );
      return;
    }
    this.inFlight++;
    // A copy: the port's buffer may be reused under a frame that waits for the line.
    const answer = this.line.transact(this.client, Buffer.from(frame), performance.now());
    const write = Promise.all([answer, this.answerTail]).then(([bytes]) => {
      this.inFlight--;
      if (bytes && this.port?.isOpen && !this.stopping) this.port.write(bytes);
    });
    this.answerTail = write.catch((err: unknown) => {
      this.inFlight = Math.max(0, this.inFlight - 1);
      this.log.error({ err, line: this.opts.path }, 'modbus rtu transaction failed');
    });
  }
}

export interface ModbusRtuAhuServerOptions extends RtuLineSettings {
  /** The device end of the line, e.g. one end of a pty pair (`endpoint.simPath`). */
  path: string;
  /** The slave address this unit answers (1..247); nothing else is answered, broadcast (0) included. */
  unitId: number;
  pointMap?: Partial<ModbusPointMap>;
  logger?: Logger;
  frameGapMs?: number;
  simulateTiming?: boolean;
}

type Counters = PduCounters & {
  /** Frames with a bad CRC, or longer than 256 bytes: dropped unanswered. */
  badFrames: number;
  /** Frames cut short by a silent gap: dropped unanswered. */
  frameTimeouts: number;
  /** Other slave addresses and broadcasts: not answered. */
  wrongUnitId: number;
  queueOverflows: number;
  portErrors: number;
};

/** One native unit alone on its own line: the line server with one unit, its counters in one place. */
export class ModbusRtuAhuServer {
  readonly unit: SimAirHandler;
  readonly server: ModbusRtuLineServer;
  private readonly pduCounters = newPduCounters();

  constructor(unit: SimAirHandler, opts: ModbusRtuAhuServerOptions) {
    if (!Number.isInteger(opts.unitId) || opts.unitId < 1 || opts.unitId > 247) {
      throw new CoolctlError(
        ErrorCodes.STARTUP,
        `Modbus RTU server for ${unit.id}: unit id ${opts.unitId} must be an integer 1..247 (airHandlers[].endpoint.unitId)`,
      );
    }
    let pm: ModbusPointMap;
    try {
      pm = resolvePointMap(opts.pointMap);
    } catch (err) {
      throw new CoolctlError(
        ErrorCodes.STARTUP,
        `Modbus RTU server for ${unit.id}: ${(err as Error).message} (fix airHandlers[].pointMap)`,
        { cause: err },
      );
    }
    this.unit = unit;
    const log = opts.logger ?? pino({ level: 'silent' });
    this.server = new ModbusRtuLineServer({
      path: opts.path,
      ...pick(opts),
      ...(opts.frameGapMs !== undefined ? { frameGapMs: opts.frameGapMs } : {}),
      ...(opts.simulateTiming !== undefined ? { simulateTiming: opts.simulateTiming } : {}),
      logger: log,
    });
    this.server.addUnit(opts.unitId, new ModbusAhuPdu(unit, pm, this.pduCounters, log));
  }

  get counters(): Counters {
    const line = this.server.line.counters;
    const port = this.server.portCounters;
    return {
      ...this.pduCounters,
      badFrames: line.badFrames + port.tooLong,
      frameTimeouts: port.frameTimeouts,
      wrongUnitId: line.unknownUnitId + line.broadcasts,
      queueOverflows: port.queueOverflows,
      portErrors: port.portErrors,
    };
  }

  start(): Promise<{ path: string }> {
    return this.server.start();
  }

  applyFaults(): Promise<void> {
    return this.server.applyFaults();
  }

  stop(): Promise<void> {
    return this.server.stop();
  }
}

function pick(s: RtuLineSettings): RtuLineSettings {
  return {
    baudRate: s.baudRate ?? DEFAULT_BAUD,
    ...(s.parity !== undefined ? { parity: s.parity } : {}),
    ...(s.dataBits !== undefined ? { dataBits: s.dataBits } : {}),
    ...(s.stopBits !== undefined ? { stopBits: s.stopBits } : {}),
  };
}

/**
 * Length of the request frame at the start of `buf` (address + PDU + CRC), from its function
 * code; undefined when the code does not say (an unknown function, or FC15/16 before its byte count).
 */
export function expectedRequestLength(buf: Buffer): number | undefined {
  if (buf.length < 2) return undefined;
  switch (buf.readUInt8(1)) {
    case 0x01:
    case 0x02:
    case FC.readHolding:
    case FC.readInput:
    case 0x05:
    case FC.writeSingle:
      return 8;
    case 0x0f:
    case FC.writeMultiple:
      return buf.length >= 7 ? 9 + buf.readUInt8(6) : undefined;
    default:
      return undefined;
  }
}
