// EtcdMembers: one etcd client per member, and the member chosen here rather than by the `etcd3`
// package. A call goes to the member that answered last; a retryable failure (refused, reset, no
// answer within its deadline, no raft leader there) moves the call on at once to the next member,
// each attempt with its own deadline, until one answers or every member has failed once. The
// package's own choice is a fresh random member per call, and its circuit breaker counts a stream's
// creation as a success, so it never skips a dead member for the lease keepalive (a short stream):
// with one of three members down, about 40 % of keepalives went to it, and runs of five or more in
// a row — enough for the lease to expire with a 2 s TTL — came in a few per cent of member losses.
import { randomInt } from 'node:crypto';
import type { Etcd3 } from 'etcd3';
import { CoolctlError } from '../../errors.ts';
import { createEtcdClient, type EtcdClientOptions } from './etcd-client.ts';

/** A member's name in logs and metric labels: its host and port, without the scheme. */
export function memberName(endpoint: string): string {
  return endpoint.replace(/^[a-z]+:\/\//i, '').replace(/\/+$/, '');
}

export class EtcdMembers {
  readonly endpoints: readonly string[];
  private readonly clients: readonly Etcd3[];
  private preferred: number;

  /** `start`: the member tried first until one fails (default: one at random, so nodes spread). */
  constructor(opts: EtcdClientOptions, start?: number) {
    if (opts.hosts.length === 0) throw new RangeError('EtcdMembers: no etcd endpoints');
    this.endpoints = [...opts.hosts];
    this.clients = opts.hosts.map((h) => createEtcdClient({ ...opts, hosts: [h] }));
    this.preferred = (start ?? randomInt(opts.hosts.length)) % opts.hosts.length;
  }

  /** The member the next call goes to first. */
  get current(): string {
    return this.endpoints[this.preferred]!;
  }

  /**
   * Runs `attempt` on the member that answered last, then on each next member while the failure is
   * retryable (a {@link CoolctlError} with `retryable`); anything else — an abort, a lost lease — is
   * thrown at once. `attempt` sets its own deadline (etcdCall). Rejects with the last failure when
   * every member failed. `onFailure` hears of each failed attempt that was passed on.
   */
  async call<T>(
    attempt: (client: Etcd3, endpoint: string) => Promise<T>,
    onFailure?: (endpoint: string, err: CoolctlError) => void,
  ): Promise<T> {
    const n = this.clients.length;
    const first = this.preferred;
    let last: unknown;
    for (let k = 0; k < n; k++) {
      const i = (first + k) % n;
      try {
        const result = await attempt(this.clients[i]!, this.endpoints[i]!);
        this.preferred = i;
        return result;
      } catch (err) {
        if (!(err instanceof CoolctlError) || !err.retryable) throw err;
        last = err;
        onFailure?.(this.endpoints[i]!, err);
        // Only if no other call moved it meanwhile: two failures of one member must not skip a good one.
        if (this.preferred === i) this.preferred = (i + 1) % n;
      }
    }
    throw last;
  }

  close(): void {
    for (const c of this.clients) c.close();
  }
}
