// The cluster's alarms (src/alarms/, docs/alarms.md): kept in etcd, so any node answers the same
// list and an acknowledgement made on one node shows on all. Viewers read; operators acknowledge
// and shelve. Each action is written to the audit trail by the guard, with the alarm as its target.
import { type FastifyPluginAsyncTypebox, Type as T } from '@fastify/type-provider-typebox';
import { ALARM_ID_PATTERN, type Alarm, type AlarmApi, MAX_SHELF_MS, SEVERITIES } from '../../alarms/alarm.ts';
import { BadRequestError, ErrorCodes } from '../../errors.ts';
import { AnswerChanges } from '../answer-changes.ts';
import { ANSWER_REVISION_PATTERN } from '../answer-revision.ts';
import type { ApiDeps } from '../api-deps.ts';
import { ErrorBody } from '../error-body.ts';
import { NoBody, Text } from '../request-schema.ts';

/** How long one read of the alarm list serves every reader. */
const ALARM_TAKE_MAX_AGE_MS = 1000;
/**
 * Gone alarms (cleared off the active list, dropped by retention) remembered by id for change-only
 * answers: a page reads every 1.5 s, so only a mass clear outruns it, and that reader reads whole.
 */
const ALARMS_GONE_REMEMBERED_MAX = 2000;
/** One take of a list: the alarms by id (what changes are told by) and in the answer's order. */
interface AlarmTake {
  alarms: Record<string, Alarm>;
  list: Alarm[];
}
const Iso = T.String({ format: 'date-time' });
const Nullable = <S extends ReturnType<typeof T.String>>(s: S) => T.Union([s, T.Null()]);

/** One alarm: the contract the dashboard and `coolctl alarms` read. */
export const AlarmSchema = T.Object(
  {
    id: T.String({ description: 'condition (kind~group~subject) and when it was raised' }),
    kind: T.String({ description: 'docs/alarms.md lists every kind' }),
    severity: T.Union(SEVERITIES.map((s) => T.Literal(s))),
    group: T.Union([T.String(), T.Null()]),
    subject: T.Union([T.String(), T.Null()], { description: 'the rack, unit or node it is about' }),
    message: T.String(),
    state: T.Union([T.Literal('raised'), T.Literal('acknowledged'), T.Literal('cleared')]),
    raisedAt: Iso,
    clearedAt: Nullable(Iso),
    ack: T.Union([T.Object({ user: T.String(), at: Iso, comment: T.String() }), T.Null()]),
    shelvedUntil: Nullable(Iso),
    value: T.Union([T.Number(), T.Null()], { description: 'the measured value at raise (°C, °C/h)' }),
  },
  { $id: 'Alarm' },
);

const AlarmParams = T.Object({ alarm: T.String({ pattern: ALARM_ID_PATTERN }) });
const Comment = Text({ maxLength: 500 });
const ONE = {
  200: T.Object({ alarm: T.Ref('Alarm') }),
  400: ErrorBody,
  404: ErrorBody,
  409: ErrorBody,
  503: ErrorBody,
};

export const alarmRoutes: FastifyPluginAsyncTypebox<ApiDeps> = async (app, deps) => {
  app.addSchema(AlarmSchema);
  const alarms = (): AlarmApi => {
    if (!deps.alarms) throw new BadRequestError(ErrorCodes.BAD_REQUEST, 'this node keeps no alarms', [], 503);
    return deps.alarms;
  };

  // One read of the list per state and second for every page (an open dashboard asks every 1.5 s,
  // and at full size the list is etcd's whole alarm prefix: ~1 MB), shared with what changed in it
  // by alarm id (../answer-changes.ts). An action through this node expires the take, so its page
  // reads anew. An alarm unchanged since the last list is the same object (alarm.ts, listAlarms):
  // its signature is made once, not once a second for each of thousands.
  const signatures = new WeakMap<Alarm, string>();
  const changes = new Map(
    (['active', 'all'] as const).map((which) => [
      which,
      new AnswerChanges<AlarmTake, 'alarms'>({
        sections: ['alarms'],
        signature: (_section, entry) => {
          const alarm = entry as Alarm;
          let sig = signatures.get(alarm);
          if (sig === undefined) {
            sig = JSON.stringify(alarm);
            signatures.set(alarm, sig);
          }
          return sig;
        },
        maxAgeMs: ALARM_TAKE_MAX_AGE_MS,
        comeAndGo: { rememberGoneMax: ALARMS_GONE_REMEMBERED_MAX },
      }),
    ]),
  );
  const takeOf = (which: 'active' | 'all') => async (): Promise<AlarmTake> => {
    const list = await alarms().list(which);
    // fromEntries defines each id as an own key, whatever it spells.
    return { list, alarms: Object.fromEntries(list.map((a) => [a.id, a])) };
  };
  // Before the answer leaves: the page reads the list as soon as its action is answered.
  app.addHook('onSend', async (req, _reply, payload) => {
    if (req.method === 'POST' && req.routeOptions.url?.startsWith('/api/v1/alarms/:alarm/'))
      for (const c of changes.values()) c.expire();
    return payload;
  });

  app.get(
    '/api/v1/alarms',
    {
      config: { access: 'viewer' },
      schema: {
        description:
          'The cluster’s alarms, newest first, as etcd keeps them (the same on every node), plus this node’s own while etcd cannot take them (etcd-quorum-lost, etcd-no-space). `active`: not cleared (shelved ones included, with shelvedUntil); `all`: with the cleared ones retention keeps. Read from etcd at most once a second for every reader (an acknowledgement, shelve or unshelve through this node reads anew). `rev` names the list; a reader that sends it back as `since` gets no `alarms` while nothing changed (`since` set: what it holds is current). When something changed: with `changes=only`, `alarms` holds only the alarms new or changed in any field after `since` (newest first) and `removed` the ids that left the list (cleared off `active`, dropped by retention), `since` set; without it, the whole list (`since` null), as a reader of an older version expects. A revision this node does not know (it restarted; a reader of the other `state`; too old) gets the whole list (`since` null). The list is ordered newest first (`raisedAt`), ties by `id`: a reader that merges changes by id and sorts so holds what a whole read answers.',
        querystring: T.Object(
          {
            state: T.Optional(T.Union([T.Literal('active'), T.Literal('all')], { default: 'active' })),
            since: T.Optional(
              T.String({
                pattern: ANSWER_REVISION_PATTERN,
                description: 'the `rev` of the list the reader holds',
              }),
            ),
            changes: T.Optional(
              T.Literal('only', {
                description: 'with `since`: answer only the alarms changed after it and the ids removed',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          200: T.Object({
            alarms: T.Optional(
              T.Array(T.Ref('Alarm'), {
                description: 'absent: unchanged since `since`; with `since` set, only the changed ones',
              }),
            ),
            removed: T.Optional(
              T.Array(T.String(), {
                description: 'with `changes=only`: ids that left the list after `since`',
              }),
            ),
            rev: T.Optional(T.String({ description: 'this list: send it back as `since`' })),
            since: T.Optional(T.Union([T.String(), T.Null()])),
          }),
          400: ErrorBody,
          503: ErrorBody,
        },
      },
    },
    async (req, reply) => {
      const which = req.query.state ?? 'active';
      const list = changes.get(which)!;
      const take = await list.current(takeOf(which));
      const rev = list.revision(take);
      const { since, changes: only } = req.query;
      const changed = list.changedSince(take, since)?.alarms;
      const removed = changed ? list.goneSince(take, since, 'alarms') : [];
      // A string is sent as it is: the whole list's JSON is made once per take for every reader.
      reply.type('application/json; charset=utf-8');
      if (changed && Object.keys(changed).length === 0 && removed.length === 0)
        return JSON.stringify({ rev, since });
      if (!changed || only !== 'only')
        return list.fullJson(take, (t) => ({ alarms: t.figures.list, rev, since: null }));
      return JSON.stringify({
        alarms: take.figures.list.filter((a) => Object.hasOwn(changed, a.id)),
        removed,
        rev,
        since,
      });
    },
  );
  app.post(
    '/api/v1/alarms/:alarm/ack',
    {
      config: { access: 'operator' },
      schema: {
        description:
          'Acknowledges an alarm as the signed-in user, with an optional comment; the first acknowledgement stays (a second answers the alarm as it is).',
        params: AlarmParams,
        body: T.Object({ comment: T.Optional(Comment) }, { additionalProperties: false }),
        response: ONE,
      },
    },
    async (req) => ({
      alarm: await alarms().acknowledge(req.params.alarm, user(req), req.body.comment ?? ''),
    }),
  );

  app.post(
    '/api/v1/alarms/:alarm/shelve',
    {
      config: { access: 'operator' },
      schema: {
        description:
          'Shelves an active alarm for durationS (60…86 400 s): it stays in the list with shelvedUntil and sends no notification until the shelf expires or it clears. A cleared alarm cannot be shelved (409).',
        params: AlarmParams,
        body: T.Object(
          {
            durationS: T.Integer({ minimum: 60, maximum: MAX_SHELF_MS / 1000 }),
            comment: T.Optional(Comment),
          },
          { additionalProperties: false },
        ),
        response: ONE,
      },
    },
    async (req) => ({
      alarm: await alarms().shelve(req.params.alarm, user(req), req.body.durationS, req.body.comment ?? ''),
    }),
  );

  app.post(
    '/api/v1/alarms/:alarm/unshelve',
    {
      config: { access: 'operator' },
      schema: { description: 'Ends a shelf now.', params: AlarmParams, body: NoBody, response: ONE },
    },
    async (req) => ({ alarm: await alarms().unshelve(req.params.alarm, user(req)) }),
  );

  app.get(
    '/api/v1/alarms/notifications',
    {
      config: { access: 'viewer' },
      schema: {
        description:
          'The alarm notifications (webhook, MQTT): per sink what was sent, what failed after every retry and what waits; and the latest failures with their error.',
        response: {
          200: T.Object({
            sinks: T.Array(
              T.Object({
                name: T.String(),
                target: T.String(),
                sent: T.Integer(),
                failed: T.Integer(),
                pending: T.Integer(),
              }),
            ),
            failures: T.Array(
              T.Object({
                sink: T.String(),
                alarm: T.String(),
                transition: T.String(),
                error: T.String(),
                atMs: T.Number(),
              }),
            ),
          }),
          503: ErrorBody,
        },
      },
    },
    async () => alarms().notifications(),
  );
};

function user(req: { identity: { user: string } | null; ip: string }): string {
  return req.identity?.user ?? req.ip;
}
