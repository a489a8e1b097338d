// The gateway's end of a Modbus TCP link to units that cannot check epochs (a unit's own TCP port,
// or a TCP→RTU gateway with many unit ids behind it). One connection, opened on demand within the
// request's deadline; one request at a time, matched by transaction id and unit id. A request that
// times out destroys the connection: its late answer must never pair with the next request.
import { connect, type Socket } from 'node:net';
import { answerMatches, type Transport, type TransportOutcome } from './transport.ts';

const MBAP_LEN = 7;
const MAX_MBAP_LENGTH = 254;

interface Pending {
  tid: number;
  unitId: number;
  request: Buffer;
  settle: (o: TransportOutcome) => void;
}

export class TcpTransport implements Transport {
  readonly endpoint: string;
  private readonly host: string;
  private readonly port: number;
  private socket: Socket | undefined;
  private rx: Buffer = Buffer.alloc(0);
  private tid = 0;
  private pending: Pending | undefined;
  private closed = false;
  /** Whether the last connect or request reached the far end (for health). */
  private reachable = true;

  constructor(host: string, port: number) {
    this.host = host;
    this.port = port;
    this.endpoint = `tcp:${host}:${port}`;
  }

  get usable(): boolean {
    return !this.closed && this.reachable;
  }

  /** Connects lazily: a unit that is down at start is a line fault, not a start-up failure. */
  async open(): Promise<void> {}

  async transact(unitId: number, pdu: Buffer, timeoutMs: number): Promise<TransportOutcome> {
    if (this.closed) return { kind: 'unavailable', reason: 'gateway stopping' };
    if (this.pending) throw new Error('TcpTransport: one request at a time');
    const deadline = performance.now() + timeoutMs;
    let socket = this.socket;
    if (!socket || socket.destroyed) {
      const s = await this.connect(timeoutMs);
      if (!('socket' in s)) return s;
      socket = s.socket;
    }
    const remaining = deadline - performance.now();
    if (remaining <= 0) return { kind: 'timeout' };
    this.tid = (this.tid + 1) & 0xffff;
    const frame = Buffer.alloc(MBAP_LEN + pdu.length);
    frame.writeUInt16BE(this.tid, 0);
    frame.writeUInt16BE(0, 2);
    frame.writeUInt16BE(pdu.length + 1, 4);
    frame[6] = unitId;
    pdu.copy(frame, MBAP_LEN);
    this.rx = Buffer.alloc(0);
    const s = socket;
    return new Promise<TransportOutcome>((resolve) => {
      const timer = setTimeout(() => {
        settle({ kind: 'timeout' });
        s.destroy();
      }, remaining);
      const settle = (o: TransportOutcome): void => {
        if (this.pending !== p) return;
        this.pending = undefined;
        clearTimeout(timer);
        resolve(o);
      };
      const p: Pending = { tid: this.tid, unitId, request: pdu, settle };
      this.pending = p;
      s.write(frame);
    });
  }

  close(): Promise<void> {
    this.closed = true;
    this.pending?.settle({ kind: 'unavailable', reason: 'gateway stopping' });
    this.socket?.destroy();
    this.socket = undefined;
    return Promise.resolve();
  }

  private connect(timeoutMs: number): Promise<{ socket: Socket } | TransportOutcome> {
    return new Promise((resolve) => {
      const socket = connect({ host: this.host, port: this.port });
      const timer = setTimeout(() => {
        socket.destroy();
        this.reachable = false;
        resolve({ kind: 'timeout' });
      }, timeoutMs);
      socket.once('error', (err) => {
        clearTimeout(timer);
        socket.destroy();
        this.reachable = false;
        resolve({
          kind: 'unavailable',
          reason: `${this.endpoint}: ${(err as NodeJS.ErrnoException).code ?? err.message}`,
        });
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        this.reachable = true;
        socket.setNoDelay(true);
        socket.on('error', () => undefined);
        socket.on('data', (chunk: Buffer) => this.onData(socket, chunk));
        socket.once('close', () => {
          if (this.socket === socket) this.socket = undefined;
          this.pending?.settle({ kind: 'unavailable', reason: `${this.endpoint}: connection closed` });
        });
        this.socket = socket;
        resolve({ socket });
      });
    });
  }

  private onData(socket: Socket, chunk: Buffer): void {
    const p = this.pending;
    if (!p || socket !== this.socket) return;
    this.rx = this.rx.length === 0 ? chunk : Buffer.concat([this.rx, chunk]);
    if (this.rx.length < MBAP_LEN) return;
    const length = this.rx.readUInt16BE(4);
    if (this.rx.readUInt16BE(2) !== 0 || length < 3 || length > MAX_MBAP_LENGTH) {
      p.settle({ kind: 'garbage', reason: 'not an MBAP frame' });
      socket.destroy();
      return;
    }
    if (this.rx.length < 6 + length) return;
    const tid = this.rx.readUInt16BE(0);
    const unit = this.rx[6]!;
    const answer = Buffer.from(this.rx.subarray(MBAP_LEN, 6 + length));
    this.rx = Buffer.alloc(0);
    if (tid !== p.tid || unit !== p.unitId || !answerMatches(p.request, answer)) {
      p.settle({
        kind: 'garbage',
        reason: `answer (transaction ${tid}, unit ${unit}) does not match the request`,
      });
      socket.destroy();
      return;
    }
    this.reachable = true;
    p.settle({ kind: 'answer', pdu: answer });
  }
}
