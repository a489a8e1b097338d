// The gateway's end of an RS-485 line: a Modbus RTU master (address + PDU + CRC-16) on a serial
// port. One request at a time; its answer is cut by length (from the function code and byte count)
// and must carry the address asked, the function asked and a good CRC. A late answer of a unit that
// timed out is recognised by its address and dropped, so it never answers the next unit's request.
// Between frames the line stays silent for 3.5 characters, as RTU requires.
import { SerialPort } from 'serialport';
import { interFrameGapMs, rtuCrcOk, rtuFrame } from '../devices/modbus/rtu-frame.ts';
import { CoolctlError, ErrorCodes } from '../errors.ts';
import { settlesWithin } from '../util/async.ts';
import { answerMatches, answerPduLength, type Transport, type TransportOutcome } from './transport.ts';

export interface RtuOptions {
  path: string;
  baudRate: number;
  parity: 'none' | 'even' | 'odd';
  dataBits: 7 | 8;
  stopBits: 1 | 2;
}

/** Address + 253-byte PDU + CRC. */
const MAX_RTU_FRAME = 256;
/**
 * Silence that ends an answer cut short (a corrupted byte count, a unit that broke off): the line
 * is free again then, not at the deadline. Far longer than RTU's 3.5 characters, because a pty or
 * a USB adapter delivers bytes in bursts.
 */
const INCOMPLETE_GAP_MS = 50;
/** A line that went away (an adapter unplugged) is reopened by the next request, at most this often. */
const REOPEN_INTERVAL_MS = 1_000;
const CLOSE_DEADLINE_MS = 2_000;

interface Pending {
  unitId: number;
  request: Buffer;
  settle: (o: TransportOutcome) => void;
}

export class RtuTransport implements Transport {
  readonly endpoint: string;
  /** Bytes that arrived with no request waiting, or from another address: dropped. */
  strayBytes = 0;
  /**
   * Whole frames (good CRC) from another address while a request waited: a late answer, or a unit
   * at an address the config does not say — the gateway counts and logs them, as the request alone
   * would end as a plain timeout.
   */
  readonly strays = { frames: 0, lastAddress: 0 };
  private readonly opts: RtuOptions;
  private readonly gapMs: number;
  private port: SerialPort | undefined;
  private rx: Buffer = Buffer.alloc(0);
  private gapTimer: NodeJS.Timeout | undefined;
  private pending: Pending | undefined;
  private lastTrafficMs = 0;
  private closed = false;
  private lastOpenTryMs = Number.NEGATIVE_INFINITY;
  private lastOpenError = '';

  constructor(opts: RtuOptions) {
    this.opts = opts;
    this.endpoint = `serial:${opts.path}`;
    this.gapMs = interFrameGapMs(opts.baudRate);
  }

  get usable(): boolean {
    return !!this.port?.isOpen;
  }

  async open(): Promise<void> {
    const port = new SerialPort({ ...this.opts, autoOpen: false });
    await new Promise<void>((resolve, reject) =>
      port.open((err) =>
        err
          ? reject(
              new CoolctlError(
                ErrorCodes.STARTUP,
                `cannot open the serial line ${this.opts.path}: ${err.message} (check lines[].serial.path and the dialout group)`,
                {
                  cause: err,
                },
              ),
            )
          : resolve(),
      ),
    );
    // A port error (an adapter unplugged) fails the request in flight; `usable` then says false.
    port.on('error', () => this.fail({ kind: 'unavailable', reason: 'serial port error' }));
    port.on('close', () => this.fail({ kind: 'unavailable', reason: 'serial port closed' }));
    port.on('data', (chunk: Buffer) => this.onData(chunk));
    this.port = port;
  }

  /** Opens the line again after it went away; false (and why, in lastOpenError) when it cannot yet. */
  private async reopen(): Promise<boolean> {
    const now = performance.now();
    if (now - this.lastOpenTryMs < REOPEN_INTERVAL_MS) return false;
    this.lastOpenTryMs = now;
    const old = this.port;
    this.port = undefined;
    if (old) {
      old.removeAllListeners();
      old.on('error', () => undefined);
      if (old.isOpen) old.close(() => undefined);
    }
    try {
      await this.open();
      return !this.closed;
    } catch (err) {
      this.lastOpenError = (err as Error).message;
      return false;
    }
  }

  async transact(unitId: number, pdu: Buffer, timeoutMs: number): Promise<TransportOutcome> {
    if (this.closed) return { kind: 'unavailable', reason: 'gateway stopping' };
    if (this.pending) throw new Error('RtuTransport: one request at a time');
    if (!this.port?.isOpen && !(await this.reopen())) {
      return {
        kind: 'unavailable',
        reason: `serial line ${this.opts.path} is not open (${this.lastOpenError || 'closed'})`,
      };
    }
    const port = this.port!;
    const quietMs = this.lastTrafficMs + this.gapMs - performance.now();
    if (quietMs > 0) await new Promise((r) => setTimeout(r, quietMs));
    const frame = rtuFrame(unitId, pdu);
    this.rx = Buffer.alloc(0);
    return new Promise<TransportOutcome>((resolve) => {
      const timer = setTimeout(() => settle({ kind: 'timeout' }), timeoutMs);
      const settle = (o: TransportOutcome): void => {
        if (this.pending !== p) return;
        this.pending = undefined;
        clearTimeout(timer);
        clearTimeout(this.gapTimer);
        resolve(o);
      };
      const p: Pending = { unitId, request: pdu, settle };
      this.pending = p;
      this.lastTrafficMs = performance.now();
      port.write(frame);
    });
  }

  close(): Promise<void> {
    this.closed = true;
    this.fail({ kind: 'unavailable', reason: 'gateway stopping' });
    const port = this.port;
    this.port = undefined;
    if (!port?.isOpen) return Promise.resolve();
    return settlesWithin(new Promise<void>((r) => port.close(() => r())), CLOSE_DEADLINE_MS).then(
      () => undefined,
    );
  }

  private fail(o: TransportOutcome): void {
    this.pending?.settle(o);
  }

  private onData(chunk: Buffer): void {
    this.lastTrafficMs = performance.now();
    const p = this.pending;
    if (!p) {
      this.strayBytes += chunk.length;
      return;
    }
    this.rx = this.rx.length === 0 ? chunk : Buffer.concat([this.rx, chunk]);
    this.cutFrames(p);
    clearTimeout(this.gapTimer);
    if (this.pending === p && this.rx.length > 0) {
      this.gapTimer = setTimeout(() => {
        const n = this.rx.length;
        this.rx = Buffer.alloc(0);
        p.settle({ kind: 'garbage', reason: `an incomplete answer (${n} bytes), then silence` });
      }, INCOMPLETE_GAP_MS);
    }
  }

  private cutFrames(p: Pending): void {
    for (;;) {
      if (this.rx.length < 2) return;
      const addr = this.rx[0]!;
      // A frame of another address is a late answer to an earlier request: its length is read with
      // its own function code, then it is skipped.
      const fc = addr === p.unitId ? p.request[0]! : this.rx[1]! & 0x7f;
      const pduLen = answerPduLength(fc, this.rx.subarray(1));
      if (pduLen === undefined) return;
      if (pduLen < 0 || pduLen + 3 > MAX_RTU_FRAME) {
        const got = this.rx[1];
        this.rx = Buffer.alloc(0);
        p.settle({ kind: 'garbage', reason: `function ${got} does not answer function ${p.request[0]}` });
        return;
      }
      const len = pduLen + 3;
      if (this.rx.length < len) return;
      const frame = this.rx.subarray(0, len);
      this.rx = this.rx.subarray(len);
      if (!rtuCrcOk(frame)) {
        this.rx = Buffer.alloc(0);
        p.settle({ kind: 'garbage', reason: 'bad CRC' });
        return;
      }
      if (addr !== p.unitId) {
        this.strayBytes += len;
        this.strays.frames++;
        this.strays.lastAddress = addr;
        continue;
      }
      const answer = Buffer.from(frame.subarray(1, -2));
      if (!answerMatches(p.request, answer)) {
        p.settle({ kind: 'garbage', reason: 'the answer does not match the request (length or echo)' });
        return;
      }
      p.settle({ kind: 'answer', pdu: answer });
      return;
    }
  }
}
