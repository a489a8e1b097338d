// Every refused API request and connection, in one place: counted in
// coolctl_api_requests_refused_total{route} — a route's pattern, `unknown` (no such route, or a URL
// that cannot be decoded) or `connection` (cut off before a request was read: too slow, malformed,
// over the connection cap) — and logged at most once per route and code every LOG_EVERY_MS, the next
// line saying how many it left out. A flood of refusals costs a counter increment each, never a log
// line each, and never an audit entry (./audit/record-first.ts).
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { zeroSeries } from '../metrics/zero-series.ts';
import { LogLimiter } from '../util/log-limit.ts';

/** At most one log line per route and code this often. */
export const REFUSAL_LOG_EVERY_MS = 10_000;

/** The `route` values that name no route: no such route (or an unreadable URL), or no request read. */
export const ROUTELESS = ['unknown', 'connection'] as const;

export interface Refusal {
  route: string;
  code: string;
  status: number;
  message: string;
  details?: string[];
  method?: string;
  user?: string | undefined;
  clientIp?: string | undefined;
}

export class Refusals {
  private readonly counter: Counter<'route'>;
  private readonly log: Logger;
  /** One line per route and code per REFUSAL_LOG_EVERY_MS. */
  private readonly lines: LogLimiter;

  constructor(registry: Registry, log: Logger, now: () => number = () => performance.now()) {
    this.counter = new Counter({
      name: 'coolctl_api_requests_refused_total',
      help: 'API requests refused, by route (its pattern; unknown: no such route or an unreadable URL; connection: cut off before a request was read, or closed idle for a newcomer at the cap)',
      labelNames: ['route'],
      registers: [registry],
    });
    zeroSeries(this.counter, { route: ROUTELESS });
    this.log = log;
    this.lines = new LogLimiter(now, REFUSAL_LOG_EVERY_MS);
  }

  /** A route the app serves (its pattern): its refusals count from 0. */
  route(pattern: string): void {
    zeroSeries(this.counter, { route: [pattern] });
  }

  refuse(r: Refusal): void {
    this.counter.inc({ route: r.route });
    const left = this.lines.admit(`${r.route} ${r.code}`);
    if (left < 0) return;
    this.log.warn({ ...r, ...(left ? { alsoRefusedSinceLastLine: left } : {}) }, 'request refused');
  }
}
