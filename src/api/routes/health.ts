// Health for systemd and load balancers (no identity: a probe holds no credentials) and Prometheus
// metrics (a viewer's, unless `api.metricsAuth: none` lets a scraper without a token read them).
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { ApiDeps } from '../api-deps.ts';
import { acceptsGzip, expositionOf, metricsAnswer } from '../metrics-text.ts';

const Readiness = {
  type: 'object',
  properties: { ready: { type: 'boolean' }, node: { type: 'string' } },
  required: ['ready', 'node'],
} as const;

export const healthRoutes: FastifyPluginAsyncTypebox<ApiDeps> = async (app, deps) => {
  /** One log line when /healthz starts failing and one when it recovers, not one per probe. */
  let failing = false;
  app.get(
    '/healthz',
    {
      config: { access: 'public' },
      schema: {
        description:
          'The process is alive and every loop it runs still runs: each control group’s loop, the leadership decision loop, sensor ingest. 503 with `problems` (one line per stopped loop) when one has stopped.',
        response: {
          200: { type: 'object', additionalProperties: true },
          503: { type: 'object', additionalProperties: true },
        },
      },
    },
    async (_req, reply) => {
      const loops = deps.loops?.() ?? { ok: true, problems: [] };
      // The process's own monotonic age: a wall clock stepped back a day made it −86 395 s.
      const uptimeS = Math.round(process.uptime());
      if (loops.ok) {
        if (failing) deps.logger.info('health: every loop runs again');
        failing = false;
        return { status: 'ok', node: deps.node, uptimeS };
      }
      if (!failing) deps.logger.error({ problems: loops.problems }, 'health: a loop has stopped');
      failing = true;
      return reply.code(503).send({ status: 'failing', node: deps.node, uptimeS, problems: loops.problems });
    },
  );

  app.get(
    '/readyz',
    {
      config: { access: 'public' },
      schema: {
        description: 'Ready: this node holds a live etcd lease and takes part in elections (503 otherwise).',
        response: { 200: Readiness, 503: Readiness },
      },
    },
    async (_req, reply) => {
      const ready = deps.leadership.healthy;
      return reply.code(ready ? 200 : 503).send({ ready, node: deps.node });
    },
  );

  app.get(
    '/metrics',
    {
      config: { access: deps.security?.metricsAuth === 'none' ? 'public' : 'viewer' },
      schema: {
        description:
          'Prometheus metrics (text exposition format). Needs a viewer’s token unless the node runs with api.metricsAuth: none. A steady scraper is answered from a render begun shortly before it came, never more than 1 s before; the header x-coolctl-metrics-age-ms says how long before. Gzipped when Accept-Encoding allows it (Prometheus asks), compressed once per render.',
      },
    },
    async (req, reply) => {
      const answer = await metricsAnswer(deps.registry, acceptsGzip(req.headers['accept-encoding']));
      // A steady scraper is answered from a render made just before it came (at most one control
      // period old): how old, for whoever wants to know.
      reply.header('x-coolctl-metrics-age-ms', Math.round(answer.ageMs));
      reply.header('vary', 'accept-encoding');
      if (answer.encoding === 'gzip') reply.header('content-encoding', 'gzip');
      return reply.type(deps.registry.contentType).send(answer.body);
    },
  );
  app.addHook('onClose', async () => expositionOf(deps.registry).close());
};
