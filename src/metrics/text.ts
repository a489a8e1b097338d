// The Prometheus text format as prom-client prints it, for the families that render their own text
// (thousands of lines at a thousand units: prom-client's formatting makes a dozen short-lived
// objects a line, which at a scrape's size outlived V8's young generation; docs/scale.md).
// /metrics (metrics/exposition.ts) asks such a family for its text chunk by chunk, and yields the
// event loop between chunks when a slice of work is used up. A family can also write its lines as
// bytes straight into the answer (`writeChunks`, through a TextWriter): a line built as a string
// is half a dozen short strings, ~250 bytes of garbage; written as bytes it is none.

/** A family that renders its own text, chunk by chunk. */
export interface SelfRenderingFamily {
  /** The family's text in chunks, joined as registry.getSingleMetricAsString() would render it. */
  textChunks(): Iterable<string>;
  /** The same text written into `w`, a chunk per step (optional: else textChunks is encoded). */
  writeChunks?(w: TextWriter): Iterable<void>;
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

const ASCII = /^[\x20-\x7e]*$/;

/** Whether `s` is printable ASCII, so TextWriter.ascii() may copy it byte for byte. */
export function isAscii(s: string): boolean {
  return ASCII.test(s);
}

/**
 * A growing UTF-8 buffer that Prometheus text is written into without a string per line: ASCII
 * strings made once (names, label sets) are copied byte by byte, integers written as digits; only
 * other numbers become a short string first.
 */
export class TextWriter {
  private buf: Buffer;
  length = 0;

  constructor(capacity = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(Math.max(1024, capacity));
  }

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }

  /** Any text (HELP lines, text rendered elsewhere), UTF-8 encoded. */
  text(s: string): void {
    this.room(s.length * 3);
    this.length += this.buf.write(s, this.length, 'utf8');
  }

  /** Printable ASCII only (see isAscii): copied without encoding. */
  ascii(s: string): void {
    this.room(s.length);
    const buf = this.buf;
    let at = this.length;
    for (let i = 0; i < s.length; i++) buf[at++] = s.charCodeAt(i);
    this.length = at;
  }

  byte(b: number): void {
    this.room(1);
    this.buf[this.length++] = b;
  }

  /** A sample value as valueText() prints it. */
  value(v: number): void {
    if (!Number.isSafeInteger(v)) {
      this.ascii(valueText(v));
      return;
    }
    this.room(17);
    const buf = this.buf;
    let n = v;
    if (n < 0) {
      buf[this.length++] = 0x2d; // '-'
      n = -n;
    }
    let digits = 1;
    for (let x = n; x >= 10; x = Math.floor(x / 10)) digits++;
    let at = this.length + digits;
    this.length = at;
    do {
      buf[--at] = 0x30 + (n % 10);
      n = Math.floor(n / 10);
    } while (n > 0);
  }

  /** What was written (a view of the writer's buffer: do not write after taking it). */
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}
