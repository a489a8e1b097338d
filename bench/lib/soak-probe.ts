// What bench/soak.ts samples, and how it turns samples into a drift: per controller process the
// kernel's figures (VmRSS, open fds, threads from /proc) and its own /metrics (heap, handles, series
// count); per etcd cluster the keys (by the first path segment under the hall's prefix), leases,
// watchers and db size. A drift is a least-squares slope per hour over a window of samples.
import { readdir, readFile } from 'node:fs/promises';
import { scrape, sum } from './scale-probe.ts';

export interface ProcessSample {
  atMs: number;
  pid: number;
  rssMb: number;
  fds: number;
  threads: number;
  /** Series (sample lines) in /metrics, and a few of the process series prom-client exports. */
  series: number;
  heapUsedMb: number;
  activeHandles: number;
  activeResources: number;
  /** Series per metric name: where a growing series count comes from. */
  families: Map<string, number>;
}

export interface EtcdSample {
  atMs: number;
  keys: number;
  /** Keys by the first segment under the prefix (`alarms`, `audit`, `election`, …). */
  keysBy: Record<string, number>;
  leases: number;
  /** Watchers and watch streams etcd holds, summed over the members (etcd_debugging_mvcc_*). */
  watchers: number;
  watchStreams: number;
  /** The largest member's backend file, MiB. */
  dbMb: number;
}

/** The pid of the process whose command line holds `needle` (a config path only one process runs). */
export async function pidOf(needle: string): Promise<number | null> {
  for (const d of await readdir('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const cmd = await readFile(`/proc/${d}/cmdline`, 'utf8').catch(() => '');
    if (cmd.split('\0').includes(needle)) return Number(d);
  }
  return null;
}

export async function sampleProcess(
  pid: number,
  apiUrl: string,
  headers: Record<string, string>,
): Promise<ProcessSample> {
  const atMs = Date.now();
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1]);
  const fds = (await readdir(`/proc/${pid}/fd`)).length;
  const s = (await scrape(apiUrl, 5000, headers)).samples;
  const families = new Map<string, number>();
  for (const x of s) families.set(x.name, (families.get(x.name) ?? 0) + 1);
  return {
    atMs,
    pid,
    rssMb: field('VmRSS') / 1024,
    fds,
    threads: field('Threads'),
    series: s.length,
    heapUsedMb: sum(s, 'nodejs_heap_size_used_bytes') / 2 ** 20,
    activeHandles: sum(s, 'nodejs_active_handles_total'),
    activeResources: sum(s, 'nodejs_active_resources_total'),
    families,
  };
}

export async function sampleEtcd(
  clientUrls: readonly string[],
  ctl: (args: string[]) => Promise<string>,
  prefix: string,
): Promise<EtcdSample> {
  const atMs = Date.now();
  // Keys only, one per line with a blank line after each (etcdctl's simple format).
  const keys = (await ctl(['get', '', '--prefix', '--keys-only'])).split('\n').filter((l) => l !== '');
  const keysBy: Record<string, number> = {};
  for (const k of keys) {
    const seg = k.startsWith(`${prefix}/`) ? (k.slice(prefix.length + 1).split('/')[0] ?? '') : '(other)';
    keysBy[seg] = (keysBy[seg] ?? 0) + 1;
  }
  // "found N leases" and one line per lease.
  const leases = Number(/found (\d+) leases/.exec(await ctl(['lease', 'list']))?.[1] ?? 0);
  let watchers = 0;
  let watchStreams = 0;
  let dbBytes = 0;
  for (const u of clientUrls) {
    const res = await fetch(`${u}/metrics`, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`etcd metrics ${u}: HTTP ${res.status}`);
    for (const line of (await res.text()).split('\n')) {
      const [name, value] = line.split(' ');
      if (name === 'etcd_debugging_mvcc_watcher_total') watchers += Number(value);
      else if (name === 'etcd_debugging_mvcc_watch_stream_total') watchStreams += Number(value);
      else if (name === 'etcd_mvcc_db_total_size_in_bytes') dbBytes = Math.max(dbBytes, Number(value));
    }
  }
  return { atMs, keys: keys.length, keysBy, leases, watchers, watchStreams, dbMb: dbBytes / 2 ** 20 };
}

/** Least-squares slope of (tMs, y) in y per hour; NaN with fewer than 3 points or no time spread. */
export function slopePerHour(points: readonly { tMs: number; y: number }[]): number {
  const n = points.length;
  if (n < 3) return Number.NaN;
  const mt = points.reduce((a, p) => a + p.tMs, 0) / n;
  const my = points.reduce((a, p) => a + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.tMs - mt) * (p.y - my);
    den += (p.tMs - mt) ** 2;
  }
  return den === 0 ? Number.NaN : (num / den) * 3_600_000;
}

/** Metric names whose series count changed from `a` to `b`, largest change first: `name +N`. */
export function familyChanges(a: Map<string, number>, b: Map<string, number>, max = 8): string[] {
  const names = new Set([...a.keys(), ...b.keys()]);
  return [...names]
    .map((n) => ({ n, d: (b.get(n) ?? 0) - (a.get(n) ?? 0) }))
    .filter((x) => x.d !== 0)
    .sort((x, y) => Math.abs(y.d) - Math.abs(x.d))
    .slice(0, max)
    .map((x) => `${x.n} ${x.d > 0 ? '+' : ''}${x.d}`);
}

/** Mean of `y` over the points (NaN when there are none). */
export function mean(points: readonly { y: number }[]): number {
  return points.length === 0 ? Number.NaN : points.reduce((a, p) => a + p.y, 0) / points.length;
}
