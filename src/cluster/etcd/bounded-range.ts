// Reading a whole prefix that others can write (a hand-run `etcdctl put`, a restore, a buggy node):
// whatever they put there, the read completes. Pages at one revision (the first page's); a page
// over one gRPC message is read again in smaller pages, and a value that alone overflows a message,
// or is over `maxValueBytes`, is left out by key and reported to the caller — never the whole read
// failing, which would hide every good value beside it.
import { type Etcd3, type IKeyValue, Range } from 'etcd3';
import { etcdCall, isTooLarge } from './etcd-client.ts';

export interface BoundedRangeOptions {
  client: Etcd3;
  prefix: string;
  /** Names the call in errors ("alarms list"). */
  what: string;
  callTimeoutMs: number;
  /** Values above this many bytes are left out (reported with their size). */
  maxValueBytes: number;
  /** Keys per range call (default 200). */
  pageSize?: number;
  /** A key left out: its value's size, or null when even one of it overflows a gRPC message. */
  onOversized: (key: string, bytes: number | null) => void;
}

export interface BoundedRead {
  /** In key order. */
  kvs: IKeyValue[];
  /** Keys under the prefix, those left out included. */
  count: number;
  revision: string;
}

const DEFAULT_PAGE_SIZE = 200;
/** Range calls one read may make (pages, and smaller pages after an overflow). */
const MAX_CALLS = 5_000;

export async function readPrefixBounded(o: BoundedRangeOptions): Promise<BoundedRead> {
  const full = Range.prefix(o.prefix);
  const pageSize = Math.max(1, o.pageSize ?? DEFAULT_PAGE_SIZE);
  const kvs: IKeyValue[] = [];
  let count = 0;
  let revision: string | undefined;
  let from = full.start;
  let limit = pageSize;
  for (let calls = 0; Buffer.compare(from, full.end) < 0; calls++) {
    if (calls >= MAX_CALLS) throw new Error(`${o.what}: more than ${MAX_CALLS} range calls`);
    let res: Awaited<ReturnType<ReturnType<Etcd3['getAll']>['exec']>>;
    try {
      res = await etcdCall(o.what, o.callTimeoutMs, undefined, (opts) => {
        const b = o.client.getAll().inRange(new Range(from, full.end)).limit(limit);
        if (revision !== undefined) b.revision(revision);
        return b.options(opts).exec();
      });
    } catch (err) {
      if (!isTooLarge(err)) throw err;
      if (limit > 1) {
        limit = Math.max(1, Math.floor(limit / 4));
        continue;
      }
      // One value alone overflows a message: find its key (keys only) and step over it.
      const keys = await etcdCall(`${o.what} (key)`, o.callTimeoutMs, undefined, (opts) => {
        const b = o.client.getAll().inRange(new Range(from, full.end)).limit(1);
        if (revision !== undefined) b.revision(revision);
        return b.options(opts).keyBuffers();
      });
      const key = keys[0];
      if (!key) throw err;
      count++;
      o.onOversized(key.toString(), null);
      from = Buffer.concat([key, Buffer.from([0])]);
      continue;
    }
    revision ??= String(res.header.revision);
    for (const kv of res.kvs) {
      count++;
      if (kv.value.length > o.maxValueBytes) o.onOversized(kv.key.toString(), kv.value.length);
      else kvs.push(kv);
    }
    const last = res.kvs.at(-1);
    if (!res.more || !last) break;
    from = Buffer.concat([last.key, Buffer.from([0])]);
    limit = Math.min(pageSize, limit * 4);
  }
  return { kvs, count, revision: revision ?? '0' };
}
