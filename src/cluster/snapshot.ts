// ClusterSnapshot: one immutable, linearizable view of everything under the cluster prefix —
// members, and per group the election queue and any handover marker — read in ONE range call.
// The decision loop decides from a snapshot alone (Patroni-style); nothing here does I/O but read().
// Layout: <prefix>/members/<node>, <prefix>/election/<group>/<leaseHex>, <prefix>/handover/<group>,
// <prefix>/operator/<group>.
import type { Etcd3, IKeyValue } from 'etcd3';
import { electionPrefix, type QueueEntry, queueOf } from './election.ts';
import { etcdCall } from './etcd-client.ts';
import type { Member } from './leadership.ts';
import { type OperatorState, parseOperatorState } from './operator-state.ts';

export interface HandoverMarker {
  key: string;
  group: string;
  from: string;
  to: string;
  /** The epoch of the leader that wrote it. */
  epoch: number;
  /** Lease (hex) of the writer: the marker dies with the old leader. */
  leaseHex: string;
  modRevision: number;
}

export interface MemberRecord extends Member {
  leaseHex: string;
}

export interface ClusterSnapshot {
  /** etcd revision of the read. */
  revision: number;
  /** Monotonic ms when the read was SENT: a decision may rely on it only for what was true then. */
  readAtMs: number;
  members: Map<string, MemberRecord>;
  queues: Map<string, QueueEntry[]>;
  markers: Map<string, HandoverMarker>;
  /** Operators' pause and overrides per group (absent: none). */
  operators: Map<string, OperatorState>;
}

export function memberKey(prefix: string, node: string): string {
  return `${prefix}/members/${node}`;
}

export function markerKey(prefix: string, group: string): string {
  return `${prefix}/handover/${group}`;
}

/** Reads the whole prefix in one linearizable range with a deadline (a leaderless member fails it). */
export async function readSnapshot(
  client: Etcd3,
  prefix: string,
  groups: readonly string[],
  callTimeoutMs: number,
  now: () => number,
  signal?: AbortSignal,
): Promise<ClusterSnapshot> {
  const readAtMs = now();
  const res = await etcdCall('snapshot read', callTimeoutMs, signal, (o) =>
    client.getAll().prefix(`${prefix}/`).options(o).exec(),
  );
  return parseSnapshot(res.kvs, prefix, groups, Number(res.header.revision), readAtMs);
}

export function parseSnapshot(
  kvs: readonly IKeyValue[],
  prefix: string,
  groups: readonly string[],
  revision: number,
  readAtMs: number,
): ClusterSnapshot {
  const members = new Map<string, MemberRecord>();
  const markers = new Map<string, HandoverMarker>();
  const memberStart = `${prefix}/members/`;
  const markerStart = `${prefix}/handover/`;
  const operatorStart = `${prefix}/operator/`;
  const operators = new Map<string, OperatorState>();
  for (const kv of kvs) {
    const key = kv.key.toString();
    if (key.startsWith(memberStart)) {
      const m = parseJson(kv.value);
      const node = key.slice(memberStart.length);
      if (m && typeof m.apiUrl === 'string') {
        members.set(node, {
          node,
          apiUrl: m.apiUrl,
          ...(typeof m.peerUrl === 'string' ? { peerUrl: m.peerUrl } : {}),
          startedAtMs: Number(m.startedAtMs) || 0,
          leaseHex: BigInt(kv.lease).toString(16),
        });
      }
    } else if (key.startsWith(operatorStart)) {
      const st = parseOperatorState(kv.value.toString());
      if (st) operators.set(key.slice(operatorStart.length), st);
    } else if (key.startsWith(markerStart)) {
      const m = parseJson(kv.value);
      const group = key.slice(markerStart.length);
      if (m && typeof m.from === 'string' && typeof m.to === 'string') {
        markers.set(group, {
          key,
          group,
          from: m.from,
          to: m.to,
          epoch: Number(m.epoch) || 0,
          leaseHex: BigInt(kv.lease).toString(16),
          modRevision: Number(kv.mod_revision),
        });
      }
    }
  }
  const queues = new Map<string, QueueEntry[]>();
  for (const group of groups) queues.set(group, queueOf(kvs, electionPrefix(prefix, group)));
  return { revision, readAtMs, members, queues, markers, operators };
}

function parseJson(value: Buffer): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(value.toString());
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : null;
  } catch {
    return null; // a foreign or broken value: ignored, never fatal
  }
}
