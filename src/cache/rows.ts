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

function rowOf(h: RowHeader, body: Buffer): CachedRow {
  return { group: h.group, epoch: h.epoch, seq: h.seq, writer: h.writer, atMs: h.atMs, body };
}

/**
 * Reassembles rows sent in chunks, one in progress per group. A chunk of a newer version replaces
 * the row in progress; a chunk that does not continue it (gap, older version) is dropped.
 */
export class RowAssembler {
  private readonly partial = new Map<string, { h: RowHeader; parts: Buffer[]; got: number }>();

  /** Adds one chunk; returns the whole row once its last chunk arrived. */
  add(h: RowHeader, body: Buffer): CachedRow | 'partial' | 'dropped' {
    if (h.off === 0 && body.length === h.size) {
      this.partial.delete(h.group);
      return rowOf(h, Buffer.from(body));
    }
    let p = this.partial.get(h.group);
    if (h.off === 0) {
      if (p && compareVersion([h.epoch, h.seq], [p.h.epoch, p.h.seq]) < 0) return 'dropped';
      p = { h, parts: [], got: 0 };
      this.partial.set(h.group, p);
    } else if (!p || p.h.epoch !== h.epoch || p.h.seq !== h.seq || p.got !== h.off) {
      return 'dropped';
    }
    // A view, not a copy: it only lives until the row is whole and concatenated below (a copy per
    // chunk would allocate the row twice over, in 64 KiB pieces that make the GC work hard).
    p.parts.push(body);
    p.got += body.length;
    if (p.got < h.size) return 'partial';
    this.partial.delete(h.group);
    return rowOf(h, Buffer.concat(p.parts, p.got));
  }

  /** Bytes held in rows not yet complete. */
  get heldBytes(): number {
    let n = 0;
    for (const p of this.partial.values()) n += p.got;
    return n;
  }
}
