// The daemon drives units of both protocols: a controller process against the simulator's Modbus
// TCP and OPC-UA air handlers — every unit, whatever its protocol, gets fenced writes under its
// group's leader (the journal says which protocol carried each); and the last node, stopping, hands
// every unit to its local control.
import { describe, expect, it } from 'vitest';
import { useChaosHall } from '../chaos/chaos-hall.ts';
import { waitFor } from '../helpers.ts';

const chaos = useChaosHall({ name: 'protocols', controllers: 1, groups: 2, airHandlers: 4, opcuaShare: 0.5 });

describe('a controller drives Modbus and OPC-UA units', () => {
  it('writes every unit of every group, over both protocols', async () => {
    const h = chaos.hall();
    const leaders = await h.waitForLeaders();
    const seq0 = await h.lastSeq();
    const ahus = Object.values(h.groups).flat();
    const read = await waitFor(
      'an accepted write to every unit under its leader’s epoch',
      async () => {
        const r = await h.journal(seq0);
        const epochOf = (ahu: string) =>
          leaders.get(Object.entries(h.groups).find(([, a]) => a.includes(ahu))![0])!.epoch;
        return ahus.every((a) => r.entries.some((e) => e.ahu === a && e.accepted && e.epoch === epochOf(a)))
          ? r
          : null;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    const protocols = new Set(read.entries.filter((e) => e.accepted).map((e) => e.protocol));
    expect([...protocols].sort()).toEqual(['modbus-tcp', 'opcua']);
    expect((await h.check()).violations).toEqual([]);

    // The only node stops: nobody will take over, so it hands every unit to its local control.
    const seq1 = await h.lastSeq();
    await h.kill('c1', 'SIGTERM');
    expect(await h.exitCode('c1')).toBe(0);
    const released = (await h.journal(seq1)).entries.filter(
      (e) => e.accepted && e.values.remoteEnable === false,
    );
    expect(new Set(released.map((e) => e.ahu))).toEqual(new Set(ahus));
  }, 90_000);
});
