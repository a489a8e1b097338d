// ViewWatches: the watches that keep the watched view current — one per leadership sub-prefix, from
// the revision after a load, on their own etcd client, replaced with its watches when etcd leaves one
// unconfirmed. Each start() is a new generation: the late events of older watches never reach the view.
import type { Etcd3, Watcher } from 'etcd3';
import type { Logger } from 'pino';
import { createEtcdClient, type EtcdSecurity } from './etcd-client.ts';
import { SNAPSHOT_SUBPREFIXES } from './snapshot.ts';
import type { WatchEvent } from './watched-view.ts';

/** How long a watch may stay unconfirmed while etcd answers reads before its client is replaced. */
const WATCH_CONFIRM_MS = 3_000;

export interface ViewWatchesOptions {
  etcd: { hosts: string[] } & EtcdSecurity;
  prefix: string;
  callTimeoutMs: number;
  logger: Logger;
  /** Monotonic clock, ms. */
  now: () => number;
  /** The node is stopping: no new watch. */
  stopping: () => boolean;
  /** Events of the current generation, in order. */
  onEvents: (events: readonly WatchEvent[]) => void;
  /** A watch was created, or re-created after a disconnect. */
  onConnected: () => void;
  /** A watch lost its stream; it resumes from its last revision. */
  onDisconnected: () => void;
  /** etcd cancelled a current watch (e.g. a compacted revision): events may be lost. */
  onCancelled: () => void;
  /** The client gave a silent watch stream up (its member did not answer a progress request). */
  onSilent: () => void;
  /** The client was replaced because etcd left a watch unconfirmed. */
  onReplaced: () => void;
}

export class ViewWatches {
  private readonly opts: ViewWatchesOptions;
  private watchers: Watcher[] = [];
  private generation = 0;
  /**
   * The watches' own client. etcd3 runs every watch of a client on one gRPC stream and gives its
   * creation no deadline: a stream left on a connection that never answers (seen after a restart of
   * every member, on TLS) keeps the view silent for good while unary reads succeed. Such a client
   * is replaced (replaceIfUnconfirmed), without touching the client that elections and reads use.
   */
  private client: Etcd3;
  /** Sub-prefixes whose current watch has not been confirmed by etcd yet, and since when (monotonic ms). */
  private readonly unconfirmed = new Map<string, number>();

  constructor(opts: ViewWatchesOptions) {
    this.opts = opts;
    this.client = this.newClient();
  }

  /**
   * Watches only what the view holds: a large or busy key elsewhere under the prefix never wakes us.
   * One watch per sub-prefix, from `fromRevision`; a new load starts a new generation and the old
   * watches' late events are dropped.
   */
  start(fromRevision: number): void {
    const generation = ++this.generation;
    for (const w of this.watchers) void w.cancel().catch(() => {});
    this.watchers = [];
    this.unconfirmed.clear();
    for (const sub of SNAPSHOT_SUBPREFIXES) this.startSub(sub, fromRevision, generation);
  }

  private startSub(sub: string, fromRevision: number, generation: number): void {
    if (this.opts.stopping() || generation !== this.generation) return;
    this.unconfirmed.set(sub, this.opts.now());
    const w = this.client
      .watch()
      .prefix(`${this.opts.prefix}/${sub}/`)
      .startRevision(String(fromRevision))
      .watcher();
    this.watchers.push(w);
    w.on('data', (res) => {
      if (generation !== this.generation || res.events.length === 0) return;
      this.opts.onEvents(res.events);
    });
    w.on('connected', () => {
      if (generation === this.generation) this.unconfirmed.delete(sub);
      this.opts.onConnected();
    });
    w.on('disconnected', (err: unknown) => {
      this.opts.logger.debug({ err }, 'watch disconnected; it resumes from its last revision');
      if (generation === this.generation && !this.unconfirmed.has(sub))
        this.unconfirmed.set(sub, this.opts.now());
      this.opts.onDisconnected();
    });
    w.on('error', (err: unknown) => {
      // Cancelled by etcd (e.g. compacted revision): events may be lost, so read everything again.
      if (generation !== this.generation) return;
      this.opts.logger.warn({ err, watch: sub }, 'watch cancelled by etcd; loading the view again');
      this.opts.onCancelled();
    });
  }

  /** The client of the view's watches: a stream its member leaves silent is resumed elsewhere. */
  private newClient(): Etcd3 {
    return createEtcdClient({
      ...this.opts.etcd,
      callTimeoutMs: this.opts.callTimeoutMs,
      onWatchSilent: (silentMs) => {
        this.opts.onSilent();
        this.opts.logger.warn(
          { silentMs: Math.round(silentMs) },
          'watch stream silent (its etcd member does not answer): resuming the watches on another member',
        );
      },
    });
  }

  /**
   * A watch etcd has not confirmed (created, or re-created after a disconnect) within
   * WATCH_CONFIRM_MS while etcd answers reads: the view may be missing events, so decisions from it
   * could wait forever on a leader that is gone. Cancels the watches and replaces the client; true
   * when it did, and the caller must load the view again (which starts new watches).
   */
  replaceIfUnconfirmed(): boolean {
    if (this.unconfirmed.size === 0) return false;
    const since = Math.min(...this.unconfirmed.values());
    const waitedMs = this.opts.now() - since;
    if (waitedMs < Math.max(WATCH_CONFIRM_MS, 4 * this.opts.callTimeoutMs)) return false;
    this.opts.logger.warn(
      { watches: [...this.unconfirmed.keys()], waitedMs: Math.round(waitedMs) },
      'etcd answers reads but has not confirmed our watches: reconnecting them on a new client and loading the view again',
    );
    this.opts.onReplaced();
    const old = this.client;
    this.cancel();
    this.client = this.newClient();
    old.close();
    return true;
  }

  /** Cancels the watches; their late events are dropped. The client stays open (close() ends it). */
  cancel(): void {
    this.generation++;
    for (const w of this.watchers) void w.cancel().catch(() => {});
    this.watchers = [];
    this.unconfirmed.clear();
  }

  /** Cancels the watches and closes the client. */
  close(): void {
    this.cancel();
    this.client.close();
  }
}
