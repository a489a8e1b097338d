// Every TREND_PERIOD_MS, one pass over the running config's groups and units feeds the trend rings
// (./trends.ts) and energy meter (./energy.ts), so every node's page has them. At most one pass runs
// at a time; samples go on the steady clock (SampleClock): a wall-clock step moves only their labels.
import type { Logger } from 'pino';
import type { GroupProcessRow, HeldCommand } from '../control/group-driver.ts';
import { sliceTurns } from '../util/async.ts';
import type { ApiDeps } from './api-deps.ts';
import { EnergyMeter, type UnitPower, type UnitRating } from './energy.ts';
import { SAMPLE_SLICE_MS, unitsOf, viewOf } from './group-reads.ts';
import { GROUP_TRENDS, SampleClock, TrendStore, UNIT_TRENDS } from './trends.ts';

/** How often trends and energy are sampled: the recent tier's step. */
export const TREND_PERIOD_MS = GROUP_TRENDS.recent.stepMs;
/** The recent trend window. */
export const TREND_WINDOW_MS = GROUP_TRENDS.recent.stepMs * GROUP_TRENDS.recent.slots;

export class TrendSampler {
  readonly groupTrends: TrendStore<(typeof GROUP_TRENDS.metrics)[number]>;
  readonly unitTrends: TrendStore<(typeof UNIT_TRENDS.metrics)[number]>;
  readonly energy = new EnergyMeter();
  readonly clock = new SampleClock();
  private readonly deps: ApiDeps;
  private ratings: { site: unknown; byAhu: Map<string, UnitRating> } = { site: null, byAhu: new Map() };
  private sampling: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(deps: ApiDeps) {
    this.deps = deps;
    this.groupTrends = new TrendStore(GROUP_TRENDS, deps.groups);
    this.unitTrends = new TrendStore(UNIT_TRENDS);
  }

  /** A unit's fan rating from the running site model (re-read when a reload replaced it). */
  readonly ratingOf = (ahu: string): UnitRating | undefined => {
    if (this.ratings.site !== this.deps.site)
      this.ratings = {
        site: this.deps.site,
        byAhu: new Map(
          (this.deps.site?.airHandlers ?? []).map((a) => [
            a.id,
            { fanMaxKw: a.fanMaxKw, localFanPct: a.localFanPct ?? 100 },
          ]),
        ),
      };
    return this.ratings.byAhu.get(ahu);
  };

  /** Samples once now, then every TREND_PERIOD_MS until stop(); a failed sample is logged, the next runs. */
  async start(log: Pick<Logger, 'error'>): Promise<void> {
    await this.sample();
    this.timer = setInterval(
      () =>
        void this.sample().catch((err: unknown) =>
          log.error({ err }, 'trend sample failed; the next one runs as usual'),
        ),
      TREND_PERIOD_MS,
    );
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  // One pass over every group and unit: at 1 000 units ~10 ms of work, so it lets the event loop
  // turn every SAMPLE_SLICE_MS; a pass still running when the next is due makes that one wait.
  sample(): Promise<void> {
    this.sampling ??= this.samplePass().finally(() => {
      this.sampling = undefined;
    });
    return this.sampling;
  }

  private async samplePass(): Promise<void> {
    const deps = this.deps;
    const now = this.clock.now();
    // The running config's groups: a reload may have changed them.
    this.groupTrends.keep(deps.groups);
    this.unitTrends.keep(deps.groups.flatMap((g) => unitsOf(deps, g)));
    const turn = sliceTurns(SAMPLE_SLICE_MS);
    for (const g of [...deps.groups]) {
      // A reload while we waited: its groups are sampled from the next pass on.
      if ((await turn()) && !deps.groups.includes(g)) continue;
      const commands = commandsOf(deps, g);
      const fans = [...commands.values()].map((c) => c.fanPct);
      this.groupTrends.add(g, now, {
        inletMaxC: viewOf(deps, g)?.inletMaxC ?? null,
        fanPct: fans.length ? fans.reduce((x, y) => x + y, 0) / fans.length : null,
      });
      const d = deps.drivers.get(g);
      const power: UnitPower[] = [];
      for (const ahu of unitsOf(deps, g)) {
        const r = d?.driving ? d.lastReading(ahu) : null;
        const c = commands.get(ahu);
        this.unitTrends.add(ahu, now, {
          fanPct: c?.fanPct ?? null,
          supplySetpointC: c?.supplySetpointC ?? null,
          supplyC: r && Number.isFinite(r.supplyC) ? r.supplyC : null,
        });
        if (r) power.push({ ahu, fanPct: r.fanPct, fanKw: r.fanKw, coolingKw: r.coolingKw });
      }
      if (d?.driving && power.length > 0) this.energy.add(g, now, power, this.ratingOf);
      else this.energy.stop(g);
    }
  }
}

/**
 * What the group's units are told: the driver's held commands when this node drives it, else the
 * cached process state's — so a node that does not drive a group still has its trend.
 */
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
