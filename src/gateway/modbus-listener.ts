// The gateway's Modbus TCP side: MBAP frames from controllers, each request handed to the gateway
// and answered with its own transaction id (answers may leave out of order: requests for units on
// different lines run side by side). Bad input costs at most its own connection: a stream that is
// not MBAP (protocol id ≠ 0, a length outside 2..254) or a frame left incomplete is counted, logged
// and closed; too many unanswered requests on one connection are answered 0x06 (busy).
// No connection holds a slot or memory it does not use, and clients that never speak, or speak once
// and sit, cannot keep a controller out (../util/connection-slots.ts): a connection proves itself
// with its first whole MBAP frame; a newcomer over maxConnections, or over its source address's
// share, takes the slot of the oldest connection that has not (a scanner's, an HMI's that never
// asks), else of the one idle longest — nothing in flight or half-read, no byte received for
// idleDisplaceAfterMs (a tool that asked once); either is closed and counted, and only when none is
// left is the newcomer closed. A busy connection is never displaced; one that sends no request for
// idleTimeoutMs is closed; while a connection's answers back up (its client does not read them)
// nothing more is read from it, and past maxBufferedBytes, or with no progress for idleTimeoutMs, it
// is closed. stop() is bounded and leaves no socket behind.
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { settlesWithin } from '../util/async.ts';
import { ConnectionSlots, type SlotBound } from '../util/connection-slots.ts';
import type { BadRequestReason } from './metrics.ts';

const MBAP_LEN = 7;
const MBAP_MIN_LENGTH = 2;
const MBAP_MAX_LENGTH = 254;
const STOP_DEADLINE_MS = 2_000;
/**
 * Answer bytes one connection may have waiting in the gateway. Reading stops at the socket's
 * high-water mark (64 KiB), which a controller — one request at a time, answers under 260 bytes —
 * never nears; what is already in flight then lands on top (at most maxInFlight answers).
 */
const MAX_BUFFERED_BYTES = 256 * 1024;

export interface ListenerOptions {
  host: string;
  port: number;
  /** Connections open at once; a newcomer over it displaces the oldest silent one, or is closed. */
  maxConnections: number;
  /** Connections one source address may hold (default: maxConnections); the same displacement, within the address. */
  maxConnectionsPerHost?: number;
  /** A connection with no request (and nothing in flight) for this long is closed. */
  idleTimeoutMs: number;
  /**
   * At a bound, a connection that has spoken, with nothing in flight and no byte received for this
   * long, gives its slot to a newcomer once no silent one is left (default: never).
   */
  idleDisplaceAfterMs?: number;
  /** An incomplete frame older than this closes its connection. */
  frameTimeoutMs?: number;
  /** Unanswered requests per connection; more are answered busy. */
  maxInFlight?: number;
  /** Answer bytes waiting for a client that does not read them; more closes the connection. */
  maxBufferedBytes?: number;
}

export interface ListenerHooks {
  handle: (unitId: number, pdu: Buffer, client: string) => Promise<Buffer> | Buffer;
  refuse: (reason: BadRequestReason, client: string, detail: string) => void;
  /** A connection closed for sending nothing for idleTimeoutMs. */
  idle: (client: string, detail: string) => void;
  connections: (open: number) => void;
}

interface Conn {
  socket: Socket;
  client: string;
  /** It has sent a whole MBAP frame: a Modbus client, whose slot no newcomer takes. */
  proven: boolean;
  rx: Buffer;
  frameTimer: NodeJS.Timeout | undefined;
  inFlight: number;
  /** Its answers are backed up: nothing is read or handed on until they drain. */
  held: boolean;
  /** Its last byte received or answer written (performance.now()): idle since then. */
  activeAtMs: number;
}

export class ModbusListener {
  private readonly opts: Required<ListenerOptions>;
  private readonly hooks: ListenerHooks;
  private readonly log: Logger;
  /** The open connections are the slots' own; this finds each one's state. */
  private readonly connOf = new WeakMap<Socket, Conn>();
  private readonly slots: ConnectionSlots;
  private server: Server | undefined;
  private stopping: Promise<void> | undefined;

  constructor(opts: ListenerOptions, hooks: ListenerHooks, log: Logger) {
    this.opts = {
      frameTimeoutMs: 2_000,
      maxInFlight: 16,
      maxBufferedBytes: MAX_BUFFERED_BYTES,
      maxConnectionsPerHost: opts.maxConnections,
      idleDisplaceAfterMs: Infinity,
      ...opts,
    };
    this.hooks = hooks;
    this.log = log.child({ component: 'modbus-listener' });
    // No bound of its own on silent connections: they may fill every slot nobody else needs, and
    // give each up to the next newcomer.
    this.slots = new ConnectionSlots(
      {
        maxOpen: this.opts.maxConnections,
        maxUnproven: this.opts.maxConnections,
        maxPerAddress: this.opts.maxConnectionsPerHost,
        displaceIdleAfterMs: this.opts.idleDisplaceAfterMs,
      },
      (socket) => {
        const c = this.connOf.get(socket);
        if (!c?.proven) return { proven: false };
        // A request being read, waiting for its answer, or an answer the client has not taken: busy.
        if (c.inFlight > 0 || c.rx.length > 0 || c.held) return { proven: true };
        return { proven: true, idleMs: performance.now() - c.activeAtMs };
      },
    );
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
      for (const socket of [...this.slots.sockets()]) {
        const c = this.connOf.get(socket);
        if (c) this.close(c);
        else socket.destroy();
      }
      if (server) await settlesWithin(new Promise<void>((r) => server.close(() => r())), STOP_DEADLINE_MS);
    })();
    return this.stopping;
  }

  private accept(socket: Socket): void {
    socket.on('error', () => undefined);
    const host = socket.remoteAddress;
    // No address: the peer is already gone.
    if (host === undefined) {
      socket.destroy();
      return;
    }
    const client = `${host}:${socket.remotePort}`;
    if (this.stopping) {
      this.hooks.refuse('too_many_connections', client, 'the listener is stopping');
      socket.destroy();
      return;
    }
    const admitted = this.slots.admit(socket);
    if (!admitted.admitted) {
      this.hooks.refuse(...this.turnedAway(admitted.bound, host, client));
      return;
    }
    for (const e of admitted.evicted) {
      const victim = this.connOf.get(e.socket);
      if (!victim) continue;
      this.forget(victim);
      const at = `its slot went to ${client}, at ${this.boundText(e.bound, e.address)}`;
      if (e.idleMs === undefined)
        this.hooks.refuse('silent_connection_evicted', victim.client, `sent no whole MBAP frame; ${at}`);
      else
        this.hooks.refuse(
          'idle_connection_evicted',
          victim.client,
          `nothing in flight and no byte received for ${Math.round(e.idleMs)} ms (idleDisplaceAfterMs ${this.opts.idleDisplaceAfterMs}); ${at}`,
        );
    }
    socket.setNoDelay(true);
    const conn: Conn = {
      socket,
      client,
      proven: false,
      rx: Buffer.alloc(0),
      frameTimer: undefined,
      inFlight: 0,
      held: false,
      activeAtMs: performance.now(),
    };
    this.connOf.set(socket, conn);
    this.hooks.connections(this.slots.size);
    socket.on('data', (chunk: Buffer) => this.onData(conn, chunk));
    socket.on('drain', () => this.onDrain(conn));
    // Node's own inactivity timer: any byte read or written, or a write the kernel is still taking,
    // counts as activity; nothing does while the connection is held and its client reads nothing.
    socket.setTimeout(this.opts.idleTimeoutMs);
    socket.on('timeout', () => this.onIdle(conn));
    socket.once('close', () => this.forget(conn));
  }

  /** Why a newcomer was closed: every slot it could take is held by a connection that has spoken and is busy or idle only briefly. */
  private turnedAway(bound: SlotBound, host: string, client: string): [BadRequestReason, string, string] {
    const { maxConnections, maxConnectionsPerHost } = this.opts;
    return bound === 'per-address'
      ? [
          'too_many_from_host',
          client,
          `${maxConnectionsPerHost} open from ${host}, each has sent a request${this.idleText()} (maxConnectionsPerHost ${maxConnectionsPerHost})`,
        ]
      : [
          'too_many_connections',
          client,
          `${maxConnections} open, each has sent a request${this.idleText()} (maxConnections ${maxConnections})`,
        ];
  }

  private idleText(): string {
    const ms = this.opts.idleDisplaceAfterMs;
    return Number.isFinite(ms) ? ` and none has been idle for idleDisplaceAfterMs ${ms}` : '';
  }

  /** The bound a newcomer met when it took a silent or idle connection's slot. */
  private boundText(bound: SlotBound, host: string): string {
    return bound === 'per-address'
      ? `maxConnectionsPerHost ${this.opts.maxConnectionsPerHost} from ${host}`
      : `maxConnections ${this.opts.maxConnections}`;
  }

  private close(c: Conn): void {
    c.socket.destroy();
    this.forget(c);
  }

  /** Gives back the connection's slot (the slots also do on 'close'), and says how many are left. */
  private forget(c: Conn): void {
    clearTimeout(c.frameTimer);
    this.slots.release(c.socket);
    this.hooks.connections(this.slots.size);
  }

  private onIdle(c: Conn): void {
    // A request still on the line: its answer, when written, is activity again.
    if (c.inFlight > 0) return;
    if (c.held)
      this.hooks.refuse(
        'slow_reader',
        c.client,
        `${c.socket.writableLength} bytes of answers unread for ${this.opts.idleTimeoutMs} ms`,
      );
    else this.hooks.idle(c.client, `no request for ${this.opts.idleTimeoutMs} ms`);
    this.close(c);
  }

  /** Answers backed up: read nothing more and hand on nothing already read until they drain. */
  private hold(c: Conn): void {
    if (c.held) return;
    c.held = true;
    c.socket.pause();
    // The rest of a frame cannot arrive while nothing is read: not the client's delay.
    clearTimeout(c.frameTimer);
    c.frameTimer = undefined;
  }

  private onDrain(c: Conn): void {
    if (!c.held || c.socket.destroyed) return;
    c.held = false;
    c.socket.resume();
    this.pump(c);
  }

  private onData(c: Conn, chunk: Buffer): void {
    c.activeAtMs = performance.now();
    c.rx = c.rx.length === 0 ? chunk : Buffer.concat([c.rx, chunk]);
    this.pump(c);
  }

  /** Hands on each complete frame received while the client takes its answers. */
  private pump(c: Conn): void {
    let framesTaken = 0;
    while (c.rx.length >= MBAP_LEN) {
      if (c.socket.writableNeedDrain) {
        this.hold(c);
        return;
      }
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
      framesTaken++;
      c.proven = true;
      this.request(c, tid, unitId, pdu);
      if (c.socket.destroyed) return;
    }
    if (c.rx.length === 0) {
      clearTimeout(c.frameTimer);
      c.frameTimer = undefined;
    } else if (framesTaken > 0 || !c.frameTimer) {
      // Timed from the frame's first byte: more bytes of the same frame do not buy it more time.
      clearTimeout(c.frameTimer);
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
    c.activeAtMs = performance.now();
    c.socket.write(frame);
    if (c.socket.writableLength > this.opts.maxBufferedBytes) {
      this.hooks.refuse(
        'slow_reader',
        c.client,
        `${c.socket.writableLength} bytes of answers unread (maxBufferedBytes ${this.opts.maxBufferedBytes})`,
      );
      this.close(c);
    } else if (c.socket.writableNeedDrain) this.hold(c);
  }
}
