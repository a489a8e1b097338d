// Placement: which group (if any) this node should hand over to even out leadership. Pure.
// Target: every member leads ⌊G/N⌋ or ⌈G/N⌉ groups (difference ≤ 1). Only a node leading at least
// two more than the least-loaded member gives one away, to that member; so a balanced cluster never
// moves, and each handover strictly reduces the imbalance (no flapping). When to apply it (hold time
// after membership changes, one handover in flight) is the caller's hysteresis.

export interface PlacementInput {
  me: string;
  /** Live members, by node name. */
  members: readonly string[];
  /** Per group, the node leading it (null: election in progress). */
  leaders: ReadonlyMap<string, string | null>;
}

export interface HandoverPlan {
  group: string;
  to: string;
  reason: string;
}

export function leaderCounts(
  members: readonly string[],
  leaders: ReadonlyMap<string, string | null>,
): Map<string, number> {
  const counts = new Map<string, number>(members.map((m) => [m, 0]));
  for (const leader of leaders.values()) {
    if (leader !== null && counts.has(leader)) counts.set(leader, counts.get(leader)! + 1);
  }
  return counts;
}

export function planHandover(input: PlacementInput): HandoverPlan | null {
  const { me, leaders } = input;
  const members = [...input.members].sort();
  if (!members.includes(me) || members.length < 2) return null;
  // A group without a leader means an election is under way: counts are not settled yet.
  for (const leader of leaders.values()) if (leader === null || !members.includes(leader)) return null;
  const counts = leaderCounts(members, leaders);
  const mine = counts.get(me)!;
  const least = Math.min(...counts.values());
  if (mine - least < 2) return null;
  // Among the least loaded, start looking right after `me` in name order, so that two overloaded
  // nodes deciding at once tend to pick different targets.
  const after = members.indexOf(me);
  const rotated = [...members.slice(after + 1), ...members.slice(0, after)];
  const to = rotated.find((m) => counts.get(m) === least)!;
  const myGroups = [...leaders.entries()]
    .filter(([, l]) => l === me)
    .map(([g]) => g)
    .sort();
  const group = myGroups[myGroups.length - 1]!;
  return { group, to, reason: `rebalance: ${me} leads ${mine}, ${to} leads ${least}` };
}
