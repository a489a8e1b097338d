// GET /metrics: the registry's Prometheus text from its one MetricsExposition (src/metrics/
// exposition.ts): rendered in slices between event-loop turns, one render shared by the scrapes
// that come together, handed to the socket as one buffer (gzipped for a scraper that accepts it).
import type { Registry } from 'prom-client';
import { type MetricsAnswer, MetricsExposition } from '../metrics/exposition.ts';

const expositions = new WeakMap<Registry, MetricsExposition>();

/** The exposition of `registry` (made on first use; one per registry, so scrapes share renders). */
export function expositionOf(registry: Registry): MetricsExposition {
  let e = expositions.get(registry);
  if (!e) {
    e = new MetricsExposition(registry);
    expositions.set(registry, e);
  }
  return e;
}

/** The Prometheus text of `registry`, UTF-8, to keep. */
export function metricsBody(registry: Registry): Promise<Buffer> {
  return expositionOf(registry).body();
}

/** The same text as one HTTP answer's own bytes, gzipped when `gzip`. */
export function metricsAnswer(registry: Registry, gzip = false): Promise<MetricsAnswer> {
  return expositionOf(registry).answer({ gzip });
}

/**
 * Whether an Accept-Encoding header accepts gzip (RFC 9110 §12.5.3): `gzip` or `x-gzip`, else `*`,
 * with a q-value above 0. No header, or a malformed one, is identity.
 */
export function acceptsGzip(header: string | readonly string[] | undefined): boolean {
  if (header === undefined) return false;
  const text = typeof header === 'string' ? header : header.join(',');
  if (text.length > 1024) return false;
  let gzip: number | undefined;
  let star: number | undefined;
  for (const part of text.split(',')) {
    const [coding = '', ...params] = part.split(';');
    const name = coding.trim().toLowerCase();
    let q = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*(\S*)\s*$/i.exec(p);
      // A q-value is 0–1 with up to three decimals; anything else makes the coding unacceptable.
      if (m) q = /^(0(\.\d{0,3})?|1(\.0{0,3})?)$/.test(m[1]!) ? Number(m[1]) : 0;
    }
    if (name === 'gzip' || name === 'x-gzip') gzip = Math.max(gzip ?? 0, q);
    else if (name === '*') star = q;
  }
  return (gzip ?? star ?? 0) > 0;
}
