// How long a client may hold the API's server, and how many may: a request (headers and body, at
// most 64 KB) must arrive whole within REQUEST_MS; a connection between requests stays open for
// KEEP_ALIVE_MS (the dashboard polls every 1.5 s, so its connections are reused and never closed
// under it); a connection silent while its request is handled is cut after IDLE_MS (longer than the
// longest handler: a switchover waits at most 60 s); at most MAX_CONNECTIONS at once, further ones
// closed as they come. Node checks the request bounds every CHECK_EVERY_MS, so a slow client is cut
// between REQUEST_MS and REQUEST_MS + CHECK_EVERY_MS after its request began. Whatever is cut off
// before a request was read is answered where the socket still takes it (408, 400, 431), counted
// (route `connection`) and logged like every refusal (./refusals.ts).
import type { Socket } from 'node:net';
import { ErrorCodes } from '../errors.ts';
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
  /** Connections open at once; more are closed as they come. */
  maxConnections: number;
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
  };
}

/** The server-side half: the connection cap, and what a client that is cut off is told and counted as. */
export function applyConnectionLimits(
  server: { maxConnections: number; on(e: 'drop', f: (d?: { remoteAddress?: string }) => void): unknown },
  l: ConnectionLimits,
  refusals: Refusals,
): void {
  server.maxConnections = l.maxConnections;
  server.on('drop', (d) =>
    refusals.refuse({
      route: 'connection',
      code: ErrorCodes.RATE_LIMITED,
      status: 503,
      message: `connection closed: ${l.maxConnections} connections are open`,
      clientIp: d?.remoteAddress,
    }),
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
