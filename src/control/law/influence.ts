// How much each air handler cools each rack: the weights allocation uses to give the units nearest
// a hot spot more of the group's airflow. From config when the site gives one, else from geometry:
// w = 1 / (1 + (d/L)²) within a room, 0 across rooms (the shape the simulator's physics also uses).
import type { Site } from '../../config/site-schema.ts';

/** influence[ahu][rack] ≥ 0; a missing entry is 0. */
export type InfluenceMatrix = Record<string, Record<string, number>>;

/** Distance scale of one unit's local reach, m. */
export const INFLUENCE_LENGTH_M = 6;

export function influenceFromGeometry(site: Site, ahuIds: readonly string[], lengthM = INFLUENCE_LENGTH_M) {
  const out: InfluenceMatrix = {};
  for (const id of ahuIds) {
    const ahu = site.airHandlers.find((a) => a.id === id);
    const row: Record<string, number> = {};
    out[id] = row;
    if (!ahu) continue;
    for (const r of site.racks) {
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
  const rackOfNode = new Map(site.sensorNodes.map((n) => [n.id, n.rack]));
  const racksOf = new Map(
    site.controlGroups.map((g) => [
      g.id,
      g.sensorNodes.map((n) => rackOfNode.get(n)).filter((r) => r !== undefined),
    ]),
  );
  const out: Record<string, string[]> = {};
  for (const g of site.controlGroups) {
    const m = influenceFromGeometry(site, g.airHandlers);
    out[g.id] = site.controlGroups
      .filter((h) => h.id !== g.id)
      .filter((h) =>
        g.airHandlers.some((a) => racksOf.get(h.id)!.some((r) => (m[a]?.[r] ?? 0) >= minInfluence)),
      )
      .map((h) => h.id);
  }
  return out;
}
