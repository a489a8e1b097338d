// The simulator's HTTP API (PRODUCT.md: GET /sim/state, GET /sim/journal?since=, POST /sim/faults).
// `buildSimApi` opens no socket, so tests use `inject()`; the entry point calls `listen()`.
// Every refused request answers 400 with a stable code and the list of problems, and is counted.
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { BadRequestError, CoolctlError, ErrorCodes } from '../src/errors.ts';
import { parseFaults } from './faults.ts';
import type { Simulation } from './simulation.ts';

export interface SimApiOptions {
  /**
   * Serve the test-only routes (`GET /sim/test/influence`: the physics' true influence matrix).
   * Off by default: a controller must learn the hall, not read the answer from the simulator.
   */
  testRoutes?: boolean;
}

export function buildSimApi(sim: Simulation, logger: Logger, opts: SimApiOptions = {}): FastifyInstance {
  // pino's Logger is a FastifyBaseLogger; the cast keeps the instance's type the default one.
  const loggerInstance = logger.child({ component: 'sim-api' }) as FastifyBaseLogger;
  const app = Fastify({ loggerInstance, bodyLimit: 1_000_000 });
  const counters = { badRequests: 0 };

  app.setErrorHandler((err, req, reply) => {
    const e = err as Error & { statusCode?: number; validation?: unknown; code?: string };
    if (e instanceof BadRequestError) {
      counters.badRequests++;
      req.log.warn({ code: e.code, details: e.details }, 'request refused');
      return reply.code(400).send({ error: e.code, message: e.message, details: e.details });
    }
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
      // fastify's own refusals: malformed JSON, wrong content type, body too large, schema mismatch
      counters.badRequests++;
      req.log.warn({ err: e.message, code: e.code }, 'request refused');
      return reply
        .code(e.statusCode)
        .send({ error: ErrorCodes.BAD_REQUEST, message: e.message, details: [e.message] });
    }
    req.log.error({ err }, 'request failed');
    const code = e instanceof CoolctlError ? e.code : 'COOLCTL_E_INTERNAL';
    return reply.code(500).send({ error: code, message: e.message, details: [] });
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
