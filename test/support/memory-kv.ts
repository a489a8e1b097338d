// The PrefixKv contract (src/cluster/etcd/prefix-kv.ts) in memory, with etcd's revision counter, for
// API tests through inject(): the etcd implementation is tested against a real etcd elsewhere
// (test/api/auth-cluster.test.ts). Watch events are delivered on the next microtask, as a stream would.
import type { KvEntry, KvEvent, PrefixKv } from '../../src/cluster/etcd/prefix-kv.ts';

export class MemoryKv implements PrefixKv {
  private revision = 0;
  readonly data = new Map<string, KvEntry>();
  private readonly watchers = new Set<{ prefix: string; on: (e: KvEvent) => void }>();

  async list(prefix: string, opts: { limit?: number; newest?: boolean; afterRevision?: number } = {}) {
    let rows = [...this.data.values()]
      .filter((e) => e.key.startsWith(prefix) && e.createRevision > (opts.afterRevision ?? 0))
      .sort((a, b) => a.createRevision - b.createRevision);
    if (opts.limit) rows = opts.newest ? rows.slice(-opts.limit) : rows.slice(0, opts.limit);
    return rows.map((r) => ({ ...r }));
  }
  async count(prefix: string): Promise<number> {
    return [...this.data.keys()].filter((k) => k.startsWith(prefix)).length;
  }
  async put(key: string, value: string): Promise<void> {
    const entry = { key, value, createRevision: this.data.get(key)?.createRevision ?? ++this.revision };
    this.data.set(key, entry);
    this.emit({ type: 'put', entry });
  }
  async create(key: string, value: string): Promise<boolean> {
    if (this.data.has(key)) return false;
    await this.put(key, value);
    return true;
  }
  async delete(key: string, createRevision?: number): Promise<boolean> {
    const e = this.data.get(key);
    if (!e || (createRevision !== undefined && e.createRevision !== createRevision)) return false;
    this.data.delete(key);
    this.emit({ type: 'delete', key });
    return true;
  }
  async watch(prefix: string, on: (e: KvEvent) => void) {
    const w = { prefix, on };
    this.watchers.add(w);
    return { close: async () => void this.watchers.delete(w) };
  }
  private emit(e: KvEvent): void {
    const key = e.type === 'put' ? e.entry.key : e.key;
    for (const w of this.watchers) if (key.startsWith(w.prefix)) queueMicrotask(() => w.on(e));
  }
}
