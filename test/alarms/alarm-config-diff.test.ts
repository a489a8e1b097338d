// Alarm settings change without touching a loop: a reload that changes only the site's `alarms:`
// section or a group's own alarm limits is applied (the alarm engine reads them at its next
// evaluation) and marks no group changed — a changed group's loop is restarted, a new term.
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { diffSites, isEmptyDiff } from '../../src/daemon/config-diff.ts';

const site = () => generateSite({ ...demoShape, airHandlers: 6, controlGroups: 3, opcuaShare: 0 });

describe('alarm settings in the config diff', () => {
  it('a group’s alarm limits changed: applied, no group changed', () => {
    const a = site();
    const b = site();
    b.controlGroups[0]!.alarms = { inlet: { recommendedC: 25, delayS: 30 }, riseRate: { limitCPerH: 10 } };
    const d = diffSites(a, b);
    expect(d.changedGroups).toEqual([]);
    expect(d.alarmsChanged).toBe(true);
    expect(isEmptyDiff(d)).toBe(false);
    // And back: the same.
    expect(diffSites(b, a)).toMatchObject({ changedGroups: [], alarmsChanged: true });
  });

  it('the site’s alarm section changed: applied, no group changed', () => {
    const a = site();
    const b = site();
    b.alarms = { inlet: { allowableC: 30 }, delays: { sensorsS: 0 } };
    const d = diffSites(a, b);
    expect(d).toMatchObject({ changedGroups: [], addedGroups: [], removedGroups: [], alarmsChanged: true });
    expect(isEmptyDiff(d)).toBe(false);
    expect(diffSites(a, site()).alarmsChanged).toBe(false);
  });

  it('a group whose loop changes too is still changed', () => {
    const a = site();
    const b = site();
    b.controlGroups[1]!.alarms = { inlet: { recommendedC: 25 } };
    b.controlGroups[1]!.airHandlers = b.controlGroups[1]!.airHandlers.slice(0, 1);
    expect(diffSites(a, b)).toMatchObject({ changedGroups: [a.controlGroups[1]!.id], alarmsChanged: true });
  });
});
