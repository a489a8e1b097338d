// ExpiredLeaseRevoker: revokes a dead leader's lease as soon as etcd's own answers prove it expired,
// instead of leaving its keys to etcd 3.4's expiry loop (which runs every 500 ms). It follows only the
// leases of leaders this node is next in line behind, polls each with LeaseTimeToLive (one call in
// flight per lease, each with a deadline; every 100 ms while the lease has under 2 s left, else every
// 500 ms), and revokes once ExpiryProof says expired. Why that is safe: the old leader's guard deadline
// (send time of its last acked keepalive + TTL − margin) is before etcd's expiry of the lease (receive
// time + TTL), which is before the proof, which is before our revoke; etcd never renews an expired
// lease, so the old leader stopped acting before we can lead. A live lease is never proven expired.
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import { waitUnlessAborted } from '../../util/async.ts';
import { ClusterErrorCodes, isClusterError } from '../errors.ts';
import { ExpiryProof } from '../expiry-proof.ts';
import { etcdCall } from './etcd-client.ts';

export interface ExpiredLeaseRevokerOptions {
  client: Etcd3;
  callTimeoutMs: number;
  logger: Logger;
  now: () => number;
  /** Called after a revoke: the caller re-reads the cluster (the watch will also see the deletions). */
  onRevoked: () => void;
  fastPollMs?: number;
  slowPollMs?: number;
  /** Counted per LeaseTimeToLive call and per revoke (metrics). */
  onPoll?: () => void;
  onRevoke?: () => void;
}

interface Followed {
  node: string;
  stop: AbortController;
}

export class ExpiredLeaseRevoker {
  private readonly opts: ExpiredLeaseRevokerOptions;
  private readonly followed = new Map<string, Followed>();
  private stopped = false;

  constructor(opts: ExpiredLeaseRevokerOptions) {
    this.opts = opts;
  }

  /**
   * The leases to watch now (hex → the node holding it): the leaders this node is next in line behind.
   * Leases no longer in the map stop being polled; new ones start.
   */
  follow(leases: ReadonlyMap<string, string>): void {
    if (this.stopped) return;
    for (const [hex, f] of this.followed) {
      if (!leases.has(hex)) {
        f.stop.abort();
        this.followed.delete(hex);
      }
    }
    for (const [hex, node] of leases) {
      if (this.followed.has(hex)) continue;
      const f: Followed = { node, stop: new AbortController() };
      this.followed.set(hex, f);
      this.watch(hex, f).catch((err: unknown) =>
        this.opts.logger.error({ err, lease: hex }, 'lease expiry watch failed'),
      );
    }
  }

  stop(): void {
    this.stopped = true;
    for (const f of this.followed.values()) f.stop.abort();
    this.followed.clear();
  }

  private async watch(hex: string, f: Followed): Promise<void> {
    const { client, callTimeoutMs, logger, now } = this.opts;
    const fastPollMs = this.opts.fastPollMs ?? 100;
    const proof = new ExpiryProof({ fastPollMs, slowPollMs: this.opts.slowPollMs ?? 500 });
    const id = BigInt(`0x${hex}`).toString();
    const signal = f.stop.signal;
    let waitMs = 0;
    while (!signal.aborted) {
      if (waitMs > 0 && !(await waitUnlessAborted(waitMs, signal))) return;
      const sentAtMs = now();
      let verdict: ReturnType<ExpiryProof['observe']>;
      try {
        this.opts.onPoll?.();
        const res = await etcdCall('lease time-to-live', callTimeoutMs, signal, (o) =>
          client.leaseClient.leaseTimeToLive({ ID: id }, o),
        );
        verdict = proof.observe({
          sentAtMs,
          receivedAtMs: now(),
          ttlS: Number(res.TTL),
          grantedTtlS: Number(res.grantedTTL),
        });
      } catch (err) {
        if (signal.aborted) return;
        logger.debug({ err, lease: hex }, 'lease time-to-live poll failed');
        proof.reset();
        waitMs = fastPollMs;
        continue;
      }
      if (!verdict.expired) {
        waitMs = verdict.nextPollInMs;
        continue;
      }
      try {
        await etcdCall('expired lease revoke', callTimeoutMs, signal, (o) =>
          client.leaseClient.leaseRevoke({ ID: id }, o),
        );
        this.opts.onRevoke?.();
        logger.info(
          { lease: hex, holder: f.node, proof: verdict.why },
          `revoked expired lease of node ${f.node}: its keys were waiting for etcd's 500 ms expiry loop`,
        );
      } catch (err) {
        if (signal.aborted) return;
        if (!isClusterError(err, ClusterErrorCodes.LEASE_LOST)) {
          // Poll again: the next answer re-proves the expiry (or shows the lease gone) before a retry.
          logger.debug({ err, lease: hex }, 'revoke of an expired lease failed; polling again');
          waitMs = fastPollMs;
          continue;
        }
      }
      // Done with this lease; it stays in `followed` until a snapshot no longer shows it leading.
      this.opts.onRevoked();
      return;
    }
  }
}
