// A prefix watch that never goes silent for good. etcd3 runs every watch of a client on one gRPC
// stream and puts no deadline on a watch's creation: a stream re-created on a connection that never
// answers (seen after a restart of every etcd member, on TLS) leaves the watcher unconfirmed with no
// error, and whoever follows the prefix misses every change from then on. Here a watch that etcd has
// not confirmed (created, or re-created after a disconnect) within `confirmMs` is started again on a
// new client; every confirmation asks the owner to re-read the prefix (events may have been missed).
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import type { Logger } from 'pino';

export interface ConfirmedWatchOptions {
  /** A new etcd client for the watch (it is closed with the watch, or when replaced). */
  newClient: () => Etcd3;
  prefix: string;
  onPut: (kv: IKeyValue) => void;
  onDelete: (kv: IKeyValue) => void;
  /** After every confirmation of the watch (the first included): re-read the prefix. */
  resync: () => void;
  /** How long a watch may stay unconfirmed before its client is replaced (ms). */
  confirmMs: number;
  log?: Logger;
  /** Counts replacements (a metric). */
  onReplace?: () => void;
}

export class ConfirmedWatch {
  private readonly o: ConfirmedWatchOptions;
  private client: Etcd3 | null = null;
  private watcher: Watcher | null = null;
  /** Monotonic ms since which the current watcher has not been confirmed; null while it is. */
  private unconfirmedSince: number | null = null;
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(o: ConfirmedWatchOptions) {
    this.o = o;
    this.open();
    this.timer = setInterval(() => this.check(), Math.max(100, Math.floor(o.confirmMs / 4)));
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    await this.drop();
  }

  private open(): void {
    const client = this.o.newClient();
    const w = client.watch().prefix(this.o.prefix).watcher();
    this.client = client;
    this.watcher = w;
    this.unconfirmedSince = performance.now();
    w.on('put', (kv) => this.o.onPut(kv));
    w.on('delete', (kv) => this.o.onDelete(kv));
    w.on('connected', () => {
      if (this.watcher !== w) return;
      this.unconfirmedSince = null;
      this.o.resync();
    });
    w.on('disconnected', () => {
      if (this.watcher === w) this.unconfirmedSince ??= performance.now();
    });
    // Cancelled by etcd (a compacted revision, an expired auth token): start again on a new client.
    w.on('error', (err: unknown) => {
      if (this.watcher !== w || this.closed) return;
      this.o.log?.warn({ err, prefix: this.o.prefix }, 'watch cancelled by etcd; starting it again');
      void this.replace();
    });
  }

  private check(): void {
    if (this.closed || this.unconfirmedSince === null) return;
    const waitedMs = performance.now() - this.unconfirmedSince;
    if (waitedMs < this.o.confirmMs) return;
    this.o.log?.warn(
      { prefix: this.o.prefix, waitedMs: Math.round(waitedMs) },
      'etcd has not confirmed the watch: starting it again on a new client',
    );
    void this.replace();
  }

  private async replace(): Promise<void> {
    this.o.onReplace?.();
    await this.drop();
    if (!this.closed) this.open();
  }

  private async drop(): Promise<void> {
    const w = this.watcher;
    const client = this.client;
    this.watcher = null;
    this.client = null;
    // Closing the client ends the stream, which lets a cancel still waiting for it settle.
    const cancelled = w?.cancel().catch(() => {});
    client?.close();
    await cancelled;
  }
}
