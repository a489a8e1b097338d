// The gateway's HTTP side, for systemd checks and Prometheus: GET /healthz (200 ok, 503 degraded
// with the problems) and GET /metrics. Built without a socket, so tests can inject().
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { metricsStream } from '../api/metrics-text.ts';

export interface GatewayHttpDeps {
  logger: Logger;
  registry: Registry;
  gateway: string;
  startedAtMs: number;
  health: () => { ok: boolean; problems: string[] };
}

export function buildGatewayHttp(deps: GatewayHttpDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger.child({ component: 'http' }) as FastifyBaseLogger,
    // Probes poll; a line per request would drown the state changes.
    disableRequestLogging: true,
    bodyLimit: 1024,
  });
  app.get('/healthz', async (_req, reply) => {
    const h = deps.health();
    return reply.code(h.ok ? 200 : 503).send({
      status: h.ok ? 'ok' : 'degraded',
      gateway: deps.gateway,
      problems: h.problems,
      uptimeS: Math.round((performance.now() - deps.startedAtMs) / 1000),
    });
  });
  app.get('/metrics', async (_req, reply) =>
    reply.type(deps.registry.contentType).send(metricsStream(deps.registry)),
  );
  return app;
}
