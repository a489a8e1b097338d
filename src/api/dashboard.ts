// The operator dashboard, served by every controller node: the page (`GET /`, assets under /ui/:
// public, they hold no data and carry the sign-in form) and the data only it needs (site layout,
// live overlay, trends; a viewer's). An encapsulated plugin like every resource's routes: identity,
// CORS and the audit trail are the API's (./app.ts, ./auth/guard.ts). Nothing here opens a socket.
import { readFile } from 'node:fs/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { GroupProcessRow } from '../control/group-driver.ts';
import { BadRequestError, ErrorCodes } from '../errors.ts';
import type { GroupSensorView } from '../sensors/sensor-store.ts';
import type { ApiDeps } from './app.ts';
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

const NullableNumber = { type: ['number', 'null'] } as const;

async function dashboardPlugin(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  const assets = new Map<AssetName, Buffer>();
  for (const name of Object.keys(ASSETS) as AssetName[])
    assets.set(name, await readFile(new URL(`./ui/${name}`, import.meta.url)));

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
  });

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
    {
      config: { access: 'public' },
      schema: { description: 'The operator dashboard (HTML; it signs in, then polls this API).' },
    },
    async (_req, reply) => sendAsset(reply, 'index.html'),
  );
  app.get(
    '/ui/:file',
    {
      config: { access: 'public' },
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
      config: { access: 'viewer' },
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
      config: { access: 'viewer' },
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
        const perRack = rackInletsOf(deps, g);
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
      config: { access: 'viewer' },
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
}

export const dashboard = dashboardPlugin;

/** Per-rack hottest good inlet of a group (null: this node's sensor view cannot say). */
function rackInletsOf(deps: ApiDeps, group: string): Record<string, number | null> | null {
  try {
    return deps.sensors?.rackInletsC?.(group) ?? null;
  } catch {
    return null;
  }
}

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
