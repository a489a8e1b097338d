// Trends and energy for the dashboard (`GET /api/v1/trends`, `GET /api/v1/energy`): what this
// node's TrendSampler (../trend-sampler.ts) took, which this plugin owns, starts when the app is
// ready and stops on close. A trends answer is bounded (TREND_FIGURES_MAX) before any ring is read.
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { BadRequestError, ErrorCodes } from '../../errors.ts';
import type { ApiDeps } from '../api-deps.ts';
import { baselineKw } from '../energy.ts';
import { ErrorBody } from '../error-body.ts';
import { unitsOf } from '../group-reads.ts';
import { PRINTABLE_PATTERN } from '../request-schema.ts';
import { TREND_PERIOD_MS, TREND_WINDOW_MS, TrendSampler } from '../trend-sampler.ts';
import { GROUP_TRENDS, type TrendRange, type TrendSpec, UNIT_TRENDS } from '../trends.ts';

/**
 * Figures (step times and values) one trends answer may hold. Reading and serialising them runs on
 * the event loop the control loops share: ~2 µs a figure, so this is ~20 ms and ~1 MB of JSON. A day
 * of every group of a large node is a hundred times that; such a request names a group or a sinceMs.
 */
export const TREND_FIGURES_MAX = 100_000;
/** The last ms since the Unix epoch a Date can hold: the latest sinceMs that means a time. */
const SINCE_MS_MAX = 8.64e15;
/** Group ids an unknown-group refusal lists: enough to see the naming, bounded at any cluster size. */
const GROUPS_LISTED = 20;

const NullableNumbers = { type: 'array', items: { type: ['number', 'null'] } } as const;
const Numbers = { type: 'array', items: { type: 'number' } } as const;

const ENERGY_BASIS =
  'Fan power under coolctl: each unit’s fan kW point where its profile has one, else fanMaxKw × (measured fan %/100)³ (counted in estimatedFanKwh). Baseline: the same units on local control over the same seconds, each at its local fan speed: fanMaxKw × (localFanPct/100)³ — fan power goes with the cube of speed (fan affinity laws); localFanPct is 100 % unless the site config says otherwise. Cooling: each unit’s cooling kW point (delivered, thermal), no baseline: in steady state the units remove the IT heat whoever drives them. Only the node driving a group reads its units: the cluster’s figure is the sum over its members; a restarted node starts from zero.';

export const trendRoutes: FastifyPluginAsyncTypebox<ApiDeps> = async (app, deps) => {
  const sampler = new TrendSampler(deps);
  const { groupTrends, unitTrends, energy, clock, ratingOf } = sampler;
  app.addHook('onReady', async () => {
    await sampler.start(app.log);
  });
  app.addHook('onClose', async () => {
    sampler.stop();
  });

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
};

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
