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
import type { Journal } from './journal.ts';
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
/** The largest body read: 1 000 faults of the longest shape fit in well under this. */
const BODY_LIMIT_BYTES = 1_000_000;
/**
 * The most one journal answer carries, whatever `limit` asks (about 4 000 entries): building it
 * holds the event loop ~10 ms, and a client that never reads it holds at most this much. 100 000
 * entries were 24 MB and 0.5 s of a stalled simulator each.
 */
export const JOURNAL_PAGE_MAX_BYTES = 1_048_576;
/** `{"seq":1,"t":0,"wallMs":…13 digits…,"ahu":"","protocol":"","client":"","epoch":0,"values":{},…}`. */
const JOURNAL_ENTRY_MIN_BYTES = 100;

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
  // The simulator's clients are tests and tools on one host: no address share (a test may open
  // hundreds of connections at once), still the cap and the rule that silent ones give way.
  const limits = { ...CONNECTION_LIMITS, perAddressShare: 1, ...opts.limits };
  const server = serverOptions(limits);
  const app = Fastify({
    http: server.node,
    ...server.fastify,
    loggerInstance: log as FastifyBaseLogger,
    // No line per request: a test polls /sim/state many times a second.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT_BYTES,
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

  // Only JSON is read. fastify's own parsers would hand a text/plain body to the route as a string
  // (refused as "must be an object", the wrong reason) and answer a bad one without saying why.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, parseJsonBody(body as string));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
  // Which methods each path takes, so a wrong method is told what it can send (`Allow`).
  const methodsByPath = new Map<string, Set<string>>();
  app.addHook('onRoute', (route) => {
    const methods = methodsByPath.get(route.url) ?? new Set<string>();
    for (const m of [route.method].flat()) methods.add(m);
    methodsByPath.set(route.url, methods);
  });

  app.setErrorHandler((err, req, reply) => {
    const e = err as Error & { statusCode?: number; code?: string };
    // a wrong method on a known path is logged under that path, not among unknown routes
    const path = req.url.split('?')[0] ?? '';
    const route = req.is404
      ? methodsByPath.has(path)
        ? path
        : 'unknown'
      : (req.routeOptions.url ?? 'unknown');
    let refused: { status: number; body: ReturnType<typeof refusalBody> } | undefined;
    if (e instanceof BadRequestError) {
      refused = { status: e.httpStatus, body: refusalBody(e.code, e.message, e.details) };
    } else if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
      // fastify's own refusals (wrong content type, body too large), told with what is allowed
      const detail = frameworkRefusalDetail(e.code, req.headers['content-type'], BODY_LIMIT_BYTES);
      refused = {
        status: e.statusCode,
        body: refusalBody(ErrorCodes.BAD_REQUEST, detail?.message ?? e.message, [
          detail?.detail ?? e.message,
        ]),
      };
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
  const routeList = [
    'GET /sim/state',
    'GET /sim/journal?since=SEQ&limit=N',
    'GET|POST /sim/faults',
    ...(opts.testRoutes ? ['GET /sim/test/influence'] : []),
    'GET /healthz',
  ].join(', ');
  app.setNotFoundHandler(async (req, reply) => {
    const path = req.url.split('?')[0] ?? '';
    const allowed = methodsByPath.get(path);
    if (allowed) {
      // A known path asked with a method it does not take: 405 with the methods it does take in
      // `Allow` (RFC 9110 §15.5.6), as the controller's API and the fencing gateway answer.
      const allow = [...allowed].sort().join(', ');
      void reply.header('allow', allow);
      throw new BadRequestError(
        ErrorCodes.BAD_REQUEST,
        `method ${clip(req.method, 20)} not allowed on ${clip(path, 100)}: it takes ${allow}`,
        [
          `method: got ${clip(req.method, 20)}, allowed: ${allow}`,
          `the routes: ${routeList} (docs/sim-api.md)`,
        ],
        405,
      );
    }
    throw new BadRequestError(
      ErrorCodes.BAD_REQUEST,
      `no route ${req.method} ${clip(path, 100)}`,
      [`the routes: ${routeList} (docs/sim-api.md)`],
      404,
    );
  });

  app.get('/healthz', async () => ({ ok: true }));

  app.get('/sim/state', async () => ({ ...sim.state(), api: { badRequests: counters.badRequests } }));

  app.get('/sim/journal', async (req, reply) => {
    const q = req.query as Record<string, string | undefined>;
    refuseUnknownParams(q, ['since', 'limit']);
    const since = parseNonNegativeInt(q.since ?? '0', 'since');
    const limit = parseNonNegativeInt(q.limit ?? '10000', 'limit');
    if (limit < 1 || limit > 100_000) {
      throw new BadRequestError(ErrorCodes.BAD_REQUEST, 'limit out of range', ['limit: 1…100000']);
    }
    return reply.type('application/json; charset=utf-8').send(journalPage(sim.journal, since, limit));
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
      refuseUnknownParams(q, ['at', 'measure']);
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

/**
 * A query parameter the route does not know is refused, not ignored: a typo (`sinse=500`,
 * `since[]=500`) would otherwise be answered as if it were not there, from the start of the journal.
 */
function refuseUnknownParams(q: Record<string, unknown>, known: readonly string[]): void {
  const unknown = Object.keys(q).filter((k) => !known.includes(k));
  if (unknown.length === 0) return;
  throw new BadRequestError(
    ErrorCodes.BAD_REQUEST,
    `unknown query parameter ${JSON.stringify(clip(unknown[0]!, 60))}`,
    unknown.map((k) => `${JSON.stringify(clip(k, 60))}: not a parameter here; allowed: ${known.join(', ')}`),
  );
}

/**
 * A JSON body. A `__proto__` or `constructor` key is refused, as fastify's own parser refused it
 * (nothing here merges a body into another object, but a client must not learn to rely on it),
 * and every refusal says what was wrong rather than only "not valid JSON".
 */
function parseJsonBody(raw: string): unknown {
  // A byte-order mark (PowerShell's and Notepad's JSON files start with one) is no error.
  const text = raw.charCodeAt(0) === 0xfeff ? raw.slice(1) : raw;
  if (text.length === 0) {
    throw new BadRequestError(ErrorCodes.BAD_REQUEST, 'the JSON body cannot be empty', [
      'body: send a JSON fault such as {"fault":"ahu-trip","ahu":"AHU-01"}',
    ]);
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw new BadRequestError(ErrorCodes.BAD_REQUEST, 'the body is not valid JSON', [
      `body: ${(err as Error).message}`,
    ]);
  }
  const poisoned = PROTO_KEY.exec(text) ?? CONSTRUCTOR_KEY.exec(text);
  if (poisoned) {
    throw new BadRequestError(ErrorCodes.BAD_REQUEST, 'the body is not valid JSON for this API', [
      `body: the key ${poisoned[0].replace(/\s*:$/, '')} is refused`,
    ]);
  }
  return body;
}
// A key, escaped or not, as secure-json-parse looks for it (a value of that text is no key).
const PROTO_KEY =
  /"(?:_|\\u005[Ff])(?:_|\\u005[Ff])(?:p|\\u0070)(?:r|\\u0072)(?:o|\\u006[Ff])(?:t|\\u0074)(?:o|\\u006[Ff])(?:_|\\u005[Ff])(?:_|\\u005[Ff])"\s*:/;
const CONSTRUCTOR_KEY =
  /"(?:c|\\u0063)(?:o|\\u006[Ff])(?:n|\\u006[Ee])(?:s|\\u0073)(?:t|\\u0074)(?:r|\\u0072)(?:u|\\u0075)(?:c|\\u0063)(?:t|\\u0074)(?:o|\\u006[Ff])(?:r|\\u0072)"\s*:/;

/** What fastify's own refusals mean for a client of this API, and what it may send instead. */
function frameworkRefusalDetail(
  code: string | undefined,
  contentType: string | undefined,
  bodyLimitBytes: number,
): { message: string; detail: string } | undefined {
  switch (code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return {
        message: 'the body must be JSON',
        detail: `content-type: got ${contentType === undefined ? 'none' : JSON.stringify(clip(contentType, 100))}, allowed: application/json`,
      };
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return {
        message: 'Request body is too large',
        detail: `body: at most ${bodyLimitBytes} bytes`,
      };
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return {
        message: 'the body is not as long as content-length says',
        detail: "content-length: must be the body's length in bytes",
      };
    default:
      return undefined;
  }
}

/**
 * Entries after `since`, at most `limit` and at most JOURNAL_PAGE_MAX_BYTES of them (always at least
 * one), serialized here so the cut is by the bytes sent. A reader pages on the last `seq` it got.
 */
function journalPage(journal: Journal, since: number, limit: number): string {
  // No entry serializes to fewer than JOURNAL_ENTRY_MIN_BYTES: never more are taken than can fit.
  const fit = Math.ceil(JOURNAL_PAGE_MAX_BYTES / JOURNAL_ENTRY_MIN_BYTES);
  const { entries, nextSeq, truncated } = journal.since(since, Math.min(limit, fit));
  const parts: string[] = [];
  let bytes = 0;
  for (const e of entries) {
    const json = JSON.stringify(e);
    bytes += Buffer.byteLength(json) + 1;
    if (parts.length > 0 && bytes > JOURNAL_PAGE_MAX_BYTES) break;
    parts.push(json);
  }
  return `{"entries":[${parts.join(',')}],"nextSeq":${nextSeq},"truncated":${truncated}}`;
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
