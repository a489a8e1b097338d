// What the safety layer does with an operator's override and pause, as the operator sees it in the
// group's commands and reasons: an override may always cool more, but it may not warm a room whose
// inlet is at alarm or rising near ASHRAE's rate limit (and the reasons say so); a paused group
// whose inlets reach the alarm says that nobody in the cluster acts on it; a long pause does not
// leave a stale rate-of-change history that holds the law after the resume.
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import {
  type ControlView,
  type GroupControlConfig,
  type GroupControlOutput,
  groupControlConfig,
  stepGroup,
  type UnitInput,
} from '../../src/control/law/group-controller.ts';
import { stepsOf } from '../support/law-steps.ts';

const site = generateSite(demoShape);
const cfg: GroupControlConfig = groupControlConfig(site, 'zone-1');
const [A, B] = cfg.ahus as [string, string];
const view = (inletMaxC: number | null): ControlView => ({
  verdict: 'ok',
  inletMaxC,
  hottestRack: 'RA-04',
  dewPointC: 8,
});
const units = (fan = 60, sp = 18): UnitInput[] =>
  cfg.ahus.map((id) => ({ id, status: 'available', read: { fanPct: fan, supplySetpointC: sp } }));
const WARM = { fanPct: 20, supplySetpointC: 27 };

/** The law run for `seconds` at 1 s while the hottest inlet goes linearly from `fromC` to `toC`. */
function ramp(fromC: number, toC: number, seconds: number, prev: GroupControlOutput | null = null) {
  let out = prev;
  for (let t = 1; t <= seconds; t++)
    out = stepGroup(
      cfg,
      { view: view(fromC + ((toC - fromC) * t) / seconds), units: units(), dtS: 1 },
      out?.state ?? null,
    );
  return out!;
}

describe('an override under the safety layer', () => {
  it('with an inlet under target it is written as set, at once', () => {
    const settled = stepsOf(cfg, 60, { view: view(24), units: units() }, null);
    const out = stepGroup(
      cfg,
      { view: view(24), units: units(), dtS: 1, overrides: { [A]: WARM } },
      settled.state,
    );
    expect(out.commands[A]).toEqual(WARM);
    expect(out.reasons.join('; ')).not.toMatch(/override held/);
  });

  it('with an inlet at alarm it cannot slow the fan or warm the setpoint, and the reasons say why', () => {
    const hot = stepsOf(cfg, 30, { view: view(29), units: units() }, null);
    const lastA = hot.commands[A]!;
    const out = stepGroup(
      cfg,
      { view: view(29), units: units(), dtS: 1, overrides: { [A]: WARM } },
      hot.state,
    );
    expect(out.commands[A]!.fanPct).toBeGreaterThanOrEqual(lastA.fanPct);
    expect(out.commands[A]!.fanPct).toBeGreaterThan(WARM.fanPct);
    expect(out.commands[A]!.supplySetpointC).toBeLessThanOrEqual(lastA.supplySetpointC);
    expect(out.reasons).toContain(`${A} override held: inlet at alarm, it may cool but not warm`);
    // Held for as long as the inlet stays at alarm, not only for one step.
    const later = stepsOf(cfg, 120, { view: view(29), units: units(), overrides: { [A]: WARM } }, out.state);
    expect(later.commands[A]!.fanPct).toBeGreaterThanOrEqual(out.commands[A]!.fanPct);
    expect(later.commands[A]!.supplySetpointC).toBeLessThanOrEqual(lastA.supplySetpointC);
    // Once the inlet is back under the alarm the override is in force as set.
    const cool = stepGroup(
      cfg,
      { view: view(24), units: units(), dtS: 1, overrides: { [A]: WARM } },
      later.state,
    );
    expect(cool.commands[A]).toEqual(WARM);
  });

  it('with an inlet at alarm it may cool more than the law, at once', () => {
    const hot = stepsOf(cfg, 30, { view: view(29), units: units() }, null);
    const cold = { fanPct: 100, supplySetpointC: 13 };
    const out = stepGroup(
      cfg,
      { view: view(29), units: units(), dtS: 1, overrides: { [A]: cold } },
      hot.state,
    );
    expect(out.commands[A]).toEqual(cold);
    expect(out.reasons.join('; ')).not.toMatch(/override held/);
  });

  it('with the inlet rising near the ASHRAE rate limit (under the alarm) it cannot warm the room either', () => {
    const rising = ramp(22, 25.5, 600);
    expect(rising.reasons).toContain('inlet rising near the ASHRAE rate limit: nothing warms');
    const lastA = rising.commands[A]!;
    const out = stepGroup(
      cfg,
      { view: view(25.5), units: units(), dtS: 1, overrides: { [A]: WARM } },
      rising.state,
    );
    expect(out.commands[A]!.fanPct).toBeGreaterThanOrEqual(lastA.fanPct);
    expect(out.commands[A]!.supplySetpointC).toBeLessThanOrEqual(lastA.supplySetpointC);
    expect(out.reasons).toContain(
      `${A} override held: inlet rising near the ASHRAE rate limit, it may cool but not warm`,
    );
    // The other unit, not overridden, is the law's as before.
    expect(out.commands[B]).toBeDefined();
  });
});

describe('a paused group', () => {
  it('whose inlet reaches the alarm says that nobody in the cluster acts on it', () => {
    const calm = stepsOf(cfg, 5, { view: view(24), units: units(), paused: true }, null);
    expect(calm.reasons).toEqual(['group paused']);
    const hot = stepsOf(cfg, 5, { view: view(28), units: units(), paused: true }, calm.state);
    expect(hot.mode).toBe('paused');
    expect(hot.commands).toEqual({});
    expect(hot.reasons).toContain(
      'inlet at alarm while paused: the units run on their local control; resume the group to let the controller act',
    );
  });

  it('resumed after a long pause at a steady inlet is not held by the rise from before the pause', () => {
    const rising = ramp(22, 25.5, 600);
    expect(rising.reasons).toContain('inlet rising near the ASHRAE rate limit: nothing warms');
    const paused = stepsOf(cfg, 80 * 60, { view: view(25.5), units: units(), paused: true }, rising.state);
    const resumed = stepGroup(cfg, { view: view(25.5), units: units(), dtS: 1 }, paused.state);
    expect(resumed.mode).toBe('normal');
    expect(resumed.reasons).not.toContain('inlet rising near the ASHRAE rate limit: nothing warms');
  });
});
