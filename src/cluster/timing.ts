// The single-leader timing rule: which lease, keepalive, margin and call timeouts keep one leader
// per group (docs/leadership.md, *Timing rule*). Pure, and on its own so that the config can check
// it at load without importing the etcd class.

/** The leadership timing settings the rule is about. */
export interface LeadershipTiming {
  /** Lease TTL, whole seconds, ≥ 2. */
  leaseTtlS: number;
  keepaliveIntervalMs: number;
  /** Subtracted from the lease deadline: covers clock-rate drift and a write already on the wire. */
  safetyMarginMs: number;
  etcdCallTimeoutMs: number;
  /** Membership must be unchanged this long before groups are moved to even out placement. */
  rebalanceHoldMs: number;
}

export type TimingField =
  | 'leaseTtlS'
  | 'keepaliveIntervalMs'
  | 'safetyMarginMs'
  | 'etcdCallTimeoutMs'
  | 'rebalanceHoldMs';

export interface TimingProblem {
  field: TimingField;
  message: string;
  allowed: string;
}

/**
 * The single-leader timing rule, the one implementation: the constructor refuses what it finds,
 * and the controller config reports it at load with the file's paths. Empty when valid.
 */
export function leadershipTimingProblems(o: LeadershipTiming): TimingProblem[] {
  const problems: TimingProblem[] = [];
  const ttlMs = o.leaseTtlS * 1000;
  if (!Number.isInteger(o.leaseTtlS) || o.leaseTtlS < 2) {
    problems.push({
      field: 'leaseTtlS',
      message: `leaseTtlS must be a whole number ≥ 2, got ${o.leaseTtlS}: etcd would silently raise a ${o.leaseTtlS} s TTL to its minimum (1.5 s with the default election timeout, rounded up to 2 s), so leaders would act on a lease that is not what was configured`,
      allowed: 'leaseTtlS ≥ 2, whole seconds',
    });
  }
  for (const field of ['keepaliveIntervalMs', 'safetyMarginMs', 'etcdCallTimeoutMs'] as const) {
    if (!(o[field] > 0))
      problems.push({ field, message: `${field} must be > 0, got ${o[field]}`, allowed: '> 0' });
  }
  if (!(o.keepaliveIntervalMs * 3 + o.safetyMarginMs < ttlMs)) {
    problems.push({
      field: 'keepaliveIntervalMs',
      message: `keepaliveIntervalMs × 3 + safetyMarginMs = ${o.keepaliveIntervalMs * 3 + o.safetyMarginMs} ms is not below the ${ttlMs} ms lease TTL: two lost keepalives would fence a healthy leader, or a late one let it act on an expired lease`,
      allowed: `keepaliveIntervalMs × 3 + safetyMarginMs < leaseTtlS × 1000, e.g. keepaliveIntervalMs ≤ ${Math.max(50, Math.floor((ttlMs - o.safetyMarginMs - 1) / 3))}`,
    });
  }
  if (!(o.etcdCallTimeoutMs < ttlMs - o.safetyMarginMs)) {
    problems.push({
      field: 'etcdCallTimeoutMs',
      message: `an etcd call may take ${o.etcdCallTimeoutMs} ms, longer than the ${ttlMs - o.safetyMarginMs} ms a lease lets a leader act`,
      allowed: 'etcdCallTimeoutMs < leaseTtlS × 1000 − safetyMarginMs',
    });
  }
  if (!(o.rebalanceHoldMs >= 0)) {
    problems.push({
      field: 'rebalanceHoldMs',
      message: `rebalanceHoldMs must be ≥ 0, got ${o.rebalanceHoldMs}`,
      allowed: '≥ 0',
    });
  }
  return problems;
}
