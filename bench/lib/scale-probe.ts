// What bench/scale.ts reads about a running process: CPU ticks and resident memory from /proc (the
// kernel's figures, not the process's own), and the controller's Prometheus text from /metrics,
// parsed into samples that can be summed by name and label and subtracted between two scrapes.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { gunzipSync } from 'node:zlib';

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of `pid` in seconds (fields 14 and 15 of /proc/PID/stat). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** VmRSS (or another field of /proc/PID/status, e.g. RssAnon) of `pid` in MiB. */
export function rssMb(pid: number, field = 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no ${field} in /proc/${pid}/status (did it exit?)`);
  return Number(m[1]) / 1024;
}

/** Whether the process has a shared library whose file name contains `name` mapped (e.g. a preloaded malloc). */
export function mapsLibrary(pid: number, name: string): boolean {
  return readFileSync(`/proc/${pid}/maps`, 'utf8').includes(name);
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition (no timestamps, which prom-client does not emit). */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const brace = line.indexOf('{');
    const space = line.lastIndexOf(' ');
    const name = brace >= 0 && brace < space ? line.slice(0, brace) : line.slice(0, space);
    const labels: Record<string, string> = {};
    if (brace >= 0 && brace < space) {
      const body = line.slice(brace + 1, line.lastIndexOf('}'));
      for (const m of body.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]!] = m[2]!;
    }
    out.push({ name, labels, value: Number(line.slice(space + 1)) });
  }
  return out;
}

/** Sum of every sample called `name` whose labels include `where`. */
export function sum(samples: Sample[], name: string, where: Record<string, string> = {}): number {
  let total = 0;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (Object.entries(where).every(([k, v]) => s.labels[k] === v)) total += s.value;
  }
  return total;
}

/**
 * The p-th percentile of a histogram's observations between two scrapes, summed over all its
 * label sets: the upper bound of the first bucket holding it (Infinity when it is past the last).
 */
export function histogramPercentile(before: Sample[], after: Sample[], name: string, p: number): number {
  const byLe = (samples: Sample[]) => {
    const m = new Map<number, number>();
    for (const s of samples) {
      if (s.name !== `${name}_bucket`) continue;
      const le = s.labels['le'] === '+Inf' ? Number.POSITIVE_INFINITY : Number(s.labels['le']);
      m.set(le, (m.get(le) ?? 0) + s.value);
    }
    return m;
  };
  const a = byLe(after);
  const b = byLe(before);
  const les = [...a.keys()].sort((x, y) => x - y);
  const total = (a.get(Number.POSITIVE_INFINITY) ?? 0) - (b.get(Number.POSITIVE_INFINITY) ?? 0);
  if (total <= 0) return Number.NaN;
  for (const le of les) {
    if ((a.get(le) ?? 0) - (b.get(le) ?? 0) >= (p / 100) * total) return le;
  }
  return Number.POSITIVE_INFINITY;
}

/** Share (%) of a histogram's observations between two scrapes that lie above `bound`. */
export function histogramShareAbove(before: Sample[], after: Sample[], name: string, bound: number): number {
  const count = (samples: Sample[], le: string) => sum(samples, `${name}_bucket`, { le });
  const total = count(after, '+Inf') - count(before, '+Inf');
  if (total <= 0) return Number.NaN;
  return (100 * (total - (count(after, String(bound)) - count(before, String(bound))))) / total;
}

/** The event-loop delay histogram every node exports (src/metrics/event-loop-delay.ts). */
export const LOOP_DELAY = 'coolctl_event_loop_delay_seconds';

export interface Scrape {
  samples: Sample[];
  /** Wall time the scrape took, ms, and the size of the answer. */
  ms: number;
  /**
   * Wall time to the answer's headers, ms: the request's wait for the node's loop and the answer's
   * start. What comes after (ms − firstByteMs) is the body's transfer.
   */
  firstByteMs: number;
  bytes: number;
  /** Bytes on the wire: the answer as sent (gzipped when the node compressed it). */
  wireBytes: number;
  /** How old the answer's render was when it was sent (the node's x-coolctl-metrics-age-ms), ms. */
  ageMs: number;
}

export async function scrape(
  apiUrl: string,
  timeoutMs = 5000,
  headers: Record<string, string> = {},
): Promise<Scrape> {
  const url = new URL('/metrics', apiUrl);
  const get = url.protocol === 'https:' ? httpsGet : httpGet;
  const t0 = performance.now();
  // Node's own HTTP client, bytes only: fetch's body stream and its UTF-8 decoding of the ~2.7 MB
  // answer cost the bench ~10 ms a scrape on a quiet core (curl reads it in ~3 ms), which is not
  // the node's time. The clock stops at the last byte; decoding and parsing come after. It asks for
  // gzip as Prometheus does (its scrapes always send Accept-Encoding: gzip).
  let firstByteMs = Number.NaN;
  const { status, chunks, ageHeader, encoding } = await new Promise<{
    status: number;
    chunks: Buffer[];
    ageHeader: string | undefined;
    encoding: string | undefined;
  }>((resolve, reject) => {
    const asked = { 'accept-encoding': 'gzip', ...headers };
    const req = get(url, { headers: asked, signal: AbortSignal.timeout(timeoutMs) }, (res) => {
      firstByteMs = performance.now() - t0;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          chunks,
          ageHeader: res.headers['x-coolctl-metrics-age-ms'] as string | undefined,
          encoding: res.headers['content-encoding'],
        }),
      );
    });
    req.on('error', reject);
  });
  const ms = performance.now() - t0;
  if (status !== 200) throw new Error(`${apiUrl}/metrics answered ${status}`);
  const wire = Buffer.concat(chunks);
  const body = encoding === 'gzip' ? gunzipSync(wire) : wire;
  const ageMs = ageHeader === undefined ? Number.NaN : Number(ageHeader);
  return {
    samples: parseMetrics(body.toString('utf8')),
    ms,
    firstByteMs,
    bytes: body.length,
    wireBytes: wire.length,
    ageMs,
  };
}
