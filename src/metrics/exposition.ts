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
// render; such a render is served at most aheadMaxAgeMs after it began (one control period).
// A scraper that accepts gzip (Prometheus always does) gets a render written straight through a
// streaming gzip (zlib's thread pool, fastest level: ~10× smaller), GZIP_CHUNK_BYTES at a time: the
// render waits for zlib to take each chunk before writing it again (a turn of the event loop), and
// keeps only the compressed bytes, so the uncompressed text (2.7 MB at 1 000 units) never sits in
// memory whole. A render begun for a plain scrape is kept as text and compressed once if a gzip
// scrape shares it; a plain scrape (curl, a human) that shares a gzip render gets it gunzipped, also
// in the thread pool. A compression that fails is counted and the render's scrapes get the text
// (rendered anew if the failure cut a gzip render short). A render made ahead is made in the
// encoding the scraper asked for last, so a steady gzip scraper waits neither for the render nor
// for a 2.7 MB answer to drain through the socket turn by turn.

import type { Transform } from 'node:stream';
import { finished } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGzip, gunzip as gunzipCallback, constants as zlibConstants } from 'node:zlib';
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

/**
 * The chunk a gzip render writes into before zlib takes it. Each hand-over is a thread-pool trip
 * and a turn of the event loop, which costs CPU of its own (~50–70 µs): at 128 KiB a render of
 * 1 000 units makes ~25 of them and compresses within a ms of CPU of one piece, at 64 KiB twice as
 * many cost ~3 ms more. Two chunks are out at most (one written, one in zlib), next to zlib's own
 * ~400 KB of state, while a render runs; none is kept after it.
 */
export const GZIP_CHUNK_BYTES = 128 * 1024;

export interface ExpositionOptions {
  sliceMs?: number;
  reuseMs?: number;
  aheadMaxAgeMs?: number;
  /** Monotonic ms (default performance.now). */
  now?: () => number;
  timers?: ExpositionTimers;
  /** A streaming gzip to compress a render through (default zlib's, at its fastest level). */
  gzipStream?: () => Transform;
}

const gunzipAsync = promisify(gunzipCallback);

const fastestGzip = (): Transform => createGzip({ level: zlibConstants.Z_BEST_SPEED });

/** One scrape's answer: its own bytes (nothing to hand back once sent). */
export interface MetricsAnswer {
  readonly body: Buffer;
  /** `gzip` when body is the text compressed (asked for, and the compression worked). */
  readonly encoding: 'identity' | 'gzip';
  /** How long before this answer the render began: what the answer's values may lag the scrape by. */
  readonly ageMs: number;
}

/** One render, in the encoding it was made in and, once a scrape sharing it asked, the other. */
interface Rendered {
  startedAtMs: number;
  /** Made ahead of a due scrape (served up to aheadMaxAgeMs after its start, not reuseMs). */
  ahead: boolean;
  servedAhead: boolean;
  /** The text: as rendered, or gunzipped from `gzip`. */
  text?: Promise<Buffer>;
  /** The text gzipped: as rendered, or compressed from `text` (tried once; rejected if it failed). */
  gzip?: Promise<Buffer>;
  /** The buffers text and gzip resolved to (heldBytes). */
  held: Buffer[];
}

export class MetricsExposition {
  private readonly registry: Registry;
  private readonly sliceMs: number;
  private readonly reuseMs: number;
  private readonly now: () => number;
  private readonly aheadMaxAgeMs: number;
  private readonly timers: ExpositionTimers;
  private readonly gzipStream: () => Transform;
  /** When the scrapes that asked for a render came (monotonic ms), newest last. */
  private readonly arrivals: number[] = [];
  private aheadTimer: unknown;
  private inFlight: Promise<Rendered> | undefined;
  private last: Rendered | undefined;
  private dropTimer: NodeJS.Timeout | undefined;
  /** Renders run so far (what concurrent scrapes shared is not counted twice). */
  renders = 0;
  /** Of them, made ahead of a due scrape; and of those, served to one. */
  rendersAhead = 0;
  aheadServed = 0;
  /** Renders compressed (one per render, however many gzip answers send it); of them, failed. */
  compressions = 0;
  compressionFailures = 0;
  /** The last scrape that moved the plan accepted gzip: make the next render ahead gzipped. */
  private gzipAhead = false;
  /** The last render's text, in bytes: a plain render's buffer is sized for it (growing one copies it). */
  private lastBytes = 64 * 1024;

  constructor(registry: Registry, opts: ExpositionOptions = {}) {
    this.registry = registry;
    this.sliceMs = opts.sliceMs ?? SLICE_MS;
    this.reuseMs = opts.reuseMs ?? REUSE_MS;
    this.now = opts.now ?? (() => performance.now());
    this.aheadMaxAgeMs = opts.aheadMaxAgeMs ?? AHEAD_MAX_AGE_MS;
    this.timers = opts.timers ?? realTimers;
    this.gzipStream = opts.gzipStream ?? fastestGzip;
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

  /**
   * Bytes of answers kept between scrapes: those of the render still offered (its gzip alone, for
   * a gzip scraper), none once it is no longer offered. A render in flight is not counted.
   */
  heldBytes(): number {
    let n = 0;
    for (const b of this.last?.held ?? []) n += b.buffer.byteLength;
    return n;
  }

  /** The registry's text, UTF-8: the render in progress, one that began within reuseMs, or a new one. */
  async body(): Promise<Buffer> {
    return this.textOf(await this.scraped(false));
  }

  /** A scrape's answer, gzipped when `gzip` unless the compression failed. What /metrics uses. */
  async answer(opts: { gzip?: boolean } = {}): Promise<MetricsAnswer> {
    const r = await this.scraped(opts.gzip === true);
    if (opts.gzip) {
      const body = await this.gzipOf(r).catch(() => undefined);
      if (body) return { body, encoding: 'gzip', ageMs: Math.max(0, this.now() - r.startedAtMs) };
    }
    const body = await this.textOf(r);
    return { body, encoding: 'identity', ageMs: Math.max(0, this.now() - r.startedAtMs) };
  }

  /** A render's text: a gzip render's is gunzipped once, in zlib's thread pool. */
  private textOf(r: Rendered): Promise<Buffer> {
    r.text ??= held(
      r,
      r.gzip!.then((z) => gunzipAsync(z)),
    );
    return r.text;
  }

  /** A plain render's text gzipped, once, in zlib's thread pool; a failure is counted and kept. */
  private gzipOf(r: Rendered): Promise<Buffer> {
    if (!r.gzip) {
      this.compressions++;
      r.gzip = held(
        r,
        r.text!.then(async (text) => {
          const z = new Gzip(this.gzipStream);
          try {
            await z.write(text);
            return await z.end();
          } catch (err) {
            this.compressionFailures++;
            throw err;
          } finally {
            z.destroy();
          }
        }),
      );
    }
    return r.gzip;
  }

  /** A scrape's render: one still offered, the one in flight, or a new one; then the next is planned. */
  private async scraped(gzip: boolean): Promise<Rendered> {
    const atMs = this.now();
    // The second of an HA pair (within reuseMs of the first) neither moves the plan nor sets the cadence.
    const lastArrival = this.arrivals.at(-1);
    const anew = lastArrival === undefined || atMs - lastArrival >= this.reuseMs;
    if (anew && this.aheadTimer !== undefined) {
      // Earlier than planned: this scrape's render is the fresh one, and the plan starts again.
      this.timers.clear(this.aheadTimer);
      this.aheadTimer = undefined;
    }
    const r = await (this.offered(atMs) ?? this.inFlight ?? this.rendered(atMs, false, gzip));
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
      this.rendered(this.now(), true, this.gzipAhead).catch(() => {
        // The scrape that comes renders again and answers with the error.
      });
    }, dueInMs);
  }

  private rendered(startedAtMs: number, ahead: boolean, gzip: boolean): Promise<Rendered> {
    this.renders++;
    if (ahead) this.rendersAhead++;
    const r: Rendered = { startedAtMs, ahead, servedAhead: false, held: [] };
    const render = (gzip ? this.renderGzip(r) : this.renderText(r)).then(
      () => {
        this.inFlight = undefined;
        this.offer(r);
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

  /** Offers a render to the scrapes within reuseMs (aheadMaxAgeMs if made ahead) of its start, and no longer. */
  private offer(r: Rendered): void {
    if (this.offeredForMs(r) <= 0) return;
    this.last = r;
    clearTimeout(this.dropTimer);
    // Dropped once too old, so that its bytes are not kept until the next scrape.
    const drop = () => {
      const last = this.last;
      if (last && this.now() - last.startedAtMs < this.offeredForMs(last)) {
        this.dropTimer = setTimeout(drop, this.offeredForMs(last));
        this.dropTimer.unref();
      } else this.last = undefined;
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

  /** The text into one buffer, sized for the last render. */
  private async renderText(r: Rendered): Promise<void> {
    const w = new TextWriter(this.lastBytes + (this.lastBytes >> 3));
    await this.write(w);
    r.text = held(r, Promise.resolve(w.bytes()));
  }

  /**
   * The text through a streaming gzip, a chunk at a time, keeping only the compressed bytes. If the
   * compression fails the render is made again as text (the chunks already compressed are gone).
   */
  private async renderGzip(r: Rendered): Promise<void> {
    this.compressions++;
    let z: Gzip | undefined;
    try {
      z = new Gzip(this.gzipStream);
      const w = new TextWriter(GZIP_CHUNK_BYTES, z.write);
      await this.write(w);
      await w.finish();
      r.gzip = held(r, Promise.resolve(await z.end()));
      return;
    } catch (err) {
      // A render that threw while zlib was well rejects its scrapes, as a plain one would.
      if (z && !z.failed) throw err;
      this.compressionFailures++;
      r.gzip = held(r, Promise.reject(err));
    } finally {
      z?.destroy();
    }
    await this.renderText(r);
  }

  /** The registry's text into `w`, a step at a time, the loop turning between slices of work. */
  private async write(w: TextWriter): Promise<void> {
    const turn = sliceTurns(this.sliceMs, this.now);
    // After each step: the sink (gzip) is done with the chunks filled so far, before more are.
    const step = async () => {
      await w.flushed();
      await turn();
    };
    let first = true;
    for (const { name } of this.registry.getMetricsAsArray()) {
      // A reload may have replaced a family while we yielded: render what is registered now.
      const metric = this.registry.getSingleMetric(name);
      if (!metric) continue;
      if (!first) w.ascii('\n\n');
      first = false;
      if (rendersOwnText(metric)) {
        if (metric.writeChunks) for (const _ of metric.writeChunks(w)) await step();
        else
          for (const chunk of metric.textChunks()) {
            w.text(chunk);
            await step();
          }
      } else if (this.plain()) {
        for (const _ of writeFamily(w, await familyOf(metric))) await step();
        await step();
      } else {
        w.text(await this.registry.getSingleMetricAsString(name));
        await step();
      }
    }
    w.ascii('\n');
    this.lastBytes = w.written;
  }
}

/** Keeps what `p` resolves to on `r`'s account (heldBytes); whoever awaits `p` sees a rejection. */
function held(r: Rendered, p: Promise<Buffer>): Promise<Buffer> {
  p.then(
    (b) => r.held.push(b),
    () => {},
  );
  return p;
}

/**
 * A streaming gzip that chunks are written into and the compressed bytes collected from; `failed`
 * once zlib reported an error. destroy() it on every way out (zlib's state is native memory).
 */
class Gzip {
  failed = false;
  private readonly z: Transform;
  private readonly out: Buffer[] = [];
  private readonly done: Promise<void>;

  constructor(make: () => Transform) {
    this.z = make();
    this.z.on('error', () => {
      this.failed = true;
    });
    this.z.on('data', (c: Buffer) => this.out.push(c));
    this.done = finished(this.z);
    this.done.catch(() => {}); // end() reports it
  }

  /** Resolves once zlib has taken `chunk` (it may then be written again). */
  readonly write = (chunk: Buffer): Promise<void> =>
    new Promise((resolve, reject) =>
      this.z.write(chunk, (err) => {
        if (!err) return resolve();
        this.failed = true;
        reject(err);
      }),
    );

  /** The compressed bytes, once zlib has flushed them. */
  async end(): Promise<Buffer> {
    this.z.end();
    await this.done;
    return Buffer.concat(this.out);
  }

  destroy(): void {
    this.z.destroy();
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
