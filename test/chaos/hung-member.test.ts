// A hung etcd member (SIGSTOPped: its port accepts, nothing answers) while the two others keep a
// quorum changes nothing a user notices: no failsafe, no "etcd not readable", /readyz ready
// throughout, the same leaders at the same epochs, every group written at its period, no lease
// trouble; one line and a gauge say which member does not answer, and after SIGCONT it is used
// again. Real processes: the 3-member etcd, the simulator, two controllers with failsafe on.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { memberName } from '../../src/cluster/etcd/etcd-members.ts';
import { waitFor } from '../helpers.ts';
import { Hall, type HallLogLine, type Leader } from '../support/hall.ts';

/** How long the member stays stopped: the measurement window itself, not a wait for state. */
const HOLD_MS = 20_000;
/** Between /readyz samples while held. */
const SAMPLE_MS = 250;

let hall: Hall;

/** The controllers' log lines since `sinceMs`. */
const lines = (sinceMs: number): Promise<HallLogLine[]> => hall.logLines(sinceMs);

/** coolctl_etcd_member_answering of `member` on `node`. */
async function answering(node: string, member: string): Promise<number> {
  const res = await fetch(`${hall.apiUrl(node)}/metrics`, {
    headers: hall.apiHeaders,
    signal: AbortSignal.timeout(2000),
  });
  const text = await res.text();
  const m = text.match(new RegExp(`^coolctl_etcd_member_answering\\{member="${member}"\\} (\\S+)$`, 'm'));
  if (!m)
    throw new Error(
      `${node}: no answering series for ${member}:\n${text.match(/^coolctl_etcd.*$/gm)?.join('\n')}`,
    );
  return Number(m[1]);
}

/** The name `node` knows etcd member `i` by: each controller dials the members through its own proxies. */
async function memberOf(node: string, i: number): Promise<string> {
  const cfg = parse(await readFile(join(hall.dir, `${node}.yaml`), 'utf8')) as {
    cluster: { etcd: { hosts: string[] } };
  };
  return memberName(cfg.cluster.etcd.hosts[i]!);
}

async function ready(node: string): Promise<boolean> {
  try {
    return (await fetch(`${hall.apiUrl(node)}/readyz`, { signal: AbortSignal.timeout(1000) })).ok;
  } catch {
    return false;
  }
}

function maxGapMs(times: number[]): number {
  const t = [...times].sort((a, b) => a - b);
  let gap = 0;
  for (let i = 1; i < t.length; i++) gap = Math.max(gap, t[i]! - t[i - 1]!);
  return gap;
}

beforeAll(async () => {
  hall = await Hall.start({
    name: 'hung-member',
    controllers: 2,
    groups: 2,
    airHandlers: 4,
    failsafe: true,
    liveness: false,
    secure: false,
  });
}, 120_000);

afterAll(async () => {
  await hall?.stopAll();
}, 30_000);

describe('a hung etcd member', () => {
  it('changes nothing while two members keep a quorum, is reported once, and is used again after SIGCONT', async () => {
    const before: Map<string, Leader> = await hall.waitForLeaders();
    // A follower: stopping the raft leader is an election as well (etcd-faults.test.ts has that).
    const raftLeader = await hall.etcdLeader();
    const stopped = [0, 1, 2].find((m) => m !== raftLeader)!;
    const member = new Map<string, string>();
    for (const node of hall.nodes) member.set(node, await memberOf(node, stopped));
    const seq0 = await hall.lastSeq();
    const t0 = Date.now();
    const notReady: string[] = [];
    const heldAnswering = new Map<string, number>();
    await hall.etcdSignal(stopped, 'SIGSTOP');
    try {
      for (let i = 0; Date.now() - t0 < HOLD_MS && i < HOLD_MS / SAMPLE_MS; i++) {
        for (const node of hall.nodes)
          if (!(await ready(node))) notReady.push(`${node} +${Date.now() - t0} ms`);
        await new Promise((r) => setTimeout(r, SAMPLE_MS));
      }
      // The report: each node's reads noticed the member and skip it.
      for (const node of hall.nodes) heldAnswering.set(node, await answering(node, member.get(node)!));
    } finally {
      await hall.etcdSignal(stopped, 'SIGCONT');
    }
    const t1 = Date.now();

    const held = (await lines(t0)).filter((l) => l.time <= t1);
    const count = (msg: string) =>
      held.filter((l) => l.msg.startsWith(msg)).map((l) => `${l.node} +${l.time - t0} ms`);
    const failsafe = count('etcd unreachable: asking every member to back us');
    const unreadable = count('etcd not readable');
    expect({ failsafe, unreadable, notReady }).toEqual({ failsafe: [], unreadable: [], notReady: [] });

    const after = await hall.leaders();
    expect(after.conflicts).toEqual([]);
    expect(Object.fromEntries(after.leaders)).toEqual(Object.fromEntries(before));
    for (const node of new Set([...before.values()].map((l) => l.node)))
      expect(await hall.leaseTrouble(node, t0), `${node}: lease trouble`).toEqual([]);

    // Every group written at its period across the hold (a few periods of slack for a loaded machine).
    const read = await hall.journal(seq0);
    for (const [g, ahus] of Object.entries(hall.groups)) {
      const writes = read.entries
        .filter((e) => e.accepted && ahus.includes(e.ahu) && e.wallMs > t0 && e.wallMs <= t1)
        .map((e) => e.wallMs);
      expect(maxGapMs([t0, ...writes, t1]), `${g}: longest gap between accepted writes`).toBeLessThanOrEqual(
        5 * hall.timing.periodMs,
      );
    }

    expect(Object.fromEntries(heldAnswering)).toEqual(Object.fromEntries(hall.nodes.map((n) => [n, 0])));
    // One line per node names the member; after SIGCONT a probe finds it answering (skips end at 10 s).
    const reports = held.filter((l) => l.msg.startsWith('etcd member does not answer'));
    for (const node of hall.nodes)
      expect(reports.filter((l) => l.node === node).map((l) => l.member)).toEqual([member.get(node)]);
    await waitFor(
      `etcd member ${stopped} answering again on every node`,
      async () => {
        for (const node of hall.nodes) if ((await answering(node, member.get(node)!)) !== 1) return false;
        return true;
      },
      { timeoutMs: 20_000, intervalMs: 250 },
    );
    const back = (await lines(t1)).filter((l) => l.msg === 'etcd member answers again');
    expect(new Set(back.map((l) => l.node))).toEqual(new Set(hall.nodes));
  }, 90_000);
});
