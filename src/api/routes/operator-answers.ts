// What the routes that steer cooling answer, as the OpenAPI description states it: the operator
// state of a group (pause, overrides, who changed it last and when), and every refusal they can
// meet — the route's own and the guard's and limiter's before it (no identity, a role too low, a
// body not sent as JSON, too many actions), and etcd out of reach (503, retry).
import { Type as T } from '@fastify/type-provider-typebox';
import { ErrorBody } from '../error-body.ts';

const Nullable = <S extends ReturnType<typeof T.String | typeof T.Number>>(s: S) => T.Union([s, T.Null()]);

export const UnitOverrideView = T.Object({
  fanPct: T.Optional(T.Number()),
  supplySetpointC: T.Optional(T.Number()),
  toLocal: T.Optional(T.Boolean()),
});

/** A group's operator state as stored in etcd (src/cluster/operator-state.ts). */
export const OperatorStateView = T.Object({
  paused: T.Boolean(),
  overrides: T.Record(T.String(), UnitOverrideView, { description: 'per unit id' }),
  by: Nullable(T.String({ description: 'who changed it last (the authenticated user)' })),
  atMs: Nullable(T.Number({ description: 'when, ms since the Unix epoch' })),
  reason: Nullable(T.String({ description: 'why the group is paused' })),
});

/** The refusals every state-changing route may answer before its handler runs, and etcd out of reach. */
export const REFUSED = {
  400: ErrorBody,
  401: ErrorBody,
  403: ErrorBody,
  404: ErrorBody,
  415: ErrorBody,
  429: ErrorBody,
  503: ErrorBody,
} as const;
