// The simulator's embedded MQTT broker (aedes): where the simulated gateways publish node reports and
// where controllers subscribe. Plain TCP by default; optionally a TLS listener and/or one required
// user whose password comes from a file. Invariants: `close()` always finishes — it destroys every
// open connection instead of waiting for clients to leave; no password appears in a URL, log or error.
// The broker runs on a thread of its own (broker-thread.ts), as a real broker is a process of its
// own: one 200 MB publish held aedes ~1 s per copy it parsed and sent, and on the simulator's one
// event loop every simulated unit stopped answering meanwhile, so every leader rightly gave up its
// group (the mqtt-oversized chaos trial) for the simulator's sake, not the controllers'.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { resolve } from 'node:path';
import tls from 'node:tls';
import { Worker } from 'node:worker_threads';
import { Aedes, type AuthenticateError } from 'aedes';
import type { Logger } from 'pino';
import { CoolctlError, type ErrorCode, ErrorCodes } from '../../src/errors.ts';

/** Where the secured broker's material is; every path is read once at start, never logged beyond its name. */
export interface BrokerSecurityFiles {
  /** PEM certificate of the TLS listener (SAN must cover the address clients dial, e.g. IP:127.0.0.1). */
  certFile?: string | undefined;
  keyFile?: string | undefined;
  /**
   * PEM CA the simulated gateways check the broker's certificate against; without it they trust
   * `certFile` itself, which only works for a self-signed certificate.
   */
  caFile?: string | undefined;
  /** The one user the broker accepts; with it anonymous clients are refused. */
  username?: string | undefined;
  /** File holding that user's password (one line; a trailing newline is not part of it). */
  passwordFile?: string | undefined;
}

/** The material read from `BrokerSecurityFiles`: what the listener serves and what its gateways dial with. */
export interface BrokerSecurity {
  tls?: { cert: Buffer; key: Buffer; ca: Buffer } | undefined;
  auth?: { username: string; password: string } | undefined;
}

export interface BrokerCounters {
  /** CONNECTs refused with "bad username or password" (anonymous or wrong credentials). */
  authRefused: number;
  /** Connections that never completed a TLS handshake (plain MQTT to the TLS port, untrusted client, probe). */
  tlsRefused: number;
  /** Clients disconnected because they did not read what was sent to them (MAX_CLIENT_BACKLOG_BYTES). */
  slowClientsDropped: number;
  /** Connections closed at once because MAX_BROKER_CONNECTIONS were open. */
  connectionsRefused: number;
}

export interface BrokerOptions {
  host: string;
  /** 0 lets the OS pick; the handle's `url` and `port` tell which one it picked. */
  port: number;
  security?: BrokerSecurity | undefined;
  /** The caller's counters, so they survive a broker restart; a fresh set otherwise. */
  counters?: BrokerCounters | undefined;
  logger?: Logger | undefined;
  /** Unread bytes a client may leave the broker holding before it is disconnected; MAX_CLIENT_BACKLOG_BYTES. */
  maxBacklogBytes?: number | undefined;
  /** Connections held at once; MAX_BROKER_CONNECTIONS. */
  maxConnections?: number | undefined;
}

export interface BrokerHandle {
  /** `mqtt://HOST:PORT` (or `mqtts://` with TLS) with the port actually bound; never credentials. */
  readonly url: string;
  readonly port: number;
  readonly counters: BrokerCounters;
  close(): Promise<void>;
}

const CLOSE_DEADLINE_MS = 3000;
/**
 * Bytes the broker holds for one client that has not read them; past that it is disconnected.
 * aedes waits for a full client before it delivers the next message to anyone, and queues what
 * arrives meanwhile: one subscriber that stopped reading (a paused process, a hostile client)
 * stalled delivery to every controller and grew the simulator by 4.6 GB in 20 s under a 64 KiB
 * flood, and letting the queue go then overflowed the stack. So aedes is never told a client is
 * full; this bound is the back-pressure. Checked before each write, so one packet of any size is
 * still sent to a client that is keeping up (the 200 MB chaos message).
 */
export const MAX_CLIENT_BACKLOG_BYTES = 64 * 1024 * 1024;
/**
 * Connections the broker holds at once; one more is closed at once. It shares the simulator's
 * process and file descriptors with every simulated unit: connections that send nothing are held
 * for aedes' 30 s connect timeout, and enough of them would leave no descriptor for a unit's.
 */
export const MAX_BROKER_CONNECTIONS = 1024;
/** At most one "connection refused: too many" line in this long. */
const REFUSAL_LOG_EVERY_MS = 10_000;
/** MQTT 3.1.1 CONNACK return code 4 (MQTT 5 maps it to 0x86). */
const BAD_USERNAME_OR_PASSWORD = 4;

/**
 * Reads what `files` names. Half-given pairs (certificate without key, user without password file)
 * are refused: a broker that silently stays plain or anonymous is the failure this option exists to
 * prevent. Errors name the path and the OS reason, never the file's content.
 */
export async function loadBrokerSecurity(files: BrokerSecurityFiles): Promise<BrokerSecurity> {
  const problems: string[] = [];
  if ((files.certFile === undefined) !== (files.keyFile === undefined))
    problems.push('the broker certificate and key go together (both, or neither)');
  if ((files.username === undefined) !== (files.passwordFile === undefined))
    problems.push('the broker username and password file go together (both, or neither)');
  if (files.caFile !== undefined && files.certFile === undefined)
    problems.push('a broker CA file is only used with a broker certificate and key');
  if (files.username !== undefined && files.username.length === 0)
    problems.push('the broker username is empty');
  if (problems.length > 0)
    throw new CoolctlError(ErrorCodes.STARTUP, `MQTT broker security: ${problems.join('; ')}`);
  const read = async (what: string, path: string): Promise<Buffer> => {
    try {
      return await readFile(resolve(path));
    } catch (err) {
      throw new CoolctlError(
        ErrorCodes.STARTUP,
        `MQTT broker ${what} ${resolve(path)} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
        { cause: err },
      );
    }
  };
  const security: BrokerSecurity = {};
  if (files.certFile !== undefined && files.keyFile !== undefined) {
    const cert = await read('certificate', files.certFile);
    const key = await read('key', files.keyFile);
    const ca = files.caFile !== undefined ? await read('CA file', files.caFile) : cert;
    security.tls = { cert, key, ca };
  }
  if (files.username !== undefined && files.passwordFile !== undefined) {
    const password = (await read('password file', files.passwordFile)).toString('utf8').replace(/\r?\n$/, '');
    if (password.length === 0)
      throw new CoolctlError(
        ErrorCodes.STARTUP,
        `MQTT broker password file ${resolve(files.passwordFile)} is empty`,
      );
    security.auth = { username: files.username, password };
  }
  return security;
}

/** Compares in time independent of where the inputs differ (both sides hashed to one length first). */
function sameSecret(given: Buffer, expected: Buffer): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** The broker thread's messages to the thread that started it. */
export type BrokerThreadMessage =
  | { t: 'ready'; url: string; port: number }
  | { t: 'failed'; code: ErrorCode; message: string }
  | { t: 'log'; level: 'debug' | 'info' | 'warn' | 'error'; fields: Record<string, unknown>; msg: string }
  | { t: 'closed' };

/** What the broker thread is started with (plain data: its buffers arrive as Uint8Arrays). */
export interface BrokerThreadData {
  host: string;
  port: number;
  security: BrokerSecurity;
  /** The thread's counts, in COUNTER_FIELDS order: written there before a refusal is answered. */
  counts: SharedArrayBuffer;
  /** Unread bytes a client may leave the broker holding; MAX_CLIENT_BACKLOG_BYTES. */
  maxBacklogBytes?: number | undefined;
  /** Connections held at once; MAX_BROKER_CONNECTIONS. */
  maxConnections?: number | undefined;
}

/** The counters' slots in BrokerThreadData.counts. */
export const COUNTER_FIELDS = [
  'authRefused',
  'tlsRefused',
  'slowClientsDropped',
  'connectionsRefused',
] as const satisfies readonly (keyof BrokerCounters)[];

const THREAD_URL = new URL(
  `./broker-thread${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`,
  import.meta.url,
);

/**
 * Starts the broker on a thread of its own; resolves once it listens. Its counters and log lines
 * come back to this thread (`opts.counters`, `opts.logger`); a thread that dies is logged.
 */
export async function startBroker(opts: BrokerOptions): Promise<BrokerHandle> {
  const log = opts.logger;
  const counters = opts.counters ?? {
    authRefused: 0,
    tlsRefused: 0,
    slowClientsDropped: 0,
    connectionsRefused: 0,
  };
  // Shared memory, not messages: a client refused and then asking /sim/state must see its refusal
  // counted, and a message could still be queued. The caller's counters read the thread's counts on
  // top of what they held (they outlive a broker restart).
  const counts = new Int32Array(new SharedArrayBuffer(4 * COUNTER_FIELDS.length));
  for (const [i, field] of COUNTER_FIELDS.entries()) {
    const base = counters[field];
    Object.defineProperty(counters, field, {
      configurable: true,
      enumerable: true,
      get: () => base + Atomics.load(counts, i),
    });
  }
  const data: BrokerThreadData = {
    host: opts.host,
    port: opts.port,
    security: opts.security ?? {},
    counts: counts.buffer as SharedArrayBuffer,
    maxBacklogBytes: opts.maxBacklogBytes,
    maxConnections: opts.maxConnections,
  };
  const worker = new Worker(THREAD_URL, { workerData: data, name: 'sim-mqtt-broker', execArgv: [] });
  let closed: (() => void) | undefined;
  let stopping = false;
  const ready = new Promise<{ url: string; port: number }>((resolve, reject) => {
    worker.on('message', (m: BrokerThreadMessage) => {
      switch (m.t) {
        case 'ready':
          resolve({ url: m.url, port: m.port });
          return;
        case 'failed':
          reject(new CoolctlError(m.code, m.message));
          return;
        case 'log':
          log?.[m.level](m.fields, m.msg);
          return;
        case 'closed':
          closed?.();
          return;
      }
    });
    worker.on('error', (err) => {
      log?.error({ err }, 'MQTT broker thread failed');
      reject(
        new CoolctlError(ErrorCodes.STARTUP, `MQTT broker thread failed: ${err.message}`, { cause: err }),
      );
    });
    worker.on('exit', (code) => {
      closed?.();
      if (!stopping) log?.error({ code }, 'MQTT broker thread exited');
      reject(new CoolctlError(ErrorCodes.STARTUP, `MQTT broker thread exited (code ${code})`));
    });
  });
  let where: { url: string; port: number };
  try {
    where = await ready;
  } catch (err) {
    stopping = true;
    await worker.terminate();
    throw err;
  }
  let closing: Promise<void> | undefined;
  return {
    url: where.url,
    port: where.port,
    counters,
    close() {
      closing ??= (async () => {
        stopping = true;
        const done = new Promise<void>((resolve) => {
          closed = resolve;
        });
        worker.postMessage({ t: 'close' });
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          done,
          new Promise<void>((r) => (timer = setTimeout(r, CLOSE_DEADLINE_MS + 500))),
        ]);
        clearTimeout(timer);
        await worker.terminate();
      })();
      return closing;
    },
  };
}

/**
 * Destroys `socket` (and calls `onDrop`) when a write finds more than `maxBytes` already waiting
 * to be sent: its client is not reading. Every write says there is room, so aedes never holds
 * deliveries for one client. aedes sends through `write` alone.
 */
function boundBacklog(socket: net.Socket, maxBytes: number, onDrop: () => void): void {
  const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
  socket.write = ((...args: unknown[]) => {
    if (socket.writableLength > maxBytes && !socket.destroyed) {
      onDrop();
      socket.destroy();
    }
    // After destroy the write fails through the socket's 'error' listener, as for any client
    // that vanished, and aedes closes the client.
    write(...args);
    return true;
  }) as net.Socket['write'];
}

/** The broker on the calling thread: the broker thread's body. */
export async function startBrokerHere(opts: BrokerOptions): Promise<BrokerHandle> {
  const log = opts.logger;
  const security = opts.security ?? {};
  const counters = opts.counters ?? {
    authRefused: 0,
    tlsRefused: 0,
    slowClientsDropped: 0,
    connectionsRefused: 0,
  };
  const maxBacklogBytes = opts.maxBacklogBytes ?? MAX_CLIENT_BACKLOG_BYTES;
  const auth = security.auth;
  const aedes = await Aedes.createBroker(
    auth
      ? {
          authenticate: (client, username, password, done) => {
            // Both halves are always compared, so the answer's timing says nothing about which failed.
            const userOk = sameSecret(
              Buffer.from(username ?? '', 'utf8'),
              Buffer.from(auth.username, 'utf8'),
            );
            const passOk = sameSecret(password ?? Buffer.alloc(0), Buffer.from(auth.password, 'utf8'));
            if (userOk && passOk && username !== undefined && password !== undefined) {
              done(null, true);
              return;
            }
            counters.authRefused++;
            log?.warn(
              {
                client: client.id,
                username: username ?? null,
                reason: username === undefined ? 'anonymous' : 'wrong-credentials',
                refused: counters.authRefused,
              },
              'MQTT client refused: bad username or password',
            );
            const err = Object.assign(new Error('bad username or password'), {
              returnCode: BAD_USERNAME_OR_PASSWORD,
            }) as AuthenticateError;
            done(err, false);
          },
        }
      : {},
  );
  const sockets = new Set<net.Socket>();
  const onClient = (socket: net.Socket): void => {
    // A client that vanishes mid-frame must not take the broker down.
    socket.on('error', () => {});
    boundBacklog(socket, maxBacklogBytes, () => {
      counters.slowClientsDropped++;
      log?.warn(
        {
          remote: `${socket.remoteAddress}:${socket.remotePort}`,
          unsentBytes: socket.writableLength,
          maxBacklogBytes,
          dropped: counters.slowClientsDropped,
        },
        'MQTT client disconnected: it does not read what it subscribed to',
      );
    });
    aedes.handle(socket);
  };
  const server: net.Server = security.tls
    ? tls.createServer({ cert: security.tls.cert, key: security.tls.key, minVersion: 'TLSv1.2' }, onClient)
    : net.createServer(onClient);
  server.maxConnections = opts.maxConnections ?? MAX_BROKER_CONNECTIONS;
  let lastRefusalLogMs = -Infinity;
  server.on('drop', (d?: net.DropArgument) => {
    counters.connectionsRefused++;
    if (performance.now() - lastRefusalLogMs < REFUSAL_LOG_EVERY_MS) return;
    lastRefusalLogMs = performance.now();
    log?.warn(
      {
        remote: d ? `${d.remoteAddress}:${d.remotePort}` : null,
        maxConnections: server.maxConnections,
        refused: counters.connectionsRefused,
      },
      'MQTT connection refused: too many connections',
    );
  });
  // The raw socket, also for a TLS handshake still in progress, so close() can cut it.
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
  });
  server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
    counters.tlsRefused++;
    log?.warn(
      {
        // A socket the peer already closed has no address left.
        remote: socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : null,
        err: err.message,
        refused: counters.tlsRefused,
      },
      'MQTT connection refused: no TLS handshake',
    );
  });
  aedes.on('clientError', (client, err) =>
    log?.debug({ client: client.id, err: err.message }, 'mqtt client error'),
  );
  aedes.on('connectionError', (_client, err) => log?.debug({ err: err.message }, 'mqtt connection error'));

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port, opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    throw new CoolctlError(
      ErrorCodes.STARTUP,
      `MQTT broker cannot listen on ${opts.host}:${opts.port}: ${(err as Error).message} (pick another port or stop what holds it)`,
      { cause: err },
    );
  }
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const url = `${security.tls ? 'mqtts' : 'mqtt'}://${host}:${port}`;
  log?.info({ url, tls: Boolean(security.tls), username: auth?.username ?? null }, 'MQTT broker listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    counters,
    close() {
      closing ??= (async () => {
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const s of sockets) s.destroy();
        const aedesClosed = new Promise<void>((resolve) => aedes.close(() => resolve()));
        let timer: NodeJS.Timeout | undefined;
        const deadline = new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            log?.warn('MQTT broker did not close in time; abandoning it');
            resolve();
          }, CLOSE_DEADLINE_MS);
        });
        await Promise.race([Promise.all([serverClosed, aedesClosed]), deadline]);
        clearTimeout(timer);
      })();
      return closing;
    },
  };
}
