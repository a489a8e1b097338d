// One control group's election, etcd's own recipe (client/v3/concurrency/election.go), so that
// `etcdctl elect --listen <prefix>/election/<group>` shows the leader we do:
//   key = <prefix>/election/<group>/<lease id in hex>, value = node name, attached to the node's lease;
//   campaign = put-if-absent; the leader is the key with the lowest create revision; a candidate
//   waits for the deletion of the key just before its own; its create revision is the epoch.
// Invariants: every call has a deadline; waiting re-reads the queue after every watch event (a
// delete event alone proves nothing) and watches resume from the revision last read.
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import type { Logger } from 'pino';
import { ClusterError, ClusterErrorCodes } from '../errors.ts';
import type { QueueEntry } from '../view.ts';
import { etcdCall } from './etcd-client.ts';

export function electionPrefix(prefix: string, group: string): string {
  return `${prefix}/election/${group}`;
}

export function electionKey(prefix: string, group: string, leaseHexId: string): string {
  return `${electionPrefix(prefix, group)}/${leaseHexId}`;
}

/** The election queue from a range over `<electionPrefix>/`: oldest create revision first (= the leader). */
export function queueOf(kvs: readonly IKeyValue[], groupPrefix: string): QueueEntry[] {
  const start = `${groupPrefix}/`;
  const queue: QueueEntry[] = [];
  for (const kv of kvs) {
    const key = kv.key.toString();
    if (!key.startsWith(start)) continue;
    const leaseHexId = key.slice(start.length);
    if (!leaseHexId || leaseHexId.includes('/')) continue;
    queue.push({
      key,
      leaseHex: leaseHexId,
      node: kv.value.toString(),
      createRevision: Number(kv.create_revision),
    });
  }
  return queue.sort((a, b) => a.createRevision - b.createRevision);
}

export interface ElectionOptions {
  client: Etcd3;
  prefix: string;
  group: string;
  node: string;
  /** The campaigning lease: decimal id and hex. */
  lease: { id: string; hex: string };
  callTimeoutMs: number;
  logger?: Logger;
  /** While waiting for predecessors, re-read at least this often (covers a watch that went quiet). */
  recheckMs?: number;
}

export class Election {
  readonly key: string;
  private readonly opts: ElectionOptions;
  private readonly groupPrefix: string;
  private ownRevision: number | null = null;

  constructor(opts: ElectionOptions) {
    this.opts = opts;
    this.groupPrefix = electionPrefix(opts.prefix, opts.group);
    this.key = electionKey(opts.prefix, opts.group, opts.lease.hex);
  }

  /** Our key's create revision: the fencing token once we lead (null: not queued). */
  get epoch(): number | null {
    return this.ownRevision;
  }

  /**
   * Joins the queue: puts our key if absent (attached to our lease); if it is already there (a retry
   * after a lost answer) keeps it and its place; a leaseless key with our name (a ghost) is removed
   * first. Returns our create revision.
   */
  async enqueue(signal?: AbortSignal, retryGhost = true): Promise<number> {
    const { client, node, lease, callTimeoutMs } = this.opts;
    const res = await etcdCall('election enqueue', callTimeoutMs, signal, (o) =>
      client
        .if(this.key, 'Create', '==', 0)
        .then(client.put(this.key).value(node).lease(lease.id))
        .else(client.get(this.key))
        .options(o)
        .commit(),
    );
    if (res.succeeded) {
      this.ownRevision = Number(res.header.revision);
    } else {
      const kv = res.responses[0]?.response_range.kvs[0];
      if (!kv)
        throw new ClusterError(
          ClusterErrorCodes.ETCD_UNAVAILABLE,
          `election ${this.key}: key vanished during enqueue`,
          { retryable: true },
        );
      if (kv.lease === '0' && retryGhost) {
        // Our key's name without a lease (an `etcdctl put`, a restore): it counts for nobody and
        // would keep us out of the queue for ever. Remove it (only if unchanged) and enqueue again.
        await etcdCall('election ghost delete', callTimeoutMs, signal, (o) =>
          client
            .if(this.key, 'Mod', '==', kv.mod_revision)
            .then(client.delete().key(this.key))
            .options(o)
            .commit(),
        );
        return this.enqueue(signal, false);
      }
      if (kv.lease !== lease.id) {
        throw new ClusterError(
          ClusterErrorCodes.LEASE_LOST,
          `election ${this.key}: key held by another lease`,
        );
      }
      this.ownRevision = Number(kv.create_revision);
    }
    return this.ownRevision;
  }

  /**
   * Leaves the queue (resign): deletes our key, only if it is still the one created at `createRevision`
   * (default: the one enqueue() made), so a stale resign never deletes a newer key of ours. When we
   * never learned the revision (a campaign aborted while its put was in flight), deletes the key if
   * our lease holds it.
   */
  async resign(signal?: AbortSignal, createRevision: number | null = this.ownRevision): Promise<void> {
    this.ownRevision = null;
    const { client, callTimeoutMs, lease } = this.opts;
    await etcdCall('election resign', callTimeoutMs, signal, (o) => {
      const guard =
        createRevision === null
          ? client.if(this.key, 'Lease', '==', lease.id)
          : client.if(this.key, 'Create', '==', createRevision);
      return guard.then(client.delete().key(this.key)).options(o).commit();
    });
  }

  /** The queue, read linearizably, with the revision of the read. */
  async queue(signal?: AbortSignal): Promise<{ revision: number; queue: QueueEntry[] }> {
    const { client, callTimeoutMs } = this.opts;
    const res = await etcdCall('election read', callTimeoutMs, signal, (o) =>
      client.getAll().prefix(`${this.groupPrefix}/`).options(o).exec(),
    );
    return { revision: Number(res.header.revision), queue: queueOf(res.kvs, this.groupPrefix) };
  }

  /** The current leader (lowest create revision), or null. */
  async leader(signal?: AbortSignal): Promise<QueueEntry | null> {
    return (await this.queue(signal)).queue[0] ?? null;
  }

  /**
   * Enqueues and waits until we lead (etcd's waitDeletes): watches the key just before ours from the
   * revision read, and re-reads the queue after every event. Resolves with the epoch. Rejects if
   * `signal` aborts (our key stays queued: call resign()) or if our key disappears (lease lost).
   */
  async campaign(signal: AbortSignal): Promise<number> {
    const own = await this.enqueue(signal);
    for (;;) {
      const { revision, queue } = await this.queue(signal);
      const idx = queue.findIndex((e) => e.key === this.key);
      if (idx < 0 || queue[idx]?.createRevision !== own) {
        this.ownRevision = null;
        throw new ClusterError(ClusterErrorCodes.LEASE_LOST, `election ${this.key}: our key is gone`);
      }
      if (idx === 0) return own;
      const predecessor = queue[idx - 1]!;
      this.opts.logger?.debug(
        { group: this.opts.group, waitingFor: predecessor.node },
        'waiting for predecessor',
      );
      await this.waitForChange(predecessor.key, revision + 1, signal);
    }
  }

  /** Resolves on the first event on `key` from `fromRevision`, on a watch disconnect, or after recheckMs. */
  private async waitForChange(key: string, fromRevision: number, signal: AbortSignal): Promise<void> {
    const recheckMs = this.opts.recheckMs ?? 1_000;
    let watcher: Watcher | undefined;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        onAbort = () =>
          reject(
            new ClusterError(ClusterErrorCodes.ABORTED, `election ${this.key}: campaign aborted`, {
              cause: signal.reason,
            }),
          );
        if (signal.aborted) return onAbort();
        signal.addEventListener('abort', onAbort, { once: true });
        timer = setTimeout(resolve, recheckMs);
        // watcher() (not create()) hands the Watcher over at once, so it can be cancelled even if
        // its stream never connects; the etcd3 watch manager resumes it from its last revision.
        watcher = this.opts.client.watch().key(key).startRevision(String(fromRevision)).watcher();
        watcher.on('data', () => resolve());
        watcher.on('disconnected', () => resolve());
        watcher.on('error', () => resolve());
      });
    } finally {
      clearTimeout(timer);
      if (onAbort) signal.removeEventListener('abort', onAbort);
      watcher?.cancel().catch(() => {});
    }
  }
}
