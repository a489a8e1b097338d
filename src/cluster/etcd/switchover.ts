// Switchover, the etcd side: the handover marker `<prefix>/handover/<group>` and the promises of
// handovers in flight. The marker is written on the leader's lease (it dies with it), only while the
// leader's election key is still the one it leads with and no other handover is in progress; the
// decision loop (decide.ts) then moves the queue, and observe() settles the promise when the target
// leads, when it left, or at the timeout (which also clears the marker, compared on its revision).
// Invariants: at most one handover per group in flight; every promise settles exactly once.
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import { wireJson } from '../../version.ts';
import { ClusterError, ClusterErrorCodes } from '../errors.ts';
import { etcdCall } from './etcd-client.ts';
import { markerKey } from './snapshot.ts';

export interface HandoversOptions {
  client: Etcd3;
  prefix: string;
  node: string;
  callTimeoutMs: number;
  logger: Logger;
  /** Aborts calls in flight when the node stops. */
  signal: AbortSignal;
  /** The marker's mod revision as the last snapshot showed it (to clear it without a read). */
  markerRevision: (group: string) => number | undefined;
  /** Wakes the decision loop (a marker was written). */
  wake: () => void;
}

export interface HandoverRequest {
  group: string;
  to: string;
  /** The epoch this node leads with: the create revision of `electionKey`. */
  epoch: number;
  electionKey: string;
  /** Our lease (decimal id): the marker lives on it. */
  leaseId: string;
  timeoutMs: number;
}

interface Pending {
  to: string;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class Handovers {
  private readonly opts: HandoversOptions;
  private readonly pending = new Map<string, Pending>();

  constructor(opts: HandoversOptions) {
    this.opts = opts;
  }

  /** Handovers in flight. */
  get size(): number {
    return this.pending.size;
  }

  /** Handovers in flight: group → target. */
  targets(): Map<string, string> {
    return new Map([...this.pending].map(([g, p]) => [g, p.to]));
  }

  has(group: string): boolean {
    return this.pending.has(group);
  }

  /** Writes the marker and resolves when `to` leads the group; rejects at the timeout or if it leaves. */
  async begin(r: HandoverRequest): Promise<void> {
    const { client, callTimeoutMs, signal, logger } = this.opts;
    if (this.pending.has(r.group)) {
      throw new ClusterError(
        ClusterErrorCodes.SWITCHOVER_FAILED,
        `switchover ${r.group}: one is already in progress`,
        { retryable: true },
      );
    }
    const mk = markerKey(this.opts.prefix, r.group);
    const value = wireJson({ from: this.opts.node, to: r.to, epoch: r.epoch, atMs: Date.now() });
    const res = await etcdCall('handover marker put', callTimeoutMs, signal, (o) =>
      client
        .if(r.electionKey, 'Create', '==', r.epoch)
        .and(mk, 'Version', '==', 0)
        .then(client.put(mk).value(value).lease(r.leaseId))
        .options(o)
        .commit(),
    );
    if (!res.succeeded) {
      throw new ClusterError(
        ClusterErrorCodes.SWITCHOVER_FAILED,
        `switchover ${r.group}: lost the lead or another handover is in progress`,
        { retryable: true },
      );
    }
    logger.info({ group: r.group, to: r.to, epoch: r.epoch }, 'switchover: handover marker written');
    const done = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(r.group);
        void this.clearMarker(r.group).catch(() => {});
        reject(
          new ClusterError(
            ClusterErrorCodes.SWITCHOVER_FAILED,
            `switchover ${r.group} → ${r.to}: not done within ${r.timeoutMs} ms`,
            { retryable: true },
          ),
        );
      }, r.timeoutMs);
      this.pending.set(r.group, {
        to: r.to,
        resolve: () => {
          clearTimeout(timer);
          this.pending.delete(r.group);
          resolve();
        },
        reject: (err) => {
          clearTimeout(timer);
          this.pending.delete(r.group);
          reject(err);
        },
      });
    });
    this.opts.wake();
    return done;
  }

  /** From a snapshot: settles the group's handover if its target leads, or is no longer a member. */
  observe(group: string, leader: string | undefined, members: ReadonlySet<string>): void {
    const p = this.pending.get(group);
    if (!p) return;
    if (leader === p.to) p.resolve();
    else if (!members.has(p.to))
      p.reject(new ClusterError(ClusterErrorCodes.SWITCHOVER_FAILED, `switchover ${group}: ${p.to} left`));
  }

  rejectAll(reason: string): void {
    for (const p of [...this.pending.values()])
      p.reject(new ClusterError(ClusterErrorCodes.SWITCHOVER_FAILED, reason));
  }

  /** Deletes the group's marker if it is still the one at `modRevision` (default: the last snapshot's). */
  async clearMarker(group: string, modRevision?: number): Promise<void> {
    const { client, callTimeoutMs, logger } = this.opts;
    const mk = markerKey(this.opts.prefix, group);
    const rev = modRevision ?? this.opts.markerRevision(group);
    if (rev === undefined) return;
    const res = await etcdCall('handover marker delete', callTimeoutMs, undefined, (o) =>
      client.if(mk, 'Mod', '==', rev).then(client.delete().key(mk)).options(o).commit(),
    );
    if (res.succeeded) logger.info({ group }, 'handover marker cleared');
  }
}
