// The dashboard's trends: per control group, a fixed ring of samples (time, mean held fan %, hottest
// good rack inlet) taken every `periodMs` by this node, so a reloaded page still shows the last
// minutes. Memory is fixed per group: 3 Float64Arrays of `samples`. NaN: no data. The groups
// follow the running config (`keep`): a group added by a hot reload gets a ring, a removed one's goes.

export interface TrendSample {
  fanPct: number | null;
  inletMaxC: number | null;
}

export interface TrendSeries {
  group: string;
  /** ms since the Unix epoch, oldest first; fanPct and inletMaxC line up with it (null: no data). */
  t: number[];
  fanPct: (number | null)[];
  inletMaxC: (number | null)[];
}

class Ring {
  readonly t: Float64Array;
  readonly fan: Float64Array;
  readonly inlet: Float64Array;
  count = 0;
  constructor(n: number) {
    this.t = new Float64Array(n);
    this.fan = new Float64Array(n);
    this.inlet = new Float64Array(n);
  }
}

export class TrendRecorder {
  readonly samples: number;
  private readonly rings = new Map<string, Ring>();

  constructor(groups: readonly string[], samples: number) {
    this.samples = samples;
    this.keep(groups);
  }

  /** Rings for exactly these groups: new ones start empty, the others keep their samples. */
  keep(groups: readonly string[]): void {
    for (const g of groups) if (!this.rings.has(g)) this.rings.set(g, new Ring(this.samples));
    if (this.rings.size === groups.length) return;
    const wanted = new Set(groups);
    for (const g of this.rings.keys()) if (!wanted.has(g)) this.rings.delete(g);
  }

  add(group: string, atMs: number, s: TrendSample): void {
    const r = this.rings.get(group);
    if (!r) return;
    const i = r.count % this.samples;
    r.t[i] = atMs;
    r.fan[i] = s.fanPct ?? Number.NaN;
    r.inlet[i] = s.inletMaxC ?? Number.NaN;
    r.count++;
  }

  /** Each group's samples taken after `sinceMs`, oldest first. */
  series(sinceMs = 0): TrendSeries[] {
    const out: TrendSeries[] = [];
    for (const [group, r] of this.rings) {
      const s: TrendSeries = { group, t: [], fanPct: [], inletMaxC: [] };
      const n = Math.min(r.count, this.samples);
      for (let k = r.count - n; k < r.count; k++) {
        const i = k % this.samples;
        if (r.t[i]! <= sinceMs) continue;
        s.t.push(r.t[i]!);
        s.fanPct.push(orNull(r.fan[i]!));
        s.inletMaxC.push(orNull(r.inlet[i]!));
      }
      out.push(s);
    }
    return out;
  }
}

function orNull(x: number): number | null {
  return Number.isNaN(x) ? null : x;
}
