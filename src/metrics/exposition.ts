// The Prometheus text of one registry, as /metrics answers it: rendered in slices of a few ms of
// work between event-loop turns (the control loops and the lease keepalive run in between), encoded
// to bytes as it goes (no scrape-sized string lives long enough to reach V8's old generation), and
// shared: scrapes that arrive while a render runs, or within REUSE_MS of its start, get the same
// bytes. The text is what registry.metrics() renders (families in registration order, lines joined
// by "\n", families by "\n\n", one "\n" at the end); families that render their own text
// (metrics/text.ts) are asked for it chunk by chunk, and prom-client's own families are read from
// the metric (what the registry would format) and written as bytes a few hundred lines a step.
// A scraper that comes at a steady interval finds its answer ready: the next render starts half a
// second before the scrape is due (planAhead), so the scrape waits for the socket, not for the
// render; such a render is served at most aheadMaxAgeMs after it began (one control period). Two
// buffers then take turns: the one being sent and the one the next render writes.
// A scraper that accepts gzip (Prometheus always does) gets the render compressed once, off the
// event loop (zlib's thread pool, fastest level: ~10× smaller, a few ms of CPU at 1 000 units), and
// a render made ahead for such a scraper is compressed as soon as it is done: the scrape then waits
// neither for the render nor for a 2.7 MB answer to drain through the socket turn by turn.

import { promisify } from 'node:util';
import { gzip as gzipCallback, constants as zlibConstants } from 'node:zlib';
import { type Metric, Registry } from 'prom-client';
import { sliceTurns } from '../util/async.ts';
import { type PromFamily, rendersOwnText, TextWriter, writeFamily } from './text.ts';

/** Work between two event-loop turns: well inside the control loops' lag budget (20 ms p99). */
const SLICE_MS = 3;
/**
 * A render serves the scrapes that come within this long of its start (an HA pair of Prometheus
 * servers scraping the same node). Shorter than any scrape interval worth having, so a lone
 * scraper always gets a fresh render.
 */
const REUSE_MS = 500;
/**
 * A render made ahead of a scrape is served to scrapes that come within this long of its start:
 * one control period, the age the process values have anyway (each is one period's figure).
 */
const AHEAD_MAX_AGE_MS = 1000;
/** Scrape intervals kept to judge whether the scraper is steady (and how often it comes). */
const CADENCE_SAMPLES = 3;
/** Intervals within this share of their median are steady (Prometheus jitters by milliseconds). */
const CADENCE_TOLERANCE = 0.1;
/**
 * How far ahead of a due scrape a render starts, at most (and at most half the interval). A render
 * yields between slices, so its wall time swings with the node's load — 20 to 250 ms at 1 000 units,
 * GC included — and a lead sized from the last renders was too short one time in twenty; half a
 * period always covers it, and keeps the answer within a period of the scrape.
 */
const AHEAD_LEAD_MS = 500;

/** Timers the exposition schedules its renders ahead with (real ones unless a test gives its own). */
export interface ExpositionTimers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const realTimers: ExpositionTimers = {
  set: (fn, ms) => setTimeout(fn, ms).unref(),
  clear: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface ExpositionOptions {
  sliceMs?: number;
  reuseMs?: number;
  aheadMaxAgeMs?: number;
  /** Monotonic ms (default performance.now). */
  now?: () => number;
  timers?: ExpositionTimers;
}

const gzipAsync = promisify(gzipCallback);

/** One render's text, lent to the answers that send it. */
export interface MetricsLease {
  readonly body: Buffer;
  /** `gzip` when body is the render compressed (asked for, and the compression worked). */
  readonly encoding: 'identity' | 'gzip';
  /** How long before this lease the render began: what the answer's values may lag the scrape by. */
  readonly ageMs: number;
  /** The answer is sent (or abandoned): the buffer may be written again once every lease is released. */
  release(): void;
}

interface Rendered {
  startedAtMs: number;
  body: Buffer;
  /** The buffer body is a view of. */
  backing: Buffer;
  leases: number;
  /** Still offered to scrapes within reuseMs of its start. */
  offered: boolean;
  /** Lent for good (body()): never written again. */
  kept: boolean;
  /** Made ahead of a due scrape (served up to aheadMaxAgeMs after its start, not reuseMs). */
  ahead: boolean;
  servedAhead: boolean;
  /** The body gzipped, once asked for (the render is leased while zlib reads it). */
  gzip?: Promise<Buffer>;
}

export class MetricsExposition {
  private readonly registry: Registry;
  private readonly sliceMs: number;
  private readonly reuseMs: number;
  private readonly now: () => number;
  private readonly aheadMaxAgeMs: number;
  private readonly timers: ExpositionTimers;
  /** When the scrapes that asked for a render came (monotonic ms), newest last. */
  private readonly arrivals: number[] = [];
  private aheadTimer: unknown;
  private inFlight: Promise<Rendered> | undefined;
  private last: Rendered | undefined;
  private dropTimer: NodeJS.Timeout | undefined;
  /**
   * A render's buffer, handed back once its answers were sent, for the next render to write into:
   * a fresh ~3 MB buffer a scrape (outside the V8 heap, but counted towards its limits and freed
   * only by a mark-compact once its owner was promoted) made the node collect its old generation
   * about twice as often while scraped every second. One is kept (~3 MB at 1 000 units).
   */
  private spare: Buffer | undefined;
  /** Renders run so far (what concurrent scrapes shared is not counted twice). */
  renders = 0;
  /** Of them, made ahead of a due scrape; and of those, served to one. */
  rendersAhead = 0;
  aheadServed = 0;
  /** Renders compressed (one per render, however many gzip answers send it); of them, failed. */
  compressions = 0;
  compressionFailures = 0;
  /** The last scrape that moved the plan accepted gzip: compress the next render ahead as soon as it is done. */
  private gzipAhead = false;
  private lastBytes = 64 * 1024;

  constructor(registry: Registry, opts: ExpositionOptions = {}) {
    this.registry = registry;
    this.sliceMs = opts.sliceMs ?? SLICE_MS;
    this.reuseMs = opts.reuseMs ?? REUSE_MS;
    this.now = opts.now ?? (() => performance.now());
    this.aheadMaxAgeMs = opts.aheadMaxAgeMs ?? AHEAD_MAX_AGE_MS;
    this.timers = opts.timers ?? realTimers;
  }

  /** Resolves once no render is in flight (whatever its outcome). */
  async idle(): Promise<void> {
    while (this.inFlight) await this.inFlight.catch(() => undefined);
  }

  /** Stops rendering ahead (a node shutting down); scrapes are still answered. */
  close(): void {
    if (this.aheadTimer !== undefined) this.timers.clear(this.aheadTimer);
    this.aheadTimer = undefined;
  }

  /** The registry's text, UTF-8, to keep: the render in progress, one that began within reuseMs, or a new one. */
  async body(): Promise<Buffer> {
    const r = await this.scraped();
    r.kept = true;
    return r.body;
  }

  /**
   * The same text, lent: release() once the answer is sent, and its buffer serves a later render.
   * What /metrics uses.
   */
  async lease(opts: { gzip?: boolean } = {}): Promise<MetricsLease> {
    const r = await this.scraped(opts.gzip === true);
    // Leased before anything is awaited: the render stays as it is for the answer, gzipped or not.
    r.leases++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      r.leases--;
      this.recycle(r);
    };
    if (opts.gzip) {
      const body = await this.compressed(r).catch(() => undefined);
      if (body) {
        // The compressed bytes are the answer's own: the render goes back now.
        release();
        return { body, encoding: 'gzip', ageMs: Math.max(0, this.now() - r.startedAtMs), release() {} };
      }
    }
    return { body: r.body, encoding: 'identity', ageMs: Math.max(0, this.now() - r.startedAtMs), release };
  }

  /**
   * The render gzipped, once: zlib reads the render's buffer in its thread pool, so the render is
   * leased (not written again) until it is done. A failure is counted and not kept (the answer goes
   * uncompressed; the next gzip scrape tries again).
   */
  private compressed(r: Rendered): Promise<Buffer> {
    if (!r.gzip) {
      this.compressions++;
      r.leases++;
      const done = () => {
        r.leases--;
        this.recycle(r);
      };
      r.gzip = gzipAsync(r.body, { level: zlibConstants.Z_BEST_SPEED }).then(
        (z) => {
          done();
          return z;
        },
        (err: unknown) => {
          done();
          this.compressionFailures++;
          r.gzip = undefined;
          throw err;
        },
      );
    }
    return r.gzip;
  }

  /** A scrape's render: one still offered, the one in flight, or a new one; then the next is planned. */
  private async scraped(gzip = false): Promise<Rendered> {
    const atMs = this.now();
    // The second of an HA pair (within reuseMs of the first) neither moves the plan nor sets the cadence.
    const lastArrival = this.arrivals.at(-1);
    const anew = lastArrival === undefined || atMs - lastArrival >= this.reuseMs;
    if (anew && this.aheadTimer !== undefined) {
      // Earlier than planned: this scrape's render is the fresh one, and the plan starts again.
      this.timers.clear(this.aheadTimer);
      this.aheadTimer = undefined;
    }
    const r = await (this.offered(atMs) ?? this.inFlight ?? this.rendered(atMs, false));
    if (r.ahead && !r.servedAhead) {
      r.servedAhead = true;
      this.aheadServed++;
    }
    if (anew) {
      this.gzipAhead = gzip;
      this.planAhead(atMs);
    }
    return r;
  }

  /** The render a scrape at `atMs` may be answered with, if one is offered. */
  private offered(atMs: number): Rendered | undefined {
    const last = this.last;
    if (!last) return undefined;
    return atMs - last.startedAtMs < this.offeredForMs(last) ? last : undefined;
  }

  /**
   * Records a scrape's arrival; when the last CADENCE_SAMPLES intervals agree, starts the next render
   * so that it is done a little before the next scrape is due.
   */
  private planAhead(atMs: number): void {
    const arrivals = this.arrivals;
    arrivals.push(atMs);
    if (arrivals.length > CADENCE_SAMPLES + 1) arrivals.shift();
    if (arrivals.length < CADENCE_SAMPLES + 1) return;
    const intervals = arrivals.slice(1).map((t, i) => t - arrivals[i]!);
    const median = [...intervals].sort((a, b) => a - b)[intervals.length >> 1]!;
    if (!intervals.every((d) => Math.abs(d - median) <= median * CADENCE_TOLERANCE)) return;
    const leadMs = Math.min(AHEAD_LEAD_MS, this.aheadMaxAgeMs / 2, median / 2);
    const dueInMs = atMs + median - leadMs - this.now();
    if (dueInMs <= 0) return;
    this.aheadTimer = this.timers.set(() => {
      this.aheadTimer = undefined;
      if (this.inFlight) return;
      this.rendered(this.now(), true).catch(() => {
        // The scrape that comes renders again and answers with the error.
      });
    }, dueInMs);
  }

  private rendered(startedAtMs: number, ahead: boolean): Promise<Rendered> {
    this.renders++;
    if (ahead) this.rendersAhead++;
    const render = this.render(startedAtMs, ahead).then(
      (r) => {
        this.inFlight = undefined;
        this.offer(r);
        // Ready before the scrape it was made for, in the encoding that scraper asked for last.
        if (ahead && this.gzipAhead) this.compressed(r).catch(() => {});
        return r;
      },
      (err: unknown) => {
        this.inFlight = undefined;
        throw err;
      },
    );
    this.inFlight = render;
    return render;
  }

  /** A render's buffer back to the spare once nobody sends it and it is no longer offered. */
  private recycle(r: Rendered): void {
    if (r.leases > 0 || r.offered || r.kept) return;
    if (!this.spare || this.spare.length < r.backing.length) this.spare = r.backing;
  }

  /** Offers a render to the scrapes within reuseMs (aheadMaxAgeMs if made ahead) of its start, and no longer. */
  private offer(r: Rendered): void {
    // Not offered: recycled when the last of its leases is released.
    if (this.offeredForMs(r) <= 0) return;
    const before = this.last;
    r.offered = true;
    this.last = r;
    if (before && before !== r) {
      before.offered = false;
      this.recycle(before);
    }
    clearTimeout(this.dropTimer);
    const drop = () => {
      const last = this.last;
      if (last && this.now() - last.startedAtMs < this.offeredForMs(last)) {
        this.dropTimer = setTimeout(drop, this.offeredForMs(last));
        this.dropTimer.unref();
      } else if (last) {
        this.last = undefined;
        last.offered = false;
        this.recycle(last);
      }
    };
    this.dropTimer = setTimeout(drop, this.offeredForMs(r));
    this.dropTimer.unref();
  }

  /** How long after its start a render is offered to scrapes. */
  private offeredForMs(r: Rendered): number {
    return r.ahead ? this.aheadMaxAgeMs : this.reuseMs;
  }

  /**
   * Whether the registry renders as writeFamily writes: the Prometheus format (not OpenMetrics, with
   * its exemplars and counter names) and no default labels (which the daemon never sets).
   */
  private plain(): boolean {
    const defaults = (this.registry as unknown as { _defaultLabels?: object })._defaultLabels;
    return (
      this.registry.contentType === Registry.PROMETHEUS_CONTENT_TYPE &&
      (defaults === undefined || Object.keys(defaults).length === 0)
    );
  }

  private async render(startedAtMs: number, ahead: boolean): Promise<Rendered> {
    // Sized for the last answer: growing a buffer of megabytes copies it.
    const spare = this.spare;
    this.spare = undefined;
    const w = new TextWriter(this.lastBytes + (this.lastBytes >> 3), spare);
    const turn = sliceTurns(this.sliceMs, this.now);
    let first = true;
    for (const { name } of this.registry.getMetricsAsArray()) {
      // A reload may have replaced a family while we yielded: render what is registered now.
      const metric = this.registry.getSingleMetric(name);
      if (!metric) continue;
      if (!first) w.ascii('\n\n');
      first = false;
      if (rendersOwnText(metric)) {
        if (metric.writeChunks) for (const _ of metric.writeChunks(w)) await turn();
        else
          for (const chunk of metric.textChunks()) {
            w.text(chunk);
            await turn();
          }
      } else if (this.plain()) {
        for (const _ of writeFamily(w, await familyOf(metric))) await turn();
        await turn();
      } else {
        w.text(await this.registry.getSingleMetricAsString(name));
        await turn();
      }
    }
    w.ascii('\n');
    this.lastBytes = w.length;
    return {
      startedAtMs,
      body: w.bytes(),
      backing: w.buffer(),
      leases: 0,
      offered: false,
      kept: false,
      ahead,
      servedAhead: false,
    };
  }
}

/** What the registry formats for a metric: getForPromString() where it has one (histograms), else get(). */
function familyOf(metric: Metric): Promise<PromFamily> {
  const m = metric as unknown as {
    getForPromString?: () => Promise<PromFamily>;
    get: () => Promise<PromFamily>;
  };
  return typeof m.getForPromString === 'function' ? m.getForPromString() : m.get();
}
