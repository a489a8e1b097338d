// The controller's HTTP API: `buildApp` assembles fastify plugins and opens no socket, so tests use
// `inject()`; the daemon calls `listen()`. One file per resource under ./routes/, the guard
// (./auth/guard.ts: identity, roles, cross-site refusal) over all of them, then the limiter, then
// the audit trail, recorded before each action runs (./audit/record-first.ts): in that order, so
// neither refusals nor a flood reach etcd, and no action runs without its entry. CORS for the
// cluster's own dashboards and rate limits from the fastify plugins. Every route is
// described in the OpenAPI document at /openapi.json. A route takes only the input it declares,
// bodies exactly as typed (./request-schema.ts); a client gets bounded time and connections
// (./connection-limits.ts). Every refused request — a bad body, an unknown route, an unreadable URL
// — answers 4xx with a stable code and the list of problems, and is counted and logged
// (./refusals.ts). No answer is cached, framed or sniffed as another type (./answer-headers.ts).
import cookie from '@fastify/cookie';
import cors from '@fastify/cors';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { ErrorObject } from 'ajv';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import type { Logger } from 'pino';
import type { Leadership, RoleChange } from '../cluster/leadership.ts';
import { BadRequestError, CoolctlError, ErrorCodes } from '../errors.ts';
import { ANSWER_HEADERS } from './answer-headers.ts';
import type { ApiDeps } from './api-deps.ts';
import { recordFirst } from './audit/record-first.ts';
import { carriedIdentity, changesState, guard, REQUEST_HEADER } from './auth/guard.ts';
import {
  applyConnectionLimits,
  CONNECTION_LIMITS,
  clientErrorHandler,
  serverOptions,
} from './connection-limits.ts';
import { dashboard } from './dashboard.ts';
import { declaredAnswers } from './error-body.ts';
import { jsonBodyParser } from './json-body.ts';
import { MonotonicRateStore } from './rate-store.ts';
import { Refusals } from './refusals.ts';
import { buildValidator, closeUndeclaredInput, quoted, schemaProblems } from './request-schema.ts';
import { alarmRoutes } from './routes/alarms.ts';
import { auditRoutes } from './routes/audit.ts';
import { authRoutes } from './routes/auth.ts';
import { clusterRoutes } from './routes/cluster.ts';
import { groupRoutes } from './routes/groups.ts';
import { healthRoutes } from './routes/health.ts';
import { operatorRoutes } from './routes/operator.ts';
import { siteRoutes } from './routes/site.ts';
import { trendRoutes } from './routes/trends.ts';

export async function buildApp(deps: ApiDeps): Promise<FastifyInstance> {
  const loggerInstance = deps.logger.child({ component: 'api' }) as FastifyBaseLogger;
  const refusals = new Refusals(deps.registry, loggerInstance as unknown as Logger);
  const refuse = (
    req: FastifyRequest,
    route: string,
    e: { code: string; httpStatus: number; message: string; details: string[] },
  ) =>
    refusals.refuse({
      route,
      code: e.code,
      status: e.httpStatus,
      message: e.message,
      details: e.details,
      method: req.method,
      user: req.identity?.user,
      clientIp: req.ip,
    });
  const limits = { ...CONNECTION_LIMITS, ...deps.limits };
  const server = serverOptions(limits);
  // No log line per request: health probes and dashboards poll; refusals and failures are logged below.
  const app = Fastify({
    // Node's own bounds go to its server at creation; https takes them beside the certificate.
    ...(deps.https ? { https: { ...deps.https, ...server.node, ...server.tls } } : {}),
    http: server.node,
    ...server.fastify,
    loggerInstance,
    bodyLimit: 64 * 1024,
    logController: new LogController({ disableRequestLogging: true }),
    // Typed by fastify as taking a schema; it is called with the route ({ schema, httpPart }).
    schemaController: { compilersFactory: { buildValidator: buildValidator as never } },
    clientErrorHandler: clientErrorHandler(refusals),
    // A URL the router cannot decode (`%zz`) or a path parameter over its length. The router's own
    // message quotes the whole URL, query string included, where a token pasted by mistake would be
    // echoed and logged: only the path is quoted (and `quoted` masks a token in it).
    frameworkErrors: (err: FastifyError, req, reply) => {
      const status = err.statusCode && err.statusCode < 500 ? err.statusCode : 400;
      const path = quoted(req.url.split('?')[0] ?? '', 200);
      const e = {
        code: ErrorCodes.BAD_REQUEST,
        httpStatus: status,
        message: 'the URL cannot be read',
        details: [status === 414 ? `a path parameter is too long: ${path}` : `not a valid URL: ${path}`],
      };
      refuse(req, 'unknown', e);
      return (reply as unknown as FastifyReply)
        .code(e.httpStatus)
        .headers(ANSWER_HEADERS)
        .send({ error: e.code, message: e.message, details: e.details });
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
  applyConnectionLimits(app.server, { identified: carriedIdentity, ...limits }, refusals);
  // Before any route, so every route is closed to input it does not declare.
  app.addHook('onRoute', (r) => closeUndeclaredInput(r, changesState));
  app.addHook('onRoute', (r) => refusals.route(r.url));
  // A state-changing request without a body is checked as `{}`: its schema says whether that will do.
  // Hooks every request passes are callback hooks: an async one costs each request a promise and
  // a turn (bench/api.ts measures what the app adds to a request).
  app.addHook('preValidation', (req, _reply, done) => {
    if (req.body === undefined && changesState(req.method)) req.body = {};
    done();
  });
  // Answers can carry tokens, and always carry the cluster's state: no cache keeps them (the
  // dashboard's page and assets set their own), no browser reads them as another type, frames them
  // or runs anything in them (./answer-headers.ts). Set as the request comes in, so every answer
  // has them, refusals included.
  app.addHook('onRequest', (_req, reply, done) => {
    reply.headers(ANSWER_HEADERS);
    done();
  });
  // Bodies are UTF-8 JSON, read strictly (./json-body.ts).
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, jsonBodyParser(app));
  await app.register(swagger, {
    // The description lists every answer the app gives a route, its refusals included.
    transform: ({ schema, url, route }) => ({
      schema: declaredAnswers(schema as Record<string, unknown> | undefined, route, changesState) as never,
      url,
    }),
    openapi: {
      info: {
        title: 'coolctl controller API',
        version: deps.version,
        description:
          'One controller node of a coolctl cluster. Every route but /healthz and /readyz needs an identity: `Authorization: Bearer <token>` or the dashboard’s session cookie; state-changing requests also need JSON bodies and, with the cookie, the X-Coolctl-Request header and an Origin of the cluster’s own dashboards (docs/security.md). A body is taken as typed (no coercion: `null` or `"25"` is not a number) and may hold only the fields its schema names; a route without a body schema takes none (`{}` or nothing); a query string may hold only the parameters its route names, and a number in a query or a path only in plain decimal (`-?digits`, a number also `.digits`). Free-text fields refuse control and bidirectional formatting characters. Every refusal answers `{error: COOLCTL_E_…, message, details}`.',
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
    const e = err as Error & {
      statusCode?: number;
      validation?: ErrorObject[];
      validationContext?: string;
    };
    const route = req.is404 ? 'unknown' : (req.routeOptions.url ?? 'unknown');
    if (e instanceof BadRequestError) {
      if (e.httpStatus === 429) req.junk = true;
      refuse(req, route, e);
      return reply.code(e.httpStatus).send({ error: e.code, message: e.message, details: e.details });
    }
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
      // A body its schema refuses is junk: counted and logged, never in the audit trail.
      req.junk = true;
      const details = e.validation ? schemaProblems(e.validationContext, e.validation) : [e.message];
      const refused = {
        code: ErrorCodes.BAD_REQUEST,
        httpStatus: e.statusCode,
        message: e.validation ? `refused by its schema: ${details.join('; ')}` : e.message,
        details,
      };
      refuse(req, route, refused);
      return reply
        .code(refused.httpStatus)
        .send({ error: refused.code, message: refused.message, details: refused.details });
    }
    req.log.error({ err }, 'request failed');
    if (e instanceof CoolctlError)
      return reply.code(e.retryable ? 503 : 500).send({ error: e.code, message: e.message, details: [] });
    // Not one of ours: its message may name a file, a host or a library's internals. The client gets
    // the request id, which the log line above carries with the whole error.
    return reply.code(500).send({
      error: ErrorCodes.INTERNAL,
      message: `internal error: the node's log has it under reqId ${req.id}`,
      details: [],
    });
  });
  app.setNotFoundHandler(async (req) => {
    throw new BadRequestError(
      ErrorCodes.BAD_REQUEST,
      `no route ${req.method} ${quoted(req.url.split('?')[0] ?? '', 100)}`,
      ['the API’s routes are in /openapi.json'],
      404,
    );
  });

  await app.register(cookie);
  // Only the dashboards of this cluster's members (the origins of their advertised API URLs), with
  // their session cookie, so a page opened on any node can send an action straight to a group's
  // leader. The guard holds a cookie's writes to the same origins.
  const memberOrigin = (origin: string | undefined) => allowedOrigin(deps.leadership, origin);
  await app.register(cors, {
    origin: (origin, cb) => cb(null, memberOrigin(origin)),
    credentials: true,
    methods: ['GET', 'POST', 'PUT', 'DELETE'],
    allowedHeaders: ['content-type', 'authorization', REQUEST_HEADER],
    maxAge: 600,
  });
  await app.register(guard, { auth: deps.auth, memberOrigin });
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
    // Windows on the monotonic clock: a wall clock stepped back must not lock anyone out for the step.
    store: MonotonicRateStore,
    errorResponseBuilder: (_req, ctx) =>
      new BadRequestError(
        ErrorCodes.RATE_LIMITED,
        `too many requests: at most ${ctx.max} per ${ctx.after}`,
        [`retry in ${ctx.after}`],
        429,
      ),
  });
  // After the limiter (its onRoute hook adds its preHandler first): an action's entry is written
  // only for a request the limiter let through, and before the action runs.
  await app.register(recordFirst, { node: deps.node, audit: deps.audit });

  await app.register(healthRoutes, deps);
  await app.register(clusterRoutes, deps);
  await app.register(groupRoutes, deps);
  await app.register(operatorRoutes, deps);
  await app.register(authRoutes, deps);
  await app.register(auditRoutes, deps);
  await app.register(alarmRoutes, deps);
  await app.register(dashboard, deps);
  await app.register(siteRoutes, deps);
  await app.register(trendRoutes, deps);
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
