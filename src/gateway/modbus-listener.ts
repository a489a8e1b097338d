// The gateway's Modbus TCP side: MBAP frames from controllers, each request handed to the gateway
// and answered with its own transaction id (answers may leave out of order: requests for units on
// different lines run side by side). Bad input costs at most its own connection: a stream that is
// not MBAP (protocol id ≠ 0, a length outside 2..254) or a frame left incomplete is counted, logged
// and closed; a connection over the cap is closed at once; too many unanswered requests on one
// connection are answered 0x06 (busy). stop() is bounded and leaves no socket behind.
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { settlesWithin } from '../util/async.ts';
import type { BadRequestReason } from './metrics.ts';

const MBAP_LEN = 7;
const MBAP_MIN_LENGTH = 2;
const MBAP_MAX_LENGTH = 254;
const STOP_DEADLINE_MS = 2_000;

export interface ListenerOptions {
  host: string;
  port: number;
  maxConnections: number;
  /** An incomplete frame older than this closes its connection. */
  frameTimeoutMs?: number;
  /** Unanswered requests per connection; more are answered busy. */
  maxInFlight?: number;
}

export interface ListenerHooks {
  handle: (unitId: number, pdu: Buffer, client: string) => Promise<Buffer> | Buffer;
  refuse: (reason: BadRequestReason, client: string, detail: string) => void;
  connections: (open: number) => void;
}

interface Conn {
  socket: Socket;
  client: string;
  rx: Buffer;
  frameTimer: NodeJS.Timeout | undefined;
  inFlight: number;
}

export class ModbusListener {
  private readonly opts: Required<ListenerOptions>;
  private readonly hooks: ListenerHooks;
  private readonly log: Logger;
  private readonly conns = new Set<Conn>();
  private server: Server | undefined;
  private stopping: Promise<void> | undefined;

  constructor(opts: ListenerOptions, hooks: ListenerHooks, log: Logger) {
    this.opts = { frameTimeoutMs: 2_000, maxInFlight: 16, ...opts };
    this.hooks = hooks;
    this.log = log.child({ component: 'modbus-listener' });
  }

  /** Binds; resolves with the bound address (port 0 picks a free one). */
  start(): Promise<{ host: string; port: number }> {
    const server = createServer((socket) => this.accept(socket));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', reject);
        server.on('error', (err) => this.log.error({ err }, 'modbus listener error'));
        const a = server.address();
        resolve({ host: this.opts.host, port: typeof a === 'object' && a ? a.port : this.opts.port });
      });
    });
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const server = this.server;
      for (const c of this.conns) this.close(c);
      if (server) await settlesWithin(new Promise<void>((r) => server.close(() => r())), STOP_DEADLINE_MS);
    })();
    return this.stopping;
  }

  private accept(socket: Socket): void {
    const client = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.on('error', () => undefined);
    if (this.stopping || this.conns.size >= this.opts.maxConnections) {
      this.hooks.refuse(
        'too_many_connections',
        client,
        `${this.conns.size} open (maxConnections ${this.opts.maxConnections})`,
      );
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    const conn: Conn = { socket, client, rx: Buffer.alloc(0), frameTimer: undefined, inFlight: 0 };
    this.conns.add(conn);
    this.hooks.connections(this.conns.size);
    socket.on('data', (chunk: Buffer) => this.onData(conn, chunk));
    socket.once('close', () => {
      clearTimeout(conn.frameTimer);
      if (this.conns.delete(conn)) this.hooks.connections(this.conns.size);
    });
  }

  private close(c: Conn): void {
    clearTimeout(c.frameTimer);
    c.socket.destroy();
    if (this.conns.delete(c)) this.hooks.connections(this.conns.size);
  }

  private onData(c: Conn, chunk: Buffer): void {
    c.rx = c.rx.length === 0 ? chunk : Buffer.concat([c.rx, chunk]);
    while (c.rx.length >= MBAP_LEN) {
      const protocol = c.rx.readUInt16BE(2);
      const length = c.rx.readUInt16BE(4);
      if (protocol !== 0 || length < MBAP_MIN_LENGTH || length > MBAP_MAX_LENGTH) {
        // Nothing after a broken header can be trusted to start a frame: drop the connection.
        this.hooks.refuse(
          length > MBAP_MAX_LENGTH && protocol === 0 ? 'oversized_frame' : 'malformed_frame',
          c.client,
          `MBAP header protocol ${protocol}, length ${length} (protocol 0, length 2..254)`,
        );
        this.close(c);
        return;
      }
      if (c.rx.length < 6 + length) break;
      const tid = c.rx.readUInt16BE(0);
      const unitId = c.rx[6]!;
      const pdu = Buffer.from(c.rx.subarray(MBAP_LEN, 6 + length));
      c.rx = c.rx.subarray(6 + length);
      this.request(c, tid, unitId, pdu);
    }
    clearTimeout(c.frameTimer);
    c.frameTimer = undefined;
    if (c.rx.length > 0) {
      c.frameTimer = setTimeout(() => {
        this.hooks.refuse(
          'frame_timeout',
          c.client,
          `${c.rx.length} bytes of an incomplete frame for ${this.opts.frameTimeoutMs} ms`,
        );
        this.close(c);
      }, this.opts.frameTimeoutMs);
    }
  }

  private request(c: Conn, tid: number, unitId: number, pdu: Buffer): void {
    if (c.inFlight >= this.opts.maxInFlight) {
      this.hooks.refuse('busy', c.client, `${c.inFlight} requests unanswered on one connection`);
      this.answer(c, tid, unitId, Buffer.from([(pdu[0]! | 0x80) & 0xff, 0x06]));
      return;
    }
    c.inFlight++;
    void Promise.resolve(this.hooks.handle(unitId, pdu, c.client)).then(
      (answer) => {
        c.inFlight--;
        this.answer(c, tid, unitId, answer);
      },
      (err: unknown) => {
        // handle() never rejects; if it ever did, the client still gets an answer (04).
        c.inFlight--;
        this.log.error({ err, client: c.client }, 'request handler failed');
        this.answer(c, tid, unitId, Buffer.from([(pdu[0]! | 0x80) & 0xff, 0x04]));
      },
    );
  }

  private answer(c: Conn, tid: number, unitId: number, pdu: Buffer): void {
    if (c.socket.destroyed) return;
    const frame = Buffer.alloc(MBAP_LEN + pdu.length);
    frame.writeUInt16BE(tid, 0);
    frame.writeUInt16BE(0, 2);
    frame.writeUInt16BE(pdu.length + 1, 4);
    frame[6] = unitId;
    pdu.copy(frame, MBAP_LEN);
    c.socket.write(frame);
  }
}
