// MemberRecord: this node's member record `<prefix>/members/<node>`, on the node's lease. Registered
// only while no other live lease holds the name; it counts until a new or lost lease, or a read that
// shows the key gone (markUnregistered). Its config hash is written again until etcd takes it.
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import { wireJson } from '../../version.ts';
import { etcdCall } from './etcd-client.ts';
import type { SessionLease } from './etcd-session.ts';
import { memberKey } from './snapshot.ts';

/** A config hash etcd refused is written again this often (as the space probe asks), ms. */
const CONFIG_HASH_RETRY_MS = 5_000;

export interface MemberRecordOptions {
  client: Etcd3;
  prefix: string;
  node: string;
  apiUrl: string;
  peerUrl?: string | undefined;
  /** Published in the record (Member.configHash); setConfigHash() replaces it. */
  configHash?: string | undefined;
  callTimeoutMs: number;
  logger: Logger;
  /** Monotonic clock, ms. */
  now: () => number;
  /** The node's lease now (null: none): the record is written on it. */
  lease: () => SessionLease | null;
  /** Aborts a config hash write in flight when the node stops. */
  signal: AbortSignal;
  /** The node is stopping: no new write, and a failure then is not worth a line. */
  stopping: () => boolean;
}

export class MemberRecord {
  private readonly opts: MemberRecordOptions;
  private readonly client: Etcd3;
  private readonly key: string;
  private isRegistered = false;
  /** Monotonic ms of the last registration: a read from before it says nothing about our key. */
  private registeredAt = Number.NEGATIVE_INFINITY;
  private nameTakenLogged = false;
  private startedAtMs = 0;
  private configHash: string | undefined;
  /** The record does not show `configHash` yet (a refused write): publishConfigHash() tries again. */
  private configHashPending = false;
  private configHashRetryAtMs = Number.NEGATIVE_INFINITY;
  private configHashWriting = false;
  /** A failed write was logged: the next that lands says so (one line each way, not one per try). */
  private configHashFailLogged = false;

  constructor(opts: MemberRecordOptions) {
    this.opts = opts;
    this.client = opts.client;
    this.key = memberKey(opts.prefix, opts.node);
    this.configHash = opts.configHash;
  }

  /** Our record is in etcd on the current lease (as far as this node has heard). */
  get registered(): boolean {
    return this.isRegistered;
  }

  /** Monotonic ms of the last registration. */
  get registeredAtMs(): number {
    return this.registeredAt;
  }

  /** The last try found our name held by another live lease. */
  get nameTaken(): boolean {
    return this.nameTakenLogged;
  }

  /** The record no longer counts (a new lease, the lease lost, the key gone): register() again. */
  markUnregistered(): void {
    this.isRegistered = false;
  }

  private value(startedAtMs: number): string {
    this.startedAtMs = startedAtMs;
    return wireJson({
      node: this.opts.node,
      apiUrl: this.opts.apiUrl,
      ...(this.opts.peerUrl ? { peerUrl: this.opts.peerUrl } : {}),
      startedAtMs,
      ...(this.configHash ? { configHash: this.configHash } : {}),
    });
  }

  /**
   * Hot reload: rewrites the record (same lease) with the new config fingerprint. A refused write
   * (etcd out of space, unreachable) is tried again from publishConfigHash() every
   * CONFIG_HASH_RETRY_MS until it lands, so the record never keeps an old hash for good.
   */
  setConfigHash(hash: string): void {
    if (hash === this.configHash) return;
    this.configHash = hash;
    this.configHashPending = true;
    this.configHashRetryAtMs = Number.NEGATIVE_INFINITY;
    this.publishConfigHash();
  }

  /** Writes a config hash the record does not show yet, unless a write is in flight or due later. */
  publishConfigHash(): void {
    const lease = this.opts.lease();
    if (!this.configHashPending || this.configHashWriting || this.opts.stopping()) return;
    if (!this.isRegistered || !lease) return; // the next registration publishes it
    if (this.opts.now() < this.configHashRetryAtMs) return;
    this.configHashWriting = true;
    const hash = this.configHash;
    const value = this.value(this.startedAtMs);
    etcdCall('member update', this.opts.callTimeoutMs, this.opts.signal, (o) =>
      this.client.put(this.key).value(value).lease(lease.id).options(o).exec(),
    )
      .then(() => {
        if (this.configHash === hash) this.configHashPending = false;
        if (this.configHashFailLogged) {
          this.configHashFailLogged = false;
          this.opts.logger.info({ configHash: hash }, 'member record shows the config hash it runs');
        }
      })
      .catch((err: unknown) => {
        this.configHashRetryAtMs = this.opts.now() + CONFIG_HASH_RETRY_MS;
        if (this.configHashFailLogged || this.opts.stopping()) return;
        this.configHashFailLogged = true;
        this.opts.logger.warn(
          { err: (err as Error).message, retryMs: CONFIG_HASH_RETRY_MS },
          'member record keeps the old config hash; retrying until etcd takes the write',
        );
      })
      .finally(() => {
        this.configHashWriting = false;
      });
  }

  /**
   * Writes the record on the current lease if no one holds the name, or if the record has no lease
   * (an `etcdctl put`, a restore). A name held by another live lease is waited out: one warn line.
   */
  async register(signal: AbortSignal): Promise<void> {
    const lease = this.opts.lease();
    if (!lease) return;
    const client = this.client;
    const callTimeoutMs = this.opts.callTimeoutMs;
    const key = this.key;
    const hashWritten = this.configHash;
    const value = this.value(Date.now());
    const res = await etcdCall('member register', callTimeoutMs, signal, (o) =>
      client
        .if(key, 'Version', '==', 0)
        .then(client.put(key).value(value).lease(lease.id))
        .else(client.get(key))
        .options(o)
        .commit(),
    );
    const held = res.succeeded ? undefined : res.responses[0]?.response_range.kvs[0];
    let holder = res.succeeded ? lease.id : held?.lease;
    if (held && held.lease === '0') {
      // Our name without a lease (an `etcdctl put`, a restore): nobody's, so take it back — only if
      // it is still the value we saw.
      const taken = await etcdCall('member register', callTimeoutMs, signal, (o) =>
        client
          .if(key, 'Mod', '==', held.mod_revision)
          .then(client.put(key).value(value).lease(lease.id))
          .options(o)
          .commit(),
      );
      if (taken.succeeded) holder = lease.id;
    }
    if (holder === lease.id && this.opts.lease() === lease) {
      this.isRegistered = true;
      this.registeredAt = this.opts.now();
      if (this.configHash === hashWritten) this.configHashPending = false;
      this.nameTakenLogged = false;
      this.opts.logger.info({ lease: lease.hex }, 'registered as a member');
      return;
    }
    if (!this.nameTakenLogged) {
      this.nameTakenLogged = true;
      this.opts.logger.warn({ key }, 'node name held by another live lease; waiting for it to expire');
    }
  }
}
