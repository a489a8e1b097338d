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
    let kvs: IKeyValue[];
    try {
      kvs = (await etcdCall('list', this.callTimeoutMs, undefined, query(false))).kvs;
    } catch (err) {
      // Values too large together for one gRPC message (others can write here): the keys, then each
      // value alone, so the records beside them are still read.
      if (!isTooLarge(err)) throw err;
      const keys = (await etcdCall('list keys', this.callTimeoutMs, undefined, query(true))).kvs;
      kvs = [];
      for (const k of keys) {
        // Each may be most of an etcd request (1.5 MiB): more time than an ordinary call.
        const res = await etcdCall('list value', 4 * this.callTimeoutMs, undefined, (o) =>
          this.client.kv.range({ key: k.key }, o),
        );
        if (res.kvs[0]) kvs.push(res.kvs[0]);
      }
    }
    const out = kvs.map(entryOf);
    return opts.newest ? out.reverse() : out;
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
