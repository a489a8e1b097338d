// The operators' state of a group, kept in etcd (any node takes it; it survives restarts and
// failovers): maintenance pause and resume, and per-unit overrides. Operator role; each change
// records who made it (the authenticated user) in the stored state as well as in the audit trail.
import { type FastifyPluginAsyncTypebox, Type as T } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { type OperatorState, overrideProblem } from '../../cluster/operator-state.ts';
import { BadRequestError, ErrorCodes } from '../../errors.ts';
import type { ApiDeps } from '../api-deps.ts';
import { Name, NoBody, Text } from '../request-schema.ts';
import { GroupParams, notFound, Ranged } from '../route-helpers.ts';
import { OperatorStateView, REFUSED } from './operator-answers.ts';

const PauseBody = T.Object({ reason: T.Optional(Text({ maxLength: 200 })) }, { additionalProperties: false });
const OverrideBody = T.Object(
  {
    fanPct: T.Optional(Ranged('fanPct')),
    supplySetpointC: T.Optional(Ranged('supplySetpointC')),
    toLocal: T.Optional(T.Boolean()),
  },
  { minProperties: 1, additionalProperties: false },
);
const UnitParams = T.Object({ id: Name, ahu: Name });
const ANSWERS = {
  200: T.Object({ group: T.String(), operator: OperatorStateView }, { description: 'what is stored now' }),
  ...REFUSED,
};

export const operatorRoutes: FastifyPluginAsyncTypebox<ApiDeps> = async (app, deps) => {
  /** Applies `change` to the group's stored operator state, after checking the group and unit. */
  const apply = async (
    req: FastifyRequest,
    params: { id: string; ahu?: string },
    change: (cur: OperatorState) => OperatorState,
    opts: { storedUnit?: boolean } = {},
  ) => {
    const { id, ahu } = params;
    const d = deps.drivers.get(id);
    if (!d) throw notFound(id, deps.groups);
    // A unit a reload took out of the group may still have an override in etcd: it can be removed
    // (else it would come back in force with the unit), never set.
    const overrides = deps.leadership.operator?.(id)?.overrides;
    const stored = opts.storedUnit && ahu !== undefined && !!overrides && Object.hasOwn(overrides, ahu);
    if (ahu !== undefined && !stored && !d.units().some((u) => u.ahu === ahu))
      throw new BadRequestError(
        ErrorCodes.BAD_REQUEST,
        `${ahu} is not a unit of ${id}`,
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
    const next = await update(id, (cur) => ({
      ...change(cur),
      by: req.identity?.user ?? req.ip,
      atMs: Date.now(),
    }));
    return { group: id, operator: next };
  };

  app.post(
    '/api/v1/groups/:id/pause',
    {
      config: { access: 'operator' },
      schema: {
        description:
          'Maintenance pause, kept in etcd (survives restarts and failovers; any node takes it): the cluster stops writing the group and hands its units to their local control.',
        response: ANSWERS,
        params: GroupParams,
        body: PauseBody,
      },
    },
    async (req) =>
      apply(req, req.params, (cur) => ({ ...cur, paused: true, reason: req.body?.reason ?? null })),
  );

  app.post(
    '/api/v1/groups/:id/resume',
    {
      config: { access: 'operator' },
      schema: {
        description:
          'Ends a pause: the group’s leader takes its units back under remote control, from what they run now.',
        response: ANSWERS,
        params: GroupParams,
        body: NoBody,
      },
    },
    async (req) => apply(req, req.params, (cur) => ({ ...cur, paused: false, reason: null })),
  );

  app.put(
    '/api/v1/groups/:id/overrides/:ahu',
    {
      config: { access: 'operator' },
      schema: {
        description:
          'An operator override for one unit, kept in etcd (any node takes it; it survives restarts and failovers, and holds until deleted): a fixed fan % and/or supply setpoint, or toLocal (hand the unit to its local control). The safety layer still applies its hard limits (the unit’s fan floor, the dew-point floor of the setpoint), and while a group inlet is at alarm or rising near the ASHRAE rate limit the override may cool but not warm: the group’s `reasons` (GET /api/v1/groups/{id}) say when it is held.',
        response: ANSWERS,
        params: UnitParams,
        body: OverrideBody,
      },
    },
    async (req) =>
      apply(req, req.params, (cur) => {
        const ov = req.body;
        const problem = overrideProblem(ov);
        if (problem)
          throw new BadRequestError(ErrorCodes.BAD_REQUEST, `override refused: ${problem}`, [problem]);
        return { ...cur, overrides: { ...cur.overrides, [req.params.ahu]: ov } };
      }),
  );

  app.delete(
    '/api/v1/groups/:id/overrides/:ahu',
    {
      config: { access: 'operator' },
      schema: {
        description:
          'Removes a unit’s override: the control law takes it back bumplessly from what it runs now. An override left in etcd for a unit a reload took out of the group can be removed too.',
        response: ANSWERS,
        params: UnitParams,
        body: NoBody,
      },
    },
    async (req) =>
      apply(
        req,
        req.params,
        (cur) => {
          const { [req.params.ahu]: _gone, ...overrides } = cur.overrides;
          return { ...cur, overrides };
        },
        { storedUnit: true },
      ),
  );
};
