// The controller's HTTP API: `buildApp` assembles fastify plugins and opens no socket, so tests use
// `inject()`; the daemon calls `listen()`. One file per resource under ./routes/, the guard
// (./auth/guard.ts: identity, roles, cross-site refusal, the audit trail) over all of them, CORS
// for the cluster's own dashboards and rate limits from the fastify plugins. Every route is
// described in the OpenAPI document at /openapi.json. Every refused request answers 4xx with a
// stable code and the list of problems, and is counted.
import cookie from '@fastify/cookie';
import cors from '@fastify/cors';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { AlarmApi } from '../alarms/alarm.ts';
import type { StateCache } from '../cache/state-cache.ts';
import type { Leadership, RoleChange } from '../cluster/leadership.ts';
import type { Site } from '../config/site-schema.ts';
import type { GroupDriver } from '../control/group-driver.ts';
import type { DeviceIo } from '../devices/device-io.ts';
import { BadRequestError, CoolctlError, ErrorCodes } from '../errors.ts';
import type { SensorView } from '../sensors/sensor-store.ts';
import type { AuditTrail } from './audit/audit-trail.ts';
import type { AuthStore } from './auth/auth-store.ts';
import { changesState, guard, REQUEST_HEADER } from './auth/guard.ts';
import { dashboard } from './dashboard.ts';
import { alarmRoutes } from './routes/alarms.ts';
import { auditRoutes } from './routes/audit.ts';
import { authRoutes } from './routes/auth.ts';
import { clusterRoutes } from './routes/cluster.ts';
import { groupRoutes } from './routes/groups.ts';
import { healthRoutes } from './routes/health.ts';
import { operatorRoutes } from './routes/operator.ts';

/** The API's own security settings (controller config `api:`; docs/security.md). */
export interface ApiSecurity {
  /** `none`: /metrics needs no identity (a scraper without a token); default `viewer`. */
  metricsAuth?: 'none' | 'viewer';
  /** Dashboard and CLI sessions expire after this (default 8 h). */
  sessionTtlS?: number;
  /** Sign-ins per client address per minute (default 10). */
  signInsPerMinute?: number;
  /** State-changing requests per user per minute (default 120). */
  actionsPerMinute?: number;
  /** The API is served over TLS: the session cookie is Secure. */
  secureCookies?: boolean;
}

export interface ApiDeps {
  node: string;
  version: string;
  leadership: Leadership;
  registry: Registry;
  groups: string[];
  drivers: Map<string, GroupDriver>;
  /** Users, tokens and sessions of the cluster (etcd). */
  auth: AuthStore;
  /** Where state-changing requests and gained leaderships are recorded (etcd). */
  audit: AuditTrail;
  security?: ApiSecurity;
  /** The cluster's alarms (src/alarms/; routes/alarms.ts); without it the alarm routes answer 503. */
  alarms?: AlarmApi;
  /** The process-state cache, when the node has a peer channel. */
  cache?: StateCache;
  /** What the node believes about the room. */
  sensors?: SensorView;
  /** Whether every loop of the node runs (GET /healthz answers 503 with the problems when not). */
  loops?: () => { ok: boolean; problems: string[] };
  logger: Logger;
  startedAtMs: number;
  // For the dashboard (./dashboard.ts; it also reads `sensors`); each is optional and the page
  // shows "no data" without it.
  /** The site model: the floor map's layout (GET /api/v1/site). */
  site?: Site;
  /** The air handlers' connections from this node: their link state. */
  devices?: ReadonlyMap<string, DeviceIo>;
  /** Serve HTTPS with this certificate (./tls.ts); the caller attaches ApiTls for reloads. */
  https?: { cert: Buffer; key: Buffer; minVersion: 'TLSv1.2' };
}

export async function buildApp(deps: ApiDeps): Promise<FastifyInstance> {
  const loggerInstance = deps.logger.child({ component: 'api' }) as FastifyBaseLogger;
  // No log line per request: health probes and dashboards poll; refusals and failures are logged below.
  const app = Fastify({
    ...(deps.https ? { https: deps.https } : {}),
    loggerInstance,
    bodyLimit: 64 * 1024,
    logController: new LogController({ disableRequestLogging: true }),
  }).withTypeProvider<TypeBoxTypeProvider>();
  const refused = new Counter({
    name: 'coolctl_api_requests_refused_total',
    help: 'API requests refused as bad input, by route',
    labelNames: ['route'],
    registers: [deps.registry],
  });
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'coolctl controller API',
        version: deps.version,
        description:
          'One controller node of a coolctl cluster. Every route but /healthz and /readyz needs an identity: `Authorization: Bearer <token>` or the dashboard’s session cookie; state-changing requests also need JSON bodies and, with the cookie, the X-Coolctl-Request header (docs/security.md).',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer' },
          session: { type: 'apiKey', in: 'cookie', name: 'coolctl_session' },
        },
      },
      security: [{ bearer: [] }, { session: [] }],
    },
  });

  app.setErrorHandler((err, req, reply) => {
    const e = err as Error & { statusCode?: number; validation?: unknown };
    const route = req.routeOptions.url ?? 'unknown';
    if (e instanceof BadRequestError) {
      refused.inc({ route });
      if (e.httpStatus === 429) req.junk = true;
      req.log.warn({ code: e.code, details: e.details, user: req.identity?.user }, 'request refused');
      return reply.code(e.httpStatus).send({ error: e.code, message: e.message, details: e.details });
    }
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
      refused.inc({ route });
      // A body its schema refuses is junk: counted and logged, never in the audit trail.
      req.junk = true;
      req.log.warn({ err: e.message }, 'request refused');
      return reply
        .code(e.statusCode)
        .send({ error: ErrorCodes.BAD_REQUEST, message: e.message, details: [e.message] });
    }
    req.log.error({ err }, 'request failed');
    const code = e instanceof CoolctlError ? e.code : 'COOLCTL_E_INTERNAL';
    return reply
      .code(e instanceof CoolctlError && e.retryable ? 503 : 500)
      .send({ error: code, message: e.message, details: [] });
  });

  await app.register(cookie);
  // Only the dashboards of this cluster's members (the origins of their advertised API URLs), with
  // their session cookie, so a page opened on any node can send an action straight to a group's leader.
  await app.register(cors, {
    origin: (origin, cb) => cb(null, allowedOrigin(deps.leadership, origin)),
    credentials: true,
    methods: ['GET', 'POST', 'PUT', 'DELETE'],
    allowedHeaders: ['content-type', 'authorization', REQUEST_HEADER],
    maxAge: 600,
  });
  await app.register(guard, { node: deps.node, auth: deps.auth, audit: deps.audit });
  // Before the limiter registers its own onRoute hook, so it sees these limits.
  const actionsPerMinute = deps.security?.actionsPerMinute ?? 120;
  app.addHook('onRoute', (r) => {
    const methods = Array.isArray(r.method) ? r.method : [r.method];
    if (!methods.some(changesState) || r.config?.rateLimit) return;
    r.config = {
      ...r.config,
      rateLimit: {
        max: actionsPerMinute,
        timeWindow: 60_000,
        hook: 'preHandler',
        keyGenerator: (req) => req.identity?.user ?? req.ip,
      },
    };
  });
  await app.register(rateLimit, {
    global: false,
    errorResponseBuilder: (_req, ctx) =>
      new BadRequestError(
        ErrorCodes.RATE_LIMITED,
        `too many requests: at most ${ctx.max} per ${ctx.after}`,
        [`retry in ${ctx.after}`],
        429,
      ),
  });

  await app.register(healthRoutes, deps);
  await app.register(clusterRoutes, deps);
  await app.register(groupRoutes, deps);
  await app.register(operatorRoutes, deps);
  await app.register(authRoutes, deps);
  await app.register(auditRoutes, deps);
  await app.register(alarmRoutes, deps);
  await app.register(dashboard, deps);
  app.get('/openapi.json', { config: { access: 'viewer' }, schema: { hide: true } }, async () =>
    app.swagger(),
  );

  // The trail also says who led what since when: each node writes the leaderships it gains.
  const onRole = (c: RoleChange) => {
    if (c.to !== 'leader') return;
    void deps.audit.record({
      kind: 'role',
      node: deps.node,
      group: c.group,
      from: c.from,
      to: c.to,
      epoch: c.epoch,
      reason: c.reason,
    });
  };
  deps.leadership.on('role', onRole);
  app.addHook('onClose', async () => {
    deps.leadership.off('role', onRole);
  });

  return app as unknown as FastifyInstance;
}

/** The old name, kept for callers that predate the plugin layout. */
export const buildApi = buildApp;

function allowedOrigin(leadership: Leadership, origin: string | undefined): boolean {
  if (!origin) return false;
  return leadership.members().some((m) => {
    try {
      return new URL(m.apiUrl).origin === origin;
    } catch {
      return false;
    }
  });
}
