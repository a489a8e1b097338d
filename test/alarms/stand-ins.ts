// Stand-ins for the alarm engine's neighbours, for the tests that run the engine and its store on a
// real etcd: the leadership (which groups this node leads, who the members are, whether etcd
// answers; read at each call, so a test changes it between evaluations) and a group's loop with one
// unit in a given mode. The real ones run in test/alarms/alarms-hall.test.ts.
import type { GroupLeadership, Leadership } from '../../src/cluster/leadership.ts';
import type { Site } from '../../src/config/site-schema.ts';
import type { GroupDriver } from '../../src/control/group-driver.ts';

/** What a node's leadership says; a test changes it between evaluations. */
export interface Said {
  healthy: boolean;
  leads: Set<string>;
  members: string[];
}

export function leadershipOf(site: Site, node: string, said: Said): Leadership {
  const groups = (): GroupLeadership[] =>
    site.controlGroups.map((g) => ({
      group: g.id,
      role: said.leads.has(g.id) ? 'leader' : 'follower',
      leader: said.leads.has(g.id) ? node : null,
      epoch: said.leads.has(g.id) ? 7 : null,
      sinceMs: 0,
    }));
  return {
    node,
    on: () => undefined,
    off: () => undefined,
    once: () => undefined,
    start: async () => {},
    stop: async () => {},
    groups,
    members: () => said.members.map((n) => ({ node: n, apiUrl: `http://${n}`, startedAtMs: 0 })),
    fence: (g: string) => (said.leads.has(g) ? { epoch: 7, untilMs: Number.POSITIVE_INFINITY } : null),
    switchover: async () => {},
    get healthy() {
      return said.healthy;
    },
  };
}

/** A group's loop as the engine reads it: its one unit `ahu`, in `unit.mode` (read at each call). */
export function driverOf(ahu: string, unit: { mode: string }): GroupDriver {
  return {
    driving: true,
    driveStatus: { problem: null, relinquished: null, relinquishHeldUntilMs: null, undrivenLimitMs: 5000 },
    units: () => [
      {
        ahu,
        held: null,
        lastWriteOkMs: null,
        lastError: null,
        refusals: 0,
        mode: unit.mode,
        released: false,
      },
    ],
  } as unknown as GroupDriver;
}
