// A watch stream on an etcd member that hangs (SIGSTOPped: its port accepts, nothing answers) is
// given up within the watch-progress bound (watch-progress.ts), not when gRPC's keepalive declares
// the connection dead (3–13 s, and more when the stream comes back on the same member). As a user
// notices it: with each member hung in turn (so whichever member a node's watches are on is hung
// once), a pause taken through the other node stops the group's leader, and a token revoked through
// the other node is refused by the leader's node, both within WATCH_SILENCE_BOUND_MS.
// Real processes: the 3-member etcd, the simulator, two controllers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers.ts';
import { Hall } from '../support/hall.ts';

/** The documented bound (docs/leadership.md, docs/security.md), plus a second for a loaded machine. */
const WATCH_SILENCE_BOUND_MS = 4_000 + 1_000;
/** How long a measurement may run: long enough to show the figures of a stream left silent. */
const MEASURE_MS = 30_000;

let hall: Hall;

beforeAll(async () => {
  hall = await Hall.start({
    name: 'hung-watch-member',
    controllers: 2,
    groups: 2,
    airHandlers: 4,
    liveness: false,
    secure: false,
  });
}, 120_000);

afterAll(async () => {
  await hall?.stopAll();
}, 30_000);

interface Call {
  status: number;
  body: Record<string, unknown>;
}

async function call(
  node: string,
  method: string,
  path: string,
  token: string,
  body?: unknown,
): Promise<Call> {
  const res = await fetch(`${hall.apiUrl(node)}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(5_000),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

/** An operator action through `node`, retried while etcd elects (the raft leader may be the one hung). */
async function act(node: string, method: string, path: string, body?: unknown): Promise<Call> {
  const admin = hall.apiHeaders.authorization!.replace(/^Bearer /, '');
  return waitFor(
    `${method} ${path} on ${node}`,
    async () => {
      const r = await call(node, method, path, admin, body);
      return r.status === 200 ? r : null;
    },
    { timeoutMs: 10_000, intervalMs: 100 },
  );
}

/** Wall ms of the last accepted write to `group` (0: none since `seq`). */
async function lastWrite(group: string, seq: number): Promise<number> {
  const ahus = hall.groups[group]!;
  const read = await hall.journal(seq);
  return Math.max(0, ...read.entries.filter((e) => e.accepted && ahus.includes(e.ahu)).map((e) => e.wallMs));
}

/** The nodes' "watch stream silent" lines so far (one per stream given up). */
async function silentLines(): Promise<string[]> {
  return (await hall.logLines())
    .filter((l) => l.msg.startsWith('watch stream silent'))
    .map((l) => `${l.node}: ${l.msg}`);
}

describe('a watch stream on a hung etcd member', () => {
  it('is given up within the bound: a pause reaches the leader, a revoked token is refused', async () => {
    const group = Object.keys(hall.groups).sort()[0]!;
    const figures: string[] = [];
    const late: string[] = [];
    // While every member answers, no stream is ever given up (the hall has run since its start).
    expect(await silentLines(), 'streams given up with every member answering').toEqual([]);
    for (const member of [0, 1, 2]) {
      const leaders = await hall.waitForLeaders();
      const leader = leaders.get(group)!.node;
      const other = hall.nodes.find((n) => n !== leader)!;
      const made = await act(other, 'POST', '/api/v1/tokens', { label: `hung-${member}` });
      const token = made.body.token as string;
      await waitFor(`${leader} takes the new token`, async () => {
        return (await call(leader, 'GET', '/api/v1/cluster', token)).status === 200;
      });
      const seq = await hall.lastSeq();
      await hall.etcdSignal(member, 'SIGSTOP');
      try {
        // Both at once, right after the hang: neither waits out the other's recovery.
        // (a) A pause through the other node: how long until the leader stops writing the group.
        const paused = (async () => {
          await act(other, 'POST', `/api/v1/groups/${group}/pause`, { reason: 'hung watch member' });
          const pausedAt = Date.now();
          const quietMs = 5 * hall.timing.periodMs;
          const stoppedAt = await waitFor(
            `${leader} stops writing ${group}`,
            async () => {
              const last = Math.max(await lastWrite(group, seq), pausedAt);
              return Date.now() - last >= quietMs ? last : null;
            },
            { timeoutMs: MEASURE_MS, intervalMs: 100 },
          );
          return stoppedAt - pausedAt;
        })();
        // (b) The token revoked through the other node: how long until the leader's node refuses it.
        const revoked = (async () => {
          await act(other, 'DELETE', `/api/v1/tokens/${made.body.id as string}`);
          const revokedAt = performance.now();
          await waitFor(
            `${leader} refuses the revoked token`,
            async () => (await call(leader, 'GET', '/api/v1/cluster', token)).status === 401,
            { timeoutMs: MEASURE_MS, intervalMs: 50 },
          );
          return performance.now() - revokedAt;
        })();
        const [pauseMs, revokeMs] = await Promise.all([paused, revoked]);
        figures.push(`member ${member} hung: pause ${pauseMs} ms, revoke ${Math.round(revokeMs)} ms`);
        if (pauseMs > WATCH_SILENCE_BOUND_MS) late.push(`member ${member}: pause took ${pauseMs} ms`);
        if (revokeMs > WATCH_SILENCE_BOUND_MS)
          late.push(`member ${member}: revoke took ${Math.round(revokeMs)} ms`);
      } finally {
        await hall.etcdSignal(member, 'SIGCONT');
      }
      await act(other, 'POST', `/api/v1/groups/${group}/resume`);
      const resumedAt = Date.now();
      await waitFor(`${group} written again`, async () => (await lastWrite(group, seq)) > resumedAt, {
        timeoutMs: MEASURE_MS,
        intervalMs: 100,
      });
    }
    process.stdout.write(`${figures.join('\n')}\n`);
    expect(late).toEqual([]);
    // Every stream given up is counted, and logged once.
    let counted = 0;
    for (const node of hall.nodes) {
      const res = await fetch(`${hall.apiUrl(node)}/metrics`, { headers: hall.apiHeaders });
      for (const m of (await res.text()).matchAll(
        /^coolctl_etcd_watch_streams_given_up_total\{[^}]*\} (\S+)$/gm,
      ))
        counted += Number(m[1]);
    }
    expect(counted).toBeGreaterThan(0);
    expect(counted).toBe((await silentLines()).length);
  }, 300_000);
});
