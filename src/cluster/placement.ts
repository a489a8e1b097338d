// Placement: which groups move, from which node to which, to even out leadership. Pure.
// Target: every member leads ⌊T/N⌋ or ⌈T/N⌉ of the T led groups (max − min ≤ 1); the extra ones go
// to the members that lead the most now, so a balanced cluster never moves. The whole move set is
// planned at once, identically on every node from the same view (members, every group's leader and
// queue, the handovers in flight): a group moves only from a member above its target straight to one
// below it, so no group moves twice while membership holds, and each node runs its own share of the
// moves in parallel. A giver keeps the groups it got recently (`pinned`): a group handed to it, or
// relinquished by its last leader, is not passed on or straight back, and it gives the groups it
// has led longest first. Hold time after membership
// changes is the caller's hysteresis.

export interface GroupSeats {
  /** The node leading the group (null: election in progress). */
  leader: string | null;
  /** Nodes queued in the group (leader included): only they can receive it. */
  queued: readonly string[];
}

export interface PlacementInput {
  /** Live members, by node name. */
  members: readonly string[];
  /** Every group in the cluster, not only the caller's: counts are over all of them. */
  groups: ReadonlyMap<string, GroupSeats>;
  /** Handovers in flight (group → target): counted as done, never planned again. */
  inFlight?: ReadonlyMap<string, string>;
  /** Groups their leader must not give away now (led for less than the hold, relinquished to it). */
  pinned?: ReadonlySet<string>;
  /**
   * When the leader started leading each group (ms, any clock; the giver knows its own): a giver
   * gives the groups it has led longest first, so what it got last — a group another node gave up —
   * is the last to go.
   */
  ledSinceMs?: ReadonlyMap<string, number>;
}

export interface HandoverPlan {
  group: string;
  from: string;
  to: string;
  reason: string;
}

/** Leaders per member (0 for a member leading none); handovers in flight count at their target. */
export function leaderCounts(
  members: readonly string[],
  groups: ReadonlyMap<string, GroupSeats>,
  inFlight: ReadonlyMap<string, string> = new Map(),
): Map<string, number> {
  const counts = new Map<string, number>(members.map((m) => [m, 0]));
  for (const [group, seats] of groups) {
    const leader = inFlight.get(group) ?? seats.leader;
    if (leader !== null && counts.has(leader)) counts.set(leader, counts.get(leader)! + 1);
  }
  return counts;
}

/** Every move the cluster needs now (empty: even, or an election is under way). Deterministic. */
export function planMoves(input: PlacementInput): HandoverPlan[] {
  const members = [...new Set(input.members)].sort();
  if (members.length < 2) return [];
  const inFlight = input.inFlight ?? new Map<string, string>();
  const pinned = input.pinned ?? new Set<string>();
  const since = input.ledSinceMs ?? new Map<string, number>();
  // A group without a live leader means an election is under way: counts are not settled yet.
  for (const seats of input.groups.values())
    if (seats.leader === null || !members.includes(seats.leader)) return [];
  const counts = leaderCounts(members, input.groups, inFlight);
  const values = [...counts.values()];
  if (Math.max(...values) - Math.min(...values) <= 1) return [];

  const total = values.reduce((s, n) => s + n, 0);
  const base = Math.floor(total / members.length);
  // The ⌈T/N⌉ seats go to the members leading the most now (ties by name): fewest moves.
  const ranked = [...members].sort((a, b) => counts.get(b)! - counts.get(a)! || (a < b ? -1 : 1));
  const target = new Map(ranked.map((m, i) => [m, base + (i < total % members.length ? 1 : 0)]));

  // Slots first, groups second: which giver fills which taker's seat depends on counts alone, so
  // every node computes the same pairing even though only the giver knows what it has pinned.
  const takerSeats: string[] = [];
  for (const m of members) for (let i = counts.get(m)!; i < target.get(m)!; i++) takerSeats.push(m);
  const plans: HandoverPlan[] = [];
  let seat = 0;
  for (const from of members) {
    const excess = counts.get(from)! - target.get(from)!;
    if (excess <= 0) continue;
    const mySeats = takerSeats.slice(seat, seat + excess);
    seat += excess;
    const givable = [...input.groups]
      .filter(([g, s]) => s.leader === from && !inFlight.has(g) && !pinned.has(g))
      .map(([g, s]) => ({ group: g, queued: new Set(s.queued), since: since.get(g) ?? 0 }))
      .sort((a, b) => a.since - b.since || (a.group < b.group ? -1 : a.group > b.group ? 1 : 0));
    for (const to of mySeats) {
      const i = givable.findIndex((x) => x.queued.has(to));
      if (i < 0) continue; // no group of ours has `to` queued (yet): a later pass places it
      const group = givable.splice(i, 1)[0]!.group;
      plans.push({
        group,
        from,
        to,
        reason: `rebalance: ${from} leads ${counts.get(from)} (target ${target.get(from)}), ${to} leads ${counts.get(to)} (target ${target.get(to)})`,
      });
    }
  }
  return plans;
}

/** The moves `me` should start now: its share of planMoves. */
export function planHandovers(input: PlacementInput & { me: string }): HandoverPlan[] {
  if (!input.members.includes(input.me)) return [];
  return planMoves(input).filter((p) => p.from === input.me);
}
