// The operator dashboard, served by every controller node: the page (`GET /`, assets under /ui/),
// the data only it needs (site layout, live overlay, trends, audit log), and two things every API
// route gets from it: operator actions are written to the audit log, and the API answers
// cross-origin requests from the cluster's own members' pages (CORS), so a page opened on any node
// can send an operator action straight to the group's leader. Registered without encapsulation
// (skip-override) so its hooks see the routes of app.ts; nothing here opens a socket.
import { readFile } from 'node:fs/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { GroupProcessRow } from '../control/group-driver.ts';
import { BadRequestError, ErrorCodes } from '../errors.ts';
import type { GroupSensorView } from '../sensors/sensor-store.ts';
import type { ApiDeps } from './app.ts';
import { AuditLog } from './audit-log.ts';
import { ErrorBody } from './error-body.ts';
import { TrendRecorder } from './trends.ts';

/** How often the trends are sampled, and how far back they reach. */
export const TREND_PERIOD_MS = 2_000;
export const TREND_WINDOW_MS = 10 * 60_000;

/** The page's files: served from memory, read once when the API is built. */
const ASSETS = {
  'index.html': 'text/html; charset=utf-8',
  'dashboard.js': 'text/javascript; charset=utf-8',
  'dashboard.css': 'text/css; charset=utf-8',
} as const;
type AssetName = keyof typeof ASSETS;

// Everything from this node; fetch() may also reach the other members' APIs (operator actions
// sent to a group's leader, a group's view read from its leader).
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' http: https:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const OPERATOR_HEADER = 'x-coolctl-operator';

/**
 * HOOK — per-rack inlet temperatures for the floor map. The group sensor view carries the hottest
 * good inlet of the group but not yet one figure per rack; when it grows a
 * `rackInletsC: { [rack]: °C | null }` field, the map colours every rack by it with no other change.
 * Until then each rack shows "no data".
 */
export function rackInletsOf(view: GroupSensorView): Record<string, number | null> | null {
  const r = (view as GroupSensorView & { rackInletsC?: Record<string, number | null> }).rackInletsC;
  return r && typeof r === 'object' ? r : null;
}

const NullableNumber = { type: ['number', 'null'] } as const;

async function dashboardPlugin(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  const audit = deps.audit ?? new AuditLog();
  const log = deps.logger.child({ component: 'dashboard' });
  const assets = new Map<AssetName, Buffer>();
  for (const name of Object.keys(ASSETS) as AssetName[])
    assets.set(name, await readFile(new URL(`./ui/${name}`, import.meta.url)));

  // --- audit: every operator action (a POST to an API route) this node received, and its answer ---
  app.addHook('onSend', async (req, reply, payload) => {
    if (req.method !== 'POST') return payload;
    const route = req.routeOptions.url;
    if (!route?.startsWith('/api/')) return payload;
    let error: { code: string; message: string } | null = null;
    if (reply.statusCode >= 400 && typeof payload === 'string') {
      try {
        const b = JSON.parse(payload) as { error?: unknown; message?: unknown };
        error = { code: String(b.error ?? 'unknown'), message: String(b.message ?? '') };
      } catch {
        error = { code: 'unknown', message: payload.slice(0, 200) };
      }
    }
    const operator = req.headers[OPERATOR_HEADER];
    const entry = audit.record({
      kind: 'operator',
      action: route.split('/').at(-1) ?? route,
      method: req.method,
      path: req.url.split('?')[0] ?? req.url,
      group: (req.params as { id?: string } | undefined)?.id ?? null,
      params: req.body ?? null,
      clientIp: req.ip,
      operator: typeof operator === 'string' && operator.trim() ? operator.trim().slice(0, 64) : null,
      status: reply.statusCode,
      error,
    });
    log.info({ audit: entry }, 'operator action');
    return payload;
  });

  const onRole = (c: { group: string; from: string; to: string; epoch: number | null; reason: string }) => {
    audit.record({ kind: 'role', group: c.group, from: c.from, to: c.to, epoch: c.epoch, reason: c.reason });
  };
  deps.leadership.on('role', onRole);

  // --- trends: sampled by this node, so every node's page has them (see fanPctOf) ---
  const trends = new TrendRecorder(deps.groups, Math.ceil(TREND_WINDOW_MS / TREND_PERIOD_MS));
  const sample = () => {
    const now = Date.now();
    trends.keep(deps.groups); // the running config's groups: a reload may have changed them
    for (const g of deps.groups)
      trends.add(g, now, { fanPct: fanPctOf(deps, g), inletMaxC: viewOf(deps, g)?.inletMaxC ?? null });
  };
  let sampler: NodeJS.Timeout | undefined;
  app.addHook('onReady', async () => {
    sample();
    sampler = setInterval(sample, TREND_PERIOD_MS);
    sampler.unref();
  });
  app.addHook('onClose', async () => {
    clearInterval(sampler);
    deps.leadership.off('role', onRole);
  });

  // --- CORS: only the pages of this cluster's members (their advertised API origins) ---
  const allowedOrigin = (origin: string | undefined): boolean => {
    if (!origin) return false;
    return deps.leadership.members().some((m) => {
      try {
        return new URL(m.apiUrl).origin === origin;
      } catch {
        return false;
      }
    });
  };
  app.addHook('onRequest', async (req, reply) => {
    const origin = req.headers.origin;
    if (allowedOrigin(origin)) {
      reply.header('access-control-allow-origin', origin);
      reply.header('vary', 'origin');
    }
  });
  app.options(
    '/api/v1/*',
    {
      schema: {
        description:
          'CORS preflight: the API accepts cross-origin requests only from the dashboards of this cluster’s members (the origins of their advertised API URLs).',
        response: { 204: { type: 'null' } },
      },
    },
    async (req, reply) => {
      if (allowedOrigin(req.headers.origin)) {
        reply.header('access-control-allow-methods', 'GET, POST');
        reply.header('access-control-allow-headers', `content-type, ${OPERATOR_HEADER}`);
        reply.header('access-control-max-age', '600');
      }
      return reply.code(204).send();
    },
  );

  // --- the page ---
  const sendAsset = (reply: FastifyReply, name: AssetName) =>
    reply
      .type(ASSETS[name])
      .header('cache-control', 'no-cache')
      .header('x-content-type-options', 'nosniff')
      .header('content-security-policy', CSP)
      .send(assets.get(name));
  app.get(
    '/',
    { schema: { description: 'The operator dashboard (HTML; it polls this API).' } },
    async (_req, reply) => sendAsset(reply, 'index.html'),
  );
  app.get(
    '/ui/:file',
    {
      schema: {
        description: 'The dashboard’s script and style sheet.',
        params: {
          type: 'object',
          properties: { file: { type: 'string', enum: Object.keys(ASSETS) } },
          required: ['file'],
        },
        response: { 400: ErrorBody },
      },
    },
    async (req: FastifyRequest, reply) => sendAsset(reply, (req.params as { file: AssetName }).file),
  );

  // --- data for the page ---
  app.get(
    '/api/v1/site',
    {
      schema: {
        description:
          'The site layout from the site config, for the floor map: rooms, racks and air handlers with their positions (metres from the room origin) and control groups. No endpoints or credentials.',
        response: {
          200: {
            type: 'object',
            properties: {
              id: { type: 'string' },
              name: { type: 'string' },
              rooms: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    id: { type: 'string' },
                    name: { type: 'string' },
                    widthM: { type: 'number' },
                    depthM: { type: 'number' },
                  },
                },
              },
              racks: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    id: { type: 'string' },
                    room: { type: 'string' },
                    row: { type: 'string' },
                    xM: { type: 'number' },
                    yM: { type: 'number' },
                    itLoadKw: { type: 'number' },
                    group: { type: ['string', 'null'] },
                  },
                },
              },
              airHandlers: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    id: { type: 'string' },
                    room: { type: 'string' },
                    xM: { type: 'number' },
                    yM: { type: 'number' },
                    protocol: { type: 'string' },
                    capacityKw: { type: 'number' },
                    group: { type: ['string', 'null'] },
                  },
                },
              },
              groups: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    id: { type: 'string' },
                    airHandlers: { type: 'array', items: { type: 'string' } },
                    racks: { type: 'array', items: { type: 'string' } },
                  },
                },
              },
            },
          },
          404: ErrorBody,
        },
      },
    },
    async () => {
      const site = deps.site;
      if (!site)
        throw new BadRequestError(
          ErrorCodes.BAD_REQUEST,
          `${deps.node} was started without a site model`,
          ['the daemon passes `site` to the API'],
          404,
        );
      const nodeRack = new Map(site.sensorNodes.map((n) => [n.id, n.rack]));
      const rackGroup = new Map<string, string>();
      const ahuGroup = new Map<string, string>();
      const groups = site.controlGroups.map((g) => {
        const racks = [...new Set(g.sensorNodes.map((n) => nodeRack.get(n)).filter((r) => r !== undefined))];
        for (const r of racks) if (!rackGroup.has(r)) rackGroup.set(r, g.id);
        for (const a of g.airHandlers) ahuGroup.set(a, g.id);
        return { id: g.id, airHandlers: g.airHandlers, racks };
      });
      return {
        id: site.site.id,
        name: site.site.name,
        rooms: site.rooms.map((r) => ({
          id: r.id,
          name: r.name ?? r.id,
          widthM: r.widthM,
          depthM: r.depthM,
        })),
        racks: site.racks.map((r) => ({
          id: r.id,
          room: r.room,
          row: r.row,
          xM: r.xM,
          yM: r.yM,
          itLoadKw: r.itLoadKw,
          group: rackGroup.get(r.id) ?? null,
        })),
        airHandlers: site.airHandlers.map((a) => ({
          id: a.id,
          room: a.room,
          xM: a.xM,
          yM: a.yM,
          protocol: a.protocol,
          capacityKw: a.capacityKw,
          group: ahuGroup.get(a.id) ?? null,
        })),
        groups,
      };
    },
  );

  app.get(
    '/api/v1/site/live',
    {
      schema: {
        description:
          'What changes on the floor map, as this node sees it: each rack’s inlet °C (null: no data), each group’s sensor verdict and hottest good inlet, and each air handler’s link from this node.',
        response: {
          200: {
            type: 'object',
            properties: {
              atMs: { type: 'number' },
              rackInletsKnown: { type: 'boolean' },
              racks: { type: 'object', additionalProperties: NullableNumber },
              groups: {
                type: 'object',
                additionalProperties: {
                  type: ['object', 'null'],
                  properties: {
                    verdict: { type: 'string' },
                    inletMaxC: NullableNumber,
                    hottestRack: { type: ['string', 'null'] },
                    coverage: { type: 'number' },
                  },
                },
              },
              units: {
                type: 'object',
                additionalProperties: {
                  type: 'object',
                  properties: {
                    protocol: { type: 'string' },
                    link: { type: 'string', description: 'up, degraded or down' },
                    remoteControlLost: { type: 'boolean' },
                    fencing: {
                      type: 'string',
                      description:
                        'epoch (the unit refuses stale epochs), lease (timing only) or gateway (a fencing gateway in front of it)',
                    },
                    unitWatchdog: {
                      type: 'string',
                      description:
                        "the unit's own BMS watchdog (profile units): toggle, timeout-register, countdown, validity, or none — then this controller is the unit's only guard",
                    },
                  },
                },
              },
            },
          },
        },
      },
    },
    async () => {
      const racks: Record<string, number | null> = {};
      for (const r of deps.site?.racks ?? []) racks[r.id] = null;
      let rackInletsKnown = false;
      const groups: Record<string, unknown> = {};
      for (const g of deps.groups) {
        const v = viewOf(deps, g);
        groups[g] = v
          ? { verdict: v.verdict, inletMaxC: v.inletMaxC, hottestRack: v.hottestRack, coverage: v.coverage }
          : null;
        const perRack = v ? rackInletsOf(v) : null;
        if (!perRack) continue;
        rackInletsKnown = true;
        for (const [rack, c] of Object.entries(perRack)) racks[rack] = typeof c === 'number' ? c : null;
      }
      const units: Record<string, unknown> = {};
      for (const [id, d] of deps.devices ?? [])
        units[id] = {
          protocol: d.protocol,
          link: d.linkState,
          remoteControlLost: d.remoteControlLost,
          ...(d.fencing ? { fencing: d.fencing } : {}),
          ...(d.unitWatchdog ? { unitWatchdog: d.unitWatchdog } : {}),
        };
      return { atMs: Date.now(), rackInletsKnown, racks, groups, units };
    },
  );

  app.get(
    '/api/v1/trends',
    {
      schema: {
        description: `Per control group, samples taken by this node every ${TREND_PERIOD_MS / 1000} s over the last ${TREND_WINDOW_MS / 60_000} minutes: mean held fan % of its units (from the driver when this node leads, else from the cached process state) and the hottest good rack inlet. null: no data.`,
        querystring: {
          type: 'object',
          properties: {
            sinceMs: { type: 'number', minimum: 0, description: 'only samples after this time' },
          },
          additionalProperties: false,
        },
        response: {
          200: {
            type: 'object',
            properties: {
              periodMs: { type: 'number' },
              windowMs: { type: 'number' },
              groups: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    group: { type: 'string' },
                    t: { type: 'array', items: { type: 'number' } },
                    fanPct: { type: 'array', items: NullableNumber },
                    inletMaxC: { type: 'array', items: NullableNumber },
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
      const { sinceMs } = req.query as { sinceMs?: number };
      return { periodMs: TREND_PERIOD_MS, windowMs: TREND_WINDOW_MS, groups: trends.series(sinceMs) };
    },
  );

  app.get(
    '/api/v1/audit',
    {
      schema: {
        description:
          'The audit log of this node (in memory, bounded: the oldest entries drop first): every operator action it received (POST to the API) with who, what, when and its answer, and its own leadership role changes.',
        querystring: {
          type: 'object',
          properties: {
            since: { type: 'integer', minimum: 0, description: 'only entries with a higher seq' },
            limit: {
              type: 'integer',
              minimum: 1,
              maximum: 1000,
              description: 'at most this many (the newest)',
            },
          },
          additionalProperties: false,
        },
        response: {
          200: {
            type: 'object',
            properties: {
              node: { type: 'string' },
              capacity: { type: 'integer' },
              dropped: { type: 'integer' },
              lastSeq: { type: 'integer' },
              entries: {
                type: 'array',
                items: {
                  type: 'object',
                  additionalProperties: true,
                  properties: {
                    seq: { type: 'integer' },
                    atMs: { type: 'number' },
                    kind: { type: 'string', enum: ['operator', 'role'] },
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
      const { since, limit } = req.query as { since?: number; limit?: number };
      return {
        node: deps.node,
        capacity: audit.capacity,
        dropped: audit.dropped,
        lastSeq: audit.lastSeq,
        entries: audit.list({ since: since ?? 0, limit: limit ?? 200 }),
      };
    },
  );
}

// Without encapsulation: the audit and CORS hooks must see app.ts's routes.
Object.assign(dashboardPlugin, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'coolctl-dashboard',
});
export const dashboard = dashboardPlugin;

function viewOf(deps: ApiDeps, group: string): GroupSensorView | null {
  try {
    return deps.sensors?.view(group) ?? null;
  } catch {
    return null;
  }
}

/** Mean held fan % of the group's units: the driver's when this node drives it, else the cached process state's. */
function fanPctOf(deps: ApiDeps, group: string): number | null {
  const d = deps.drivers.get(group);
  let fans: number[] = [];
  if (d?.driving) fans = d.units().flatMap((u) => (u.held ? [u.held.fanPct] : []));
  else {
    const commands = deps.cache?.value<GroupProcessRow>(group)?.state?.commands;
    if (commands && typeof commands === 'object')
      fans = Object.values(commands).flatMap((c) => (typeof c?.fanPct === 'number' ? [c.fanPct] : []));
  }
  return fans.length ? fans.reduce((a, b) => a + b, 0) / fans.length : null;
}
