// The fencing gateway's Prometheus families (docs/fencing-gateway.md lists them): what it forwarded,
// what it refused and why, and how each unit on each line answers. One registry per gateway.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { zeroSeries } from '../metrics/zero-series.ts';
import { HTTP_REFUSALS } from './http.ts';

/** Why a request was answered with an exception before any unit saw it. */
export const BAD_REQUEST_REASONS = [
  'malformed_frame',
  'oversized_frame',
  'frame_timeout',
  'bad_pdu',
  'oversized_request',
  'bad_window',
  'unfenced_write',
  'unsupported_function',
  'unknown_unit',
  'busy',
  'too_many_connections',
  'too_many_from_host',
  'silent_connection_evicted',
  'idle_connection_evicted',
  'slow_reader',
] as const;
export type BadRequestReason = (typeof BAD_REQUEST_REASONS)[number];

export class GatewayMetrics {
  readonly requests: Counter<'unit' | 'kind'>;
  readonly forwarded: Counter<'unit' | 'kind'>;
  readonly refusedStale: Counter<'unit'>;
  readonly lineTimeouts: Counter<'line' | 'unit'>;
  readonly lineErrors: Counter<'line' | 'unit' | 'kind'>;
  readonly badRequests: Counter<'reason'>;
  readonly unitEpoch: Gauge<'unit'>;
  readonly stateWriteErrors: Counter;
  readonly stateFileFailing: Gauge;
  readonly connections: Gauge;
  readonly idleClosed: Counter;
  readonly lineSeconds: Histogram<'line'>;
  readonly httpRefused: Counter<'reason'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.requests = new Counter({
      name: 'coolctl_gateway_requests_total',
      help: 'Modbus requests per unit id: read (forwarded), fenced_write, epoch_read (answered by the gateway)',
      labelNames: ['unit', 'kind'],
      registers,
    });
    this.forwarded = new Counter({
      name: 'coolctl_gateway_forwarded_total',
      help: 'Requests put on the line to the unit: reads, and fenced writes whose epoch was the newest',
      labelNames: ['unit', 'kind'],
      registers,
    });
    this.refusedStale = new Counter({
      name: 'coolctl_gateway_refused_stale_total',
      help: 'Fenced writes refused with exception 0x0D: their epoch was below the newest seen for the unit',
      labelNames: ['unit'],
      registers,
    });
    this.lineTimeouts = new Counter({
      name: 'coolctl_gateway_line_timeouts_total',
      help: 'Requests the unit did not answer within its deadline (answered 0x0B)',
      labelNames: ['line', 'unit'],
      registers,
    });
    this.lineErrors = new Counter({
      name: 'coolctl_gateway_line_errors_total',
      help: 'Requests that failed on the line: garbage (bad CRC, wrong answer), unavailable (line down), expired (waited past queueTimeoutMs, never sent), wrong_address (an RTU answer from another slave address, skipped)',
      labelNames: ['line', 'unit', 'kind'],
      registers,
    });
    this.badRequests = new Counter({
      name: 'coolctl_gateway_bad_requests_total',
      help: 'Requests and frames from controllers refused before reaching any unit, by reason',
      labelNames: ['reason'],
      registers,
    });
    zeroSeries(this.badRequests, { reason: BAD_REQUEST_REASONS });
    this.unitEpoch = new Gauge({
      name: 'coolctl_gateway_unit_epoch',
      help: 'The newest epoch seen for the unit id (persisted in the state file)',
      labelNames: ['unit'],
      registers,
    });
    this.stateWriteErrors = new Counter({
      name: 'coolctl_gateway_state_write_errors_total',
      help: 'Fenced writes refused with 0x04 because their new epoch could not be written to the state file (full or read-only disk, no file descriptor)',
      registers,
    });
    this.stateFileFailing = new Gauge({
      name: 'coolctl_gateway_state_file_failing',
      help: '1 while the last write of the epoch state file failed (it is tried again every 2 s, with or without a leader writing) or the 10 s check of its directory finds it read-only or full, else 0',
      registers,
    });
    this.stateFileFailing.set(0);
    this.connections = new Gauge({
      name: 'coolctl_gateway_connections',
      help: 'Open Modbus TCP connections from controllers',
      registers,
    });
    this.idleClosed = new Counter({
      name: 'coolctl_gateway_idle_connections_closed_total',
      help: 'Connections closed after idleTimeoutMs without a request (a controller that does not lead the unit reopens its silent connection at once)',
      registers,
    });
    this.httpRefused = new Counter({
      name: 'coolctl_gateway_http_refused_total',
      help: 'HTTP connections dropped (too_many_connections), and requests refused unparsed (bad_request), too slow (timeout), for another path (not_found) or method (method_not_allowed)',
      labelNames: ['reason'],
      registers,
    });
    zeroSeries(this.httpRefused, { reason: HTTP_REFUSALS });
    this.lineSeconds = new Histogram({
      name: 'coolctl_gateway_line_request_seconds',
      help: 'Time a request held the line (send to answer or deadline)',
      labelNames: ['line'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
  }
}
