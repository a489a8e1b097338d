// A process-state row: the latest state of one control group's process, as its leader wrote it.
// Versioned by (epoch, seq): the epoch is the writer's leadership epoch (etcd create revision,
// strictly increasing per group), seq counts the writer's rows within that epoch. A row is only
// ever replaced by a newer version, so a stale leader's late broadcast can never win.

export interface CachedRow {
  group: string;
  epoch: number;
  seq: number;
  /** Node that wrote it. */
  writer: string;
  /** Writer's wall clock at write, ms since the Unix epoch (for humans and lag metrics). */
  atMs: number;
  /**
   * This node's monotonic clock (performance.now) when the row was written here or arrived whole:
   * how old a row is without comparing two nodes' clocks (the link's delay aside). Never on the
   * wire; absent from a store that does not keep it.
   */
  localAtMs?: number;
  /** The state, serialised (JSON for process state; any bytes for bulk). */
  body: Buffer;
}

export type Version = readonly [epoch: number, seq: number];

/** < 0: a is older than b; 0: same version; > 0: a is newer. */
export function compareVersion(a: Version, b: Version): number {
  return a[0] !== b[0] ? a[0] - b[0] : a[1] - b[1];
}

export function versionOf(row: Pick<CachedRow, 'epoch' | 'seq'> | undefined): Version {
  return row ? [row.epoch, row.seq] : [0, 0];
}

const GROUP_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
const NODE_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export interface RowHeader {
  group: string;
  epoch: number;
  seq: number;
  writer: string;
  atMs: number;
  /** Whole row size in bytes. */
  size: number;
  /** Offset of this frame's body within the row. */
  off: number;
}

/** Checks a ROW frame header; returns the problem, or null when it is well-formed. */
export function rowHeaderProblem(
  h: Record<string, unknown>,
  bodyLength: number,
  maxRowBytes: number,
): string | null {
  if (typeof h.group !== 'string' || !GROUP_RE.test(h.group)) return 'group is not a group name';
  if (!isCount(h.epoch) || h.epoch === 0) return 'epoch is not a positive integer';
  if (!isCount(h.seq) || h.seq === 0) return 'seq is not a positive integer';
  if (typeof h.writer !== 'string' || !NODE_RE.test(h.writer)) return 'writer is not a node name';
  if (typeof h.atMs !== 'number' || !Number.isFinite(h.atMs)) return 'atMs is not a number';
  if (!isCount(h.size)) return 'size is not a non-negative integer';
  if (h.size > maxRowBytes) return `row of ${h.size} B exceeds the ${maxRowBytes} B limit`;
  if (!isCount(h.off) || h.off + bodyLength > h.size) return 'chunk does not fit the row';
  return null;
}

export function isGroupName(s: unknown): s is string {
  return typeof s === 'string' && GROUP_RE.test(s);
}

export function isNodeName(s: unknown): s is string {
  return typeof s === 'string' && NODE_RE.test(s);
}

function isCount(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

function rowOf(h: RowHeader, body: Buffer, nowMs: number): CachedRow {
  return {
    group: h.group,
    epoch: h.epoch,
    seq: h.seq,
    writer: h.writer,
    atMs: h.atMs,
    localAtMs: nowMs,
    body,
  };
}

/** A ROW header's own fields and nothing else: a header may carry any padding, and a kept header keeps all of it. */
export function rowHeaderOf(h: Record<string, unknown>): RowHeader {
  return {
    group: h.group as string,
    epoch: h.epoch as number,
    seq: h.seq as number,
    writer: h.writer as string,
    atMs: h.atMs as number,
    size: h.size as number,
    off: h.off as number,
  };
}

const EMPTY = Buffer.alloc(0);
/** First allocation of a row in assembly: a few chunks' worth. */
const MIN_ASSEMBLY_BYTES = 256 * 1024;

/**
 * Bytes of chunked rows in assembly, shared by every link. A row's declared size is reserved at its
 * first chunk, before anything is buffered, and given back when it completes, is superseded, or its
 * link closes; a first chunk that does not fit is refused, so rows already admitted always complete.
 * A row whose chunks stopped coming for `stallMs` gives its bytes up to one that needs them: a peer
 * cannot hold the budget with one chunk per link.
 */
export class AssemblyBudget {
  readonly limitBytes: number;
  private readonly stallMs: number;
  private readonly holders = new Set<RowAssembler>();
  private used = 0;

  constructor(limitBytes: number, stallMs: number) {
    this.limitBytes = limitBytes;
    this.stallMs = stallMs;
  }

  get reservedBytes(): number {
    return this.used;
  }

  reserve(who: RowAssembler, bytes: number, nowMs: number): boolean {
    if (this.used + bytes > this.limitBytes) {
      for (const h of this.holders) if (h !== who && nowMs - h.lastChunkMs > this.stallMs) h.clear();
      if (this.used + bytes > this.limitBytes) return false;
    }
    this.used += bytes;
    this.holders.add(who);
    return true;
  }

  release(who: RowAssembler, bytes: number): void {
    this.used -= bytes;
    this.holders.delete(who);
  }
}

/**
 * Reassembles the chunked rows of one link. A sender's pump finishes one big row before it starts
 * the next (peer-connection.ts), so a link has at most one row in assembly: a first chunk of
 * another row supersedes it, and memory per link is at most one row (≤ the row size limit, checked
 * in the header). Chunks are copied into the row as they come, so nothing pins the frame buffers
 * they arrived in (a 1-byte chunk behind a 60 KB header would otherwise keep the 60 KB), and a
 * row's bytes are one buffer however small its chunks (no per-chunk object to pay for).
 */
export class RowAssembler {
  private readonly budget: AssemblyBudget;
  private partial: { h: RowHeader; buf: Buffer; got: number } | null = null;
  /** performance.now() of the last chunk that continued the row in assembly. */
  lastChunkMs = 0;

  constructor(budget: AssemblyBudget) {
    this.budget = budget;
  }

  /**
   * Adds one chunk; returns the whole row once its last chunk arrived. 'over-budget': a first
   * chunk the budget cannot take (the row is refused); 'dropped': a chunk that continues nothing.
   */
  add(
    h: RowHeader,
    body: Buffer,
    nowMs = performance.now(),
  ): CachedRow | 'partial' | 'dropped' | 'over-budget' {
    // A whole row in one frame: copied, so the cache never keeps the frame it came in.
    if (h.off === 0 && body.length === h.size) return rowOf(h, Buffer.from(body), nowMs);
    if (h.off === 0) {
      this.clear();
      if (!this.budget.reserve(this, h.size, nowMs)) return 'over-budget';
      this.partial = { h, buf: EMPTY, got: 0 };
    }
    const p = this.partial;
    if (!p || p.h.group !== h.group || p.h.epoch !== h.epoch || p.h.seq !== h.seq) return 'dropped';
    if (p.got !== h.off) {
      this.clear(); // a gap: the row can never complete
      return 'dropped';
    }
    if (p.got + body.length > p.buf.length) {
      // Grows by doubling up to the declared size: memory follows the bytes that came, not the
      // size a header claims, and a row costs a handful of allocations, not one per chunk.
      const grown = Buffer.allocUnsafe(
        Math.min(p.h.size, Math.max(p.got + body.length, 2 * p.buf.length, MIN_ASSEMBLY_BYTES)),
      );
      p.buf.copy(grown, 0, 0, p.got);
      p.buf = grown;
    }
    body.copy(p.buf, p.got);
    p.got += body.length;
    this.lastChunkMs = nowMs;
    if (p.got < p.h.size) return 'partial';
    this.partial = null;
    this.budget.release(this, p.h.size);
    // The last growth stopped at the declared size, so the buffer is exactly the row.
    return rowOf(p.h, p.buf, nowMs);
  }

  /** Gives up the row in assembly (superseded, stalled, or its link closed). */
  clear(): void {
    if (!this.partial) return;
    this.budget.release(this, this.partial.h.size);
    this.partial = null;
  }

  /** Bytes received of the row in assembly. */
  get heldBytes(): number {
    return this.partial?.got ?? 0;
  }
}
