// EtcdSession: this node's one etcd lease and its LeaseGuard. Our own keepalive loop (one
// keepaliveOnce every keepaliveIntervalMs, each with a deadline) feeds the guard with the SEND time
// of each acknowledged keepalive — we never rely on the etcd3 package's `lost` timing (≈ 2×TTL).
// Invariants: at most one live lease; when etcd says it is gone (TTL ≤ 0 / not found) the guard is
// invalidated before 'lost' is emitted, and a fresh lease is granted with backoff; the lease id is
// kept in <dataDir>/lease-id.<node> so that a restarted node revokes its predecessor instead of waiting
// out the TTL — never another node's: the file is per node, and the data dir is locked to one process.
import { EventEmitter } from 'node:events';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import { DataDirLock } from './data-dir-lock.ts';
import { ClusterError, ClusterErrorCodes, isClusterError } from './errors.ts';
import { etcdCall, leaseHex } from './etcd-client.ts';
import { type KeepaliveToken, LeaseGuard } from './lease-guard.ts';

export interface EtcdSessionOptions {
  client: Etcd3;
  /** This node's name: the lease-id file and the data dir lock say whose they are. */
  node: string;
  /** Lease TTL asked from etcd, whole seconds (etcd's unit). */
  ttlS: number;
  keepaliveIntervalMs: number;
  safetyMarginMs: number;
  callTimeoutMs: number;
  dataDir: string;
  logger: Logger;
  now?: () => number;
}

export interface SessionLease {
  /** Decimal lease id, as etcd's gRPC API carries it. */
  id: string;
  /** Lowercase hex, as in election keys. */
  hex: string;
}

/** Keepalives allowed in flight at once: enough to ride over one slow member, bounded under a blackhole. */
const MAX_KEEPALIVES_IN_FLIGHT = 3;
const REGRANT_BACKOFF_MS = { first: 100, max: 2_000 };

/**
 * Events: 'lease' (SessionLease) a new lease is live; 'lost' (reason) etcd dropped it, guard already
 * invalidated; 'expired' the guard deadline passed without a newer ack; 'proven' an ack moved the
 * deadline while the guard had lapsed; 'keepalive' (seconds from send to ack).
 */
export class EtcdSession extends EventEmitter {
  readonly guard: LeaseGuard;
  private readonly opts: EtcdSessionOptions;
  private readonly log: Logger;
  private readonly now: () => number;
  private current: SessionLease | null = null;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private stopped = false;
  private readonly stopping = new AbortController();
  private lapsed = true;
  private readonly lock: DataDirLock;

  constructor(opts: EtcdSessionOptions) {
    super();
    this.opts = opts;
    this.log = opts.logger;
    this.now = opts.now ?? (() => performance.now());
    this.guard = new LeaseGuard({ ttlMs: opts.ttlS * 1000, marginMs: opts.safetyMarginMs, now: this.now });
    this.lock = new DataDirLock(opts.dataDir, opts.node, this.log);
  }

  get lease(): SessionLease | null {
    return this.current;
  }

  private get leaseFile(): string {
    return join(this.opts.dataDir, `lease-id.${encodeURIComponent(this.opts.node)}`);
  }

  /**
   * Locks the data dir (DATA_DIR_IN_USE if another live process has it), revokes the lease a
   * previous run of this node left behind, grants ours, starts the keepalive loop.
   */
  async start(signal: AbortSignal): Promise<SessionLease> {
    await mkdir(this.opts.dataDir, { recursive: true });
    await this.lock.acquire();
    try {
      await this.dropLegacyLeaseFile();
      await this.revokePrevious(signal);
      const lease = await this.grantWithRetry(AbortSignal.any([signal, this.stopping.signal]));
      this.scheduleKeepalive();
      return lease;
    } catch (err) {
      await this.lock.release();
      throw err;
    }
  }

  /** Stops keepalives and revokes the lease (etcd deletes every key it held, in one revision). Bounded. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.stopping.abort(new ClusterError(ClusterErrorCodes.ABORTED, 'session stopped'));
    clearTimeout(this.keepaliveTimer);
    clearTimeout(this.expiryTimer);
    this.guard.invalidate('session stopped');
    const lease = this.current;
    this.current = null;
    if (lease) {
      try {
        await this.revoke(lease.id, undefined);
        await rm(this.leaseFile, { force: true });
        this.log.info({ lease: lease.hex }, 'lease revoked');
      } catch (err) {
        // The keys expire with the TTL anyway; the next start revokes it from the file.
        this.log.warn({ err, lease: lease.hex }, 'lease revoke failed at stop; it expires with its TTL');
      }
    }
    await this.lock.release();
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

  private async revokePrevious(signal: AbortSignal): Promise<void> {
    let previous: string;
    try {
      previous = (await readFile(this.leaseFile, 'utf8')).trim();
    } catch {
      return; // first start, or a clean stop
    }
    if (!/^\d+$/.test(previous)) {
      this.log.warn({ file: this.leaseFile }, 'ignoring unreadable previous lease id');
      return;
    }
    try {
      await this.revoke(previous, signal);
      this.log.info({ lease: leaseHex(previous) }, 'revoked the lease of a previous run');
    } catch (err) {
      // Bounded and best effort: if etcd cannot be reached now, that lease expires with its TTL.
      this.log.warn({ err, lease: leaseHex(previous) }, 'could not revoke the previous lease');
    }
  }

  private async revoke(id: string, signal: AbortSignal | undefined): Promise<void> {
    try {
      await etcdCall('lease revoke', this.opts.callTimeoutMs, signal, (o) =>
        this.opts.client.leaseClient.leaseRevoke({ ID: id }, o),
      );
    } catch (err) {
      if (isClusterError(err, ClusterErrorCodes.LEASE_LOST)) return; // already gone
      throw err;
    }
  }

  private async grantWithRetry(signal: AbortSignal): Promise<SessionLease> {
    let backoffMs = REGRANT_BACKOFF_MS.first;
    for (;;) {
      try {
        return await this.grant(signal);
      } catch (err) {
        if (signal.aborted) throw err;
        this.log.warn({ err, retryInMs: backoffMs }, 'lease grant failed');
        await abortableDelay(backoffMs * (0.5 + Math.random() / 2), signal);
        backoffMs = Math.min(backoffMs * 2, REGRANT_BACKOFF_MS.max);
      }
    }
  }

  private async grant(signal: AbortSignal): Promise<SessionLease> {
    // The grant's own send time is the first proof: etcd starts the TTL when it applies the grant.
    const token = this.guard.keepaliveSent();
    const res = await etcdCall('lease grant', this.opts.callTimeoutMs, signal, (o) =>
      this.opts.client.leaseClient.leaseGrant({ TTL: this.opts.ttlS }, o),
    );
    if (Number(res.TTL) > this.opts.ttlS) {
      // etcd raised the TTL to its minimum: failover will take longer than configured. The guard
      // keeps using the smaller, asked-for TTL, which is only more conservative.
      this.log.warn({ askedS: this.opts.ttlS, grantedS: Number(res.TTL) }, 'etcd raised the lease TTL');
    }
    const lease = { id: res.ID, hex: leaseHex(res.ID) };
    if (this.stopped) {
      await this.revoke(lease.id, undefined).catch(() => {});
      throw new ClusterError(ClusterErrorCodes.ABORTED, 'session stopped during lease grant');
    }
    this.current = lease;
    this.onAck(token);
    await this.persist(lease.id);
    this.log.info({ lease: lease.hex, ttlS: this.opts.ttlS }, 'lease granted');
    this.emit('lease', lease);
    return lease;
  }

  private async persist(id: string): Promise<void> {
    const tmp = `${this.leaseFile}.tmp`;
    await writeFile(tmp, `${id}\n`);
    await rename(tmp, this.leaseFile);
  }

  private scheduleKeepalive(): void {
    if (this.stopped) return;
    this.keepaliveTimer = setTimeout(() => {
      this.scheduleKeepalive();
      this.keepaliveTick();
    }, this.opts.keepaliveIntervalMs);
  }

  private keepaliveTick(): void {
    const lease = this.current;
    if (!lease || this.inFlight >= MAX_KEEPALIVES_IN_FLIGHT) return;
    this.inFlight++;
    const token = this.guard.keepaliveSent();
    this.keepaliveOnce(lease)
      .then((ttlS) => {
        if (this.current !== lease) return; // answer for a lease we already gave up
        if (ttlS <= 0) {
          this.onLost(lease, 'etcd says the lease expired (keepalive TTL 0)');
          return;
        }
        this.emit('keepalive', (this.now() - token.sentAtMs) / 1000);
        this.onAck(token);
      })
      .catch((err: unknown) => {
        if (this.current !== lease) return;
        if (isClusterError(err, ClusterErrorCodes.LEASE_LOST)) {
          this.onLost(lease, 'etcd says the lease is not found');
          return;
        }
        // Transient: the guard keeps counting down; the next keepalive may get through.
        this.log.debug({ err }, 'keepalive failed');
      })
      .finally(() => {
        this.inFlight--;
      });
  }

  /** One keepalive on its own short stream, with a deadline; resolves with etcd's TTL for the lease. */
  private async keepaliveOnce(lease: SessionLease): Promise<number> {
    return etcdCall('lease keepalive', this.opts.callTimeoutMs, this.stopping.signal, async (o) => {
      const stream = await this.opts.client.leaseClient.leaseKeepAlive(o);
      return new Promise<number>((resolve, reject) => {
        stream.on('data', (res) => {
          // Half-close: the server ends the call cleanly (a cancel would make etcd3 reset the host).
          stream.end();
          resolve(Number(res.TTL));
        });
        stream.on('error', reject);
        stream.write({ ID: lease.id });
      });
    });
  }

  private onAck(token: KeepaliveToken): void {
    if (!this.guard.keepaliveAcked(token)) return;
    if (this.lapsed) {
      this.lapsed = false;
      this.emit('proven');
    }
    clearTimeout(this.expiryTimer);
    // Only a notification for roles and logs: mayAct() reads the clock itself and does not wait for it.
    this.expiryTimer = setTimeout(() => this.onExpiry(), Math.max(0, this.guard.remainingMs()) + 1);
  }

  private onExpiry(): void {
    if (this.guard.mayAct() || this.lapsed) return;
    this.lapsed = true;
    this.log.warn(
      { lease: this.current?.hex },
      'lease guard deadline passed without a keepalive ack: fenced',
    );
    this.emit('expired');
  }

  private onLost(lease: SessionLease, reason: string): void {
    this.guard.invalidate(reason);
    this.current = null;
    this.lapsed = true;
    clearTimeout(this.expiryTimer);
    this.log.warn({ lease: lease.hex, reason }, 'lease lost');
    this.emit('lost', reason);
    this.regrant();
  }

  private regrant(): void {
    if (this.stopped) return;
    this.grantWithRetry(this.stopping.signal).catch((err: unknown) => {
      if (!this.stopped) this.log.error({ err }, 'lease re-grant gave up');
    });
  }
}

function abortableDelay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
