// Per-device metrics every adapter reports through, whatever its protocol: transactions, errors by
// kind, latency, and link state, on a prom-client Registry the daemon serves at /metrics.
// One DeviceMetrics per registry; adapters only call `observe()` and `link()`.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { LinkState } from './device-io.ts';

export type DeviceOp = 'connect' | 'read' | 'write' | 'verify';

const LINK_STATES: readonly LinkState[] = ['up', 'degraded', 'down'];

export class DeviceMetrics {
  private readonly transactions: Counter<'device' | 'protocol' | 'op' | 'outcome'>;
  private readonly errors: Counter<'device' | 'protocol' | 'kind'>;
  private readonly latency: Histogram<'device' | 'protocol' | 'op'>;
  private readonly linkState: Gauge<'device' | 'protocol' | 'state'>;
  private readonly children = new Map<
    string,
    Map<DeviceOp, { ok: { inc(): void }; error: { inc(): void }; latency: { observe(v: number): void } }>
  >();

  constructor(registry: Registry) {
    const registers = [registry];
    this.transactions = new Counter({
      name: 'coolctl_device_transactions_total',
      help: 'Device requests by operation and outcome (ok or error)',
      labelNames: ['device', 'protocol', 'op', 'outcome'],
      registers,
    });
    this.errors = new Counter({
      name: 'coolctl_device_errors_total',
      help: 'Device request failures by kind (timeout, unreachable, exception, garbage, bad_status, fenced, ...)',
      labelNames: ['device', 'protocol', 'kind'],
      registers,
    });
    this.latency = new Histogram({
      name: 'coolctl_device_request_seconds',
      help: 'Device request latency, including retries',
      labelNames: ['device', 'protocol', 'op'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.linkState = new Gauge({
      name: 'coolctl_device_link_state',
      help: 'Link state of each device: 1 for the current state, 0 for the others',
      labelNames: ['device', 'protocol', 'state'],
      registers,
    });
  }

  /** One finished request; `errorCode` is the DeviceError code (COOLCTL_E_DEVICE_…) when it failed. */
  observe(device: string, protocol: string, op: DeviceOp, seconds: number, errorCode?: string): void {
    // Labelled children are cached per device and op: prom-client hashes a label object on every
    // call otherwise, a visible share of the adapter's CPU at a thousand requests a second.
    let perDevice = this.children.get(device);
    if (!perDevice) {
      perDevice = new Map();
      this.children.set(device, perDevice);
    }
    let c = perDevice.get(op);
    if (!c) {
      c = {
        ok: this.transactions.labels({ device, protocol, op, outcome: 'ok' }),
        error: this.transactions.labels({ device, protocol, op, outcome: 'error' }),
        latency: this.latency.labels({ device, protocol, op }),
      };
      perDevice.set(op, c);
    }
    (errorCode ? c.error : c.ok).inc();
    c.latency.observe(seconds);
    if (errorCode) this.errors.inc({ device, protocol, kind: errorKind(errorCode) });
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
