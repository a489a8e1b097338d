// The controller's HTTP API (fastify). `buildApi` opens no socket, so tests use `inject()`; the
// daemon calls `listen()`. Health for systemd and load balancers, Prometheus metrics, the cluster
// view, and operator actions; every route is described in the OpenAPI document at /openapi.json.
// Every refused request answers 4xx with a stable code and the list of problems, and is counted.
import swagger from '@fastify/swagger';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { StateCache } from '../cache/state-cache.ts';
import type { GroupLeadership, Leadership } from '../cluster/leadership.ts';
import { type OperatorState, overrideProblem, type UnitOverride } from '../cluster/operator-state.ts';
import type { Site } from '../config/site-schema.ts';
import type { GroupDriver } from '../control/group-driver.ts';
import type { DeviceIo } from '../devices/device-io.ts';
import { rangeSchema } from '../devices/unit-contract.ts';
import { BadRequestError, CoolctlError, ErrorCodes } from '../errors.ts';
import type { SensorView } from '../sensors/sensor-store.ts';
import type { AuditLog } from './audit-log.ts';
import { dashboard } from './dashboard.ts';
import { ErrorBody } from './error-body.ts';
import { metricsStream } from './metrics-text.ts';

export interface ApiDeps {
  node: string;
  version: string;
  leadership: Leadership;
  registry: Registry;
  groups: string[];
  drivers: Map<string, GroupDriver>;
  /** The process-state cache, when the node has a peer channel. */
  cache?: StateCache;
  /** What the node believes about the room. */
  sensors?: SensorView;
  logger: Logger;
  startedAtMs: number;
  // For the dashboard (./dashboard.ts; it also reads `sensors`); each is optional and the page
  // shows "no data" without it.
  /** The site model: the floor map's layout (GET /api/v1/site). */
  site?: Site;
  /** The air handlers' connections from this node: their link state. */
  devices?: ReadonlyMap<string, DeviceIo>;
  /** Where operator actions and role changes are recorded (default: a fresh 1 000-entry log). */
  audit?: AuditLog;
}

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const loggerInstance = deps.logger.child({ component: 'api' }) as FastifyBaseLogger;
  // No log line per request: health probes and dashboards poll; refusals and failures are logged below.
  const app = Fastify({
    loggerInstance,
    bodyLimit: 64 * 1024,
    logController: new LogController({ disableRequestLogging: true }),
  });
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
        description: 'One controller node of a coolctl cluster.',
      },
    },
  });

  app.setErrorHandler((err, req, reply) => {
    const e = err as Error & { statusCode?: number };
    const route = req.routeOptions.url ?? 'unknown';
    if (e instanceof BadRequestError) {
      refused.inc({ route });
      req.log.warn({ code: e.code, details: e.details }, 'request refused');
      return reply.code(e.httpStatus).send({ error: e.code, message: e.message, details: e.details });
    }
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
      refused.inc({ route });
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

  await app.register(dashboard, deps);

  app.get(
    '/healthz',
    {
      schema: {
        description: 'The process is alive and its loops run.',
        response: { 200: { type: 'object', additionalProperties: true } },
      },
    },
    async () => ({
      status: 'ok',
      node: deps.node,
      uptimeS: Math.round((Date.now() - deps.startedAtMs) / 1000),
    }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        description: 'Ready: this node holds a live etcd lease and takes part in elections (503 otherwise).',
      },
    },
    async (_req, reply) => {
      const ready = deps.leadership.healthy;
      return reply.code(ready ? 200 : 503).send({ ready, node: deps.node });
    },
  );

  app.get(
    '/metrics',
    { schema: { description: 'Prometheus metrics (text exposition format).' } },
    async (_req, reply) => {
      return reply.type(deps.registry.contentType).send(metricsStream(deps.registry));
    },
  );

  app.get(
    '/api/v1/cluster',
    {
      schema: {
        description:
          'Members of the cluster and, per control group, its leader, epoch and this node’s state.',
        response: {
          200: {
            type: 'object',
            properties: {
              node: { type: 'string' },
              members: { type: 'array', items: { type: 'object', additionalProperties: true } },
              groups: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    id: { type: 'string' },
                    leader: { type: ['string', 'null'] },
                    epoch: { type: ['integer', 'null'] },
                    state: {
                      type: 'string',
                      description: 'this node: follower, candidate, leader, fenced or resigned',
                    },
                    sinceMs: { type: 'number' },
                    driving: { type: 'boolean' },
                    reason: {
                      type: ['string', 'null'],
                      description: 'why this node’s state last changed (null: not known)',
                    },
                    problem: {
                      type: ['string', 'null'],
                      description:
                        'this node leads the group but does not drive it, and why (no unit accepting writes, a crashing loop, a newer epoch proven); it hands the group on unless its relinquish back-off holds',
                    },
                    relinquished: {
                      type: ['object', 'null'],
                      description:
                        'the last time this node handed the group on because it could not drive it: reason, atMs (ms since the Unix epoch)',
                      properties: { reason: { type: 'string' }, atMs: { type: 'number' } },
                      additionalProperties: true,
                    },
                  },
                },
              },
            },
          },
        },
      },
    },
    async () => ({
      node: deps.node,
      members: deps.leadership.members(),
      groups: deps.leadership.groups().map((g) => ({
        id: g.group,
        leader: g.leader,
        epoch: g.epoch,
        state: g.role,
        sinceMs: g.sinceMs,
        driving: deps.drivers.get(g.group)?.driving ?? false,
        ...handOnView(g, deps.drivers.get(g.group)),
      })),
    }),
  );

  app.get(
    '/api/v1/groups/:id',
    {
      schema: {
        description:
          'One control group: leader, epoch, this node’s state, and the units it drives with their held commands. `problem`: this node leads the group but does not drive it, and why; `relinquished`: the last time this node handed it on for that, with the reason; `drive`: the undriven bound (undrivenLimitMs) and, while the relinquish back-off holds, until when (relinquishHeldUntilMs, ms since the Unix epoch); each unit: its last error and its count of stale-epoch refusals its epoch did not prove (refusals).',
        params: { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] },
        response: { 404: ErrorBody },
      },
    },
    async (req) => {
      const id = (req.params as { id: string }).id;
      const g = deps.leadership.groups().find((x) => x.group === id);
      if (!g) throw notFound(id, deps.groups);
      const d = deps.drivers.get(id);
      const row = deps.cache?.get(id);
      return {
        id,
        leader: g.leader,
        epoch: g.epoch,
        state: g.role,
        driving: d?.driving ?? false,
        start: d?.startInfo ?? null,
        mode: d?.driving ? d.decision.mode : null,
        reasons: d?.driving ? d.decision.reasons : [],
        ...handOnView(g, d),
        drive: d
          ? {
              undrivenLimitMs: d.driveStatus.undrivenLimitMs,
              relinquishHeldUntilMs: d.driveStatus.relinquishHeldUntilMs,
            }
          : null,
        operator: deps.leadership.operator?.(id) ?? null,
        sensors: deps.sensors?.view(id) ?? null,
        units: d?.units() ?? [],
        processState: row
          ? { epoch: row.epoch, seq: row.seq, writer: row.writer, atMs: row.atMs, bytes: row.body.length }
          : null,
      };
    },
  );

  app.post(
    '/api/v1/groups/:id/commands',
    {
      schema: {
        description:
          'Operator manual command for the group’s units (all, or one with `ahu`): held by the leader and carried in the process state, so it survives failovers. Send it to the leader.',
        params: { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] },
        body: {
          type: 'object',
          properties: {
            ahu: { type: 'string', minLength: 1 },
            fanPct: rangeSchema('fanPct'),
            supplySetpointC: rangeSchema('supplySetpointC'),
          },
          minProperties: 1,
          additionalProperties: false,
        },
        response: { 404: ErrorBody, 409: ErrorBody, 400: ErrorBody },
      },
    },
    async (req) => {
      const id = (req.params as { id: string }).id;
      const { ahu, ...cmd } = req.body as { ahu?: string; fanPct?: number; supplySetpointC?: number };
      const d = deps.drivers.get(id);
      if (!d) throw notFound(id, deps.groups);
      if (cmd.fanPct === undefined && cmd.supplySetpointC === undefined)
        throw new BadRequestError(ErrorCodes.BAD_REQUEST, 'nothing to set', ['fanPct or supplySetpointC']);
      if (ahu !== undefined && !d.units().some((u) => u.ahu === ahu))
        throw new BadRequestError(ErrorCodes.BAD_REQUEST, `${ahu} is not a unit of ${id}`, [
          `ahu: one of ${d
            .units()
            .map((u) => u.ahu)
            .join(', ')}`,
        ]);
      const update = deps.leadership.updateOperator?.bind(deps.leadership);
      if (d.closedLoop && update) {
        // Under the control law an operator's command is an override, kept in etcd (any node takes it).
        const targets = ahu ? [ahu] : d.units().map((u) => u.ahu);
        const stored = await update(id, (cur) => {
          const overrides = { ...cur.overrides };
          for (const a of targets) overrides[a] = { ...overrides[a], ...cmd, toLocal: false };
          return { ...cur, overrides, by: operatorOf(req), atMs: Date.now() };
        });
        return { group: id, overrides: stored.overrides };
      }
      if (!d.driving) {
        const g = deps.leadership.groups().find((x) => x.group === id);
        const leader = deps.leadership.members().find((m) => m.node === g?.leader);
        throw new BadRequestError(
          ErrorCodes.NOT_LEADER,
          `${deps.node} does not drive ${id}; send the command to its leader ${g?.leader ?? '(none)'}`,
          [leader ? `leader API: ${leader.apiUrl}` : 'the group has no leader right now'],
          409,
        );
      }
      try {
        return { group: id, held: d.setCommand(cmd, ahu) };
      } catch (err) {
        // Leadership moved (or the term is still resuming) between the check and the command.
        throw new BadRequestError(ErrorCodes.NOT_LEADER, (err as Error).message, ['retry in a moment'], 409);
      }
    },
  );

  const operatorRoute = (
    url: string,
    description: string,
    body: object | undefined,
    change: (req: { params: Record<string, string>; body: unknown }, cur: OperatorState) => OperatorState,
    method: 'POST' | 'PUT' | 'DELETE' = 'POST',
  ): void => {
    app.route({
      method,
      url,
      schema: {
        description,
        params: {
          type: 'object',
          properties: { id: { type: 'string' }, ahu: { type: 'string' } },
          required: ['id'],
        },
        ...(body ? { body } : {}),
        response: { 404: ErrorBody, 400: ErrorBody, 503: ErrorBody },
      },
      handler: async (req) => {
        const params = req.params as Record<string, string>;
        const id = params.id!;
        const d = deps.drivers.get(id);
        if (!d) throw notFound(id, deps.groups);
        if (params.ahu !== undefined && !d.units().some((u) => u.ahu === params.ahu))
          throw new BadRequestError(
            ErrorCodes.BAD_REQUEST,
            `${params.ahu} is not a unit of ${id}`,
            [
              `one of ${d
                .units()
                .map((u) => u.ahu)
                .join(', ')}`,
            ],
            404,
          );
        const update = deps.leadership.updateOperator?.bind(deps.leadership);
        if (!update)
          throw new BadRequestError(ErrorCodes.BAD_REQUEST, 'this node keeps no operator state', [], 503);
        const stored = await update(id, (cur) => ({
          ...change({ params, body: req.body }, cur),
          by: operatorOf(req),
          atMs: Date.now(),
        }));
        return { group: id, operator: stored };
      },
    });
  };
  operatorRoute(
    '/api/v1/groups/:id/pause',
    'Maintenance pause, kept in etcd (survives restarts and failovers; any node takes it): the cluster stops writing the group and hands its units to their local control.',
    {
      type: 'object',
      properties: { reason: { type: 'string', maxLength: 200 } },
      additionalProperties: false,
    },
    (r, cur) => ({
      ...cur,
      paused: true,
      reason: (r.body as { reason?: string } | undefined)?.reason ?? null,
    }),
  );
  operatorRoute(
    '/api/v1/groups/:id/resume',
    'Ends a pause: the group’s leader takes its units back under remote control, from what they run now.',
    undefined,
    (_r, cur) => ({ ...cur, paused: false, reason: null }),
  );
  operatorRoute(
    '/api/v1/groups/:id/overrides/:ahu',
    'An operator override for one unit, kept in etcd: a fixed fan % and/or supply setpoint, or toLocal (hand the unit to its local control). The safety layer still applies its hard limits.',
    {
      type: 'object',
      properties: {
        fanPct: rangeSchema('fanPct'),
        supplySetpointC: rangeSchema('supplySetpointC'),
        toLocal: { type: 'boolean' },
      },
      minProperties: 1,
      additionalProperties: false,
    },
    (r, cur) => {
      const ov = r.body as UnitOverride;
      const problem = overrideProblem(ov);
      if (problem)
        throw new BadRequestError(ErrorCodes.BAD_REQUEST, `override refused: ${problem}`, [problem]);
      return { ...cur, overrides: { ...cur.overrides, [r.params.ahu!]: ov } };
    },
    'PUT',
  );
  operatorRoute(
    '/api/v1/groups/:id/overrides/:ahu',
    'Removes a unit’s override: the control law takes it back bumplessly from what it runs now.',
    undefined,
    (r, cur) => {
      const { [r.params.ahu!]: _gone, ...overrides } = cur.overrides;
      return { ...cur, overrides };
    },
    'DELETE',
  );

  app.get(
    '/api/v1/cache',
    {
      schema: {
        description:
          'This node’s process-state cache: one row per group (version, writer, size) and its peer links.',
      },
    },
    async () => ({
      node: deps.node,
      enabled: !!deps.cache,
      rows: deps.cache?.list() ?? [],
      peers: deps.cache?.peers() ?? [],
    }),
  );

  app.post(
    '/api/v1/groups/:id/switchover',
    {
      schema: {
        description:
          'Hands the group to the named node (graceful; the target leads within about 0.2 s). Send it to the current leader.',
        params: { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] },
        body: {
          type: 'object',
          properties: {
            to: { type: 'string', minLength: 1 },
            timeoutMs: { type: 'integer', minimum: 100, maximum: 60_000 },
          },
          required: ['to'],
          additionalProperties: false,
        },
        response: { 404: ErrorBody, 409: ErrorBody, 400: ErrorBody },
      },
    },
    async (req) => {
      const id = (req.params as { id: string }).id;
      const { to, timeoutMs } = req.body as { to: string; timeoutMs?: number };
      const g = deps.leadership.groups().find((x) => x.group === id);
      if (!g) throw notFound(id, deps.groups);
      const members = deps.leadership.members().map((m) => m.node);
      if (!members.includes(to)) {
        throw new BadRequestError(ErrorCodes.BAD_REQUEST, `unknown node "${to}"`, [
          `to: one of the members: ${members.join(', ')}`,
        ]);
      }
      if (g.role !== 'leader') {
        const leader = deps.leadership.members().find((m) => m.node === g.leader);
        throw new BadRequestError(
          ErrorCodes.NOT_LEADER,
          `${deps.node} does not lead ${id} (its state here: ${g.role}); ask its leader ${g.leader ?? '(none)'}`,
          [leader ? `leader API: ${leader.apiUrl}` : 'the group has no leader right now'],
          409,
        );
      }
      const started = performance.now();
      await deps.leadership.switchover(id, to, timeoutMs ? { timeoutMs } : {});
      return { group: id, leader: to, tookMs: Math.round(performance.now() - started) };
    },
  );

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  return app;
}

/**
 * Never none, as the API says it: why this node's role last changed, why it does not drive a group
 * it leads, and when and why it last handed the group on (the leadership's record, else the driver's).
 */
function handOnView(
  g: GroupLeadership,
  d: GroupDriver | undefined,
): {
  reason: string | null;
  problem: string | null;
  relinquished: { reason: string; atMs: number; cause?: string; epoch?: number } | null;
} {
  const own = d?.driveStatus;
  return {
    reason: g.reason ?? null,
    problem: own?.problem ?? null,
    relinquished: own?.relinquished ?? g.relinquished ?? null,
  };
}

/** Who did it: the operator name a client sends (X-Coolctl-Operator, as the dashboard does), else its address. */
function operatorOf(req: { headers: Record<string, unknown>; ip: string }): string {
  const name = req.headers['x-coolctl-operator'];
  return typeof name === 'string' && /^[\w .@-]{1,64}$/.test(name) ? name : req.ip;
}

function notFound(id: string, groups: string[]): BadRequestError {
  return new BadRequestError(
    ErrorCodes.BAD_REQUEST,
    `unknown control group "${id}"`,
    [`one of: ${groups.join(', ')}`],
    404,
  );
}
