// A controller-side RS-485 line: every Modbus RTU unit (slave ids 1–247) on one serial port talks
// through ONE RtuLine. The line is half-duplex and RTU frames carry no transaction id, so requests
// go one at a time, in arrival order, each with its own deadline counted from its send. A dead or
// slow unit therefore costs the units queued behind it at most its own deadline per request, never
// more: the line moves on when that deadline passes, and counts it against that unit.
// Invariants: one frame on the wire at a time, with RTU's 3.5-character silence before every
// request; every promise settles (answer, exception, deadline, caller's abort, close); a caller that
// gives up on a request already sent frees itself at once, but the line stays reserved for that
// request until its answer or deadline (a late answer must not be read as the next unit's); a
// frame from another slave id (a late answer) is counted and dropped. Units share a line through
// `openRtuUnit` (one line per serial path, closed with its last unit).
import { EventEmitter } from 'node:events';
import { type Logger, pino } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { DeviceError, ErrorCodes } from '../../errors.ts';
import { ModbusExceptionError, ModbusFrameError } from './modbus-tcp.ts';
import { answerPduLength, interFrameGapMs, rtuCrcOk, rtuFrame } from './rtu-frame.ts';

export interface RtuSerialSettings {
  path: string;
  baudRate?: number;
  parity?: 'none' | 'even' | 'odd';
  dataBits?: 7 | 8;
  stopBits?: 1 | 2;
}

/** The byte stream under a line: a serial port, or (tests, bench) anything that carries bytes. */
export interface RtuPort {
  write(bytes: Buffer): void;
  /** Closes the port; bounded. */
  close(): Promise<void>;
}

/** What a port tells its line: bytes in order, and its end (once). */
export interface RtuPortEvents {
  data(chunk: Buffer): void;
  closed(reason: string): void;
}

export type OpenRtuPort = (settings: RtuSerialSettings, events: RtuPortEvents) => Promise<RtuPort>;

export interface RtuLineOptions {
  logger?: Logger;
  /** Opens the port; default a SerialPort on `settings.path`. */
  openPort?: OpenRtuPort;
  /** Where the line counts (default its own): lines of one path share them, so they outlive a reopen. */
  counters?: RtuLineCounters;
}

/** What a line counts, per slave id and for the line. */
export interface RtuLineCounters {
  readonly units: Map<number, RtuUnitCounters>;
  /** Frames (or bytes) that arrived while nothing was asked, or from another slave id. */
  readonly line: { strayFrames: number; strayBytes: number };
}

function newLineCounters(): RtuLineCounters {
  return { units: new Map(), line: { strayFrames: 0, strayBytes: 0 } };
}

/** Per slave id on a line: what happened to its requests. */
export interface RtuUnitCounters {
  requests: number;
  answers: number;
  exceptions: number;
  /** Requests whose deadline passed on the wire: the line waited that long for this unit. */
  timeouts: number;
  /** Answers with a bad CRC, the wrong function or a cut-short frame. */
  garbage: number;
  /** Given up by their caller before an answer (queued or on the wire). */
  abandoned: number;
}

/**
 * The length of the answer to `pdu` when it is not an exception (address + PDU + CRC), known from
 * the request, as a master knows it: a byte count garbled on the wire must not make the line wait
 * for bytes that never come. Undefined for a function whose answer says its own length.
 */
function answerLengthFor(pdu: Uint8Array): number | undefined {
  if (pdu.length < 5) return undefined;
  const count = (pdu[3]! << 8) | pdu[4]!;
  switch (pdu[0]) {
    case 0x01:
    case 0x02:
      return 5 + Math.ceil(count / 8);
    case 0x03:
    case 0x04:
      return 5 + 2 * count;
    case 0x05:
    case 0x06:
    case 0x0f:
    case 0x10:
      return 8;
    default:
      return undefined;
  }
}

/** A response frame's length from its first bytes; undefined until enough has arrived to say, -1 for no Modbus function. */
function expectedResponseLength(buf: Buffer): number | undefined {
  if (buf.length < 2) return undefined;
  const pduLength = answerPduLength(buf.subarray(1));
  return pduLength === undefined || pduLength < 0 ? pduLength : 1 + pduLength + 2;
}

interface Job {
  unitId: number;
  frame: Buffer;
  fc: number;
  /** The answer's length, known from the request (undefined: read it from the answer). */
  answerLength: number | undefined;
  deadlineMs: number;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  resolve: (pdu: Buffer) => void;
  reject: (err: Error) => void;
  /** The caller has its answer or error; the job may still hold the wire. */
  settled: boolean;
  /** On the wire since (performance.now()); 0 while queued. */
  sentAtMs: number;
}

/** The request's deadline passed with no (valid) answer; named as modbus-serial names it, so adapters classify it alike. */
export class RtuTimeoutError extends Error {
  override readonly name = 'TransactionTimedOutError';
}

/** The line is closed (or never opened). */
export class RtuLineClosedError extends Error {
  override readonly name = 'PortNotOpenError';
}

const MAX_UNIT_ID = 247;
const CLOSE_DEADLINE_MS = 1_000;

export class RtuLine {
  readonly settings: Required<RtuSerialSettings>;
  /** Frames (or bytes) that arrived while nothing was asked, or from another slave id. */
  readonly counters: { strayFrames: number; strayBytes: number };
  private readonly units: Map<number, RtuUnitCounters>;
  private readonly log: Logger;
  private readonly openPort: OpenRtuPort;
  private readonly gapMs: number;
  private port: RtuPort | undefined;
  private opening: Promise<void> | undefined;
  private closedReason: string | undefined;
  private readonly queue: Job[] = [];
  private active: Job | undefined;
  private rx: Buffer = Buffer.alloc(0);
  /** performance.now() from which the wire has been silent long enough for the next frame. */
  private quietAtMs = 0;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private gapTimer: NodeJS.Timeout | undefined;
  private readonly closeListeners = new Set<(reason: string) => void>();

  constructor(settings: RtuSerialSettings, opts: RtuLineOptions = {}) {
    this.settings = {
      path: settings.path,
      baudRate: settings.baudRate ?? 19_200,
      parity: settings.parity ?? 'even',
      dataBits: settings.dataBits ?? 8,
      stopBits: settings.stopBits ?? 1,
    };
    this.log = (opts.logger ?? pino({ level: 'silent' })).child({
      component: 'rtu-line',
      line: settings.path,
    });
    this.openPort = opts.openPort ?? openSerialPort;
    const counters = opts.counters ?? newLineCounters();
    this.counters = counters.line;
    this.units = counters.units;
    this.gapMs = interFrameGapMs(this.settings.baudRate);
  }

  /** Opens the port (once); requests made before it is open wait in the queue. */
  open(): Promise<void> {
    this.opening ??= this.openPort(this.settings, {
      data: (chunk) => this.onData(chunk),
      closed: (reason) => this.onClosed(reason),
    }).then(
      (port) => {
        if (this.closedReason !== undefined) {
          void port.close();
          return;
        }
        this.port = port;
        this.log.info({ baudRate: this.settings.baudRate }, 'rtu line open');
        this.pump();
      },
      (err: unknown) => {
        this.onClosed(`cannot open ${this.settings.path}: ${(err as Error).message}`);
        throw err;
      },
    );
    return this.opening;
  }

  get isOpen(): boolean {
    return this.port !== undefined && this.closedReason === undefined;
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  /** Requests queued or on the wire. */
  get pending(): number {
    return this.queue.length + (this.active ? 1 : 0);
  }

  /** The counters of one slave id (zero if it never asked). */
  unitCounters(unitId: number): RtuUnitCounters {
    return { ...this.counterOf(unitId) };
  }

  /** Every slave id that asked, with its counters. */
  allUnitCounters(): Map<number, RtuUnitCounters> {
    return new Map([...this.units].map(([id, c]) => [id, { ...c }]));
  }

  onClose(listener: (reason: string) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /**
   * Sends `pdu` (function code and data) to `unitId` when the line is free, and resolves with the
   * answer's PDU. `deadlineMs` counts from the send (both frames' time on the wire included); a
   * `signal` frees the caller at once, queued or sent. Rejects with ModbusExceptionError,
   * ModbusFrameError (CRC, wrong function, cut short), RtuTimeoutError, RtuLineClosedError, or a
   * DEVICE_ABORTED DeviceError.
   */
  request(unitId: number, pdu: Uint8Array, deadlineMs: number, signal?: AbortSignal): Promise<Buffer> {
    if (!Number.isInteger(unitId) || unitId < 1 || unitId > MAX_UNIT_ID) {
      return Promise.reject(new RangeError(`slave id ${unitId} is not 1…${MAX_UNIT_ID}`));
    }
    if (pdu.length < 1 || pdu.length > 253) {
      return Promise.reject(new RangeError(`a PDU is 1…253 bytes, got ${pdu.length}`));
    }
    if (this.closedReason !== undefined) {
      return Promise.reject(
        new RtuLineClosedError(`line ${this.settings.path} closed: ${this.closedReason}`),
      );
    }
    if (signal?.aborted) return Promise.reject(this.abortedError(unitId, signal));
    const frame = rtuFrame(unitId, pdu);
    this.counterOf(unitId).requests++;
    return new Promise<Buffer>((resolve, reject) => {
      const job: Job = {
        unitId,
        frame,
        fc: pdu[0]!,
        answerLength: answerLengthFor(pdu),
        deadlineMs: Math.max(1, deadlineMs),
        signal,
        onAbort: undefined,
        resolve,
        reject,
        settled: false,
        sentAtMs: 0,
      };
      if (signal) {
        job.onAbort = () => this.abandon(job, this.abortedError(unitId, signal));
        signal.addEventListener('abort', job.onAbort, { once: true });
      }
      this.queue.push(job);
      if (!this.opening) void this.open().catch(() => undefined);
      this.pump();
    });
  }

  /** Frees the caller of `job` with `err`; a queued job never reaches the wire, a sent one keeps it until its deadline. */
  private abandon(job: Job, err: Error): void {
    if (job.settled) return;
    this.counterOf(job.unitId).abandoned++;
    this.settle(job, err);
    if (job.sentAtMs === 0) {
      const i = this.queue.indexOf(job);
      if (i >= 0) this.queue.splice(i, 1);
    }
  }

  /** Rejects everything pending and closes the port; bounded, idempotent. */
  async close(reason = 'closed'): Promise<void> {
    const port = this.port;
    this.port = undefined;
    this.onClosed(reason);
    if (port) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        port.close().catch(() => undefined),
        new Promise<void>((r) => {
          timer = setTimeout(r, CLOSE_DEADLINE_MS);
        }),
      ]);
      clearTimeout(timer);
    }
  }

  // ---- the wire ----

  private pump(): void {
    if (this.active || !this.port || this.closedReason !== undefined) return;
    let job = this.queue.shift();
    while (job?.settled) job = this.queue.shift();
    if (!job) return;
    const waitMs = this.quietAtMs - performance.now();
    if (waitMs > 0) {
      // The job goes back to the head: the line is reserved for it while the gap runs.
      this.queue.unshift(job);
      if (!this.gapTimer) {
        this.gapTimer = setTimeout(() => {
          this.gapTimer = undefined;
          this.pump();
        }, Math.ceil(waitMs));
      }
      return;
    }
    this.active = job;
    this.rx = Buffer.alloc(0);
    job.sentAtMs = performance.now();
    this.deadlineTimer = setTimeout(() => this.onDeadline(job), job.deadlineMs);
    this.port.write(job.frame);
  }

  private onData(chunk: Buffer): void {
    const job = this.active;
    if (!job) {
      this.counters.strayBytes += chunk.length;
      this.quietAtMs = performance.now() + this.gapMs;
      return;
    }
    this.rx = this.rx.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.rx, chunk]);
    const outcome = this.parse(job);
    if (outcome !== undefined) this.finish(job, outcome);
  }

  /** The answer to `job` in what has arrived: its PDU, why it is none, or undefined while more is to come. */
  private parse(job: Job): Buffer | Error | undefined {
    for (;;) {
      // Our unit's answer (not an exception) has the length the request implies; anything else says its own.
      const ours = this.rx.length >= 2 && this.rx[0] === job.unitId && !(this.rx[1]! & 0x80);
      const len = ours && job.answerLength !== undefined ? job.answerLength : expectedResponseLength(this.rx);
      if (len === undefined || (len > 0 && this.rx.length < len)) return undefined;
      if (len < 0) return this.garbage(job, `function ${this.rx[1]} in the answer is no Modbus function`);
      const frame = this.rx.subarray(0, len);
      if (!rtuCrcOk(frame)) {
        return this.garbage(job, `CRC error in a ${len}-byte answer`);
      }
      if (frame[0] !== job.unitId) {
        // Another unit's answer — one that came after its own deadline: not ours, not an error of ours.
        this.counters.strayFrames++;
        this.rx = this.rx.subarray(len);
        continue;
      }
      const fc = frame[1]!;
      if (fc === (job.fc | 0x80)) {
        this.counterOf(job.unitId).exceptions++;
        return new ModbusExceptionError(frame[2]!);
      }
      if (fc !== job.fc) return this.garbage(job, `function ${fc} answers function ${job.fc}`);
      this.counterOf(job.unitId).answers++;
      return Buffer.from(frame.subarray(1, len - 2));
    }
  }

  private onDeadline(job: Job): void {
    if (this.active !== job) return;
    this.deadlineTimer = undefined;
    this.counterOf(job.unitId).timeouts++;
    const heard = this.rx.length;
    this.finish(
      job,
      new RtuTimeoutError(
        `slave id ${job.unitId} on ${this.settings.path}: no answer within ${job.deadlineMs} ms` +
          (heard > 0 ? ` (${heard} bytes of an incomplete frame)` : ''),
      ),
    );
  }

  /** The wire is free again once a gap has passed; the next job goes then. */
  private finish(job: Job, outcome: Buffer | Error): void {
    clearTimeout(this.deadlineTimer);
    this.deadlineTimer = undefined;
    this.active = undefined;
    this.rx = Buffer.alloc(0);
    this.quietAtMs = performance.now() + this.gapMs;
    this.settle(job, outcome);
    this.pump();
  }

  private settle(job: Job, outcome: Buffer | Error): void {
    if (job.settled) return;
    job.settled = true;
    if (job.onAbort) job.signal!.removeEventListener('abort', job.onAbort);
    if (outcome instanceof Error) job.reject(outcome);
    else job.resolve(outcome);
  }

  private garbage(job: Job, what: string): ModbusFrameError {
    this.counterOf(job.unitId).garbage++;
    return new ModbusFrameError(`slave id ${job.unitId} on ${this.settings.path}: ${what}`);
  }

  private onClosed(reason: string): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    // A port that failed under us is still open: release it (close() closes its own port itself).
    const port = this.port;
    this.port = undefined;
    if (port) void port.close().catch(() => undefined);
    clearTimeout(this.deadlineTimer);
    clearTimeout(this.gapTimer);
    const err = new RtuLineClosedError(`line ${this.settings.path} closed: ${reason}`);
    const jobs = [...(this.active ? [this.active] : []), ...this.queue.splice(0)];
    this.active = undefined;
    for (const job of jobs) this.settle(job, err);
    this.log.info({ reason }, 'rtu line closed');
    for (const l of this.closeListeners) l(reason);
    this.closeListeners.clear();
  }

  private counterOf(unitId: number): RtuUnitCounters {
    let c = this.units.get(unitId);
    if (!c) {
      c = { requests: 0, answers: 0, exceptions: 0, timeouts: 0, garbage: 0, abandoned: 0 };
      this.units.set(unitId, c);
    }
    return c;
  }

  private abortedError(unitId: number, signal: AbortSignal): DeviceError {
    return new DeviceError(
      ErrorCodes.DEVICE_ABORTED,
      `${this.settings.path}/${unitId}`,
      'request aborted by caller',
      { cause: signal.reason },
    );
  }
}

/**
 * A SerialPort on the settings' path; port errors end the line, never throw. serialport (its native
 * binding and ~30 modules) is loaded by the first RTU line: a node with none never holds it.
 */
const openSerialPort: OpenRtuPort = async (settings, events) => {
  const { SerialPort } = await import('serialport');
  return new Promise<RtuPort>((resolve, reject) => {
    const port = new SerialPort({
      path: settings.path,
      baudRate: settings.baudRate ?? 19_200,
      parity: settings.parity ?? 'even',
      dataBits: settings.dataBits ?? 8,
      stopBits: settings.stopBits ?? 1,
      autoOpen: false,
    });
    port.open((err) => {
      if (err) return reject(err);
      port.on('data', (chunk: Buffer) => events.data(chunk));
      port.on('error', (e: Error) => events.closed(`port error: ${e.message}`));
      port.once('close', () => events.closed('port closed'));
      resolve({
        write: (bytes) => {
          port.write(bytes);
        },
        close: () =>
          new Promise<void>((r) => {
            if (!port.isOpen) return r();
            port.close(() => r());
          }),
      });
    });
  });
};

// ---- units on shared lines ----

/**
 * One unit's view of its line, shaped like the Modbus clients the device adapter uses (the
 * register calls, `setTimeout`, `close`, a 'close' event). `close()` releases the unit's share of
 * the line; the line closes with its last unit.
 */
export class RtuUnitClient extends EventEmitter {
  readonly unitId: number;
  readonly line: RtuLine;
  private deadlineMs = 1_000;
  private released = false;
  private readonly offClose: () => void;
  private readonly release: () => void;
  /** Aborts the request in flight when the unit closes (the line keeps its wire reserved). */
  private inFlight: AbortController | undefined;

  constructor(line: RtuLine, unitId: number, release: () => void) {
    super();
    this.line = line;
    this.unitId = unitId;
    this.release = release;
    this.offClose = line.onClose((reason) => {
      if (this.released) return;
      this.released = true;
      this.emit('close', reason);
    });
  }

  get isOpen(): boolean {
    return !this.released && this.line.isOpen;
  }

  /** The deadline of each following request on the line, from its send (ms). */
  setTimeout(ms: number): void {
    this.deadlineMs = Math.max(1, ms);
  }

  readHoldingRegisters(address: number, count: number): Promise<{ data: number[] }> {
    return this.readWords(0x03, address, count);
  }

  readInputRegisters(address: number, count: number): Promise<{ data: number[] }> {
    return this.readWords(0x04, address, count);
  }

  readCoils(address: number, count: number): Promise<{ data: boolean[] }> {
    return this.readBits(0x01, address, count);
  }

  readDiscreteInputs(address: number, count: number): Promise<{ data: boolean[] }> {
    return this.readBits(0x02, address, count);
  }

  async writeRegisters(
    address: number,
    words: readonly number[],
  ): Promise<{ address: number; length: number }> {
    const n = words.length;
    if (!(n >= 1 && n <= 123)) throw new RangeError(`write of ${n} registers (1…123)`);
    const pdu = Buffer.allocUnsafe(6 + 2 * n);
    pdu[0] = 0x10;
    pdu.writeUInt16BE(address, 1);
    pdu.writeUInt16BE(n, 3);
    pdu[5] = 2 * n;
    for (let i = 0; i < n; i++) pdu.writeUInt16BE(words[i]!, 6 + 2 * i);
    await this.echoed(pdu, address, n);
    return { address, length: n };
  }

  async writeRegister(address: number, word: number): Promise<{ address: number; value: number }> {
    if (!(Number.isInteger(word) && word >= 0 && word <= 0xffff))
      throw new RangeError(`register value ${word} is not a 16-bit word`);
    await this.echoed(this.pdu4(0x06, address, word), address, word);
    return { address, value: word };
  }

  async writeCoil(address: number, on: boolean): Promise<{ address: number; state: boolean }> {
    const value = on ? 0xff00 : 0;
    await this.echoed(this.pdu4(0x05, address, value), address, value);
    return { address, state: on };
  }

  async writeCoils(address: number, bits: readonly boolean[]): Promise<{ address: number; length: number }> {
    const n = bits.length;
    if (!(n >= 1 && n <= 1968)) throw new RangeError(`write of ${n} coils (1…1968)`);
    const bytes = Math.ceil(n / 8);
    const pdu = Buffer.alloc(6 + bytes);
    pdu[0] = 0x0f;
    pdu.writeUInt16BE(address, 1);
    pdu.writeUInt16BE(n, 3);
    pdu[5] = bytes;
    for (let i = 0; i < n; i++) if (bits[i]) pdu[6 + (i >> 3)]! |= 1 << (i & 7);
    await this.echoed(pdu, address, n);
    return { address, length: n };
  }

  /** Releases this unit's share of the line; a request in flight fails at once. */
  close(callback?: () => void): void {
    if (!this.released) {
      this.released = true;
      this.offClose();
      this.inFlight?.abort(new RtuLineClosedError('unit closed'));
      this.release();
    }
    callback?.();
  }

  private async readWords(fc: number, address: number, count: number): Promise<{ data: number[] }> {
    if (!(count >= 1 && count <= 125)) throw new RangeError(`read of ${count} registers (1…125)`);
    const res = await this.send(this.pdu4(fc, address, count));
    if (res.length !== 2 + 2 * count || res[1] !== 2 * count) {
      throw new ModbusFrameError(`Data length error: ${res[1]} bytes for ${count} registers`);
    }
    const data = new Array<number>(count);
    for (let i = 0; i < count; i++) data[i] = res.readUInt16BE(2 + 2 * i);
    return { data };
  }

  private async readBits(fc: number, address: number, count: number): Promise<{ data: boolean[] }> {
    if (!(count >= 1 && count <= 2000)) throw new RangeError(`read of ${count} bits (1…2000)`);
    const res = await this.send(this.pdu4(fc, address, count));
    const bytes = Math.ceil(count / 8);
    if (res.length !== 2 + bytes || res[1] !== bytes) {
      throw new ModbusFrameError(`Data length error: ${res[1]} bytes for ${count} bits`);
    }
    const data = new Array<boolean>(count);
    for (let i = 0; i < count; i++) data[i] = ((res[2 + (i >> 3)]! >> (i & 7)) & 1) === 1;
    return { data };
  }

  /** A write whose answer must echo its address and count (FC15/16) or value (FC5/6). */
  private async echoed(pdu: Buffer, address: number, countOrValue: number): Promise<void> {
    const res = await this.send(pdu);
    if (res.length !== 5 || res.readUInt16BE(1) !== address || res.readUInt16BE(3) !== countOrValue) {
      throw new ModbusFrameError('Unexpected data error: the write answer does not echo its request');
    }
  }

  private pdu4(fc: number, a: number, b: number): Buffer {
    const pdu = Buffer.allocUnsafe(5);
    pdu[0] = fc;
    pdu.writeUInt16BE(a, 1);
    pdu.writeUInt16BE(b, 3);
    return pdu;
  }

  private async send(pdu: Buffer): Promise<Buffer> {
    if (this.released) throw new RtuLineClosedError('unit closed');
    const ctl = new AbortController();
    this.inFlight = ctl;
    try {
      return await this.line.request(this.unitId, pdu, this.deadlineMs, ctl.signal);
    } catch (err) {
      // Closing the unit aborts its request: the caller hears "closed", as from a closed port.
      if (ctl.signal.aborted) throw ctl.signal.reason;
      throw err;
    } finally {
      if (this.inFlight === ctl) this.inFlight = undefined;
    }
  }
}

/** The lines open in this process, by serial path: a port can be opened once. */
const lines = new Map<string, { line: RtuLine; units: Set<RtuUnitClient> }>();
/** Every path's counts since start, whichever line object made them (for /metrics). */
const countsByPath = new Map<string, RtuLineCounters>();

/**
 * `unitId` on the line at `settings.path`, opened (or joined) and ready: every unit naming the same
 * path shares one RtuLine. Units on one path must agree on its settings. Rejects when the port
 * cannot be opened.
 */
export async function openRtuUnit(
  settings: RtuSerialSettings,
  unitId: number,
  opts: RtuLineOptions = {},
): Promise<RtuUnitClient> {
  let entry = lines.get(settings.path);
  if (entry?.line.closed) {
    lines.delete(settings.path);
    entry = undefined;
  }
  if (!entry) {
    let counters = countsByPath.get(settings.path);
    if (!counters) {
      counters = newLineCounters();
      countsByPath.set(settings.path, counters);
    }
    const line = new RtuLine(settings, { ...opts, counters });
    entry = { line, units: new Set() };
    const e = entry;
    line.onClose(() => {
      if (lines.get(settings.path) === e) lines.delete(settings.path);
    });
    lines.set(settings.path, entry);
  } else {
    const have = entry.line.settings;
    const want = { baudRate: 19_200, parity: 'even', dataBits: 8, stopBits: 1, ...settings };
    const differs = (['baudRate', 'parity', 'dataBits', 'stopBits'] as const).filter(
      (k) => have[k] !== want[k],
    );
    if (differs.length > 0) {
      throw new DeviceError(
        ErrorCodes.DEVICE_UNREACHABLE,
        `${settings.path}/${unitId}`,
        `the line is open with other settings (${differs.map((k) => `${k} ${have[k]}, not ${want[k]}`).join('; ')}): ` +
          'units on one serial path must share baudRate, parity, dataBits and stopBits',
      );
    }
  }
  const { line, units } = entry;
  const unit = new RtuUnitClient(line, unitId, () => {
    units.delete(unit);
    if (units.size === 0) void line.close('its last unit closed');
  });
  units.add(unit);
  try {
    await line.open();
  } catch (err) {
    unit.close();
    throw err;
  }
  return unit;
}

/** The line open on `path` in this process, if any (for metrics and tests). */
export function rtuLineOn(path: string): RtuLine | undefined {
  return lines.get(path)?.line;
}

const OUTCOMES = ['answered', 'exception', 'timeout', 'garbage', 'abandoned'] as const;
const OUTCOME_FIELD = {
  answered: 'answers',
  exception: 'exceptions',
  timeout: 'timeouts',
  garbage: 'garbage',
  abandoned: 'abandoned',
} as const satisfies Record<(typeof OUTCOMES)[number], keyof RtuUnitCounters>;

/**
 * The shared lines' counts on `registry`, read when it is scraped: requests per line, slave id and
 * outcome (a `timeout` is that unit's deadline expiring on the line), and stray frames per line.
 */
export function registerRtuLineMetrics(registry: Registry): void {
  new Counter({
    name: 'coolctl_rtu_line_requests_total',
    help: 'Requests on a shared RS-485 line by slave id and outcome; timeout = the unit held the line for its whole deadline',
    labelNames: ['line', 'unit', 'outcome'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [path, c] of countsByPath) {
        for (const [unit, u] of c.units) {
          for (const outcome of OUTCOMES) {
            this.inc({ line: path, unit: String(unit), outcome }, u[OUTCOME_FIELD[outcome]]);
          }
        }
      }
    },
  });
  new Counter({
    name: 'coolctl_rtu_line_stray_frames_total',
    help: 'Answers on a shared RS-485 line that no request in flight asked for (a unit answering after its deadline)',
    labelNames: ['line'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [path, c] of countsByPath) this.inc({ line: path }, c.line.strayFrames);
    },
  });
}
