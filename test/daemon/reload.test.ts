// Hot reload on real processes (etcd ×3, the simulator, two controllers): the site file changes
// under running controllers — a group removed, then added back — and the loops that did not change
// keep their leader, epoch and pace; an invalid file is refused with its errors, counted, and the
// running config kept. The controllers notice the file change themselves (no signal sent).
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { Site } from '../../src/config/site-schema.ts';
import { useChaosHall } from '../chaos/chaos-hall.ts';
import { waitFor } from '../helpers.ts';

const chaos = useChaosHall({ name: 'reload', controllers: 2, groups: 3, airHandlers: 6 });
const hall = chaos.hall;

async function reloads(node: string, result: string): Promise<number> {
  const text = await (await fetch(`${hall().apiUrl(node)}/metrics`, { headers: hall().apiHeaders })).text();
  return Number(
    new RegExp(`coolctl_config_reloads_total\\{result="${result}"\\} (\\d+)`).exec(text)?.[1] ?? 0,
  );
}

async function reloadAll(result: string, change: () => Promise<void>): Promise<void> {
  const h = hall();
  const before = await Promise.all(h.nodes.map((n) => reloads(n, result)));
  await change();
  await waitFor(`every node ${result} the reload`, async () =>
    (await Promise.all(h.nodes.map((n) => reloads(n, result)))).every((v, i) => v > before[i]!),
  );
}

describe('hot reload', () => {
  it('removes and adds a group while the other groups’ loops run on untouched; refuses an invalid file', async () => {
    const h = hall();
    const sitePath = join(h.dir, 'site.yaml');
    const full = await readFile(sitePath, 'utf8');
    const site = parse(full) as Site;
    const before = await h.waitForLeaders();
    // Remove a group of the node that leads two (placement stays even: no rebalancing handover
    // moves the groups this test watches).
    const counts = new Map<string, number>();
    for (const l of before.values()) counts.set(l.node, (counts.get(l.node) ?? 0) + 1);
    const busiest = [...counts].sort((a, b) => b[1] - a[1])[0]![0];
    const moving = [...before].find(([, l]) => l.node === busiest)![0];
    const [keep1, keep2] = site.controlGroups.map((g) => g.id).filter((g) => g !== moving) as [
      string,
      string,
    ];
    const seq0 = await h.lastSeq();

    // 1. The third group leaves the site: nobody leads or drives it any more.
    const reduced = { ...site, controlGroups: site.controlGroups.filter((g) => g.id !== moving) };
    await reloadAll('applied', () => writeFile(sitePath, stringify(reduced)));
    await waitFor(`${moving} gone from every node`, async () =>
      (await Promise.all(h.nodes.map((n) => h.cluster(n)))).every(
        (c) => !c.groups.some((g) => g.id === moving),
      ),
    );

    // 2. It comes back: a leader, a new epoch, its units driven again.
    await reloadAll('applied', () => writeFile(sitePath, full));
    const after = await h.waitForLeaders({
      where: (l) => (l.get(moving)?.epoch ?? 0) > before.get(moving)!.epoch,
    });
    const seq1 = await h.lastSeq();
    await waitFor(`${moving}'s units written under its new epoch`, async () => {
      const e = (await h.journal(seq1)).entries;
      return h.groups[moving]!.every((a) =>
        e.some((x) => x.ahu === a && x.accepted && x.epoch === after.get(moving)!.epoch),
      );
    });

    // 3. An invalid file: refused, counted, nothing changes.
    await reloadAll('refused', () => writeFile(sitePath, `${full}\ncontrolGroups: [oops\n`));
    await writeFile(sitePath, full);

    // The groups that never changed kept leader and epoch, and were written without a pause.
    const now = await h.waitForLeaders();
    for (const g of [keep1, keep2]) expect(now.get(g)).toEqual(before.get(g));
    const entries = (await h.journal(seq0)).entries.filter((e) => e.accepted);
    for (const g of [keep1, keep2]) {
      for (const a of h.groups[g]!) {
        const times = entries.filter((e) => e.ahu === a).map((e) => e.wallMs);
        expect(times.length).toBeGreaterThan(5);
        const gaps = times.slice(1).map((t, i) => t - times[i]!);
        expect(Math.max(...gaps), `${a}: longest pause between writes`).toBeLessThan(h.timing.periodMs * 5);
      }
    }
    expect((await h.check()).violations).toEqual([]);
  }, 120_000);
});
