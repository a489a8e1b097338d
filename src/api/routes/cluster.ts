// The cluster as this node sees it: members, and per control group its leader, epoch and this
// node's state; and this node's process-state cache with its peer links. Read by any viewer.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { ApiDeps } from '../app.ts';
import { handOnView } from '../route-helpers.ts';

export const clusterRoutes: FastifyPluginAsyncTypebox<ApiDeps> = async (app, deps) => {
  app.get(
    '/api/v1/cluster',
    {
      config: { access: 'viewer' },
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
