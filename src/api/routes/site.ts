// The floor map's data (`GET /api/v1/site`, `/api/v1/site/live`, `/api/v1/site/racks/:id`): the
// site layout from the config, the live figures as this node sees them (one take per control period
// for every page, ../live-changes.ts), and one rack's sensors. No endpoints or credentials leave.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { BadRequestError, ErrorCodes } from '../../errors.ts';
import {
  type SensorSnapshot,
  type SensorStore,
  SHARED_FIGURES_MAX_AGE_MS,
} from '../../sensors/sensor-store.ts';
import { sliceTurns } from '../../util/async.ts';
import { ANSWER_REVISION_PATTERN } from '../answer-revision.ts';
import type { ApiDeps } from '../api-deps.ts';
import { ErrorBody } from '../error-body.ts';
import { SAMPLE_SLICE_MS, viewOf } from '../group-reads.ts';
import { LiveChanges, type LiveFigures } from '../live-changes.ts';

/**
 * How long one take of the floor map's live figures serves every page: under the pages' 1.5 s poll,
 * so each read brings the figures the control loops took since the last (they take them each 1 s).
 */
const LIVE_TAKE_MAX_AGE_MS = 1000;

const NullableNumber = { type: ['number', 'null'] } as const;

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

export const siteRoutes: FastifyPluginAsyncTypebox<ApiDeps> = async (app, deps) => {
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

  // --- the floor map's live figures: one take per control period for every page (../live-changes.ts) ---
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
};

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
