// One simulated RS-485 line with several units on it (slave addresses 1–247): whatever master
// drives it — a controller over a pty pair (./modbus-rtu-server.ts) or a simulated TCP→RTU gateway
// (./rtu-gateway.ts) — hands it RTU frames one at a time. The line answers as a real one does:
// the addressed unit answers; an unknown address, a broadcast (0) or a bad CRC gets nothing.
// Line time is simulated at the configured baud (start + data + parity + stop bits per character,
// 3.5 characters of silence around each frame), so a line's throughput is what the wire allows.
// Invariants: one transaction at a time (half duplex); a request a unit cannot serve within its
// apply bound (counted from when it reached the first hop) is dropped, never applied later;
// stop() settles every pending transaction at once.
import type { Logger } from 'pino';
import { pino } from 'pino';
import { maxApplyDelayMs } from '../../src/config/site-schema.ts';
import { rtuCrcOk, rtuFrame } from '../../src/devices/modbus/rtu-frame.ts';
import { CoolctlError, ErrorCodes } from '../../src/errors.ts';
import { Delays } from '../../src/util/async.ts';
import { RateLimitedLog } from '../../src/util/log-limit.ts';
import type { PduHandler } from './modbus-pdu.ts';

export interface RtuLineSettings {
  baudRate?: number;
  parity?: 'none' | 'even' | 'odd';
  dataBits?: 7 | 8;
  stopBits?: 1 | 2;
}

export interface RtuLineOptions extends RtuLineSettings {
  /** A name for logs and errors (the device end of the line, or the gateway's id). */
  name: string;
  /** false: answers as fast as the code runs (unit tests of the application layer only). */
  simulateTiming?: boolean;
  logger?: Logger;
}

export const DEFAULT_BAUD = 19_200;
/** Silence before and after each frame, in characters (Modbus over Serial Line v1.02, 2.5.1.1). */
const INTER_FRAME_CHARS = 3.5;
const LOG_INTERVAL_MS = 1_000;

export interface RtuLineCounters {
  transactions: number;
  answered: number;
  /** Frames with a bad CRC or shorter than 4 bytes: ignored by every unit. */
  badFrames: number;
  /** Addressed to a slave address nobody on the line has: nobody answers. */
  unknownUnitId: number;
  /** Slave address 0: the simulated units do not act on broadcasts, and nobody answers. */
  broadcasts: number;
  /** Milliseconds the line carried frames (request and answer, with their silences). */
  busyMs: number;
}

/** The answer a transaction got: the bytes on the line, or none (the master times out). */
export type RtuAnswer = Buffer | null;

interface Slave {
  readonly unitId: number;
  readonly pdu: PduHandler;
}

export class RtuLine {
  readonly name: string;
  readonly counters: RtuLineCounters = {
    transactions: 0,
    answered: 0,
    badFrames: 0,
    unknownUnitId: 0,
    broadcasts: 0,
    busyMs: 0,
  };
  /** Wall ms one character takes on this line. */
  readonly charMs: number;
  readonly settings: Required<RtuLineSettings>;
  private readonly simulateTiming: boolean;
  private readonly slaves = new Map<number, Slave>();
  private readonly log: Logger;
  private readonly warns: RateLimitedLog;
  private readonly delays = new Delays();
  /** The line is half duplex: each transaction starts when the one before it has ended. */
  private tail: Promise<unknown> = Promise.resolve();
  private stopped = false;

  constructor(opts: RtuLineOptions) {
    this.name = opts.name;
    this.settings = {
      baudRate: opts.baudRate ?? DEFAULT_BAUD,
      parity: opts.parity ?? 'even',
      dataBits: opts.dataBits ?? 8,
      stopBits: opts.stopBits ?? 1,
    };
    const s = this.settings;
    this.charMs = (bitsPerChar(s) * 1000) / s.baudRate;
    this.simulateTiming = opts.simulateTiming ?? true;
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.warns = new RateLimitedLog(this.log, LOG_INTERVAL_MS);
  }

  /** Puts a unit on the line at `unitId`; refuses a second unit at one address. */
  addUnit(unitId: number, pdu: PduHandler): void {
    if (!Number.isInteger(unitId) || unitId < 1 || unitId > 247) {
      throw new CoolctlError(
        ErrorCodes.STARTUP,
        `RTU line ${this.name}: ${pdu.unit.id} has slave address ${unitId}; a unit on a line needs 1..247 (airHandlers[].endpoint.unitId)`,
      );
    }
    const taken = this.slaves.get(unitId);
    if (taken) {
      throw new CoolctlError(
        ErrorCodes.STARTUP,
        `RTU line ${this.name}: ${pdu.unit.id} and ${taken.pdu.unit.id} both have slave address ${unitId}; ` +
          'units on one line need distinct airHandlers[].endpoint.unitId',
      );
    }
    this.slaves.set(unitId, { unitId, pdu });
  }

  get unitIds(): number[] {
    return [...this.slaves.keys()].sort((a, b) => a - b);
  }

  unitAt(unitId: number): PduHandler | undefined {
    return this.slaves.get(unitId)?.pdu;
  }

  /** Wall ms a frame of `bytes` bytes occupies the line, with the silence that ends it. */
  frameMs(bytes: number): number {
    return (bytes + INTER_FRAME_CHARS) * this.charMs;
  }

  /** `frameMs`, or 0 when line time is not simulated. */
  private wireMs(bytes: number): number {
    return this.simulateTiming ? this.frameMs(bytes) : 0;
  }

  /**
   * One transaction: `frame` (address + PDU + CRC) goes out, the addressed unit handles it, its
   * answer comes back. `arrivedAtMs` (`performance.now()`) is when the request reached the first
   * hop (the line's port, or a gateway): the unit's apply bound counts from there.
   */
  transact(
    client: string,
    frame: Buffer,
    arrivedAtMs: number = performance.now(),
    releaseAfterMs?: number,
  ): Promise<RtuAnswer> {
    const start = this.tail;
    const run = start.then(() => this.run(client, frame, arrivedAtMs));
    // A master that gives up after `releaseAfterMs` (a gateway's response timeout) sends its next
    // request then: the line is free again, whatever the slow unit still does with this one.
    const held =
      releaseAfterMs === undefined
        ? run
        : start.then(() => Promise.race([run, this.delays.wait(this.wireMs(frame.length) + releaseAfterMs)]));
    this.tail = held.catch(() => undefined);
    return run;
  }

  /** Settles every transaction in flight with no answer; later ones get none either. */
  stop(): void {
    this.stopped = true;
    this.delays.cancelAll();
  }

  private async run(client: string, frame: Buffer, arrivedAtMs: number): Promise<RtuAnswer> {
    if (this.stopped) return null;
    this.counters.transactions++;
    // The request occupies the line whoever it is for; a unit sees it only once it has all arrived.
    await this.lineTime(frame.length);
    if (this.stopped) return null;
    if (!rtuCrcOk(frame)) {
      this.counters.badFrames++;
      this.warns.warn(
        'bad-frame',
        { line: this.name, bytes: frame.length },
        'rtu frame with a bad CRC; ignored',
      );
      return null;
    }
    const unitId = frame.readUInt8(0);
    if (unitId === 0) {
      this.counters.broadcasts++;
      this.warns.warn('broadcast', { line: this.name }, 'rtu broadcast; the simulated units ignore it');
      return null;
    }
    const slave = this.slaves.get(unitId);
    if (!slave) {
      this.counters.unknownUnitId++;
      this.warns.warn(
        'unit-id',
        { line: this.name, unitId, onLine: this.unitIds },
        'rtu request for a slave address nobody on the line has; not answered',
      );
      return null;
    }
    const { pdu } = slave;
    const unit = pdu.unit;
    const request = frame.subarray(1, -2);
    // The unit's apply bound: what it cannot serve by then is dropped for good (modbus-register-map.md).
    const dueMs = arrivedAtMs + maxApplyDelayMs(unit.config.client);
    const slowMs = unit.faults.slowMs + (pdu.serviceDelayMs?.(request) ?? 0);
    if (performance.now() + slowMs > dueMs) {
      await this.delays.wait(Math.max(0, dueMs - performance.now()));
      if (this.stopped) return null;
      if (!unit.faults.offline) pdu.expire(client, request);
      return null;
    }
    if (slowMs > 0) await this.delays.wait(slowMs);
    if (this.stopped) return null;
    if (unit.faults.offline) {
      // A unit without power: the line stays quiet and the unit never sees the request.
      pdu.counters.offlineDrops++;
      return null;
    }
    const outcome = pdu.handle(client, request);
    let answer: Buffer;
    switch (outcome.kind) {
      case 'reply':
        answer = rtuFrame(unitId, outcome.pdu);
        break;
      case 'garbage': {
        // Line noise: the answer's shape, its bytes flipped, so the CRC no longer matches.
        answer = rtuFrame(unitId, outcome.pdu);
        for (let i = 2; i < answer.length - 2; i++) answer[i] = (answer[i] ?? 0) ^ 0x5a;
        answer[answer.length - 1] = (answer[answer.length - 1] ?? 0) ^ 0xff;
        break;
      }
      case 'reset': {
        // A serial line has no reset: the answer breaks off half-way and the line goes quiet.
        const whole = rtuFrame(unitId, outcome.pdu);
        answer = whole.subarray(0, Math.max(1, whole.length >> 1));
        break;
      }
      case 'silent':
      case 'offline':
        return null;
    }
    await this.lineTime(answer.length);
    if (this.stopped) return null;
    this.counters.answered++;
    return answer;
  }

  private async lineTime(bytes: number): Promise<void> {
    const ms = this.wireMs(bytes);
    if (ms === 0) return;
    this.counters.busyMs += ms;
    await this.delays.wait(ms);
  }
}

/** Bits one character takes: start, data, parity, stop. 8E1 (the Modbus default) is 11. */
export function bitsPerChar(s: Required<RtuLineSettings>): number {
  return 1 + s.dataBits + (s.parity === 'none' ? 0 : 1) + s.stopBits;
}

// The frame and its CRC are src's (one owner); the simulator's converter takes them from here.
export { crc16, rtuFrame } from '../../src/devices/modbus/rtu-frame.ts';
