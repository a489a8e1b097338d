// The witness: reads the simulator's write journal and checks that no two leaders ever drove one
// control group. (a) per AHU, accepted epochs never go down (by seq); (b) per group, accepted
// epochs never go down across all its AHUs — a leader's term ends before the next one's begins,
// so an A, B, A pattern is an interleave even when each unit on its own looks fine.
// Every violation keeps both entries involved; nothing is thrown away.

import type { JournalEntry } from '../../firmware-sim/journal.ts';
import type { FencingViolationKind } from './fencing-proofs.ts';

export type { JournalEntry };

export interface JournalRead {
  entries: JournalEntry[];
  /** The simulator dropped entries we never saw: the check is then incomplete. */
  truncated: boolean;
  lastSeq: number;
}

/** Reads the journal after `since`, page by page, bounded in pages and time. */
export async function readJournal(
  simUrl: string,
  {
    since = 0,
    pageSize = 20_000,
    timeoutMs = 30_000,
  }: { since?: number; pageSize?: number; timeoutMs?: number } = {},
): Promise<JournalRead> {
  const entries: JournalEntry[] = [];
  let truncated = false;
  let cursor = since;
  const signal = AbortSignal.timeout(timeoutMs);
  // The simulator keeps at most 200 000 entries, so this many pages always reach the end.
  for (let page = 0; page < 1000; page++) {
    const res = await fetch(`${simUrl}/sim/journal?since=${cursor}&limit=${pageSize}`, { signal });
    if (!res.ok) throw new Error(`GET ${simUrl}/sim/journal answered ${res.status}`);
    const body = (await res.json()) as { entries: JournalEntry[]; nextSeq: number; truncated: boolean };
    truncated ||= body.truncated;
    entries.push(...body.entries);
    const last = body.entries.at(-1);
    if (!last || last.seq >= body.nextSeq - 1) break;
    cursor = last.seq;
  }
  return { entries, truncated, lastSeq: entries.at(-1)?.seq ?? since };
}

export type ViolationKind =
  | 'ahu-epoch-decrease'
  | 'group-interleave'
  | 'journal-truncated'
  // a vendor unit's write its witness cannot place in a term (fencing-proofs.ts)
  | FencingViolationKind
  // liveness (checkLiveness): a group its leader claimed and did not drive
  | 'term-start-late'
  | 'drive-gap'
  | 'not-handed-on';

export interface Violation {
  kind: ViolationKind;
  group?: string;
  ahu?: string;
  /** The accepted write that broke the rule. */
  entry?: JournalEntry;
  /** The earlier accepted write with the higher epoch it contradicts. */
  previous?: JournalEntry;
  message: string;
}

export interface InvariantReport {
  ok: boolean;
  violations: Violation[];
  entries: number;
  accepted: number;
  refused: number;
  /** Refused writes by reason (e.g. stale-epoch: fencing at the unit doing its job). */
  refusedByReason: Record<string, number>;
  /** Per group: its leadership terms (epochs) in the order their first accepted write appeared. */
  terms: Record<
    string,
    {
      epoch: number;
      firstSeq: number;
      lastSeq: number;
      firstWallMs: number;
      lastWallMs: number;
      writes: number;
    }[]
  >;
}

/** `groups`: control group id → its AHU ids (the site's controlGroups). */
export function checkJournal(
  entries: readonly JournalEntry[],
  groups: Readonly<Record<string, readonly string[]>>,
  { truncated = false }: { truncated?: boolean } = {},
): InvariantReport {
  const violations: Violation[] = [];
  if (truncated) {
    violations.push({
      kind: 'journal-truncated',
      message: 'the simulator dropped journal entries before they were read: the check is incomplete',
    });
  }
  const groupOfAhu = new Map<string, string>();
  for (const [g, ahus] of Object.entries(groups)) for (const a of ahus) groupOfAhu.set(a, g);
  const lastByAhu = new Map<string, JournalEntry>();
  const lastByGroup = new Map<string, JournalEntry>();
  const terms: InvariantReport['terms'] = {};
  const refusedByReason: Record<string, number> = {};
  let accepted = 0;
  let refused = 0;
  const sorted = [...entries].sort((a, b) => a.seq - b.seq);
  for (const e of sorted) {
    if (!e.accepted) {
      refused++;
      const r = e.reason ?? 'unknown';
      refusedByReason[r] = (refusedByReason[r] ?? 0) + 1;
      continue;
    }
    accepted++;
    const prevAhu = lastByAhu.get(e.ahu);
    if (prevAhu && e.epoch < prevAhu.epoch) {
      violations.push({
        kind: 'ahu-epoch-decrease',
        ahu: e.ahu,
        ...(groupOfAhu.has(e.ahu) ? { group: groupOfAhu.get(e.ahu)! } : {}),
        entry: e,
        previous: prevAhu,
        message: `${e.ahu}: accepted epoch ${e.epoch} at seq ${e.seq} after epoch ${prevAhu.epoch} at seq ${prevAhu.seq}`,
      });
    }
    if (!prevAhu || e.epoch >= prevAhu.epoch) lastByAhu.set(e.ahu, e);
    const g = groupOfAhu.get(e.ahu);
    if (!g) continue;
    const prevGroup = lastByGroup.get(g);
    if (prevGroup && e.epoch < prevGroup.epoch) {
      violations.push({
        kind: 'group-interleave',
        group: g,
        ahu: e.ahu,
        entry: e,
        previous: prevGroup,
        message:
          `${g}: epoch ${e.epoch} wrote ${e.ahu} at seq ${e.seq} (wall ${e.wallMs}) after epoch ${prevGroup.epoch} ` +
          `had written ${prevGroup.ahu} at seq ${prevGroup.seq} (wall ${prevGroup.wallMs}): two leaders drove the group`,
      });
    }
    if (!prevGroup || e.epoch >= prevGroup.epoch) lastByGroup.set(g, e);
    terms[g] ??= [];
    const list = terms[g];
    let term = list.find((x) => x.epoch === e.epoch);
    if (!term) {
      term = {
        epoch: e.epoch,
        firstSeq: e.seq,
        lastSeq: e.seq,
        firstWallMs: e.wallMs,
        lastWallMs: e.wallMs,
        writes: 0,
      };
      list.push(term);
    }
    term.lastSeq = e.seq;
    term.lastWallMs = e.wallMs;
    term.writes++;
  }
  return {
    ok: violations.length === 0,
    violations,
    entries: sorted.length,
    accepted,
    refused,
    refusedByReason,
    terms,
  };
}

export interface Handover {
  group: string;
  oldEpoch: number | null;
  newEpoch: number;
  /** The old term's last accepted write on the group's units (null: no old term seen). */
  lastOld: JournalEntry | null;
  /** The new term's first accepted write. */
  firstNew: JournalEntry;
  /** firstNew.wallMs − lastOld.wallMs: > 0 means the old leader had stopped before the new one started. */
  gapMs: number | null;
  /** firstNew.wallMs − faultWallMs, when a fault time was given. */
  sinceFaultMs: number | null;
}

/**
 * The first handover of `group` to an epoch above `oldEpoch` (or, without it, to any epoch newer
 * than the one writing at `faultWallMs`): the old term's last accepted write and the new term's
 * first. Null when no newer epoch wrote.
 */
export function findHandover(
  entries: readonly JournalEntry[],
  groupAhus: readonly string[],
  { group = '', oldEpoch, faultWallMs }: { group?: string; oldEpoch?: number; faultWallMs?: number },
): Handover | null {
  const ahus = new Set(groupAhus);
  const mine = entries.filter((e) => e.accepted && ahus.has(e.ahu)).sort((a, b) => a.seq - b.seq);
  let old = oldEpoch;
  if (old === undefined) {
    const before = faultWallMs === undefined ? undefined : mine.filter((e) => e.wallMs <= faultWallMs).at(-1);
    old = before?.epoch ?? 0;
  }
  const firstNew = mine.find((e) => e.epoch > old!);
  if (!firstNew) return null;
  const lastOld = mine.filter((e) => e.epoch === old).at(-1) ?? null;
  return {
    group,
    oldEpoch: lastOld ? old : null,
    newEpoch: firstNew.epoch,
    lastOld,
    firstNew,
    gapMs: lastOld ? firstNew.wallMs - lastOld.wallMs : null,
    sinceFaultMs: faultWallMs === undefined ? null : firstNew.wallMs - faultWallMs,
  };
}

/** Write attempts (accepted or refused) with `epoch` on the group's units after `afterSeq`. */
export function attemptsWithEpoch(
  entries: readonly JournalEntry[],
  groupAhus: readonly string[],
  epoch: number,
  afterSeq: number,
): JournalEntry[] {
  const ahus = new Set(groupAhus);
  return entries.filter((e) => e.seq > afterSeq && e.epoch === epoch && ahus.has(e.ahu));
}

/** One line for logs: entries, accepted, refused by reason, violations. */
export function summarize(r: InvariantReport): string {
  const reasons = Object.entries(r.refusedByReason)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  const termCount = Object.values(r.terms).reduce((n, t) => n + t.length, 0);
  return (
    `journal: ${r.entries} writes, ${r.accepted} accepted, ${r.refused} refused${reasons ? ` (${reasons})` : ''}, ` +
    `${termCount} leadership terms, ${r.violations.length} violations`
  );
}

// ---------------------------------------------------------------------------------------------
// Liveness: never none. The safety rules above say no two leaders drove a group; these say the
// one that claims it drives it. Claims come from the controllers' own API (`/api/v1/cluster` and
// `/readyz`, sampled by the hall), writes from the journal; both on the host's wall clock.

/** One sample of one node's view of one group. */
export interface ClaimSample {
  /** Wall time the request was sent (the answer describes a moment at or after it). */
  atMs: number;
  node: string;
  group: string;
  epoch: number;
  /** The node says it leads the group (state `leader`). */
  leader: boolean;
  /** It says it drives the group (its loop holds a term). */
  driving: boolean;
  /** The node's `/readyz` answered 200 in the same sample. */
  ready: boolean;
}

/** A stretch in which one node was seen, sample after sample, to claim one group under one epoch. */
export interface ClaimSpan {
  group: string;
  node: string;
  epoch: number;
  /** `drives`: leader, driving and ready; `stuck`: leader and ready but not driving. */
  kind: 'drives' | 'stuck';
  firstMs: number;
  lastMs: number;
}

/** A window in which a group is deliberately not driven (an operator pause, units handed to local control). */
export interface LivenessExemption {
  group: string;
  fromMs: number;
  /** null: still open at the check. */
  toMs: number | null;
  why: string;
}

export interface LivenessOptions {
  /** Longest allowed gap between a driving leader's accepted writes: half the units' watchdog. */
  halfPeriodMs: number;
  /** Longest a ready leader may hold a group it does not drive before handing it on. */
  handOnMs: number;
  /** Samples further apart than this do not join one span (the sampler was late: nothing is known between). */
  maxSampleGapMs: number;
  exemptions?: readonly LivenessExemption[];
}

export type LivenessKind = 'term-start-late' | 'drive-gap' | 'not-handed-on';

export interface LivenessViolation {
  kind: LivenessKind;
  group: string;
  node: string;
  epoch: number;
  /** Wall time the gap (or the stuck claim) began and the time it was seen to end. */
  fromMs: number;
  toMs: number;
  message: string;
}

/**
 * Joins samples into spans: consecutive samples (no more than `maxSampleGapMs` apart) of the same
 * node, group, epoch and kind. A sample that claims nothing (follower, or not ready) ends a span.
 */
export function claimSpans(samples: readonly ClaimSample[], maxSampleGapMs: number): ClaimSpan[] {
  const spans: ClaimSpan[] = [];
  const open = new Map<string, ClaimSpan>();
  const sorted = [...samples].sort((a, b) => a.atMs - b.atMs);
  for (const s of sorted) {
    const key = `${s.node}\u0000${s.group}`;
    const kind: ClaimSpan['kind'] | null = s.leader && s.ready ? (s.driving ? 'drives' : 'stuck') : null;
    const cur = open.get(key);
    if (cur && kind === cur.kind && s.epoch === cur.epoch && s.atMs - cur.lastMs <= maxSampleGapMs) {
      cur.lastMs = s.atMs;
      continue;
    }
    if (cur) open.delete(key);
    if (kind === null) continue;
    const span: ClaimSpan = {
      group: s.group,
      node: s.node,
      epoch: s.epoch,
      kind,
      firstMs: s.atMs,
      lastMs: s.atMs,
    };
    spans.push(span);
    open.set(key, span);
  }
  return spans;
}

/** `[from, to]` minus every exemption of the group (each widened by `graceMs` after its end). */
function unexempted(
  fromMs: number,
  toMs: number,
  exemptions: readonly LivenessExemption[],
  graceMs: number,
): [number, number][] {
  let parts: [number, number][] = fromMs < toMs ? [[fromMs, toMs]] : [];
  for (const x of exemptions) {
    const xFrom = x.fromMs;
    const xTo = x.toMs === null ? Number.POSITIVE_INFINITY : x.toMs + graceMs;
    parts = parts.flatMap(([a, b]): [number, number][] => {
      if (xTo <= a || xFrom >= b) return [[a, b]];
      const out: [number, number][] = [];
      if (xFrom > a) out.push([a, xFrom]);
      if (xTo < b) out.push([xTo, b]);
      return out;
    });
  }
  return parts;
}

/**
 * Checks, for every span in which a ready node said it led and drove a group:
 * - the term's first accepted write comes within `halfPeriodMs` of the term being first seen, and
 * - no gap longer than `halfPeriodMs` between its accepted writes (any of the group's units)
 *   while the claim lasts;
 * and for every span in which a ready node led a group without driving it: it ends (the group is
 * handed on, or driven) within `handOnMs`. Exempt windows (pauses, units handed to local control)
 * are cut out, and a driving claim gets `halfPeriodMs` after an exemption ends to write again.
 */
export function checkLiveness(
  entries: readonly JournalEntry[],
  groups: Readonly<Record<string, readonly string[]>>,
  spans: readonly ClaimSpan[],
  o: LivenessOptions,
): LivenessViolation[] {
  const H = o.halfPeriodMs;
  const violations: LivenessViolation[] = [];
  const writes = new Map<string, number[]>();
  const groupOfAhu = new Map<string, string>();
  for (const [g, ahus] of Object.entries(groups)) for (const a of ahus) groupOfAhu.set(a, g);
  for (const e of entries) {
    if (!e.accepted) continue;
    const g = groupOfAhu.get(e.ahu);
    if (!g) continue;
    const key = `${g}\u0000${e.epoch}`;
    const list = writes.get(key) ?? [];
    writes.set(key, list);
    list.push(e.wallMs);
  }
  for (const list of writes.values()) list.sort((a, b) => a - b);
  // A claim is stale once a newer epoch wrote the group (a stopped leader's view, for a moment
  // after SIGCONT): from then on the group is driven by the newer term, and safety is the journal's.
  const supersededAt = (group: string, epoch: number): number => {
    let at = Number.POSITIVE_INFINITY;
    for (const [key, list] of writes) {
      const [g, e] = key.split('\u0000');
      if (g === group && Number(e) > epoch && list.length > 0) at = Math.min(at, list[0]!);
    }
    return at;
  };
  // A term is first seen at the earliest driving claim of its epoch, on any span.
  const termSeen = new Map<string, number>();
  for (const s of spans) {
    if (s.kind !== 'drives') continue;
    const key = `${s.group}\u0000${s.epoch}`;
    termSeen.set(key, Math.min(termSeen.get(key) ?? Number.POSITIVE_INFINITY, s.firstMs));
  }
  for (const s of spans) {
    const ex = (o.exemptions ?? []).filter((x) => x.group === s.group);
    const endMs = Math.min(s.lastMs, supersededAt(s.group, s.epoch));
    if (s.kind === 'stuck') {
      for (const [a, b] of unexempted(s.firstMs, endMs, ex, 0)) {
        if (b - a > o.handOnMs) {
          violations.push({
            kind: 'not-handed-on',
            group: s.group,
            node: s.node,
            epoch: s.epoch,
            fromMs: a,
            toMs: b,
            message:
              `${s.group}: ${s.node} led it (epoch ${s.epoch}) without driving it for ${b - a} ms, ` +
              `longer than the ${o.handOnMs} ms hand-on bound`,
          });
        }
      }
      continue;
    }
    const key = `${s.group}\u0000${s.epoch}`;
    const seen = termSeen.get(key) ?? s.firstMs;
    const times = writes.get(key) ?? [];
    // A claim that resumes under the same epoch after the node claimed nothing (its lease guard
    // fenced it until etcd answered again, a stop and SIGCONT) starts afresh, like a term: half a
    // watchdog to write, and the time it did not claim is not a gap of this claim.
    const resumed = s.firstMs > seen;
    // From here on a write of this term must never be older than H.
    const from = resumed ? s.firstMs + H : Math.max(s.firstMs, seen + H);
    for (const [a, b] of unexempted(from, endMs, ex, H)) {
      // The points at which "the newest write" changes: the newest before the window, each write in
      // it, and the window's end. Any two consecutive ones further apart than H are a gap.
      const i0 = upperBound(times, a) - 1;
      const before = i0 >= 0 ? times[i0]! : null;
      const newest = resumed ? Math.max(before ?? s.firstMs, s.firstMs) : before;
      const points = [newest, ...times.slice(i0 + 1, upperBound(times, b)), b];
      let worst: { from: number; to: number; neverWrote: boolean } | null = null;
      for (let k = 1; k < points.length; k++) {
        const prev = points[k - 1] ?? null;
        const gapFrom = prev ?? seen;
        const to = points[k]!;
        if (to - gapFrom > H && (!worst || to - gapFrom > worst.to - worst.from))
          worst = { from: gapFrom, to, neverWrote: prev === null };
      }
      if (!worst) continue;
      const firstWrite = times.find((t) => t >= seen);
      violations.push({
        kind: worst.neverWrote ? 'term-start-late' : 'drive-gap',
        group: s.group,
        node: s.node,
        epoch: s.epoch,
        fromMs: worst.from,
        toMs: worst.to,
        message: worst.neverWrote
          ? `${s.group}: ${s.node} claimed to drive it (epoch ${s.epoch}) from ${seen} but the term's first accepted ` +
            `write came ${firstWrite === undefined ? 'never' : `${firstWrite - seen} ms later`} ` +
            `(bound ${H} ms, half the units' watchdog)`
          : `${s.group}: ${s.node} claimed to drive it (epoch ${s.epoch}) with no accepted write for ` +
            `${worst.to - worst.from} ms (from ${worst.from} to ${worst.to}; bound ${H} ms, half the units' watchdog)`,
      });
    }
  }
  return violations;
}

/** Index of the first element > x in an ascending list. */
function upperBound(xs: readonly number[], x: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid]! <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Groups without an accepted write (any epoch) in `[fromMs, toMs]`: a trial that shows none proves nothing. */
export function groupsWithoutWrites(
  entries: readonly JournalEntry[],
  groups: Readonly<Record<string, readonly string[]>>,
  fromMs: number,
  toMs: number,
): string[] {
  const seen = new Set<string>();
  const groupOfAhu = new Map<string, string>();
  for (const [g, ahus] of Object.entries(groups)) for (const a of ahus) groupOfAhu.set(a, g);
  for (const e of entries) {
    if (!e.accepted || e.wallMs < fromMs || e.wallMs > toMs) continue;
    const g = groupOfAhu.get(e.ahu);
    if (g) seen.add(g);
  }
  return Object.keys(groups).filter((g) => !seen.has(g));
}
