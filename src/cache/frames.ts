// The peer channel's wire format: length-prefixed frames inside the TLS stream, each a type byte,
// a small JSON header and an optional binary body (a row's bytes, or one chunk of them).
//   u32 BE  length of everything after it (type + header length + header + body)
//   u8      frame type
//   u32 BE  header length
//   …       header, UTF-8 JSON object
//   …       body
// Invariants: a frame never exceeds MAX_FRAME_BYTES (big rows travel as chunks), a header never
// exceeds MAX_HEADER_BYTES, and a reader that met one bad frame refuses everything after it (a
// length-prefixed stream cannot be resynchronised: the connection must go).

export const FrameType = {
  /** Both ways, first frame: who we are and which cluster. */
  HELLO: 1,
  /** Either side of a new link, or a pull: what I hold per group; the other answers with newer rows, then SYNC_DONE. */
  SYNC: 2,
  SYNC_DONE: 3,
  /** A row or one chunk of it (`off` > 0 or body shorter than `size`). */
  ROW: 4,
  /** Acceptor → dialer: row (group, epoch, seq) is cached here. */
  ACK: 5,
  /** Liveness on an idle link. */
  PING: 6,
  PONG: 7,
  /** Failsafe: "I lead these groups and cannot reach etcd; can you, and will you stay out?" */
  FS_PING: 8,
  FS_ACK: 9,
} as const;
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];
const TYPE_NAMES = new Map<number, string>(Object.entries(FrameType).map(([k, v]) => [v, k]));

export const MAX_HEADER_BYTES = 64 * 1024;
/** Chunks are at most 256 KiB of body; the frame limit leaves room for the header. */
export const MAX_BODY_BYTES = 256 * 1024;
export const MAX_FRAME_BYTES = 1 + 4 + MAX_HEADER_BYTES + MAX_BODY_BYTES;

export interface Frame {
  type: FrameTypeCode;
  header: Record<string, unknown>;
  body: Buffer;
}

export class FrameError extends Error {
  /** Metric label: why the frame was refused. */
  readonly reason: 'malformed' | 'too-large';
  constructor(reason: 'malformed' | 'too-large', message: string) {
    super(message);
    this.name = 'FrameError';
    this.reason = reason;
  }
}

const EMPTY = Buffer.alloc(0);

export function typeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `type ${type}`;
}

/** Encodes one frame; throws FrameError when it would break the limits (a bug in the sender). */
export function encodeFrame(type: FrameTypeCode, header: object, body: Buffer = EMPTY): Buffer {
  const head = encodeFrameHead(type, header, body.length);
  if (body.length === 0) return head;
  return Buffer.concat([head, body], head.length + body.length);
}

/**
 * Encodes everything of a frame but its body, which the caller writes right after it as is: a chunk
 * of a big row goes to the socket as a view of the row, not as a copy (a 10 MB row to two peers
 * would otherwise allocate 20 MB of frame buffers, and their external-memory pressure forces major
 * GCs — pauses of tens of ms in the sender's event loop, right where its etcd keepalives run).
 */
export function encodeFrameHead(type: FrameTypeCode, header: object, bodyLength: number): Buffer {
  const h = Buffer.from(JSON.stringify(header));
  if (h.length > MAX_HEADER_BYTES)
    throw new FrameError(
      'too-large',
      `${typeName(type)} header of ${h.length} B exceeds ${MAX_HEADER_BYTES} B`,
    );
  if (bodyLength > MAX_BODY_BYTES)
    throw new FrameError(
      'too-large',
      `${typeName(type)} body of ${bodyLength} B exceeds ${MAX_BODY_BYTES} B`,
    );
  const out = Buffer.allocUnsafe(4 + 1 + 4 + h.length);
  out.writeUInt32BE(1 + 4 + h.length + bodyLength, 0);
  out.writeUInt8(type, 4);
  out.writeUInt32BE(h.length, 5);
  h.copy(out, 9);
  return out;
}

/**
 * Reassembles frames from stream chunks. `push` returns the frames completed by `chunk` and throws
 * a FrameError on the first bad one; after that the reader stays broken.
 */
export class FrameReader {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private broken: FrameError | null = null;

  push(chunk: Buffer): Frame[] {
    if (this.broken) throw this.broken;
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    const frames: Frame[] = [];
    while (this.pendingBytes >= 4) {
      const head = this.peek(4);
      const len = head.readUInt32BE(0);
      if (len < 5 || len > MAX_FRAME_BYTES) {
        throw this.fail(
          len > MAX_FRAME_BYTES ? 'too-large' : 'malformed',
          `frame length ${len} outside 5…${MAX_FRAME_BYTES}`,
        );
      }
      if (this.pendingBytes < 4 + len) break;
      const buf = this.take(4 + len);
      frames.push(this.parse(buf, len));
    }
    return frames;
  }

  private parse(buf: Buffer, len: number): Frame {
    const type = buf.readUInt8(4);
    if (!TYPE_NAMES.has(type)) throw this.fail('malformed', `unknown frame type ${type}`);
    const hLen = buf.readUInt32BE(5);
    if (hLen > MAX_HEADER_BYTES || 5 + hLen > len)
      throw this.fail('malformed', `${typeName(type)}: header length ${hLen} does not fit the frame`);
    let header: unknown;
    try {
      header = JSON.parse(buf.toString('utf8', 9, 9 + hLen));
    } catch (err) {
      throw this.fail('malformed', `${typeName(type)}: header is not JSON (${(err as Error).message})`);
    }
    if (!header || typeof header !== 'object' || Array.isArray(header))
      throw this.fail('malformed', `${typeName(type)}: header is not a JSON object`);
    return {
      type: type as FrameTypeCode,
      header: header as Record<string, unknown>,
      body: buf.subarray(9 + hLen, 4 + len),
    };
  }

  private fail(reason: 'malformed' | 'too-large', message: string): FrameError {
    this.broken = new FrameError(reason, message);
    this.pending = [];
    this.pendingBytes = 0;
    return this.broken;
  }

  private peek(n: number): Buffer {
    if (this.pending[0]!.length >= n) return this.pending[0]!;
    this.pending = [Buffer.concat(this.pending)];
    return this.pending[0]!;
  }

  private take(n: number): Buffer {
    const first = this.pending[0]!;
    if (first.length < n) this.pending = [Buffer.concat(this.pending)];
    const all = this.pending[0]!;
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    if (rest.length > 0) this.pending[0] = rest;
    else this.pending.shift();
    this.pendingBytes -= n;
    return out;
  }
}
