// etcd out of space, met by a node that starts and by a config reload (real processes: a 3-member
// etcd with a 4 MB quota, the simulator, 2 controllers). What must hold: a node that starts while
// etcd refuses writes exits 1 naming the cause and the remedy (not "check that etcd runs"), and
// joins after the disarm; a reload that adds a group (its election needs a write) is refused whole,
// the running config kept and its groups driven; a reload that needs no write is applied, and the
// node's member record shows its config hash once etcd takes writes again.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import { configHash } from '../../src/config/config-hash.ts';
import { waitFor } from '../helpers.ts';
import {
  fillEtcd,
  freeEtcd,
  logLines,
  nodeAlarms,
  nodeMetric,
  SMALL_QUOTA_FLAGS,
} from '../support/etcd-space.ts';
import { Hall } from '../support/hall.ts';

let hall: Hall;

beforeAll(async () => {
  hall = await Hall.start({
    name: 'etcd-no-space-start',
    controllers: 2,
    groups: 2,
    airHandlers: 4,
    liveness: false,
    secure: false,
    etcdFlags: SMALL_QUOTA_FLAGS,
  });
}, 120_000);

afterAll(async () => {
  await hall?.stopAll();
}, 30_000);

interface SiteGroup {
  id: string;
  airHandlers: string[];
  sensorNodes: string[];
}

async function editSite(edit: (groups: SiteGroup[]) => void): Promise<void> {
  const path = join(hall.dir, 'site.yaml');
  const site = parse(await readFile(path, 'utf8')) as { controlGroups: SiteGroup[] };
  edit(site.controlGroups);
  await writeFile(path, stringify(site));
}

const reloads = (node: string, result: 'refused' | 'applied') =>
  nodeMetric(hall, node, `coolctl_config_reloads_total{result="${result}"}`).then((v) => v ?? 0);

async function memberHash(node: string): Promise<string | undefined> {
  const view = (await hall.cluster('c1', 5000)) as unknown as {
    members: { node: string; configHash?: string }[];
  };
  return view.members.find((m) => m.node === node)?.configHash;
}

describe('etcd out of space at start and at reload', () => {
  it('a start says what to fix; a reload is refused whole or applied whole; both join after the disarm', async () => {
    const before = await hall.waitForLeaders();
    await hall.kill('c2', 'SIGTERM');
    await hall.waitForLeaders({ among: ['c1'], timeoutMs: 10_000 });
    const etcd = createEtcdClient({ hosts: hall.etcd.clientUrls, callTimeoutMs: 5000 });
    try {
      await fillEtcd(etcd);
      await waitFor(
        'etcd-no-space active on c1',
        async () => (await nodeAlarms(hall, 'c1', 'active')).some((a) => a.kind === 'etcd-no-space'),
        { timeoutMs: 15_000, intervalMs: 200 },
      );

      // A node that starts now can take no lease: it exits 1 within its start bound, naming the
      // cause and the remedy, not an unreachable etcd.
      const why = await hall.start('c2', { timeoutMs: 30_000 }).then(
        () => 'started',
        (err: Error) => err.message,
      );
      expect(hall.running('c2')).toBe(false);
      expect(await hall.exitCode('c2')).toBe(1);
      expect(why).toMatch(
        /coolctl: cannot join the cluster: etcd .* refuses writes: database space exceeded/,
      );
      expect(why).toMatch(/etcdctl alarm disarm/);
      expect(why).not.toMatch(/Check that the etcd members run/);

      // A reload that adds a group is refused whole: the group is not taken on, its unit stays in
      // its driven group, the running config is kept.
      const refusedBefore = await reloads('c1', 'refused');
      await editSite((groups) => {
        const moved = groups[0]!.airHandlers.pop()!;
        groups.push({ id: 'zone-new', airHandlers: [moved], sensorNodes: [] });
      });
      hall.reload('c1');
      await waitFor('the reload refused', async () => (await reloads('c1', 'refused')) > refusedBefore, {
        timeoutMs: 15_000,
        intervalMs: 200,
      });
      const view = await hall.cluster('c1', 5000);
      expect(view.groups.map((g) => g.id).sort()).toEqual([...before.keys()].sort());
      const { leaders, conflicts } = await hall.leaders(['c1']);
      expect(conflicts).toEqual([]);
      expect([...leaders.values()].every((l) => l.node === 'c1')).toBe(true);
      expect(
        await logLines(hall, 'c1', 'config reload refused: the running config is kept: it adds groups'),
      ).toBeGreaterThan(0);

      // A reload that needs no etcd write (a unit moved between running groups) is applied.
      const appliedBefore = await reloads('c1', 'applied');
      await editSite((groups) => {
        const added = groups.pop()!;
        groups[1]!.airHandlers.push(...added.airHandlers);
      });
      hall.reload('c1');
      await waitFor('the reload applied', async () => (await reloads('c1', 'applied')) > appliedBefore, {
        timeoutMs: 15_000,
        intervalMs: 200,
      });

      const runs = await configHash(join(hall.dir, 'c1.yaml'), join(hall.dir, 'site.yaml'));
      expect(await memberHash('c1')).not.toBe(runs); // etcd took no write of it yet

      // The operator frees space and disarms: the running node's member record shows the config
      // it runs, and the node that could not start now does.
      await freeEtcd(hall, etcd);
      await waitFor('c1 publishes the config hash it runs', async () => (await memberHash('c1')) === runs, {
        timeoutMs: 15_000,
        intervalMs: 250,
      });
      await hall.start('c2', { timeoutMs: 30_000 });
      await hall.waitForLeaders({ timeoutMs: 15_000 });
    } finally {
      etcd.close();
    }
  }, 150_000);
});
