// The Prometheus text of one registry, as /metrics answers it: rendered in slices of a few ms of
// work between event-loop turns (the control loops and the lease keepalive run in between), encoded
// to bytes as it goes (no scrape-sized string lives long enough to reach V8's old generation), and
// shared: scrapes that arrive while a render runs, or within REUSE_MS of its start, get the same
// bytes. The text is what registry.metrics() renders (families in registration order, lines joined
// by "\n", families by "\n\n", one "\n" at the end); families that render their own text
// (metrics/text.ts) are asked for it chunk by chunk, and prom-client's own families are read from
// the metric (what the registry would format) and written as bytes a few hundred lines a step.
import { setImmediate } from 'node:timers/promises';
import { type Metric, Registry } from 'prom-client';
import { type PromFamily, rendersOwnText, TextWriter, writeFamily } from './text.ts';

/** Work between two event-loop turns: well inside the control loops' lag budget (20 ms p99). */
const SLICE_MS = 3;
/**
 * A render serves the scrapes that come within this long of its start (an HA pair of Prometheus
 * servers scraping the same node). Shorter than any scrape interval worth having, so a lone
 * scraper always gets a fresh render.
 */
const REUSE_MS = 500;

export interface ExpositionOptions {
  sliceMs?: number;
  reuseMs?: number;
  /** Monotonic ms (default performance.now). */
  now?: () => number;
}

/** One render's text, lent to the answers that send it. */
export interface MetricsLease {
  readonly body: Buffer;
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
}

export class MetricsExposition {
  private readonly registry: Registry;
  private readonly sliceMs: number;
  private readonly reuseMs: number;
  private readonly now: () => number;
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
  private lastBytes = 64 * 1024;

  constructor(registry: Registry, opts: ExpositionOptions = {}) {
    this.registry = registry;
    this.sliceMs = opts.sliceMs ?? SLICE_MS;
    this.reuseMs = opts.reuseMs ?? REUSE_MS;
    this.now = opts.now ?? (() => performance.now());
  }

  /** The registry's text, UTF-8, to keep: the render in progress, one that began within reuseMs, or a new one. */
  async body(): Promise<Buffer> {
    const r = await this.rendered();
    r.kept = true;
    return r.body;
  }

  /**
   * The same text, lent: release() once the answer is sent, and its buffer serves a later render.
   * What /metrics uses.
   */
  async lease(): Promise<MetricsLease> {
    const r = await this.rendered();
    r.leases++;
    let released = false;
    return {
      body: r.body,
      release: () => {
        if (released) return;
        released = true;
        r.leases--;
        this.recycle(r);
      },
    };
  }

  private rendered(): Promise<Rendered> {
    if (this.last && this.now() - this.last.startedAtMs < this.reuseMs) return Promise.resolve(this.last);
    if (this.inFlight) return this.inFlight;
    const startedAtMs = this.now();
    this.renders++;
    const render = this.render(startedAtMs).then(
      (r) => {
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

  /** A render's buffer back to the spare once nobody sends it and it is no longer offered. */
  private recycle(r: Rendered): void {
    if (r.leases > 0 || r.offered || r.kept) return;
    if (!this.spare || this.spare.length < r.backing.length) this.spare = r.backing;
  }

  /** Offers a render to the scrapes within reuseMs of its start, and no longer. */
  private offer(r: Rendered): void {
    // Not offered: recycled when the last of its leases is released.
    if (this.reuseMs <= 0) return;
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
      if (last && this.now() - last.startedAtMs < this.reuseMs) {
        this.dropTimer = setTimeout(drop, this.reuseMs);
        this.dropTimer.unref();
      } else if (last) {
        this.last = undefined;
        last.offered = false;
        this.recycle(last);
      }
    };
    this.dropTimer = setTimeout(drop, this.reuseMs);
    this.dropTimer.unref();
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

  private async render(startedAtMs: number): Promise<Rendered> {
    // Sized for the last answer: growing a buffer of megabytes copies it.
    const spare = this.spare;
    this.spare = undefined;
    const w = new TextWriter(this.lastBytes + (this.lastBytes >> 3), spare);
    let sliceFrom = this.now();
    const turn = async () => {
      if (this.now() - sliceFrom < this.sliceMs) return;
      await setImmediate();
      sliceFrom = this.now();
    };
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
