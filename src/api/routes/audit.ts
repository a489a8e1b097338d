// The cluster's audit trail (./audit/audit-trail.ts): the same entries on every node, newest last.
import { type FastifyPluginAsyncTypebox, Type as T } from '@fastify/type-provider-typebox';
import type { ApiDeps } from '../api-deps.ts';
import { AUDIT_KINDS } from '../audit/audit-trail.ts';
import { ErrorBody } from '../error-body.ts';

export const auditRoutes: FastifyPluginAsyncTypebox<ApiDeps> = async (app, deps) => {
  app.get(
    '/api/v1/audit',
    {
      config: { access: 'viewer' },
      schema: {
        description: `The cluster’s audit trail, kept in etcd (the same on every node; it survives restarts and failovers): every state-changing request that passed authentication, its schema and the limiter, with the authenticated user, node, target, values (no secrets) and answer — written before the action runs (outcome pending) and completed in place with the answer (outcome answered, same seq); one whose outcome never came (its node stopped or lost etcd mid-action, or it is still running) reads outcome pending, status null and error COOLCTL_E_AUDIT_NO_OUTCOME, never as a success — every leadership a node gained, and failed sign-ins (kind failed-sign-in: one entry per name and address a minute per node, with a count). seq is the entry's etcd revision; lastSeq is the newest row read (page on with since=lastSeq). A value under the trail's prefix that is no entry this release writes (anyone with etcd write access can put one) is left out, counted in coolctl_audit_entries_unreadable_total and logged. Retention: the newest ${deps.audit.maxEntries} entries, none older than ${Math.round(deps.audit.maxAgeMs / 86_400_000)} days.`,
        querystring: T.Object(
          {
            since: T.Optional(T.Integer({ minimum: 0, description: 'only entries with a higher seq' })),
            limit: T.Optional(
              T.Integer({ minimum: 1, maximum: 1000, description: 'at most this many (the newest)' }),
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          200: {
            type: 'object',
            properties: {
              node: { type: 'string' },
              capacity: { type: 'integer' },
              lastSeq: { type: 'integer' },
              entries: {
                type: 'array',
                items: {
                  type: 'object',
                  additionalProperties: true,
                  properties: {
                    seq: { type: 'integer' },
                    atMs: { type: 'number' },
                    kind: { type: 'string', enum: AUDIT_KINDS },
                  },
                },
              },
            },
          },
          400: ErrorBody,
        },
      },
    },
    async (req) => {
      const { since, limit } = req.query;
      const { entries, lastSeq } = await deps.audit.list({ since: since ?? 0, limit: limit ?? 200 });
      return { node: deps.node, capacity: deps.audit.maxEntries, lastSeq, entries };
    },
  );
};
