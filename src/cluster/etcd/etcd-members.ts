// EtcdMembers: one connection per etcd member, and the member chosen here rather than by a client
// library. A call goes to the member that answered last; a retryable failure (refused, reset, no
// answer within its deadline, no raft leader there) moves the call on at once to the next member,
// each attempt with its own deadline, until one answers or every member has failed once. The etcd3
// package's own choice was a fresh random member per call, and its circuit breaker counted a
// stream's creation as a success, so it never skipped a dead member for the lease keepalive (a short
// stream): with one of three members down, about 40 % of keepalives went to it, and runs of five or
// more in a row — enough for the lease to expire with a 2 s TTL — came in a few per cent of member
// losses. A keepalive also goes to the next member when the first has not answered within a
// fraction of its deadline (callHedged): a hung member then costs that fraction, not the deadline.
// The keepalive worker uses this with lease-wire.ts, one EtcdLeaseWire per member.
import { randomInt } from 'node:crypto';
import { CoolctlError } from '../../errors.ts';

/** A member's name in logs and metric labels: its host and port, without the scheme. */
export function memberName(endpoint: string): string {
  return endpoint.replace(/^[a-z]+:\/\//i, '').replace(/\/+$/, '');
}

export class EtcdMembers<C extends { close(): void }> {
  readonly endpoints: readonly string[];
  private readonly clients: readonly C[];
  private preferred: number;

  /**
   * `connect` makes the connection to one member (by its client URL). `start`: the member tried
   * first until one fails (default: one at random, so nodes spread).
   */
  constructor(endpoints: readonly string[], connect: (endpoint: string) => C, start?: number) {
    if (endpoints.length === 0) throw new RangeError('EtcdMembers: no etcd endpoints');
    this.endpoints = [...endpoints];
    this.clients = endpoints.map((e) => connect(e));
    this.preferred = (start ?? randomInt(endpoints.length)) % endpoints.length;
  }

  /** The member the next call goes to first. */
  get current(): string {
    return this.endpoints[this.preferred]!;
  }

  /**
   * Runs `attempt` on the member that answered last, then on each next member while the failure is
   * retryable (a {@link CoolctlError} with `retryable`); anything else — an abort, a lost lease — is
   * thrown at once. `attempt` sets its own deadline. Rejects with the last failure when every
   * member failed. `onFailure` hears of each failed attempt that was passed on.
   */
  async call<T>(
    attempt: (client: C, endpoint: string) => Promise<T>,
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

  /**
   * As call(), for an attempt that may reach two members (a lease keepalive: a second one only
   * extends the lease): when the member tried has not answered within `hedgeAfterMs`, the next one
   * is tried as well, without waiting for the first to time out — a hung member (its port accepts,
   * nothing answers) costs `hedgeAfterMs`, not a whole deadline. The first answer wins; a failure
   * that is not retryable is thrown at once; every member failed: the last failure.
   */
  callHedged<T>(
    attempt: (client: C, endpoint: string) => Promise<T>,
    hedgeAfterMs: number,
    onFailure?: (endpoint: string, err: CoolctlError) => void,
  ): Promise<T> {
    const n = this.clients.length;
    const first = this.preferred;
    return new Promise<T>((resolve, reject) => {
      let started = 0;
      let failed = 0;
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        fn();
      };
      const startNext = () => {
        clearTimeout(timer);
        if (settled || started >= n) return;
        const i = (first + started++) % n;
        if (started < n) timer = setTimeout(startNext, hedgeAfterMs);
        attempt(this.clients[i]!, this.endpoints[i]!).then(
          (result) => {
            if (settled) return;
            this.preferred = i;
            settle(() => resolve(result));
          },
          (err: unknown) => {
            failed++;
            if (!(err instanceof CoolctlError) || !err.retryable) return settle(() => reject(err));
            onFailure?.(this.endpoints[i]!, err);
            if (this.preferred === i) this.preferred = (i + 1) % n;
            if (failed >= n) return settle(() => reject(err));
            if (failed >= started) startNext();
          },
        );
      };
      startNext();
    });
  }

  close(): void {
    for (const c of this.clients) c.close();
  }
}
