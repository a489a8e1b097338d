// How long a client may hold the API's server, and how many may: a request (headers and body, at
// most 64 KB) must arrive within REQUEST_MS, and over HTTPS the TLS handshake too; a connection
// between requests stays open for KEEP_ALIVE_MS (the dashboard polls every 1.5 s, so its connections
// are reused and never closed under it); a connection silent while its request is handled is cut
// after IDLE_MS (longer than the longest handler: a switchover waits at most 60 s). Node checks the
// request bounds every CHECK_EVERY_MS, so a slow client is cut between REQUEST_MS and REQUEST_MS +
// CHECK_EVERY_MS after its request began. At most MAX_CONNECTIONS are open at once, half of them
// from one address (../util/connection-slots.ts). A connection proves itself only with a request the
// server accepted: answered with anything but a refusal (4xx), so from an identity the guard
// accepted, or on a public route (/healthz, /readyz, the page) that succeeded. A newcomer at a bound
// takes the slot of the oldest unproven connection (silent, trickling, mid-handshake, or one whose
// every answer was a refusal — 401 without an identity, 400, 403, 404, 429 — or a CORS preflight),
// else, on the API, of the oldest one served only without an identity (public routes: anyone can
// poll /healthz), else of the proven one idle longest — every answer sent, no byte since, for at
// least IDLE_DISPLACE_AFTER_MS — so clients that never speak, speak once and sit, or keep asking
// without credentials (refused, or on public routes) cannot keep operators out; only when every
// slot it could take was used by an identity and is busy (a request being read or answered) or
// idle for less is the newcomer closed. A client whose keep-alive is closed opens a new one.
// Whatever is cut off before a request was read is answered where the socket still takes it (408,
// 400, 431), counted (route `connection`) and logged like every refusal (./refusals.ts).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server as NetServer, Socket } from 'node:net';
import { ErrorCodes } from '../errors.ts';
import { ConnectionSlots, type SlotBound, tcpSocketOf } from '../util/connection-slots.ts';
import { http } from '../util/node-http.ts';
import { RAW_ANSWER_HEADERS } from './answer-headers.ts';
import type { Refusals } from './refusals.ts';

export interface ConnectionLimits {
  /** Headers and body of one request must arrive within this. */
  requestMs: number;
  /** An idle connection between two requests is kept this long. */
  keepAliveMs: number;
  /** A connection with a request open and no byte either way is cut after this. */
  idleMs: number;
  /** How often node checks the request bounds. */
  checkEveryMs: number;
  /**
   * Connections open at once, at most half of them from one address; a newcomer over either takes
   * the slot of the oldest connection that has had no request accepted, or is closed.
   */
  maxConnections: number;
  /** The share of maxConnections one remote address may hold (default PER_ADDRESS_SHARE). */
  perAddressShare?: number;
  /**
   * At a bound, a keep-alive connection idle this long (every answer sent, no byte since) gives its
   * slot to a newcomer when no unproven one is left (default IDLE_DISPLACE_AFTER_MS).
   */
  idleDisplaceAfterMs?: number;
  /**
   * Whether a request carried an identity the server accepted (the API's guard). Given, a
   * connection proven by requests without one only (public routes: /healthz, the page) is
   * `anonymous` and gives way at a bound, oldest first, busy or not, before any connection an
   * identity used. Absent (the simulator): every accepted request proves alike.
   */
  identified?: (req: IncomingMessage) => boolean;
}

export const CONNECTION_LIMITS: ConnectionLimits = {
  requestMs: 10_000,
  keepAliveMs: 65_000,
  idleMs: 90_000,
  checkEveryMs: 1_000,
  maxConnections: 512,
};

/** The options of Fastify() and of node's http(s) server that carry the limits. */
export function serverOptions(l: ConnectionLimits) {
  return {
    fastify: { requestTimeout: l.requestMs, keepAliveTimeout: l.keepAliveMs, connectionTimeout: l.idleMs },
    // Given to node's server at creation: headersTimeout must not exceed requestTimeout there.
    node: {
      requestTimeout: l.requestMs,
      headersTimeout: l.requestMs,
      connectionsCheckingInterval: l.checkEveryMs,
    },
    // HTTPS beside them: a TLS handshake that never ends is cut as a request that never arrives
    // (node's default, 120 s, let a silent connection hold its slot twelve times as long).
    tls: { handshakeTimeout: l.requestMs },
  };
}

/** The share of a server's connections one remote address may hold (a reverse proxy: all of them). */
export const PER_ADDRESS_SHARE = 0.5;

/**
 * How long a served keep-alive connection must have sat idle before a newcomer at a bound may take
 * its slot: over three of the dashboard's 1.5 s polls, so a page in use keeps its connections, and
 * far under the 65 s keep-alive that let a client that spoke once hold its slot. Closing an idle
 * keep-alive is what the keep-alive timeout does anyway; the client opens a new connection.
 */
export const IDLE_DISPLACE_AFTER_MS = 5_000;

/** A connection closed, or turned away, at the slot bounds: for the server's counter and log. */
export interface SlotEvent {
  outcome: 'evicted' | 'refused';
  bound: SlotBound;
  /** The connection's remote address. */
  address: string;
  /** Set when the connection closed had been served and was idle this long. */
  idleMs?: number;
  /** Set when the connection closed had sent this many whole requests, every one refused. */
  refusedRequests?: number;
  /** Set when the connection closed had been served, but never a request with an identity. */
  anonymous?: boolean;
}

/**
 * What became of a connection at the slot bounds: turned away, or closed for a newcomer after it
 * was served only without an identity, sat idle, sent only refused requests, or sent nothing whole.
 * Each server's counter, answer and log line are told from it.
 */
export type SlotEventKind = 'refused' | 'evicted-anonymous' | 'evicted-idle' | 'evicted-refused' | 'evicted';

export function slotEventKind(e: SlotEvent): SlotEventKind {
  if (e.outcome === 'refused') return 'refused';
  if (e.anonymous) return 'evicted-anonymous';
  if (e.idleMs !== undefined) return 'evicted-idle';
  return e.refusedRequests === undefined ? 'evicted' : 'evicted-refused';
}

/** What a server's slot event says in its log line. */
export function slotEventMessage(e: SlotEvent, maxConnections: number, share = PER_ADDRESS_SHARE): string {
  const where =
    e.bound === 'per-address'
      ? `its address holds its share (${perAddressShare(maxConnections, share)}) of the ${maxConnections} connections`
      : `${maxConnections} connections are open`;
  const why = {
    refused: null,
    'evicted-anonymous': 'it was served only without an identity (public routes)',
    'evicted-idle': `idle ${((e.idleMs ?? 0) / 1000).toFixed(1)} s after its last answer`,
    'evicted-refused': `it sent only refused requests (${e.refusedRequests}, none accepted)`,
    evicted: 'it delivered no request',
  }[slotEventKind(e)];
  return why === null
    ? `connection closed: ${where}, each busy or idle only briefly`
    : `connection closed: ${why}, and a newcomer needed its slot (${where})`;
}

/**
 * Whether an answer proves its connection: anything but a refusal (4xx). Without an identity the
 * guard accepted, only a public route (health, the page, sign-in) gets past 401; a 5xx is the
 * server failing a request it took (/readyz answers 503 while not ready). A 403 does not prove
 * either: it is also the cross-site refusal of a page without an identity, and a real identity
 * proves itself with its first request the API serves. Nor does a CORS preflight (OPTIONS), which
 * anyone can send with a member's Origin: a dashboard's real request follows it on the connection.
 */
export function answerProves(method: string | undefined, status: number): boolean {
  return method !== 'OPTIONS' && (status < 400 || status >= 500);
}

export function perAddressShare(maxConnections: number, share = PER_ADDRESS_SHARE): number {
  return Math.max(1, Math.ceil(maxConnections * share));
}

/** What one connection has asked so far: looked at only when a bound is reached. */
interface Served {
  last: IncomingMessage;
  /** An answer proved the connection (answerProves): it stays proven. */
  accepted: boolean;
  /** An accepted request carried an identity (ConnectionLimits.identified). */
  identified: boolean;
  /** Answers that proved nothing (refusals, preflights), while none was accepted. */
  refused: number;
  /** Requests read and not yet answered (pipelined ones queue behind the first). */
  unanswered: number;
  /** When the last answer went out (performance.now()), and the connection's bytes read then. */
  answeredAtMs: number;
  bytesReadThen: number;
}

/**
 * An HTTP(S) server's connection slots (../util/connection-slots.ts): a connection proves itself
 * with an answer that is not a refusal (answerProves), and stays proven; while its first request is
 * read to its last byte and not yet answered it counts as proven and busy (a long switchover is
 * never cut for a newcomer). One refused answer and none accepted leaves it unproven, busy or not:
 * a client without an identity cannot hold a slot by asking again and again. A proven connection is
 * idle from its last answer until its next byte (TLS records included). Tracked per socket on
 * 'request', looked at only when a bound is reached.
 */
export function httpConnectionSlots(
  server: NetServer & {
    on(e: 'request', f: (req: IncomingMessage, res: ServerResponse) => void): unknown;
  },
  maxConnections: number,
  report: (e: SlotEvent) => void,
  share = PER_ADDRESS_SHARE,
  idleDisplaceAfterMs = IDLE_DISPLACE_AFTER_MS,
  identified?: (req: IncomingMessage) => boolean,
): ConnectionSlots {
  const requests = new WeakMap<Socket, Served>();
  const slots = new ConnectionSlots(
    {
      maxOpen: maxConnections,
      maxUnproven: maxConnections,
      maxPerAddress: perAddressShare(maxConnections, share),
      displaceIdleAfterMs: idleDisplaceAfterMs,
    },
    (s) => {
      const r = requests.get(s);
      if (r === undefined) return { proven: false };
      if (!r.accepted) {
        // Refused so far: a request in flight (or its answer unread by the client) shields nothing.
        if (r.refused > 0) return { proven: false, refusedRequests: r.refused };
        if (!r.last.complete) return { proven: false };
      }
      // Public requests alone (health checks, the page: anyone can make them, and an answer the
      // client does not read keeps one in flight) hold a slot only until someone needs it. A
      // request an identity made, answered or being answered (a switchover waiting), keeps it.
      if (identified !== undefined && !r.identified && !identified(r.last))
        return { proven: true, anonymous: true };
      // Its first request read and being answered; or a byte since the last answer: a request being read.
      if (!r.accepted || r.unanswered > 0 || s.bytesRead !== r.bytesReadThen) return { proven: true };
      return { proven: true, idleMs: performance.now() - r.answeredAtMs };
    },
  );
  // The TCP connection, before any TLS: a handshake that never ends holds a slot too.
  server.on('connection', (socket: Socket) => {
    const o = slots.admit(socket);
    if (!o.admitted) report({ outcome: 'refused', bound: o.bound, address: socket.remoteAddress ?? '' });
    else
      for (const e of o.evicted)
        report({
          outcome: 'evicted',
          bound: e.bound,
          address: e.address,
          ...(e.idleMs === undefined ? {} : { idleMs: e.idleMs }),
          ...(e.refusedRequests === undefined ? {} : { refusedRequests: e.refusedRequests }),
          ...(e.anonymous ? { anonymous: true } : {}),
        });
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const tcp = tcpSocketOf(req.socket);
    let r = requests.get(tcp);
    if (r) {
      r.last = req;
      r.unanswered++;
    } else {
      r = {
        last: req,
        accepted: false,
        identified: false,
        refused: 0,
        unanswered: 1,
        answeredAtMs: 0,
        bytesReadThen: 0,
      };
      requests.set(tcp, r);
    }
    const served = r;
    // 'close' comes once per response: sent, or its connection gone (then nothing was answered).
    res.once('close', () => {
      if (res.headersSent) {
        if (answerProves(req.method, res.statusCode)) {
          served.accepted = true;
          if (identified?.(req)) served.identified = true;
        } else if (!served.accepted) served.refused++;
      }
      served.unanswered--;
      served.answeredAtMs = performance.now();
      served.bytesReadThen = tcp.bytesRead;
    });
  });
  return slots;
}

/** The server-side half: the connection slots, and what a client that is cut off is told and counted as. */
export function applyConnectionLimits(
  server: Parameters<typeof httpConnectionSlots>[0],
  l: ConnectionLimits,
  refusals: Refusals,
): void {
  const share = l.perAddressShare ?? PER_ADDRESS_SHARE;
  httpConnectionSlots(
    server,
    l.maxConnections,
    (e) => {
      // An evicted connection had its time and sent nothing whole: as a request timeout is answered.
      // One that sent only refused requests (the API's: mostly without an identity) is refused once
      // more, as a bad request. An idle one was served and sent nothing since: closed as its
      // keep-alive timeout would.
      const kind = slotEventKind(e);
      const answer = {
        evicted: { code: ErrorCodes.BAD_REQUEST, status: 408 },
        'evicted-refused': { code: ErrorCodes.BAD_REQUEST, status: 400 },
        'evicted-anonymous': { code: ErrorCodes.RATE_LIMITED, status: 503 },
        'evicted-idle': { code: ErrorCodes.RATE_LIMITED, status: 503 },
        refused: { code: ErrorCodes.RATE_LIMITED, status: 503 },
      }[kind];
      refusals.refuse({
        route: 'connection',
        ...answer,
        message: slotEventMessage(e, l.maxConnections, share),
        details: [`${kind} at the ${e.bound} bound`],
        clientIp: e.address,
      });
    },
    share,
    l.idleDisplaceAfterMs ?? IDLE_DISPLACE_AFTER_MS,
    l.identified,
  );
}

/**
 * What a request node could not read, or not in time, is answered with (the API's and the fencing
 * gateway's servers alike): its status and why.
 */
export function clientErrorAnswer(code: string | undefined): { status: 400 | 408 | 431; message: string } {
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT')
    return { status: 408, message: 'the request did not arrive in time' };
  if (code === 'HPE_HEADER_OVERFLOW') return { status: 431, message: 'the request headers are too large' };
  return { status: 400, message: 'the request is not HTTP this server can read' };
}

/** Fastify's `clientErrorHandler`: a request node could not read, or not in time. */
export function clientErrorHandler(refusals: Refusals) {
  return (err: Error & { code?: string }, socket: Socket): void => {
    // The client went away: nothing was refused.
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    const { status, message } = clientErrorAnswer(err.code);
    refusals.refuse({
      route: 'connection',
      code: ErrorCodes.BAD_REQUEST,
      status,
      message,
      details: [err.code ?? 'unknown'],
      clientIp: socket.remoteAddress,
    });
    if (socket.writable) {
      const body = JSON.stringify({ error: ErrorCodes.BAD_REQUEST, message, details: [] });
      socket.write(
        `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${RAW_ANSWER_HEADERS}Connection: close\r\n\r\n${body}`,
      );
    }
    socket.destroy(err);
  };
}
