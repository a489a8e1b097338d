// The IPC between bench/cache.ts (the writer) and its peer processes (bench/lib/cache-peer.ts):
// one request, one reply, matched by id.

export interface PeerStartArgs {
  node: string;
  cluster: string;
  /** The cluster secret, hex (over IPC, never on a command line). */
  secretHex: string;
}

export interface PeerPorts {
  /** The state cache's peer channel. */
  port: number;
  /** The baseline's ack channel (a PeerChannel of its own, acking what the etcd watch delivered). */
  basePort: number;
}

export interface PeerStats {
  /** Rows this peer's cache applied (newer version; duplicates and stale rows not counted). */
  applied: number;
  appliedBytes: number;
  /** Of which rows of 1 MiB or more. */
  bigApplied: number;
  /** Rows received on the etcd watch (the baseline) and acked. */
  watched: number;
  /** Peer links of this node's cache that are up. */
  peersUp: number;
  /** Incoming baseline ack links (the writer's). */
  ackLinks: number;
  /** CPU time this process used so far, µs (user + system). */
  cpuUs: number;
}

export type PeerRequest =
  | { id: number; cmd: 'start'; args: PeerStartArgs }
  | { id: number; cmd: 'members'; args: { node: string; peerUrl: string }[] }
  | { id: number; cmd: 'watch'; args: { hosts: string[]; prefix: string } }
  | { id: number; cmd: 'stats' }
  | { id: number; cmd: 'stop' };

export type PeerReply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };
