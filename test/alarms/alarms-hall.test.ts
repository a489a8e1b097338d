// Alarms across real processes (etcd ×3, the simulator, three controllers): a unit trip in the
// simulator raises exactly one alarm cluster-wide — every node answers the same single record —
// and keeps it single while every node goes on evaluating; an acknowledgement made with
// `coolctl alarms --ack` through one node reads the same on the others; kill -9 of the group's
// leader leaves one alarm with its acknowledgement, and the new leader clears it when the unit
// runs again.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useChaosHall } from '../chaos/chaos-hall.ts';
import { waitFor } from '../helpers.ts';
import { runCoolctl } from '../support/cli-run.ts';

const chaos = useChaosHall({ name: 'alarms', controllers: 3, groups: 3, airHandlers: 6 });
const hall = chaos.hall;

interface ApiAlarm {
  id: string;
  kind: string;
  group: string | null;
  subject: string | null;
  state: string;
  ack: { user: string; comment: string } | null;
}

async function alarms(node: string, state: 'active' | 'all' = 'active'): Promise<ApiAlarm[]> {
  const res = await fetch(`${hall().apiUrl(node)}/api/v1/alarms?state=${state}`, {
    headers: hall().apiHeaders,
    signal: AbortSignal.timeout(3000),
  });
  if (!res.ok) throw new Error(`${node} answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { alarms: ApiAlarm[] }).alarms;
}

/** This node's alarm evaluations so far (the engine runs once a second). */
async function evaluations(node: string): Promise<number> {
  const text = await (
    await fetch(`${hall().apiUrl(node)}/metrics`, {
      headers: hall().apiHeaders,
      signal: AbortSignal.timeout(3000),
    })
  ).text();
  return Number(/coolctl_alarm_evaluations_total\{result="ok"\} (\d+)/.exec(text)?.[1] ?? 0);
}

/** Waits until every node in `nodes` has run `n` more evaluations: time passing, witnessed. */
async function evaluatedAgain(nodes: string[], n = 3): Promise<void> {
  const base = await Promise.all(nodes.map(evaluations));
  await waitFor(
    `${n} more alarm evaluations on ${nodes.join(', ')}`,
    async () => (await Promise.all(nodes.map(evaluations))).every((v, i) => v >= base[i]! + n),
    { timeoutMs: 20_000, intervalMs: 200 },
  );
}

describe('alarms kept by the cluster', () => {
  it('a trip raises one alarm cluster-wide; ack on one node shows on the others; it survives the leader’s kill -9', async () => {
    const h = hall();
    const group = 'zone-1';
    const unit = h.groups[group]![0]!;
    const leader = (await h.waitForLeaders()).get(group)!.node;
    const others = h.nodes.filter((n) => n !== leader);
    const trips = (as: ApiAlarm[]) => as.filter((a) => a.kind === 'unit-tripped' && a.subject === unit);

    await h.simFault({ fault: 'ahu-trip', ahu: unit });
    const raised = await waitFor(
      `one unit-tripped alarm for ${unit} on every node`,
      async () => {
        const views = await Promise.all(h.nodes.map((n) => alarms(n)));
        return views.every((v) => trips(v).length === 1) ? trips(views[0]!)[0] : null;
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    expect(raised).toMatchObject({ group, subject: unit, state: 'raised', ack: null });
    // Every node keeps evaluating; still one, on every node, and no node raised a second.
    await evaluatedAgain(h.nodes);
    for (const n of h.nodes) expect(trips(await alarms(n, 'all')).map((a) => a.id)).toEqual([raised.id]);

    // Acknowledged with `coolctl alarms --ack` through a node that does not lead the group.
    const ackNode = others[0]!;
    const tokenFile = join(h.dir, 'alarms-test.token');
    await writeFile(tokenFile, `${h.apiAdmin!.token}\n`, { mode: 0o600 });
    const ack = await runCoolctl([
      'alarms',
      '--ack',
      raised.id,
      '--comment',
      'unit reset requested',
      '--api',
      h.apiUrl(ackNode),
      '--token-file',
      tokenFile,
    ]);
    expect(ack.code, ack.err).toBe(0);
    expect(ack.out).toContain('acknowledged');
    for (const n of h.nodes)
      expect(trips(await alarms(n))[0]).toMatchObject({
        id: raised.id,
        state: 'acknowledged',
        ack: { user: h.apiAdmin!.user, comment: 'unit reset requested' },
      });

    // The group's leader dies; a survivor leads the group and judges it from here.
    await h.kill(leader, 'SIGKILL');
    const next = (await h.waitForLeaders({ among: others, timeoutMs: 20_000 })).get(group)!.node;
    expect(next).not.toBe(leader);
    await evaluatedAgain(others);
    for (const n of others) {
      const t = trips(await alarms(n, 'all'));
      expect(t.map((a) => [a.id, a.state, a.ack?.comment])).toEqual([
        [raised.id, 'acknowledged', 'unit reset requested'],
      ]);
    }

    // The unit runs again: the new leader clears the alarm; the acknowledgement stays on it.
    await h.simFault({ fault: 'ahu-trip', ahu: unit, clear: true });
    await waitFor(
      `${raised.id} cleared`,
      async () => trips(await alarms(next, 'all')).every((a) => a.state === 'cleared'),
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    const closed = trips(await alarms(others.find((n) => n !== next)!, 'all'));
    expect(closed).toEqual([
      expect.objectContaining({
        id: raised.id,
        state: 'cleared',
        ack: expect.objectContaining({ comment: 'unit reset requested' }),
      }),
    ]);
    await h.start(leader);
  }, 180_000);
});
