// How much each air handler cools each rack: the weights allocation uses to give the units nearest
// a hot spot more of the group's airflow. From config when the site gives one, else from geometry:
// w = 1 / (1 + (d/L)²) within a room, 0 across rooms (the shape the simulator's physics also uses).
import type { Site } from '../../config/site-schema.ts';

/**
 * influence(ahu, rack) ≥ 0; a missing entry is 0. A group's units share one rack index and each
 * has a row of weights: as plain objects keyed by rack id, every row took its own chain of V8
 * hidden classes (~5 MB at 1 000 units).
 */
export interface InfluenceMatrix {
  readonly rackIndex: ReadonlyMap<string, number>;
  readonly rows: ReadonlyMap<string, Float64Array>;
}

/** As the site config writes it: `influence[ahu][rack]`. */
export type InfluenceRecords = Readonly<Record<string, Readonly<Record<string, number>>>>;

/** How much `ahu` cools `rack` (0 when the matrix does not say). */
export function influenceOf(m: InfluenceMatrix, ahu: string, rack: string): number {
  const i = m.rackIndex.get(rack);
  return i === undefined ? 0 : (m.rows.get(ahu)?.[i] ?? 0);
}

/** `weight(ahu, rack)` for every unit and rack; racks it leaves undefined weigh 0. */
function matrixOf(
  ahuIds: readonly string[],
  rackIds: Iterable<string>,
  weight: (ahu: string, rack: string) => number | undefined,
): InfluenceMatrix {
  const rackIndex = new Map<string, number>();
  for (const r of rackIds) if (!rackIndex.has(r)) rackIndex.set(r, rackIndex.size);
  const rows = new Map<string, Float64Array>();
  for (const a of ahuIds) {
    const row = new Float64Array(rackIndex.size);
    for (const [r, i] of rackIndex) row[i] = weight(a, r) ?? 0;
    rows.set(a, row);
  }
  return { rackIndex, rows };
}

/** The config's `influence[ahu][rack]`, as a matrix. */
export function influenceFromRecords(records: InfluenceRecords): InfluenceMatrix {
  const racks = Object.values(records).flatMap((row) => Object.keys(row));
  // Own keys only: a rack named like an Object.prototype member (`constructor`) absent from a
  // unit's row is no weight of that unit, not a function read as NaN.
  return matrixOf(Object.keys(records), racks, (a, r) => {
    const row = Object.hasOwn(records, a) ? records[a] : undefined;
    return row && Object.hasOwn(row, r) ? row[r] : undefined;
  });
}

/** Distance scale of one unit's local reach, m. */
export const INFLUENCE_LENGTH_M = 6;

/**
 * `racks`: only these racks (a group needs the racks its sensors see; a whole hall of racks per
 * unit would cost megabytes at 1 000 units). Default: every rack of the unit's room.
 */
export function influenceFromGeometry(
  site: Site,
  ahuIds: readonly string[],
  lengthM = INFLUENCE_LENGTH_M,
  racks?: ReadonlySet<string>,
): InfluenceMatrix {
  const ahus = new Map(site.airHandlers.filter((a) => ahuIds.includes(a.id)).map((a) => [a.id, a]));
  const rooms = new Set([...ahus.values()].map((a) => a.room));
  const candidates = site.racks.filter((r) => (racks ? racks.has(r.id) : rooms.has(r.room)));
  const rackById = new Map(candidates.map((r) => [r.id, r]));
  return matrixOf(ahuIds, rackById.keys(), (a, r) => {
    const ahu = ahus.get(a);
    const rack = rackById.get(r)!;
    if (!ahu || rack.room !== ahu.room) return 0;
    return 1 / (1 + ((rack.xM - ahu.xM) ** 2 + (rack.yM - ahu.yM) ** 2) / lengthM ** 2);
  });
}

/**
 * The share of each rack's cold air that comes from each of `ahuIds`, by geometry alone: the unit's
 * weight over the sum of the weights of every unit of the rack's room (units taken alike). The
 * scale the influence learner learns on (a unit's supply air moves the rack's inlet by this many K
 * per K), and its prior.
 */
export function influenceShares(
  site: Site,
  ahuIds: readonly string[],
  racks?: ReadonlySet<string>,
  lengthM = INFLUENCE_LENGTH_M,
): InfluenceMatrix {
  const rooms = new Set(site.airHandlers.filter((a) => ahuIds.includes(a.id)).map((a) => a.room));
  const all = site.airHandlers.filter((a) => rooms.has(a.room)).map((a) => a.id);
  const m = influenceFromGeometry(site, all, lengthM, racks);
  const total = new Float64Array(m.rackIndex.size);
  for (const row of m.rows.values()) for (let r = 0; r < total.length; r++) total[r]! += row[r]!;
  const rows = new Map<string, Float64Array>();
  for (const a of ahuIds) {
    const w = m.rows.get(a);
    rows.set(
      a,
      Float64Array.from(total, (t, r) => (w && t > 0 ? w[r]! / t : 0)),
    );
  }
  return { rackIndex: m.rackIndex, rows };
}

/**
 * For each group, the groups it answers when they call for help (`GroupControlState.helpK`): those
 * with a rack (of their sensor nodes) on which one of its units has at least `minInfluence`.
 */
export function neighbourGroups(site: Site, minInfluence = 0.15): Record<string, string[]> {
  const cached = neighbourCache.get(site);
  if (cached?.minInfluence === minInfluence) return cached.groups;
  const racksOf = new Map(site.controlGroups.map((g) => [g.id, [...groupRacks(site, g.id)]]));
  const sensed = new Set([...racksOf.values()].flat());
  const out: Record<string, string[]> = {};
  for (const g of site.controlGroups) {
    const m = influenceFromGeometry(site, g.airHandlers, INFLUENCE_LENGTH_M, sensed);
    out[g.id] = site.controlGroups
      .filter((h) => h.id !== g.id)
      .filter((h) =>
        g.airHandlers.some((a) => racksOf.get(h.id)!.some((r) => influenceOf(m, a, r) >= minInfluence)),
      )
      .map((h) => h.id);
  }
  neighbourCache.set(site, { minInfluence, groups: out });
  return out;
}

/** One computation per site (the daemon asks once per group; the answer is for the whole site). */
const neighbourCache = new WeakMap<Site, { minInfluence: number; groups: Record<string, string[]> }>();

/** The racks a group's sensor nodes sit on: all the law's influence matrix needs. */
export function groupRacks(site: Site, groupId: string): Set<string> {
  const group = site.controlGroups.find((g) => g.id === groupId);
  const rackOf = rackOfNode(site);
  const racks = new Set<string>();
  for (const n of group?.sensorNodes ?? []) {
    const r = rackOf.get(n);
    if (r !== undefined) racks.add(r);
  }
  return racks;
}

/** Sensor node → its rack, made once per site (every group asks; a site has ~12 000 nodes). */
function rackOfNode(site: Site): Map<string, string> {
  let m = rackOfNodeCache.get(site);
  if (!m) {
    m = new Map(site.sensorNodes.map((n) => [n.id, n.rack]));
    rackOfNodeCache.set(site, m);
  }
  return m;
}
const rackOfNodeCache = new WeakMap<Site, Map<string, string>>();
