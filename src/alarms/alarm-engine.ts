// The alarm engine of one node. Every period it takes one snapshot of what this node knows and
// lets the pure rules (./rules.ts) judge it, then makes etcd agree (./alarm-store.ts):
// - group-scoped alarms (inlets, dew point, units, sensor trust, a group not driven) are judged
//   only by the node that leads the group and holds its fence — its reads are the current ones,
//   and one leader means one judge; a node that does not lead a group says nothing about it;
// - cluster-scoped alarms (a node down, a group without a leader) are judged by the live member
//   whose name sorts first (rules.clusterOwner), which also prunes cleared alarms for retention
//   and closes orphaned records (open, but named by no open key);
// - etcd-quorum-lost and etcd-no-space cannot be written to etcd while they are true: each node
//   keeps its own in memory, shows it in its API, notifies, and records it in etcd once etcd takes
//   its writes again.
// The store's transactions make a condition open at most once cluster-wide, whoever races.
// Each transition is notified once, by the node whose transaction made it (raise and clear: the
// owner; acknowledge and shelve: the node that took the request; a shelf's end: the owner, from
// the shelved index in etcd, so a failover between shelving and expiry neither loses nor doubles
// it). A failing evaluation is logged and counted; it never stops the next one, nor anything else.
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { ETCD_NO_SPACE_REMEDY } from '../cluster/errors.ts';
import type { Leadership } from '../cluster/leadership.ts';
import { alarmDelays, alarmLimits, alarmRetention } from '../config/alarm-schema.ts';
import type { Site } from '../config/site-schema.ts';
import type { GroupDriver } from '../control/group-driver.ts';
import type { DeviceIo } from '../devices/device-io.ts';
import { zeroSeries } from '../metrics/zero-series.ts';
import { type SensorStore, SHARED_FIGURES_MAX_AGE_MS } from '../sensors/sensor-store.ts';
import { FaultLog } from '../util/log-limit.ts';
import {
  ALARM_KINDS,
  type Alarm,
  type AlarmApi,
  type AlarmKind,
  acknowledged,
  clearedAlarm,
  conditionKey,
  conditionOf,
  isAlarmKind,
  listAlarms,
  type NotificationStatus,
  raisedAlarm,
  type StoredAlarm,
  shelfExpired,
  shelvedFor,
  storedText,
  TEXT_FOLLOWS,
  toApiAlarm,
  unshelved,
} from './alarm.ts';
import type { AlarmStore } from './alarm-store.ts';
import { ALARM_TRANSITIONS, type AlarmTransition, type Notifier } from './notify.ts';
import {
  type Condition,
  clusterOwner,
  evaluateCluster,
  evaluateGroup,
  newMemory,
  type RuleMemory,
  type UnitSnapshot,
} from './rules.ts';
import { ShelfClock } from './shelf-clock.ts';

/** How an evaluation ended (coolctl_alarm_evaluations_total{result}). */
const EVALUATION_RESULTS = ['ok', 'failed'] as const;

export interface AlarmEngineOptions {
  node: string;
  store: AlarmStore;
  leadership: Leadership;
  drivers: ReadonlyMap<string, GroupDriver>;
  devices: ReadonlyMap<string, DeviceIo>;
  /** What the node believes about the room (replaced on a sensor reload, hence a getter). */
  sensors: () => SensorStore | undefined;
  /** The running site and the configured node names (replaced on reload). */
  config: () => { site: Site; nodes: readonly string[] };
  /** Whether etcd refuses writes for lack of space (null: no answer); none: never asked. */
  spaceProbe?: { refusesWrites(): Promise<boolean | null> };
  /** Where transitions are sent (the running site's notifications; none: not sent). */
  notifier?: () => Notifier | undefined;
  logger: Logger;
  registry: Registry;
  /** How often the rules run (default 1000 ms). */
  periodMs?: number;
  /** How often an open, unshelved alarm this node owns is sent to the webhook again (default 60 s). */
  resendMs?: () => number;
  /** How often the cluster owner prunes cleared alarms (default 10 min). */
  pruneEveryMs?: number;
  /**
   * Wall ms (default `Date.now`): what records are dated with and what a shelf's end says to
   * people; how long a shelf lasts is timed on the monotonic clock (./shelf-clock.ts).
   */
  wallNow?: () => number;
  /** Monotonic ms (default `performance.now`): delays, re-sends, and how long a shelf lasts. */
  monoNow?: () => number;
}

/**
 * How often an open alarm's text may be rewritten to follow its condition (the racks a sensor alarm
 * names, a group's drive problem: TEXT_FOLLOWS): one check, and at most one write, per condition in
 * this time, so a rack whose node drops in and out does not write etcd with every report.
 */
export const TEXT_REVISE_MS = 30_000;

/**
 * How often the open alarms of conditions still active are read again to see that their record is
 * still there and valid. A record deleted or written over by a holder of etcd credentials after
 * this node checked it vanished from every list while its open key held the condition, so nothing
 * raised it again: it stayed hidden while the condition lasted. Now its open key is dropped and the
 * condition raised afresh within this time (one batched read per 100 open alarms a minute).
 */
export const REVERIFY_MS = 60_000;

export class AlarmEngine implements AlarmApi {
  private readonly opts: AlarmEngineOptions;
  private readonly log: Logger;
  private readonly groupMemory = new Map<string, RuleMemory>();
  private clusterMemory = newMemory();
  private localMemory = newMemory();
  /** This node's own alarms not in etcd yet (at most one open per kind), oldest first. */
  private readonly locals: StoredAlarm[] = [];
  /** Open alarm ids this node found a valid record for (an open key's target, checked once). */
  private readonly verified = new Set<string>();
  /** Monotonic ms `verified` was last emptied (REVERIFY_MS apart). */
  private verifiedSinceMs: number;
  /** Open alarm id → the message and value its record has, as this node last wrote or read them. */
  private readonly texts = new Map<string, { message: string; value: number | null }>();
  /** Condition key → monotonic ms its open alarm's text was last compared (TEXT_REVISE_MS apart). */
  private readonly textCheckedMs = new Map<string, number>();
  private lastList: StoredAlarm[] | null = null;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private lastResendMs: number;
  private lastPruneMs = Number.NEGATIVE_INFINITY;
  private readonly evaluations: Counter<'result'>;
  private readonly transitions: Counter<'kind' | 'transition'>;
  private lastError: string | null = null;
  /** An etcd member that answers some calls and not others must not cost two lines a period. */
  private readonly evaluationFaults: FaultLog;

  private readonly wallNow: () => number;
  private readonly monoNow: () => number;
  private readonly shelves: ShelfClock;
  /** Whether a shelf holds now, by this node's clock: what it notifies and what its API shows agree. */
  private readonly isShelved = (a: StoredAlarm) => this.shelves.shelved(a);

  constructor(opts: AlarmEngineOptions) {
    this.opts = opts;
    this.wallNow = opts.wallNow ?? Date.now;
    this.monoNow = opts.monoNow ?? (() => performance.now());
    this.evaluationFaults = new FaultLog(this.monoNow);
    this.lastResendMs = this.monoNow();
    this.verifiedSinceMs = this.monoNow();
    this.shelves = new ShelfClock(this.wallNow, this.monoNow);
    this.log = opts.logger.child({ component: 'alarms' });
    for (const n of ['coolctl_alarm_evaluations_total', 'coolctl_alarm_transitions_total'])
      opts.registry.removeSingleMetric(n);
    this.evaluations = new Counter({
      name: 'coolctl_alarm_evaluations_total',
      help: 'alarm evaluations by this node, by result (ok, failed: etcd or a rule failed; the next one runs as usual)',
      labelNames: ['result'],
      registers: [opts.registry],
    });
    this.transitions = new Counter({
      name: 'coolctl_alarm_transitions_total',
      help: 'alarm transitions this node made (raised, cleared, acknowledged, shelved, unshelved, shelf-expired), by kind',
      labelNames: ['kind', 'transition'],
      registers: [opts.registry],
    });
    zeroSeries(this.evaluations, { result: EVALUATION_RESULTS });
    zeroSeries(this.transitions, { kind: Object.keys(ALARM_KINDS), transition: ALARM_TRANSITIONS });
  }

  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => {
      if (!this.running) this.running = this.evaluate().finally(() => (this.running = undefined));
    }, this.opts.periodMs ?? 1000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** One evaluation: every scope this node owns, then etcd made to agree. Never throws. */
  async evaluate(): Promise<void> {
    try {
      await this.evaluateOnce();
      this.evaluations.inc({ result: 'ok' });
      if (this.lastError && this.evaluationFaults.recovery('evaluation'))
        this.log.info('alarm evaluation works again');
      this.lastError = null;
    } catch (err) {
      this.evaluations.inc({ result: 'failed' });
      const msg = (err as Error).message;
      const notLogged =
        msg !== this.lastError || !this.evaluationFaults.reported('evaluation')
          ? this.evaluationFaults.failure('evaluation')
          : -1;
      if (notLogged >= 0)
        this.log.warn({ err: msg, notLogged }, 'alarm evaluation failed; the next one runs as usual');
      this.lastError = msg;
    }
  }

  private async evaluateOnce(): Promise<void> {
    const { leadership, node } = this.opts;
    const { site, nodes } = this.opts.config();
    const nowMs = this.monoNow();
    const delays = alarmDelays(site.alarms);
    await this.evaluateLocal(nowMs, delays.etcdLostS);
    if (!leadership.healthy) return;
    const { open, shelved: shelves } = await this.opts.store.index();
    if (nowMs - this.verifiedSinceMs >= REVERIFY_MS) {
      this.verifiedSinceMs = nowMs;
      this.verified.clear();
    }
    const openByGroup = openKeysByGroup(open);
    this.forgetClosedTexts(open);
    const leads = new Set(
      leadership
        .groups()
        .filter((g) => g.role === 'leader' && leadership.fence(g.group) !== null)
        .map((g) => g.group),
    );
    const groups = new Map(site.controlGroups.map((g) => [g.id, g]));
    for (const id of [...this.groupMemory.keys()]) if (!leads.has(id)) this.groupMemory.delete(id);
    for (const id of leads) {
      const g = groups.get(id);
      if (!g) continue;
      let memory = this.groupMemory.get(id);
      if (!memory) {
        memory = newMemory();
        this.groupMemory.set(id, memory);
      }
      // Only what can change etcd comes back (active, or open): a quiet hall's ~23 000 conditions
      // a second made no objects (rules.ts).
      const conditions = evaluateGroup(this.groupSnapshot(site, id, nowMs, delays), memory, open);
      await this.reconcile(
        conditions,
        open,
        openByGroup.get(id) ?? [],
        (kind, group) => ALARM_KINDS[kind].scope === 'group' && group === id,
      );
      // One group at a time: a node leading 100 groups must not hold the event loop for all of them.
      await new Promise((r) => setImmediate(r));
    }
    const members = leadership.members().map((m) => m.node);
    const owner = clusterOwner(members) === node;
    // A group's own alarms are its leader's; the cluster owner takes those of a group nobody leads
    // or the site no longer has, so a shelf still ends on time while a group waits for a leader.
    const led = new Set(leadership.groups().flatMap((g) => (g.leader === null ? [] : [g.group])));
    await this.expireShelves(shelves, (kind, group) =>
      ALARM_KINDS[kind].scope === 'group' && group !== null
        ? leads.has(group) || (owner && (!led.has(group) || !groups.has(group)))
        : owner,
    );
    if (!owner) {
      this.clusterMemory = newMemory();
    } else {
      const conditions = evaluateCluster(
        {
          nowMs,
          configuredNodes: nodes,
          members,
          groups: leadership.groups().map((g) => ({ id: g.group, leader: g.leader })),
          delays,
        },
        this.clusterMemory,
      );
      // The cluster's owner also closes group alarms of groups the site no longer has, and open keys
      // no node raises: a group alarm without a group, an etcd-quorum-lost (each node records its
      // own closed, never open) — written by hand or restored, they would stay active for good.
      await this.reconcile(conditions, open, [...open.keys()], (kind, group) => {
        const scope = ALARM_KINDS[kind].scope;
        return scope !== 'group' || group === null || !groups.has(group);
      });
      if (nowMs - this.lastPruneMs >= (this.opts.pruneEveryMs ?? 600_000)) {
        this.lastPruneMs = nowMs;
        const orphans = await this.opts.store.closeOrphans({
          atMs: this.wallNow(),
          by: node,
          reason: 'no open condition named this alarm (an orphaned record)',
        });
        for (const a of orphans) this.transitioned(a, 'cleared');
        await this.opts.store.prune(alarmRetention(site.alarms), this.wallNow());
      }
    }
    await this.resend(open, leads, owner, nowMs);
  }

  /**
   * Ends the shelves that ran out, of the alarms this node owns: the alarm is active again, so it
   * is notified as when it was raised (the webhook gets it firing again), logged, and listed without
   * its shelf. The store's transaction lets exactly one node end each shelf.
   */
  private async expireShelves(
    shelves: Map<string, number>,
    owns: (kind: AlarmKind, group: string | null) => boolean,
  ): Promise<void> {
    // Every node times every shelf (not only the ones it owns): a failover hands the owner's
    // deadline on only as the wall end, so each node keeps its own from the moment the shelf is put on.
    for (const a of this.locals) if (a.shelf && a.clearedAtMs === null) shelves.set(a.id, a.shelf.untilMs);
    const unknown = this.shelves.unknown(shelves);
    const records = unknown.length > 0 ? await this.opts.store.getMany(unknown) : [];
    this.shelves.sync(shelves, [...records, ...this.locals]);
    for (const [id, untilMs] of this.shelves.due()) {
      if (this.locals.some((a) => a.id === id)) continue;
      const [kind, group] = conditionOf(id).split('~');
      if (!isAlarmKind(kind) || !owns(kind, group === undefined || group === '-' ? null : group)) continue;
      const ended = await this.opts.store.expireShelf(id, untilMs);
      if (ended) this.shelfEnded(ended, untilMs);
    }
  }

  private shelfEnded(a: StoredAlarm, untilMs: number): void {
    this.log.warn(
      { alarm: a.id, severity: a.severity, shelvedUntil: new Date(untilMs).toISOString() },
      `alarm shelf expired, the alarm is still active: ${a.message}`,
    );
    this.transitioned(a, 'shelf-expired');
  }

  /**
   * This node's own alarms about etcd, kept here (and in the API's answers) until etcd takes writes:
   * etcd out of reach (raised after the delay) and etcd out of space (raised at once: it never ends
   * on its own). Each is closed when its condition ends, and recorded once etcd takes writes again.
   */
  private async evaluateLocal(nowMs: number, delayS: number): Promise<void> {
    const { node, leadership, store } = this.opts;
    const reached = leadership.healthy;
    const noSpace = reached && (await this.opts.spaceProbe?.refusesWrites()) === true;
    this.localCondition(
      'etcd-quorum-lost',
      !reached,
      nowMs,
      delayS * 1000,
      `node ${node} cannot reach etcd (quorum lost, or this node cut off): leadership and alarms cannot be written`,
      'this node reaches etcd again',
    );
    this.localCondition(
      'etcd-no-space',
      noSpace,
      nowMs,
      0,
      `etcd refuses writes: database space exceeded (NOSPACE alarm); leaders keep driving, but operator actions, alarms and new candidates cannot be written: ${ETCD_NO_SPACE_REMEDY}`,
      'etcd takes writes again',
    );
    if (!reached || noSpace) return;
    while (this.locals.length > 0) {
      const a = this.locals[0]!;
      await store.record(a, conditionKey(a.kind, null, node));
      this.locals.shift();
      this.log.info({ alarm: a.id }, `${a.kind} recorded in etcd now that it takes writes again`);
    }
  }

  private localCondition(
    kind: 'etcd-quorum-lost' | 'etcd-no-space',
    active: boolean,
    nowMs: number,
    delayMs: number,
    message: string,
    clearReason: string,
  ): void {
    const { node } = this.opts;
    const key = conditionKey(kind, null, node);
    let open = this.locals.find((a) => a.kind === kind && a.clearedAtMs === null);
    const ended = open?.shelf && !this.shelves.shelved(open) ? shelfExpired(open, open.shelf.untilMs) : open;
    if (open && ended && ended !== open) {
      this.locals[this.locals.indexOf(open)] = ended;
      this.shelfEnded(ended, open.shelf?.untilMs ?? 0);
      open = ended;
    }
    if (active) {
      const since = this.localMemory.since.get(key) ?? nowMs;
      this.localMemory.since.set(key, since);
      if (open || nowMs - since < delayMs) return;
      const alarm = raisedAlarm(
        { kind, group: null, subject: node, message, value: null },
        node,
        this.wallNow(),
      );
      this.locals.push(alarm);
      this.log.error(
        { alarm: alarm.id },
        `alarm raised (kept on this node until etcd takes writes): ${alarm.message}`,
      );
      this.transitioned(alarm, 'raised');
      return;
    }
    this.localMemory.since.delete(key);
    if (open) {
      const closed = clearedAlarm(open, { atMs: this.wallNow(), by: node, reason: clearReason });
      this.locals[this.locals.indexOf(open)] = closed;
      this.transitioned(closed, 'cleared');
    }
  }

  private groupSnapshot(
    site: Site,
    group: string,
    nowMs: number,
    delays: ReturnType<typeof alarmDelays>,
  ): Parameters<typeof evaluateGroup>[0] {
    const g = site.controlGroups.find((x) => x.id === group)!;
    const store = this.opts.sensors();
    // What the group's loop took from the sensors this period, not a walk of our own.
    const figures = store?.figures(group, SHARED_FIGURES_MAX_AGE_MS);
    const view = figures?.view;
    const driver = this.opts.drivers.get(group);
    const units: UnitSnapshot[] = (driver?.units() ?? []).map((u) => {
      const device = this.opts.devices.get(u.ahu);
      return { id: u.ahu, link: device?.linkState ?? 'down', mode: u.mode, refusal: device?.refusal ?? null };
    });
    return {
      group,
      nowMs,
      rackInletsC: figures ? { racks: figures.inletRacks, c: figures.rackInletMaxC } : {},
      rackDewPointsC: figures ? { racks: figures.dewRacks, c: figures.rackDewPointC } : {},
      verdict: view?.verdict ?? 'blind',
      recovery: view?.recovery ?? null,
      configuredInletSensors: view?.configuredInletSensors ?? 0,
      units,
      drive: { driving: driver?.driving ?? false, problem: driver?.driveStatus.problem ?? null },
      limits: alarmLimits(site.alarms, g.alarms),
      delays,
    };
  }

  /**
   * Makes etcd agree with the verdicts on the conditions `mine` says this node judges: raise what
   * is active and not open, close what is clear and open, and close what is open but no longer a
   * condition at all (a rack, unit or node removed from the config). `candidates`: the open keys
   * that may be such (a group's own: not every open alarm of the cluster for each group).
   */
  private async reconcile(
    conditions: Condition[],
    open: Map<string, string>,
    candidates: readonly string[],
    mine: (kind: AlarmKind, group: string | null) => boolean,
  ): Promise<void> {
    const { store, node } = this.opts;
    const seen = new Set<string>();
    const raise: { alarm: StoredAlarm; condition: string; c: Condition }[] = [];
    const closing: { key: string; id: string; reason: string }[] = [];
    // An open key whose alarm is gone (deleted by hand, a bad restore) would hold the condition for
    // ever: each id checked once (all of them in a few reads: a new leader inherits thousands), and
    // one that names no valid alarm dropped, so the next evaluation raises it afresh.
    const unchecked = conditions.flatMap((c) => {
      const id = c.verdict === 'active' ? open.get(c.key) : undefined;
      return id !== undefined && !this.verified.has(id) ? [id] : [];
    });
    const checked = unchecked.length > 0 ? await store.getMany(unchecked) : [];
    // Only texts that may follow their condition are kept: a hot hall has thousands of inlet alarms.
    for (const a of checked)
      if (TEXT_FOLLOWS.has(a.kind)) this.texts.set(a.id, { message: a.message, value: a.value });
    const valid = new Set(checked.map((a) => a.id));
    const nowMs = this.monoNow();
    const revise: { condition: string; id: string; c: Condition }[] = [];
    for (const c of conditions) {
      seen.add(c.key);
      const openId = open.get(c.key);
      if (c.verdict === 'active' && openId !== undefined && !this.verified.has(openId)) {
        if (valid.has(openId)) this.verify(openId);
        else {
          store.invalid.inc();
          this.log.error(
            { key: store.openKey(c.key), id: openId },
            'open alarm key names no valid alarm: dropped, the condition is judged afresh',
          );
          await store.clear(c.key, openId, { atMs: this.wallNow(), by: node, reason: 'no valid record' });
          open.delete(c.key);
        }
      } else if (c.verdict === 'active' && openId !== undefined) {
        // Still active: a text that names what is wrong follows it (TEXT_FOLLOWS), checked at most
        // every TEXT_REVISE_MS so a quiet hall writes nothing and a changing one little.
        if (
          TEXT_FOLLOWS.has(c.kind) &&
          nowMs - (this.textCheckedMs.get(c.key) ?? Number.NEGATIVE_INFINITY) >= TEXT_REVISE_MS
        ) {
          this.textCheckedMs.set(c.key, nowMs);
          revise.push({ condition: c.key, id: openId, c });
        }
      } else if (c.verdict === 'active' && openId === undefined) {
        raise.push({ alarm: raisedAlarm(c, node, this.wallNow()), condition: c.key, c });
      } else if (c.verdict === 'clear' && openId !== undefined) {
        closing.push({ key: c.key, id: openId, reason: c.reason });
      }
    }
    await this.close(closing.splice(0), open);
    await this.revise(revise, open);
    if (raise.length > 0) {
      const raised = new Set(await store.raiseMany(raise));
      for (const { alarm, c } of raise) {
        if (!raised.has(alarm)) continue;
        open.set(c.key, alarm.id);
        this.verify(alarm.id);
        if (TEXT_FOLLOWS.has(alarm.kind)) {
          this.texts.set(alarm.id, { message: alarm.message, value: alarm.value });
          this.textCheckedMs.set(c.key, nowMs);
        }
        this.log.warn(
          { alarm: alarm.id, severity: alarm.severity, why: c.reason },
          `alarm raised: ${c.message}`,
        );
        this.transitioned(alarm, 'raised');
      }
    }
    for (const key of candidates) {
      const id = open.get(key);
      if (id === undefined || seen.has(key)) continue;
      const [kind, group] = key.split('~');
      if (!isAlarmKind(kind)) continue;
      const g = group === '-' ? null : (group ?? null);
      if (!mine(kind, g)) continue;
      const unraisable =
        ALARM_KINDS[kind].scope === 'node' || (ALARM_KINDS[kind].scope === 'group' && g === null);
      closing.push({
        key,
        id,
        reason: unraisable
          ? 'no node raises this condition (an open key written by hand or restored)'
          : 'the condition no longer exists (the config changed)',
      });
    }
    await this.close(closing, open);
  }

  /**
   * Rewrites the texts of open alarms whose condition now reads otherwise (the racks named, the
   * value): in batches, only where the text changed, the acknowledgement and shelf kept. Not a
   * transition: nothing is notified (a receiver gets the new text with the next re-send), and a
   * write that lost a race is tried again at the next check.
   */
  private async revise(items: { condition: string; id: string; c: Condition }[], open: Map<string, string>) {
    const live = items.filter((x) => open.get(x.condition) === x.id);
    if (live.length === 0) return;
    const unknown = live.filter((x) => !this.texts.has(x.id)).map((x) => x.id);
    if (unknown.length > 0)
      for (const a of await this.opts.store.getMany(unknown))
        this.texts.set(a.id, { message: a.message, value: a.value });
    const changed = live.flatMap((x) => {
      const known = this.texts.get(x.id);
      if (!known) return [];
      const next = storedText(x.c.message, x.c.value);
      return next.message === known.message && next.value === known.value
        ? []
        : [{ condition: x.condition, id: x.id, message: next.message, value: next.value }];
    });
    if (changed.length === 0) return;
    for (const a of await this.opts.store.reviseMany(changed)) {
      this.texts.set(a.id, { message: a.message, value: a.value });
      this.log.info({ alarm: a.id }, `alarm text now: ${a.message}`);
    }
  }

  /** Drops what it knew of texts no longer open (closed by another node, a group handed on). */
  private forgetClosedTexts(open: ReadonlyMap<string, string>): void {
    if (this.textCheckedMs.size + this.texts.size <= 2 * open.size + 64) return;
    for (const key of this.textCheckedMs.keys()) if (!open.has(key)) this.textCheckedMs.delete(key);
    const ids = new Set(open.values());
    for (const id of this.texts.keys()) if (!ids.has(id)) this.texts.delete(id);
  }

  /** An open alarm id whose record is known to exist (this node wrote it, or read it). */
  private verify(id: string): void {
    if (this.verified.size > 10_000) this.verified.clear();
    this.verified.add(id);
  }

  /** Closes open alarms (a batch to a transaction: a hall that cools clears thousands at once). */
  private async close(
    items: readonly { key: string; id: string; reason: string }[],
    open: Map<string, string>,
  ): Promise<void> {
    if (items.length === 0) return;
    const atMs = this.wallNow();
    const { node } = this.opts;
    const closed = await this.opts.store.clearMany(
      items.map((x) => ({ condition: x.key, id: x.id, close: { atMs, by: node, reason: x.reason } })),
    );
    for (const x of items) {
      open.delete(x.key);
      this.texts.delete(x.id);
      this.textCheckedMs.delete(x.key);
    }
    for (const a of closed) {
      this.log.info({ alarm: a.id, why: a.clearReason }, `alarm cleared: ${a.message}`);
      this.transitioned(a, 'cleared');
    }
  }

  /** Alertmanager resolves an alert nobody sends again: the owner re-sends its open ones. */
  private async resend(open: Map<string, string>, leads: Set<string>, clusterOwner: boolean, nowMs: number) {
    const notifier = this.opts.notifier?.();
    if (!notifier?.enabled || nowMs - this.lastResendMs < (this.opts.resendMs?.() ?? 60_000)) return;
    this.lastResendMs = nowMs;
    const owned: string[] = [];
    for (const [key, id] of open) {
      const [kind, group] = key.split('~');
      if (!isAlarmKind(kind)) continue;
      if (ALARM_KINDS[kind].scope === 'group' ? leads.has(group ?? '') : clusterOwner) owned.push(id);
    }
    for (const a of await this.opts.store.getMany(owned))
      if (a.clearedAtMs === null && !this.shelves.shelved(a)) notifier.notify(a, 'resend');
  }

  private transitioned(a: StoredAlarm, t: AlarmTransition): void {
    this.transitions.inc({ kind: a.kind, transition: t });
    // Shelved: nothing is sent but its clearing (a receiver must not keep a firing alert for ever).
    if (t !== 'cleared' && t !== 'shelved' && this.shelves.shelved(a)) return;
    this.opts.notifier?.()?.notify(a, t);
  }

  // --- the API (src/api/routes/alarms.ts) ---

  async list(which: 'active' | 'all'): Promise<Alarm[]> {
    let stored: StoredAlarm[];
    try {
      stored = await this.opts.store.list();
      this.lastList = stored;
    } catch (err) {
      // etcd out of reach: what this node read last, with its own alarm; else the error.
      if (!this.lastList) throw err;
      stored = this.lastList;
    }
    return listAlarms([...stored, ...this.locals], which, this.isShelved);
  }

  async acknowledge(id: string, user: string, comment: string): Promise<Alarm> {
    return this.act(
      id,
      (cur) => acknowledged(cur, user, comment, this.wallNow()),
      'acknowledged',
      user,
      comment,
    );
  }

  async shelve(id: string, user: string, durationS: number, comment: string): Promise<Alarm> {
    return this.act(
      id,
      (cur) => shelvedFor(cur, user, durationS, comment, this.wallNow()),
      'shelved',
      user,
      comment,
    );
  }

  async unshelve(id: string, user: string): Promise<Alarm> {
    return this.act(id, unshelved, 'unshelved', user, '');
  }

  /** An operator's action: the change, and its notification when it changed anything. */
  private async act(
    id: string,
    fn: (cur: StoredAlarm) => StoredAlarm,
    t: AlarmTransition,
    user: string,
    comment: string,
  ): Promise<Alarm> {
    let changed = false;
    const a = await this.change(id, (cur) => {
      const next = fn(cur);
      changed = next !== cur;
      return next;
    });
    if (changed) {
      this.shelves.observe(a, t === 'shelved');
      this.log.info({ alarm: a.id, user, comment }, `alarm ${t} by ${user}`);
      this.transitioned(a, t);
    }
    return toApiAlarm(a, this.isShelved);
  }

  notifications(): NotificationStatus {
    return this.opts.notifier?.()?.status() ?? { sinks: [], failures: [] };
  }

  /** A change to a stored alarm, or to this node's own while etcd cannot take it. */
  private async change(id: string, fn: (cur: StoredAlarm) => StoredAlarm): Promise<StoredAlarm> {
    const i = this.locals.findIndex((a) => a.id === id);
    if (i >= 0) {
      this.locals[i] = fn(this.locals[i]!);
      return this.locals[i]!;
    }
    return this.opts.store.update(id, fn);
  }
}

/** The open condition keys by their group ('-' keys: cluster and node alarms, under null). */
function openKeysByGroup(open: ReadonlyMap<string, string>): Map<string | null, string[]> {
  const out = new Map<string | null, string[]>();
  for (const key of open.keys()) {
    const group = key.split('~')[1];
    const g = group === undefined || group === '-' ? null : group;
    const keys = out.get(g);
    if (keys) keys.push(key);
    else out.set(g, [key]);
  }
  return out;
}
