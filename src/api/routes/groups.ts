// One control group: its view (viewer), an operator's manual command for its units, and a
// switchover to another node (operator). Under the control law a command is an override kept in
// etcd (any node takes it); a hold group's command and a switchover go to the group's leader, and
// a node that does not lead answers 409 with the leader's API address.
import { type FastifyPluginAsyncTypebox, Type as T } from '@fastify/type-provider-typebox';
import { BadRequestError, CoolctlError, ErrorCodes } from '../../errors.ts';
import type { ApiDeps } from '../app.ts';
import { ErrorBody } from '../error-body.ts';
import { Name } from '../request-schema.ts';
import { GroupParams, handOnView, notFound, Ranged } from '../route-helpers.ts';
import { REFUSED, UnitOverrideView } from './operator-answers.ts';

const HeldView = T.Object({ fanPct: T.Number(), supplySetpointC: T.Number() });

export const groupRoutes: FastifyPluginAsyncTypebox<ApiDeps> = async (app, deps) => {
  app.get(
    '/api/v1/groups/:id',
    {
      config: { access: 'viewer' },
      schema: {
        description:
          'One control group: leader, epoch, this node’s state, and the units it drives with their held commands. `problem`: this node leads the group but does not drive it, and why; `relinquished`: the last time this node handed it on for that, with the reason; `drive`: the undriven bound (undrivenLimitMs) and, while the relinquish back-off holds, until when (relinquishHeldUntilMs, ms since the Unix epoch); each unit: its last error and its count of stale-epoch refusals its epoch did not prove (refusals). `operatorProblem`: the stored operator state of the group is invalid (what is wrong, its key, since when) and this node acts on the last valid one (keptLastValid) or paused the group for lack of one; null when the stored state is in force.',
        params: GroupParams,
        response: { 404: ErrorBody },
      },
    },
    async (req) => {
      const { id } = req.params;
      const g = deps.leadership.groups().find((x) => x.group === id);
      if (!g) throw notFound(id, deps.groups);
      return groupView(deps, g);
    },
  );

  app.get(
    '/api/v1/groups',
    {
      config: { access: 'viewer' },
      schema: {
        description:
          'Every control group this node serves, each as `GET /api/v1/groups/{id}` answers it but without `sensors` (the group’s sensor view, per rack: the bulk of a full site’s answer; `/api/v1/site/live` has what the dashboard shows of it), in one answer: the dashboard reads each leader once per refresh, not each group (a node leading 100 groups would otherwise take 100 requests every 1.5 s per open page).',
      },
    },
    async () => ({
      node: deps.node,
      atMs: Date.now(),
      groups: deps.leadership.groups().map((g) => groupView(deps, g, { sensors: false })),
    }),
  );

  app.post(
    '/api/v1/groups/:id/commands',
    {
      config: { access: 'operator' },
      schema: {
        description:
          'Operator manual command for the group’s units (all, or one with `ahu`). Under the control law (every group a controller runs) it becomes each unit’s override, kept in etcd: any node takes it, and it survives failovers and restarts (`overrides` answers what is stored). A hold group’s command is held by its leader and carried in the process state (`held`); another node answers 409 with the leader’s API address.',
        params: GroupParams,
        body: T.Object(
          {
            ahu: T.Optional(Name),
            fanPct: T.Optional(Ranged('fanPct')),
            supplySetpointC: T.Optional(Ranged('supplySetpointC')),
          },
          { minProperties: 1, additionalProperties: false },
        ),
        response: {
          200: T.Object(
            {
              group: T.String(),
              overrides: T.Optional(
                T.Record(T.String(), UnitOverrideView, {
                  description: 'a group under the control law: the overrides stored now (etcd)',
                }),
              ),
              held: T.Optional(
                T.Array(HeldView, { description: 'a hold group: the commands its leader holds now' }),
              ),
            },
            { description: 'overrides (control law) or held (hold group)' },
          ),
          409: ErrorBody,
          ...REFUSED,
        },
      },
    },
    async (req) => {
      const { id } = req.params;
      const { ahu, ...cmd } = req.body;
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
          return { ...cur, overrides, by: req.identity?.user ?? req.ip, atMs: Date.now() };
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

  app.post(
    '/api/v1/groups/:id/switchover',
    {
      config: { access: 'operator' },
      schema: {
        description:
          'Hands the group to the named node (graceful; the target leads within about 0.2 s). Send it to the current leader: another node, a leadership that moved meanwhile, a switchover already in progress or one the target did not complete in time answers 409 with the reason (COOLCTL_E_NOT_LEADER, COOLCTL_E_SWITCHOVER_FAILED); the group stays led throughout.',
        params: GroupParams,
        body: T.Object(
          {
            to: Name,
            timeoutMs: T.Optional(T.Integer({ minimum: 100, maximum: 60_000 })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: T.Object({ group: T.String(), leader: T.String(), tookMs: T.Number() }),
          409: ErrorBody,
          ...REFUSED,
        },
      },
    },
    async (req) => {
      const { id } = req.params;
      const { to, timeoutMs } = req.body;
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
      try {
        await deps.leadership.switchover(id, to, timeoutMs ? { timeoutMs } : {});
      } catch (err) {
        // A refusal is the request aimed wrong or at a moment that passed (leadership moved since
        // the check above, another switchover in progress, the target did not take over in time):
        // 409 with the reason — a refusal, counted and logged as one, not a failure of the node.
        // etcd out of reach stays what it is (503: retry).
        const refused = [ErrorCodes.NOT_LEADER, ErrorCodes.SWITCHOVER_FAILED] as string[];
        if (err instanceof CoolctlError && refused.includes(err.code)) {
          const now = deps.leadership.groups().find((x) => x.group === id);
          const leader = deps.leadership.members().find((m) => m.node === now?.leader);
          throw new BadRequestError(
            err.code === ErrorCodes.NOT_LEADER ? ErrorCodes.NOT_LEADER : ErrorCodes.SWITCHOVER_FAILED,
            err.message,
            [
              err.code === ErrorCodes.NOT_LEADER && leader
                ? `leader API: ${leader.apiUrl}`
                : 'see GET /api/v1/cluster, then retry',
            ],
            409,
          );
        }
        throw err;
      }
      return { group: id, leader: to, tookMs: Math.round(performance.now() - started) };
    },
  );
};

/**
 * One group as this node holds it: the answer of `GET /api/v1/groups/{id}`, and (without the sensor
 * view, which is not even built: it is the costly part) a row of `GET /api/v1/groups`.
 */
function groupView(
  deps: ApiDeps,
  g: ReturnType<ApiDeps['leadership']['groups']>[number],
  opts: { sensors: boolean } = { sensors: true },
) {
  const id = g.group;
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
    operatorProblem: deps.leadership.operatorProblem?.(id) ?? null,
    ...(opts.sensors ? { sensors: deps.sensors?.view(id) ?? null } : {}),
    units: d?.units() ?? [],
    processState: row
      ? { epoch: row.epoch, seq: row.seq, writer: row.writer, atMs: row.atMs, bytes: row.body.length }
      : null,
  };
}
