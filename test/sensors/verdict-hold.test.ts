// The verdict a group acts on over time (src/sensors/verdict.ts, VerdictHold): worse at once,
// better at once unless the group flaps (then only once it held the recovery time), and at a
// start what the sensors say at once.
import { describe, expect, it } from 'vitest';
import { type Verdict, VerdictHold } from '../../src/sensors/verdict.ts';

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
