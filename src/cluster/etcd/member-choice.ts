// Which etcd member each call of an etcd3 client goes to, so that one member that hangs (SIGSTOPped,
// a frozen disk: its port accepts, nothing answers) changes nothing while the others form a quorum.
// Reads (Range, and a Txn of nothing but Ranges: sending one again applies nothing) go to an
// answering member and, with no answer after `hedgeAfterMs` or on a member fault, to the next one
// too, all inside the caller's one deadline: the first answer wins. Anything else is sent once, to a
// member that answers (the etcd3 rule: on to another member only if it never left this process). A
// member that failed is put last for 1 s, doubling to 10 s while it keeps failing (reset when it
// answers), and probed only by a copy of a read sent beside one to an answering member: a probe
// costs nothing. Nothing is ever refused: with every member failing, calls still go to them all.
// Relies on etcd3 1.1.2's ConnectionPool (exec() takes its member order from shuffledHosts()
// synchronously; withConnection() walks it); test/cluster/member-choice.test.ts pins that.
import type { CallOptions } from '@grpc/grpc-js';
import { type IDefaultPolicyContext, type IPolicy, noop } from 'cockatiel';
import type { Etcd3 } from 'etcd3';
import { memberName } from './etcd-members.ts';

/** The first time a failed member is put last, and the longest: it doubles while it keeps failing. */
export const MEMBER_SKIP_MS = { first: 1_000, max: 10_000 };
/** Member faults in a row after which the member is reported as not answering. */
export const FAULTS_TO_REPORT = 3;

/** A member answering or not, as told to the owner of the client (a log line, a gauge). */
export type MemberStateListener = (member: string, answering: boolean) => void;

export interface MemberChoiceOptions {
  /** A copy of a read goes to another member when none answered within this (ms). */
  hedgeAfterMs: number;
  /** An error that says the member is unwell (timeout, refused, no leader), not a real answer. */
  isMemberFault: (err: Error) => boolean;
  onMemberState?: MemberStateListener | undefined;
  /** Monotonic ms (default performance.now). */
  now?: () => number;
}

/** etcd3's ConnectionPool and Host, as far as this module uses them. */
interface PoolHost {
  readonly host: string;
}
interface PoolInternals {
  hosts: PoolHost[];
  exec(service: string, method: string, payload: unknown, options?: CallOptions): Promise<unknown>;
  shuffledHosts(): Iterator<PoolHost>;
}

/** One member's health as this client sees it. */
class Member {
  readonly name: string;
  /** Member faults since its last answer. */
  faults = 0;
  skipMs = 0;
  /** Monotonic ms until which the member is put last (and not probed). */
  skipUntilMs = Number.NEGATIVE_INFINITY;
  answering = true;
  private readonly pendingSince = new Set<{ atMs: number }>();
  private readonly o: Required<Pick<MemberChoiceOptions, 'isMemberFault' | 'now'>> & MemberChoiceOptions;

  constructor(name: string, o: Member['o']) {
    this.name = name;
    this.o = o;
  }

  /** The host policy etcd3 runs every call to this member through: it only watches the outcome. */
  policy(): IPolicy<IDefaultPolicyContext> {
    return {
      _altReturn: undefined as never,
      onSuccess: noop.onSuccess,
      onFailure: noop.onFailure,
      execute: (fn, signal) =>
        noop.execute(async (ctx) => {
          const p = { atMs: this.o.now() };
          this.pendingSince.add(p);
          try {
            const res = await fn(ctx);
            this.answered();
            return res;
          } catch (err) {
            if (err instanceof Error && this.o.isMemberFault(err)) this.failed();
            else this.answered();
            throw err;
          } finally {
            this.pendingSince.delete(p);
          }
        }, signal),
    };
  }

  private answered(): void {
    this.faults = 0;
    this.skipMs = 0;
    this.skipUntilMs = Number.NEGATIVE_INFINITY;
    if (this.answering) return;
    this.answering = true;
    this.o.onMemberState?.(this.name, true);
  }

  private failed(): void {
    this.faults++;
    // Calls in flight together fail together: one doubling per skip, not one per call.
    if (this.o.now() >= this.skipUntilMs)
      this.skipMs = this.skipMs === 0 ? MEMBER_SKIP_MS.first : Math.min(MEMBER_SKIP_MS.max, this.skipMs * 2);
    this.skipUntilMs = Math.max(this.skipUntilMs, this.o.now() + this.skipMs);
    if (this.faults < FAULTS_TO_REPORT || !this.answering) return;
    this.answering = false;
    this.o.onMemberState?.(this.name, false);
  }

  get skipped(): boolean {
    return this.o.now() < this.skipUntilMs;
  }

  /** 0: answers; 1: a call has waited past the hedge; 2: put last after a fault (its skip not over). */
  rank(hedgeAfterMs: number): number {
    if (this.skipped) return 2;
    const now = this.o.now();
    for (const p of this.pendingSince) if (now - p.atMs > hedgeAfterMs) return 1;
    return this.faults > 0 ? 1 : 0;
  }

  /** It failed last and its skip is over: the next read probes it (and the skip starts again). */
  takeProbe(): boolean {
    if (this.faults === 0 || this.skipped) return false;
    this.skipUntilMs = this.o.now() + this.skipMs;
    return true;
  }
}

/** Whether a KV call only reads: sending it to a second member can apply nothing twice. */
export function isRead(service: string, method: string, payload: unknown): boolean {
  if (service !== 'KV') return false;
  if (method === 'range') return true;
  if (method !== 'txn') return false;
  const t = payload as { success?: unknown[]; failure?: unknown[] };
  return [...(t.success ?? []), ...(t.failure ?? [])].every(
    (op) => (op as { request_range?: unknown }).request_range != null,
  );
}

/**
 * The member choice for one client: make one, hand `hostPolicy` to etcd3's `faultHandling.host`, and
 * `install()` it on the client once made.
 */
export class MemberChoice {
  private readonly o: MemberChoiceOptions;
  private readonly members = new Map<string, Member>();

  constructor(o: MemberChoiceOptions) {
    this.o = o;
  }

  /** etcd3's `faultHandling.host`: one watcher of outcomes per member (it never refuses a call). */
  readonly hostPolicy = (host: string): IPolicy<IDefaultPolicyContext> => {
    const name = memberName(host);
    const m = new Member(name, { ...this.o, now: this.o.now ?? (() => performance.now()) });
    this.members.set(name, m);
    return m.policy();
  };

  install(client: Etcd3): void {
    const pool = (client as unknown as { pool: PoolInternals }).pool;
    const exec = pool.exec.bind(pool);
    const member = (h: PoolHost) => this.members.get(memberName(h.host));
    /** The order of the next call: read synchronously by exec() (and lazily by a watch's connect). */
    let pinned: PoolHost[] | null = null;
    pool.shuffledHosts = () => cycle(pinned ?? this.order(pool.hosts, member));
    const sendVia = (order: PoolHost[], run: () => Promise<unknown>): Promise<unknown> => {
      pinned = order;
      try {
        return run();
      } finally {
        pinned = null;
      }
    };
    pool.exec = (service, method, payload, options) => {
      if (!isRead(service, method, payload)) return exec(service, method, payload, options);
      const order = this.order(pool.hosts, member);
      // Only beside a member that answers: with none, the failed ones are in `order` anyway.
      const probe =
        member(order[0]!)?.rank(this.o.hedgeAfterMs) === 0
          ? order.find((h) => member(h)?.takeProbe())
          : undefined;
      return this.hedged(
        order.filter((h) => h !== probe),
        probe,
        (first, rest) => sendVia([first, ...rest], () => exec(service, method, payload, options)),
      );
    };
  }

  /** Answering members first (in random order, so nodes spread), then the doubtful, then the skipped. */
  private order(hosts: readonly PoolHost[], member: (h: PoolHost) => Member | undefined): PoolHost[] {
    const ranked = hosts.map((h) => {
      const m = member(h);
      const rank = m?.rank(this.o.hedgeAfterMs) ?? 0;
      // The skipped by when their skip ends: with none answering, the one that failed longest ago.
      return { h, rank, r: rank === 2 ? m!.skipUntilMs : Math.random() };
    });
    ranked.sort((a, b) => a.rank - b.rank || a.r - b.r);
    return ranked.map((x) => x.h);
  }

  /**
   * One read: on `order[0]`, then on each next member after `hedgeAfterMs` or at once on a member
   * fault, and on `probe` (a failed member due for a probe) beside the first. Every attempt carries
   * the caller's deadline; the first answer wins. An error that is an answer (too large, denied)
   * settles the read; only when every attempt failed on its member does the read fail.
   */
  private hedged(
    order: PoolHost[],
    probe: PoolHost | undefined,
    send: (first: PoolHost, rest: PoolHost[]) => Promise<unknown>,
  ): Promise<unknown> {
    return new Promise((resolve, reject) => {
      let next = 0;
      let running = 0;
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const done = (fn: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        fn();
      };
      const launch = (first: PoolHost, rest: PoolHost[], counts: boolean) => {
        running++;
        let attempt: Promise<unknown>;
        try {
          attempt = send(first, rest);
        } catch (err) {
          attempt = Promise.reject(err);
        }
        attempt.then(
          (res) => done(() => resolve(res)),
          (err: unknown) => {
            running--;
            if (settled) return;
            const memberFault = err instanceof Error && this.o.isMemberFault(err);
            // A probe's failure says nothing of the read while other attempts run.
            if (counts && !memberFault) return done(() => reject(err));
            if (counts && next < order.length) return startNext();
            if (running === 0 && next >= order.length) done(() => reject(err));
          },
        );
      };
      const startNext = () => {
        clearTimeout(timer);
        const i = next++;
        launch(order[i]!, [...order.slice(i + 1), ...order.slice(0, i)], true);
        if (next < order.length) timer = setTimeout(() => !settled && startNext(), this.o.hedgeAfterMs);
      };
      startNext();
      if (probe) launch(probe, [], false);
    });
  }
}

function* cycle<T>(items: readonly T[]): Generator<T> {
  if (items.length === 0) return;
  for (;;) yield* items;
}
