// Per-device metrics every adapter reports through, whatever its protocol: transactions, errors by
// kind, latency, and link state, on a prom-client Registry the daemon serves at /metrics.
// One DeviceMetrics per registry; adapters only call `observe()` and `link()`.
// Every family here is read from plain per-device fields when the registry asks, and the three
// per-device families (thousands of lines at a thousand units) also render their text directly
// (`textChunks`, which /metrics streams): prom-client's formatting makes a dozen short-lived objects
// a line, and at a scrape's size those outlived V8's young generation (docs/scale.md).
import type {
  Counter,
  Gauge,
  Histogram,
  MetricObject,
  MetricObjectWithValues,
  MetricValueWithName,
  Registry,
} from 'prom-client';
import {
  familyHeader,
  LinePrefixes,
  labelText,
  RENDERS_OWN_TEXT,
  type SelfRenderingFamily,
  type TextWriter,
  valueText,
} from '../metrics/text.ts';
import { TypedSlab } from '../util/typed-slab.ts';
import type { LinkState } from './device-io.ts';
import { registerRtuLineMetrics } from './modbus/rtu-line.ts';

export type DeviceOp = 'connect' | 'read' | 'write' | 'verify';
const DEVICE_OPS: readonly DeviceOp[] = ['connect', 'read', 'write', 'verify'];

const LINK_STATES: readonly LinkState[] = ['up', 'degraded', 'down'];

// Few buckets, and the histogram is by protocol and operation, not per device: at a thousand devices
// per-device buckets made /metrics 4.7–7 MB and each scrape stall the loop and bloat the heap.
const LATENCY_BUCKETS_S: readonly number[] = [0.0025, 0.01, 0.05, 0.25, 1, 5];
/** A latency histogram's slots: one per bucket and +Inf. */
const LATENCY_SLOTS = LATENCY_BUCKETS_S.length + 1;

type Labels = Readonly<Record<string, string>>;

/** One extra label set of a per-device line: its text (`op="read",outcome="ok"`) and its object, made once. */
interface ExtraLabels {
  readonly text: string;
  readonly labels: Labels;
  /** Its place among the fixed extra label sets of its family (line starts made once); none for error kinds. */
  readonly slot?: number;
}

function extraLabels(labels: Labels, slot?: number): ExtraLabels {
  const text = labelText(labels);
  return slot === undefined ? { text, labels } : { text, labels, slot };
}

const OUTCOME_LABELS = Object.fromEntries(
  DEVICE_OPS.map((op, i) => [
    op,
    {
      ok: extraLabels({ op, outcome: 'ok' }, 2 * i),
      error: extraLabels({ op, outcome: 'error' }, 2 * i + 1),
    },
  ]),
) as Record<DeviceOp, { ok: ExtraLabels; error: ExtraLabels }>;
const OUTCOME_SLOTS: readonly ExtraLabels[] = DEVICE_OPS.flatMap((op) => [
  OUTCOME_LABELS[op].ok,
  OUTCOME_LABELS[op].error,
]);

const STATE_LABELS = LINK_STATES.map((state, i) => extraLabels({ state }, i));
/** The extra labels of a family with only the device's own. */
const NO_EXTRA_LABELS: ExtraLabels = { text: '', labels: {} };

/**
 * One device's counts for one operation, kept in plain numbers: prom-client's labelled `inc()` and
 * `observe()` validate and hash their label object on every call (cached children too), which at
 * thousands of requests a second was a tenth of the adapter's CPU. The registry reads them at scrape.
 */
class OpSeries {
  readonly op: DeviceOp;
  ok = 0;
  error = 0;
  /** Non-cumulative: counts[i] observations in (bucket[i-1], bucket[i]]; the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  /** `slab`: the device's one store for the counts of all its operations. */
  constructor(op: DeviceOp, slab: TypedSlab) {
    this.op = op;
    this.counts = slab.f64(LATENCY_SLOTS);
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

/** Everything /metrics says of one device, and what an adapter holds: observe() with no lookup by label. */
export class DeviceMeter {
  /** Its place in its DeviceMetrics' list. */
  index = 0;
  readonly protocol: string;
  readonly labels: Labels;
  /** `device="…",protocol="…"`, escaped, for the text of every line of this device. */
  readonly labelText: string;
  readonly byOp: Record<DeviceOp, OpSeries>;
  /** Index in LINK_STATES of the current link state; -1 before the adapter said any. */
  linkState = -1;
  /** Failures by kind, in the order the kinds first happened (none for most devices). */
  errors: Map<string, { extra: ExtraLabels; count: number }> | undefined;
  /** Times the unit sent bytes no request asked for (each cost its connection). */
  strayFrames = 0;
  /** Exception answers by Modbus exception code, in the order the codes first came (none for most devices). */
  exceptions: Map<number, { extra: ExtraLabels; count: number }> | undefined;
  /** 1 while the unit refuses every read with an exception, 0 once it refused and reads again; -1 never refused. */
  refusing = -1;
  /** Reads in which a point had no usable value, by point, in the order they first came (none for most devices). */
  absentPoints: Map<string, { extra: ExtraLabels; count: number }> | undefined;

  constructor(device: string, protocol: string) {
    this.protocol = protocol;
    this.labels = { device, protocol };
    this.labelText = extraLabels(this.labels).text;
    const byOp = {} as Record<DeviceOp, OpSeries>;
    const slab = new TypedSlab(TypedSlab.room(DEVICE_OPS.length * LATENCY_SLOTS * 8, DEVICE_OPS.length));
    for (const op of DEVICE_OPS) byOp[op] = new OpSeries(op, slab);
    this.byOp = byOp;
  }

  /** One finished request; `errorCode` is the DeviceError code (COOLCTL_E_DEVICE_…) when it failed. */
  observe(op: DeviceOp, seconds: number, errorCode?: string): void {
    this.byOp[op].observe(seconds, errorCode !== undefined);
    if (errorCode) this.countError(errorKind(errorCode));
  }

  link(state: LinkState): void {
    this.linkState = LINK_STATES.indexOf(state);
  }

  /** Bytes arrived that no request asked for; the adapter dropped the connection. */
  stray(): void {
    this.strayFrames++;
  }

  /** One answer that was a Modbus exception (every try, not only a call's last). */
  exception(code: number): void {
    this.exceptions ??= new Map();
    const e = this.exceptions.get(code);
    if (e) e.count++;
    else this.exceptions.set(code, { extra: extraLabels({ code: String(code) }), count: 1 });
  }

  /** Whether the unit refuses every read now (the link may be up: it answers, with an exception). */
  refusal(refusing: boolean): void {
    if (refusing) this.refusing = 1;
    else if (this.refusing === 1) this.refusing = 0;
  }

  /** One read in which `point` (a reading's or a profile's point name) was absent: no data, or implausible. */
  absent(point: string): void {
    this.absentPoints ??= new Map();
    const e = this.absentPoints.get(point);
    if (e) e.count++;
    else this.absentPoints.set(point, { extra: extraLabels({ point }), count: 1 });
  }

  private countError(kind: string): void {
    this.errors ??= new Map();
    const e = this.errors.get(kind);
    if (e) e.count++;
    else this.errors.set(kind, { extra: extraLabels({ kind }), count: 1 });
  }
}

/** One line of a per-device family: the device, its extra labels, the value. */
type Emit = (device: DeviceMeter, extra: ExtraLabels, value: number) => void;

/** Devices whose lines make one chunk of /metrics (at most 8 lines each). */
const DEVICES_PER_CHUNK = 64;

/**
 * A metric family computed from the devices' fields when the registry reads it (prom-client
 * registries take such custom collectors beside their own types, and only call `get()`).
 */
abstract class ScrapeTimeMetric {
  abstract readonly name: string;
  abstract readonly help: string;
  abstract readonly type: 'counter' | 'gauge' | 'histogram';
  readonly aggregator = 'sum';
  protected readonly devices: DeviceMeter[];

  constructor(devices: DeviceMeter[]) {
    this.devices = devices;
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

/** A family with one line per device and extra label set: its values for prom-client, and its own text. */
abstract class PerDeviceMetric extends ScrapeTimeMetric implements SelfRenderingFamily {
  readonly [RENDERS_OWN_TEXT] = true;
  /** The fixed extra label sets of its lines, by slot (their line starts are made once per device). */
  protected readonly extras: readonly ExtraLabels[] | null = null;
  private prefixes: LinePrefixes | undefined;

  /** `\nname{device labels,extra labels} ` of every device and fixed extra set, remade when devices were added. */
  private linePrefixes(extras: readonly ExtraLabels[]): LinePrefixes {
    if (this.prefixes?.lines === this.devices.length * extras.length) return this.prefixes;
    const starts: string[] = [];
    for (const d of this.devices)
      for (const e of extras) starts.push(`\n${this.name}{${d.labelText},${e.text}} `);
    this.prefixes = new LinePrefixes(starts);
    return this.prefixes;
  }
  /** Emits the lines of one device, in order. */
  protected abstract deviceLines(d: DeviceMeter, emit: Emit): void;

  /** Emits the lines of the devices [from, to), in order. */
  private each(emit: Emit, from: number, to: number): void {
    for (let i = from; i < to; i++) this.deviceLines(this.devices[i]!, emit);
  }

  protected values(): MetricValueWithName<string>[] {
    const values: MetricValueWithName<string>[] = [];
    const emit: Emit = (d, extra, value) => values.push({ labels: { ...d.labels, ...extra.labels }, value });
    this.each(emit, 0, this.devices.length);
    return values;
  }

  /**
   * The family's text as registry.getSingleMetricAsString() renders it: the HELP and TYPE lines,
   * then DEVICES_PER_CHUNK devices' lines a chunk (each line after a newline). A chunk is made
   * only when the reader asks for it, so no more than one is alive at a time.
   */
  *textChunks(): Generator<string> {
    const name = this.name;
    yield familyHeader(name, this.help, this.type);
    let chunk = '';
    const emit: Emit = (d, extra, value) => {
      // A family with no labels beyond the device's has an empty extra text: no comma then.
      chunk += extra.text
        ? `\n${name}{${d.labelText},${extra.text}} ${valueText(value)}`
        : `\n${name}{${d.labelText}} ${valueText(value)}`;
    };
    for (let from = 0; from < this.devices.length; from += DEVICES_PER_CHUNK) {
      chunk = '';
      this.each(emit, from, Math.min(from + DEVICES_PER_CHUNK, this.devices.length));
      if (chunk) yield chunk;
    }
  }

  /** The same text written as bytes, a chunk of devices per step (no string per line). */
  *writeChunks(w: TextWriter): Generator<void> {
    const open = `\n${this.name}{`;
    w.text(familyHeader(this.name, this.help, this.type));
    yield;
    const extras = this.extras;
    const prefixes = extras ? this.linePrefixes(extras) : undefined;
    const emit: Emit = (d, extra, value) => {
      if (prefixes && extra.slot !== undefined) {
        w.prefix(prefixes, d.index * extras!.length + extra.slot);
        w.value(value);
        return;
      }
      w.ascii(open);
      w.ascii(d.labelText);
      if (extra.text) {
        w.byte(0x2c); // ','
        w.ascii(extra.text);
      }
      w.ascii('} ');
      w.value(value);
    };
    for (let from = 0; from < this.devices.length; from += DEVICES_PER_CHUNK) {
      this.each(emit, from, Math.min(from + DEVICES_PER_CHUNK, this.devices.length));
      yield;
    }
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
    // Keyed per protocol, then by operation: no key string made per device and operation.
    const keys = new Map<string, Record<DeviceOp, string>>();
    for (const d of this.devices) {
      let opKeys = keys.get(d.protocol);
      if (!opKeys) {
        opKeys = { connect: '', read: '', write: '', verify: '' };
        for (const op of DEVICE_OPS) opKeys[op] = `${d.protocol} ${op}`;
        keys.set(d.protocol, opKeys);
      }
      for (let o = 0; o < DEVICE_OPS.length; o++) {
        const s = d.byOp[DEVICE_OPS[o]!];
        if (s.count === 0) continue; // an operation no device did has no series yet
        const key = opKeys[s.op];
        let t = totals.get(key);
        if (!t) {
          t = {
            labels: { protocol: d.protocol, op: s.op },
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
    for (const d of this.devices) {
      for (const s of Object.values(d.byOp)) {
        s.counts.fill(0);
        s.sum = 0;
        s.count = 0;
      }
    }
  }
}

/** coolctl_device_transactions_total{device,protocol,op,outcome}: requests by outcome. */
class TransactionsCounter extends PerDeviceMetric {
  readonly name = 'coolctl_device_transactions_total';
  readonly help = 'Device requests by operation and outcome (ok or error)';
  readonly type = 'counter';
  protected override readonly extras = OUTCOME_SLOTS;

  protected deviceLines(d: DeviceMeter, emit: Emit): void {
    for (const op of DEVICE_OPS) {
      const s = d.byOp[op];
      if (s.ok > 0) emit(d, OUTCOME_LABELS[op].ok, s.ok);
      if (s.error > 0) emit(d, OUTCOME_LABELS[op].error, s.error);
    }
  }

  reset(): void {
    for (const d of this.devices) {
      for (const s of Object.values(d.byOp)) {
        s.ok = 0;
        s.error = 0;
      }
    }
  }
}

/** coolctl_device_errors_total{device,protocol,kind}: failures by kind. */
class ErrorsCounter extends PerDeviceMetric {
  readonly name = 'coolctl_device_errors_total';
  readonly help =
    'Device request failures by kind (timeout, unreachable, exception, garbage, bad_status, fenced, ...)';
  readonly type = 'counter';

  protected deviceLines(d: DeviceMeter, emit: Emit): void {
    if (d.errors) for (const e of d.errors.values()) emit(d, e.extra, e.count);
  }

  reset(): void {
    for (const d of this.devices) d.errors = undefined;
  }
}

/** coolctl_device_link_state{device,protocol,state}: 1 for the current state, 0 for the others. */
class LinkStateGauge extends PerDeviceMetric {
  readonly name = 'coolctl_device_link_state';
  readonly help = 'Link state of each device: 1 for the current state, 0 for the others';
  readonly type = 'gauge';
  protected override readonly extras = STATE_LABELS;

  protected deviceLines(d: DeviceMeter, emit: Emit): void {
    if (d.linkState < 0) return;
    for (let i = 0; i < STATE_LABELS.length; i++) emit(d, STATE_LABELS[i]!, i === d.linkState ? 1 : 0);
  }

  /** A state, not a count: nothing to reset. */
  reset(): void {}
}

/** coolctl_device_stray_frames_total{device,protocol}: unsolicited bytes, each of which cost a connection. */
class StrayFramesCounter extends PerDeviceMetric {
  readonly name = 'coolctl_device_stray_frames_total';
  readonly help =
    'Times a device sent bytes no request asked for (while idle, or glued after an answer); each drops its connection';
  readonly type = 'counter';

  protected deviceLines(d: DeviceMeter, emit: Emit): void {
    if (d.strayFrames > 0) emit(d, NO_EXTRA_LABELS, d.strayFrames);
  }

  reset(): void {
    for (const d of this.devices) d.strayFrames = 0;
  }
}

/** coolctl_device_exceptions_total{device,protocol,code}: Modbus exception answers by code. */
class ExceptionsCounter extends PerDeviceMetric {
  readonly name = 'coolctl_device_exceptions_total';
  readonly help =
    'Modbus exception answers by exception code (2: illegal data address, 4: device failure, 6: busy, 13: stale epoch, ...)';
  readonly type = 'counter';

  protected deviceLines(d: DeviceMeter, emit: Emit): void {
    if (d.exceptions) for (const e of d.exceptions.values()) emit(d, e.extra, e.count);
  }

  reset(): void {
    for (const d of this.devices) d.exceptions = undefined;
  }
}

/** coolctl_device_refusing{device,protocol}: 1 while the unit answers every read with an exception. */
class RefusingGauge extends PerDeviceMetric {
  readonly name = 'coolctl_device_refusing';
  readonly help =
    'A device that answers every read with a Modbus exception (link up, no reading): 1 while it does, 0 since it reads again';
  readonly type = 'gauge';

  protected deviceLines(d: DeviceMeter, emit: Emit): void {
    if (d.refusing >= 0) emit(d, NO_EXTRA_LABELS, d.refusing);
  }

  /** A state, not a count: nothing to reset. */
  reset(): void {}
}

/** coolctl_device_absent_readings_total{device,protocol,point}: reads that had no usable value for a point. */
class AbsentReadingsCounter extends PerDeviceMetric {
  readonly name = 'coolctl_device_absent_readings_total';
  readonly help =
    'Reads in which a point of a unit had no usable value (a no-data code, a value outside what the point can be, a Bad point): served as absent (NaN), never as good';
  readonly type = 'counter';

  protected deviceLines(d: DeviceMeter, emit: Emit): void {
    if (d.absentPoints) for (const e of d.absentPoints.values()) emit(d, e.extra, e.count);
  }

  reset(): void {
    for (const d of this.devices) d.absentPoints = undefined;
  }
}

export class DeviceMetrics {
  private readonly devices: DeviceMeter[] = [];
  private readonly meters = new Map<string, DeviceMeter>();

  constructor(registry: Registry) {
    const devices = this.devices;
    // Custom collectors, which prom-client registries take beside their own metric types.
    registry.registerMetric(new TransactionsCounter(devices) as unknown as Counter);
    registry.registerMetric(new ErrorsCounter(devices) as unknown as Counter);
    registry.registerMetric(new LatencyHistogram(devices) as unknown as Histogram);
    registry.registerMetric(new LinkStateGauge(devices) as unknown as Gauge);
    registry.registerMetric(new StrayFramesCounter(devices) as unknown as Counter);
    registry.registerMetric(new ExceptionsCounter(devices) as unknown as Counter);
    registry.registerMetric(new RefusingGauge(devices) as unknown as Gauge);
    registry.registerMetric(new AbsentReadingsCounter(devices) as unknown as Counter);
    // Shared RS-485 lines count per slave id, beside the per-device families.
    registerRtuLineMetrics(registry);
  }

  /** The meter for one device, made once; adapters keep it and observe through it. */
  meter(device: string, protocol: string): DeviceMeter {
    const key = `${protocol} ${device}`;
    let m = this.meters.get(key);
    if (!m) {
      m = new DeviceMeter(device, protocol);
      m.index = this.devices.length;
      this.devices.push(m);
      this.meters.set(key, m);
    }
    return m;
  }

  /** One finished request; `errorCode` is the DeviceError code (COOLCTL_E_DEVICE_…) when it failed. */
  observe(device: string, protocol: string, op: DeviceOp, seconds: number, errorCode?: string): void {
    this.meter(device, protocol).observe(op, seconds, errorCode);
  }

  link(device: string, protocol: string, state: LinkState): void {
    this.meter(device, protocol).link(state);
  }
}

/**
 * `COOLCTL_E_DEVICE_BAD_STATUS` → `bad_status`; `COOLCTL_E_NOT_LEADER` → `not_leader` (a write held
 * back: no lease, or the unit's worst case no longer fits before the lease deadline); else `other`.
 */
export function errorKind(code: string): string {
  if (code === 'COOLCTL_E_NOT_LEADER') return 'not_leader';
  const m = /^COOLCTL_E_DEVICE_(.+)$/.exec(code);
  return m ? m[1]!.toLowerCase() : 'other';
}
