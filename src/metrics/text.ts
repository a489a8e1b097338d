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

/**
 * The starts of many lines (`\nname{labels} `), encoded once into one buffer: a family with
 * thousands of lines of fixed label sets copies each line's start with one call at a scrape and
 * writes only its value (byte by byte, a line was ~75 characters to copy). Kept between scrapes:
 * ~2.8 MB at 1 000 units, outside the V8 heap.
 */
export class LinePrefixes {
  readonly bytes: Buffer;
  /** Line i's start is bytes[offsets[i], offsets[i + 1]). */
  readonly offsets: Uint32Array;

  constructor(prefixes: readonly string[]) {
    this.offsets = new Uint32Array(prefixes.length + 1);
    let at = 0;
    for (let i = 0; i < prefixes.length; i++) {
      this.offsets[i] = at;
      at += Buffer.byteLength(prefixes[i]!, 'utf8');
    }
    this.offsets[prefixes.length] = at;
    this.bytes = Buffer.allocUnsafeSlow(at);
    let w = 0;
    for (const p of prefixes) w += this.bytes.write(p, w, 'utf8');
  }

  get lines(): number {
    return this.offsets.length - 1;
  }
}

/** Where a chunked TextWriter hands each chunk it filled: resolves once the chunk may be written again. */
export type ChunkSink = (chunk: Buffer) => Promise<void>;

/**
 * A UTF-8 buffer that Prometheus text is written into without a string per line: ASCII strings made
 * once (names, label sets) are copied byte by byte, integers written as digits; only other numbers
 * become a short string first. Without a sink the buffer grows to hold the whole text (`bytes()`).
 * With one it is a chunk of `capacity` bytes: a write that does not fit hands the chunk, as filled,
 * to the sink and goes on in a chunk the sink is done with (or a new one), so the text never sits
 * in memory whole; a write bigger than a chunk gets a buffer of its own. `flushed()` bounds how many
 * chunks are out: the writer's owner awaits it between steps.
 */
export class TextWriter {
  private buf: Buffer;
  /** Bytes written into the current buffer. */
  length = 0;
  private readonly sink: ChunkSink | undefined;
  private readonly chunkBytes: number;
  /** Chunks the sink is done with, to write again. */
  private readonly free: Buffer[] = [];
  /** The sink's promises for the chunks handed to it since the last flushed(). */
  private handing: Promise<void>[] = [];
  /** Bytes handed to the sink. */
  private handed = 0;

  constructor(capacity = 64 * 1024, sink?: ChunkSink) {
    this.chunkBytes = Math.max(1024, capacity);
    this.buf = Buffer.allocUnsafe(this.chunkBytes);
    this.sink = sink;
  }

  /** Bytes written so far, handed to the sink or not. */
  get written(): number {
    return this.handed + this.length;
  }

  /** Makes room for `n` more bytes (kept this small so that every write inlines it). */
  private room(n: number): void {
    if (this.length + n > this.buf.length) this.more(n);
  }

  private more(n: number): void {
    if (this.sink) {
      this.handOver();
      this.buf =
        n <= this.chunkBytes
          ? (this.free.pop() ?? Buffer.allocUnsafe(this.chunkBytes))
          : Buffer.allocUnsafe(n);
      return;
    }
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }

  /** The current buffer, as filled, to the sink; the writer must take another before writing on. */
  private handOver(): void {
    const full = this.buf;
    if (this.length === 0) {
      if (full.length === this.chunkBytes) this.free.push(full);
      return;
    }
    const done = this.sink!(full.subarray(0, this.length)).then(() => {
      if (full.length === this.chunkBytes) this.free.push(full);
    });
    done.catch(() => {}); // the owner learns of a failure from flushed()
    this.handing.push(done);
    this.handed += this.length;
    this.length = 0;
  }

  /** Resolves once the sink is done with every chunk handed to it so far; rejects if it failed one. */
  async flushed(): Promise<void> {
    if (this.handing.length === 0) return;
    const handing = this.handing;
    this.handing = [];
    await Promise.all(handing);
  }

  /** With a sink: hands it the last chunk and resolves once it is done with everything. */
  async finish(): Promise<void> {
    this.handOver();
    this.buf = Buffer.alloc(0);
    await this.flushed();
  }

  /** Any text (HELP lines, text rendered elsewhere), UTF-8 encoded. */
  text(s: string): void {
    // Up to 3 bytes a UTF-16 unit: a string too long for that guess to fit a chunk is measured.
    this.room(s.length * 3 <= this.chunkBytes ? s.length * 3 : Buffer.byteLength(s, 'utf8'));
    this.length += this.buf.write(s, this.length, 'utf8');
  }

  /** ASCII text (names, label sets made once), copied byte by byte; anything else is UTF-8 encoded. */
  ascii(s: string): void {
    this.room(s.length);
    const buf = this.buf;
    const from = this.length;
    let at = from;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) {
        this.length = from;
        this.text(s);
        return;
      }
      buf[at++] = c;
    }
    this.length = at;
  }

  byte(b: number): void {
    this.room(1);
    this.buf[this.length++] = b;
  }

  /** A sample value as valueText() prints it (integers as digits, other numbers through valueText). */
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

  /** The start of line `slot` of a LinePrefixes table (copied, not encoded). */
  prefix(p: LinePrefixes, slot: number): void {
    const from = p.offsets[slot]!;
    const to = p.offsets[slot + 1]!;
    this.room(to - from);
    // A loop, not Buffer.copy: a native call costs more than copying the ~70 bytes of a line start.
    const src = p.bytes;
    const buf = this.buf;
    let at = this.length;
    for (let i = from; i < to; i++) buf[at++] = src[i]!;
    this.length = at;
  }

  /** A label value as escapeLabelValue() escapes it, UTF-8 (no string made for ASCII values). */
  labelValue(s: string): void {
    this.room(s.length * 2);
    const buf = this.buf;
    let at = this.length;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) {
        this.length = at;
        this.text(escapeLabelValue(s.slice(i)));
        return;
      }
      if (c === 0x5c || c === 0x22) {
        buf[at++] = 0x5c; // '\\'
        buf[at++] = c;
      } else if (c === 0x0a) {
        buf[at++] = 0x5c;
        buf[at++] = 0x6e; // 'n'
      } else buf[at++] = c;
    }
    this.length = at;
  }

  /** What was written, without a sink (a view of the writer's buffer: do not write after taking it). */
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

/** One sample as prom-client's metrics give it to the registry (`get()`, `getForPromString()`). */
export interface PromSample {
  value: unknown;
  labels?: Readonly<Record<string, unknown>>;
  metricName?: string;
  /** Labels of the series a histogram's bucket, sum and count lines belong to. */
  sharedLabels?: Readonly<Record<string, unknown>>;
}

/** One family as prom-client's metrics give it to the registry. */
export interface PromFamily {
  name: string;
  help: string;
  type: string;
  values?: readonly PromSample[];
}

/** Lines written between two steps of writeFamily (a few hundred µs of work). */
const LINES_PER_STEP = 256;

/** A shared label set's text, made once per label object, as prom-client caches it too. */
const sharedLabelText = new WeakMap<object, string>();

function promLabelText(labels: Readonly<Record<string, unknown>>): string {
  let text = sharedLabelText.get(labels);
  if (text === undefined) {
    text = Object.entries(labels)
      .map(([k, v]) => `${k}="${typeof v === 'string' ? escapeLabelValue(v) : v}"`)
      .join(',');
    sharedLabelText.set(labels, text);
  }
  return text;
}

/**
 * The text prom-client's registry renders for one of its families in the Prometheus format
 * (getMetricsAsString without default labels): `# HELP` and `# TYPE`, then a line per sample with
 * its labels in their order, a shared label set last, the value as getValueAsString prints it.
 * Written as bytes, a step every LINES_PER_STEP lines, so a family of a thousand lines (a histogram
 * per control group) is neither one long turn of the event loop nor a string per line.
 */
export function* writeFamily(w: TextWriter, family: PromFamily): Generator<void> {
  const name = escapeText(family.name);
  w.text(`# HELP ${name} ${escapeText(family.help)}\n# TYPE ${name} ${family.type}`);
  const values = family.values ?? [];
  for (let i = 0; i < values.length; i++) {
    const sample = values[i]!;
    w.byte(0x0a); // '\n'
    w.ascii(sample.metricName ?? name);
    const labels = sample.labels;
    const shared = sample.sharedLabels;
    let open = false;
    if (labels)
      for (const k in labels) {
        if (!Object.hasOwn(labels, k) || (shared && Object.hasOwn(shared, k))) continue;
        w.byte(open ? 0x2c : 0x7b); // ',' or '{'
        open = true;
        w.ascii(k);
        w.byte(0x3d); // '='
        w.byte(0x22); // '"'
        const v = labels[k];
        if (typeof v === 'string') w.labelValue(v);
        else if (typeof v === 'number' && Number.isFinite(v)) w.value(v);
        else w.text(`${v}`);
        w.byte(0x22);
      }
    if (shared) {
      const text = promLabelText(shared);
      if (text) {
        w.byte(open ? 0x2c : 0x7b);
        open = true;
        w.ascii(text);
      }
    }
    if (open) w.byte(0x7d); // '}'
    w.byte(0x20); // ' '
    const v = sample.value;
    if (typeof v === 'number') w.value(v);
    else w.ascii((v as number) < 0 ? '-Inf' : '+Inf');
    if (i % LINES_PER_STEP === LINES_PER_STEP - 1) yield;
  }
}
