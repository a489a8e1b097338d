// The group's "control mode" line is one per change of what the group does (its mode, why), never
// one each time a measured figure in a reason moves: at a full hall's alarm every hot group's
// inlet moves by 0.1 °C about once a second, and each move was a line (100 groups: ~3 lines a
// second, 900 in a 2-minute bench run). The law runs in a real driver on a sensor store fed reports
// whose hottest inlet wobbles around the alarm limit's far side; the units are fakes.
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { GroupDriver, reasonsShape } from '../../src/control/group-driver.ts';
import { groupControlConfig } from '../../src/control/law/group-controller.ts';
import type { DeviceIo } from '../../src/devices/device-io.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { waitFor } from '../helpers.ts';
import { FakeCluster, fakeUnit, type UnitWrite } from '../support/fake-cluster.ts';
import { captureLogs } from '../support/log-lines.ts';
import { reportNodes } from '../support/sensor-reports.ts';

const site = generateSite(demoShape);
const group = site.controlGroups[0]!;

describe('the control mode line', () => {
  it('a hot inlet that moves by tenths of a degree logs its mode once, and a change of mode again', async () => {
    const cfg = groupControlConfig(site, group.id);
    const alarmC = cfg.tuning.alarmInletC;
    const store = new SensorStore(site);
    let seq = 0;
    const report = (inletC: number) => {
      seq++;
      reportNodes(store, site, group.sensorNodes, (_, x) => (x.kind === 'humidity' ? 45 : inletC), { seq });
    };
    const logs = captureLogs();
    const cluster = new FakeCluster({ [group.id]: ['n1', 100] });
    const written: UnitWrite[] = [];
    const devices = new Map<string, DeviceIo>(cfg.ahus.map((a) => [a, fakeUnit(a, written, 'n1')]));
    const driver = new GroupDriver(group, devices, cluster.node('n1'), {
      periodMs: 50,
      logger: logs.logger,
      control: { config: cfg, sensors: store },
    });
    try {
      report(alarmC + 2);
      driver.start();
      const lines = () => logs.parsed().filter((l) => l.msg === 'control mode');
      // Ten moves of the hottest inlet, each seen by the law (its reason names the figure).
      for (let i = 0; i < 10; i++) {
        const inletC = alarmC + 2 + (i % 2 === 0 ? 0.3 : 0.1) + i * 0.01;
        report(inletC);
        await waitFor(`the law reads ${inletC.toFixed(1)} °C`, () =>
          driver.decision.reasons.some((r) => r.includes(`inlet ${inletC.toFixed(1)} °C at alarm`)),
        );
      }
      const hot = lines();
      expect(hot.length).toBeGreaterThanOrEqual(1);
      expect(hot.length).toBeLessThanOrEqual(2);
      expect(hot.at(-1)).toMatchObject({ mode: 'normal' });
      // What the group does changes (its inlet is no longer at alarm): one more line.
      report(alarmC - 6);
      await waitFor(
        'the law leaves the alarm',
        () => !driver.decision.reasons.some((r) => r.includes('at alarm')),
      );
      expect(lines().length).toBe(hot.length + 1);
    } finally {
      await driver.stop();
    }
  });

  it('figures are left out of the comparison, names and operator settings are not', () => {
    expect(reasonsShape(['inlet 33.4 °C at alarm: nothing slows or warms'])).toBe(
      reasonsShape(['inlet 33.1 °C at alarm: nothing slows or warms']),
    );
    expect(reasonsShape(['helping a neighbour short of air (0.4 K)'])).toBe(
      reasonsShape(['helping a neighbour short of air (1.2 K)']),
    );
    expect(reasonsShape(['AHU-0136 tripped: others compensate'])).not.toBe(
      reasonsShape(['AHU-0536 tripped: others compensate']),
    );
    expect(reasonsShape(['AHU-01 manual fan 60 %'])).not.toBe(reasonsShape(['AHU-01 manual fan 70 %']));
    expect(reasonsShape(['a', 'b'])).not.toBe(reasonsShape(['a']));
    // Clipped this period or not: counted, not a change of what the group does.
    expect(reasonsShape(['inlet 29.2 °C at alarm', 'safety limited AHU-01, AHU-05'])).toBe(
      reasonsShape(['inlet 29.4 °C at alarm']),
    );
  });
});
