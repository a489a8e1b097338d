// The gateway's HTTP side, for systemd checks and Prometheus: GET /healthz (200 ok, 503 degraded
// with the problems) and GET /metrics (HEAD of either: the same without the body). Two read-only
// routes on node:http — a web framework would be a third of the gateway's memory on a Pi; nothing
// here can steer a unit. Another method on them is 405 (with Allow), another path 404: each is
// answered with what is served, counted and logged (rate-limited), as a scanner's probes should be.
// Its connections are few and short (HTTP_MAX_CONNECTIONS, HEADERS_TIMEOUT_MS): each is a file
// descriptor the gateway shares with the controllers' connections and the epoch state file, so a
// scanner holding idle ones must not starve fencing; nor may connections that send nothing keep a
// scrape out: a newcomer takes the slot of the oldest one that has not delivered a request, else of
// the one idle longest past 5 s after its last answer, and one address holds at most half the slots
// (the API's rule, ../api/connection-limits.ts). A closed or refused connection, or a request it
// cannot parse, gets a status where it can, a counter and a rate-limited log line.
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Counter, Registry } from 'prom-client';
import {
  clientErrorAnswer,
  httpConnectionSlots,
  slotEventKind,
  slotEventMessage,
} from '../api/connection-limits.ts';
import { settlesWithin } from '../util/async.ts';
import { clip, RateLimitedLog } from '../util/log-limit.ts';
import { http } from '../util/node-http.ts';

export interface GatewayHttpDeps {
  logger: Logger;
  registry: Registry;
  gateway: string;
  startedAtMs: number;
  health: () => { ok: boolean; problems: string[] };
  /** coolctl_gateway_http_refused_total, by reason. */
  refused: Counter<'reason'>;
}

const CLOSE_DEADLINE_MS = 2_000;
/** Prometheus, systemd's checks and an operator's curl, with room to spare. */
export const HTTP_MAX_CONNECTIONS = 16;
/** A scrape sends its headers at once; a connection silent this long is a slow client or a scanner. */
export const HEADERS_TIMEOUT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 10_000;
const WARN_INTERVAL_MS = 1_000;
const ROUTES = new Set(['/healthz', '/metrics']);
const ALLOW = 'GET, HEAD';
/** The path of a request target in origin or absolute form (RFC 9112 §3.2). */
const ABSOLUTE_OR_ORIGIN = /^(?:https?:\/\/[^/?#]*)?(\/[^?#]*)/i;

/** Why a connection or request was dropped (coolctl_gateway_http_refused_total{reason}). */
export const HTTP_REFUSALS = [
  'too_many_connections',
  'silent_connection_evicted',
  'idle_connection_evicted',
  'bad_request',
  'timeout',
  'not_found',
  'method_not_allowed',
] as const;
export type HttpRefusal = (typeof HTTP_REFUSALS)[number];

export class GatewayHttp {
  private readonly server: Server;

  constructor(deps: GatewayHttpDeps) {
    const warns = new RateLimitedLog(deps.logger.child({ component: 'http' }), WARN_INTERVAL_MS);
    const refuse = (reason: HttpRefusal, client: string, detail: string): void => {
      deps.refused.inc({ reason });
      warns.warn(`http:${reason}`, { reason, client, detail: clip(detail) }, 'http connection refused');
    };
    // The check of both timeouts runs every connectionsCheckingInterval: tighter than Node's 30 s.
    this.server = http.createServer(
      {
        headersTimeout: HEADERS_TIMEOUT_MS,
        requestTimeout: REQUEST_TIMEOUT_MS,
        connectionsCheckingInterval: 1_000,
      },
      (req, res) => {
        const client = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
        // Origin form (`/healthz?x`) and absolute form (`http://host/healthz`) alike, taken as sent:
        // no dot-segment or case folding makes another path one of ours.
        const path = ABSOLUTE_OR_ORIGIN.exec(req.url ?? '')?.[1] ?? '';
        // A refusal closes the connection: a body sent with it is not read on our time.
        const refuseWith = (status: 404 | 405, reason: HttpRefusal, error: string): void => {
          refuse(reason, client, `${req.method} ${req.url}`);
          res
            .writeHead(status, {
              'content-type': 'application/json',
              connection: 'close',
              ...(status === 405 ? { allow: ALLOW } : {}),
            })
            .end(JSON.stringify({ error }));
        };
        if (!ROUTES.has(path)) {
          refuseWith(404, 'not_found', 'not found: GET or HEAD /healthz or /metrics');
          return;
        }
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          refuseWith(405, 'method_not_allowed', `method ${req.method} not allowed on ${path}: GET or HEAD`);
          return;
        }
        if (path === '/healthz') {
          const h = deps.health();
          res.writeHead(h.ok ? 200 : 503, { 'content-type': 'application/json' }).end(
            JSON.stringify({
              status: h.ok ? 'ok' : 'degraded',
              gateway: deps.gateway,
              problems: h.problems,
              uptimeS: Math.round((performance.now() - deps.startedAtMs) / 1000),
            }),
          );
          return;
        }
        deps.registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': deps.registry.contentType }).end(text),
          (err: unknown) => {
            deps.logger.error({ err }, 'metrics failed');
            res.writeHead(500).end();
          },
        );
      },
    );
    // The gateway's reasons: any connection closed for a newcomer but an idle one counts as silent.
    const reasonOf = {
      refused: 'too_many_connections',
      'evicted-idle': 'idle_connection_evicted',
      'evicted-anonymous': 'silent_connection_evicted',
      'evicted-refused': 'silent_connection_evicted',
      evicted: 'silent_connection_evicted',
    } as const;
    httpConnectionSlots(this.server, HTTP_MAX_CONNECTIONS, (e) =>
      refuse(reasonOf[slotEventKind(e)], e.address, slotEventMessage(e, HTTP_MAX_CONNECTIONS)),
    );
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      // The client went away (a scrape given up): nothing was refused.
      if (err.code === 'ECONNRESET' || socket.destroyed) {
        socket.destroy();
        return;
      }
      const { status, message } = clientErrorAnswer(err.code);
      const reason: HttpRefusal = status === 408 ? 'timeout' : 'bad_request';
      refuse(reason, `${socket.remoteAddress}:${socket.remotePort}`, err.code ?? err.message);
      const body = JSON.stringify({ error: message });
      if (socket.writable && !socket.writableEnded)
        socket.end(
          `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        );
      socket.destroy();
    });
  }

  /** Binds; resolves with the URL (port 0 picks a free one). */
  listen(host: string, port: number): Promise<string> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        const a = this.server.address();
        resolve(`http://${host}:${typeof a === 'object' && a ? a.port : port}`);
      });
    });
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await settlesWithin(new Promise<void>((r) => this.server.close(() => r())), CLOSE_DEADLINE_MS);
  }
}
