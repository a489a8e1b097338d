// Safe modes, operator actions and loop supervision on real processes (etcd ×3, the simulator, two
// controllers): a pause and an override survive a kill -9 of the group's leader; the simulator's
// faults (a tripped unit, lost sensors, a dead gateway) put a group in its safe modes and back; a
// crashing step restarts its loop alone while the process's other loop runs on. The journal (the
// simulator's record of every write) and the controllers' API are the witnesses.
// The hall's generated site puts all six sensor nodes in zone-1: zone-2 and zone-3 run blind
// throughout (fans at the safe 100 %), which makes them plain to read for pause and overrides.
// Its sensors run at a fifth of the product's timing (SENSOR_TIMING): the safe modes' transitions
// are the same, their waits are shorter.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { Site } from '../../src/config/site-schema.ts';
import { useChaosHall } from '../chaos/chaos-hall.ts';
import { waitFor } from '../helpers.ts';
import { type Hall, settle } from '../support/hall.ts';
import type { JournalEntry } from '../support/journal-invariants.ts';

const CRASH_GROUP = 'zone-2';
/**
 * Reports every 2 s (stale after the default 3 of them: 6 s) and a 12 s verdict hold: the defaults'
 * 10 s, 30 s and 60 s over 5, so the hold is still twice the stale window (src/sensors/verdict.ts
 * says why that ratio). What the safe-mode cases wait for — sensors going stale, a flapping group's
 * hold running out — comes 5 times sooner; what they assert does not depend on the scale.
 */
const SENSOR_TIMING = { reportIntervalS: 2, verdictRecoveryS: 12 };
const chaos = useChaosHall({
  name: 'daemon-modes',
  controllers: 2,
  groups: 3,
  airHandlers: 6,
  env: { COOLCTL_TEST_CRASH_GROUP: CRASH_GROUP },
  reportIntervalS: SENSOR_TIMING.reportIntervalS,
  sensing: { verdictRecoveryS: SENSOR_TIMING.verdictRecoveryS },
});
const hall = chaos.hall;
/** The group with sensors (the others are blind by construction). */
const SENSED = 'zone-1';

interface GroupInfo {
  leader: string | null;
  epoch: number | null;
  state: string;
  driving: boolean;
  mode: string | null;
  reasons: string[];
  operator: { paused: boolean; overrides: Record<string, { fanPct?: number; toLocal?: boolean }> } | null;
  sensors: { verdict: string } | null;
  units: { ahu: string; released: boolean; held: { fanPct: number; supplySetpointC: number } | null }[];
  start: { source: string; epoch: number } | null;
}

async function api<T>(url: string, init?: RequestInit): Promise<T> {
  const res = await fetch(url, {
    ...init,
    headers: { ...hall().apiHeaders, ...(init?.headers as Record<string, string>) },
    signal: AbortSignal.timeout(3000),
  });
  const body = (await res.json()) as T;
  if (!res.ok)
    throw new Error(`${init?.method ?? 'GET'} ${url} answered ${res.status}: ${JSON.stringify(body)}`);
  return body;
}

const send = (method: string, url: string, body?: object) =>
  api(url, {
    method,
    ...(body ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) } : {}),
  });
const groupInfo = (node: string, group: string) =>
  api<GroupInfo>(`${hall().apiUrl(node)}/api/v1/groups/${group}`);
const operate = (node: string, method: string, path: string, body?: object) =>
  send(method, `${hall().apiUrl(node)}/api/v1/groups/${path}`, body);
const fault = (f: object) => send('POST', `${hall().simUrl}/sim/faults`, f);

const accepted = (es: JournalEntry[], ahu: string) => es.filter((e) => e.accepted && e.ahu === ahu);
const fan = (e: JournalEntry) => Number(e.values.fanPct);
const setpoint = (e: JournalEntry) => Number(e.values.supplySetpointC);

/** Waits until every unit in `ahus` has `n` accepted writes after `since` (time passing, witnessed). */
async function writtenAfter(h: Hall, ahus: string[], since: number, n: number): Promise<JournalEntry[]> {
  return waitFor(
    `${n} accepted writes to each of ${ahus.join(', ')} after seq ${since}`,
    async () => {
      const es = (await h.journal(since)).entries;
      return ahus.every((a) => accepted(es, a).length >= n) ? es : null;
    },
    { timeoutMs: 20_000, intervalMs: 100 },
  );
}

const othersThan = (h: Hall, group: string) =>
  Object.entries(h.groups)
    .filter(([g]) => g !== group)
    .flatMap(([, a]) => a);

/** The longest pause between accepted writes to a unit, ms. */
function longestGap(es: JournalEntry[], ahu: string): number {
  const t = accepted(es, ahu).map((e) => e.wallMs);
  return Math.max(0, ...t.slice(1).map((x, i) => x - t[i]!));
}

async function crashCount(node: string, group: string): Promise<number> {
  const text = await (await fetch(`${hall().apiUrl(node)}/metrics`, { headers: hall().apiHeaders })).text();
  const m = new RegExp(`coolctl_control_loop_crashes_total\\{group="${group}"\\} (\\d+)`).exec(text);
  return Number(m?.[1] ?? 0);
}

// A light IT load: zone-1's fans run well under 100 %, so a trip's compensation shows.
const LIGHT_LOAD = { fault: 'load-profile', profile: 'constant', factor: 0.5 };

beforeAll(async () => {
  await fault(LIGHT_LOAD);
});

// Every test leaves the hall as it found it: no fault but the light load, no pause, no override,
// both nodes running. clear-all resets the load profile too, so the light load goes back with it.
afterEach(async () => {
  const h = hall();
  await fault([{ fault: 'clear-all' }, LIGHT_LOAD]);
  for (const n of h.nodes) if (!h.running(n)) await h.start(n);
  const node = h.live()[0]!;
  for (const g of Object.keys(h.groups)) {
    const op = (await groupInfo(node, g)).operator;
    if (op?.paused) await operate(node, 'POST', `${g}/resume`, {});
    for (const a of Object.keys(op?.overrides ?? {})) await operate(node, 'DELETE', `${g}/overrides/${a}`);
  }
  await settle(h, { even: true, timeoutMs: 30_000 });
}, 60_000);

describe('operator actions survive a failover', () => {
  it('pause: units released, nothing taken back by the old or the new leader after kill -9; resume takes them back', async () => {
    const h = hall();
    const group = 'zone-3';
    const ahus = h.groups[group]!;
    const old = (await h.waitForLeaders()).get(group)!;
    const other = h.nodes.find((n) => n !== old.node)!;
    const seq0 = await h.lastSeq();
    // Any node takes it (operator state lives in etcd): ask the one that does not lead.
    await operate(other, 'POST', `${group}/pause`, { reason: 'test: maintenance' });

    const released = await waitFor('every unit released (one write with remoteEnable false)', async () => {
      const es = (await h.journal(seq0)).entries;
      const r = ahus.map((a) => accepted(es, a).find((e) => e.values.remoteEnable === false));
      return r.every(Boolean) ? (r as JournalEntry[]) : null;
    });
    for (const r of released) expect(r.epoch).toBe(old.epoch);
    const releasedSeq = Math.max(...released.map((r) => r.seq));
    // While the other groups' units are written ten times more, the paused ones get nothing.
    let es = await writtenAfter(h, othersThan(h, group), releasedSeq, 10);
    for (const r of released) expect(accepted(es, r.ahu).filter((e) => e.seq > r.seq)).toEqual([]);
    const paused = await groupInfo(old.node, group);
    expect(paused).toMatchObject({ mode: 'paused', operator: { paused: true } });
    expect(paused.units.every((u) => u.released)).toBe(true);

    // kill -9 of the leader: the new one knows the pause from etcd and takes nothing back. (It does
    // hand each unit to local control once more with its own epoch — a unit already there stays
    // there; see the report of this test file's commit.)
    await h.kill(old.node, 'SIGKILL');
    const now = (await h.waitForLeaders({ where: (l) => (l.get(group)?.epoch ?? 0) > old.epoch })).get(
      group,
    )!;
    await waitFor(`${now.node} drives ${group}`, async () => {
      const v = await groupInfo(now.node, group);
      return v.driving && v.epoch === now.epoch;
    });
    es = await writtenAfter(h, othersThan(h, group), await h.lastSeq(), 10);
    const after = (await h.journal(releasedSeq)).entries.filter(
      (e) => ahus.includes(e.ahu) && e.seq > releasedSeq,
    );
    const show = (e: JournalEntry) =>
      `${e.ahu} epoch ${e.epoch} ${JSON.stringify(e.values)} accepted=${e.accepted}`;
    expect(
      after.filter((e) => e.epoch !== now.epoch || e.values.remoteEnable !== false).map(show),
      'writes to the paused units after their release, other than a release by the new leader',
    ).toEqual([]);
    for (const a of ahus)
      expect(after.filter((e) => e.ahu === a).length, `${a}: releases by the new leader`).toBeLessThanOrEqual(
        1,
      );
    if (after.length > 0)
      process.stdout.write(`pause: the new leader re-released ${after.map(show).join('; ')}\n`);
    const leading = await groupInfo(now.node, group);
    expect(leading).toMatchObject({ mode: 'paused', reasons: ['group paused'], operator: { paused: true } });
    expect(leading.units.every((u) => u.released)).toBe(true);

    // Resume: the current leader takes the units back under remote control.
    const seq1 = await h.lastSeq();
    await operate(now.node, 'POST', `${group}/resume`, {});
    await waitFor('every unit written again with remoteEnable true by the current leader', async () => {
      es = (await h.journal(seq1)).entries;
      return ahus.every((a) =>
        accepted(es, a).some((e) => e.values.remoteEnable === true && e.epoch === now.epoch),
      );
    });
    const back = await groupInfo(now.node, group);
    expect(back.mode).toBe('blind'); // zone-3 has no sensors: the law's mode, not 'paused'
    expect(back.operator?.paused).toBe(false);
  }, 120_000);

  it('override: a manual fan % is the new leader’s first command after kill -9; deleted, the law takes the unit back', async () => {
    const h = hall();
    const group = 'zone-3';
    const [unit, mate] = h.groups[group] as [string, string];
    const old = (await h.waitForLeaders()).get(group)!;
    const other = h.nodes.find((n) => n !== old.node)!;
    const seq0 = await h.lastSeq();
    await operate(other, 'PUT', `${group}/overrides/${unit}`, { fanPct: 47 });
    await waitFor(`${unit} written at 47 %`, async () =>
      accepted((await h.journal(seq0)).entries, unit).some((e) => fan(e) === 47 && e.epoch === old.epoch),
    );
    const info = await groupInfo(old.node, group);
    expect(info.reasons).toContain(`${unit} manual fan 47 %`);
    expect(info.units.find((u) => u.ahu === mate)?.held?.fanPct).toBe(100); // blind: the law's safe fans

    const seqKill = await h.lastSeq();
    await h.kill(old.node, 'SIGKILL');
    const now = (await h.waitForLeaders({ where: (l) => (l.get(group)?.epoch ?? 0) > old.epoch })).get(
      group,
    )!;
    await writtenAfter(h, [unit, mate], seqKill, 5);
    const byNew = accepted((await h.journal(seqKill)).entries, unit).filter((e) => e.epoch === now.epoch);
    expect(byNew.length).toBeGreaterThan(0);
    expect(
      byNew.map((e) => fan(e)),
      `${unit}: the new leader's commands until the override is deleted`,
    ).toEqual(byNew.map(() => 47));
    expect((await groupInfo(now.node, group)).reasons).toContain(`${unit} manual fan 47 %`);

    // Deleted: the law takes the unit back, ramping from 47 % to the group's safe 100 %.
    const seqDel = await h.lastSeq();
    await operate(now.node, 'DELETE', `${group}/overrides/${unit}`);
    const ramp = await waitFor(`${unit} back at the law's 100 %`, async () => {
      const w = accepted((await h.journal(seqDel)).entries, unit).filter((e) => e.epoch === now.epoch);
      return w.some((e) => fan(e) === 100) ? w : null;
    });
    const up = ramp.map(fan);
    expect(Math.min(...up), `${unit} fan after the delete: ${up.join(' ')}`).toBeGreaterThanOrEqual(47);
    expect(up.filter((x) => x > 47 && x < 100).length, 'ramped, not jumped').toBeGreaterThan(2);
    expect((await groupInfo(now.node, group)).reasons.some((r) => r.includes('manual'))).toBe(false);
  }, 120_000);

  it('override to local: that unit released once, the other unit of the group written on; deleted, taken back', async () => {
    const h = hall();
    const group = 'zone-3';
    const [unit, mate] = h.groups[group] as [string, string];
    const leader = (await h.waitForLeaders()).get(group)!;
    const seq0 = await h.lastSeq();
    await operate(leader.node, 'PUT', `${group}/overrides/${unit}`, { toLocal: true });
    const release = await waitFor(`${unit} released`, async () =>
      accepted((await h.journal(seq0)).entries, unit).find((e) => e.values.remoteEnable === false),
    );
    const es = await writtenAfter(h, [mate], release.seq, 10);
    expect(accepted(es, unit).filter((e) => e.seq > release.seq)).toEqual([]);
    expect(accepted(es, mate).every((e) => e.values.remoteEnable === true)).toBe(true);
    const info = await groupInfo(leader.node, group);
    expect(info.reasons).toContain(`${unit} on local control by operator`);
    expect(info.units.find((u) => u.ahu === unit)?.released).toBe(true);

    const seq1 = await h.lastSeq();
    await operate(leader.node, 'DELETE', `${group}/overrides/${unit}`);
    await waitFor(`${unit} taken back under remote control`, async () =>
      accepted((await h.journal(seq1)).entries, unit).some((e) => e.values.remoteEnable === true),
    );
  }, 60_000);
});

describe('safe modes from the simulator’s faults', () => {
  it('a tripped unit: the other unit of the group takes its airflow, and the reasons say so', async () => {
    const h = hall();
    const [tripped, mate] = h.groups[SENSED] as [string, string];
    const leader = (await h.waitForLeaders()).get(SENSED)!;
    // Under normal control with fans below 90 %, so that compensation has room to show. (A node
    // restarted above may have taken the group over before hearing its sensors: then the group
    // flaps, and this waits out its verdict hold.)
    const before = await waitFor(
      `${SENSED} under normal control with ${mate} below 90 %`,
      async () => {
        const v = await groupInfo(leader.node, SENSED);
        const f = v.units.find((u) => u.ahu === mate)?.held?.fanPct;
        return v.mode === 'normal' && f !== undefined && f < 90 ? f : null;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    const seq0 = await h.lastSeq();
    await fault({ fault: 'ahu-trip', ahu: tripped });
    await waitFor(`the leader reports ${tripped} tripped`, async () =>
      (await groupInfo(leader.node, SENSED)).reasons.includes(`${tripped} tripped: others compensate`),
    );
    // Its command rises (the feed-forward, at the safety layer's up-rate), never past full speed.
    const want = before + 4; // before < 90: the feed-forward leaves at least 5 % to gain
    await waitFor(`${mate}'s command to rise from ${before} % to ${want} %`, async () =>
      accepted((await h.journal(seq0)).entries, mate).some((x) => fan(x) >= want),
    );
    const es = await writtenAfter(h, [mate], seq0, 50);
    const series = accepted(es, mate).map(fan);
    process.stdout.write(
      `trip: ${mate} fan ${before} % before, then ${series.filter((_, i) => i % 5 === 0).join(' ')}\n`,
    );
    expect(Math.max(...series)).toBeLessThanOrEqual(100);

    const seq1 = await h.lastSeq();
    await fault({ fault: 'ahu-trip', ahu: tripped, clear: true });
    await waitFor(
      `${tripped} back in the group`,
      async () => {
        const v = await groupInfo(leader.node, SENSED);
        return !v.reasons.some((r) => r.includes('tripped'));
      },
      { timeoutMs: 20_000 },
    );
    await writtenAfter(h, [tripped], seq1, 3);
  }, 180_000);

  it('degraded sensors: conservative control (fan floor 60 %)', async () => {
    const h = hall();
    const ahus = h.groups[SENSED]!;
    const leader = (await h.waitForLeaders()).get(SENSED)!;
    // Two of six nodes go silent: once their readings are stale (3 report intervals: 6 s), 12 of 18
    // inlet sensors are good (0.3 ≤ 0.67 < 0.8). (Not out-of-range: an impossible value stays in
    // the noise window and keeps the sensor 'noisy' for 8 more reports after the fault clears.)
    const bad = ['N0001', 'N0002'].map((node) => ({ fault: 'sensor-dead', node }));
    await fault(bad);
    const v = await waitFor(
      `${SENSED} degraded`,
      async () => {
        const x = await groupInfo(leader.node, SENSED);
        return x.mode === 'degraded' ? x : null;
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    expect(v.sensors?.verdict).toBe('degraded');
    expect(v.reasons).toContain('sensors degraded: conservative');
    const seq = await h.lastSeq();
    await waitFor(
      'every unit commanded at or above the degraded floor',
      async () => {
        const es = (await h.journal(seq)).entries;
        return ahus.every((a) => {
          const last = accepted(es, a).at(-1);
          return last !== undefined && fan(last) >= 60;
        });
      },
      { timeoutMs: 20_000, intervalMs: 250 },
    );
    await fault(bad.map((f) => ({ ...f, clear: true })));
    // Back once the nodes report again; a flapping group only once its sensors have said ok for
    // sensing.verdictRecoveryS without a break (test/control/verdict-recovery.test.ts tests that hold).
    await waitFor(
      `${SENSED} back to normal`,
      async () => (await groupInfo(leader.node, SENSED)).mode === 'normal',
      { timeoutMs: 60_000, intervalMs: 250 },
    );
  }, 180_000);

  it('blind (gateway down): safe fans and local setpoints; cleared, back to normal without a jump', async () => {
    const h = hall();
    const ahus = h.groups[SENSED]!;
    const site = parse(await readFile(join(h.dir, 'site.yaml'), 'utf8')) as Site;
    const local = new Map(site.airHandlers.map((a) => [a.id, a.localSetpointC ?? 18]));
    const leader = (await h.waitForLeaders()).get(SENSED)!;
    await waitFor(
      `${SENSED} under normal control`,
      async () => (await groupInfo(leader.node, SENSED)).mode === 'normal',
      {
        timeoutMs: 30_000,
      },
    );
    const seq0 = await h.lastSeq();
    await fault({ fault: 'gateway-down', gateway: 'gw-1' });
    const v = await waitFor(`${SENSED} blind`, async () => {
      const x = await groupInfo(leader.node, SENSED);
      return x.mode === 'blind' ? x : null;
    });
    expect(v.sensors?.verdict).toBe('blind');
    expect(v.reasons).toContain('sensors blind: safe fans, local setpoints');
    await waitFor(
      'every unit commanded 100 % fan and its local setpoint',
      async () => {
        const es = (await h.journal(seq0)).entries;
        return ahus.every((a) => {
          const last = accepted(es, a).at(-1);
          return last !== undefined && fan(last) === 100 && setpoint(last) === local.get(a);
        });
      },
      { timeoutMs: 90_000, intervalMs: 250 },
    );

    const seq1 = await h.lastSeq();
    await fault({ fault: 'gateway-down', gateway: 'gw-1', clear: true });
    // Back once the sensors have been ok for sensing.verdictRecoveryS without a break: the group
    // left ok in the case above too, seconds ago, so it flaps and is held degraded that long.
    await waitFor(
      `${SENSED} back to normal`,
      async () => (await groupInfo(leader.node, SENSED)).mode === 'normal',
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    const es = await writtenAfter(h, ahus, await h.lastSeq(), 15);
    // From the last blind command on, each command moves within the ramp limits (down 0.5 %/s, up
    // 6 %/s, setpoint 0.1 K/s; twice the elapsed time for scheduling jitter, plus the resolution).
    const tail = (await h.journal(seq1)).entries;
    for (const a of ahus) {
      const w = accepted(tail, a).filter((e) => e.seq <= (accepted(es, a).at(-1)?.seq ?? 0));
      expect(w.length).toBeGreaterThan(15);
      const jumps: string[] = [];
      for (let i = 1; i < w.length; i++) {
        const dtS = (2 * Math.max(h.timing.periodMs, w[i]!.wallMs - w[i - 1]!.wallMs)) / 1000;
        const df = fan(w[i]!) - fan(w[i - 1]!);
        const ds = Math.abs(setpoint(w[i]!) - setpoint(w[i - 1]!));
        if (df < -(0.5 * dtS + 0.2) || df > 6 * dtS + 0.2 || ds > 0.1 * dtS + 0.1)
          jumps.push(
            `seq ${w[i]!.seq}: ${fan(w[i - 1]!)} → ${fan(w[i]!)} %, ${setpoint(w[i - 1]!)} → ${setpoint(w[i]!)} °C`,
          );
      }
      expect(jumps, `${a}: commands outside the ramp limits after blind`).toEqual([]);
    }
  }, 240_000);
});

describe('supervision', () => {
  it('a crashing step restarts its loop alone, after its backoff; the process’s other loop never pauses', async () => {
    const h = hall();
    let leaders = await h.waitForLeaders();
    const node = leaders.get(CRASH_GROUP)!.node;
    let mates = [...leaders].filter(([g, l]) => g !== CRASH_GROUP && l.node === node).map(([g]) => g);
    if (mates.length === 0) {
      // Bring another group onto the crashing loop's process: that is the loop that must not notice.
      const [g, l] = [...leaders].find(([x]) => x !== CRASH_GROUP)!;
      await operate(l.node, 'POST', `${g}/switchover`, { to: node });
      leaders = await h.waitForLeaders({ where: (x) => x.get(g)?.node === node });
      mates = [g];
    }
    const epoch = leaders.get(CRASH_GROUP)!.epoch;
    const crashes0 = await crashCount(node, CRASH_GROUP);
    const seq0 = await h.lastSeq();
    const everyUnit = Object.values(h.groups).flat();
    await writtenAfter(h, everyUnit, seq0, 5);

    const crashedAt = Date.now();
    h.signal(node, 'SIGUSR2'); // the test hook: the group's next step throws
    await waitFor('the crash counted', async () => (await crashCount(node, CRASH_GROUP)) === crashes0 + 1);
    const logPath = join(h.dir, `${node}.log`);
    const line = await waitFor('the crash logged', async () =>
      (await readFile(logPath, 'utf8'))
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { msg: string; group?: string; time: number; restartInMs?: number })
        .find(
          (l) =>
            l.msg === 'control loop crashed; restarting it alone' &&
            l.group === CRASH_GROUP &&
            l.time >= crashedAt - 1000,
        ),
    );
    expect(line.restartInMs).toBeLessThanOrEqual(h.timing.periodMs);

    // Driven again under the same epoch, warm-started from its own process state.
    const seq1 = await h.lastSeq();
    await writtenAfter(h, everyUnit, seq1, 10);
    const es = (await h.journal(seq0)).entries;
    for (const a of h.groups[CRASH_GROUP]!)
      expect(accepted(es, a).filter((e) => e.wallMs > line.time && e.epoch === epoch).length).toBeGreaterThan(
        5,
      );
    const after = await groupInfo(node, CRASH_GROUP);
    expect(after).toMatchObject({ driving: true, epoch, start: { epoch } });
    process.stdout.write(`${CRASH_GROUP} restarted: start ${JSON.stringify(after.start)}\n`);

    // Nobody else noticed: leaders and epochs unchanged, no other crash, no pause in any write stream.
    expect(await h.waitForLeaders()).toEqual(leaders);
    for (const g of mates) expect(await crashCount(node, g)).toBe(0);
    const gaps: Record<string, number> = {};
    for (const a of everyUnit) gaps[a] = longestGap(es, a);
    process.stdout.write(
      `longest gaps between writes (ms), ${CRASH_GROUP} crashed: ${JSON.stringify(gaps)}\n`,
    );
    for (const a of othersThan(h, CRASH_GROUP))
      expect(gaps[a], `${a}: longest pause`).toBeLessThan(h.timing.periodMs * 4);
    for (const a of h.groups[CRASH_GROUP]!) expect(gaps[a], `${a}: the restart's pause`).toBeLessThan(3000);
  }, 90_000);

  it('the journal invariants held throughout (never two leaders on one group)', async () => {
    expect((await hall().check()).violations).toEqual([]);
  });
});
