// The simulator's Modbus TCP servers (a unit's, the TCP→RTU gateway's, the sensor gateway's) take
// connections here: MBAP framing with its partial-frame timeout (./mbap-stream.ts), an idle timeout,
// a bound on the answers a client leaves unread, and one counter and one rate-limited log line for
// each kind of drop. Each server keeps only what it does with a whole request (`onFrame`).
// The connection cap is the controller's gateway rule (../../src/util/connection-slots.ts): a
// newcomer at the cap takes the slot of the oldest connection that sent no whole frame, else of the
// one idle longest (idleDisplaceAfterMs), so silent clients never keep a controller out; a busy one
// is never displaced. Invariants: bad input, silence or a client that does not read costs at most
// its own connection; a closed connection holds no timer; close() is bounded and leaves no socket.
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { CoolctlError, ErrorCodes } from '../../src/errors.ts';
import { DEFAULT_IDLE_DISPLACE_AFTER_MS, DEFAULT_IDLE_TIMEOUT_MS } from '../../src/gateway/config.ts';
import { settlesWithin } from '../../src/util/async.ts';
import { ConnectionSlots } from '../../src/util/connection-slots.ts';
import type { RateLimitedLog } from '../../src/util/log-limit.ts';
import {
  DEFAULT_FRAME_TIMEOUT_MS,
  MBAP_HEADER_LEN,
  type MbapConnection,
  readMbapFrames,
} from './mbap-stream.ts';

export const DEFAULT_MAX_CONNECTIONS = 64;
/**
 * A connection with nothing in flight and no byte either way for this long is closed; a slot at the
 * cap goes to a newcomer after the other. The controller's fencing gateway's defaults, for the same
 * reason: a leader sends at least once per control period (at most 60 s), so its connections are
 * never dropped; a node that leads no group of the unit holds a silent one and reopens it at once.
 */
export const DEFAULT_MODBUS_IDLE_TIMEOUT_MS = DEFAULT_IDLE_TIMEOUT_MS;
export const DEFAULT_MODBUS_IDLE_DISPLACE_AFTER_MS = DEFAULT_IDLE_DISPLACE_AFTER_MS;
/** Unanswered requests a client may pipeline on one connection (a unit's queue, in ./modbus-server.ts). */
export const MAX_PIPELINED_REQUESTS = 32;
/**
 * Answer bytes one connection may leave unsent (the kernel's buffers already full): that many of the
 * longest answer (125 registers). Past it the client sends requests but does not read the answers.
 */
export const MAX_UNSENT_BYTES = MAX_PIPELINED_REQUESTS * (MBAP_HEADER_LEN + 2 + 2 * 125);
const CLOSE_DEADLINE_MS = 2_000;

/** What every server counts of its connections (names as `GET /sim/state` and the docs show them). */
export interface ModbusTcpCounters {
  connectionsAccepted: number;
  /** Closed at once: over the cap, not listening (down, offline) or stopping. */
  connectionsRejected: number;
  connectionsClosed: number;
  /** Nothing in flight and no byte either way for idleTimeoutMs: connection closed. */
  idleTimeouts: number;
  /** At the cap, a newcomer took its slot: it had sent no whole frame, or was idle idleDisplaceAfterMs. */
  connectionsDisplaced: number;
  /** Unframeable stream (protocol id ≠ 0, MBAP length out of 2..254): connection closed. */
  badFrames: number;
  frameTimeouts: number;
  /** A client that does not read its answers (or, at a unit, pipelines past its queue): closed. */
  pipelineOverflows: number;
  /** Resets and other errors of a client's socket: counted, never thrown. */
  socketErrors: number;
}

export function newModbusTcpCounters(): ModbusTcpCounters {
  return {
    connectionsAccepted: 0,
    connectionsRejected: 0,
    connectionsClosed: 0,
    idleTimeouts: 0,
    connectionsDisplaced: 0,
    badFrames: 0,
    frameTimeouts: 0,
    pipelineOverflows: 0,
    socketErrors: 0,
  };
}

/** What a server's options say of its TCP side. */
export interface ModbusTcpEndpointOptions {
  host: string;
  /** 0 lets the OS pick; start() says which, and a server taken down re-opens the same port. */
  port: number;
  /** A frame whose first byte arrived longer ago than this and is still incomplete closes its connection. */
  frameTimeoutMs?: number | undefined;
  /**
   * Concurrent connections (default DEFAULT_MAX_CONNECTIONS). One more takes the slot of the oldest
   * that sent no whole frame, else of the one idle longest past idleDisplaceAfterMs, else is closed.
   */
  maxConnections?: number | undefined;
  /** Nothing in flight, no byte either way for this long: closed (default DEFAULT_MODBUS_IDLE_TIMEOUT_MS). */
  idleTimeoutMs?: number | undefined;
  /** At the cap, a connection idle this long gives its slot to a newcomer (default DEFAULT_MODBUS_IDLE_DISPLACE_AFTER_MS). */
  idleDisplaceAfterMs?: number | undefined;
}

/** The bounds of the simulator's Modbus TCP listeners, as `SimulationOptions.modbusTcp` sets them. */
export type ModbusTcpBounds = Pick<
  ModbusTcpEndpointOptions,
  'maxConnections' | 'idleTimeoutMs' | 'idleDisplaceAfterMs' | 'frameTimeoutMs'
>;

/** One client connection; `state` is the server's own (a unit's request queue, a master's count). */
export interface ModbusTcpConnection<S> extends MbapConnection {
  /** `modbus:<address>:<port>`, as logs and the journal name the client. */
  readonly client: string;
  readonly state: S;
  /** It has sent a whole MBAP frame: a newcomer at the cap takes its slot only once it is idle. */
  proven: boolean;
  /** When its last byte arrived (performance.now()): with nothing in flight, idle since then. */
  activeAtMs: number;
}

export interface ModbusTcpListenerOptions<S> {
  endpoint: ModbusTcpEndpointOptions;
  /** Who is listening, as a startup error names it (`Modbus server for AHU-01`). */
  name: string;
  /** The setting that moves the port, for the error when it is taken. */
  portSetting: string;
  /** Who the server is in its log lines (`{ ahu }`, `{ gateway }`). */
  logFields: Record<string, unknown>;
  log: Logger;
  /** The server's own rate-limited log, so each kind of line keeps one rate per server. */
  warns: RateLimitedLog;
  counters: ModbusTcpCounters;
  /** Why a new connection is refused now besides the cap and stop() (`'unit offline'`), or undefined. */
  refusing?: () => string | undefined;
  newState(): S;
  /** Requests taken and not yet answered on the connection: it is busy, not idle. */
  inFlight?(conn: ModbusTcpConnection<S>): number;
  /**
   * One whole request frame: a view into the stream's buffer, so copy it to keep it past the call.
   * Returns false when it closed the connection (the rest of the stream is not read).
   */
  onFrame(conn: ModbusTcpConnection<S>, frame: Buffer): boolean;
  /** After every frame of one chunk was handed on, if the connection is still open. */
  onFramesRead?(conn: ModbusTcpConnection<S>): void;
  /** The connection is gone: drop what the server holds for it. */
  onClose?(conn: ModbusTcpConnection<S>): void;
}

export class ModbusTcpListener<S> {
  private readonly opts: ModbusTcpListenerOptions<S>;
  private readonly maxConnections: number;
  private readonly frameTimeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly idleDisplaceAfterMs: number;
  private readonly connections = new Set<ModbusTcpConnection<S>>();
  private readonly connOf = new WeakMap<Socket, ModbusTcpConnection<S>>();
  private readonly slots: ConnectionSlots;
  private server: Server | undefined;
  private boundPort = 0;
  private stopped = false;

  constructor(opts: ModbusTcpListenerOptions<S>) {
    this.opts = opts;
    this.maxConnections = opts.endpoint.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    this.frameTimeoutMs = opts.endpoint.frameTimeoutMs ?? DEFAULT_FRAME_TIMEOUT_MS;
    this.idleTimeoutMs = opts.endpoint.idleTimeoutMs ?? DEFAULT_MODBUS_IDLE_TIMEOUT_MS;
    this.idleDisplaceAfterMs = opts.endpoint.idleDisplaceAfterMs ?? DEFAULT_MODBUS_IDLE_DISPLACE_AFTER_MS;
    // No share per address: the simulator's clients are controllers, tests and tools on one host.
    this.slots = new ConnectionSlots(
      {
        maxOpen: this.maxConnections,
        maxUnproven: this.maxConnections,
        maxPerAddress: this.maxConnections,
        displaceIdleAfterMs: this.idleDisplaceAfterMs,
      },
      (socket) => {
        const c = this.connOf.get(socket);
        if (!c?.proven) return { proven: false };
        if (this.busy(c)) return { proven: true };
        return { proven: true, idleMs: performance.now() - c.activeAtMs };
      },
    );
  }

  /** A request being read, waiting for its answer, or an answer the client has not taken. */
  private busy(c: ModbusTcpConnection<S>): boolean {
    return (this.opts.inFlight?.(c) ?? 0) > 0 || c.buffer.length > 0 || c.socket.writableLength > 0;
  }

  /** The bound port (0 before the first listen); listening again after close() uses it. */
  get port(): number {
    return this.boundPort;
  }

  get listening(): boolean {
    return this.server !== undefined;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Binds host:port (0: the OS picks); rejects with COOLCTL_E_STARTUP saying what to fix. */
  listen(port: number): Promise<number> {
    const { name, portSetting, log, logFields } = this.opts;
    const { host } = this.opts.endpoint;
    const server = createServer((socket) => this.accept(socket));
    return new Promise<number>((resolve, reject) => {
      server.once('error', (err) =>
        reject(
          new CoolctlError(
            ErrorCodes.STARTUP,
            `${name} cannot listen on ${host}:${port}: ${err.message} (free the port or change ${portSetting})`,
            { cause: err },
          ),
        ),
      );
      server.listen(port, host, () => {
        server.removeAllListeners('error');
        server.on('error', (err) => log.error({ err, ...logFields }, 'modbus listener error'));
        const address = server.address();
        this.boundPort = typeof address === 'object' && address ? address.port : port;
        this.server = server;
        resolve(this.boundPort);
      });
    });
  }

  /**
   * Stops listening and drops every connection (clients then see ECONNREFUSED). Resolves true once
   * the listener has closed, false if it did not within the deadline (it is abandoned, and said so).
   */
  async close(why: string): Promise<boolean> {
    const server = this.server;
    this.server = undefined;
    if (this.connections.size > 0) {
      this.opts.log.info(
        { ...this.opts.logFields, connections: this.connections.size, why },
        'closing modbus connections',
      );
    }
    for (const conn of [...this.connections]) this.closeConnection(conn);
    if (!server) return true;
    const closed = await settlesWithin(
      new Promise<void>((resolve) => server.close(() => resolve())),
      CLOSE_DEADLINE_MS,
    );
    if (!closed)
      this.opts.log.warn(this.opts.logFields, 'modbus listener did not close in time; abandoning it');
    return closed;
  }

  /** For good: refuses every connection from now on, then close(). */
  stop(): Promise<boolean> {
    this.stopped = true;
    return this.close('server stopping');
  }

  /** Idempotent; the socket goes at once, with whatever it had not yet sent. */
  closeConnection(conn: ModbusTcpConnection<S>): void {
    if (conn.closed) return;
    conn.closed = true;
    clearTimeout(conn.frameTimer);
    conn.frameTimer = undefined;
    conn.buffer = Buffer.alloc(0);
    this.connections.delete(conn);
    this.slots.release(conn.socket);
    this.opts.counters.connectionsClosed++;
    this.opts.onClose?.(conn);
    conn.socket.destroy();
  }

  private accept(socket: Socket): void {
    const { counters, log, logFields, warns } = this.opts;
    socket.on('error', (err) => {
      counters.socketErrors++;
      log.debug({ ...logFields, err: err.message }, 'modbus socket error');
    });
    const refuse = (refusal: string): void => {
      counters.connectionsRejected++;
      warns.warn(
        'rejected',
        { ...logFields, connections: this.connections.size, maxConnections: this.maxConnections, refusal },
        `modbus connection closed at once (${refusal})`,
      );
      socket.destroy();
    };
    const refusal = this.stopped
      ? 'server stopping'
      : !this.server
        ? 'not listening'
        : this.opts.refusing?.();
    if (refusal) {
      refuse(refusal);
      return;
    }
    const admitted = this.slots.admit(socket);
    if (!admitted.admitted) {
      refuse(
        `connection cap reached: each of the ${this.maxConnections} has sent a request and is busy or idle under ${this.idleDisplaceAfterMs} ms`,
      );
      return;
    }
    const client = `modbus:${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    for (const e of admitted.evicted) {
      const victim = this.connOf.get(e.socket);
      counters.connectionsDisplaced++;
      warns.warn(
        'displaced',
        {
          ...logFields,
          client: victim?.client,
          newcomer: client,
          maxConnections: this.maxConnections,
          ...(e.idleMs === undefined ? {} : { idleMs: Math.round(e.idleMs) }),
        },
        e.idleMs === undefined
          ? 'modbus connection closed: it sent no whole request, and a newcomer needed its slot at the connection cap'
          : 'modbus connection closed: idle, and a newcomer needed its slot at the connection cap',
      );
      if (victim) this.closeConnection(victim);
    }
    counters.connectionsAccepted++;
    socket.setNoDelay(true);
    const conn: ModbusTcpConnection<S> = {
      socket,
      client,
      buffer: Buffer.alloc(0),
      frameTimer: undefined,
      closed: false,
      state: this.opts.newState(),
      proven: false,
      activeAtMs: performance.now(),
    };
    this.connections.add(conn);
    this.connOf.set(socket, conn);
    socket.on('data', (chunk: Buffer) => this.onData(conn, chunk));
    socket.on('close', () => this.closeConnection(conn));
    // Node's inactivity timer: a byte read or written, or a write the kernel is still taking, is
    // activity. A half frame with nothing after it is idle too (its frame timer may be longer).
    socket.setTimeout(this.idleTimeoutMs);
    socket.on('timeout', () => this.onIdle(conn));
  }

  private onIdle(conn: ModbusTcpConnection<S>): void {
    if (conn.closed) return;
    // A request still being served (a slow unit, a busy line): its answer is activity again.
    if ((this.opts.inFlight?.(conn) ?? 0) > 0) return;
    const { counters, warns, logFields } = this.opts;
    counters.idleTimeouts++;
    // info: a controller node that leads none of the unit's groups holds a silent connection, and
    // opens a new one at once; that is ordinary, not a client misbehaving.
    warns.info(
      'idle-timeout',
      {
        ...logFields,
        client: conn.client,
        idleTimeoutMs: this.idleTimeoutMs,
        ...(conn.buffer.length > 0 ? { partialFrameBytes: conn.buffer.length } : {}),
      },
      'modbus connection closed: no request within the idle timeout',
    );
    this.closeConnection(conn);
  }

  private onData(conn: ModbusTcpConnection<S>, chunk: Buffer): void {
    const { counters, warns, logFields } = this.opts;
    conn.activeAtMs = performance.now();
    readMbapFrames(conn, chunk, {
      counters,
      warns,
      logFields,
      frameTimeoutMs: this.frameTimeoutMs,
      close: (c) => this.closeConnection(c),
      onFrame: (c, frame) => {
        // Answers are written as they are made; a client that keeps sending but never reads them
        // would otherwise grow our send buffer without bound once the kernel's is full.
        if (c.socket.writableLength > MAX_UNSENT_BYTES) {
          counters.pipelineOverflows++;
          warns.warn(
            'unread-answers',
            { ...logFields, client: c.client, unsentBytes: c.socket.writableLength },
            'modbus client sends more requests than it reads answers; closing the connection',
          );
          this.closeConnection(c);
          return false;
        }
        c.proven = true;
        return this.opts.onFrame(c, frame);
      },
    });
    if (!conn.closed) this.opts.onFramesRead?.(conn);
  }
}
