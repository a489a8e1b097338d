// A small key-value view of one etcd prefix for the control plane's own records (users, API tokens,
// the audit trail): list in create-revision order, put, create-if-absent, delete, count, and a watch
// that reports every change and asks for a full re-read whenever etcd confirms it (again): the watch
// runs on its own client, replaced when etcd leaves it unconfirmed (confirmed-watch.ts). Every unary
// call runs under etcdCall's deadline; nothing here awaits forever. Others can write these prefixes:
// a value too large to be a record is handed on empty with its size, and none fails a listing.
import type { CallOptions } from '@grpc/grpc-js';
import { type Etcd3, type IKeyValue, Range } from 'etcd3';
import type { Logger } from 'pino';
import { ConfirmedWatch } from './confirmed-watch.ts';
import { etcdCall, isTooLarge } from './etcd-client.ts';

export interface KvEntry {
  key: string;
  value: string;
  /** etcd's create revision: the cluster-wide order of entries. */
  createRevision: number;
  /** Set when the stored value was over MAX_VALUE_BYTES: `value` is then empty (no record is that large). */
  oversizedBytes?: number;
}

/** Values above this many bytes are no record of ours: handed on empty, with their size. */
export const MAX_VALUE_BYTES = 64 * 1024;
/** Oversized keys remembered (each a key and two numbers); past this the memory starts over. */
const OVERSIZED_REMEMBERED = 10_000;
const TOO_LARGE_REMEMBERED = 100;

export type KvEvent = { type: 'put'; entry: KvEntry } | { type: 'delete'; key: string };

export interface PrefixKv {
  /** Entries under `prefix`, oldest first (create revision); `limit` keeps the newest ones when `newest`. */
  list(
    prefix: string,
    opts?: { limit?: number; newest?: boolean; afterRevision?: number },
  ): Promise<KvEntry[]>;
  count(prefix: string): Promise<number>;
  put(key: string, value: string): Promise<void>;
  /** Puts only when the key does not exist; false when it did. */
  create(key: string, value: string): Promise<boolean>;
  /** Deletes only when the key still has `createRevision` (when given); whether it deleted. */
  delete(key: string, createRevision?: number): Promise<boolean>;
  /**
   * Follows changes under `prefix`. `resync` runs each time etcd confirms the watch, the first time
   * included (events may have been missed): the caller re-reads with list(). Returns at once.
   */
  watch(
    prefix: string,
    onEvent: (e: KvEvent) => void,
    resync: () => void,
  ): Promise<{ close(): Promise<void> }>;
}

export interface PrefixWatchSettings {
  /** A new client for each watch (and each replacement of one), configured like `client`. */
  newClient: () => Etcd3;
  /** How long a watch may stay unconfirmed before it starts again on a new client (default 5 s). */
  confirmMs?: number;
  log?: Logger;
  onReplace?: () => void;
}

export class EtcdPrefixKv implements PrefixKv {
  private readonly client: Etcd3;
  private readonly callTimeoutMs: number;
  private readonly watches: PrefixWatchSettings;
  /** Keys whose value was over MAX_VALUE_BYTES when last listed: at which mod revision, how large. */
  private readonly oversized = new Map<string, { modRevision: string; bytes: number }>();
  /** Prefixes whose whole listing was too large for one gRPC message. */
  private readonly tooLarge = new Set<string>();

  constructor(client: Etcd3, callTimeoutMs: number, watches: PrefixWatchSettings) {
    this.client = client;
    this.callTimeoutMs = callTimeoutMs;
    this.watches = watches;
  }

  async list(
    prefix: string,
    opts: { limit?: number; newest?: boolean; afterRevision?: number } = {},
  ): Promise<KvEntry[]> {
    const query = (keysOnly: boolean) => (o: CallOptions) => {
      const r = Range.prefix(prefix);
      return this.client.kv.range(
        {
          key: r.start,
          range_end: r.end,
          sort_order: opts.newest ? 'Descend' : 'Ascend',
          sort_target: 'Create',
          keys_only: keysOnly,
          ...(opts.afterRevision ? { min_create_revision: opts.afterRevision + 1 } : {}),
          ...(opts.limit ? { limit: opts.limit } : {}),
        },
        o,
      );
    };
    let out: KvEntry[] | null = null;
    const whole = !opts.limit && !opts.afterRevision;
    // A whole prefix that was too large to read in one message, and still holds a value too large
    // to be a record, is read keys first (below) at once, without moving its values again.
    if (!(whole && this.tooLarge.has(prefix) && this.holdsOversized(prefix))) {
      try {
        const kvs = (await etcdCall('list', this.callTimeoutMs, undefined, query(false))).kvs;
        out = kvs.map((kv) => this.entry(kv));
        if (whole) this.tooLarge.delete(prefix);
      } catch (err) {
        if (!isTooLarge(err)) throw err;
        if (whole && this.tooLarge.size < TOO_LARGE_REMEMBERED) this.tooLarge.add(prefix);
      }
    }
    if (out === null) {
      // Values too large together for one gRPC message (others can write here): the keys, then the
      // values between those known to be too large, each run in one call (each value alone when
      // a run is still too large), so the records beside them are still read. A value already
      // found too large is not read again while its key is unchanged: a resync would otherwise
      // move megabytes each time.
      const keys = (await etcdCall('list keys', this.callTimeoutMs, undefined, query(true))).kvs;
      const read = new Map<string, KvEntry>();
      let run: IKeyValue[] = [];
      for (const k of [...keys].sort((a, b) => Buffer.compare(a.key, b.key))) {
        const key = k.key.toString();
        const known = this.oversized.get(key);
        if (!known || known.modRevision !== String(k.mod_revision)) {
          run.push(k);
          continue;
        }
        await this.readRun(run, k.key, read);
        run = [];
        read.set(key, {
          key,
          value: '',
          createRevision: Number(k.create_revision),
          oversizedBytes: known.bytes,
        });
      }
      await this.readRun(run, Range.prefix(prefix).end, read);
      // In the order the keys were listed (create revision); a key deleted meanwhile is left out.
      out = keys.flatMap((k) => read.get(k.key.toString()) ?? []);
      if (whole) {
        const listed = new Set(keys.map((k) => k.key.toString()));
        for (const key of this.oversized.keys())
          if (key.startsWith(prefix) && !listed.has(key)) this.oversized.delete(key);
      }
    }
    return opts.newest ? out.reverse() : out;
  }

  /** The values of `run` (listed keys in key order, none known too large), read up to `end`. */
  private async readRun(run: readonly IKeyValue[], end: Buffer, into: Map<string, KvEntry>): Promise<void> {
    if (run.length === 0) return;
    const wanted = new Set(run.map((k) => k.key.toString()));
    try {
      const res = await etcdCall('list values', this.callTimeoutMs, undefined, (o) =>
        this.client.kv.range({ key: run[0]!.key, range_end: end }, o),
      );
      for (const kv of res.kvs)
        if (wanted.has(kv.key.toString())) into.set(kv.key.toString(), this.entry(kv));
      return;
    } catch (err) {
      if (!isTooLarge(err)) throw err;
    }
    for (const k of run) {
      // Each may be most of an etcd request (1.5 MiB): more time than an ordinary call.
      const res = await etcdCall('list value', 4 * this.callTimeoutMs, undefined, (o) =>
        this.client.kv.range({ key: k.key }, o),
      );
      if (res.kvs[0]) into.set(k.key.toString(), this.entry(res.kvs[0]));
    }
  }

  private holdsOversized(prefix: string): boolean {
    for (const key of this.oversized.keys()) if (key.startsWith(prefix)) return true;
    return false;
  }

  /** An entry of a listed value, remembering (or forgetting) whether it was too large to be a record. */
  private entry(kv: IKeyValue): KvEntry {
    const e = entryOf(kv);
    if (e.oversizedBytes === undefined) this.oversized.delete(e.key);
    else {
      if (this.oversized.size >= OVERSIZED_REMEMBERED) this.oversized.clear();
      this.oversized.set(e.key, { modRevision: String(kv.mod_revision), bytes: e.oversizedBytes });
    }
    return e;
  }

  async count(prefix: string): Promise<number> {
    return etcdCall('count', this.callTimeoutMs, undefined, (o) =>
      this.client.getAll().prefix(prefix).options(o).count(),
    );
  }

  async put(key: string, value: string): Promise<void> {
    await etcdCall('put', this.callTimeoutMs, undefined, (o) =>
      this.client.put(key).value(value).options(o).exec(),
    );
  }

  async create(key: string, value: string): Promise<boolean> {
    const res = await etcdCall('create', this.callTimeoutMs, undefined, (o) =>
      this.client.if(key, 'Create', '==', 0).then(this.client.put(key).value(value)).options(o).commit(),
    );
    return res.succeeded;
  }

  async delete(key: string, createRevision?: number): Promise<boolean> {
    if (createRevision === undefined) {
      const res = await etcdCall('delete', this.callTimeoutMs, undefined, (o) =>
        this.client.delete().key(key).options(o).exec(),
      );
      return Number(res.deleted) > 0;
    }
    const res = await etcdCall('compare-and-delete', this.callTimeoutMs, undefined, (o) =>
      this.client
        .if(key, 'Create', '==', createRevision)
        .then(this.client.delete().key(key))
        .options(o)
        .commit(),
    );
    return res.succeeded;
  }

  async watch(
    prefix: string,
    onEvent: (e: KvEvent) => void,
    resync: () => void,
  ): Promise<{ close(): Promise<void> }> {
    const w = new ConfirmedWatch({
      newClient: this.watches.newClient,
      prefix,
      onPut: (kv) => onEvent({ type: 'put', entry: entryOf(kv) }),
      onDelete: (kv) => onEvent({ type: 'delete', key: kv.key.toString() }),
      resync,
      confirmMs: this.watches.confirmMs ?? 5_000,
      ...(this.watches.log ? { log: this.watches.log } : {}),
      ...(this.watches.onReplace ? { onReplace: this.watches.onReplace } : {}),
    });
    return { close: () => w.close() };
  }
}

function entryOf(kv: IKeyValue): KvEntry {
  const createRevision = Number(kv.create_revision);
  if (kv.value.length > MAX_VALUE_BYTES)
    return { key: kv.key.toString(), value: '', createRevision, oversizedBytes: kv.value.length };
  return { key: kv.key.toString(), value: kv.value.toString(), createRevision };
}
