// Per-device metrics every adapter reports through, whatever its protocol: transactions, errors by
// kind, latency, and link state, on a prom-client Registry the daemon serves at /metrics.
// One DeviceMetrics per registry; adapters only call `observe()` and `link()`.
import {
  Counter,
  Gauge,
  type Histogram,
  type MetricObject,
  type MetricObjectWithValues,
  type MetricValueWithName,
  type Registry,
} from 'prom-client';
import type { LinkState } from './device-io.ts';

export type DeviceOp = 'connect' | 'read' | 'write' | 'verify';
const DEVICE_OPS: readonly DeviceOp[] = ['connect', 'read', 'write', 'verify'];

const LINK_STATES: readonly LinkState[] = ['up', 'degraded', 'down'];

// Few buckets, and the histogram is by protocol and operation, not per device: at a thousand devices
// per-device buckets made /metrics 4.7–7 MB and each scrape stall the loop and bloat the heap.
const LATENCY_BUCKETS_S: readonly number[] = [0.0025, 0.01, 0.05, 0.25, 1, 5];

/**
 * One device's counts for one operation, kept in plain numbers: prom-client's labelled `inc()` and
 * `observe()` validate and hash their label object on every call (cached children too), which at
 * thousands of requests a second was a tenth of the adapter's CPU. The registry reads them at scrape.
 */
class OpSeries {
  readonly labels: { device: string; protocol: string; op: DeviceOp };
  ok = 0;
  error = 0;
  /** Non-cumulative: counts[i] observations in (bucket[i-1], bucket[i]]; the last slot is +Inf. */
  readonly counts = new Float64Array(LATENCY_BUCKETS_S.length + 1);
  sum = 0;
  count = 0;

  constructor(device: string, protocol: string, op: DeviceOp) {
    this.labels = { device, protocol, op };
  }

  observe(seconds: number, failed: boolean): void {
    if (failed) this.error++;
    else this.ok++;
    let i = 0;
    while (i < LATENCY_BUCKETS_S.length && seconds > LATENCY_BUCKETS_S[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
    this.count++;
  }
}

/** What an adapter holds for its device: observe() without any lookup by label. */
export class DeviceMeter {
  private readonly owner: DeviceMetrics;
  private readonly device: string;
  private readonly protocol: string;
  private readonly byOp: Record<DeviceOp, OpSeries>;

  constructor(owner: DeviceMetrics, device: string, protocol: string, byOp: Record<DeviceOp, OpSeries>) {
    this.owner = owner;
    this.device = device;
    this.protocol = protocol;
    this.byOp = byOp;
  }

  /** One finished request; `errorCode` is the DeviceError code (COOLCTL_E_DEVICE_…) when it failed. */
  observe(op: DeviceOp, seconds: number, errorCode?: string): void {
    this.byOp[op].observe(seconds, errorCode !== undefined);
    if (errorCode) this.owner.countError(this.device, this.protocol, errorCode);
  }

  link(state: LinkState): void {
    this.owner.link(this.device, this.protocol, state);
  }
}

/**
 * A metric family computed from the devices' OpSeries when the registry reads it (prom-client
 * registries take such custom collectors beside their own types, and only call `get()`).
 */
abstract class ScrapeTimeMetric {
  abstract readonly name: string;
  abstract readonly help: string;
  abstract readonly type: 'counter' | 'histogram';
  readonly aggregator = 'sum';
  protected readonly series: OpSeries[];

  constructor(series: OpSeries[]) {
    this.series = series;
  }

  protected abstract values(): MetricValueWithName<string>[];
  abstract reset(): void;

  async get(): Promise<MetricObjectWithValues<MetricValueWithName<string>>> {
    return {
      name: this.name,
      help: this.help,
      type: this.type as unknown as MetricObject['type'],
      aggregator: this.aggregator,
      collect: () => undefined,
      values: this.values(),
    };
  }
}

/**
 * coolctl_device_request_seconds as prom-client would render a Histogram labelled by protocol and
 * operation, summed over the devices' OpSeries. Not per device: 1 000 units × 4 operations × 8
 * lines was most of a 4.7 MB /metrics whose every scrape allocated ~130 MB; which unit is slow or
 * failing shows in the per-device counters.
 */
class LatencyHistogram extends ScrapeTimeMetric {
  readonly name = 'coolctl_device_request_seconds';
  readonly help = 'Device request latency, including retries, by protocol and operation';
  readonly type = 'histogram';

  protected values(): MetricValueWithName<string>[] {
    const totals = new Map<
      string,
      { labels: { protocol: string; op: DeviceOp }; counts: Float64Array; sum: number; count: number }
    >();
    for (const s of this.series) {
      if (s.count === 0) continue; // an operation no device did has no series yet
      const key = `${s.labels.protocol} ${s.labels.op}`;
      let t = totals.get(key);
      if (!t) {
        t = {
          labels: { protocol: s.labels.protocol, op: s.labels.op },
          counts: new Float64Array(LATENCY_BUCKETS_S.length + 1),
          sum: 0,
          count: 0,
        };
        totals.set(key, t);
      }
      for (let i = 0; i <= LATENCY_BUCKETS_S.length; i++) t.counts[i]! += s.counts[i]!;
      t.sum += s.sum;
      t.count += s.count;
    }
    const values: MetricValueWithName<string>[] = [];
    for (const t of totals.values()) {
      let acc = 0;
      for (let i = 0; i <= LATENCY_BUCKETS_S.length; i++) {
        acc += t.counts[i]!;
        const le = i < LATENCY_BUCKETS_S.length ? LATENCY_BUCKETS_S[i]! : '+Inf';
        values.push({ metricName: `${this.name}_bucket`, labels: { le, ...t.labels }, value: acc });
      }
      values.push({ metricName: `${this.name}_sum`, labels: t.labels, value: t.sum });
      values.push({ metricName: `${this.name}_count`, labels: t.labels, value: t.count });
    }
    return values;
  }

  reset(): void {
    for (const s of this.series) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}

/** coolctl_device_transactions_total{device,protocol,op,outcome}, from the OpSeries. */
class TransactionsCounter extends ScrapeTimeMetric {
  readonly name = 'coolctl_device_transactions_total';
  readonly help = 'Device requests by operation and outcome (ok or error)';
  readonly type = 'counter';

  protected values(): MetricValueWithName<string>[] {
    const values: MetricValueWithName<string>[] = [];
    for (const s of this.series) {
      if (s.ok > 0) values.push({ labels: { ...s.labels, outcome: 'ok' }, value: s.ok });
      if (s.error > 0) values.push({ labels: { ...s.labels, outcome: 'error' }, value: s.error });
    }
    return values;
  }

  reset(): void {
    for (const s of this.series) {
      s.ok = 0;
      s.error = 0;
    }
  }
}

export class DeviceMetrics {
  private readonly errors: Counter<'device' | 'protocol' | 'kind'>;
  private readonly linkState: Gauge<'device' | 'protocol' | 'state'>;
  private readonly series: OpSeries[] = [];
  private readonly meters = new Map<string, DeviceMeter>();

  constructor(registry: Registry) {
    const registers = [registry];
    const series = this.series;
    // Read from the series at scrape time: nothing per request.
    // Custom collectors, which prom-client registries take beside their own metric types: both
    // read the OpSeries at scrape time, with no labelled inc() (a label hash per series per scrape).
    registry.registerMetric(new TransactionsCounter(series) as unknown as Counter);
    this.errors = new Counter({
      name: 'coolctl_device_errors_total',
      help: 'Device request failures by kind (timeout, unreachable, exception, garbage, bad_status, fenced, ...)',
      labelNames: ['device', 'protocol', 'kind'],
      registers,
    });
    registry.registerMetric(new LatencyHistogram(series) as unknown as Histogram);
    this.linkState = new Gauge({
      name: 'coolctl_device_link_state',
      help: 'Link state of each device: 1 for the current state, 0 for the others',
      labelNames: ['device', 'protocol', 'state'],
      registers,
    });
  }

  /** The meter for one device, made once; adapters keep it and observe through it. */
  meter(device: string, protocol: string): DeviceMeter {
    const key = `${protocol} ${device}`;
    let m = this.meters.get(key);
    if (!m) {
      const byOp = {} as Record<DeviceOp, OpSeries>;
      for (const op of DEVICE_OPS) {
        const s = new OpSeries(device, protocol, op);
        byOp[op] = s;
        this.series.push(s);
      }
      m = new DeviceMeter(this, device, protocol, byOp);
      this.meters.set(key, m);
    }
    return m;
  }

  /** One finished request; `errorCode` is the DeviceError code (COOLCTL_E_DEVICE_…) when it failed. */
  observe(device: string, protocol: string, op: DeviceOp, seconds: number, errorCode?: string): void {
    this.meter(device, protocol).observe(op, seconds, errorCode);
  }

  countError(device: string, protocol: string, errorCode: string): void {
    this.errors.inc({ device, protocol, kind: errorKind(errorCode) });
  }

  link(device: string, protocol: string, state: LinkState): void {
    for (const s of LINK_STATES) this.linkState.set({ device, protocol, state: s }, s === state ? 1 : 0);
  }
}

/** `COOLCTL_E_DEVICE_BAD_STATUS` → `bad_status`; anything else → `other`. */
export function errorKind(code: string): string {
  const m = /^COOLCTL_E_DEVICE_(.+)$/.exec(code);
  return m ? m[1]!.toLowerCase() : 'other';
}
