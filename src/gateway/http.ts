// The gateway's HTTP side, for systemd checks and Prometheus: GET /healthz (200 ok, 503 degraded
// with the problems) and GET /metrics. Two routes on node:http — a web framework would be a third of
// the gateway's memory on a Pi. Anything else is 404; every request is answered, none is logged.
// Its connections are few and short (HTTP_MAX_CONNECTIONS, HEADERS_TIMEOUT_MS): each is a file
// descriptor the gateway shares with the controllers' connections and the epoch state file, so a
// scanner holding idle ones must not starve fencing. A refused connection or a request it cannot
// parse gets a status where it can, a counter and a rate-limited log line.
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Counter, Registry } from 'prom-client';
import { clientErrorAnswer } from '../api/connection-limits.ts';
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

/** Why a connection or request was dropped (coolctl_gateway_http_refused_total{reason}). */
export const HTTP_REFUSALS = ['too_many_connections', 'bad_request', 'timeout'] as const;
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
        const path = (req.url ?? '').split('?')[0];
        if (req.method !== 'GET' || (path !== '/healthz' && path !== '/metrics')) {
          res
            .writeHead(404, { 'content-type': 'application/json' })
            .end('{"error":"not found: GET /healthz or /metrics"}');
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
    this.server.maxConnections = HTTP_MAX_CONNECTIONS;
    this.server.on('drop', (data) =>
      refuse(
        'too_many_connections',
        `${data?.remoteAddress}:${data?.remotePort}`,
        `${HTTP_MAX_CONNECTIONS} connections open`,
      ),
    );
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      const { status } = clientErrorAnswer(err.code);
      const reason: HttpRefusal = status === 408 ? 'timeout' : 'bad_request';
      refuse(reason, `${socket.remoteAddress}:${socket.remotePort}`, err.code ?? err.message);
      if (socket.writable && !socket.writableEnded)
        socket.end(
          `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`,
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
