// Layout changes as simulator faults (POST /sim/faults, what the chaos suite and tests use) and the
// test-only route that shows the physics' true influence matrix. The simulation is not started:
// the API answers through inject(), the physics steps through advance(); no socket is opened.
import { describe, expect, it } from 'vitest';
import { buildSimApi } from '../../firmware-sim/api.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Simulation } from '../../firmware-sim/simulation.ts';
import { quietLogger } from '../helpers.ts';

const site = generateSite(demoShape);

function hall(testRoutes: boolean) {
  const sim = new Simulation({ site, seed: 3, logger: quietLogger });
  sim.advance(1800, 10);
  const api = buildSimApi(sim, quietLogger, { testRoutes });
  const post = async (payload: unknown) => {
    const res = await api.inject({
      method: 'POST',
      url: '/sim/faults',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify(payload),
    });
    return { status: res.statusCode, body: res.json() };
  };
  const influence = async (query = '') => {
    const res = await api.inject({ method: 'GET', url: `/sim/test/influence${query}` });
    return { status: res.statusCode, body: res.json() };
  };
  return { sim, api, post, influence };
}

const unit = site.airHandlers[0]!;
/** The rack nearest to `unit`: the one its moves and panels change most. */
const nearRack = [...site.racks].sort(
  (a, b) => Math.hypot(a.xM - unit.xM, a.yM - unit.yM) - Math.hypot(b.xM - unit.xM, b.yM - unit.yM),
)[0]!;

describe('layout faults and the true-influence route', () => {
  it('serves the true influence only with testRoutes, as the model has it', async () => {
    const off = hall(false);
    expect((await off.api.inject({ method: 'GET', url: '/sim/test/influence' })).statusCode).toBe(404);
    const on = hall(true);
    const { status, body } = await on.influence();
    expect(status).toBe(200);
    expect(body.at).toBe('current');
    expect(body.measure).toBe('intake-share');
    expect(body.ahuIds).toEqual(site.airHandlers.map((a) => a.id));
    expect(body.rackIds).toEqual(site.racks.map((r) => r.id));
    expect(body.rows).toEqual(on.sim.model.trueInfluence().rows);
    const design = await on.influence('?at=design&measure=supply-response');
    expect(design.body.rows).toEqual(
      on.sim.model.trueInfluence({ at: 'design', measure: 'supply-response' }).rows,
    );
    // every rack's supply response sums to 1 over the units of its room (one room here)
    for (let r = 0; r < site.racks.length; r++) {
      expect(design.body.rows.reduce((s: number, row: number[]) => s + row[r]!, 0)).toBeCloseTo(1, 9);
    }
    const bad = await on.influence('?at=later&measure=x');
    expect(bad.status).toBe(400);
    expect(bad.body.error).toBe('COOLCTL_E_BAD_REQUEST');
    expect(bad.body.details).toEqual([
      'at: got "later", allowed: current, design',
      'measure: got "x", allowed: intake-share, supply-response',
    ]);
  });

  it('unit-moved changes the true influence and the inlets from that moment; clearing restores them', async () => {
    const { sim, post, influence } = hall(true);
    const before = (await influence()).body.rows;
    const inletBefore = sim.model.rackInletC(nearRack.id);
    const dxM = unit.xM < 10 ? 8 : -8;
    const res = await post({ fault: 'unit-moved', ahu: unit.id, dxM });
    expect(res.status).toBe(200);
    expect(res.body.faults).toContainEqual({ fault: 'unit-moved', ahu: unit.id, dxM });
    const after = (await influence()).body.rows;
    const r = site.racks.indexOf(nearRack);
    expect(after[0][r]).toBeLessThan(before[0][r] - 0.02);
    sim.advance(1800);
    // the rack it used to blow on gets less cold air and warms
    expect(sim.model.rackInletC(nearRack.id)).toBeGreaterThan(inletBefore + 0.05);
    expect((await post({ fault: 'unit-moved', ahu: unit.id, clear: true })).status).toBe(200);
    expect((await influence()).body.rows).toEqual(before);
    expect(sim.state().faults).toEqual([]);
  });

  it('blanking-panel-removed lowers every unit’s influence on the rack; clear-all puts it back', async () => {
    const { sim, post, influence } = hall(true);
    const before = (await influence()).body.rows;
    const inletBefore = sim.model.rackInletC(nearRack.id);
    expect((await post({ fault: 'blanking-panel-removed', rack: nearRack.id })).status).toBe(200);
    sim.advance(1800);
    const r = site.racks.indexOf(nearRack);
    const after = (await influence()).body.rows;
    for (let a = 0; a < site.airHandlers.length; a++) expect(after[a][r]).toBeLessThan(before[a][r]);
    expect(sim.model.rackInletC(nearRack.id)).toBeGreaterThan(inletBefore + 1);
    expect((await post({ fault: 'clear-all' })).status).toBe(200);
    sim.advance(1800);
    expect(sim.model.rackInletC(nearRack.id)).toBeCloseTo(inletBefore, 1);
    expect(sim.state().faults).toEqual([]);
  });

  it('refuses a layout fault it cannot apply, says why, and applies nothing of the batch', async () => {
    const { sim, post } = hall(true);
    const before = sim.model.trueInfluence();
    const res = await post([
      { fault: 'blanking-panel-removed', rack: nearRack.id },
      { fault: 'unit-moved', ahu: unit.id, dxM: -500 },
      { fault: 'unit-moved', ahu: unit.id },
      { fault: 'unit-moved', ahu: 'AHU-none', dxM: 1 },
      { fault: 'blanking-panel-removed', rack: 'R-none' },
    ]);
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('COOLCTL_E_FAULT_INVALID');
    const details = res.body.details.join('\n');
    expect(details).toMatch(/\[1\] unit-moved: AHU-\d+ would sit at .* outside room/);
    expect(details).toMatch(/\[2\] unit-moved: give dxM or dyM/);
    expect(details).toMatch(/\[3\] unknown air handler "AHU-none"/);
    expect(details).toMatch(/\[4\] unknown rack "R-none"/);
    expect(sim.model.trueInfluence()).toEqual(before);
    expect(sim.state().faults).toEqual([]);
    const schema = await post({ fault: 'unit-moved', ahu: unit.id, dxM: 'far' });
    expect(schema.status).toBe(400);
    expect(schema.body.details.join('\n')).toMatch(/dxM: must be number/);
  });
});
