// How much each air handler cools each rack: the weights allocation uses to give the units nearest
// a hot spot more of the group's airflow. From config when the site gives one, else from geometry:
// w = 1 / (1 + (d/L)²) within a room, 0 across rooms (the shape the simulator's physics also uses).
import type { Site } from '../../config/site-schema.ts';

/** influence[ahu][rack] ≥ 0; a missing entry is 0. */
export type InfluenceMatrix = Record<string, Record<string, number>>;

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
) {
  const out: InfluenceMatrix = {};
  const candidates = racks ? site.racks.filter((r) => racks.has(r.id)) : site.racks;
  for (const id of ahuIds) {
    const ahu = site.airHandlers.find((a) => a.id === id);
    const row: Record<string, number> = {};
    out[id] = row;
    if (!ahu) continue;
    for (const r of candidates) {
      if (r.room !== ahu.room) continue;
      const d2 = ((r.xM - ahu.xM) ** 2 + (r.yM - ahu.yM) ** 2) / lengthM ** 2;
      row[r.id] = 1 / (1 + d2);
    }
  }
  return out;
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
        g.airHandlers.some((a) => racksOf.get(h.id)!.some((r) => (m[a]?.[r] ?? 0) >= minInfluence)),
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
