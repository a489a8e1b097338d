// The gateway's HTTP side, for systemd checks and Prometheus: GET /healthz (200 ok, 503 degraded
// with the problems) and GET /metrics. Two routes on node:http — a web framework would be a third of
// the gateway's memory on a Pi. Anything else is 404; every request is answered, none is logged.
import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { settlesWithin } from '../util/async.ts';

export interface GatewayHttpDeps {
  logger: Logger;
  registry: Registry;
  gateway: string;
  startedAtMs: number;
  health: () => { ok: boolean; problems: string[] };
}

const CLOSE_DEADLINE_MS = 2_000;

export class GatewayHttp {
  private readonly server: Server;

  constructor(deps: GatewayHttpDeps) {
    this.server = createServer((req, res) => {
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
    });
    this.server.on('clientError', (_err, socket) => socket.destroy());
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
