// The cluster's audit trail: every state-changing API request that passed authentication and its
// schema (who — the authenticated user, never a name the client sends —, which node, what target,
// which values, the answer), and every leadership a node gains, kept in etcd as one key per entry
// under `<prefix>/audit/`. Entries are ordered by etcd's create revision, which is also their `seq`,
// so every node reads the same trail and it survives restarts and failovers.
// Operator actions are recorded first (`begin`, before the action runs: `outcome: pending`), then
// completed in place with their answer (`finish`: same key, same seq). `begin` resolves only once
// etcd holds the entry; when etcd does not take it within the store's call deadline it throws
// AuditUnavailableError and the caller must not carry the action out, so no action runs without a
// durable entry. An entry whose outcome never came (its node stopped or lost etcd meanwhile) reads
// `outcome: pending` with no status: never as a success.
// An entry etcd does not take (no quorum, a leader election, a timeout) is kept and sent again with
// backoff until etcd takes it: the key is the same, so a try that did land and lost its answer is
// simply written again. At most MAX_PENDING wait in memory; one more, or a stop with some waiting,
// counts them `dropped` (their log lines keep them). The request's answer never waits for a retry.
// (A dropped outcome leaves its entry pending; a dropped refusal leaves its entry pending or absent.)
// Retention: the newest `maxEntries` (default 10 000) and nothing older than `maxAgeMs` (default
// 30 days); every writer prunes after each `pruneEvery`-th entry it writes, deleting the oldest (by
// create revision) with compare-and-delete (a racing writer's delete of the same key is harmless).
// Requests refused before that (no identity, a bad body) are only counted: junk cannot evict real
// entries. A failed sign-in has no identity but is kept, aggregated so a guesser cannot flood etcd:
// one entry per name and address per minute on each node, its `count` rewritten under the same key
// (at most MAX_FAILED_SIGN_IN_KEYS a minute; beyond, one entry for all the others). Never the password.
// Anyone with etcd write access can put anything under the prefix: an entry is shown only when it is
// one this code could have written (its fields typed, its time one ISO 8601 can write, its key made
// of its own time and node, at most MAX_ENTRY_BYTES); any other is counted once and logged (a few
// lines a burst), never shown, so one such value cannot fail the trail for everyone.
// Age is judged so that one node's wrong clock cannot empty the trail, nor drop fresh entries:
// - "now" is this node's clock, but never later than what the trail's other writers read: the
//   lower median of each node's newest stamp among the newest entries (a node 30 days ahead finds
//   the others' stamps and prunes by them; a node behind prunes less, which is safe). A trail only
//   one node writes has nothing to check that node against.
// - entries are written in revision order, so an entry stamped earlier than one written before it
//   (a node that booted at 1970, or was set back) has a stamp that says nothing: it is judged by the
//   next entry after it whose stamp is in order (it was written before that one), and kept when
//   there is none. One with no entry left before it can only be judged by its own stamp. Age
//   deletes a prefix of the trail in revision order.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { LAST_TIME_MS } from '../../alarms/alarm.ts';
import type { PrefixKv } from '../../cluster/etcd/prefix-kv.ts';
import { CoolctlError, ErrorCodes } from '../../errors.ts';
import { zeroSeries } from '../../metrics/zero-series.ts';
import { Backoff } from '../../util/async.ts';
import { clip, LogLimiter } from '../../util/log-limit.ts';
import { parseWireJson, wireJson } from '../../version.ts';
import { TOKEN_SHAPE } from '../auth/credentials.ts';

export interface OperatorAction {
  kind: 'operator';
  /** What was asked: the route's last segment, e.g. `switchover`, `commands`. */
  action: string;
  method: string;
  /** The request's path, e.g. /api/v1/groups/zone-1/commands */
  path: string;
  group: string | null;
  /** The route's other target, e.g. the unit of an override or the token revoked. */
  target: string | null;
  /** The request body (secrets removed; null when none or too big to keep). */
  params: unknown;
  /** The authenticated user and role (never a name the client claims). */
  user: string;
  role: string;
  clientIp: string;
  /** The node that took the request. */
  node: string;
  /**
   * The HTTP status this node answered, and the stable error code when it refused; null status
   * while the outcome is pending (then `error` says so, COOLCTL_E_AUDIT_NO_OUTCOME, when read).
   */
  status: number | null;
  error: { code: string; message: string } | null;
  /**
   * `pending`: written before the action and not completed: the request is still running, or its
   * node stopped or lost etcd before it recorded the answer; the action may or may not have taken
   * effect. `answered`: status and error are the node's answer. Entries of releases before
   * record-first have none, and were written after their answer: `answered`.
   */
  outcome?: 'pending' | 'answered';
}

/** What an operator action's entry holds before its action runs. */
export type ActionIntent = Omit<OperatorAction, 'kind' | 'status' | 'error' | 'outcome'>;
/** The answer an action got, recorded in its entry. */
export type ActionOutcome = Pick<OperatorAction, 'status' | 'error'> & { status: number };

/** An operator action's entry, written (`begin`) and not yet completed (`finish`). */
export interface OpenEntry {
  readonly key: string;
  readonly atMs: number;
  readonly action: ActionIntent;
  /** etcd did not take it: the action was refused, and that outcome is already on its way. */
  readonly refused: boolean;
}

/** The status an action is refused with when its entry cannot be written (the API answers it). */
export const AUDIT_REFUSED_STATUS = 503;

/** etcd did not take an action's entry in time: the action must not be carried out. */
export class AuditUnavailableError extends CoolctlError {
  readonly entry: OpenEntry;
  constructor(entry: OpenEntry, cause: unknown) {
    super(
      ErrorCodes.AUDIT_UNAVAILABLE,
      `the audit trail (etcd) did not take the action's entry: ${(cause as Error)?.message ?? String(cause)}`,
      { cause, retryable: true },
    );
    this.entry = entry;
  }
}

/** How a pending entry reads (GET /api/v1/audit, `coolctl history`, the dashboard): not a success. */
export const NO_OUTCOME = {
  code: ErrorCodes.AUDIT_NO_OUTCOME,
  message:
    'no outcome recorded: the request was still running when read, or its node stopped or lost etcd before recording the answer; the action may or may not have taken effect',
} as const;

export interface RoleTransition {
  kind: 'role';
  node: string;
  group: string;
  from: string;
  to: string;
  epoch: number | null;
  reason: string;
}

/** Sign-in attempts that failed on one node for one name from one address within one minute. */
export interface FailedSignIn {
  kind: 'failed-sign-in';
  /** The name tried (clipped; none of our tokens): it may be a user that does not exist. */
  name: string;
  clientIp: string;
  node: string;
  /** `wrong name or password`, or `limited` (too many tries for the name: refused unchecked). */
  reason: string;
  /** Failed attempts since the entry's `atMs`, within FAILED_SIGN_IN_WINDOW_MS of it. */
  count: number;
}

export type AuditRecord = OperatorAction | RoleTransition | FailedSignIn;
/** Every kind of record; `satisfies` keeps it the whole of AuditRecord['kind']. */
export const AUDIT_KINDS = Object.keys({
  operator: true,
  role: true,
  'failed-sign-in': true,
} satisfies Record<AuditRecord['kind'], true>) as AuditRecord['kind'][];
/** What became of an entry (coolctl_audit_entries_total{result}). */
const AUDIT_RESULTS = ['written', 'failed', 'retried', 'dropped', 'refused'] as const;
export type AuditEntry = AuditRecord & { seq: number; atMs: number };

/** A request body bigger than this (as JSON) is not kept; operator actions are a few fields. */
export const MAX_PARAMS_CHARS = 2048;
/** Every other text of an entry (a path, an error message, a reason) is clipped to this. */
export const MAX_FIELD_CHARS = 500;
/**
 * No entry this code writes is larger (params ≤ MAX_PARAMS_CHARS, a dozen fields ≤ MAX_FIELD_CHARS,
 * 3 bytes a character at most): a larger value under the prefix is not an entry, and is not shown.
 */
export const MAX_ENTRY_BYTES = 32 * 1024;
/** Entries deleted by one prune at most: a prefix flooded with keys shrinks over several prunes. */
export const PRUNE_BATCH = 1_000;
/**
 * Fields whose values never enter the trail nor its log line, by name in any case and anywhere in
 * the body: password, Passwd, apiToken, client_secret, privateKey, credentials, Authorization, …
 * Matching by pattern costs a harmless `(secret)` on a field that only sounds like one.
 */
const SECRET_FIELD = /pass|pwd|secret|token|key|credential|auth|cookie|session|bearer|private/i;

/** Failed sign-ins of one name from one address within this share one entry. */
export const FAILED_SIGN_IN_WINDOW_MS = 60_000;
/** Names × addresses with an entry of their own per window and node; the others share one. */
export const MAX_FAILED_SIGN_IN_KEYS = 100;

export const AUDIT_RETENTION = { maxEntries: 10_000, maxAgeMs: 30 * 86_400_000 } as const;

/** Entries etcd did not take, kept for another try; beyond this the oldest is dropped. */
export const MAX_PENDING = 1_000;
/** Newest entries read to learn what the trail's writers' clocks read (for retention by age). */
const AGE_SAMPLE = 200;
/** Backoff between tries of the entries waiting, ms. */
export const AUDIT_RETRY_MS = { first: 250, max: 10_000 } as const;

interface Pending {
  key: string;
  value: string;
  kind: AuditRecord['kind'];
}

export interface AuditTrailOptions {
  kv: PrefixKv;
  prefix: string;
  logger: Logger;
  registry: Registry;
  maxEntries?: number;
  maxAgeMs?: number;
  pruneEvery?: number;
  now?: () => number;
}

export class AuditTrail {
  readonly maxEntries: number;
  readonly maxAgeMs: number;
  private readonly opts: AuditTrailOptions;
  private readonly now: () => number;
  private written = 0;
  private pruning: Promise<void> | undefined;
  private readonly log: Logger;
  private readonly outcomes: Counter<'kind' | 'result'>;
  private readonly pruned: Counter;
  private readonly unreadable: Counter;
  /** `${key}@${createRevision}` of unreadable entries already counted. */
  private readonly reported = new Set<string>();
  /** Counted per entry, logged a few lines per burst: thousands of bad values are not thousands of lines. */
  private readonly refusalLog = new LogLimiter(() => performance.now(), 10_000, 5);
  /** Entries etcd did not take yet, oldest first. */
  private readonly pending: Pending[] = [];
  private readonly backoff = new Backoff(AUDIT_RETRY_MS.first, AUDIT_RETRY_MS.max);
  private retryTimer: NodeJS.Timeout | undefined;
  private retrying: Promise<void> | undefined;
  private stopped = false;
  /** This window's failed sign-ins: `name\naddress` → its entry, whose puts run one after another. */
  private failedSignIns = new Map<string, { key: string; atMs: number; count: number; put: Promise<void> }>();
  private failedSignInsSinceMs = Number.NEGATIVE_INFINITY;

  constructor(opts: AuditTrailOptions) {
    this.opts = opts;
    this.maxEntries = opts.maxEntries ?? AUDIT_RETENTION.maxEntries;
    this.maxAgeMs = opts.maxAgeMs ?? AUDIT_RETENTION.maxAgeMs;
    this.now = opts.now ?? Date.now;
    this.log = opts.logger.child({ component: 'audit' });
    this.outcomes = new Counter({
      name: 'coolctl_audit_entries_total',
      help: 'Audit entries by this node, by kind and result (written at once; failed: etcd did not take the first try, the entry waits for another; retried: written by a later try; dropped: never written, its log line keeps it; refused: an operator action not carried out because etcd did not take its entry first)',
      labelNames: ['kind', 'result'],
      registers: [opts.registry],
    });
    zeroSeries(this.outcomes, { kind: AUDIT_KINDS, result: AUDIT_RESULTS });
    const pending = this.pending;
    new Gauge({
      name: 'coolctl_audit_entries_pending',
      help: 'Audit entries etcd did not take yet, waiting on this node for another try',
      registers: [opts.registry],
      collect() {
        this.set(pending.length);
      },
    });
    this.pruned = new Counter({
      name: 'coolctl_audit_pruned_total',
      help: 'Audit entries this node deleted for retention (count or age)',
      registers: [opts.registry],
    });
    this.unreadable = new Counter({
      name: 'coolctl_audit_entries_unreadable_total',
      help: 'Audit entries in etcd not shown: not an entry this release writes (not JSON, a field missing or of the wrong type, a time past 9999, a key not made of its time and node, too large) or written at a wire version this release no longer reads (each counted once)',
      registers: [opts.registry],
    });
  }

  private counted(kind: AuditRecord['kind'], result: (typeof AUDIT_RESULTS)[number]): void {
    this.outcomes.inc({ kind, result });
  }

  private get dir(): string {
    return `${this.opts.prefix}/audit/`;
  }

  /** Writes one entry; a failure is logged and counted, never thrown (the request's answer stands). */
  async record(rec: AuditRecord): Promise<void> {
    const atMs = this.now();
    await this.write(this.keyFor(atMs, rec.node), atMs, rec);
  }

  /**
   * Writes an operator action's entry before the action runs, its outcome pending, and resolves
   * once etcd holds it. When etcd does not take it within the store's call deadline, the action is
   * refused: counted `refused`, logged, its entry kept with that outcome (sent again like any
   * waiting entry, so a put that did land late reads refused, not pending), and
   * AuditUnavailableError thrown. One etcd round trip before each action; reads pay nothing.
   */
  async begin(action: ActionIntent): Promise<OpenEntry> {
    const atMs = this.now();
    const key = this.keyFor(atMs, action.node);
    const pending = wireJson({
      ...withoutSecrets({ ...action, kind: 'operator', status: null, error: null, outcome: 'pending' }),
      atMs,
    });
    try {
      await this.opts.kv.put(key, pending);
    } catch (err) {
      const entry: OpenEntry = { key, atMs, action, refused: true };
      const refused = new AuditUnavailableError(entry, err);
      const rec = this.completed(entry, {
        status: AUDIT_REFUSED_STATUS,
        error: { code: refused.code, message: refused.message },
      });
      this.counted('operator', 'refused');
      this.log.warn(
        { audit: { ...withoutSecrets(rec), atMs }, err: (err as Error).message },
        'operator action refused: its audit entry was not stored in etcd',
      );
      this.keep({ key, value: wireJson({ ...withoutSecrets(rec), atMs }), kind: 'operator' });
      throw refused;
    }
    this.afterWrite();
    return { key, atMs, action, refused: false };
  }

  /**
   * Completes an entry `begin` wrote with the action's answer: the same key, so the same seq. Never
   * throws; a put etcd does not take waits and is sent again (the entry reads pending meanwhile).
   * A refused entry's outcome is already on its way: nothing to do.
   */
  async finish(entry: OpenEntry, outcome: ActionOutcome): Promise<void> {
    if (entry.refused) return;
    await this.write(entry.key, entry.atMs, this.completed(entry, outcome), { counts: false });
  }

  private completed(entry: OpenEntry, outcome: ActionOutcome): OperatorAction {
    return { ...entry.action, kind: 'operator', ...outcome, outcome: 'answered' };
  }

  /**
   * Counts one failed sign-in: the first of a name and address in a window writes an entry, each
   * further one rewrites it (same key, same seq) with the new count. Never throws.
   */
  recordFailedSignIn(attempt: Omit<FailedSignIn, 'kind' | 'count'>): Promise<void> {
    const now = this.now();
    if (!(now - this.failedSignInsSinceMs < FAILED_SIGN_IN_WINDOW_MS && now >= this.failedSignInsSinceMs)) {
      this.failedSignIns = new Map();
      this.failedSignInsSinceMs = now;
    }
    let id = `${attempt.name}\n${attempt.clientIp}`;
    let rec = attempt;
    if (!this.failedSignIns.has(id) && this.failedSignIns.size >= MAX_FAILED_SIGN_IN_KEYS) {
      id = '\n';
      rec = { ...attempt, name: '(other names)', clientIp: '(other addresses)' };
    }
    let agg = this.failedSignIns.get(id);
    if (!agg) {
      agg = { key: this.keyFor(now, attempt.node), atMs: now, count: 0, put: Promise.resolve() };
      this.failedSignIns.set(id, agg);
    }
    agg.count++;
    const a = agg;
    // One after another, each with the count when it starts: the last put holds the last count.
    a.put = a.put.then(() => this.write(a.key, a.atMs, { ...rec, kind: 'failed-sign-in', count: a.count }));
    return a.put;
  }

  // The stamp leads the key so retention by age reads it without the value; the revision orders them.
  private keyFor(atMs: number, node: string): string {
    return `${this.dir}${String(atMs).padStart(14, '0')}-${node}-${randomBytes(3).toString('hex')}`;
  }

  /** `counts`: a new entry, counted towards the next prune (a completion rewrites one). */
  private async write(key: string, atMs: number, rec: AuditRecord, { counts = true } = {}): Promise<void> {
    const body = withoutSecrets(rec);
    const value = wireJson({ ...body, atMs });
    this.log.info({ audit: { ...body, atMs } }, LOG_LINE[rec.kind]);
    try {
      await this.opts.kv.put(key, value);
      this.counted(rec.kind, 'written');
    } catch (err) {
      this.counted(rec.kind, 'failed');
      this.log.warn({ err: (err as Error).message, key }, 'audit entry not stored in etcd yet; trying again');
      this.keep({ key, value, kind: rec.kind });
      return;
    }
    if (counts) this.afterWrite();
  }

  /**
   * Sends what waits once more now (at stop), then counts what is still waiting as dropped. Bounded
   * by the store's own call deadlines.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.retryTimer);
    await this.retrying;
    if (this.pending.length > 0) await this.retryPending();
    for (const p of this.pending.splice(0)) this.drop(p, 'the node stopped before etcd took it');
  }

  private afterWrite(): void {
    if (++this.written % (this.opts.pruneEvery ?? 100) === 0) void this.prune();
  }

  private keep(p: Pending): void {
    if (this.stopped) {
      this.drop(p, 'the node is stopping');
      return;
    }
    // A newer count of a failed sign-in already waiting: it replaces the older one.
    const same = this.pending.find((q) => q.key === p.key);
    if (same) {
      same.value = p.value;
      return;
    }
    this.pending.push(p);
    if (this.pending.length > MAX_PENDING)
      this.drop(this.pending.shift()!, `more than ${MAX_PENDING} entries waiting`);
    this.scheduleRetry();
  }

  private drop(p: Pending, why: string): void {
    this.counted(p.kind, 'dropped');
    this.log.error({ key: p.key, why }, 'audit entry never stored in etcd (its log line above keeps it)');
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.retrying || this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.retrying = this.retryPending().finally(() => {
        this.retrying = undefined;
        if (this.pending.length > 0) this.scheduleRetry();
      });
    }, this.backoff.next());
    this.retryTimer.unref();
  }

  /** Oldest first; stops at the first failure (etcd is still not taking them). */
  private async retryPending(): Promise<void> {
    while (this.pending.length > 0) {
      const p = this.pending[0]!;
      try {
        await this.opts.kv.put(p.key, p.value);
      } catch {
        return;
      }
      // By identity: while the put was out, the bound may have dropped the oldest (this one).
      const i = this.pending.indexOf(p);
      if (i >= 0) this.pending.splice(i, 1);
      this.backoff.reset();
      this.counted(p.kind, 'retried');
      this.log.info(
        { key: p.key, waiting: this.pending.length },
        'audit entry stored in etcd on a later try',
      );
      this.afterWrite();
    }
  }

  /** Entries with seq > `since`, oldest first; at most `limit` (the newest of them). */
  async list({ since = 0, limit = 200 }: { since?: number; limit?: number } = {}): Promise<{
    entries: AuditEntry[];
    lastSeq: number;
  }> {
    const rows = await this.opts.kv.list(this.dir, { newest: true, limit, afterRevision: since });
    const entries: AuditEntry[] = [];
    for (const r of rows) {
      const read = readEntry(r.key.slice(this.dir.length), r.value, r.oversizedBytes);
      if (typeof read === 'string') this.refuse(r.key, r.createRevision, read);
      else entries.push({ ...read, seq: r.createRevision });
    }
    // Past the rows read, shown or not: a reader paging by `since` does not read bad ones again.
    return { entries, lastSeq: rows.at(-1)?.createRevision ?? since };
  }

  /** An entry not shown (a hand-made key, an old release's): counted once, logged a few a burst. */
  private refuse(key: string, createRevision: number, problem: string): void {
    const tag = `${key}@${createRevision}`;
    if (this.reported.has(tag)) return;
    // Bounded: retention deletes such keys in time; past this a page read again counts them again.
    if (this.reported.size >= 10_000) this.reported.clear();
    this.reported.add(tag);
    this.unreadable.inc();
    const notLogged = this.refusalLog.admit('unreadable');
    if (notLogged < 0) return;
    this.log.warn(
      { key: clip(key), problem: clip(problem, 300), notLoggedSinceLast: notLogged },
      'audit entry in etcd cannot be read: not shown',
    );
  }

  /** Deletes what retention drops: beyond the newest maxEntries, and older than maxAgeMs. Runs once at a time. */
  prune(): Promise<void> {
    this.pruning ??= this.pruneOnce()
      .catch((err) =>
        this.log.warn({ err: (err as Error).message }, 'audit prune failed; next write retries'),
      )
      .finally(() => {
        this.pruning = undefined;
      });
    return this.pruning;
  }

  private async pruneOnce(): Promise<void> {
    const { kv } = this.opts;
    const excess = Math.max(0, (await kv.count(this.dir)) - this.maxEntries);
    const oldest = await kv.list(this.dir, { limit: Math.min(Math.max(excess, 100), PRUNE_BATCH) });
    const cutoff = (await this.ageReference()) - this.maxAgeMs;
    // Each entry's stamp where it is in order (no earlier than every one written before it), else
    // the stamp of the next entry that is; +Infinity: none read, so it is not judged old.
    const stamps = oldest.map((e) => Number(e.key.slice(this.dir.length, this.dir.length + 14)));
    const inOrder: boolean[] = [];
    let newestSoFar = Number.NEGATIVE_INFINITY;
    for (const atMs of stamps) {
      inOrder.push(Number.isFinite(atMs) && atMs >= newestSoFar);
      if (Number.isFinite(atMs)) newestSoFar = Math.max(newestSoFar, atMs);
    }
    const judged = new Array<number>(stamps.length);
    let next = Number.POSITIVE_INFINITY;
    for (let i = stamps.length - 1; i >= 0; i--) {
      if (inOrder[i]) next = stamps[i]!;
      judged[i] = next;
    }
    let n = 0;
    for (const [i, e] of oldest.entries()) {
      if (i >= excess && !(judged[i]! < cutoff)) break;
      if (await kv.delete(e.key, e.createRevision)) n++;
    }
    if (n > 0) {
      this.pruned.inc(n);
      this.log.info({ deleted: n }, 'audit trail pruned');
    }
  }

  /**
   * This node's clock, but never later than the lower median of each writer's newest stamp among
   * the newest AGE_SAMPLE entries: one node's clock far ahead is outvoted by the others'.
   */
  private async ageReference(): Promise<number> {
    const now = this.now();
    const newest = await this.opts.kv.list(this.dir, { newest: true, limit: AGE_SAMPLE });
    const byNode = new Map<string, number>();
    for (const r of newest) {
      const read = parseWireJson(r.value);
      const v = read.ok ? (read.value as { node?: unknown; atMs?: unknown }) : null;
      if (typeof v?.node !== 'string' || typeof v.atMs !== 'number' || !Number.isFinite(v.atMs)) continue;
      byNode.set(v.node, Math.max(byNode.get(v.node) ?? Number.NEGATIVE_INFINITY, v.atMs));
    }
    if (byNode.size < 2) return now;
    const stamps = [...byNode.values()].sort((a, b) => a - b);
    return Math.min(now, stamps[Math.floor((stamps.length - 1) / 2)]!);
  }
}

/**
 * The record as stored: the body kept only when small (keepable), every text clipped to
 * MAX_FIELD_CHARS, and none of our tokens anywhere — a token pasted into a path, a group name or an
 * alarm id reaches the route's params and its error message, which every viewer reads.
 */
function withoutSecrets(rec: AuditRecord): AuditRecord {
  const { params, ...rest } = rec as AuditRecord & { params?: unknown };
  const texts = JSON.parse(
    JSON.stringify(rest, (_k, v) =>
      typeof v === 'string' ? clip(v.replace(TOKEN_SHAPE, '(secret)'), MAX_FIELD_CHARS) : v,
    ),
  ) as AuditRecord;
  return texts.kind === 'operator' ? { ...texts, params: keepable(params) } : texts;
}

const LOG_LINE: Record<AuditRecord['kind'], string> = {
  operator: 'operator action',
  role: 'leadership gained',
  'failed-sign-in': 'sign-in failed',
};

const isStr = (x: unknown): x is string => typeof x === 'string';
const isStrOrNull = (x: unknown): boolean => x === null || typeof x === 'string';
const isTime = (x: unknown): x is number =>
  typeof x === 'number' && Number.isFinite(x) && x >= 0 && x <= LAST_TIME_MS;

/**
 * The entry a stored value holds, or what is wrong with it. `name` is its key below the trail's
 * directory, which this code makes of the entry's own time and node: one whose key says otherwise
 * was not written here (and retention, which reads the time from the key, would judge it by another).
 */
export function readEntry(
  name: string,
  text: string,
  oversizedBytes?: number,
): (AuditRecord & { atMs: number }) | string {
  const bytes = oversizedBytes ?? Buffer.byteLength(text);
  if (bytes > MAX_ENTRY_BYTES) return `${bytes} bytes: larger than any audit entry (${MAX_ENTRY_BYTES})`;
  const read = parseWireJson(text);
  if (!read.ok) return read.problem;
  const v = read.value;
  const bad = (field: string) => `bad or missing ${field}`;
  if (!AUDIT_KINDS.includes(v.kind as AuditRecord['kind'])) return bad('kind');
  if (!isTime(v.atMs)) return bad(`atMs (a time from 1970 to 9999, in ms)`);
  if (!isStr(v.node)) return bad('node');
  if (!name.startsWith(`${String(v.atMs).padStart(14, '0')}-${v.node}-`))
    return `the key does not name its time ${v.atMs} and node "${clip(v.node)}"`;
  if (v.kind === 'role') {
    for (const f of ['group', 'from', 'to', 'reason'] as const) if (!isStr(v[f])) return bad(f);
    if (!(v.epoch === null || (Number.isSafeInteger(v.epoch) && (v.epoch as number) >= 0)))
      return bad('epoch');
    const { node, group, from, to, epoch, reason, atMs } = v as unknown as RoleTransition & { atMs: number };
    return { kind: 'role', node, group, from, to, epoch, reason, atMs };
  }
  if (v.kind === 'failed-sign-in') {
    for (const f of ['name', 'clientIp', 'reason'] as const) if (!isStr(v[f])) return bad(f);
    if (!(Number.isSafeInteger(v.count) && (v.count as number) >= 1)) return bad('count');
    const {
      name: tried,
      clientIp,
      node,
      reason,
      count,
      atMs,
    } = v as unknown as FailedSignIn & {
      atMs: number;
    };
    return { kind: 'failed-sign-in', name: tried, clientIp, node, reason, count, atMs };
  }
  for (const f of ['action', 'method', 'path', 'user', 'role', 'clientIp'] as const)
    if (!isStr(v[f])) return bad(f);
  for (const f of ['group', 'target'] as const) if (!isStrOrNull(v[f])) return bad(f);
  if (!(v.outcome === undefined || v.outcome === 'pending' || v.outcome === 'answered'))
    return bad('outcome');
  const pending = v.outcome === 'pending';
  if (
    pending
      ? v.status !== null
      : !(Number.isInteger(v.status) && (v.status as number) >= 100 && (v.status as number) <= 599)
  )
    return bad('status');
  const e = v.error as { code?: unknown; message?: unknown } | null;
  if (!(e === null || (typeof e === 'object' && isStr(e.code) && isStr(e.message)))) return bad('error');
  const o = v as unknown as OperatorAction & { atMs: number };
  const outcome: Pick<OperatorAction, 'status' | 'error' | 'outcome'> = pending
    ? { status: null, error: { ...NO_OUTCOME }, outcome: 'pending' }
    : {
        status: o.status,
        error: e === null ? null : { code: o.error!.code, message: o.error!.message },
        outcome: 'answered',
      };
  return {
    kind: 'operator',
    action: o.action,
    method: o.method,
    path: o.path,
    group: o.group,
    target: o.target,
    params: o.params ?? null,
    user: o.user,
    role: o.role,
    clientIp: o.clientIp,
    node: o.node,
    ...outcome,
    atMs: o.atMs,
  };
}

/** A copy of the body without secrets; null when there is none or it is too big. */
export function keepable(params: unknown): unknown {
  if (params === undefined || params === null) return null;
  try {
    const json = JSON.stringify(params, (k, v) =>
      SECRET_FIELD.test(k) ? '(secret)' : typeof v === 'string' ? v.replace(TOKEN_SHAPE, '(secret)') : v,
    );
    return json !== undefined && json.length <= MAX_PARAMS_CHARS ? JSON.parse(json) : null;
  } catch {
    return null;
  }
}
