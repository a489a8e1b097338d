// The IPC between bench/cluster.ts and its controller nodes (bench/lib/cluster-node.ts): one request,
// one reply, matched by id; role changes flow from the node unasked, in batches, stamped with the
// node's wall clock (all processes share one host clock, so stamps compare across nodes).

export interface ClusterTiming {
  leaseTtlS: number;
  keepaliveIntervalMs: number;
  safetyMarginMs: number;
  etcdCallTimeoutMs: number;
  rebalanceHoldMs: number;
}

export interface NodeStartArgs {
  node: string;
  /** Cluster key prefix in etcd (one per phase of the bench). */
  prefix: string;
  groups: string[];
  etcdHosts: string[];
  timing: ClusterTiming;
  /** The cluster secret, hex (over IPC, never on a command line). */
  secretHex: string;
  /** Lease-id file and log live here. */
  dataDir: string;
  /** Every this many ms a leader writes each group it leads to the state cache (0: no rows). */
  rowPeriodMs: number;
}

export interface NodeStats {
  rssMb: number;
  heapUsedMb: number;
  /** CPU time used since the last resetStats, µs (user + system). */
  cpuUs: number;
  /** Since the last resetStats: the event loop's delay, p99 and max (ms). */
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  /** Groups this node leads now, and those it waits for in a queue. */
  leading: number;
  candidates: number;
  /** Members the last snapshot showed. */
  members: number;
  /** State-cache rows held and peer links up. */
  rows: number;
  peersUp: number;
}

export interface RoleEvent {
  group: string;
  from: string;
  to: string;
  /** Date.now() in the node when the role changed. */
  atMs: number;
}

export type NodeRequest =
  | { id: number; cmd: 'start'; args: NodeStartArgs }
  | { id: number; cmd: 'stats'; reset: boolean }
  | { id: number; cmd: 'groups'; groups: string[] }
  | { id: number; cmd: 'stop' };

export type NodeMessage =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: string }
  | { roles: RoleEvent[]; node: string };
