// The cluster as this node sees it: members, and per control group its leader, epoch and this
// node's state; and this node's process-state cache with its peer links. Read by any viewer. A reader
// that names a revision (`since`, ../answer-changes.ts) gets only what changed after it; a reader
// that names none gets the answer other tools rely on (PRODUCT.md), unchanged to the byte.
import { type FastifyPluginAsyncTypebox, Type as T } from '@fastify/type-provider-typebox';
import type { Member } from '../../cluster/leadership.ts';
import { AnswerChanges } from '../answer-changes.ts';
import { ANSWER_REVISION_PATTERN } from '../answer-revision.ts';
import type { ApiDeps } from '../api-deps.ts';
import { handOnView } from '../route-helpers.ts';

/**
 * Members gone (a node left) and groups gone (a reload) remembered by id for change-only answers: a
 * page reads every 1.5 s, so only a mass change outruns it, and that reader reads whole.
 */
const CLUSTER_GONE_REMEMBERED_MAX = 1000;

type ClusterSection = 'members' | 'groups';
type GroupRow = ReturnType<typeof groupRow>;
/** One take of the answer: the entries by id (what changes are told by) and in the answer's order. */
interface ClusterTake {
  node: string;
  memberList: Member[];
  groupList: GroupRow[];
  members: Record<string, Member>;
  groups: Record<string, GroupRow>;
}

function groupRow(deps: ApiDeps, g: ReturnType<ApiDeps['leadership']['groups']>[number]) {
  return {
    id: g.group,
    leader: g.leader,
    epoch: g.epoch,
    state: g.role,
    sinceMs: g.sinceMs,
    driving: deps.drivers.get(g.group)?.driving ?? false,
    ...handOnView(g, deps.drivers.get(g.group)),
  };
}

export const clusterRoutes: FastifyPluginAsyncTypebox<ApiDeps> = async (app, deps) => {
  // A new take for every read (the answer is this node's memory, cheaper than a stale second would
  // cost a reader that just switched a group over); takes only number the changes, by id.
  const changes = new AnswerChanges<ClusterTake, ClusterSection>({
    sections: ['members', 'groups'],
    signature: (_section, entry) => JSON.stringify(entry),
    maxAgeMs: 0,
    comeAndGo: { rememberGoneMax: CLUSTER_GONE_REMEMBERED_MAX },
  });
  const take = async (): Promise<ClusterTake> => {
    const memberList = deps.leadership.members();
    const groupList = deps.leadership.groups().map((g) => groupRow(deps, g));
    return {
      node: deps.node,
      memberList,
      groupList,
      // fromEntries defines each id as an own key, whatever it spells.
      members: Object.fromEntries(memberList.map((m) => [m.node, m])),
      groups: Object.fromEntries(groupList.map((g) => [g.id, g])),
    };
  };
  const byId = <E>(list: E[], id: (e: E) => string, changed: Record<string, unknown>) =>
    list.filter((e) => Object.hasOwn(changed, id(e)));

  app.get(
    '/api/v1/cluster',
    {
      config: { access: 'viewer' },
      schema: {
        description:
          'Members of the cluster and, per control group, its leader, epoch and this node’s state. Without `since` and `changes`, the answer other tools rely on: `node`, `members`, `groups`, nothing more. With either, the answer also has `rev`, naming it; a reader that sends it back as `since` gets no `members` and no `groups` while nothing changed (`since` set: what it holds is current). When something changed: with `changes=only`, `members` holds only the members new or changed after `since` and `groups` only the groups whose leader, epoch, state, driving or hand-on (`reason`, `problem`, `relinquished`) changed or that are new, each in the order of the whole answer, and `removed` the node names and group ids that left (`since` set); without it, the whole answer (`since` null). A revision this node does not know (it restarted; too old) gets the whole answer (`since` null). Members are ordered by node name and groups as the whole answer orders them; a new group comes after those held.',
        querystring: T.Object(
          {
            since: T.Optional(
              T.String({
                pattern: ANSWER_REVISION_PATTERN,
                description: 'the `rev` of the answer the reader holds: only what changed after it',
              }),
            ),
            changes: T.Optional(
              T.Literal('only', {
                description:
                  'with `since`: answer only the members and groups changed after it and the ids removed; without: the whole answer with its `rev`',
              }),
            ),
          },
          { additionalProperties: false },
        ),
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
              removed: {
                type: 'object',
                description:
                  'with `changes=only`: the members (node names) and groups (ids) that left after `since`',
                properties: {
                  members: { type: 'array', items: { type: 'string' } },
                  groups: { type: 'array', items: { type: 'string' } },
                },
              },
              rev: { type: 'string', description: 'this answer: send it back as `since`' },
              since: {
                type: ['string', 'null'],
                description: 'the `since` this answer holds the changes after; null: the whole answer',
              },
            },
          },
        },
      },
    },
    async (req) => {
      const t = await changes.current(take);
      const { node, memberList, groupList } = t.figures;
      const { since, changes: only } = req.query;
      // A reader that names neither gets the answer as it always was: no revision in it.
      if (since === undefined && only === undefined) return { node, members: memberList, groups: groupList };
      const rev = changes.revision(t);
      const changed = changes.changedSince(t, since);
      const removed = changed
        ? { members: changes.goneSince(t, since, 'members'), groups: changes.goneSince(t, since, 'groups') }
        : { members: [], groups: [] };
      const none =
        changed &&
        Object.keys(changed.members).length === 0 &&
        Object.keys(changed.groups).length === 0 &&
        removed.members.length === 0 &&
        removed.groups.length === 0;
      if (none) return { node, rev, since };
      if (!changed || only !== 'only')
        return { node, members: memberList, groups: groupList, rev, since: null };
      return {
        node,
        members: byId(memberList, (m) => m.node, changed.members),
        groups: byId(groupList, (g) => g.id, changed.groups),
        removed,
        rev,
        since,
      };
    },
  );

  app.get(
    '/api/v1/cache',
    {
      config: { access: 'viewer' },
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
};
