// A node's report order and restart rules: which seq is new, a copy, late, or the first of a count
// the node began again (rebooted), and its rate limit. Invariant: a node's reports are applied in
// seq order only, and a restart is followed only once the evidence rules out a late delivery.
import type { Logger } from 'pino';
import { clip, type LogLimiter } from '../util/log-limit.ts';
import type { DropReason } from './report.ts';
import type { NodeRt, SensorColumns } from './sensor-columns.ts';
import * as columns from './sensor-columns.ts';

// Column indices bound as this module's own constants (see sensor-columns.ts): folded into the
// hot loops, where an imported binding would be read on every use.
const { LOSS_EWMA, NEWEST_AT_MS, RESTART_AT_MS, SEQ_WINDOW, TOKENS, TOKENS_AT_MS } = columns;

/** A seq this far behind the newest is a node that restarted its count, not a late report. */
const RESTART_BEHIND = 320;
/** Reports in a row that a restart is believed after (unless the report's own time says so at once). */
const RESTART_RUN = 3;
/**
 * No copy or late delivery of a report arrives later than this after the node's newest report: the
 * mesh delivers within 10 s of sending (docs/mqtt-topics.md), and a report is sent before its
 * successors are; twice that, for the broker and our own queue. An older seq counting up after it is
 * a new count, however early in the node's life.
 */
const LATE_MAX_MS = 20_000;
/**
 * A report sampled further ahead of our wall clock than this has a clock that is wrong (or a time
 * that lies): its `sampledAt` is ignored. Taken as a time, one such report of a low seq was believed
 * at once as a reboot ('report-time') and its successors' true times then read as late for 20 s.
 * Generous: NTP keeps gateways within a second, and a controller's own clock may have stepped back.
 */
const MAX_SAMPLED_AHEAD_MS = 10 * 60_000;
/** Largest seq step within a run of older seqs that still counts as counting up (reports get lost). */
const RUN_MAX_STEP = 16;
const LOSS_ALPHA = 0.1;

/** What told the store a node had started its seq count again. */
export type RestartEvidence = 'report-time' | 'far-behind' | 'counting-up';

/** Where the order rules count and log what they decide: the store's counters and drop-line limiter. */
export interface OrderLog {
  readonly counters: { restarts: number; timesIgnored: number };
  readonly log: Logger | undefined;
  /** Shared with the store's drop lines: one line every 10 s per kind. */
  readonly dropLog: LogLimiter;
  /** Wall ms: what a report's `sampledAt` is checked against. */
  readonly wallNow: () => number;
}

/**
 * null when `seq` is new and in order, or the first of a node's new count (and records it); else
 * why it must not be applied. `sampledAt` and `atMs` (receipt, monotonic) are the report's.
 */
export function orderReport(
  c: SensorColumns,
  o: OrderLog,
  n: NodeRt,
  seq: number,
  sampledAt: string | undefined,
  atMs: number,
): DropReason | null {
  if (n.lastSeq === 0) {
    accept(c, n, seq, 0, sampledAt, atMs);
    return null;
  }
  // How far ahead modulo 2^32 (seqs wrap), without a floating-point remainder.
  let ahead = seq - n.lastSeq;
  if (ahead < 0) ahead += 0x1_0000_0000;
  if (ahead > 0 && ahead < 0x8000_0000) {
    // Just after a new count began, the old count's late reports may still come, and look ahead.
    if (
      atMs - c.nodeFigures[n.figures + RESTART_AT_MS]! <= LATE_MAX_MS &&
      lateFromOldCount(n, seq, ahead, sampledAt)
    )
      return late(c, n, seq);
    n.resetRun = 0;
    n.runLen = 0;
    accept(c, n, seq, ahead - 1, sampledAt, atMs);
    return null;
  }
  // Not newer than the newest: a copy, a late report, or a node that rebooted and counts again.
  const copy = ahead === 0 || seenRecently(c, n, seq);
  const evidence = restartEvidence(c, n, seq, ahead, copy, sampledAt, atMs);
  if (evidence !== null) {
    restarted(c, o, n, seq, evidence, sampledAt, atMs);
    return null;
  }
  if (copy) {
    n.duplicates++;
    return 'duplicate';
  }
  return late(c, n, seq);
}

/**
 * `sampledAt` if it is a time not too far ahead of ours (MAX_SAMPLED_AHEAD_MS), else undefined,
 * counted and logged (one line every 10 s): the seq alone then orders the report. A time far in
 * the past stays: it is only ever compared with the same node's other times.
 */
export function trustedTime(o: OrderLog, nodeId: string, sampledAt: string): string | undefined {
  const t = Date.parse(sampledAt);
  if (t <= o.wallNow() + MAX_SAMPLED_AHEAD_MS) return sampledAt;
  o.counters.timesIgnored++;
  const notLogged = o.log ? o.dropLog.admit('time-ignored') : -1;
  if (notLogged >= 0)
    o.log?.warn(
      {
        sensorNode: clip(nodeId),
        sampledAt: clip(sampledAt),
        reason: Number.isNaN(t) ? 'not a time' : 'ahead of our clock',
        notLogged,
      },
      'sensor report time ignored; ordered by its seq alone',
    );
  return undefined;
}

function late(c: SensorColumns, n: NodeRt, seq: number): DropReason {
  n.outOfOrder++;
  // A late report fills a gap counted as loss when its successor came.
  const loss = n.figures + LOSS_EWMA;
  c.nodeFigures[loss] = Math.max(0, c.nodeFigures[loss]! - LOSS_ALPHA / 2);
  remember(c, n, seq);
  return 'out-of-order';
}

/**
 * Within LATE_MAX_MS of following a new count: whether `seq`, ahead of the new count's newest, is
 * rather a late report of the old count. Sampled before the newest, it is; without times, a seq
 * not past the old count's newest that jumps further than a new count plausibly lost is.
 */
function lateFromOldCount(n: NodeRt, seq: number, ahead: number, sampledAt: string | undefined): boolean {
  if (sampledAt !== undefined && n.sampledAt !== undefined)
    return Date.parse(sampledAt) < Date.parse(n.sampledAt);
  let behindOld = n.lastSeqBefore - seq;
  if (behindOld < 0) behindOld += 0x1_0000_0000;
  return behindOld < 0x8000_0000 && ahead > RUN_MAX_STEP;
}

/**
 * Whether seq `seq`, not ahead of the node's newest, is a new count rather than a copy or a late
 * report, and what says so. A late report or a copy never passes: it was sampled no later than the
 * newest (report-time), and it arrives within LATE_MAX_MS of the newest (counting-up). Far behind
 * (more than RESTART_BEHIND) is the older rule, for nodes whose count had gone far.
 */
function restartEvidence(
  c: SensorColumns,

  n: NodeRt,
  seq: number,
  ahead: number,
  copy: boolean,
  sampledAt: string | undefined,
  atMs: number,
): RestartEvidence | null {
  // Parsed only here, off the common path: an ISO time from the wire (NaN never compares greater).
  if (sampledAt !== undefined && n.sampledAt !== undefined && Date.parse(sampledAt) > Date.parse(n.sampledAt))
    return 'report-time';
  if (!copy && 0x1_0000_0000 - ahead > RESTART_BEHIND) {
    n.resetRun++;
    if (n.resetRun >= RESTART_RUN) return 'far-behind';
  }
  // A run of older seqs, each a little above the one before: a new count, or late reports that
  // came in order. The newest report's receipt time tells them apart.
  let step = seq - n.runSeq;
  if (step < 0) step += 0x1_0000_0000;
  if (n.runLen > 0 && step === 0) return null; // a copy of the run's latest: the run stands
  n.runLen = n.runLen > 0 && step <= RUN_MAX_STEP ? Math.min(n.runLen + 1, RESTART_RUN) : 1;
  n.runSeq = seq;
  if (n.runLen >= RESTART_RUN && atMs - c.nodeFigures[n.figures + NEWEST_AT_MS]! > LATE_MAX_MS)
    return 'counting-up';
  return null;
}

/** Follows the node into its new count from `seq`: the seqs remembered were the old count's. */
function restarted(
  c: SensorColumns,
  o: OrderLog,

  n: NodeRt,
  seq: number,
  evidence: RestartEvidence,
  sampledAt: string | undefined,
  atMs: number,
): void {
  const lastSeq = n.lastSeq;
  n.restarts++;
  o.counters.restarts++;
  n.resetRun = 0;
  n.runLen = 0;
  n.seqCount = 0;
  n.seqNext = 0;
  n.lastSeqBefore = lastSeq;
  c.nodeFigures[n.figures + RESTART_AT_MS] = atMs;
  accept(c, n, seq, 0, sampledAt, atMs);
  if (!o.log) return;
  // A node (or whoever publishes on its topic) can make this happen with every report.
  const notLogged = o.dropLog.admit('restart');
  if (notLogged >= 0)
    o.log.warn(
      { sensorNode: n.id, seq, lastSeq, evidence, notLogged },
      'sensor node restarted its sequence numbers',
    );
}

function accept(
  c: SensorColumns,
  n: NodeRt,
  seq: number,
  missing: number,
  sampledAt: string | undefined,
  atMs: number,
): void {
  const lossNow = missing / (missing + 1);
  const loss = n.figures + LOSS_EWMA;
  c.nodeFigures[loss]! += LOSS_ALPHA * (lossNow - c.nodeFigures[loss]!);
  c.nodeFigures[n.figures + NEWEST_AT_MS] = atMs;
  n.lastSeq = seq;
  n.sampledAt = sampledAt;
  remember(c, n, seq);
}

/** Keeps the node's last SEQ_WINDOW seqs (applied or late), a ring. */
function remember(c: SensorColumns, n: NodeRt, seq: number): void {
  c.recentSeqs[n.seqBase + n.seqNext] = seq;
  n.seqNext = (n.seqNext + 1) % SEQ_WINDOW;
  if (n.seqCount < SEQ_WINDOW) n.seqCount++;
}

function seenRecently(c: SensorColumns, n: NodeRt, seq: number): boolean {
  for (let i = 0; i < n.seqCount; i++) if (c.recentSeqs[n.seqBase + i] === seq) return true;
  return false;
}

export function takeToken(c: SensorColumns, n: NodeRt, nowMs: number): boolean {
  const rate = c.s.maxReportsPerNodePerS;
  // A receive time older than the last one (a Modbus gateway's age) earns nothing and takes nothing back.
  const nf = c.nodeFigures;
  const f = n.figures;
  const elapsedMs = Math.max(0, nowMs - nf[f + TOKENS_AT_MS]!);
  nf[f + TOKENS] = Math.min(c.burstTokens, nf[f + TOKENS]! + (elapsedMs / 1000) * rate);
  nf[f + TOKENS_AT_MS] = Math.max(nf[f + TOKENS_AT_MS]!, nowMs);
  if (nf[f + TOKENS]! < 1) return false;
  nf[f + TOKENS]! -= 1;
  return true;
}
