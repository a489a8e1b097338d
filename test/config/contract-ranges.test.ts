// The site file takes its ranges from the device contract (src/unit-contract.ts): a unit's
// local setpoint and the tuning's setpoints outside 12–27 °C are refused at load, each problem
// listed with its path, as the API refuses such a command and the unit refuses such a write.
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { parseSite } from '../../src/config/load-site.ts';
import { ConfigError } from '../../src/errors.ts';
import { SUPPLY_SETPOINT_RANGE_C } from '../../src/unit-contract.ts';

function problemsOf(text: string): { path: string; allowed: string }[] {
  try {
    parseSite(text);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('the site was accepted');
}

describe('site ranges are the device contract’s', () => {
  it('accepts the ends of the range and refuses a local setpoint or a tuning setpoint beyond it', () => {
    const site = generateSite(demoShape);
    site.airHandlers[0]!.localSetpointC = SUPPLY_SETPOINT_RANGE_C.min;
    site.airHandlers[1]!.localSetpointC = SUPPLY_SETPOINT_RANGE_C.max;
    expect(() => parseSite(stringify(site))).not.toThrow();

    site.airHandlers[0]!.localSetpointC = 28;
    site.airHandlers[1]!.localSetpointC = 11;
    site.controlGroups[0]!.tuning = { setpoint: { maxC: 28, minC: 10 } };
    const paths = problemsOf(stringify(site)).map((p) => p.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        '/airHandlers/0/localSetpointC',
        '/airHandlers/1/localSetpointC',
        '/controlGroups/0/tuning/setpoint/maxC',
        '/controlGroups/0/tuning/setpoint/minC',
      ]),
    );
  });
});
