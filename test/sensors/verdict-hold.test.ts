// The verdict a group acts on over time (src/sensors/verdict.ts, VerdictHold): worse at once,
// better only once it held the recovery time, and at a start what the sensors say at once.
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

  it('enters worse at once; returns only after the better verdict held without a break', () => {
    const h = new VerdictHold();
    h.judge(raw('ok'), 0, 60_000);
    expect(h.judge(raw('degraded', ['R3']), 1_000, 60_000).verdict).toBe('degraded');
    const v = h.judge(raw('ok'), 2_000, 60_000);
    expect(v.verdict).toBe('degraded');
    expect(v.reasons).toEqual(['recovering: R3 covered again for 0 s of 60 s']);
    expect(v.recovery).toEqual({ to: 'ok', heldS: 0, needS: 60, racks: ['R3'] });
    expect(h.judge(raw('ok'), 50_000, 60_000).reasons).toEqual([
      'recovering: R3 covered again for 48 s of 60 s',
    ]);
    // a break starts the hold over
    expect(h.judge(raw('degraded', ['R3']), 51_000, 60_000).reasons).toEqual(['why degraded']);
    expect(h.judge(raw('ok'), 52_000, 60_000).verdict).toBe('degraded');
    expect(h.judge(raw('ok'), 111_000, 60_000).verdict).toBe('degraded');
    expect(h.judge(raw('ok'), 112_000, 60_000)).toEqual({ verdict: 'ok', reasons: [], recovery: null });
  });

  it('from blind: degraded then ok, each step after its own hold; blind again at once', () => {
    const h = new VerdictHold();
    h.judge(raw('ok'), 0, 60_000);
    h.judge(raw('blind'), 1_000, 60_000);
    let v = h.judge(raw('degraded', ['R1']), 2_000, 60_000);
    expect(v.verdict).toBe('blind');
    expect(v.reasons).toEqual(['why degraded', 'recovering: good inlets seen again for 0 s of 60 s']);
    h.judge(raw('ok'), 30_000, 60_000);
    // degraded-or-better for 60 s: degraded; ok only for 32 s so far
    v = h.judge(raw('ok'), 62_000, 60_000);
    expect(v.verdict).toBe('degraded');
    expect(v.reasons).toEqual(['recovering: R1 covered again for 32 s of 60 s']);
    expect(h.judge(raw('blind'), 63_000, 60_000).verdict).toBe('blind');
  });

  it('a reader with an older instant neither moves the hold back nor ends it early', () => {
    const h = new VerdictHold();
    h.judge(raw('ok'), 0, 60_000);
    h.judge(raw('degraded', ['R1']), 10_000, 60_000);
    h.judge(raw('ok'), 20_000, 60_000);
    expect(h.judge(raw('ok'), 5_000, 60_000).reasons).toEqual([
      'recovering: R1 covered again for 0 s of 60 s',
    ]);
    expect(h.judge(raw('ok'), 80_000, 60_000).verdict).toBe('ok');
  });

  it('a hold of 0 is the verdict as the sensors give it', () => {
    const h = new VerdictHold();
    h.judge(raw('ok'), 0, 0);
    h.judge(raw('degraded', ['R1']), 1, 0);
    expect(h.judge(raw('ok'), 2, 0).verdict).toBe('ok');
  });
});
