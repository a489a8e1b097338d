// The state cache on real processes (3-member etcd, the simulator, 3 controllers with peer
// channels): a kill -9 failover resumes bumplessly from the broadcast process state even though
// the units fell back to local control meanwhile; a restarted node catches up; failsafe keeps
// control through a whole-etcd outage while every member backs the leaders, and steps down when a
// member goes silent. The journal (the simulator's record of every write) is the witness.
import { describe, expect, it } from 'vitest';
import { useChaosHall } from '../chaos/chaos-hall.ts';
import { waitFor } from '../helpers.ts';
import type { JournalEntry } from '../support/journal-invariants.ts';

const WATCHDOG_S = 1;
const chaos = useChaosHall({
  name: 'state-cache',
  failsafe: true,
  peerProxies: true,
  watchdogS: WATCHDOG_S,
  groups: 2,
  airHandlers: 4,
});
const hall = chaos.hall;

async function api<T>(url: string, init?: RequestInit): Promise<T> {
  const res = await fetch(url, {
    ...init,
    headers: { ...hall().apiHeaders, ...(init?.headers as Record<string, string>) },
    signal: AbortSignal.timeout(2000),
  });
  const body = (await res.json()) as T;
  if (!res.ok) throw new Error(`${url} answered ${res.status}: ${JSON.stringify(body)}`);
  return body;
}

interface GroupInfo {
  epoch: number | null;
  driving: boolean;
  start: { source: string; epoch: number; row: { epoch: number; seq: number } | null } | null;
  processState: { epoch: number; seq: number; writer: string } | null;
}

const groupInfo = (node: string, group: string) =>
  api<GroupInfo>(`${hall().apiUrl(node)}/api/v1/groups/${group}`);

const within1Pct = (a: unknown, b: unknown) => Math.abs(Number(a) - Number(b)) <= Math.abs(Number(b)) * 0.01;

describe('state cache on real processes', () => {
  it('kill -9 of a leader: the new leader’s first command continues the old one’s control output (bumpless), from the cache', async () => {
    const h = hall();
    const leaders = await h.waitForLeaders();
    // A group whose sensors its leader trusts (a blind group runs its fans at the safe 100 %).
    const [group, old] = await waitFor(
      'a group under normal control',
      async () => {
        for (const [g, l] of leaders) {
          const v = await api<{ mode: string | null }>(`${h.apiUrl(l.node)}/api/v1/groups/${g}`);
          if (v.mode === 'normal') return [g, l] as const;
        }
        return null;
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    const ahus = h.groups[group]!;
    // A lighter IT load lets the control loop run the fans down from the units' local 100 %; a cold
    // start that read the units back during the failover would jump back to 100 %.
    await api(`${h.simUrl}/sim/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ fault: 'load-profile', profile: 'constant', factor: 0.5 }),
    });
    const seq0 = await h.lastSeq();
    await waitFor(
      'the control loop has every unit of the group below 95 % fan',
      async () => {
        const e = (await h.journal(seq0)).entries.filter((x) => x.accepted && x.epoch === old.epoch);
        return ahus.every((a) => {
          const last = e.filter((x) => x.ahu === a).at(-1);
          return last !== undefined && Number(last.values.fanPct) < 95;
        });
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    const mine = (await groupInfo(old.node, group)).processState!;
    const others = h.live().filter((n) => n !== old.node);
    await waitFor('every peer caches the row with the command', async () => {
      const views = await Promise.all(others.map((n) => groupInfo(n, group)));
      return views.every(
        (v) => v.processState && v.processState.epoch === mine.epoch && v.processState.seq >= mine.seq,
      );
    });

    const killedAt = await h.kill(old.node, 'SIGKILL');
    const now = await h.waitForLeaders({
      where: (l) => (l.get(group)?.epoch ?? 0) > old.epoch,
      timeoutMs: 20_000,
    });
    const successor = now.get(group)!;
    await waitFor('the new leader writes every unit', async () => {
      const e = (await h.journal(seq0)).entries;
      return ahus.every((a) => e.some((x) => x.ahu === a && x.accepted && x.epoch === successor.epoch));
    });
    const entries = (await h.journal(seq0)).entries.filter((e) => e.accepted);
    for (const a of ahus) {
      const last = entries.filter((e) => e.ahu === a && e.epoch === old.epoch).at(-1) as JournalEntry;
      const first = entries.find((e) => e.ahu === a && e.epoch === successor.epoch) as JournalEntry;
      expect(Number(last.values.fanPct)).toBeLessThan(95);
      expect(
        within1Pct(first.values.fanPct, last.values.fanPct),
        `${a} fan ${last.values.fanPct} → ${first.values.fanPct}`,
      ).toBe(true);
      expect(within1Pct(first.values.supplySetpointC, last.values.supplySetpointC)).toBe(true);
      // The failover outlasted the unit watchdog: the units were on local control in between.
      expect(first.wallMs - last.wallMs).toBeGreaterThan(WATCHDOG_S * 1000);
    }
    const info = await groupInfo(successor.node, group);
    expect(info.start).toMatchObject({ source: 'cache', epoch: successor.epoch, row: { epoch: old.epoch } });
    process.stdout.write(
      `kill -9 ${old.node} at ${new Date(killedAt).toISOString()}: ${group} resumed on ${successor.node} from the cache\n`,
    );

    // The killed node comes back with an empty cache and catches up from its peers.
    await h.start(old.node);
    await waitFor(
      'the restarted node caches every group’s current row',
      async () => {
        const current = await h.waitForLeaders();
        const views = await Promise.all(Object.keys(h.groups).map((g) => groupInfo(old.node, g)));
        return views.every((v, i) => v.processState?.epoch === current.get(Object.keys(h.groups)[i]!)?.epoch);
      },
      { timeoutMs: 20_000 },
    );
    expect((await h.check()).violations).toEqual([]);
  }, 90_000);

  it('netsplit: the cut leader’s rows held in the network land after the heal and are ignored as stale', async () => {
    const h = hall();
    const leaders = await h.waitForLeaders({ timeoutMs: 30_000 });
    const [group, old] = [...leaders][0]!;
    const others = h.live().filter((n) => n !== old.node);
    // The old leader loses etcd and every byte it sends its peers is held (a partition, not a close).
    h.cut(old.node);
    for (const n of others) h.cutPeerChannel(n);
    try {
      const now = await h.waitForLeaders({
        among: others,
        where: (l) => (l.get(group)?.epoch ?? 0) > old.epoch,
        timeoutMs: 20_000,
      });
      const successor = now.get(group)!;
      await waitFor('the new leader wrote its own row', async () => {
        const v = await groupInfo(successor.node, group);
        return v.processState?.epoch === successor.epoch;
      });
      expect(others.some((n) => h.peerChannelHeldBytes(n) > 0)).toBe(true);
    } finally {
      for (const n of others) h.healPeerChannel(n);
      h.heal(old.node);
    }
    const stale = async (node: string) => {
      const text = await (await fetch(`${h.apiUrl(node)}/metrics`, { headers: h.apiHeaders })).text();
      return Number(/coolctl_cache_rows_received_total\{result="stale"\} (\d+)/.exec(text)?.[1] ?? 0);
    };
    await waitFor('a peer counted the old leader’s late rows as stale', async () =>
      (await Promise.all(others.map(stale))).some((n) => n > 0),
    );
    const current = await h.waitForLeaders({ timeoutMs: 20_000 });
    await waitFor('every node caches the current leader’s row, not the stale one', async () => {
      const views = await Promise.all(h.live().map((n) => groupInfo(n, group)));
      return views.every((v) => v.processState?.epoch === current.get(group)!.epoch);
    });
    expect((await h.check()).violations).toEqual([]);
  }, 90_000);

  it('failsafe: leaders keep control through a whole-etcd outage while every member backs them, and stop when one goes silent', async () => {
    const h = hall();
    await h.waitForLeaders({ timeoutMs: 30_000 });
    const ttlMs = h.timing.leaseTtlS * 1000;
    const members = h.etcd.clientUrls.map((_, i) => i);
    const t0 = Date.now();
    await Promise.all(members.map((m) => h.etcd.kill(m, 'SIGKILL')));
    let stopped: string | null = null;
    let stopping: ReturnType<typeof h.exempt>[] = [];
    try {
      // Well past every lease deadline, every group is still driven.
      const seq0 = await h.lastSeq();
      await waitFor(
        'writes in every group past the lease TTL + 1 s',
        async () => {
          const e = (await h.journal(seq0)).entries.filter((x) => x.accepted && x.wallMs > t0 + ttlMs + 1000);
          return Object.values(h.groups).every((ahus) => e.some((x) => ahus.includes(x.ahu)));
        },
        { timeoutMs: 15_000 },
      );

      // One member goes silent (frozen): nobody may keep leading past one failsafe window. From
      // here until etcd is back every group is undriven by design (each leader stops a safety
      // margin before its hold ends: no write may land after it), so liveness is not judged then.
      stopped = h.live().at(-1)!;
      stopping = Object.keys(h.groups).map((g) => h.exempt(g, 'failsafe withdrawn: a member went silent'));
      const t1 = await h.kill(stopped, 'SIGSTOP');
      const bound = t1 + ttlMs + 300;
      await waitFor('the failsafe window to pass', async () => Date.now() > bound + 1500, {
        timeoutMs: ttlMs + 5000,
      });
      const late = (await h.journal(seq0)).entries.filter((x) => x.accepted && x.wallMs > bound);
      expect(late.map((x) => `${x.ahu} epoch ${x.epoch} +${x.wallMs - t1} ms`)).toEqual([]);
    } finally {
      if (stopped) await h.kill(stopped, 'SIGCONT');
      await Promise.all(members.map((m) => h.etcd.restart(m)));
    }
    await h.waitForLeaders({ timeoutMs: 30_000 });
    const back = Date.now();
    for (const x of stopping) x.toMs = back;
    expect((await h.check()).violations).toEqual([]);
  }, 120_000);
});
