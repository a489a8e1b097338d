// A small key-value view of one etcd prefix for the control plane's own records (users, API tokens,
// the audit trail): list in create-revision order, put, create-if-absent, delete, count, and a watch
// that reports every change and asks for a full re-read after the stream was lost. Every unary call
// runs under etcdCall's deadline; nothing here awaits forever.
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import { etcdCall } from './etcd-client.ts';

export interface KvEntry {
  key: string;
  value: string;
  /** etcd's create revision: the cluster-wide order of entries. */
  createRevision: number;
}

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
   * Follows changes under `prefix`. `resync` runs after the stream reconnects (events may have been
   * missed): the caller re-reads with list().
   */
  watch(
    prefix: string,
    onEvent: (e: KvEvent) => void,
    resync: () => void,
  ): Promise<{ close(): Promise<void> }>;
}

export class EtcdPrefixKv implements PrefixKv {
  private readonly client: Etcd3;
  private readonly callTimeoutMs: number;

  constructor(client: Etcd3, callTimeoutMs: number) {
    this.client = client;
    this.callTimeoutMs = callTimeoutMs;
  }

  async list(
    prefix: string,
    opts: { limit?: number; newest?: boolean; afterRevision?: number } = {},
  ): Promise<KvEntry[]> {
    const res = await etcdCall('list', this.callTimeoutMs, undefined, (o) => {
      let q = this.client
        .getAll()
        .prefix(prefix)
        .sort('Create', opts.newest ? 'Descend' : 'Ascend');
      if (opts.afterRevision) q = q.minCreateRevision(opts.afterRevision + 1);
      if (opts.limit) q = q.limit(opts.limit);
      return q.options(o).exec();
    });
    const out = res.kvs.map(entryOf);
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
    const watcher: Watcher = await this.client.watch().prefix(prefix).create();
    let first = true;
    watcher.on('put', (kv) => onEvent({ type: 'put', entry: entryOf(kv) }));
    watcher.on('delete', (kv) => onEvent({ type: 'delete', key: kv.key.toString() }));
    watcher.on('connected', () => {
      if (!first) resync();
      first = false;
    });
    // The library reconnects on its own; a lost stream shows as a reconnect, then a resync.
    watcher.on('error', () => {});
    return { close: () => watcher.cancel() };
  }
}

function entryOf(kv: IKeyValue): KvEntry {
  return { key: kv.key.toString(), value: kv.value.toString(), createRevision: Number(kv.create_revision) };
}
