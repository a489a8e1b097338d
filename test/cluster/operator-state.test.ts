// The operators' stored state takes the device contract's ranges: an override the units' contract
// would refuse is not in force (the API refuses it before it is stored; a hand-made value is dropped).
import { describe, expect, it } from 'vitest';
import { checkOperatorState, overrideProblem } from '../../src/cluster/operator-state.ts';
import { FAN_RANGE_PCT, SUPPLY_SETPOINT_RANGE_C } from '../../src/unit-contract.ts';

describe('operator overrides use the device contract', () => {
  it('accepts the ends of each range and refuses just outside them', () => {
    const sp = SUPPLY_SETPOINT_RANGE_C;
    expect(overrideProblem({ supplySetpointC: sp.min })).toBeNull();
    expect(overrideProblem({ supplySetpointC: sp.max })).toBeNull();
    expect(overrideProblem({ supplySetpointC: sp.max + 0.5 })).toMatch(/supplySetpointC must be 12…27/);
    expect(overrideProblem({ supplySetpointC: sp.min - 0.5 })).toMatch(/supplySetpointC/);
    expect(overrideProblem({ fanPct: FAN_RANGE_PCT.max + 1 })).toMatch(/fanPct must be 0…100/);
    expect(overrideProblem({ fanPct: Number.NaN })).toMatch(/fanPct/);
  });

  it('a stored override outside the contract is not in force; the others are', () => {
    const r = checkOperatorState(
      JSON.stringify({
        paused: false,
        overrides: {
          'AHU-01': { supplySetpointC: 28 },
          'AHU-02': { supplySetpointC: 27 },
          'AHU-03': { supplySetpointC: 11 },
          'AHU-04': { fanPct: 40 },
        },
      }),
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(Object.keys(r.state.overrides).sort()).toEqual(['AHU-02', 'AHU-04']);
  });
});
