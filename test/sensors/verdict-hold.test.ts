// The verdict a group acts on over time (src/sensors/verdict.ts, VerdictHold): worse at once,
// better at once unless the group flaps (then only once it held the recovery time), and at a
// start what the sensors say at once.
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import {
  type Verdict,
  VerdictHold,
  type VerdictHoldMemory,
  verdictHoldMemoryOf,
} from '../../src/sensors/verdict.ts';
import { reportNodes } from '../support/sensor-reports.ts';

const raw = (verdict: Verdict, uncoveredRacks: string[] = []) => ({
  verdict,
  reasons: verdict === 'ok' ? [] : [`why ${verdict}`],
  uncoveredRacks,
});

describe('VerdictHold', () => {
  it('takes a start as it comes: blind, then degraded, then ok, each at once', () => {
    const h = new VerdictHold();
    expect(h.judge(raw('blind'), 0, 60_000).verdict).toBe('blind');
    expect(h.judge(raw('degraded', ['R1']), 1_000, 60_000).verdict).toBe('degraded');
    expect(h.judge(raw('ok'), 2_000, 60_000)).toEqual({ verdict: 'ok', reasons: [], recovery: null });
  });

  it('a single blip costs no more than it lasts: worse at once, better at once', () => {
    const h = new VerdictHold();
    h.judge(raw('ok'), 0, 60_000);
    expect(h.judge(raw('blind'), 1_000, 60_000).verdict).toBe('blind');
    expect(h.judge(raw('ok'), 2_000, 60_000)).toEqual({ verdict: 'ok', reasons: [], recovery: null });
  });

  it('left twice within the flap window: worse at once, back only after the better verdict held without a break', () => {
    const h = new VerdictHold();
    h.judge(raw('ok'), 0, 60_000);
    h.judge(raw('degraded', ['R3']), 1_000, 60_000);
    expect(h.judge(raw('ok'), 2_000, 60_000).verdict).toBe('ok');
    expect(h.judge(raw('degraded', ['R3']), 3_000, 60_000).verdict).toBe('degraded');
    const v = h.judge(raw('ok'), 4_000, 60_000);
    expect(v.verdict).toBe('degraded');
    expect(v.reasons).toEqual(['recovering: R3 covered again for 0 s of 60 s']);
    expect(v.recovery).toEqual({ to: 'ok', heldS: 0, needS: 60, racks: ['R3'] });
    expect(h.judge(raw('ok'), 52_000, 60_000).reasons).toEqual([
      'recovering: R3 covered again for 48 s of 60 s',
    ]);
    // a break starts the hold over
    expect(h.judge(raw('degraded', ['R3']), 53_000, 60_000).reasons).toEqual(['why degraded']);
    expect(h.judge(raw('ok'), 54_000, 60_000).verdict).toBe('degraded');
    expect(h.judge(raw('ok'), 113_000, 60_000).verdict).toBe('degraded');
    expect(h.judge(raw('ok'), 114_000, 60_000)).toEqual({ verdict: 'ok', reasons: [], recovery: null });
  });

  it('departures further apart than the flap window are blips again', () => {
    const h = new VerdictHold();
    h.judge(raw('ok'), 0, 60_000);
    h.judge(raw('degraded', ['R3']), 1_000, 60_000);
    h.judge(raw('ok'), 2_000, 60_000);
    h.judge(raw('degraded', ['R3']), 602_000, 60_000);
    expect(h.judge(raw('ok'), 603_000, 60_000).verdict).toBe('ok');
  });

  it('flapping out of blind: degraded at once (driven on its sensors), ok only after the hold; blind again at once', () => {
    const h = new VerdictHold();
    h.judge(raw('ok'), 0, 60_000);
    h.judge(raw('blind'), 1_000, 60_000);
    h.judge(raw('ok'), 2_000, 60_000);
    h.judge(raw('blind'), 3_000, 60_000);
    expect(h.judge(raw('degraded', ['R1']), 4_000, 60_000)).toEqual({
      verdict: 'degraded',
      reasons: ['why degraded'],
      recovery: null,
    });
    const v = h.judge(raw('ok'), 32_000, 60_000);
    expect(v.verdict).toBe('degraded');
    expect(v.reasons).toEqual(['recovering: R1 covered again for 0 s of 60 s']);
    expect(h.judge(raw('ok'), 64_000, 60_000).reasons).toEqual([
      'recovering: R1 covered again for 32 s of 60 s',
    ]);
    expect(h.judge(raw('blind'), 65_000, 60_000).verdict).toBe('blind');
    // straight from blind to ok: degraded, not blind, for the hold
    expect(h.judge(raw('ok'), 66_000, 60_000).verdict).toBe('degraded');
    expect(h.judge(raw('ok'), 126_000, 60_000).verdict).toBe('ok');
  });

  it('a reader with an older instant neither moves the hold back nor ends it early', () => {
    const h = new VerdictHold();
    h.judge(raw('ok'), 0, 60_000);
    h.judge(raw('degraded', ['R1']), 10_000, 60_000);
    h.judge(raw('ok'), 20_000, 60_000);
    h.judge(raw('degraded', ['R1']), 30_000, 60_000);
    h.judge(raw('ok'), 40_000, 60_000);
    expect(h.judge(raw('ok'), 5_000, 60_000).reasons).toEqual([
      'recovering: R1 covered again for 0 s of 60 s',
    ]);
    expect(h.judge(raw('ok'), 99_000, 60_000).verdict).toBe('degraded');
    expect(h.judge(raw('ok'), 100_000, 60_000).verdict).toBe('ok');
  });

  it('a hold of 0 is the verdict as the sensors give it', () => {
    const h = new VerdictHold();
    h.judge(raw('ok'), 0, 0);
    h.judge(raw('degraded', ['R1']), 1, 0);
    expect(h.judge(raw('ok'), 2, 0).verdict).toBe('ok');
  });
});

/** A hold that left ok at 1 s and 3 s and has said ok since 4 s, judged at `at` s. */
function flapped(at: number): VerdictHold {
  const h = new VerdictHold();
  for (const [t, v] of [
    [0, 'ok'],
    [1, 'degraded'],
    [2, 'ok'],
    [3, 'degraded'],
    [4, 'ok'],
    [at, 'ok'],
  ] as const)
    h.judge(raw(v, v === 'ok' ? [] : ['R3']), t * 1000, 60_000);
  return h;
}

describe('VerdictHold memory (what travels in the group’s process state)', () => {
  it('says its times as ages, so another node’s clock of another origin goes on with the hold', () => {
    const m = flapped(14).memory(14_000)!;
    expect(m).toEqual({ held: 'degraded', leftOkAgoMs: [13_000, 11_000], okForMs: 10_000, racks: ['R3'] });
    const next = new VerdictHold();
    next.resume(JSON.parse(JSON.stringify(m)) as VerdictHoldMemory, 9_000_000, 0);
    expect(next.judge(raw('ok'), 9_000_000, 60_000).reasons).toEqual([
      'recovering: R3 covered again for 10 s of 60 s',
    ]);
    expect(next.judge(raw('ok'), 9_049_999, 60_000).verdict).toBe('degraded');
    expect(next.judge(raw('ok'), 9_050_000, 60_000).verdict).toBe('ok');
    // And the departures still count: a third one within the flap window is held again.
    next.judge(raw('degraded', ['R3']), 9_051_000, 60_000);
    expect(next.judge(raw('ok'), 9_052_000, 60_000).verdict).toBe('degraded');
  });

  it('counts the row’s age: what was written 50 s ago has held 50 s more', () => {
    const m = flapped(14).memory(14_000)!;
    const aged = new VerdictHold();
    aged.resume(m, 500, 50_000);
    expect(aged.judge(raw('ok'), 500, 60_000).verdict).toBe('ok');
    const fresh = new VerdictHold();
    fresh.resume(m, 500, 0);
    expect(fresh.judge(raw('ok'), 500, 60_000).verdict).toBe('degraded');
  });

  it('a group not recovering carries no racks; a hold that never judged has no memory', () => {
    expect(new VerdictHold().memory(0)).toBeNull();
    expect(flapped(70).memory(70_000)).toEqual({
      held: 'ok',
      leftOkAgoMs: [69_000, 67_000],
      okForMs: 66_000,
    });
  });

  it('takes from a row only a memory of the right shape', () => {
    const good = { held: 'ok', leftOkAgoMs: [null, 5], okForMs: null };
    expect(verdictHoldMemoryOf(good)).toEqual(good);
    for (const [bad, problem] of [
      [null, 'not an object'],
      [[1, 2], 'not an object'],
      ['ok', 'not an object'],
      [{ ...good, held: 'sideways' }, 'held is not a verdict'],
      [{ ...good, leftOkAgoMs: [1] }, 'leftOkAgoMs is not two ages (ms or null)'],
      [{ ...good, leftOkAgoMs: [-1, 2] }, 'leftOkAgoMs is not two ages (ms or null)'],
      [{ ...good, leftOkAgoMs: ['1', 2] }, 'leftOkAgoMs is not two ages (ms or null)'],
      [{ ...good, okForMs: Number.POSITIVE_INFINITY }, 'okForMs is not an age (ms or null)'],
      [{ ...good, okForMs: undefined }, 'okForMs is not an age (ms or null)'],
      [{ ...good, racks: 'R1' }, 'racks is not a list of rack names'],
      [{ ...good, racks: [1] }, 'racks is not a list of rack names'],
      [{ ...good, racks: Array.from({ length: 1_001 }, () => 'R1') }, 'racks is not a list of rack names'],
    ] as const)
      expect(verdictHoldMemoryOf(bad), JSON.stringify(bad)?.slice(0, 60)).toBe(problem);
  });
});

describe('a sensor store taking a group’s hold from its row', () => {
  const site = generateSite(demoShape);
  const group = site.controlGroups[0]!;
  /** A flap its old leader saw: two departures, ok again for 5 s, as the row says. */
  const rowMemory: VerdictHoldMemory = {
    held: 'degraded',
    leftOkAgoMs: [40_000, 6_000],
    okForMs: 5_000,
    racks: ['RA-04', 'NOT-A-RACK'],
  };

  /** A store whose sensors all report every 10 s up to `untilS`, its figures taken at `takeAtS`. */
  function storeSeeing(untilS: number, takeAtS: (t: number) => boolean) {
    let now = 1_000;
    const store = new SensorStore(site, { now: () => now });
    for (let t = 0; t <= untilS; t++) {
      now = 1_000 + t * 1000;
      if (t % 10 === 0)
        reportNodes(
          store,
          site,
          group.sensorNodes,
          (_, x) => (x.kind === 'humidity' ? 45 : 22 + (t % 3) * 0.05),
          {
            seq: t / 10 + 1,
          },
        );
      if (takeAtS(t)) store.view(group.id);
    }
    return store;
  }

  it('resumes the row’s memory on a node that did not follow the group (a glance now and then is not following)', () => {
    const store = storeSeeing(700, (t) => t % 30 === 0);
    expect(store.resumeVerdictHold(group.id, rowMemory, 0)).toBe('resumed');
    const v = store.view(group.id);
    expect(v.verdict).toBe('degraded');
    // The group's own rack named; one it does not have, dropped.
    expect(v.reasons).toEqual(['recovering: RA-04 covered again for 5 s of 60 s']);
  });

  it('keeps its own memory when it followed the group for a whole flap window: it saw more than the row', () => {
    const store = storeSeeing(700, () => true);
    expect(store.resumeVerdictHold(group.id, rowMemory, 0)).toBe('kept');
    expect(store.view(group.id)).toMatchObject({ verdict: 'ok', recovery: null });
    // Followed, but not for a flap window before the row: the row is taken.
    const late = storeSeeing(700, (t) => t > 200);
    expect(late.resumeVerdictHold(group.id, rowMemory, 0)).toBe('resumed');
  });
});
