// Binds each token record to an etcd lease, so a token ends on etcd's clock and this node's monotonic
// clock, never on the wall clock of whichever node a client talks to: etcd deletes the record when
// the lease ends and every node drops it when its watch delivers the delete.
// Invariants: a lease never ends before the tokens bound to it (TTL rounded up to the end of its
// bucket, counted from before the grant); leases are shared per bucket of end time on this node's
// monotonic clock (one per BUCKET_MS, not one per token: etcd keeps every lease in the leader's
// memory and revokes each with a Raft write); a token is revoked by deleting its key, never its
// lease, which carries others. An etcd leader change restarts a lease from its whole granted TTL
// (lease checkpointing off, etcd's default), or from its last 5-minute checkpoint (on, as
// deploy/etcd runs it), so this node also revokes each lease it granted once its end has passed by
// its own monotonic clock (`sweep`): while the issuing node runs, a token outlives its TTL by at
// most one bucket and one sweep, whatever etcd's leaders do.
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { ClusterErrorCodes, isClusterError } from '../../cluster/errors.ts';
import { etcdCall } from '../../cluster/etcd/etcd-client.ts';
import { zeroSeries } from '../../metrics/zero-series.ts';

/** Tokens whose ends fall in one such span of this node's monotonic clock share a lease. */
export const TOKEN_LEASE_BUCKET_MS = 60_000;
/** etcd's largest lease TTL (lease.MaxLeaseTTL, seconds): about 285 years. */
export const MAX_LEASE_TTL_S = 9_000_000_000;
/** Bucket leases this node remembers; past this it forgets them (they still end in etcd). */
const LEASES_REMEMBERED = 10_000;
/** How late past its end a lease may still be found before this node counts it as outliving it. */
const LATE_MS = 2_000;

/** Where a token record is written: bound to a lease that ends no earlier than `lifeMs` from now. */
export interface TokenLeases {
  put(key: string, value: string, lifeMs: number): Promise<void>;
  start(): void;
  stop(): void;
}

export interface EtcdTokenLeasesOptions {
  client: Etcd3;
  callTimeoutMs: number;
  logger: Logger;
  registry: Registry;
  /** Width of a bucket of lease ends (default TOKEN_LEASE_BUCKET_MS; tests shorten it). */
  bucketMs?: number;
  /** This node's monotonic clock, in ms (default performance.now). */
  monotonicNow?: () => number;
}

interface BucketLease {
  /** The lease id (decimal int64), once granted. */
  id: Promise<string>;
  /** When the lease ends, on this node's monotonic clock. */
  endMono: number;
}

export class EtcdTokenLeases implements TokenLeases {
  private readonly opts: EtcdTokenLeasesOptions;
  private readonly bucketMs: number;
  private readonly monotonicNow: () => number;
  private readonly leases = new Map<number, BucketLease>();
  private readonly log: Logger;
  private readonly ended: Counter<'by'>;
  private sweeper: NodeJS.Timeout | undefined;
  private sweeping = false;

  constructor(opts: EtcdTokenLeasesOptions) {
    this.opts = opts;
    this.bucketMs = opts.bucketMs ?? TOKEN_LEASE_BUCKET_MS;
    this.monotonicNow = opts.monotonicNow ?? (() => performance.now());
    this.log = opts.logger.child({ component: 'auth-leases' });
    this.ended = new Counter({
      name: 'coolctl_auth_token_leases_ended_total',
      help: 'Token leases this node granted that ended: by etcd (expired on time), or by this node (still alive past their end: an etcd leader change had reset their TTL)',
      labelNames: ['by'],
      registers: [opts.registry],
    });
    zeroSeries(this.ended, { by: ['etcd', 'node'] });
    const held = this.leases;
    new Gauge({
      name: 'coolctl_auth_token_leases',
      help: 'Token leases this node granted that have not ended yet (one per minute of token ends)',
      registers: [opts.registry],
      collect() {
        this.set(held.size);
      },
    });
  }

  async put(key: string, value: string, lifeMs: number): Promise<void> {
    if (!(lifeMs > 0) || lifeMs > MAX_LEASE_TTL_S * 1000 - this.bucketMs)
      throw new RangeError(`token lifetime ${lifeMs} ms is outside (0, ${MAX_LEASE_TTL_S} s)`);
    const { client, callTimeoutMs } = this.opts;
    // A bucket lease etcd no longer has (revoked by hand, or ended early by a clock that ran fast)
    // is granted again once.
    for (let attempt = 0; ; attempt++) {
      const lease = await this.leaseFor(lifeMs);
      try {
        await etcdCall('put token', callTimeoutMs, undefined, (o) =>
          client.put(key).value(value).lease(lease).options(o).exec(),
        );
        return;
      } catch (err) {
        if (attempt > 0 || !isClusterError(err, ClusterErrorCodes.LEASE_LOST)) throw err;
        this.forget(lease);
      }
    }
  }

  /** The lease of the bucket `lifeMs` from now ends in: granted now when this node has none. */
  private async leaseFor(lifeMs: number): Promise<string> {
    const now = this.monotonicNow();
    const bucket = Math.ceil((now + lifeMs) / this.bucketMs);
    let held = this.leases.get(bucket);
    if (!held) {
      const endMono = bucket * this.bucketMs;
      // Counted from before the grant is sent, and rounded up: etcd starts counting later still.
      const ttlS = Math.ceil((endMono - now) / 1000);
      const id = etcdCall('grant token lease', this.opts.callTimeoutMs, undefined, (o) =>
        this.opts.client.leaseClient.leaseGrant({ TTL: ttlS, ID: 0 }, o),
      ).then((r) => r.ID);
      held = { id, endMono };
      if (this.leases.size >= LEASES_REMEMBERED) this.leases.clear();
      this.leases.set(bucket, held);
      // A failed grant is not remembered: the next token of the bucket asks again.
      id.catch(() => {
        if (this.leases.get(bucket) === held) this.leases.delete(bucket);
      });
    }
    return held.id;
  }

  private forget(lease: string): void {
    for (const [bucket, l] of this.leases)
      void l.id.then(
        (id) => {
          if (id === lease && this.leases.get(bucket) === l) this.leases.delete(bucket);
        },
        () => {},
      );
  }

  start(): void {
    if (this.sweeper) return;
    this.sweeper = setInterval(() => void this.sweep(), this.bucketMs);
    this.sweeper.unref();
  }

  stop(): void {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  /**
   * Revokes the leases whose end has passed by this node's monotonic clock. Most are gone already
   * (etcd expired them: not found); one still there had its TTL reset by an etcd leader change, and
   * would keep its tokens for up to its whole TTL again.
   */
  async sweep(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      const now = this.monotonicNow();
      for (const [bucket, l] of [...this.leases]) {
        if (l.endMono + LATE_MS > now) continue;
        try {
          const id = await l.id;
          await etcdCall('revoke token lease', this.opts.callTimeoutMs, undefined, (o) =>
            this.opts.client.leaseClient.leaseRevoke({ ID: id }, o),
          );
          this.ended.inc({ by: 'node' });
          this.log.warn(
            { lease: id, lateMs: Math.round(now - l.endMono) },
            'token lease outlived its end in etcd (a leader change resets lease TTLs): revoked',
          );
        } catch (err) {
          if (!isClusterError(err, ClusterErrorCodes.LEASE_LOST)) {
            // etcd unreachable: tried again at the next sweep; its tokens' wall expiry still holds.
            this.log.warn({ err: (err as Error).message }, 'token lease revoke failed; retrying later');
            return;
          }
          this.ended.inc({ by: 'etcd' });
        }
        this.leases.delete(bucket);
      }
    } finally {
      this.sweeping = false;
    }
  }
}
