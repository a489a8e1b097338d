// The cluster's alarms in etcd: one key per occurrence, `<prefix>/alarms/<id>`, and one key per
// condition that is open now, `<prefix>/alarms-open/<condition>` → id. Raising creates both in one
// transaction that succeeds only if the condition's open key does not exist, so two nodes — two
// leaders of one group across a failover, or two nodes that both think they own the cluster's
// alarms — can never raise the same condition twice. Clearing deletes the open key and closes the
// record in one transaction guarded by both keys' revisions; acknowledging and shelving are
// compare-and-swap on the record. Every node reads the same records, so an acknowledgement made on
// one node is what every other node answers.
// A shelved open alarm also has `<prefix>/alarms-shelved/<id>` → the shelf's end (wall ms), written
// in the same transaction as the record: the engines read that small index every second, next to
// the open keys (one range read covers both), to end a shelf on time without reading every record.
// A stored value that is not an alarm is skipped, counted and logged (once per value), never acted on.
// Retention: prune() deletes cleared alarms older than the retention age or beyond the newest
// `clearedMaxCount` cleared ones; open alarms are never pruned, but an open record no open key
// names (an orphan) is closed by closeOrphans(). A flood raises, clears and reads in batches.
import type { Etcd3, IKeyValue, ITxnResponse } from 'etcd3';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { readPrefixBounded } from '../cluster/etcd/bounded-range.ts';
import { etcdCall, isTooLarge } from '../cluster/etcd/etcd-client.ts';
import { BadRequestError, ErrorCodes } from '../errors.ts';
import { clip } from '../util/log-limit.ts';
import { wireJson } from '../version.ts';
import {
  AlarmValueError,
  type Close,
  clearedAlarm,
  conditionOf,
  readStoredAlarm,
  revised,
  type StoredAlarm,
  shelfExpired,
} from './alarm.ts';

/**
 * Alarms per raising transaction: a compare and two puts each (three when shelved), inside etcd's
 * default --max-txn-ops of 128 per list.
 */
export const RAISE_BATCH = 32;

/** Records read per transaction by getMany(): one range op each, inside etcd's --max-txn-ops (128). */
export const READ_BATCH = 100;
/**
 * Values above this many bytes are no alarm (texts are clipped to ALARM_TEXT_MAX when written): left
 * out unparsed, counted and logged.
 */
const MAX_VALUE_BYTES = 64 * 1024;

export interface AlarmStoreOptions {
  client: Etcd3;
  prefix: string;
  callTimeoutMs: number;
  logger: Logger;
  registry: Registry;
}

interface Versioned {
  alarm: StoredAlarm;
  modRevision: string;
}

/** The answer to an action on an alarm nobody has (404 through the error catalog). */
export function unknownAlarm(id: string): BadRequestError {
  return new BadRequestError(
    ErrorCodes.BAD_REQUEST,
    `unknown alarm "${id}"`,
    ['list them with GET /api/v1/alarms?state=all'],
    404,
  );
}

export class AlarmStore {
  private readonly opts: AlarmStoreOptions;
  private readonly log: Logger;
  /** The index as last read, and what says whether it changed since (see index()). */
  private lastIndex:
    | { count: number; newest: string; open: Map<string, string>; shelved: Map<string, number> }
    | undefined;
  /**
   * Per key holding an invalid value, the revision already counted and logged: one entry per key
   * that is invalid now (a key that parses again, or is gone from a listing, is forgotten), so a
   * writer that keeps putting junk costs a count and a line per revision, never memory that grows.
   */
  private readonly reported = new Map<string, string>();
  /**
   * The valid records list() read last, by key, with their revision: a dashboard reads the list every
   * second, and re-reading ~3 000 unchanged records held the event loop 40–80 ms each time. A record
   * is read afresh when its revision moves; keys gone from a listing are dropped with it.
   */
  private listed = new Map<string, { modRevision: string; alarm: StoredAlarm }>();
  readonly invalid: Counter;
  readonly pruned: Counter;

  /** Keys whose invalid value was counted and is remembered (so it is not counted again). */
  get invalidKeysRemembered(): number {
    return this.reported.size;
  }

  constructor(opts: AlarmStoreOptions) {
    this.opts = opts;
    this.log = opts.logger.child({ component: 'alarms' });
    for (const n of ['coolctl_alarm_values_invalid_total', 'coolctl_alarms_pruned_total'])
      opts.registry.removeSingleMetric(n);
    this.invalid = new Counter({
      name: 'coolctl_alarm_values_invalid_total',
      help: 'values under <prefix>/alarms/ that are not an alarm (skipped; each counted once)',
      registers: [opts.registry],
    });
    this.pruned = new Counter({
      name: 'coolctl_alarms_pruned_total',
      help: 'cleared alarms this node deleted for retention (age or count)',
      registers: [opts.registry],
    });
  }

  private get dir(): string {
    return `${this.opts.prefix}/alarms/`;
  }

  private get openDir(): string {
    return `${this.opts.prefix}/alarms-open/`;
  }

  private get shelvedDir(): string {
    return `${this.opts.prefix}/alarms-shelved/`;
  }

  key(id: string): string {
    return `${this.dir}${id}`;
  }

  openKey(condition: string): string {
    return `${this.openDir}${condition}`;
  }

  shelvedKey(id: string): string {
    return `${this.shelvedDir}${id}`;
  }

  private call<T>(what: string, fn: (o: import('@grpc/grpc-js').CallOptions) => Promise<T>): Promise<T> {
    return etcdCall(`alarms ${what}`, this.opts.callTimeoutMs, undefined, fn);
  }

  /**
   * Every valid alarm, oldest first; invalid values are counted and logged, never returned. A record
   * whose revision did not move since the last listing is the same object as then (never re-read).
   */
  async list(): Promise<StoredAlarm[]> {
    const listed = new Set<string>();
    const res = await this.readBounded('list', this.dir, (key, bytes) => {
      listed.add(key);
      this.refuseOversized(key, bytes);
    });
    const out: StoredAlarm[] = [];
    const known = this.listed;
    const next = new Map<string, { modRevision: string; alarm: StoredAlarm }>();
    res.kvs.sort((a, b) => Number(a.create_revision) - Number(b.create_revision));
    for (const kv of res.kvs) {
      const key = kv.key.toString();
      listed.add(key);
      const modRevision = String(kv.mod_revision);
      const was = known.get(key);
      const a =
        was?.modRevision === modRevision ? was.alarm : this.parse(key, kv.value.toString(), modRevision);
      if (!a) continue;
      out.push(a);
      next.set(key, { modRevision, alarm: a });
    }
    this.listed = next;
    for (const key of this.reported.keys())
      if (key.startsWith(this.dir) && !listed.has(key)) this.reported.delete(key);
    return out;
  }

  /**
   * One range read of the two indexes: conditions open now → the id of their alarm, and shelved
   * alarms → when their shelf ends (wall ms; a value that is not a number reads as 0, so the next
   * owner looks at the record and mends it).
   */
  async index(): Promise<{ open: Map<string, string>; shelved: Map<string, number> }> {
    const prefix = `${this.opts.prefix}/alarms-`;
    const { client } = this.opts;
    // The index is read every second and changes far less often: a hall with ~2 000 open alarms
    // decoded them all each time (~15 ms of CPU a second). One key and the count say whether
    // anything changed: a put raises the prefix's highest mod revision, a delete alone lowers
    // the count.
    const cached = this.lastIndex;
    if (cached) {
      const probe = await this.call('open conditions', (o) =>
        client.getAll().prefix(prefix).sort('Mod', 'Descend').limit(1).options(o).exec(),
      );
      const newest = probe.kvs[0] ? String(probe.kvs[0].mod_revision) : '0';
      if (Number(probe.count) === cached.count && newest === cached.newest)
        return { open: new Map(cached.open), shelved: new Map(cached.shelved) };
    }
    const res = await this.readBounded('open conditions', prefix, (key, bytes) =>
      this.refuseOversized(key, bytes),
    );
    const open = new Map<string, string>();
    const shelved = new Map<string, number>();
    let newest = 0n;
    for (const kv of res.kvs) {
      const mod = BigInt(String(kv.mod_revision));
      if (mod > newest) newest = mod;
      const key = kv.key.toString();
      if (key.startsWith(this.openDir)) open.set(key.slice(this.openDir.length), kv.value.toString());
      else if (key.startsWith(this.shelvedDir)) {
        const until = Number(kv.value.toString());
        shelved.set(key.slice(this.shelvedDir.length), Number.isFinite(until) ? until : 0);
      }
    }
    this.lastIndex = { count: res.count, newest: String(newest), open, shelved };
    return { open: new Map(open), shelved: new Map(shelved) };
  }

  /**
   * A whole prefix others can write, read so that no value there can fail the read (bounded-range.ts):
   * one too large to be an alarm, or an index entry, is left out, counted and logged.
   */
  private readBounded(
    what: string,
    prefix: string,
    onOversized: (key: string, bytes: number | null) => void,
  ) {
    return readPrefixBounded({
      client: this.opts.client,
      prefix,
      what: `alarms ${what}`,
      callTimeoutMs: this.opts.callTimeoutMs,
      maxValueBytes: MAX_VALUE_BYTES,
      onOversized,
    });
  }

  private refuseOversized(key: string, bytes: number | null): void {
    const tag = `oversized:${bytes}`;
    if (this.reported.get(key) === tag) return;
    this.reported.set(key, tag);
    this.invalid.inc();
    this.log.error(
      { key: clip(key), bytes },
      'stored alarm value is too large to be an alarm: skipped until it is fixed or deleted',
    );
  }

  /** parse() of a kv read by key; a value over MAX_VALUE_BYTES is refused unparsed. */
  private parseKv(kv: IKeyValue): StoredAlarm | null {
    const key = kv.key.toString();
    if (kv.value.length > MAX_VALUE_BYTES) {
      this.refuseOversized(key, kv.value.length);
      return null;
    }
    return this.parse(key, kv.value.toString(), String(kv.mod_revision));
  }

  private parse(key: string, text: string, modRevision: string): StoredAlarm | null {
    const id = key.slice(this.dir.length);
    try {
      const { alarm, problems } = readStoredAlarm(id, text);
      if (problems.length === 0) this.reported.delete(key);
      else if (this.reported.get(key) !== modRevision) {
        // Kept (it is a real alarm's record, maybe written over), without what nobody did to it.
        this.reported.set(key, modRevision);
        this.invalid.inc();
        this.log.error(
          { key: clip(key), problems: problems.map((p) => clip(p, 200)) },
          'stored alarm claims what no node or operator did: read without it until it is rewritten',
        );
      }
      return alarm;
    } catch (err) {
      if (this.reported.get(key) !== modRevision) {
        this.reported.set(key, modRevision);
        this.invalid.inc();
        this.log.error(
          { key: clip(key), problem: clip((err as Error).message, 300), bytes: text.length },
          'stored alarm is not valid: skipped until it is fixed or deleted',
        );
      }
      if (!(err instanceof AlarmValueError)) throw err;
      return null;
    }
  }

  private async read(id: string): Promise<Versioned | null> {
    const key = this.key(id);
    const res = await this.call('read', (o) => this.opts.client.get(key).options(o).exec());
    const kv = res.kvs[0];
    if (!kv) return null;
    const alarm = this.parseKv(kv);
    return alarm ? { alarm, modRevision: String(kv.mod_revision) } : null;
  }

  async get(id: string): Promise<StoredAlarm | null> {
    return (await this.read(id))?.alarm ?? null;
  }

  /**
   * The valid records of `ids`, READ_BATCH to a transaction (missing and invalid ones left out; an
   * invalid one counted and logged as list() does): the owner re-sends thousands of open alarms
   * every minute, and a read each held the alarm evaluation for seconds.
   */
  async getMany(ids: readonly string[]): Promise<StoredAlarm[]> {
    return [...(await this.readMany(ids)).values()].map((x) => x.alarm);
  }

  /** The valid records of `ids` with their revisions, by id (see getMany()). */
  private async readMany(ids: readonly string[]): Promise<Map<string, Versioned>> {
    const { client } = this.opts;
    const out = new Map<string, Versioned>();
    for (let from = 0; from < ids.length; from += READ_BATCH) {
      const batch = ids.slice(from, from + READ_BATCH);
      // A compare that always holds (no key has a create revision below 0): the reads in one round trip.
      let res: ITxnResponse;
      try {
        res = await this.call('read many', (o) =>
          client
            .if(this.key(batch[0]!), 'Create', '>', -1)
            .then(...batch.map((id) => client.get(this.key(id))))
            .options(o)
            .commit(),
        );
      } catch (err) {
        // Values too large together for one message (no alarm is that large): one by one, so the
        // real ones are still read and the large ones refused.
        if (!isTooLarge(err)) throw err;
        for (const id of batch) {
          const v = await this.read(id);
          if (v) out.set(v.alarm.id, v);
        }
        continue;
      }
      for (const r of res.responses)
        for (const kv of r.response_range?.kvs ?? []) {
          const modRevision = String(kv.mod_revision);
          const alarm = this.parseKv(kv);
          if (alarm) out.set(alarm.id, { alarm, modRevision });
        }
    }
    return out;
  }

  /**
   * Raises `a` unless its condition is open already (by anyone): one transaction creates the open
   * key and the record. Whether this call raised it.
   */
  async raise(a: StoredAlarm, condition: string): Promise<boolean> {
    const { client } = this.opts;
    const res = await this.call('raise', (o) =>
      client
        .if(this.openKey(condition), 'Create', '==', 0)
        .and(this.key(a.id), 'Create', '==', 0)
        .then(
          client.put(this.openKey(condition)).value(a.id),
          client.put(this.key(a.id)).value(wireJson(a)),
          ...(a.shelf ? [client.put(this.shelvedKey(a.id)).value(String(a.shelf.untilMs))] : []),
        )
        .options(o)
        .commit(),
    );
    return res.succeeded;
  }

  /**
   * Raises several alarms, RAISE_BATCH to a transaction that succeeds only if none of their
   * conditions is open (so each still opens at most once, cluster-wide): a hall that heats up
   * raises thousands at once, and one transaction each kept the node busy for tens of seconds. A
   * batch that someone got ahead of, even in part, is raised one by one (raise()). A condition
   * given twice is raised once. The alarms this call raised, in the order given.
   */
  async raiseMany(items: readonly { alarm: StoredAlarm; condition: string }[]): Promise<StoredAlarm[]> {
    const { client } = this.opts;
    const seen = new Set<string>();
    const unique = items.filter((x) => !seen.has(x.condition) && seen.add(x.condition));
    const raised: StoredAlarm[] = [];
    for (let from = 0; from < unique.length; from += RAISE_BATCH) {
      const batch = unique.slice(from, from + RAISE_BATCH);
      const res = await this.call('raise', (o) => {
        const [first, ...rest] = batch;
        let txn = client.if(this.openKey(first!.condition), 'Create', '==', 0);
        for (const x of rest) txn = txn.and(this.openKey(x.condition), 'Create', '==', 0);
        return txn
          .then(
            ...batch.flatMap(({ alarm: a, condition }) => [
              client.put(this.openKey(condition)).value(a.id),
              client.put(this.key(a.id)).value(wireJson(a)),
              ...(a.shelf ? [client.put(this.shelvedKey(a.id)).value(String(a.shelf.untilMs))] : []),
            ]),
          )
          .options(o)
          .commit();
      });
      if (res.succeeded) raised.push(...batch.map((x) => x.alarm));
      else for (const x of batch) if (await this.raise(x.alarm, x.condition)) raised.push(x.alarm);
    }
    return raised;
  }

  /**
   * Closes the open alarm of `condition` if it is still `id`: the record gets its clear time and
   * reason, the open key goes. A record that is missing or invalid only loses its open key. The
   * closed record, or null when someone else closed it first.
   */
  async clear(condition: string, id: string, close: Close): Promise<StoredAlarm | null> {
    const { client } = this.opts;
    const openKey = this.openKey(condition);
    for (let attempt = 1; attempt <= 3; attempt++) {
      const cur = await this.read(id);
      if (!cur || cur.alarm.clearedAtMs !== null) {
        await this.call('drop open key', (o) =>
          client.if(openKey, 'Value', '==', id).then(client.delete().key(openKey)).options(o).commit(),
        );
        return null;
      }
      const next = clearedAlarm(cur.alarm, close);
      const res = await this.call('clear', (o) =>
        client
          .if(openKey, 'Value', '==', id)
          .and(this.key(id), 'Mod', '==', cur.modRevision)
          .then(
            client.delete().key(openKey),
            client.delete().key(this.shelvedKey(id)),
            client.put(this.key(id)).value(wireJson(next)),
          )
          .options(o)
          .commit(),
      );
      if (res.succeeded) return next;
    }
    return null;
  }

  /**
   * Closes several open alarms as clear() does, RAISE_BATCH to a transaction guarded by every open
   * key and record revision in it: a hall that cools down clears thousands at once, and a read and
   * a transaction each held the evaluation for many seconds. A batch someone changed in between,
   * and a record that is missing, invalid or closed already, go one by one through clear(). The
   * records this call closed, in the order given.
   */
  async clearMany(items: readonly { condition: string; id: string; close: Close }[]): Promise<StoredAlarm[]> {
    const { client } = this.opts;
    const closed: StoredAlarm[] = [];
    for (let from = 0; from < items.length; from += RAISE_BATCH) {
      const batch = items.slice(from, from + RAISE_BATCH);
      const cur = await this.readMany(batch.map((x) => x.id));
      const ready = batch.flatMap((x) => {
        const c = cur.get(x.id);
        return c && c.alarm.clearedAtMs === null ? [{ ...x, c, next: clearedAlarm(c.alarm, x.close) }] : [];
      });
      let done = false;
      if (ready.length > 0) {
        const res = await this.call('clear', (o) => {
          return this.unchangedSinceRead(ready)
            .then(
              ...ready.flatMap((x) => [
                client.delete().key(this.openKey(x.condition)),
                client.delete().key(this.shelvedKey(x.id)),
                client.put(this.key(x.id)).value(wireJson(x.next)),
              ]),
            )
            .options(o)
            .commit();
        });
        done = res.succeeded;
      }
      for (const x of batch) {
        const mine = done ? ready.find((r) => r.id === x.id) : undefined;
        if (mine) closed.push(mine.next);
        else {
          const one = await this.clear(x.condition, x.id, x.close);
          if (one) closed.push(one);
        }
      }
    }
    return closed;
  }

  /**
   * Compare-and-swap change of one alarm (acknowledge, shelve): re-read and retry if it changed in
   * between, three times. Unknown id: 404.
   */
  async update(id: string, change: (cur: StoredAlarm) => StoredAlarm): Promise<StoredAlarm> {
    const { client } = this.opts;
    for (let attempt = 1; ; attempt++) {
      const cur = await this.read(id);
      if (!cur) throw unknownAlarm(id);
      const next = change(cur.alarm);
      if (next === cur.alarm) return next;
      const res = await this.call('update', (o) =>
        client
          .if(this.key(id), 'Mod', '==', cur.modRevision)
          .then(client.put(this.key(id)).value(wireJson(next)), this.shelfIndexOp(next))
          .options(o)
          .commit(),
      );
      if (res.succeeded) return next;
      if (attempt >= 3)
        throw new BadRequestError(
          ErrorCodes.BAD_REQUEST,
          `alarm ${id} changed three times under this request; try again`,
          [],
          409,
        );
    }
  }

  /**
   * New texts for open alarms (revised()), RAISE_BATCH to a transaction guarded by each open key's
   * value and record's revision, so an acknowledgement or shelf put on in between is never lost: a
   * batch someone changed in between is left whole, for the caller's next try. The records this
   * call rewrote.
   */
  async reviseMany(
    items: readonly { condition: string; id: string; message: string; value: number | null }[],
  ): Promise<StoredAlarm[]> {
    const { client } = this.opts;
    const done: StoredAlarm[] = [];
    for (let from = 0; from < items.length; from += RAISE_BATCH) {
      const batch = items.slice(from, from + RAISE_BATCH);
      const cur = await this.readMany(batch.map((x) => x.id));
      const ready = batch.flatMap((x) => {
        const c = cur.get(x.id);
        const next = c ? revised(c.alarm, x.message, x.value) : undefined;
        return c && next && next !== c.alarm ? [{ ...x, c, next }] : [];
      });
      if (ready.length === 0) continue;
      const res = await this.call('revise', (o) => {
        return this.unchangedSinceRead(ready)
          .then(...ready.map((x) => client.put(this.key(x.id)).value(wireJson(x.next))))
          .options(o)
          .commit();
      });
      if (res.succeeded) done.push(...ready.map((x) => x.next));
    }
    return done;
  }

  /**
   * A transaction's guard for open records read a moment ago: each condition's open key still
   * names the record, and the record is at the revision read (nobody acknowledged, shelved,
   * revised or closed it in between). One change anywhere fails the whole batch.
   */
  private unchangedSinceRead(
    records: readonly { condition: string; id: string; c: { modRevision: string } }[],
  ) {
    const [first, ...rest] = records;
    let txn = this.opts.client
      .if(this.openKey(first!.condition), 'Value', '==', first!.id)
      .and(this.key(first!.id), 'Mod', '==', first!.c.modRevision);
    for (const x of rest)
      txn = txn
        .and(this.openKey(x.condition), 'Value', '==', x.id)
        .and(this.key(x.id), 'Mod', '==', x.c.modRevision);
    return txn;
  }

  /** The shelved index as `a` wants it: its shelf's end while it is open and shelved, else no key. */
  private shelfIndexOp(a: StoredAlarm) {
    const key = this.shelvedKey(a.id);
    return a.shelf && a.clearedAtMs === null
      ? this.opts.client.put(key).value(String(a.shelf.untilMs))
      : this.opts.client.delete().key(key);
  }

  /**
   * Ends the shelf of `id` that ends at `untilMs` (the caller's monotonic clock judged that it ran
   * out: ./shelf-clock.ts) if the alarm is still open under that shelf: one transaction on the
   * record's revision that also drops its index key, so of two nodes that try at once (two
   * leaders across a failover) exactly one ends it. The ended record when this call ended it; null
   * when there was nothing to end (someone else did, it cleared, it was shelved again) — an index
   * key that no longer says what the record does is mended on the way.
   */
  async expireShelf(id: string, untilMs: number): Promise<StoredAlarm | null> {
    const { client } = this.opts;
    const key = this.shelvedKey(id);
    for (let attempt = 1; attempt <= 3; attempt++) {
      const cur = await this.read(id);
      const next = cur ? shelfExpired(cur.alarm, untilMs) : null;
      if (!cur || !next || next === cur.alarm) {
        // No valid record: no shelf to end (the record's own problem is counted and logged).
        if (!cur) {
          await this.call('mend shelf index', (o) => client.delete().key(key).options(o).exec());
          return null;
        }
        const want = cur.alarm.shelf && cur.alarm.clearedAtMs === null ? cur.alarm.shelf.untilMs : null;
        await this.call('mend shelf index', (o) =>
          client
            .if(this.key(id), 'Mod', '==', cur.modRevision)
            .then(want === null ? client.delete().key(key) : client.put(key).value(String(want)))
            .options(o)
            .commit(),
        );
        return null;
      }
      const res = await this.call('expire shelf', (o) =>
        client
          .if(this.key(id), 'Mod', '==', cur.modRevision)
          .then(client.put(this.key(id)).value(wireJson(next)), client.delete().key(key))
          .options(o)
          .commit(),
      );
      if (res.succeeded) return next;
    }
    return null;
  }

  /** Keeps a record made while etcd was out of reach (already closed, or still open). Whether it was new. */
  async record(a: StoredAlarm, condition: string): Promise<boolean> {
    if (a.clearedAtMs === null) return this.raise(a, condition);
    const { client } = this.opts;
    const res = await this.call('record', (o) =>
      client
        .if(this.key(a.id), 'Create', '==', 0)
        .then(client.put(this.key(a.id)).value(wireJson(a)))
        .options(o)
        .commit(),
    );
    return res.succeeded;
  }

  /**
   * Closes the open records no open key names (its condition's key gone or naming another id): a
   * hand-deleted key, a partial restore, a record a newer release wrote that an older one dropped
   * the key of. Nothing else would ever close one, and it would stay active in every list for good.
   * The records are read before the keys, so an alarm raised in between is not taken for one; each
   * close is guarded by the record's revision. The records this call closed.
   */
  async closeOrphans(close: Close): Promise<StoredAlarm[]> {
    const { client } = this.opts;
    const res = await this.readBounded('orphans list', this.dir, (key, bytes) =>
      this.refuseOversized(key, bytes),
    );
    const candidates = res.kvs.flatMap((kv) => {
      const a = this.parse(kv.key.toString(), kv.value.toString(), String(kv.mod_revision));
      return a && a.clearedAtMs === null ? [{ a, mod: String(kv.mod_revision) }] : [];
    });
    if (candidates.length === 0) return [];
    const { open } = await this.index();
    const closed: StoredAlarm[] = [];
    for (const { a, mod } of candidates) {
      if (open.get(conditionOf(a.id)) === a.id) continue;
      const next = clearedAlarm(a, close);
      const done = await this.call('close orphan', (o) =>
        client
          .if(this.key(a.id), 'Mod', '==', mod)
          .then(client.put(this.key(a.id)).value(wireJson(next)), client.delete().key(this.shelvedKey(a.id)))
          .options(o)
          .commit(),
      );
      if (done.succeeded) closed.push(next);
    }
    if (closed.length > 0) {
      this.invalid.inc(closed.length);
      this.log.error(
        { alarms: closed.length, first: closed[0]!.id },
        'open alarms no open key named (orphans) closed: their conditions are judged afresh',
      );
    }
    return closed;
  }

  /** Deletes what retention drops from the cleared alarms; open ones stay. How many went. */
  async prune(
    retention: { clearedMaxAgeMs: number; clearedMaxCount: number },
    nowMs: number,
  ): Promise<number> {
    const { client } = this.opts;
    const res = await this.readBounded('prune list', this.dir, (key, bytes) =>
      this.refuseOversized(key, bytes),
    );
    const cleared = res.kvs
      .map((kv) => ({
        key: kv.key.toString(),
        mod: String(kv.mod_revision),
        a: this.parse(kv.key.toString(), kv.value.toString(), String(kv.mod_revision)),
      }))
      .filter((x): x is { key: string; mod: string; a: StoredAlarm } => x.a?.clearedAtMs != null)
      .sort((x, y) => (y.a.clearedAtMs ?? 0) - (x.a.clearedAtMs ?? 0));
    let n = 0;
    for (const [i, x] of cleared.entries()) {
      const old = nowMs - (x.a.clearedAtMs ?? nowMs) > retention.clearedMaxAgeMs;
      if (i < retention.clearedMaxCount && !old) continue;
      const del = await this.call('prune', (o) =>
        client.if(x.key, 'Mod', '==', x.mod).then(client.delete().key(x.key)).options(o).commit(),
      );
      if (del.succeeded) n++;
    }
    if (n > 0) {
      this.pruned.inc(n);
      this.log.info({ deleted: n }, 'cleared alarms pruned');
    }
    return n;
  }
}
