// The etcd wire for the cluster folder: one `etcd3` client configured so that nothing awaits
// forever, and `etcdCall()`, which gives every unary call a gRPC deadline AND an outer deadline (the
// promise settles even if the library never answers). Watches carry the `hasleader` metadata, so
// etcd refuses/cancels them on a member that has lost its raft leader instead of letting them go quiet.
// The package's own lease keepalive is never used: ours runs on its own thread (keepalive-worker.ts)
// over lease-wire.ts, which speaks the few Lease calls it needs without this package.
// Security (docs/security.md, "Encrypted links"): TLS with a client certificate and an etcd user are
// handed in as material already read from files; they never travel in a URL, a log line or an error.
import { type CallOptions, InterceptingCall, type Interceptor } from '@grpc/grpc-js';
import { ConstantBackoff, ExponentialBackoff, handleWhen, noop, retry } from 'cockatiel';
import {
  Etcd3,
  EtcdLeaseInvalidError,
  GRPCDeadlineExceededError,
  GRPCResourceExhastedError,
  GRPCUnavailableError,
  isRecoverableError,
} from 'etcd3';
import {
  ClusterError,
  causesOf,
  etcdAborted,
  etcdLeaseLost,
  etcdNoSpace,
  etcdTimeout,
  etcdUnavailable,
  isEtcdNoSpace,
} from '../errors.ts';
import { MemberChoice, type MemberStateListener } from './member-choice.ts';
import { WatchProgress } from './watch-progress.ts';

/**
 * How a client proves itself to etcd and checks etcd: the CA that signed the members' certificates,
 * this node's client certificate, and an etcd user. Plain data (bytes and strings), so the keepalive
 * worker gets the same settings through its workerData.
 */
export interface EtcdSecurity {
  tls?: { ca: Uint8Array; cert?: Uint8Array | undefined; key?: Uint8Array | undefined } | undefined;
  auth?: { username: string; password: string } | undefined;
}

export interface EtcdClientOptions extends EtcdSecurity {
  hosts: string[];
  /** Deadline of every unary call, ms. */
  callTimeoutMs: number;
  /** Told when a member stops answering (three member faults in a row) and when it answers again. */
  onMemberState?: MemberStateListener | undefined;
  /** Told when this client's watch stream is given up for silence (watch-progress.ts): a log line. */
  onWatchSilent?: ((silentMs: number) => void) | undefined;
}

/** A read with no answer after this share of the call deadline goes to a second member too. */
const HEDGE_AFTER_SHARE = 0.25;

/**
 * etcd's "require leader" switch (rpctypes.MetadataRequireLeaderKey). etcd3 has no option for it, so a
 * gRPC interceptor adds it to every Watch stream's metadata.
 */
const requireLeader: Interceptor = (options, nextCall) =>
  new InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      metadata.set('hasleader', 'true');
      next(metadata, listener);
    },
  });

export function createEtcdClient(opts: EtcdClientOptions): Etcd3 {
  const { tls, auth } = opts;
  // A hung member (SIGSTOPped, frozen disk: its port accepts, nothing answers) must cost nothing
  // while the others form a quorum: reads go to a second member too, a member that failed is put
  // last for 1 s growing to 10 s, and only a copy of a read probes it (member-choice.ts).
  const members = new MemberChoice({
    hedgeAfterMs: Math.max(1, Math.round(opts.callTimeoutMs * HEDGE_AFTER_SHARE)),
    isMemberFault: memberFault,
    onMemberState: opts.onMemberState,
  });
  const client = new Etcd3({
    hosts: opts.hosts,
    // grpc-js takes only Buffers; a worker's copy of the settings arrives as plain Uint8Arrays.
    ...(tls
      ? {
          credentials: {
            rootCertificate: Buffer.from(tls.ca),
            ...(tls.cert ? { certChain: Buffer.from(tls.cert) } : {}),
            ...(tls.key ? { privateKey: Buffer.from(tls.key) } : {}),
          },
        }
      : {}),
    ...(auth ? { auth: { username: auth.username, password: auth.password } } : {}),
    // Unary calls: a deadline even when a caller forgets one. Streams: their own deadline per use
    // (keepalive) or none (the long-lived watch, which requires a leader instead).
    defaultCallOptions: (ctx) => {
      if (ctx.service === 'Watch') return { interceptors: [requireLeader] };
      if (ctx.isStream) return {};
      return { deadline: Date.now() + opts.callTimeoutMs };
    },
    faultHandling: {
      // Library retries for one case only: a unary call that never left this process (no connection
      // to the member the package picked at random, e.g. a dead one) goes to the next member at once
      // (each member at most once per call), inside the same deadline; a call that reached a member
      // is never sent again (our loops retry that on their own schedule). Before, a dead member
      // failed about one call in three until its breaker opened, and once a second after that: a
      // lost audit entry, a failed member-key check.
      global:
        opts.hosts.length > 1
          ? retry(handleWhen(neverSent), {
              maxAttempts: opts.hosts.length - 1,
              backoff: new ConstantBackoff(0),
            })
          : noop,
      // Outcomes per member, for the choice above; it never refuses a call. Before, a breaker
      // refused a member for a fixed 1 s after three faults: a hung member timed out a call every
      // two seconds or so, and a leader's read landing there engaged failsafe. An answer too large
      // for one message says nothing of the member (others can put large values; the paged
      // readers shrink their pages), so it counts as an answer.
      host: members.hostPolicy,
      // The library default grows to 30 s; a watch must come back quickly after a member restarts.
      watchBackoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 1_000 }).next(),
    },
    grpcOptions: {
      // Notice a dead TCP connection (blackholed peer) and reconnect, within etcd's ping policy (5 s).
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 3_000,
    },
  });
  members.install(client);
  // A watch stream on a member that hangs is given up within seconds, not at the keepalive's 13 s.
  const progress = new WatchProgress(client, { answerMs: opts.callTimeoutMs, onSilent: opts.onWatchSilent });
  const close = client.close.bind(client);
  client.close = () => {
    progress.stop();
    close();
  };
  return client;
}

/**
 * A failure that says the member is unwell: not an answer too large, and not etcd out of space
 * (every member refuses alike; trying another one cannot help).
 */
function memberFault(err: Error): boolean {
  return isRecoverableError(err) && !isTooLarge(err) && !isEtcdNoSpace(err);
}

/**
 * A response over the gRPC message limit (grpc-js: RESOURCE_EXHAUSTED "larger than max"), cured by
 * smaller pages. etcd out of space shares the gRPC status but not the cure: never this.
 */
export function isTooLarge(err: unknown): boolean {
  if (isEtcdNoSpace(err)) return false;
  return causesOf(err).some(
    (e) =>
      e instanceof GRPCResourceExhastedError ||
      (e instanceof Error && /larger than max|RESOURCE_EXHAUSTED/i.test(e.message)),
  );
}

/**
 * A call that failed before it reached any etcd member: grpc-js had no connection to send it on
 * (refused, or the channel is backing off after a failed connect). Sending it to another member
 * cannot apply anything twice.
 */
export function neverSent(err: unknown): boolean {
  return err instanceof GRPCUnavailableError && err.message.includes('No connection established');
}

/** Call options with a gRPC deadline `ms` from now (wall clock, as gRPC wants it). */
export function deadline(ms: number): CallOptions {
  return { deadline: Date.now() + ms };
}

/**
 * Runs one etcd call with a deadline: the call gets it as gRPC call options, and the returned promise
 * rejects with a typed error at the deadline or when `signal` aborts, whatever the library does.
 */
export async function etcdCall<T>(
  what: string,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  fn: (options: CallOptions) => Promise<T>,
): Promise<T> {
  if (signal?.aborted) throw etcdAborted(what, signal);
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const bounded = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(etcdTimeout(what, timeoutMs)), timeoutMs);
    onAbort = () => reject(etcdAborted(what, signal));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([
      fn(deadline(timeoutMs)).catch((err: unknown) => Promise.reject(toClusterError(what, timeoutMs, err))),
      bounded,
    ]);
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
    bounded.catch(() => {}); // the losing branch must not become an unhandled rejection
  }
}

/**
 * Maps an etcd3/gRPC error to our catalog; a lease etcd does not know is LEASE_LOST (not retryable),
 * a write refused for lack of space is ETCD_NO_SPACE (with the remedy).
 */
export function toClusterError(what: string, timeoutMs: number, err: unknown): ClusterError {
  if (err instanceof ClusterError) return err;
  if (err instanceof EtcdLeaseInvalidError) return etcdLeaseLost(what, err);
  if (isEtcdNoSpace(err)) return etcdNoSpace(what, err);
  if (err instanceof GRPCDeadlineExceededError) return etcdTimeout(what, timeoutMs, err);
  return etcdUnavailable(what, err instanceof Error ? err.message : String(err), err);
}
