// The witness: reads the simulator's write journal and checks that no two leaders ever drove one
// control group. (a) per AHU, accepted epochs never go down (by seq); (b) per group, accepted
// epochs never go down across all its AHUs — a leader's term ends before the next one's begins,
// so an A, B, A pattern is an interleave even when each unit on its own looks fine.
// Every violation keeps both entries involved; nothing is thrown away.

import type { JournalEntry } from '../../firmware-sim/journal.ts';

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

export type ViolationKind = 'ahu-epoch-decrease' | 'group-interleave' | 'journal-truncated';

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
