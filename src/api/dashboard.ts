// The operator dashboard, served by every controller node: the page (`GET /`, assets under /ui/:
// public, they hold no data and carry the sign-in form) and the data only it needs (site layout,
// live overlay, a rack's sensors, trends, energy; a viewer's). An encapsulated plugin like every
// resource's routes: identity, CORS and the audit trail are the API's (./app.ts, ./auth/guard.ts,
// ./audit/record-first.ts).
// Nothing here opens a socket. Trends and energy are sampled by this node every TREND_PERIOD_MS, on
// its steady clock (SampleClock): a wall-clock step moves their labels, never their history.
import { readdir, readFile } from 'node:fs/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { Member } from '../cluster/leadership.ts';
import type { GroupProcessRow, HeldCommand } from '../control/group-driver.ts';
import { BadRequestError, ErrorCodes } from '../errors.ts';
import {
  type GroupSensorView,
  type SensorSnapshot,
  type SensorStore,
  SHARED_FIGURES_MAX_AGE_MS,
} from '../sensors/sensor-store.ts';
import { apiOrigin } from '../util/api-origin.ts';
import { sliceTurns } from '../util/async.ts';
import { withoutCredentials } from '../util/url-credentials.ts';
import { ANSWER_REVISION_PATTERN } from './answer-revision.ts';
import type { ApiDeps } from './app.ts';
import { baselineKw, EnergyMeter, type UnitPower, type UnitRating } from './energy.ts';
import { ErrorBody } from './error-body.ts';
import { LiveChanges, type LiveFigures } from './live-changes.ts';
import { PRINTABLE_PATTERN } from './request-schema.ts';
import {
  GROUP_TRENDS,
  SampleClock,
  type TrendRange,
  type TrendSpec,
  TrendStore,
  UNIT_TRENDS,
} from './trends.ts';

/** How often trends and energy are sampled; the recent trend window. */
export const TREND_PERIOD_MS = GROUP_TRENDS.recent.stepMs;
/** Work of one trend sample before the event loop gets a turn. */
const SAMPLE_SLICE_MS = 2;
export const TREND_WINDOW_MS = GROUP_TRENDS.recent.stepMs * GROUP_TRENDS.recent.slots;
/**
 * Figures (step times and values) one trends answer may hold. Reading and serialising them runs on
 * the event loop the control loops share: ~2 µs a figure, so this is ~20 ms and ~1 MB of JSON. A day
 * of every group of a large node is a hundred times that; such a request names a group or a sinceMs.
 */
export const TREND_FIGURES_MAX = 100_000;
/**
 * How long one take of the floor map's live figures serves every page: under the pages' 1.5 s poll,
 * so each read brings the figures the control loops took since the last (they take them each 1 s).
 */
const LIVE_TAKE_MAX_AGE_MS = 1000;
/** The last ms since the Unix epoch a Date can hold: the latest sinceMs that means a time. */
const SINCE_MS_MAX = 8.64e15;
/** Group ids an unknown-group refusal lists: enough to see the naming, bounded at any cluster size. */
const GROUPS_LISTED = 20;

/**
 * The page's files: every file of ./ui whose name is ASSET_NAME (the page, its style sheet and its
 * script's modules), read once into memory when the API is built and served from there. Nothing
 * else is reachable: /ui/:file takes only these names (the route's enum), never a path.
 */
const ASSET_TYPES = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
} as const;
const ASSET_NAME = /^[a-z0-9][a-z0-9-]*\.(html|js|css)$/;
type Asset = { type: string; body: Buffer };

// Everything from this node; fetch() may also reach the other members' APIs (operator actions
// sent to a group's leader, a group's view read from its leader), and no other host: a script that
// got into the page has nowhere to send what it reads. PagePolicy puts the members between the two.
const CSP_HEAD =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'";
const CSP_TAIL = "; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/** Distinct left-out URLs remembered so each is logged once; past this the memory starts over. */
const LEFT_OUT_REMEMBERED = 1_000;

/**
 * The page's Content-Security-Policy for the cluster as this node sees it now: connect-src lists
 * 'self' and every member's origin. Built again only when the members' API URLs change; each URL
 * left out is counted and logged once.
 */
export class PagePolicy {
  private key: string | null = null;
  private value = '';
  private readonly leftOut = new Set<string>();
  private readonly leftOutTotal: Counter;
  private readonly members: () => readonly Pick<Member, 'node' | 'apiUrl'>[];
  private readonly log: Pick<Logger, 'warn'>;

  constructor(
    members: () => readonly Pick<Member, 'node' | 'apiUrl'>[],
    log: Pick<Logger, 'warn'>,
    registry: Registry,
  ) {
    this.members = members;
    this.log = log;
    this.leftOutTotal = new Counter({
      name: 'coolctl_dashboard_connect_sources_left_out_total',
      help: 'Member API URLs left out of the dashboard page’s connect-src (not a bare http(s) origin a CSP header can carry), once per distinct URL',
      registers: [registry],
    });
  }

  header(): string {
    const members = this.members();
    const key = JSON.stringify(members.map((m) => m.apiUrl));
    if (key === this.key) return this.value;
    const sources = new Set<string>();
    for (const m of members) {
      // Member records are checked as they are read (src/cluster/etcd/snapshot.ts); checked again
      // here because this header is where a misread URL would do harm.
      const s = apiOrigin(m.apiUrl);
      if ('origin' in s) sources.add(s.origin);
      else this.leftOutOnce(m, s.why);
    }
    this.key = key;
    this.value = `${CSP_HEAD}${[...sources].map((s) => ` ${s}`).join('')}${CSP_TAIL}`;
    return this.value;
  }

  private leftOutOnce(m: Pick<Member, 'node' | 'apiUrl'>, why: string): void {
    const url = typeof m.apiUrl === 'string' ? m.apiUrl : String(m.apiUrl);
    if (this.leftOut.has(url)) return;
    if (this.leftOut.size >= LEFT_OUT_REMEMBERED) this.leftOut.clear();
    this.leftOut.add(url);
    this.leftOutTotal.inc();
    this.log.warn(
      { node: String(m.node).slice(0, 64), apiUrl: withoutCredentials(url).slice(0, 200), why },
      'member API URL left out of the dashboard page’s connect-src: the page cannot reach that member',
    );
  }
}

const NullableNumber = { type: ['number', 'null'] } as const;
const NullableNumbers = { type: 'array', items: NullableNumber } as const;
const Numbers = { type: 'array', items: { type: 'number' } } as const;

/** Units a sensor kind's value is in, for people. */
const SENSOR_UNIT: Record<string, string> = {
  'inlet-top': '°C',
  'inlet-middle': '°C',
  'inlet-bottom': '°C',
  humidity: '%RH',
  'subfloor-pressure': 'Pa',
};

/** A sensor view that can also say one sensor's state (the SensorStore can; a bare view cannot). */
type SensorDetail = Pick<SensorStore, 'sensor'>;
function canDetail(v: unknown): v is SensorDetail {
  return typeof (v as Partial<SensorDetail> | undefined)?.sensor === 'function';
}

const ENERGY_BASIS =
  'Fan power under coolctl: each unit’s fan kW point where its profile has one, else fanMaxKw × (measured fan %/100)³ (counted in estimatedFanKwh). Baseline: the same units on local control over the same seconds, each at its local fan speed: fanMaxKw × (localFanPct/100)³ — fan power goes with the cube of speed (fan affinity laws); localFanPct is 100 % unless the site config says otherwise. Cooling: each unit’s cooling kW point (delivered, thermal), no baseline: in steady state the units remove the IT heat whoever drives them. Only the node driving a group reads its units: the cluster’s figure is the sum over its members; a restarted node starts from zero.';

async function dashboardPlugin(app: FastifyInstance, deps: ApiDeps): Promise<void> {
  const assets = new Map<string, Asset>();
  const uiDir = new URL('./ui/', import.meta.url);
  const listed = (await readdir(uiDir, { withFileTypes: true }))
    .filter((e) => e.isFile() && ASSET_NAME.test(e.name))
    .map((e) => e.name)
    .sort();
  // The page itself must be there (`GET /`): without it the API does not build, as before.
  for (const name of new Set(['index.html', ...listed])) {
    const ext = ASSET_NAME.exec(name)?.[1] as keyof typeof ASSET_TYPES;
    assets.set(name, { type: ASSET_TYPES[ext], body: await readFile(new URL(name, uiDir)) });
  }

  // --- trends and energy: sampled by this node, so every node's page has them (see commandsOf) ---
  const groupTrends = new TrendStore(GROUP_TRENDS, deps.groups);
  const unitTrends = new TrendStore(UNIT_TRENDS);
  const energy = new EnergyMeter();
  const clock = new SampleClock();
  let ratings: { site: unknown; byAhu: Map<string, UnitRating> } = { site: null, byAhu: new Map() };
  const ratingOf = (ahu: string) => {
    if (ratings.site !== deps.site)
      ratings = {
        site: deps.site,
        byAhu: new Map(
          (deps.site?.airHandlers ?? []).map((a) => [
            a.id,
            { fanMaxKw: a.fanMaxKw, localFanPct: a.localFanPct ?? 100 },
          ]),
        ),
      };
    return ratings.byAhu.get(ahu);
  };
  // One pass over every group and unit: at 1 000 units ~10 ms of work, so it lets the event loop
  // turn every SAMPLE_SLICE_MS; a pass still running when the next is due makes that one wait.
  let sampling: Promise<void> | undefined;
  const sample = (): Promise<void> => {
    sampling ??= samplePass().finally(() => {
      sampling = undefined;
    });
    return sampling;
  };
  const samplePass = async () => {
    const now = clock.now();
    // The running config's groups: a reload may have changed them.
    groupTrends.keep(deps.groups);
    unitTrends.keep(deps.groups.flatMap((g) => unitsOf(deps, g)));
    const turn = sliceTurns(SAMPLE_SLICE_MS);
    for (const g of [...deps.groups]) {
      // A reload while we waited: its groups are sampled from the next pass on.
      if ((await turn()) && !deps.groups.includes(g)) continue;
      const commands = commandsOf(deps, g);
      const fans = [...commands.values()].map((c) => c.fanPct);
      groupTrends.add(g, now, {
        inletMaxC: viewOf(deps, g)?.inletMaxC ?? null,
        fanPct: fans.length ? fans.reduce((x, y) => x + y, 0) / fans.length : null,
      });
      const d = deps.drivers.get(g);
      const power: UnitPower[] = [];
      for (const ahu of unitsOf(deps, g)) {
        const r = d?.driving ? d.lastReading(ahu) : null;
        const c = commands.get(ahu);
        unitTrends.add(ahu, now, {
          fanPct: c?.fanPct ?? null,
          supplySetpointC: c?.supplySetpointC ?? null,
          supplyC: r && Number.isFinite(r.supplyC) ? r.supplyC : null,
        });
        if (r) power.push({ ahu, fanPct: r.fanPct, fanKw: r.fanKw, coolingKw: r.coolingKw });
      }
      if (d?.driving && power.length > 0) energy.add(g, now, power, ratingOf);
      else energy.stop(g);
    }
  };
  let sampler: NodeJS.Timeout | undefined;
  app.addHook('onReady', async () => {
    await sample();
    sampler = setInterval(
      () =>
        void sample().catch((err: unknown) =>
          app.log.error({ err }, 'trend sample failed; the next one runs as usual'),
        ),
      TREND_PERIOD_MS,
    );
    sampler.unref();
  });
  app.addHook('onClose', async () => {
    clearInterval(sampler);
  });

  // --- the page ---
  const policy = new PagePolicy(() => deps.leadership.members(), app.log, deps.registry);
  const sendAsset = (reply: FastifyReply, asset: Asset) =>
    reply
      .type(asset.type)
      .header('cache-control', 'no-cache')
      .header('x-content-type-options', 'nosniff')
      // A member that joins later is not in a page served before: the page says to reload it.
      .header('content-security-policy', policy.header())
      // The page's requests to the other members need no Referer: CORS goes by Origin.
      .header('referrer-policy', 'no-referrer')
      .send(asset.body);
  app.get(
    '/',
    {
      config: { access: 'public' },
      schema: { description: 'The operator dashboard (HTML; it signs in, then polls this API).' },
    },
    async (_req, reply) => sendAsset(reply, assets.get('index.html')!),
  );
  app.get(
    '/ui/:file',
    {
      config: { access: 'public' },
      schema: {
        description: 'The dashboard’s style sheet and script modules (the files of src/api/ui).',
        params: {
          type: 'object',
          properties: { file: { type: 'string', enum: [...assets.keys()] } },
          required: ['file'],
        },
        response: { 400: ErrorBody },
      },
    },
    async (req: FastifyRequest, reply) =>
      sendAsset(reply, assets.get((req.params as { file: string }).file)!),
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

  // --- the floor map's live figures: one take per control period for every page (./live-changes.ts) ---
  const live = new LiveChanges(LIVE_TAKE_MAX_AGE_MS);
  const liveFigures = async (): Promise<LiveFigures> => {
    const racks: Record<string, number | null> = {};
    const rackTrust: Record<string, { goodInlets: number; inlets: number }> = {};
    for (const r of deps.site?.racks ?? []) racks[r.id] = null;
    let rackInletsKnown = false;
    const groups: Record<string, unknown> = {};
    const turn = sliceTurns(SAMPLE_SLICE_MS);
    for (const g of [...deps.groups]) {
      await turn();
      const v = viewOf(deps, g);
      groups[g] = v
        ? {
            verdict: v.verdict,
            inletMaxC: v.inletMaxC,
            hottestRack: v.hottestRack,
            coverage: v.coverage,
            uncoveredRacks: v.uncoveredRacks,
            reasons: v.reasons ?? [],
            recovery: v.recovery ?? null,
          }
        : null;
      const perRack = rackInletsOf(deps, g);
      if (!perRack) continue;
      rackInletsKnown = true;
      for (const r of perRack) {
        racks[r.rack] = r.inletMaxC;
        rackTrust[r.rack] = { goodInlets: r.goodInlets, inlets: r.inlets };
      }
    }
    const units: Record<string, unknown> = {};
    for (const [id, d] of deps.devices ?? [])
      units[id] = {
        protocol: d.protocol,
        link: d.linkState,
        remoteControlLost: d.remoteControlLost,
        ...(d.refusal ? { refusal: d.refusal } : {}),
        ...(d.fencing ? { fencing: d.fencing } : {}),
        ...(d.unitWatchdog ? { unitWatchdog: d.unitWatchdog } : {}),
      };
    return { atMs: Date.now(), node: deps.node, rackInletsKnown, racks, rackTrust, groups, units };
  };
  app.get(
    '/api/v1/site/live',
    {
      config: { access: 'viewer' },
      schema: {
        description:
          'What changes on the floor map, as this node sees it: each rack’s inlet °C (hottest good inlet sensor; null: no data) and how many of its inlet sensors are good, each group’s sensor verdict (with the racks that have no good inlet sensor, and why it is not ok) and hottest good inlet, and each air handler’s link from this node. The dashboard reads a group’s racks and units from the group’s leader. Taken once a second for every reader. `rev` names the take; a reader that sends it back as `since` gets only the racks, rack trusts, groups and units that changed after it (a rack: its value to 0.1 °C, as the map shows it, or its trust; anything else: any field), with `since` set, and merges them into what it holds; without `since`, or with a revision this node no longer knows (it restarted, its racks, groups or units changed), the full answer (`since` null).',
        querystring: {
          type: 'object',
          properties: {
            since: {
              type: 'string',
              pattern: ANSWER_REVISION_PATTERN,
              description: 'the `rev` of the answer the reader holds: only what changed after it',
            },
          },
          additionalProperties: false,
        },
        response: {
          200: {
            type: 'object',
            properties: {
              atMs: { type: 'number' },
              node: { type: 'string' },
              rev: { type: 'string', description: 'this take: send it back as `since`' },
              since: {
                type: ['string', 'null'],
                description:
                  'the revision this answer counts changes from: its sections hold only what changed; null: every entry',
              },
              rackInletsKnown: { type: 'boolean' },
              racks: { type: 'object', additionalProperties: NullableNumber },
              rackTrust: {
                type: 'object',
                description: 'per rack: good inlet sensors and configured inlet sensors',
                additionalProperties: {
                  type: 'object',
                  properties: { goodInlets: { type: 'number' }, inlets: { type: 'number' } },
                },
              },
              groups: {
                type: 'object',
                additionalProperties: {
                  type: ['object', 'null'],
                  properties: {
                    verdict: { type: 'string' },
                    inletMaxC: NullableNumber,
                    hottestRack: { type: ['string', 'null'] },
                    coverage: { type: 'number' },
                    uncoveredRacks: {
                      type: 'array',
                      items: { type: 'string' },
                      description:
                        'racks without a good inlet sensor: each makes the verdict at most degraded',
                    },
                    reasons: {
                      type: 'array',
                      items: { type: 'string' },
                      description:
                        'why the verdict is not ok, in words (uncovered racks named; while a better verdict proves itself, "recovering: RA-03 covered again for 12 s of 60 s"); empty when ok',
                    },
                    recovery: {
                      type: ['object', 'null'],
                      description:
                        'set while the group keeps a worse verdict than its sensors give (sensing.verdictRecoveryS): the verdict they give (to), for how long (heldS) of the hold (needS), and the racks covered again',
                      properties: {
                        to: { type: 'string' },
                        heldS: { type: 'number' },
                        needS: { type: 'number' },
                        racks: { type: 'array', items: { type: 'string' } },
                      },
                    },
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
                    refusal: {
                      type: 'object',
                      description:
                        'present while the link is up but the unit refuses every read with a Modbus exception (a unit id, point map or profile that does not fit it)',
                      properties: {
                        code: {
                          type: 'integer',
                          description: 'the Modbus exception code of the last refused read',
                        },
                        name: { type: 'string' },
                        sinceMs: {
                          type: 'number',
                          description: 'since when every read was refused (ms since the Unix epoch)',
                        },
                      },
                    },
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
    async (req, reply) => {
      const { since } = req.query as { since?: string };
      const take = await live.current(liveFigures);
      const rev = live.revision(take);
      const changed = live.changedSince(take, since);
      // A string is sent as it is (no serialiser): the full answer is made once per take for every
      // reader; a page's changes since its last read are small.
      reply.type('application/json; charset=utf-8');
      if (!changed) return live.liveJson(take);
      const { atMs, node, rackInletsKnown } = take.figures;
      return JSON.stringify({ atMs, node, rackInletsKnown, ...changed, rev, since });
    },
  );

  let rackIndex: { site: unknown; byRack: Map<string, { group: string | null; nodes: string[] }> } = {
    site: null,
    byRack: new Map(),
  };
  const rackInfo = (rack: string) => {
    const site = deps.site;
    if (rackIndex.site !== site) {
      const byRack = new Map<string, { group: string | null; nodes: string[] }>();
      for (const r of site?.racks ?? []) byRack.set(r.id, { group: null, nodes: [] });
      for (const n of site?.sensorNodes ?? []) byRack.get(n.rack)?.nodes.push(n.id);
      const nodeRack = new Map((site?.sensorNodes ?? []).map((n) => [n.id, n.rack]));
      for (const g of site?.controlGroups ?? [])
        for (const n of g.sensorNodes) {
          const r = byRack.get(nodeRack.get(n) ?? '');
          if (r && r.group === null) r.group = g.id;
        }
      rackIndex = { site, byRack };
    }
    return rackIndex.byRack.get(rack);
  };

  app.get(
    '/api/v1/site/racks/:id',
    {
      config: { access: 'viewer' },
      schema: {
        description:
          'One rack as this node sees it: its hottest good inlet (what colours it on the floor map), how many inlet sensors are good, and every sensor on it — value and unit (°C, %RH, Pa), age, source, quality (good: control may trust it) and the flags that say why not. The dashboard reads it from the leader of the rack’s group.',
        params: {
          type: 'object',
          properties: { id: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$' } },
          required: ['id'],
        },
        response: {
          200: {
            type: 'object',
            properties: {
              rack: { type: 'string' },
              group: { type: ['string', 'null'] },
              node: { type: 'string' },
              atMs: { type: 'number' },
              sensorsKnown: { type: 'boolean' },
              inletMaxC: NullableNumber,
              goodInlets: { type: 'number' },
              inlets: { type: 'number' },
              sensors: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    node: { type: 'string' },
                    sensor: { type: 'string' },
                    kind: { type: 'string' },
                    unit: { type: 'string' },
                    value: NullableNumber,
                    ageS: NullableNumber,
                    source: { type: ['string', 'null'] },
                    quality: { type: 'string', description: 'good, bad, or unknown (no sensor view)' },
                    flags: { type: 'array', items: { type: 'string' } },
                  },
                },
              },
            },
          },
          404: ErrorBody,
        },
      },
    },
    async (req) => {
      const { id } = req.params as { id: string };
      const info = rackInfo(id);
      if (!info)
        throw new BadRequestError(
          ErrorCodes.BAD_REQUEST,
          `unknown rack "${id}"`,
          [deps.site ? 'a rack of the site config' : `${deps.node} was started without a site model`],
          404,
        );
      const view = deps.sensors;
      const detail = canDetail(view) ? view : null;
      const sensors = [];
      let inletMaxC: number | null = null;
      let goodInlets = 0;
      let inlets = 0;
      for (const nodeId of info.nodes) {
        const node = deps.site!.sensorNodes.find((n) => n.id === nodeId)!;
        for (const s of node.sensors) {
          const snap: SensorSnapshot | undefined = detail?.sensor(nodeId, s.id);
          const isInlet = s.kind.startsWith('inlet-');
          if (isInlet) inlets++;
          if (isInlet && snap?.quality === 'good' && snap.value !== null) {
            goodInlets++;
            if (inletMaxC === null || snap.value > inletMaxC) inletMaxC = snap.value;
          }
          sensors.push({
            node: nodeId,
            sensor: s.id,
            kind: s.kind,
            unit: SENSOR_UNIT[s.kind] ?? '',
            value: snap?.value ?? null,
            ageS: snap?.ageMs == null ? null : Math.round(snap.ageMs / 100) / 10,
            source: snap?.source ?? null,
            quality: snap?.quality ?? 'unknown',
            flags: snap?.flags ?? [],
          });
        }
      }
      return {
        rack: id,
        group: info.group,
        node: deps.node,
        atMs: Date.now(),
        sensorsKnown: detail !== null,
        inletMaxC,
        goodInlets,
        inlets,
        sensors,
      };
    },
  );

  const tierSchema = (metrics: readonly string[]) => {
    const perMetric = {
      type: 'object',
      properties: Object.fromEntries(metrics.map((m) => [m, NullableNumbers])),
    };
    return {
      t: Numbers,
      ...Object.fromEntries(metrics.map((m) => [m, NullableNumbers])),
      min: perMetric,
      max: perMetric,
    };
  };
  app.get(
    '/api/v1/trends',
    {
      config: { access: 'viewer' },
      schema: {
        description: `Trends sampled by this node every ${TREND_PERIOD_MS / 1000} s. Per control group: hottest good rack inlet °C and mean fan % its units are told; range=recent: every ${GROUP_TRENDS.recent.stepMs / 1000} s for ${TREND_WINDOW_MS / 60_000} min, range=day: ${GROUP_TRENDS.day.stepMs / 60_000}-minute means with min and max for 24 h. Per unit (only with group=, that group's units): fan % and supply setpoint °C it is told (the driver's when this node drives the group, else the cached process state), supply air °C it measures (only the driving node reads units); recent: every ${UNIT_TRENDS.recent.stepMs / 1000} s for ${(UNIT_TRENDS.recent.stepMs * UNIT_TRENDS.recent.slots) / 60_000} min, day: ${UNIT_TRENDS.day.stepMs / 60_000}-minute means with min and max. t: step start, ms since the Unix epoch; null: no data. memoryBytes: what the rings of this node take.`,
        querystring: {
          type: 'object',
          properties: {
            sinceMs: {
              type: 'number',
              minimum: 0,
              maximum: SINCE_MS_MAX,
              description: 'only steps starting after this time (ms since the Unix epoch)',
            },
            range: { type: 'string', enum: ['recent', 'day'], default: 'recent' },
            group: {
              type: 'string',
              pattern: PRINTABLE_PATTERN,
              maxLength: 128,
              description: 'only this group, with its units',
            },
          },
          additionalProperties: false,
        },
        response: {
          200: {
            type: 'object',
            properties: {
              periodMs: { type: 'number' },
              windowMs: { type: 'number' },
              range: { type: 'string' },
              memoryBytes: { type: 'number' },
              groups: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: { group: { type: 'string' }, ...tierSchema(GROUP_TRENDS.metrics) },
                },
              },
              units: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    ahu: { type: 'string' },
                    group: { type: 'string' },
                    stepMs: { type: 'number' },
                    ...tierSchema(UNIT_TRENDS.metrics),
                  },
                },
              },
            },
          },
          400: ErrorBody,
          404: ErrorBody,
        },
      },
    },
    async (req) => {
      const q = req.query as { sinceMs?: number; range?: TrendRange; group?: string };
      const range = q.range ?? 'recent';
      // The query string's "Infinity" and "1e400" coerce to Infinity, which Ajv's maximum lets by.
      if (q.sinceMs !== undefined && !Number.isFinite(q.sinceMs))
        throw new BadRequestError(ErrorCodes.BAD_REQUEST, `sinceMs ${q.sinceMs} is no time`, [
          `querystring/sinceMs: must be a finite number of ms since the Unix epoch, at most ${SINCE_MS_MAX}`,
        ]);
      if (q.group !== undefined && !deps.groups.includes(q.group))
        throw new BadRequestError(
          ErrorCodes.BAD_REQUEST,
          `unknown control group "${q.group}"`,
          [
            `one of: ${deps.groups.slice(0, GROUPS_LISTED).join(', ')}${deps.groups.length > GROUPS_LISTED ? `, … (${deps.groups.length} in all: GET /api/v1/cluster)` : ''}`,
          ],
          404,
        );
      const now = Date.now();
      const groupIds = q.group === undefined ? deps.groups : [q.group];
      const figures =
        trendFigures(GROUP_TRENDS, range, groupIds.length, q.sinceMs, now) +
        (q.group === undefined
          ? 0
          : trendFigures(UNIT_TRENDS, range, unitsOf(deps, q.group).length, q.sinceMs, now));
      if (figures > TREND_FIGURES_MAX)
        throw new BadRequestError(
          ErrorCodes.BAD_REQUEST,
          `a ${range} trend of ${q.group === undefined ? `all ${groupIds.length} groups` : `group "${q.group}" and its units`} holds up to ${figures} figures, more than one answer may (${TREND_FIGURES_MAX})`,
          [
            q.group === undefined ? 'name one group: group=ID' : 'ask for range=recent',
            `or only the newest steps: sinceMs=${now - GROUP_TRENDS[range].stepMs * 10}`,
          ],
        );
      const [at, offsetMs] = [clock.now(), clock.wallOffsetMs()];
      const groups = groupIds.flatMap((group) => {
        const s = groupTrends.read(group, range, q.sinceMs, at, offsetMs);
        return s ? [{ group, t: s.t, ...s.mean, ...(s.min ? { min: s.min, max: s.max } : {}) }] : [];
      });
      const units =
        q.group === undefined
          ? []
          : unitsOf(deps, q.group).flatMap((ahu) => {
              const s = unitTrends.read(ahu, range, q.sinceMs, at, offsetMs);
              return s
                ? [
                    {
                      ahu,
                      group: q.group!,
                      stepMs: s.stepMs,
                      t: s.t,
                      ...s.mean,
                      ...(s.min ? { min: s.min, max: s.max } : {}),
                    },
                  ]
                : [];
            });
      const tier = GROUP_TRENDS[range];
      return {
        periodMs: tier.stepMs,
        windowMs: tier.stepMs * tier.slots,
        range,
        memoryBytes: groupTrends.bytes() + unitTrends.bytes(),
        groups,
        units,
      };
    },
  );

  const figures = {
    fanKwh: { type: 'number' },
    estimatedFanKwh: { type: 'number' },
    baselineFanKwh: { type: 'number' },
    coolingKwh: { type: 'number' },
    unitSeconds: { type: 'number' },
  } as const;
  const bucket = {
    type: 'array',
    items: {
      type: 'object',
      properties: {
        startMs: { type: 'number' },
        ...figures,
        groups: { type: 'object', additionalProperties: { type: 'object', properties: figures } },
      },
    },
  } as const;
  app.get(
    '/api/v1/energy',
    {
      config: { access: 'viewer' },
      schema: {
        description: `Fan and cooling energy of the units this node drove, per UTC hour (the last 48) and UTC day (the last 7), in total and per group, beside the local-control baseline. ${ENERGY_BASIS}`,
        response: {
          200: {
            type: 'object',
            properties: {
              node: { type: 'string' },
              atMs: { type: 'number' },
              basis: { type: 'string' },
              units: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    ahu: { type: 'string' },
                    fanMaxKw: { type: 'number' },
                    localFanPct: { type: 'number' },
                    baselineKw: { type: 'number' },
                  },
                },
              },
              hours: bucket,
              days: bucket,
            },
          },
        },
      },
    },
    async () => ({
      node: deps.node,
      atMs: Date.now(),
      basis: ENERGY_BASIS,
      units: (deps.site?.airHandlers ?? []).map((a) => {
        const r = ratingOf(a.id)!;
        return { ahu: a.id, ...r, baselineKw: baselineKw(r) };
      }),
      ...energy.report(clock.wallOffsetMs()),
    }),
  );
}

export const dashboard = dashboardPlugin;

/**
 * The most figures (step times and values) a trends answer of `owners` of one kind can hold for
 * `range` since `sinceMs`: its ring's steps, fewer when sinceMs leaves only the newest.
 */
function trendFigures(
  spec: TrendSpec<string>,
  range: TrendRange,
  owners: number,
  sinceMs: number | undefined,
  nowMs: number,
): number {
  const tier = spec[range];
  const steps =
    sinceMs === undefined
      ? tier.slots
      : Math.max(0, Math.min(tier.slots, Math.ceil((nowMs - sinceMs) / tier.stepMs) + 1));
  return owners * steps * (1 + spec.metrics.length * (tier.minMax ? 3 : 1));
}

/**
 * Per rack of the group: its hottest good inlet sensor and how many of its inlet sensors are good
 * (null: this node has no sensor view). The page reads a group's racks from its leader, whose view
 * is the one control acts on.
 */
function rackInletsOf(
  deps: ApiDeps,
  group: string,
): { rack: string; inletMaxC: number | null; goodInlets: number; inlets: number }[] | null {
  try {
    const s = deps.sensors;
    // The figures the group's loop took this period, when the view shares them.
    if (s?.figures) {
      const f = s.figures(group, SHARED_FIGURES_MAX_AGE_MS);
      return f.inletRacks.map((rack, i) => ({
        rack,
        inletMaxC: Number.isNaN(f.rackInletMaxC[i]!) ? null : f.rackInletMaxC[i]!,
        goodInlets: f.rackGoodInlets[i]!,
        inlets: f.rackInlets[i]!,
      }));
    }
    return s?.rackInletStats?.(group) ?? null;
  } catch {
    return null;
  }
}

function viewOf(deps: ApiDeps, group: string): GroupSensorView | null {
  try {
    const s = deps.sensors;
    return (s?.figures ? s.figures(group, SHARED_FIGURES_MAX_AGE_MS).view : s?.view(group)) ?? null;
  } catch {
    return null;
  }
}

/** A group's units: as its driver has them (the running config), else as the site says. */
function unitsOf(deps: ApiDeps, group: string): string[] {
  const d = deps.drivers.get(group);
  if (d) return d.units().map((u) => u.ahu);
  return deps.site?.controlGroups.find((g) => g.id === group)?.airHandlers ?? [];
}

/** What the group's units are told: the driver's held commands when this node drives it, else the cached process state's. */
function commandsOf(deps: ApiDeps, group: string): Map<string, HeldCommand> {
  const out = new Map<string, HeldCommand>();
  const d = deps.drivers.get(group);
  if (d?.driving) {
    for (const u of d.units()) if (u.held) out.set(u.ahu, u.held);
    return out;
  }
  const commands = deps.cache?.value<GroupProcessRow>(group)?.state?.commands;
  if (commands && typeof commands === 'object')
    for (const [ahu, c] of Object.entries(commands))
      if (typeof c?.fanPct === 'number' && typeof c.supplySetpointC === 'number')
        out.set(ahu, { fanPct: c.fanPct, supplySetpointC: c.supplySetpointC });
  return out;
}
