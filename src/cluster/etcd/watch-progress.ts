// A watch stream that has stopped answering is given up within WATCH_SILENCE_BOUND_MS, not when
// gRPC's keepalive declares its connection dead (3–13 s). etcd3 runs every watch of a client on one
// stream to one member; when that member hangs (SIGSTOPped, a frozen disk: its port accepts, nothing
// answers) the stream goes quiet with no error and every change under the watched prefixes is
// missed meanwhile (a pause, a revoked token). So a stream quiet for PROGRESS_AFTER_MS is sent
// etcd's WatchProgressRequest (answered at once by the member, no raft, no disk); no answer within
// answerMs and the stream is failed as UNAVAILABLE: etcd3 marks the member failed (member-choice.ts
// puts it last), drops its connections and resumes every watcher from its last revision on another
// member. Relies on etcd3 1.1.2's WatchManager (state, stream, handleResponse) and grpc-js's
// stream.call: test/chaos/hung-watch-member.test.ts pins that against a real etcd.
import { status as GrpcStatus } from '@grpc/grpc-js';
import type { Etcd3 } from 'etcd3';

/** A stream quiet this long is asked for its progress. */
export const PROGRESS_AFTER_MS = 1_000;
/** How often the streams are looked at. */
export const PROGRESS_TICK_MS = 500;
/** The least time a progress request may go unanswered before the stream is given up. */
export const PROGRESS_ANSWER_MS = 2_000;
/**
 * The longest a hung member keeps a watch stream silent: quiet PROGRESS_AFTER_MS, a tick to send the
 * request, PROGRESS_ANSWER_MS for the answer, a tick to notice (with the default call deadline).
 */
export const WATCH_SILENCE_BOUND_MS = PROGRESS_AFTER_MS + 2 * PROGRESS_TICK_MS + PROGRESS_ANSWER_MS;

/** etcd3's WatchManager and grpc-js's duplex stream, as far as this module uses them. */
interface WatchResponse {
  watch_id?: string | number;
  created?: boolean;
}
interface GrpcStream {
  write(msg: unknown): boolean;
  call?: { cancelWithStatus(code: number, details: string): void };
}
interface ManagerInternals {
  state: number;
  stream?: GrpcStream;
  watchers: unknown[];
  handleResponse(res: WatchResponse): void;
  handleCreatedResponse(res: WatchResponse): void;
}
/** etcd3's State.Connected. */
const CONNECTED = 2;

export interface WatchProgressOptions {
  /** How long a progress request may go unanswered (ms); at least PROGRESS_ANSWER_MS. */
  answerMs: number;
  /** Told once per stream given up (a log line, a counter). */
  onSilent?: ((silentMs: number) => void) | undefined;
  /** Monotonic ms (default performance.now). */
  now?: () => number;
}

/** A progress response is not tied to any watcher (etcd: WatchId -1, "broadcast to all"). */
export function isProgressResponse(res: WatchResponse): boolean {
  return !res.created && String(res.watch_id) === '-1';
}

export class WatchProgress {
  private readonly manager: ManagerInternals;
  private readonly o: WatchProgressOptions;
  private readonly now: () => number;
  private readonly timer: NodeJS.Timeout;
  private stream: GrpcStream | undefined;
  /** The stream last given up: failed once, whatever etcd3 does with it meanwhile. */
  private givenUp: GrpcStream | undefined;
  /** Monotonic ms of the last message the current stream carried (or its start). */
  private heardAtMs = 0;
  /** Monotonic ms of the progress request not answered yet; null: none outstanding. */
  private askedAtMs: number | null = null;

  /** Follows the watch stream of `client` until stop(). */
  constructor(client: Etcd3, o: WatchProgressOptions) {
    this.o = o;
    this.now = o.now ?? (() => performance.now());
    this.manager = (client as unknown as { watchManager: ManagerInternals }).watchManager;
    const m = this.manager;
    const onResponse = m.handleResponse.bind(m);
    const onCreated = m.handleCreatedResponse.bind(m);
    // etcd3 would throw on a response no watcher owns; a progress answer only says the stream lives.
    m.handleResponse = (res) => {
      this.heard();
      if (!isProgressResponse(res)) onResponse(res);
    };
    m.handleCreatedResponse = (res) => {
      this.heard();
      onCreated(res);
    };
    this.timer = setInterval(() => this.check(), PROGRESS_TICK_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private heard(): void {
    this.heardAtMs = this.now();
    this.askedAtMs = null;
  }

  /** One look: ask a quiet stream for its progress; give up one that has not answered. */
  check(): void {
    const m = this.manager;
    const live = m.state === CONNECTED && m.watchers.length > 0 ? m.stream : undefined;
    const stream = live === this.givenUp ? undefined : live;
    if (stream !== this.stream) {
      this.stream = stream;
      this.heard();
    }
    if (!stream) return;
    const now = this.now();
    if (this.askedAtMs !== null && now - this.askedAtMs >= Math.max(PROGRESS_ANSWER_MS, this.o.answerMs)) {
      const silentMs = now - this.heardAtMs;
      this.givenUp = stream;
      this.stream = undefined;
      this.askedAtMs = null;
      this.o.onSilent?.(silentMs);
      // As a dead connection would fail it: etcd3 marks the member failed and resumes the watchers
      // from their last revisions on a new stream (to another member first).
      stream.call?.cancelWithStatus(
        GrpcStatus.UNAVAILABLE,
        `watch stream silent for ${Math.round(silentMs)} ms: no answer to a progress request`,
      );
      return;
    }
    if (this.askedAtMs === null && now - this.heardAtMs >= PROGRESS_AFTER_MS) {
      this.askedAtMs = now;
      stream.write({ progress_request: {} });
    }
  }
}
