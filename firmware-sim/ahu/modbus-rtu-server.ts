// One simulated Modbus RTU air handler on a serial line (in tests, one end of a pty pair): RTU
// framing (address + PDU + CRC-16) around the application layer the TCP server uses too.
// Frames end at their expected length (read from the function code, and the byte count of FC15/16)
// or at a silent gap; a frame with a bad CRC, or cut short by a gap, is dropped unanswered, as on a
// real line. Invariants: one request at a time (the line is half-duplex); stop() is bounded and
// leaves no timer behind. Register map and behaviour: docs/modbus-register-map.md.
import { type Logger, pino } from 'pino';
import { SerialPort } from 'serialport';
import { maxApplyDelayMs } from '../../src/config/site-schema.ts';
import { type ModbusPointMap, resolvePointMap } from '../../src/devices/modbus/point-map.ts';
import { CoolctlError, ErrorCodes } from '../../src/errors.ts';
import { Delays, RateLimitedWarn, settlesWithin } from '../../src/util/async.ts';
import { FC, ModbusAhuPdu, newPduCounters, type PduCounters } from './modbus-pdu.ts';
import type { SimAirHandler } from './unit.ts';

export interface ModbusRtuAhuServerOptions {
  /** The device end of the line, e.g. one end of a pty pair (`endpoint.simPath`). */
  path: string;
  baudRate?: number;
  parity?: 'none' | 'even' | 'odd';
  dataBits?: 7 | 8;
  stopBits?: 1 | 2;
  /** The slave address this unit answers (1..247); nothing else is answered, broadcast (0) included. */
  unitId: number;
  pointMap?: Partial<ModbusPointMap>;
  logger?: Logger;
  /**
   * Silence that ends a frame whose length the function code does not say, and drops a frame
   * left incomplete. Longer than RTU's 3.5 characters because a pty delivers bytes in bursts.
   */
  frameGapMs?: number;
}

export const DEFAULT_FRAME_GAP_MS = 50;
/** Largest RTU frame: address + 253-byte PDU + CRC. */
const MAX_RTU_FRAME = 256;
/** Requests waiting while one is handled; more is a master that does not wait for answers. */
const MAX_QUEUED_REQUESTS = 8;
const STOP_DEADLINE_MS = 3_000;
const LOG_INTERVAL_MS = 1_000;

type Counters = PduCounters & {
  /** Frames with a bad CRC, or longer than 256 bytes: dropped unanswered. */
  badFrames: number;
  /** Frames cut short by a silent gap: dropped unanswered. */
  frameTimeouts: number;
  wrongUnitId: number;
  queueOverflows: number;
  portErrors: number;
};

export class ModbusRtuAhuServer {
  readonly unit: SimAirHandler;
  readonly counters: Counters = {
    ...newPduCounters(),
    badFrames: 0,
    frameTimeouts: 0,
    wrongUnitId: 0,
    queueOverflows: 0,
    portErrors: 0,
  };
  private readonly opts: ModbusRtuAhuServerOptions;
  private readonly pm: ModbusPointMap;
  private readonly log: Logger;
  private readonly pdu: ModbusAhuPdu;

  /** The site's `client.maxApplyDelayMs` for this unit: what the controller relies on, kept here. */
  private get applyBoundMs(): number {
    return maxApplyDelayMs(this.unit.config.client);
  }
  private readonly frameGapMs: number;
  private readonly client: string;
  private port: SerialPort | undefined;
  private buffer: Buffer = Buffer.alloc(0);
  private gapTimer: NodeJS.Timeout | undefined;
  /** Requests waiting for the line, each with when it arrived (`performance.now()`). */
  private readonly queue: { frame: Buffer; atMs: number }[] = [];
  private pumping = false;
  private readonly delays = new Delays();
  private readonly warns: RateLimitedWarn;
  private started = false;
  private stopping: Promise<void> | undefined;

  constructor(unit: SimAirHandler, opts: ModbusRtuAhuServerOptions) {
    if (!Number.isInteger(opts.unitId) || opts.unitId < 1 || opts.unitId > 247) {
      throw new CoolctlError(
        ErrorCodes.STARTUP,
        `Modbus RTU server for ${unit.id}: unit id ${opts.unitId} must be an integer 1..247 (airHandlers[].endpoint.unitId)`,
      );
    }
    try {
      this.pm = resolvePointMap(opts.pointMap);
    } catch (err) {
      throw new CoolctlError(
        ErrorCodes.STARTUP,
        `Modbus RTU server for ${unit.id}: ${(err as Error).message} (fix airHandlers[].pointMap)`,
        { cause: err },
      );
    }
    this.unit = unit;
    this.opts = opts;
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.warns = new RateLimitedWarn(this.log, LOG_INTERVAL_MS);
    this.frameGapMs = opts.frameGapMs ?? DEFAULT_FRAME_GAP_MS;
    this.client = `modbus-rtu:${opts.path}`;
    this.pdu = new ModbusAhuPdu(unit, this.pm, this.counters, this.log);
  }

  /** Opens the serial line; rejects with COOLCTL_E_STARTUP saying what to fix when it cannot. */
  async start(): Promise<{ path: string }> {
    if (this.started) throw new Error(`ModbusRtuAhuServer for ${this.unit.id}: already started`);
    this.started = true;
    const port = new SerialPort({
      path: this.opts.path,
      baudRate: this.opts.baudRate ?? 19_200,
      parity: this.opts.parity ?? 'even',
      dataBits: this.opts.dataBits ?? 8,
      stopBits: this.opts.stopBits ?? 1,
      autoOpen: false,
    });
    await new Promise<void>((resolve, reject) =>
      port.open((err) =>
        err
          ? reject(
              new CoolctlError(
                ErrorCodes.STARTUP,
                `Modbus RTU server for ${this.unit.id} cannot open ${this.opts.path}: ${err.message} ` +
                  '(check airHandlers[].endpoint.simPath: the device end of the serial line)',
                { cause: err },
              ),
            )
          : resolve(),
      ),
    );
    // Errors (the other end of a pty closing) are counted, never thrown.
    port.on('error', (err) => {
      this.counters.portErrors++;
      this.warns.warn('port-error', { ahu: this.unit.id, err: err.message }, 'modbus rtu port error');
    });
    port.on('data', (chunk: Buffer) => this.onData(chunk));
    this.port = port;
    this.log.info(
      { ahu: this.unit.id, path: this.opts.path, unitId: this.opts.unitId, pointMap: this.pm },
      'modbus rtu server listening',
    );
    return { path: this.opts.path };
  }

  /** Nothing to do: an offline RTU unit simply stops answering, which is checked per request. */
  async applyFaults(): Promise<void> {}

  /** Closes the line; bounded, idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      clearTimeout(this.gapTimer);
      this.delays.cancelAll();
      this.queue.length = 0;
      const port = this.port;
      this.port = undefined;
      if (port?.isOpen) {
        const closed = await settlesWithin(
          new Promise<void>((resolve) => port.close(() => resolve())),
          STOP_DEADLINE_MS,
        );
        if (!closed) this.log.warn({ ahu: this.unit.id }, 'modbus rtu port did not close in time');
      }
      if (this.started)
        this.log.info({ ahu: this.unit.id, path: this.opts.path }, 'modbus rtu server stopped');
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
      this.counters.badFrames++;
      this.warns.warn(
        'bad-frame',
        { ahu: this.unit.id, bytes: this.buffer.length },
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
    this.counters.frameTimeouts++;
    this.warns.warn(
      'frame-timeout',
      { ahu: this.unit.id, bytes: rest.length },
      'incomplete rtu frame; dropped',
    );
  }

  /** A complete frame: CRC and address checked, then queued for the half-duplex pump. */
  private accept(frame: Buffer): void {
    if (frame.length < 4 || crc16(frame.subarray(0, -2)) !== frame.readUInt16LE(frame.length - 2)) {
      this.counters.badFrames++;
      this.warns.warn(
        'bad-frame',
        { ahu: this.unit.id, bytes: frame.length },
        'rtu frame with a bad CRC; dropped',
      );
      return;
    }
    const unitId = frame.readUInt8(0);
    if (unitId !== this.opts.unitId) {
      // Another slave's request (or a broadcast) on a shared line: not ours to answer.
      this.counters.wrongUnitId++;
      this.warns.warn(
        'unit-id',
        { ahu: this.unit.id, unitId, expected: this.opts.unitId },
        'modbus rtu request for another unit id; not answered',
      );
      return;
    }
    if (this.queue.length >= MAX_QUEUED_REQUESTS) {
      this.counters.queueOverflows++;
      this.warns.warn(
        'queue',
        { ahu: this.unit.id },
        'modbus rtu master does not wait for answers; request dropped',
      );
      return;
    }
    this.queue.push({ frame, atMs: performance.now() });
    if (!this.pumping) void this.pump();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      for (let q = this.queue.shift(); q && !this.stopping; q = this.queue.shift()) {
        // The unit's apply bound, as over TCP: a request not served by then is dropped for good.
        const dueMs = q.atMs + this.applyBoundMs;
        const slowMs = this.unit.faults.slowMs;
        if (performance.now() + slowMs > dueMs) {
          await this.delays.wait(Math.max(0, dueMs - performance.now()));
          if (this.stopping) return;
          if (!this.unit.faults.offline) this.pdu.expire(this.client, q.frame.subarray(1, -2));
          continue;
        }
        if (slowMs > 0) await this.delays.wait(slowMs);
        if (this.stopping) return;
        this.answer(q.frame);
      }
    } finally {
      this.pumping = false;
    }
  }

  private answer(frame: Buffer): void {
    if (this.unit.faults.offline) {
      // A unit without power: the line stays quiet and the unit never sees the request.
      this.counters.offlineDrops++;
      return;
    }
    const outcome = this.pdu.handle(this.client, frame.subarray(1, -2));
    switch (outcome.kind) {
      case 'reply':
        this.send(this.frame(outcome.pdu));
        return;
      case 'garbage': {
        // Line noise: the answer's shape, its bytes flipped, so the CRC no longer matches.
        const bad = this.frame(outcome.pdu);
        for (let i = 2; i < bad.length - 2; i++) bad[i] = (bad[i] ?? 0) ^ 0x5a;
        bad[bad.length - 1] = (bad[bad.length - 1] ?? 0) ^ 0xff;
        this.send(bad);
        return;
      }
      case 'reset': {
        // A serial line has no reset: the answer breaks off half-way and the line goes quiet.
        const whole = this.frame(outcome.pdu);
        this.send(whole.subarray(0, Math.max(1, whole.length >> 1)));
        return;
      }
      case 'silent':
      case 'offline':
        return;
    }
  }

  private frame(pdu: Buffer): Buffer {
    const out = Buffer.alloc(1 + pdu.length + 2);
    out.writeUInt8(this.opts.unitId, 0);
    pdu.copy(out, 1);
    out.writeUInt16LE(crc16(out.subarray(0, -2)), out.length - 2);
    return out;
  }

  private send(bytes: Buffer): void {
    if (this.port?.isOpen) this.port.write(bytes);
  }
}

/**
 * Length of the request frame at the start of `buf` (address + PDU + CRC), from its function
 * code; undefined when the code does not say (an unknown function, or FC16 before its byte count).
 */
function expectedRequestLength(buf: Buffer): number | undefined {
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

/** Modbus CRC-16 (polynomial 0xA001 reflected, initial 0xFFFF), sent low byte first. */
export function crc16(bytes: Uint8Array): number {
  let crc = 0xffff;
  for (const b of bytes) {
    crc ^= b;
    for (let i = 0; i < 8; i++) crc = crc & 1 ? (crc >>> 1) ^ 0xa001 : crc >>> 1;
  }
  return crc;
}
