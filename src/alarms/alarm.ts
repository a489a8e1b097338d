// What an alarm is: its kinds and their fixed severities, the record kept in etcd (one key per
// occurrence), the shape the API answers with, and the ids. An alarm's id is its condition key
// (kind, group, subject) plus when it was raised, so a condition that clears and comes back is a
// new alarm while the cleared one stays in the history. Site ids never hold `~`, so ids parse back.
// A stored value is checked field by field before anyone acts on it (parseStoredAlarm); what an
// operator's action does to a record is a pure function here (acknowledged, shelvedFor, unshelved).
import { BadRequestError, ErrorCodes } from '../errors.ts';
import { clip } from '../util/log-limit.ts';
import { parseWireJson } from '../version.ts';

/**
 * The longest text an alarm carries (its message, clear reason, comments) and the longest name (a
 * node, a user, a group, a subject). A stored row is served by the API, sent to every receiver and
 * logged; one written by any holder of etcd credentials, or a message quoting a device's long error,
 * must not make those megabytes. Longer text is clipped where it is made and where it is read.
 */
export const ALARM_TEXT_MAX = 1000;
export const ALARM_NAME_MAX = 128;

export const SEVERITIES = ['critical', 'major', 'minor', 'warning'] as const;
export type Severity = (typeof SEVERITIES)[number];

/** Every kind, its severity and who raises it (docs/alarms.md has the conditions). */
export const ALARM_KINDS = {
  'inlet-allowable': { severity: 'critical', scope: 'group' },
  'inlet-recommended': { severity: 'major', scope: 'group' },
  'inlet-rise-rate': { severity: 'major', scope: 'group' },
  'dew-point': { severity: 'minor', scope: 'group' },
  'unit-tripped': { severity: 'major', scope: 'group' },
  'unit-comm-loss': { severity: 'major', scope: 'group' },
  'unit-fallback': { severity: 'minor', scope: 'group' },
  'sensors-blind': { severity: 'major', scope: 'group' },
  'sensors-degraded': { severity: 'warning', scope: 'group' },
  'group-not-driven': { severity: 'critical', scope: 'group' },
  'group-leaderless': { severity: 'critical', scope: 'cluster' },
  'node-down': { severity: 'minor', scope: 'cluster' },
  'etcd-quorum-lost': { severity: 'critical', scope: 'node' },
  'etcd-no-space': { severity: 'critical', scope: 'node' },
} as const satisfies Record<string, { severity: Severity; scope: 'group' | 'cluster' | 'node' }>;
export type AlarmKind = keyof typeof ALARM_KINDS;

/**
 * Kinds whose open alarm's text follows its condition: it names what is wrong (the racks nobody
 * watches, why a group is not driven), and an operator acts on the names of now. The others carry a
 * figure — an inlet's °C, a rate, a dew point — and keep the one they were raised at (the figure of
 * now is in the group view and on /metrics): rewritten with every tenth of a degree, ~3 000 hot racks
 * would write etcd ~100 times a second.
 */
export const TEXT_FOLLOWS: ReadonlySet<AlarmKind> = new Set<AlarmKind>([
  'sensors-degraded',
  'sensors-blind',
  'group-not-driven',
]);

export function isAlarmKind(x: unknown): x is AlarmKind {
  return typeof x === 'string' && Object.hasOwn(ALARM_KINDS, x);
}

export type AlarmState = 'raised' | 'acknowledged' | 'cleared';

/** One alarm occurrence as etcd keeps it (`<prefix>/alarms/<id>`), times in ms since the Unix epoch. */
export interface StoredAlarm {
  v: 1;
  id: string;
  kind: AlarmKind;
  severity: Severity;
  group: string | null;
  subject: string | null;
  message: string;
  value: number | null;
  raisedAtMs: number;
  raisedBy: string;
  clearedAtMs: number | null;
  clearedBy: string | null;
  /** Why it cleared: the rule's reason, or why the condition is gone. */
  clearReason: string | null;
  ack: { user: string; atMs: number; comment: string } | null;
  shelf: { untilMs: number; user: string; atMs: number; comment: string } | null;
}

/** The API's alarm (GET /api/v1/alarms): the contract the dashboard and the CLI read. */
export interface Alarm {
  id: string;
  kind: string;
  severity: Severity;
  group: string | null;
  subject: string | null;
  message: string;
  state: AlarmState;
  raisedAt: string;
  clearedAt: string | null;
  ack: { user: string; at: string; comment: string } | null;
  shelvedUntil: string | null;
  value: number | null;
}

/** The condition an alarm stands for: at most one open alarm per key, cluster-wide. */
export function conditionKey(kind: AlarmKind, group: string | null, subject: string | null): string {
  return `${kind}~${group ?? '-'}~${subject ?? '-'}`;
}

export function alarmId(condition: string, raisedAtMs: number): string {
  return `${condition}~${raisedAtMs.toString(36)}`;
}

/** The condition key of an alarm id (everything before its last `~`). */
export function conditionOf(id: string): string {
  return id.slice(0, id.lastIndexOf('~'));
}

/** Alarm ids as the API takes them: letters, digits, `_ . - ~`. */
export const ALARM_ID_PATTERN = '^[A-Za-z0-9_.~-]{1,200}$';

export function stateOf(a: StoredAlarm): AlarmState {
  if (a.clearedAtMs !== null) return 'cleared';
  return a.ack ? 'acknowledged' : 'raised';
}

/** Whether the alarm is shelved at `nowMs` (a shelf past its expiry is no shelf). */
export function shelved(a: StoredAlarm, nowMs: number): boolean {
  return a.shelf !== null && a.shelf.untilMs > nowMs;
}

/**
 * Whether a shelf holds now: a wall time to compare its end with, or the judge of a node that
 * times shelves on its monotonic clock (./shelf-clock.ts), so what it shows is what it does.
 */
export type ShelfNow = number | ((a: StoredAlarm) => boolean);

const shelvedAt = (a: StoredAlarm, now: ShelfNow) => (typeof now === 'number' ? shelved(a, now) : now(a));

const iso = (ms: number) => new Date(ms).toISOString();

export function toApiAlarm(a: StoredAlarm, now: ShelfNow): Alarm {
  return {
    id: a.id,
    kind: a.kind,
    severity: a.severity,
    group: a.group,
    subject: a.subject,
    message: a.message,
    state: stateOf(a),
    raisedAt: iso(a.raisedAtMs),
    clearedAt: a.clearedAtMs === null ? null : iso(a.clearedAtMs),
    ack: a.ack ? { user: a.ack.user, at: iso(a.ack.atMs), comment: a.ack.comment } : null,
    shelvedUntil: a.shelf && shelvedAt(a, now) ? iso(a.shelf.untilMs) : null,
    value: a.value,
  };
}

/** What a rule or a node says when it raises a condition. */
export interface Raise {
  kind: AlarmKind;
  group: string | null;
  subject: string | null;
  message: string;
  value: number | null;
}

/**
 * The record of a condition raised by `by` at `atMs` (wall ms): the one place a record is made, for
 * the rules' conditions, a node's own etcd-quorum-lost and the tests' fakes. The value is kept to
 * one decimal, as people read it.
 */
export function raisedAlarm(r: Raise, by: string, atMs: number): StoredAlarm {
  return {
    v: 1,
    id: alarmId(conditionKey(r.kind, r.group, r.subject), atMs),
    kind: r.kind,
    severity: ALARM_KINDS[r.kind].severity,
    group: r.group,
    subject: r.subject,
    ...storedText(r.message, r.value),
    raisedAtMs: atMs,
    raisedBy: by,
    clearedAtMs: null,
    clearedBy: null,
    clearReason: null,
    ack: null,
    shelf: null,
  };
}

/**
 * An open alarm whose text follows its condition (the racks a sensor alarm names, an inlet's °C):
 * the new message and value, everything else — its id, raise time, acknowledgement and shelf —
 * kept. The same record when nothing changes or it is closed (a closed record keeps its last text).
 */
export function revised(a: StoredAlarm, message: string, value: number | null): StoredAlarm {
  const t = storedText(message, value);
  if (a.clearedAtMs !== null || (a.message === t.message && a.value === t.value)) return a;
  return { ...a, ...t };
}

/** A condition's message and value as a record keeps them: clipped, and the value to 0.1. */
export function storedText(message: string, value: number | null): { message: string; value: number | null } {
  return {
    message: clip(message, ALARM_TEXT_MAX),
    value: value === null ? null : Math.round(value * 10) / 10,
  };
}

/** How an alarm closes: when, by which node, why. */
export interface Close {
  atMs: number;
  by: string;
  reason: string;
}

/** `cur` closed; the one place a record is closed (the store's clear, a node's own, the fakes). */
export function clearedAlarm(cur: StoredAlarm, close: Close): StoredAlarm {
  return {
    ...cur,
    clearedAtMs: close.atMs,
    clearedBy: close.by,
    clearReason: clip(close.reason, ALARM_TEXT_MAX),
  };
}

/**
 * The shelf that ends at `untilMs` (wall ms as stored; the caller judged that it ran out) ends, if
 * the alarm is still open and still under that shelf; anything else comes back as it is (the same
 * object): a shelf put on again since is another shelf.
 */
export function shelfExpired(cur: StoredAlarm, untilMs: number): StoredAlarm {
  return cur.clearedAtMs === null && cur.shelf !== null && cur.shelf.untilMs === untilMs
    ? { ...cur, shelf: null }
    : cur;
}

/**
 * The API's alarm of each record as last made, and whether it was shelved then: a record is an
 * immutable value (every change makes a new object), so an unchanged one is not made again when a
 * list of thousands is asked for every second; a record nobody holds any more drops out by itself.
 */
const apiOf = new WeakMap<StoredAlarm, { shelved: boolean; alarm: Alarm }>();

/**
 * The API's list of `stored`: active (not cleared) or all, newest first, ties (a storm raised in one
 * evaluation) by id: an order a reader that merges changes by id can make again (the dashboard).
 * An alarm whose record and shelf did not change is the object the last list held.
 */
export function listAlarms(stored: Iterable<StoredAlarm>, which: 'active' | 'all', now: ShelfNow): Alarm[] {
  return [...stored]
    .filter((a) => which === 'all' || a.clearedAtMs === null)
    .sort((a, b) => b.raisedAtMs - a.raisedAtMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map((a) => {
      const shelvedNow = a.shelf !== null && shelvedAt(a, now);
      const was = apiOf.get(a);
      if (was?.shelved === shelvedNow) return was.alarm;
      const alarm = toApiAlarm(a, now);
      apiOf.set(a, { shelved: shelvedNow, alarm });
      return alarm;
    });
}

/** The first acknowledgement stays: an acknowledged alarm comes back as it is (the same object). */
export function acknowledged(cur: StoredAlarm, user: string, comment: string, atMs: number): StoredAlarm {
  return cur.ack ? cur : { ...cur, ack: { user, atMs, comment } };
}

/** Longest shelf an operator may ask for (the API's bound on durationS comes from it). */
export const MAX_SHELF_MS = 86_400_000;

/** Shelves an active alarm until `atMs + durationS`; a cleared one has nothing to shelve (409). */
export function shelvedFor(
  cur: StoredAlarm,
  user: string,
  durationS: number,
  comment: string,
  atMs: number,
): StoredAlarm {
  if (cur.clearedAtMs !== null)
    throw new BadRequestError(
      ErrorCodes.BAD_REQUEST,
      `alarm ${cur.id} is cleared: there is nothing to shelve`,
      ['shelve an active alarm'],
      409,
    );
  return { ...cur, shelf: { untilMs: atMs + durationS * 1000, user, atMs, comment } };
}

/**
 * Ends a shelf; an alarm without one, or cleared (its shelf ended when it cleared: unshelving it
 * would notify `unshelved` for an alarm that is over), comes back as it is (the same object).
 */
export function unshelved(cur: StoredAlarm): StoredAlarm {
  return cur.shelf && cur.clearedAtMs === null ? { ...cur, shelf: null } : cur;
}

/** A stored value that is not an alarm: what is wrong with it. */
export class AlarmValueError extends Error {}

/**
 * The latest time a record may carry: 9999-12-31T23:59:59.999Z, the last one ISO 8601 writes with
 * four year digits (the API's `date-time`). A later one — `1e16`, a shelf "until 1e300" — has no
 * ISO form, and one such record failed every GET /api/v1/alarms with a 500, hiding every alarm.
 */
export const LAST_TIME_MS = 253_402_300_799_999;

const isStr = (x: unknown): x is string => typeof x === 'string';
const isStrOrNull = (x: unknown): x is string | null => x === null || typeof x === 'string';
const isTime = (x: unknown): x is number =>
  typeof x === 'number' && Number.isFinite(x) && x >= 0 && x <= LAST_TIME_MS;
const isNum = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);

/** Parses `<prefix>/alarms/<id>`'s value; throws AlarmValueError saying what is wrong. */
export function parseStoredAlarm(keyId: string, text: string): StoredAlarm {
  return readStoredAlarm(keyId, text).alarm;
}

/**
 * A stored value read as an alarm, and what was not believed of it. What makes it no alarm throws
 * AlarmValueError: not JSON, a field missing or of the wrong type, a time with no ISO form, a
 * kind, group or subject other than its key's (the engine owns and ends an alarm by its key, the
 * API shows the record: the two must name one condition). What an operator's action on it claims
 * and no operator did is dropped, the alarm kept — dropping the record would hide a real alarm,
 * keeping the claim would show it acknowledged or shelved when nobody did that: an acknowledgement
 * or shelf with a time past LAST_TIME_MS, a shelf longer than MAX_SHELF_MS (the API's bound) or
 * ending before it starts (both its times are the shelving node's clock). An acknowledgement dated
 * ahead of the reader is believed: a node whose clock is behind (a gateway booted at its build
 * date) reads every other node's as future, and must neither hide them nor let them be replaced.
 * A severity other than its kind's is read as its kind's (the kind owns it; a lowered one would
 * hide a critical).
 */
export function readStoredAlarm(keyId: string, text: string): { alarm: StoredAlarm; problems: string[] } {
  const read = parseWireJson(text);
  if (!read.ok) throw new AlarmValueError(read.problem);
  const v = read.value as Partial<StoredAlarm>;
  const bad = (field: string) => {
    throw new AlarmValueError(`bad or missing ${field}`);
  };
  if (v.v !== 1) bad('v (want 1)');
  if (v.id !== keyId) bad(`id (the key says ${keyId})`);
  if (!isAlarmKind(v.kind)) bad('kind');
  if (!SEVERITIES.includes(v.severity as Severity)) bad('severity');
  if (!isStrOrNull(v.group)) bad('group');
  if (!isStrOrNull(v.subject)) bad('subject');
  if (!isStr(v.message)) bad('message');
  if (!(v.value === null || isNum(v.value))) bad('value');
  if (!isTime(v.raisedAtMs)) bad('raisedAtMs');
  if (!isStr(v.raisedBy)) bad('raisedBy');
  if (!(v.clearedAtMs === null || isTime(v.clearedAtMs))) bad('clearedAtMs');
  if (!isStrOrNull(v.clearedBy)) bad('clearedBy');
  if (!isStrOrNull(v.clearReason)) bad('clearReason');
  const ack = v.ack;
  if (!(ack === null || (ack && isStr(ack.user) && isNum(ack.atMs) && isStr(ack.comment)))) bad('ack');
  const shelf = v.shelf;
  if (
    !(
      shelf === null ||
      (shelf && isNum(shelf.untilMs) && isStr(shelf.user) && isNum(shelf.atMs) && isStr(shelf.comment))
    )
  )
    bad('shelf');
  const a = v as StoredAlarm;
  if (conditionOf(keyId) !== conditionKey(a.kind, a.group, a.subject))
    bad(`kind, group or subject (the key names ${conditionOf(keyId)})`);
  const problems: string[] = [];
  let fixed = a;
  const kindSeverity = ALARM_KINDS[a.kind].severity;
  if (a.severity !== kindSeverity) {
    problems.push(`severity ${a.severity} is not its kind's (${kindSeverity}): read as ${kindSeverity}`);
    fixed = { ...fixed, severity: kindSeverity };
  }
  if (a.ack && !isTime(a.ack.atMs)) {
    problems.push(`acknowledgement dated ${a.ack.atMs} has no date: read as unacknowledged`);
    fixed = { ...fixed, ack: null };
  }
  if (a.shelf) {
    const lastsMs = a.shelf.untilMs - a.shelf.atMs;
    if (!isTime(a.shelf.atMs) || !isTime(a.shelf.untilMs) || !(lastsMs > 0 && lastsMs <= MAX_SHELF_MS)) {
      problems.push(
        `shelf from ${a.shelf.atMs} until ${a.shelf.untilMs} is none an operator can put on: read as unshelved`,
      );
      fixed = { ...fixed, shelf: null };
    }
  }
  return { alarm: clipped(fixed), problems };
}

/** `a` with every text and name within ALARM_TEXT_MAX / ALARM_NAME_MAX (the same object when all are). */
function clipped(a: StoredAlarm): StoredAlarm {
  const text = (x: string) => clip(x, ALARM_TEXT_MAX);
  const name = (x: string) => clip(x, ALARM_NAME_MAX);
  const orNull = (x: string | null, f: (y: string) => string) => (x === null ? null : f(x));
  const next: StoredAlarm = {
    ...a,
    group: orNull(a.group, name),
    subject: orNull(a.subject, name),
    message: text(a.message),
    raisedBy: name(a.raisedBy),
    clearedBy: orNull(a.clearedBy, name),
    clearReason: orNull(a.clearReason, text),
    ack: a.ack && { ...a.ack, user: name(a.ack.user), comment: text(a.ack.comment) },
    shelf: a.shelf && { ...a.shelf, user: name(a.shelf.user), comment: text(a.shelf.comment) },
  };
  const same =
    next.group === a.group &&
    next.subject === a.subject &&
    next.message === a.message &&
    next.raisedBy === a.raisedBy &&
    next.clearedBy === a.clearedBy &&
    next.clearReason === a.clearReason &&
    next.ack?.user === a.ack?.user &&
    next.ack?.comment === a.ack?.comment &&
    next.shelf?.user === a.shelf?.user &&
    next.shelf?.comment === a.shelf?.comment;
  return same ? a : next;
}

/** What the API needs of the alarms (the engine serves it; src/api/routes/alarms.ts). */
export interface AlarmApi {
  /** Active (not cleared) or all kept alarms, newest first, as etcd holds them, plus this node's own. */
  list(which: 'active' | 'all'): Promise<Alarm[]>;
  acknowledge(id: string, user: string, comment: string): Promise<Alarm>;
  shelve(id: string, user: string, durationS: number, comment: string): Promise<Alarm>;
  unshelve(id: string, user: string): Promise<Alarm>;
  /** Notifications that could not be delivered, and the sinks' state. */
  notifications(): NotificationStatus;
}

export interface NotificationStatus {
  sinks: { name: 'webhook' | 'mqtt'; target: string; sent: number; failed: number; pending: number }[];
  /** The latest notifications given up on after every retry (newest last, at most 50). */
  failures: { sink: string; alarm: string; transition: string; error: string; atMs: number }[];
}
