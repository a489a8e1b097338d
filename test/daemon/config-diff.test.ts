// What a reload may apply live: the diff between two sites, and the start-only settings it refuses.
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { loadControllerConfig } from '../../src/config/controller-config.ts';
import { diffSites, isEmptyDiff, restartOnlyChanges } from '../../src/daemon/config-diff.ts';

const site = () => generateSite({ ...demoShape, airHandlers: 6, controlGroups: 3, opcuaShare: 0 });

describe('config diff', () => {
  it('finds added, removed and changed groups and units; a unit change marks its group changed', () => {
    const a = site();
    expect(isEmptyDiff(diffSites(a, site()))).toBe(true);
    const b = site();
    b.controlGroups = b.controlGroups.slice(0, 2);
    b.airHandlers[0]!.watchdogS = 7;
    const d = diffSites(a, b);
    expect(d.removedGroups).toEqual([a.controlGroups[2]!.id]);
    expect(d.changedAhus).toEqual([a.airHandlers[0]!.id]);
    const owner = a.controlGroups.find((g) => g.airHandlers.includes(a.airHandlers[0]!.id))!.id;
    expect(d.changedGroups).toEqual([owner]);
    expect(d.sensorsChanged).toBe(true);
    expect(diffSites(b, a).addedGroups).toEqual([a.controlGroups[2]!.id]);
  });

  it('refuses start-only settings with their paths', async () => {
    const cfg = await loadControllerConfig('test/fixtures/cluster/controller.yaml', 'node-a');
    const doc = { ...cfg.doc, cluster: { ...cfg.doc.cluster, leaseTtlS: 5 }, control: { periodMs: 250 } };
    expect(restartOnlyChanges(cfg, { ...cfg, doc }).map((p) => p.path)).toEqual([
      '/cluster/leaseTtlS',
      '/control/periodMs',
    ]);
    expect(restartOnlyChanges(cfg, { ...cfg })).toEqual([]);
  });
});
