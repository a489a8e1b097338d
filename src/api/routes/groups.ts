// One control group: its view (viewer), an operator's manual command for its units, and a
// switchover to another node (operator). Under the control law a command is an override kept in
// etcd (any node takes it); a hold group's command and a switchover go to the group's leader, and
// a node that does not lead answers 409 with the leader's API address.
import { type FastifyPluginAsyncTypebox, Type as T } from '@fastify/type-provider-typebox';
import { BadRequestError, CoolctlError, ErrorCodes } from '../../errors.ts';
import { AnswerChanges } from '../answer-changes.ts';
import { ANSWER_REVISION_PATTERN } from '../answer-revision.ts';
import type { ApiDeps } from '../api-deps.ts';
import { ErrorBody } from '../error-body.ts';
import { Name } from '../request-schema.ts';
import { GroupParams, handOnView, notFound, Ranged } from '../route-helpers.ts';
import { REFUSED, UnitOverrideView } from './operator-answers.ts';

const HeldView = T.Object({ fanPct: T.Number(), supplySetpointC: T.Number() });

/**
 * How long one take of the group views serves every page: under the pages' 1.5 s poll, so each
 * read brings what the control loops did since the last (they write once a 1 s period).
 */
const GROUP_VIEWS_TAKE_MAX_AGE_MS = 1000;

type GroupView = ReturnType<typeof groupView>;
type GroupViewSection = 'groups' | 'processStates';
const GROUP_VIEW_SECTIONS: readonly GroupViewSection[] = ['groups', 'processStates'];
interface GroupViews {
  node: string;
  atMs: number;
  /** The views in the order the full answer lists them. */
  list: GroupView[];
  groups: Record<string, GroupView>;
  processStates: Record<string, GroupView['processState']>;
}

/** A view changes with any field but the per-period ones (sent apart); a process state with any. */
function groupViewSignature(section: GroupViewSection, entry: unknown): string {
  if (section === 'processStates') return JSON.stringify(entry);
  const v = entry as GroupView;
  return JSON.stringify({
    ...v,
    processState: undefined,
    units: v.units.map((u) => ({ ...u, lastWriteOkMs: undefined })),
  });
}

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

  // One take of every group view per control period for every page, and what changed since a
  // page's last take (../answer-changes.ts). The per-period fields (each unit's last good write,
  // the process state row) change every period for every group: they are not a view's change but
  // are sent beside the changed views, compactly.
  const views = new AnswerChanges<GroupViews, GroupViewSection>({
    sections: GROUP_VIEW_SECTIONS,
    signature: groupViewSignature,
    maxAgeMs: GROUP_VIEWS_TAKE_MAX_AGE_MS,
  });
  const takeViews = async (): Promise<GroupViews> => {
    const list = deps.leadership.groups().map((g) => groupView(deps, g, { sensors: false }));
    const groups: Record<string, GroupView> = {};
    const processStates: Record<string, GroupView['processState']> = {};
    for (const v of list) {
      groups[v.id] = v;
      processStates[v.id] = v.processState;
    }
    // After the views: a unit's last good write is never later than the answer's time.
    return { node: deps.node, atMs: Date.now(), list, groups, processStates };
  };
  app.get(
    '/api/v1/groups',
    {
      config: { access: 'viewer' },
      schema: {
        description:
          'Every control group this node serves, each as `GET /api/v1/groups/{id}` answers it but without `sensors` (the group’s sensor view, per rack: the bulk of a full site’s answer; `/api/v1/site/live` has what the dashboard shows of it), in one answer: the dashboard reads each leader once per refresh, not each group (a node leading 100 groups would otherwise take 100 requests every 1.5 s per open page). Taken once a second for every reader. `rev` names the take; a reader that sends it back as `since` gets `groups` holding only the views that changed after it, not counting the fields that change every control period (each unit’s `lastWriteOkMs`, the `processState` row), and those apart: `processStates` (group id → its `processState`, the ones that changed) and `lastWriteOkAgoMs` (group id → for each of its units, in the order of its view, ms between its `lastWriteOkMs` and the answer’s `atMs`, or null: no good write) for every group not in `groups`; `since` set. Without `since`, or with a revision this node no longer knows (it restarted, its set of groups changed), the full answer (`since` null).',
        querystring: T.Object(
          {
            since: T.Optional(
              T.String({
                pattern: ANSWER_REVISION_PATTERN,
                description: 'the `rev` of the answer the reader holds: only what changed after it',
              }),
            ),
          },
          { additionalProperties: false },
        ),
      },
    },
    async (req, reply) => {
      const take = await views.current(takeViews);
      const rev = views.revision(take);
      const changed = views.changedSince(take, req.query.since);
      // A string is sent as it is (no serialiser): the full answer is made once per take.
      reply.type('application/json; charset=utf-8');
      const { node, atMs, list } = take.figures;
      if (!changed) return views.fullJson(take, () => ({ node, atMs, groups: list, rev, since: null }));
      const lastWriteOkAgoMs: Record<string, (number | null)[]> = {};
      for (const v of list)
        if (!(v.id in changed.groups))
          lastWriteOkAgoMs[v.id] = v.units.map((u) =>
            typeof u.lastWriteOkMs === 'number' ? atMs - u.lastWriteOkMs : null,
          );
      return JSON.stringify({
        node,
        atMs,
        groups: list.filter((v) => v.id in changed.groups),
        processStates: changed.processStates,
        lastWriteOkAgoMs,
        rev,
        since: req.query.since,
      });
    },
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
