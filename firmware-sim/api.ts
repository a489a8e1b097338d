// The simulator's HTTP API (PRODUCT.md: GET /sim/state, GET /sim/journal?since=, POST /sim/faults).
// `buildSimApi` opens no socket, so tests use `inject()`; the entry point calls `listen()`.
// Every refused request answers 4xx with a stable code and the list of problems, and is counted
// (`api.badRequests` in /sim/state). What a client chooses never sizes our answer or our log: a
// refusal lists at most MAX_LISTED_PROBLEMS problems, each clipped, and is logged at most once per
// route and code every REFUSAL_LOG_EVERY_MS (../src/api/refusals.ts). A client gets the controller
// API's time and connection bounds (../src/api/connection-limits.ts): a request that never finishes
// arriving is cut off, and so are connections beyond the cap.
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  LogController,
} from 'fastify';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import {
  applyConnectionLimits,
  CONNECTION_LIMITS,
  type ConnectionLimits,
  clientErrorHandler,
  serverOptions,
} from '../src/api/connection-limits.ts';
import { type Refusal, Refusals } from '../src/api/refusals.ts';
import { BadRequestError, CoolctlError, ErrorCodes, MAX_LISTED_PROBLEMS } from '../src/errors.ts';
import { clip } from '../src/util/log-limit.ts';
import { parseFaults } from './faults.ts';
import type { Simulation } from './simulation.ts';

export interface SimApiOptions {
  /**
   * Serve the test-only routes (`GET /sim/test/influence`: the physics' true influence matrix).
   * Off by default: a controller must learn the hall, not read the answer from the simulator.
   */
  testRoutes?: boolean;
  /** Time and connection bounds; the controller API's defaults, tests shrink them. */
  limits?: Partial<ConnectionLimits>;
}

/** The longest problem line or message a refusal carries (a long id is still a short answer). */
const MAX_PROBLEM_CHARS = 300;
const MAX_MESSAGE_CHARS = 2000;

/** The controller API's refusal log and counter, also counted in the simulator's own `badRequests`. */
class SimRefusals extends Refusals {
  private readonly onRefuse: () => void;
  constructor(log: Logger, onRefuse: () => void) {
    // A registry of its own: the simulator serves no /metrics; /sim/state carries its count.
    super(new Registry(), log);
    this.onRefuse = onRefuse;
  }
  override refuse(r: Refusal): void {
    this.onRefuse();
    super.refuse(r);
  }
}

/** A refusal's body as the client gets it: bounded however many or however long its problems were. */
function refusalBody(code: string, message: string, details: readonly string[]) {
  const listed = details.slice(0, MAX_LISTED_PROBLEMS).map((d) => clip(d, MAX_PROBLEM_CHARS));
  const more = details.length - listed.length;
  if (more > 0) listed.push(`… and ${more} more problem(s) like these`);
  return { error: code, message: clip(message, MAX_MESSAGE_CHARS), details: listed };
}

export function buildSimApi(sim: Simulation, logger: Logger, opts: SimApiOptions = {}): FastifyInstance {
  // pino's Logger is a FastifyBaseLogger; the cast keeps the instance's type the default one.
  const log = logger.child({ component: 'sim-api' });
  const counters = { badRequests: 0 };
  const refusals = new SimRefusals(log, () => {
    counters.badRequests++;
  });
  const limits = { ...CONNECTION_LIMITS, ...opts.limits };
  const server = serverOptions(limits);
  const app = Fastify({
    http: server.node,
    ...server.fastify,
    loggerInstance: log as FastifyBaseLogger,
    // No line per request: a test polls /sim/state many times a second.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1_000_000,
    clientErrorHandler: clientErrorHandler(refusals),
    // A URL the router cannot decode (`%zz`).
    frameworkErrors: (err: FastifyError, req, reply) => {
      const status = err.statusCode && err.statusCode < 500 ? err.statusCode : 400;
      const body = refusalBody(ErrorCodes.BAD_REQUEST, 'the URL cannot be read', [err.message]);
      refusals.refuse({
        route: 'unknown',
        code: body.error,
        status,
        message: body.message,
        method: req.method,
      });
      // Typed by fastify for the router's own request; it is the ordinary reply.
      return (reply as unknown as FastifyReply).code(status).send(body);
    },
  });
  applyConnectionLimits(app.server, limits, refusals);

  app.setErrorHandler((err, req, reply) => {
    const e = err as Error & { statusCode?: number; code?: string };
    const route = req.is404 ? 'unknown' : (req.routeOptions.url ?? 'unknown');
    let refused: { status: number; body: ReturnType<typeof refusalBody> } | undefined;
    if (e instanceof BadRequestError) {
      refused = { status: e.httpStatus, body: refusalBody(e.code, e.message, e.details) };
    } else if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
      // fastify's own refusals: malformed JSON, wrong content type, body too large
      refused = { status: e.statusCode, body: refusalBody(ErrorCodes.BAD_REQUEST, e.message, [e.message]) };
    }
    if (refused) {
      refusals.refuse({
        route,
        code: refused.body.error,
        status: refused.status,
        message: clip(refused.body.message),
        details: refused.body.details.slice(0, 3).map((d) => clip(d)),
        method: req.method,
        clientIp: req.ip,
      });
      return reply.code(refused.status).send(refused.body);
    }
    req.log.error({ err }, 'request failed');
    const code = e instanceof CoolctlError ? e.code : 'COOLCTL_E_INTERNAL';
    return reply.code(500).send({ error: code, message: e.message, details: [] });
  });
  app.setNotFoundHandler(async (req) => {
    throw new BadRequestError(
      ErrorCodes.BAD_REQUEST,
      `no route ${req.method} ${clip(req.url.split('?')[0] ?? '', 100)}`,
      ['the routes: GET /sim/state, GET /sim/journal?since=SEQ, GET|POST /sim/faults (docs/sim-api.md)'],
      404,
    );
  });

  app.get('/healthz', async () => ({ ok: true }));

  app.get('/sim/state', async () => ({ ...sim.state(), api: { badRequests: counters.badRequests } }));

  app.get('/sim/journal', async (req) => {
    const q = req.query as Record<string, string | undefined>;
    const since = parseNonNegativeInt(q.since ?? '0', 'since');
    const limit = parseNonNegativeInt(q.limit ?? '10000', 'limit');
    if (limit < 1 || limit > 100_000) {
      throw new BadRequestError(ErrorCodes.BAD_REQUEST, 'limit out of range', ['limit: 1…100000']);
    }
    return sim.journal.since(since, limit);
  });

  app.get('/sim/faults', async () => ({ faults: sim.state().faults }));

  app.post('/sim/faults', async (req, reply) => {
    if (req.body === undefined || req.body === null) {
      throw new BadRequestError(ErrorCodes.FAULT_INVALID, 'missing JSON body', [
        'send a JSON fault such as {"fault":"ahu-trip","ahu":"AHU-01"}',
      ]);
    }
    const faults = parseFaults(req.body);
    await sim.applyFaults(faults);
    return reply.code(200).send({ applied: faults.length, faults: sim.state().faults });
  });

  if (opts.testRoutes) {
    app.get('/sim/test/influence', async (req) => {
      const q = req.query as Record<string, string | undefined>;
      const problems: string[] = [];
      const at = oneOf('at', q.at ?? 'current', ['current', 'design'] as const, problems);
      const measure = oneOf(
        'measure',
        q.measure ?? 'intake-share',
        ['intake-share', 'supply-response'] as const,
        problems,
      );
      if (at === undefined || measure === undefined)
        throw new BadRequestError(ErrorCodes.BAD_REQUEST, 'bad influence query', problems);
      return { simTimeS: sim.simTimeMs / 1000, at, measure, ...sim.model.trueInfluence({ at, measure }) };
    });
  }

  return app;
}

function parseNonNegativeInt(raw: string, name: string): number {
  if (!/^\d{1,15}$/.test(raw)) {
    throw new BadRequestError(ErrorCodes.BAD_REQUEST, `${name} must be a non-negative integer`, [
      `${name}: got ${JSON.stringify(raw)}, allowed: 0, 1, 2, …`,
    ]);
  }
  return Number(raw);
}

function oneOf<T extends string>(
  name: string,
  raw: string,
  allowed: readonly T[],
  problems: string[],
): T | undefined {
  if ((allowed as readonly string[]).includes(raw)) return raw as T;
  problems.push(`${name}: got ${JSON.stringify(raw)}, allowed: ${allowed.join(', ')}`);
  return undefined;
}
