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

export class MetricsExposition {
  private readonly registry: Registry;
  private readonly sliceMs: number;
  private readonly reuseMs: number;
  private readonly now: () => number;
  private inFlight: Promise<Buffer> | undefined;
  private last: { startedAtMs: number; body: Buffer } | undefined;
  private dropTimer: NodeJS.Timeout | undefined;
  /** Renders run so far (what concurrent scrapes shared is not counted twice). */
  renders = 0;
  private lastBytes = 64 * 1024;

  constructor(registry: Registry, opts: ExpositionOptions = {}) {
    this.registry = registry;
    this.sliceMs = opts.sliceMs ?? SLICE_MS;
    this.reuseMs = opts.reuseMs ?? REUSE_MS;
    this.now = opts.now ?? (() => performance.now());
  }

  /** The registry's text, UTF-8: the render in progress, one that began within reuseMs, or a new one. */
  body(): Promise<Buffer> {
    if (this.last && this.now() - this.last.startedAtMs < this.reuseMs)
      return Promise.resolve(this.last.body);
    if (this.inFlight) return this.inFlight;
    const startedAtMs = this.now();
    this.renders++;
    const render = this.render().then(
      (body) => {
        this.inFlight = undefined;
        this.keep(startedAtMs, body);
        return body;
      },
      (err: unknown) => {
        this.inFlight = undefined;
        throw err;
      },
    );
    this.inFlight = render;
    return render;
  }

  /** Keeps a render for reuse, and no longer: ~3 MB at 1 000 units is not held between scrapes. */
  private keep(startedAtMs: number, body: Buffer): void {
    if (this.reuseMs <= 0) return;
    this.last = { startedAtMs, body };
    clearTimeout(this.dropTimer);
    const drop = () => {
      if (this.last && this.now() - this.last.startedAtMs < this.reuseMs) {
        this.dropTimer = setTimeout(drop, this.reuseMs);
        this.dropTimer.unref();
      } else this.last = undefined;
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

  private async render(): Promise<Buffer> {
    // Sized for the last answer: growing a buffer of megabytes copies it.
    const w = new TextWriter(this.lastBytes + (this.lastBytes >> 3));
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
    return w.bytes();
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
