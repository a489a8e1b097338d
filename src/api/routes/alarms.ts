// The cluster's alarms (src/alarms/, docs/alarms.md): kept in etcd, so any node answers the same
// list and an acknowledgement made on one node shows on all. Viewers read; operators acknowledge
// and shelve. Each action is written to the audit trail by the guard, with the alarm as its target.
import { type FastifyPluginAsyncTypebox, Type as T } from '@fastify/type-provider-typebox';
import { ALARM_ID_PATTERN, type AlarmApi, SEVERITIES } from '../../alarms/alarm.ts';
import { MAX_SHELF_MS } from '../../alarms/shelf-clock.ts';
import { BadRequestError, ErrorCodes } from '../../errors.ts';
import type { ApiDeps } from '../app.ts';
import { ErrorBody } from '../error-body.ts';
import { NoBody, Text } from '../request-schema.ts';

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

  app.get(
    '/api/v1/alarms',
    {
      config: { access: 'viewer' },
      schema: {
        description:
          'The cluster’s alarms, newest first, as etcd keeps them (the same on every node), plus this node’s own while etcd cannot take them (etcd-quorum-lost, etcd-no-space). `active`: not cleared (shelved ones included, with shelvedUntil); `all`: with the cleared ones retention keeps.',
        querystring: T.Object(
          { state: T.Optional(T.Union([T.Literal('active'), T.Literal('all')], { default: 'active' })) },
          { additionalProperties: false },
        ),
        response: { 200: T.Object({ alarms: T.Array(T.Ref('Alarm')) }), 400: ErrorBody, 503: ErrorBody },
      },
    },
    async (req) => ({ alarms: await alarms().list(req.query.state ?? 'active') }),
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
