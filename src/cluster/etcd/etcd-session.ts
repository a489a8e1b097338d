// EtcdSession: this node's one etcd lease and its LeaseGuard. The lease is kept alive by a worker
// thread (keepalive-worker.ts) with its own event loop and etcd client, so bulk work on the main
// loop cannot delay a keepalive; it feeds the guard, shared through a SharedArrayBuffer, with the
// SEND time of each acknowledged keepalive — we never rely on the etcd3 package's `lost` timing
// (≈ 2×TTL). mayAct() stays a synchronous read on this thread. This thread beats a heartbeat into the
// shared state; a main loop silent past the stall bound loses the lease (a hung process must not
// hold groups). Invariants: at most one live lease; when etcd says it is gone (TTL ≤ 0 / not found)
// the guard is invalidated before 'lost' is emitted, and a fresh lease is granted with backoff; the
// lease id is kept in <dataDir>/lease-id.<node> so that a restarted node revokes its predecessor
// instead of waiting out the TTL — never another node's: the file is per node, and the data dir is
// locked to one process. A worker that fails or exits is reported as 'lost' and replaced.
import { EventEmitter } from 'node:events';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { DataDirLock } from '../data-dir-lock.ts';
import { ClusterError, ClusterErrorCodes } from '../errors.ts';
import { LeaseGuard } from '../lease-guard.ts';
import type { EtcdSecurity } from './etcd-client.ts';
import type { KeepaliveWorkerData, MainMessage, WorkerMessage } from './keepalive-worker.ts';
import { leaseHex } from './lease-wire.ts';

export interface EtcdSessionOptions {
  /** etcd endpoints: the keepalive worker makes its own client. */
  hosts: string[];
  /** TLS and user for the worker's client. */
  security?: EtcdSecurity;
  /** This node's name: the lease-id file and the data dir lock say whose they are. */
  node: string;
  /** Lease TTL asked from etcd, whole seconds (etcd's unit). */
  ttlS: number;
  keepaliveIntervalMs: number;
  safetyMarginMs: number;
  callTimeoutMs: number;
  dataDir: string;
  /**
   * A main event loop silent this long gives the lease up (default 1.5 × TTL): shorter pauses are
   * ridden out by the worker, longer ones hand the groups on.
   */
  mainStallBoundMs?: number;
  logger: Logger;
  /** The caller's monotonic clock, ms: what guard.deadlineMs() is expressed in. */
  now?: () => number;
}

export interface SessionLease {
  /** Decimal lease id, as etcd's gRPC API carries it. */
  id: string;
  /** Lowercase hex, as in election keys. */
  hex: string;
}

/** How often this thread says it is alive. */
const HEARTBEAT_MS = 50;
const RESPAWN_BACKOFF_MS = { first: 100, max: 2_000 };
const WORKER_URL = new URL(
  `./keepalive-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`,
  import.meta.url,
);

/**
 * Events: 'lease' (SessionLease) a new lease is live; 'lost' (reason) etcd dropped it, guard already
 * invalidated; 'expired' the guard deadline passed without a newer ack; 'proven' an ack moved the
 * deadline while the guard had lapsed; 'keepalive' (seconds from send to ack); 'keepalive-failed'
 * (member, host:port) an attempt failed there and went on to the next member; 'lease-file' (ok:
 * boolean) a write of the lease-id file succeeded or failed.
 */
export class EtcdSession extends EventEmitter {
  readonly guard: LeaseGuard;
  private readonly opts: EtcdSessionOptions;
  private readonly log: Logger;
  private readonly shared = LeaseGuard.sharedState();
  private readonly stallBoundMs: number;
  private readonly lock: DataDirLock;
  private current: SessionLease | null = null;
  private worker: Worker | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private respawnTimer: NodeJS.Timeout | undefined;
  private respawnBackoffMs = RESPAWN_BACKOFF_MS.first;
  private started = false;
  private stopped = false;
  private lapsed = true;
  private firstLease: { resolve: (l: SessionLease) => void; reject: (e: unknown) => void } | undefined;

  constructor(opts: EtcdSessionOptions) {
    super();
    this.opts = opts;
    this.log = opts.logger;
    this.stallBoundMs = opts.mainStallBoundMs ?? opts.ttlS * 1500;
    if (!(this.stallBoundMs >= Math.max(opts.keepaliveIntervalMs, HEARTBEAT_MS * 4))) {
      throw new RangeError(
        `EtcdSession: mainStallBoundMs ${this.stallBoundMs} must be ≥ keepaliveIntervalMs (${opts.keepaliveIntervalMs}) and ≥ ${HEARTBEAT_MS * 4}`,
      );
    }
    this.guard = new LeaseGuard({
      ttlMs: opts.ttlS * 1000,
      marginMs: opts.safetyMarginMs,
      shared: this.shared,
      ...(opts.now ? { now: opts.now } : {}),
    });
    this.lock = new DataDirLock(opts.dataDir, opts.node, this.log);
  }

  get lease(): SessionLease | null {
    return this.current;
  }

  private get leaseFile(): string {
    return join(this.opts.dataDir, `lease-id.${encodeURIComponent(this.opts.node)}`);
  }

  /**
   * Locks the data dir (DATA_DIR_IN_USE if another live process has it), then starts the keepalive
   * worker, which revokes the lease a previous run of this node left behind and grants ours.
   * Resolves with the first lease; `signal` bounds the wait.
   */
  async start(signal: AbortSignal): Promise<SessionLease> {
    if (this.started) throw new ClusterError(ClusterErrorCodes.ABORTED, 'session already started');
    this.started = true;
    await mkdir(this.opts.dataDir, { recursive: true });
    await this.lock.acquire();
    try {
      await this.dropLegacyLeaseFile();
      signal.throwIfAborted();
      const first = new Promise<SessionLease>((resolve, reject) => {
        this.firstLease = { resolve, reject };
      });
      const onAbort = (): void => this.firstLease?.reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      this.guard.beat();
      this.heartbeat = setInterval(() => this.guard.beat(), HEARTBEAT_MS);
      this.heartbeat.unref();
      this.spawnWorker();
      try {
        return await first;
      } finally {
        signal.removeEventListener('abort', onAbort);
        this.firstLease = undefined;
        // From here on the worker must not keep the process alive on its own.
        this.worker?.unref();
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** Stops keepalives and revokes the lease (etcd deletes every key it held, in one revision). Bounded. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.heartbeat);
    clearTimeout(this.expiryTimer);
    clearTimeout(this.respawnTimer);
    this.guard.invalidate('session stopped');
    this.current = null;
    const worker = this.worker;
    this.worker = undefined;
    if (worker) await this.stopWorker(worker);
    await this.lock.release();
  }

  /** Asks the worker to revoke and exit; terminates it if it has not within the bound. */
  private async stopWorker(worker: Worker): Promise<void> {
    worker.ref(); // the revoke must get its chance even if nothing else keeps the process up
    const boundMs = this.opts.callTimeoutMs * 2 + 500;
    let timer: NodeJS.Timeout | undefined;
    const exited = new Promise<void>((resolve) => {
      worker.once('exit', () => resolve());
      timer = setTimeout(resolve, boundMs);
    });
    worker.postMessage({ t: 'stop' } satisfies MainMessage);
    await exited;
    clearTimeout(timer);
    await worker.terminate().catch(() => {});
  }

  /**
   * <dataDir>/lease-id, from before the file was per node, does not say whose lease it holds: with
   * the old deploy example every instance on a host shared one data dir, so it may be another live
   * node's. It is never revoked (ours, if it was, expires with its TTL) and is removed.
   */
  private async dropLegacyLeaseFile(): Promise<void> {
    const legacy = join(this.opts.dataDir, 'lease-id');
    const id = await readFile(legacy, 'utf8').catch(() => null);
    if (id === null) return;
    await rm(legacy, { force: true });
    this.log.info(
      { file: legacy, lease: /^\d+$/.test(id.trim()) ? leaseHex(id.trim()) : null },
      'removed a lease-id file that names no node; its lease is left to expire with its TTL',
    );
  }

  private spawnWorker(): void {
    const data: KeepaliveWorkerData = {
      shared: this.shared,
      hosts: this.opts.hosts,
      security: this.opts.security ?? {},
      ttlS: this.opts.ttlS,
      keepaliveIntervalMs: this.opts.keepaliveIntervalMs,
      safetyMarginMs: this.opts.safetyMarginMs,
      callTimeoutMs: this.opts.callTimeoutMs,
      leaseFile: this.leaseFile,
      stallBoundMs: this.stallBoundMs,
    };
    // The parent's Node options are not the worker's (an --input-type or a loader breaks it); V8's
    // flags (heap sizes, --no-sparkplug) are per process and apply to it anyway.
    const worker = new Worker(WORKER_URL, { workerData: data, name: 'coolctl-keepalive', execArgv: [] });
    this.worker = worker;
    if (!this.firstLease) worker.unref();
    worker.on('message', (m: WorkerMessage) => {
      if (this.worker === worker) this.onMessage(m);
    });
    worker.on('error', (err) => {
      if (this.worker !== worker) return;
      this.log.error({ err }, 'keepalive worker failed');
    });
    worker.on('exit', (code) => {
      if (this.worker !== worker || this.stopped) return;
      this.worker = undefined;
      this.onWorkerGone(`keepalive worker exited (code ${code})`);
    });
  }

  /** The worker is gone with whatever lease it held: report it lost and start a new worker. */
  private onWorkerGone(reason: string): void {
    this.guard.invalidate(reason);
    const lease = this.current;
    this.current = null;
    this.markLapsed();
    this.log.warn({ lease: lease?.hex ?? null, reason, respawnInMs: this.respawnBackoffMs }, 'lease lost');
    if (lease) this.emit('lost', reason);
    // The new worker revokes that lease from the lease-id file, then grants a fresh one.
    this.respawnTimer = setTimeout(() => {
      if (!this.stopped) this.spawnWorker();
    }, this.respawnBackoffMs);
    // While start() waits for its first lease the process must stay up; after that, not for this.
    if (!this.firstLease) this.respawnTimer.unref();
    this.respawnBackoffMs = Math.min(this.respawnBackoffMs * 2, RESPAWN_BACKOFF_MS.max);
  }

  private onMessage(m: WorkerMessage): void {
    switch (m.t) {
      case 'log':
        this.log[m.level](withError(m.fields), m.msg);
        return;
      case 'lease': {
        const lease = { id: m.id, hex: m.hex };
        this.current = lease;
        this.respawnBackoffMs = RESPAWN_BACKOFF_MS.first;
        if (m.moved) this.onProof();
        this.emit('lease', lease);
        this.firstLease?.resolve(lease);
        return;
      }
      case 'ack':
        this.emit('keepalive', m.seconds);
        if (m.moved) this.onProof();
        return;
      case 'keepalive-failed':
        this.emit('keepalive-failed', m.member);
        return;
      case 'lease-file':
        this.emit('lease-file', m.ok);
        return;
      case 'lost':
        if (this.current?.hex !== m.hex) return;
        this.current = null;
        this.guard.noteInvalid(m.reason);
        this.markLapsed();
        this.emit('lost', m.reason);
        return;
      case 'stopped':
        return;
    }
  }

  /** An ack moved the shared deadline. */
  private onProof(): void {
    if (!this.guard.mayAct()) return; // moved, but a newer stall or invalidation already overtook it
    if (this.lapsed) {
      this.lapsed = false;
      this.emit('proven');
    }
    this.scheduleExpiry();
  }

  private scheduleExpiry(): void {
    clearTimeout(this.expiryTimer);
    // Only a notification for roles and logs: mayAct() reads the clock itself and does not wait for it.
    this.expiryTimer = setTimeout(() => this.onExpiry(), Math.max(0, this.guard.remainingMs()) + 1);
    this.expiryTimer.unref();
  }

  private onExpiry(): void {
    if (this.lapsed || this.stopped) return;
    // The worker may have moved the deadline without this loop hearing of it yet.
    if (this.guard.mayAct()) {
      this.scheduleExpiry();
      return;
    }
    // Invalidated by the worker (lost, stall): its 'lost' message is on the way and says why.
    if (!this.guard.proven()) return;
    this.lapsed = true;
    this.log.warn(
      { lease: this.current?.hex },
      'lease guard deadline passed without a keepalive ack: fenced',
    );
    this.emit('expired');
  }

  private markLapsed(): void {
    this.lapsed = true;
    clearTimeout(this.expiryTimer);
  }
}

/** The worker sends an error as plain fields; pino's err serializer wants an Error. */
function withError(fields: Record<string, unknown>): Record<string, unknown> {
  const e = fields.err as { type?: string; message?: string; code?: unknown } | undefined;
  if (!e || typeof e !== 'object') return fields;
  const err = Object.assign(new Error(e.message ?? ''), { name: e.type ?? 'Error', code: e.code });
  err.stack = `${err.name}: ${err.message} (in the keepalive worker)`;
  return { ...fields, err };
}
