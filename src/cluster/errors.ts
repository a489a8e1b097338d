// The cluster's typed errors: etcd unreachable or slow, a lost lease, a refused switchover.
// Codes are stable (COOLCTL_E_…); every error says whether retrying can help and keeps its cause.
import { CoolctlError, ErrorCodes } from '../errors.ts';

export const ClusterErrorCodes = {
  /** An etcd call got no answer within its deadline. */
  ETCD_TIMEOUT: ErrorCodes.ETCD_TIMEOUT,
  /** An etcd call failed (member down, no leader, connection refused, …). */
  ETCD_UNAVAILABLE: ErrorCodes.ETCD_UNAVAILABLE,
  /** etcd refuses every write that grows its db: its backend quota is used up (NOSPACE alarm). */
  ETCD_NO_SPACE: ErrorCodes.ETCD_NO_SPACE,
  /** etcd says our lease no longer exists: every key it held is gone. */
  LEASE_LOST: ErrorCodes.LEASE_LOST,
  /** Another live process already registered this node name. */
  NODE_NAME_TAKEN: ErrorCodes.NODE_NAME_TAKEN,
  /** Another live process (another node) uses this node's data dir. */
  DATA_DIR_IN_USE: ErrorCodes.DATA_DIR_IN_USE,
  /** A switchover was refused or did not complete in time. */
  SWITCHOVER_FAILED: ErrorCodes.SWITCHOVER_FAILED,
  /** The caller aborted, or the component was stopped, while waiting. */
  ABORTED: ErrorCodes.CLUSTER_ABORTED,
  NOT_LEADER: ErrorCodes.NOT_LEADER,
} as const;
export type ClusterErrorCode = (typeof ClusterErrorCodes)[keyof typeof ClusterErrorCodes];

export class ClusterError extends CoolctlError {
  constructor(code: ClusterErrorCode, message: string, opts: { cause?: unknown; retryable?: boolean } = {}) {
    super(code, message, opts);
  }
}

/** Whether `err` is one of ours with `code`. */
export function isClusterError(err: unknown, code: ClusterErrorCode): err is ClusterError {
  return err instanceof CoolctlError && err.code === code;
}

// One wording for the failures of an etcd call, whichever client made it (etcd-client.ts over
// etcd3, lease-wire.ts over node:http2): `etcd <what>: …`. Retryable where another try can help.

/** No answer within the call's deadline. */
export function etcdTimeout(what: string, timeoutMs: number, cause?: unknown): ClusterError {
  return new ClusterError(ClusterErrorCodes.ETCD_TIMEOUT, `etcd ${what}: no answer within ${timeoutMs} ms`, {
    cause,
    retryable: true,
  });
}

/** The call failed (refused, reset, no leader, a garbled answer); another try or member may answer. */
export function etcdUnavailable(what: string, message: string, cause?: unknown): ClusterError {
  return new ClusterError(ClusterErrorCodes.ETCD_UNAVAILABLE, `etcd ${what}: ${message}`, {
    cause,
    retryable: true,
  });
}

/** etcd has no such lease: every key it held is gone, on every member. */
export function etcdLeaseLost(what: string, cause: unknown): ClusterError {
  return new ClusterError(ClusterErrorCodes.LEASE_LOST, `etcd ${what}: lease not found`, { cause });
}

/** The caller's signal aborted the call. */
export function etcdAborted(what: string, signal: AbortSignal | undefined): ClusterError {
  return new ClusterError(ClusterErrorCodes.ABORTED, `etcd ${what}: aborted`, { cause: signal?.reason });
}

/**
 * What an operator does when etcd is out of space: the one wording the alarm, the log line and the
 * refused actions share (docs/leadership.md, "etcd out of space"). etcd keeps refusing writes after
 * space is freed until its NOSPACE alarm is disarmed by hand.
 */
export const ETCD_NO_SPACE_REMEDY =
  'free space, then disarm: etcdctl compact <current revision>; etcdctl defrag (each member); etcdctl alarm disarm';

/**
 * Whether `err` (or a cause of it) is etcd refusing a write for lack of space: our
 * COOLCTL_E_ETCD_NO_SPACE, or etcd's words "etcdserver: mvcc: database space exceeded" (gRPC
 * RESOURCE_EXHAUSTED). The one recogniser: reads, deletes and lease keepalives still work.
 */
export function isEtcdNoSpace(err: unknown): boolean {
  return causesOf(err).some(
    (e) =>
      (e instanceof CoolctlError && e.code === ErrorCodes.ETCD_NO_SPACE) ||
      (e instanceof Error && /database space exceeded/i.test(e.message)),
  );
}

/** `err` and its causes, outermost first, at most five deep (our errors wrap the library's). */
export function causesOf(err: unknown): unknown[] {
  const out: unknown[] = [];
  for (let e = err, i = 0; e && i < 5; e = (e as { cause?: unknown }).cause, i++) out.push(e);
  return out;
}

/**
 * etcd refused a write for lack of space. Retryable: the same call succeeds, unrestarted, once an
 * operator has freed space and disarmed (no try helps before that), so callers retry on their tick.
 */
export function etcdNoSpace(what: string, cause?: unknown): ClusterError {
  return new ClusterError(
    ClusterErrorCodes.ETCD_NO_SPACE,
    `etcd ${what}: database space exceeded (etcd's NOSPACE alarm: it takes no writes); ${ETCD_NO_SPACE_REMEDY}`,
    { cause, retryable: true },
  );
}
