// The Prometheus text format as prom-client prints it, for the families that render their own text
// (thousands of lines at a thousand units: prom-client's formatting makes a dozen short-lived
// objects a line, which at a scrape's size outlived V8's young generation; docs/scale.md).
// /metrics (api/metrics-text.ts) streams such a family chunk by chunk, one chunk per event-loop turn.

/** A family that renders its own text, chunk by chunk. */
export interface SelfRenderingFamily {
  /** The family's text in chunks, joined as registry.getSingleMetricAsString() would render it. */
  textChunks(): Iterable<string>;
}

/** Marks a class's instances as families /metrics renders through `textChunks()`. */
export const RENDERS_OWN_TEXT: unique symbol = Symbol('coolctl.rendersOwnText');

export function rendersOwnText(metric: unknown): metric is SelfRenderingFamily {
  return (
    typeof metric === 'object' &&
    metric !== null &&
    (metric as { [RENDERS_OWN_TEXT]?: boolean })[RENDERS_OWN_TEXT] === true &&
    typeof (metric as Partial<SelfRenderingFamily>).textChunks === 'function'
  );
}

// As prom-client's registry escapes and prints them, so both renderings are the same text.
export function escapeText(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

export function escapeLabelValue(s: string): string {
  return escapeText(s).replace(/"/g, '\\"');
}

/** `k1="v1",k2="v2"`, escaped, in the order given. */
export function labelText(labels: Readonly<Record<string, string>>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}="${escapeLabelValue(v)}"`)
    .join(',');
}

export function valueText(v: number): string {
  if (Number.isNaN(v)) return 'Nan';
  if (!Number.isFinite(v)) return v < 0 ? '-Inf' : '+Inf';
  return `${v}`;
}

/** The HELP and TYPE lines that open a family (no newline after them: each line starts with one). */
export function familyHeader(name: string, help: string, type: string): string {
  return `# HELP ${name} ${escapeText(help)}\n# TYPE ${name} ${type}`;
}
