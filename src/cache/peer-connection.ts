// One authenticated link to one peer, either direction: frames in (FrameReader), frames out through
// a pump that never lets bulk data hog the event loop. Control frames (acks, pings, failsafe) go
// first; small rows next, coalesced per group (only the newest row of a group matters) and written
// only while the socket takes them, so the rest keep coalescing here; big rows go
// one chunk per turn of the event loop and at most `bulkBytesPerS`, so timers — the etcd keepalive,
// device heartbeats — still run between chunks and get the CPU they need; a transfer in progress
// always completes, and only the newest row of a group waits behind it.
// What the peer makes us owe it is bounded: replies waiting for the socket past a quarter of
// `maxQueuedReplyBytes` stop our reading until they are written, past all of it close the link.
// Nothing a frame's handler throws leaves this class: it closes this link, never the process.
import { EventEmitter } from 'node:events';
import type { TLSSocket } from 'node:tls';
import {
  encodeFrame,
  encodeFrameHead,
  type Frame,
  type FrameError,
  FrameReader,
  FrameType,
  type FrameTypeCode,
  typeName,
} from './frames.ts';
import type { CachedRow } from './rows.ts';

export interface PeerConnectionOptions {
  /** Body bytes per chunk of a big row. */
  chunkBytes: number;
  /** No frame from the peer for this long: the link is dead (a silent peer), close it. */
  idleTimeoutMs: number;
  /** Send a PING when we have sent nothing for this long. */
  pingIntervalMs: number;
  /**
   * Bandwidth a big row may take on this link, bytes/s (default 16 MiB/s): bulk state is never
   * urgent, and a gateway's CPU and network are shared with etcd keepalives and device heartbeats.
   */
  bulkBytesPerS?: number;
  /**
   * Replies (PONG, ACK, SYNC_DONE, FS_ACK: what the peer's own frames make us send) waiting for the
   * socket, bytes (default 1 MiB). Past a quarter of it we stop reading the peer until they are
   * written; past all of it (one batch of frames can still add some) the link is closed. A peer
   * that sends requests and reads none of the answers would otherwise grow our memory without end.
   */
  maxQueuedReplyBytes?: number;
}

/** Frames we send because the peer sent something: a peer that never reads can make us queue these. */
const REPLIES: ReadonlySet<number> = new Set([
  FrameType.PONG,
  FrameType.ACK,
  FrameType.SYNC_DONE,
  FrameType.FS_ACK,
]);

/** Why this side closed a link; `reason` is the label of coolctl_cache_rejects_total. */
export class LinkError extends Error {
  /** backlog: the peer does not read our replies; internal: handling its frame failed here (a bug). */
  readonly reason: 'backlog' | 'internal';
  constructor(reason: 'backlog' | 'internal', message: string, opts: { cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'LinkError';
    this.reason = reason;
  }
}

interface Transfer {
  row: CachedRow;
  off: number;
}

/** Events: 'frame' (Frame), 'close' (Error | null). */
export class PeerConnection extends EventEmitter {
  readonly node: string;
  readonly direction: 'in' | 'out';
  readonly openedAtMs = Date.now();
  private readonly socket: TLSSocket;
  private readonly opts: PeerConnectionOptions;
  private readonly reader = new FrameReader();
  private readonly control: Buffer[] = [];
  private readonly rows = new Map<string, CachedRow>();
  private readonly bulk = new Map<string, CachedRow>();
  private transfer: Transfer | null = null;
  /** Token bucket for bulk bytes. */
  private bulkTokens = 0;
  private bulkRefilledAtMs = performance.now();
  private bulkTimer: NodeJS.Timeout | undefined;
  private scheduled = false;
  private waitingDrain = false;
  private closed = false;
  /** Replies in `control`, bytes (the whole queue goes to the socket at each pump). */
  private queuedReplyBytes = 0;
  /**
   * Reading stopped until our replies go to the socket, at its next 'drain' (the peer takes them
   * slower than it asks). Meanwhile its frames cannot show it alive; a drain would.
   */
  private readPaused = false;
  private pausedAtMs = 0;
  private readonly maxQueuedReplyBytes: number;
  /** When the last whole frame came in: liveness is frames, not bytes. */
  private lastInMs = performance.now();
  private lastOutMs = performance.now();
  private readonly timer: NodeJS.Timeout;
  bytesOut = 0;
  bytesIn = 0;
  /** The wire version agreed in the HELLO exchange (0 until then): what this link may send. */
  wireVersion = 0;

  constructor(socket: TLSSocket, node: string, direction: 'in' | 'out', opts: PeerConnectionOptions) {
    super();
    this.socket = socket;
    this.node = node;
    this.direction = direction;
    this.opts = opts;
    this.maxQueuedReplyBytes = opts.maxQueuedReplyBytes ?? 1024 * 1024;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => {
      this.waitingDrain = false;
      this.schedule();
    });
    socket.on('error', (err) => this.close(err));
    socket.on('close', () => this.close(null));
    const tick = Math.max(50, Math.min(opts.pingIntervalMs, opts.idleTimeoutMs / 3));
    this.timer = setInterval(() => this.checkIdle(), tick);
    this.timer.unref();
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /**
   * Queues a control frame; sent before any row. Never throws: a frame that cannot be encoded (a
   * bug here, callers page their lists) or a reply backlog over the limit closes the link instead.
   */
  send(type: FrameTypeCode, header: object, body?: Buffer): void {
    if (this.closed) return;
    let buf: Buffer;
    try {
      buf = encodeFrame(type, header, body);
    } catch (err) {
      this.close(
        new LinkError(
          'internal',
          `cannot send ${typeName(type)} to ${this.node}: ${(err as Error).message}`,
          {
            cause: err,
          },
        ),
      );
      return;
    }
    this.control.push(buf);
    if (REPLIES.has(type)) {
      this.queuedReplyBytes += buf.length;
      if (this.queuedReplyBytes > this.maxQueuedReplyBytes) {
        this.close(
          new LinkError(
            'backlog',
            `${this.node} reads too slowly: ${this.queuedReplyBytes} B of replies queued (limit ${this.maxQueuedReplyBytes} B)`,
          ),
        );
        return;
      }
      if (this.queuedReplyBytes > this.maxQueuedReplyBytes / 4 && !this.readPaused) {
        // The peer takes our answers slower than it asks: read nothing more until they are out.
        this.readPaused = true;
        this.pausedAtMs = performance.now();
        this.socket.pause();
      }
    }
    this.schedule();
  }

  /** Queues a row; a newer row of the same group not yet sent replaces it. */
  sendRow(row: CachedRow): void {
    if (this.closed) return;
    if (row.body.length <= this.opts.chunkBytes) {
      this.rows.set(row.group, row);
    } else {
      // A transfer in progress finishes (restarting it for every newer row would starve the peer
      // of every row when rows come faster than the link carries them); the newest row queued
      // behind it replaces any older one still waiting.
      this.bulk.delete(row.group);
      this.bulk.set(row.group, row);
    }
    this.schedule();
  }

  /** Bytes queued but not yet handed to the socket (for tests and metrics). */
  get queuedBulkRows(): number {
    return this.bulk.size + (this.transfer ? 1 : 0);
  }

  close(err: Error | null): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    clearTimeout(this.bulkTimer);
    this.control.length = 0;
    this.rows.clear();
    this.bulk.clear();
    this.transfer = null;
    this.socket.destroy();
    this.emit('close', err);
  }

  private onData(chunk: Buffer): void {
    this.bytesIn += chunk.length;
    let frames: Frame[];
    try {
      frames = this.reader.push(chunk);
    } catch (err) {
      this.close(err as FrameError);
      return;
    }
    // Only a whole frame shows the peer alive: one trickling a byte at a time never completes one.
    if (frames.length > 0) this.lastInMs = performance.now();
    for (const f of frames) {
      if (this.closed) return;
      try {
        if (f.type === FrameType.PING) this.send(FrameType.PONG, {});
        else if (f.type !== FrameType.PONG) this.emit('frame', f);
      } catch (err) {
        // One peer's frame must never take the process down (this runs in the socket's 'data'
        // handler, where nothing else would catch it): the link goes, the peer reconnects.
        this.close(
          new LinkError(
            'internal',
            `handling ${typeName(f.type)} from ${this.node} failed: ${(err as Error)?.message ?? String(err)}`,
            { cause: err },
          ),
        );
        return;
      }
    }
  }

  private checkIdle(): void {
    const now = performance.now();
    if (this.readPaused) {
      // No drain for this long: the peer has taken nothing we sent.
      const ms = Math.round(now - this.pausedAtMs);
      if (ms > this.opts.idleTimeoutMs) {
        this.close(
          new LinkError(
            'backlog',
            `${this.node} took nothing we sent for ${ms} ms (${this.socket.writableLength + this.queuedReplyBytes} B waiting)`,
          ),
        );
        return;
      }
    } else if (now - this.lastInMs > this.opts.idleTimeoutMs) {
      this.close(new Error(`no frame from ${this.node} for ${Math.round(now - this.lastInMs)} ms`));
      return;
    }
    // A PING behind replies the peer has not taken would only add to them.
    if (now - this.lastOutMs >= this.opts.pingIntervalMs && this.control.length === 0)
      this.send(FrameType.PING, {});
  }

  private schedule(): void {
    if (this.scheduled || this.waitingDrain || this.closed) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    if (this.closed) return;
    const s = this.socket;
    s.cork();
    for (const buf of this.control) this.write(buf);
    this.control.length = 0;
    this.queuedReplyBytes = 0;
    if (this.readPaused) {
      // Our replies are out: read the peer again. We were not reading: its silence meanwhile was ours.
      this.readPaused = false;
      this.lastInMs = performance.now();
      s.resume();
    }
    // Small rows until the socket is full: the rest wait here, where a newer row of a group still
    // replaces an older one, rather than in the socket's buffer (10 000 rows written at once would
    // be one write of up to 640 MB, encrypted in one turn of the event loop).
    for (const row of this.rows.values()) {
      if (s.writableNeedDrain) break;
      this.writeRow(row, 0, row.body);
      this.rows.delete(row.group);
    }
    if (!this.transfer) {
      const next = this.bulk.values().next();
      if (!next.done) {
        this.bulk.delete(next.value.group);
        this.transfer = { row: next.value, off: 0 };
      }
    }
    const t = this.transfer;
    let bulkWaitMs = 0;
    if (t) {
      const part = t.row.body.subarray(t.off, t.off + this.opts.chunkBytes);
      bulkWaitMs = this.takeBulkTokens(part.length);
      if (bulkWaitMs === 0) {
        this.writeRow(t.row, t.off, part);
        t.off += part.length;
        if (t.off >= t.row.body.length) this.transfer = null;
      }
    }
    s.uncork();
    if (s.writableNeedDrain) this.waitingDrain = true;
    else if (bulkWaitMs > 0) {
      // Over the bulk budget: control frames and small rows still go out at once (schedule() on send).
      this.bulkTimer ??= setTimeout(() => {
        this.bulkTimer = undefined;
        this.schedule();
      }, bulkWaitMs);
    } else if (this.transfer || this.bulk.size > 0 || this.control.length > 0 || this.rows.size > 0)
      this.schedule();
  }

  /** 0 when `bytes` of bulk may go now (and takes them), else how long to wait for them. */
  private takeBulkTokens(bytes: number): number {
    const rate = this.opts.bulkBytesPerS ?? 16 * 1024 * 1024;
    const now = performance.now();
    const burst = 2 * this.opts.chunkBytes;
    this.bulkTokens = Math.min(burst, this.bulkTokens + ((now - this.bulkRefilledAtMs) / 1000) * rate);
    this.bulkRefilledAtMs = now;
    if (this.bulkTokens >= bytes) {
      this.bulkTokens -= bytes;
      return 0;
    }
    return Math.max(1, Math.ceil(((bytes - this.bulkTokens) / rate) * 1000));
  }

  private write(buf: Buffer): void {
    this.bytesOut += buf.length;
    this.lastOutMs = performance.now();
    this.socket.write(buf);
  }

  /** A ROW frame: its head, then the part of the row as a view (rows are never mutated once cached). */
  private writeRow(row: CachedRow, off: number, part: Buffer): void {
    const head = encodeFrameHead(
      FrameType.ROW,
      {
        group: row.group,
        epoch: row.epoch,
        seq: row.seq,
        writer: row.writer,
        atMs: row.atMs,
        size: row.body.length,
        off,
      },
      part.length,
    );
    this.write(head);
    if (part.length > 0) this.write(part);
  }
}
