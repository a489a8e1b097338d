// Never none on real processes (etcd ×3, the simulator's Modbus TCP and OPC-UA servers, two
// controllers): a unit answering our stale-epoch code for ~2 s while its epoch is not newer (Modbus
// 0x0D, OPC-UA BadInvalidState) costs that unit its writes and nothing else — the group's other unit
// is written every period, the same leader writes the unit again once the fault clears. A unit whose
// epoch really is newer (written directly, above the leader's) makes the leader hand the group on,
// with the reason in its API. The simulator's journal is the witness.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { ModbusAirHandler, Site } from '../../src/config/site-schema.ts';
import { ModbusDevice } from '../../src/devices/modbus/modbus-device.ts';
import { useChaosHall } from '../chaos/chaos-hall.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import type { Hall } from '../support/hall.ts';
import type { JournalEntry } from '../support/journal-invariants.ts';

// The generated site: zone-1 = AHU-01, AHU-03 (Modbus TCP); zone-2 = AHU-02, AHU-04 (OPC-UA).
const chaos = useChaosHall({
  name: 'never-none',
  controllers: 2,
  groups: 2,
  airHandlers: 4,
  opcuaShare: 0.5,
});
const hall = chaos.hall;
const FAULT_MS = 2_000;

interface GroupView {
  relinquished: { reason: string; cause?: string; atMs: number } | null;
  problem: string | null;
  units: { ahu: string; refusals: number; lastError: string | null }[];
}

async function getJson<T>(url: string): Promise<T> {
  // The hall's API token goes to the simulator too; it ignores it.
  const res = await fetch(url, { headers: hall().apiHeaders, signal: AbortSignal.timeout(3000) });
  if (!res.ok) throw new Error(`${url} answered ${res.status}`);
  return (await res.json()) as T;
}

const accepted = (es: JournalEntry[], ahu: string) => es.filter((e) => e.accepted && e.ahu === ahu);

/** The longest pause between accepted writes to a unit, ms. */
function longestGap(es: JournalEntry[], ahu: string): number {
  const t = accepted(es, ahu).map((e) => e.wallMs);
  return Math.max(0, ...t.slice(1).map((x, i) => x - t[i]!));
}

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

/** ~2 s of `fault` on `ahu`, witnessed in the journal; then cleared. */
async function transientRefusal(group: string, ahu: string, fault: Record<string, unknown>): Promise<void> {
  const h = hall();
  const leader = (await h.waitForLeaders()).get(group)!;
  const other = h.groups[group]!.find((a) => a !== ahu)!;
  await writtenAfter(h, h.groups[group]!, await h.lastSeq(), 3);

  const refusalsOf = async () =>
    (await getJson<GroupView>(`${h.apiUrl(leader.node)}/api/v1/groups/${group}`)).units.find(
      (u) => u.ahu === ahu,
    )!.refusals;
  const refusals0 = await refusalsOf();
  const seqF = await h.lastSeq();
  await h.simFault({ ...fault, ahu });
  const faultAt = Date.now();
  // Witnessed: the leader counts the unit's refusals, period after period, for the fault's length.
  const minRefusals = FAULT_MS / h.timing.periodMs / 2;
  await waitFor(
    `${FAULT_MS} ms of refusals from ${ahu}`,
    async () => Date.now() - faultAt >= FAULT_MS && (await refusalsOf()) >= refusals0 + minRefusals,
    { timeoutMs: 15_000, intervalMs: 100 },
  );
  const seqC = await h.lastSeq();
  const clearedAt = Date.now();
  await h.simFault({ ...fault, ahu, clear: true });
  await writtenAfter(h, [ahu], seqC, 3);
  const es = (await h.journal(seqF)).entries;

  // The unit refused (the write, or the status read before it) and took nothing meanwhile.
  const refused = es.filter((e) => e.ahu === ahu && !e.accepted && e.seq <= seqC);
  expect(refused.every((e) => e.epoch === leader.epoch && /^fault-/.test(e.reason ?? ''))).toBe(true);
  if (fault.writesOnly || fault.fault === 'ahu-bad-status')
    expect(refused.length).toBeGreaterThanOrEqual(minRefusals); // writes reach the unit: journaled
  // The group's other unit: accepted writes throughout, no pause longer than a few periods.
  const during = (e: JournalEntry) => e.wallMs >= faultAt && e.wallMs <= clearedAt;
  const gap = longestGap(es, other);
  const otherDuring = accepted(es, other).filter(during);
  process.stdout.write(
    `${group}: ${ahu} refused for ${clearedAt - faultAt} ms (${refused.length} refused writes journaled); ${other}: ${otherDuring.length} accepted meanwhile, longest gap ${gap} ms\n`,
  );
  expect(gap).toBeLessThan(h.timing.periodMs * 5);
  expect(otherDuring.length).toBeGreaterThanOrEqual(minRefusals);
  expect(otherDuring.every((e) => e.epoch === leader.epoch)).toBe(true);
  // Cleared: the same leader, the same term, writes the unit again.
  expect(accepted(es, ahu).filter((e) => e.seq > seqC)[0]!.epoch).toBe(leader.epoch);
  expect((await h.waitForLeaders()).get(group)).toEqual(leader);
  const view = await getJson<GroupView>(`${h.apiUrl(leader.node)}/api/v1/groups/${group}`);
  expect(view.units.find((u) => u.ahu === ahu)!.refusals).toBeGreaterThan(0);
  expect(view.relinquished).toBeNull();
  expect(view.problem).toBeNull();
}

describe('a unit refusing with the stale-epoch code while its epoch is not newer', () => {
  it('Modbus 0x0D on every request for ~2 s: the other unit is written throughout, the unit again after', async () => {
    await transientRefusal('zone-1', 'AHU-01', { fault: 'ahu-exception', code: 13 });
  }, 60_000);

  it('Modbus 0x0D on writes only (the epoch reads back as ours): the same', async () => {
    await transientRefusal('zone-1', 'AHU-03', { fault: 'ahu-exception', code: 13, writesOnly: true });
  }, 60_000);

  it('OPC-UA BadInvalidState for ~2 s: the same', async () => {
    await transientRefusal('zone-2', 'AHU-02', { fault: 'ahu-bad-status', status: 'BadInvalidState' });
  }, 60_000);

  it('kept the journal invariants (never two leaders on one group) and liveness', async () => {
    expect((await hall().check()).violations.map((v) => v.message)).toEqual([]);
  });
});

describe('a unit whose epoch really is newer', () => {
  it('the leader hands the group on within seconds, the reason in its API; the next leader drives every unit', async () => {
    const h = hall();
    const group = 'zone-1';
    const ahu = 'AHU-03';
    const leader = (await h.waitForLeaders()).get(group)!;
    await writtenAfter(h, h.groups[group]!, await h.lastSeq(), 3);

    // A writer with a newer epoch than the leader's, straight to the unit (as a newer leader would).
    const site = parse(await readFile(join(h.dir, 'site-sim.yaml'), 'utf8')) as Site;
    const state = await getJson<{ ahus: { id: string; endpoint: string }[] }>(`${h.simUrl}/sim/state`);
    const url = new URL(state.ahus.find((a) => a.id === ahu)!.endpoint);
    const config = {
      ...(site.airHandlers.find((a) => a.id === ahu) as ModbusAirHandler),
      endpoint: { host: url.hostname, port: Number(url.port), unitId: Number(url.pathname.slice(1)) },
    };
    const newer = new ModbusDevice(config, { logger: quietLogger });
    const newerEpoch = leader.epoch + 1;
    try {
      const r = await newer.read();
      await newer.writeCommand(
        { epoch: newerEpoch, remoteEnable: true, fanPct: r.fanPct, supplySetpointC: r.supplySetpointC },
        { reassert: true },
      );
    } finally {
      await newer.close();
    }
    const bumpedAt = Date.now();

    const handedOn = await waitFor(
      'the old leader to hand the group on, with the reason',
      async () => {
        const v = await getJson<GroupView>(`${h.apiUrl(leader.node)}/api/v1/groups/${group}`);
        return v.relinquished && v.relinquished.atMs >= bumpedAt - 1000 ? v.relinquished : null;
      },
      { timeoutMs: 10_000, intervalMs: 50 },
    );
    process.stdout.write(
      `${group} handed on ${handedOn.atMs - bumpedAt} ms after the bump: ${handedOn.reason}\n`,
    );
    expect(handedOn.cause).toBe('stale-epoch');
    expect(handedOn.reason).toContain(`${ahu} holds epoch ${newerEpoch}, above ours (${leader.epoch})`);
    expect(handedOn.atMs - bumpedAt).toBeLessThan(3_000);
    const entry = (
      await getJson<{ groups: { id: string; relinquished: { reason: string } | null }[] }>(
        `${h.apiUrl(leader.node)}/api/v1/cluster`,
      )
    ).groups.find((g) => g.id === group)!;
    expect(entry.relinquished?.reason).toContain(`holds epoch ${newerEpoch}`);

    // A new term, newer than the unit's epoch, drives both units.
    const next = await h.waitForLeaders({ where: (l) => (l.get(group)?.epoch ?? 0) > leader.epoch });
    const term = next.get(group)!;
    expect(term.epoch).toBeGreaterThanOrEqual(newerEpoch);
    const seq = await h.lastSeq();
    const es = await writtenAfter(h, h.groups[group]!, seq, 3);
    for (const a of h.groups[group]!) expect(accepted(es, a).every((e) => e.epoch === term.epoch)).toBe(true);
  }, 60_000);
});
