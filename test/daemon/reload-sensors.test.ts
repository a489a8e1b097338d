// A reload that rebuilds the sensor ingest (a sensor node added to the site file) under a running
// controller, in process against the simulated hall (its broker, its Modbus units), a one-member
// etcd and a fake cluster's leadership: the new store starts from what the old one knew, so no group goes blind while the nodes
// report again (reports are not retained on the broker) and no unit's fan is driven up to the
// blind speed — every group stays under normal control, its verdict ok, through the reload.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import type { JournalEntry } from '../../firmware-sim/journal.ts';
import { Simulation } from '../../firmware-sim/simulation.ts';
import { loadControllerConfig } from '../../src/config/controller-config.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { Controller } from '../../src/daemon/controller.ts';
import { tmpDir } from '../cluster/harness.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { type EtcdCluster, startEtcdCluster } from '../support/etcd-cluster.ts';
import { FakeCluster } from '../support/fake-cluster.ts';
import { writeOneNodeConfig } from './one-node.ts';

// 10× time: a node reports every second of wall time; a blind group would show within one.
const TIME_SCALE = 10;
// Modbus units only: OPC-UA servers take long to start and are not what this is about.
const simSite = generateSite({ ...demoShape, modbusBasePort: 0, opcuaShare: 0 });
const groups = simSite.controlGroups.map((g) => g.id);

let root: { dir: string; cleanup: () => Promise<void> } | undefined;
let etcd: EtcdCluster | undefined;
let sim: Simulation | undefined;
let controller: Controller | undefined;
let site: Site;
let sitePath: string;
const lines: string[] = [];

beforeAll(async () => {
  root = await tmpDir('reload-sensors');
  etcd = await startEtcdCluster({ size: 1 });
  sim = new Simulation({
    site: simSite,
    seed: 7,
    ephemeralPorts: true,
    logger: quietLogger,
    timeScale: TIME_SCALE,
  });
  await sim.start();
  // A lighter IT load: the loops run the fans below the blind speed (100 %).
  await sim.applyFaults([{ fault: 'load-profile', profile: 'constant', factor: 0.5 }]);
  const ports = new Map(sim.ahuStates().map((a) => [a.id, Number(/:(\d+)\//.exec(a.endpoint)?.[1])]));
  site = {
    ...simSite,
    airHandlers: simSite.airHandlers.map((a) =>
      a.protocol === 'modbus-tcp' ? { ...a, endpoint: { ...a.endpoint, port: ports.get(a.id)! } } : a,
    ),
    // Inlets held at 27 °C (the alarm above it) and fans allowed down fast: the loops take the units
    // off their local 100 % within seconds, so a blind group's climb back to it shows.
    controlGroups: simSite.controlGroups.map((g) => ({
      ...g,
      tuning: { inletTargetC: 27, alarmInletC: 28, fan: { rampDownPctPerS: 10 } },
    })),
  };
  sitePath = join(root.dir, 'site.yaml');
  await writeFile(sitePath, stringify(site));
  const { config } = await writeOneNodeConfig({
    dir: root.dir,
    etcd: etcd.clientConfig(),
    prefix: '/coolctl/reload-sensors',
  });
  const doc = parse(await readFile(config, 'utf8')) as Record<string, unknown>;
  Object.assign(doc, { site: sitePath, sensors: { mqttUrl: sim.brokerUrl }, timeScale: TIME_SCALE });
  await writeFile(config, stringify(doc));
  const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(s) });
  // Leadership from a fake cluster: n1 leads every group for good, whatever a loaded machine does
  // to etcd's answers (etcd still keeps the API's users).
  const cluster = new FakeCluster(Object.fromEntries(groups.map((g, i) => [g, ['n1', 5 + i]])));
  controller = new Controller(await loadControllerConfig(config, 'n1'), {
    logger,
    leadership: () => cluster.node('n1'),
  });
  await controller.start();
}, 90_000);

afterAll(async () => {
  await controller?.stop();
  await sim?.stop();
  await etcd?.stop();
  await root?.cleanup();
}, 30_000);

/** Groups that logged mode `mode` in log lines from index `from` on. */
function modeLines(from: number, mode: string): string[] {
  return lines
    .slice(from)
    .map((l) => JSON.parse(l) as { msg?: string; mode?: string; group?: string })
    .filter((l) => l.msg === 'control mode' && l.mode === mode)
    .map((l) => l.group ?? '?');
}

/** Each unit's accepted writes after journal seq `since`. */
function writes(since: number): Map<string, JournalEntry[]> {
  const out = new Map<string, JournalEntry[]>();
  for (const e of sim!.journal.since(since).entries)
    if (e.accepted) out.set(e.ahu, [...(out.get(e.ahu) ?? []), e]);
  return out;
}

describe('a reload that adds a sensor node', () => {
  it('keeps every group’s verdict ok and its fans where the loop had them', async () => {
    const c = controller!;
    const units = site.airHandlers.map((a) => a.id);
    const seq0 = sim!.journal.lastSeq;
    await waitFor(
      'every group ok, and every unit driven below 95 % fan',
      () => {
        const w = writes(seq0);
        if (!groups.every((g) => c.sensors!.view(g).verdict === 'ok')) return false;
        return units.every((a) => Number(w.get(a)?.at(-1)?.values.fanPct ?? 100) < 95);
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    const seqAtReload = sim!.journal.lastSeq;
    const lastBefore = new Map([...writes(seq0)].map(([a, e]) => [a, Number(e.at(-1)!.values.fanPct)]));
    const linesAtReload = lines.length;

    // A node commissioned on a rack of the first group, not yet in any group: only the ingest changes.
    const added = { ...site.sensorNodes[0]!, id: 'N-NEW' };
    await writeFile(sitePath, stringify({ ...site, sensorNodes: [...site.sensorNodes, added] }));
    const diff = await c.reload('test');
    expect(diff).toMatchObject({ sensorsChanged: true, changedGroups: [], addedGroups: [] });
    expect(c.sensors!.sensor(added.id, 'inlet-top')?.value).toBeNull();

    // Until every node has reported twice to the new store and every unit was written three times:
    // no group blind (the old store lost, every group would be until its nodes reported again).
    const reportsAtReload = c.sensors!.counters.reports;
    const verdicts = new Set<string>();
    await waitFor(
      'two rounds of reports and three writes per unit after the reload',
      () => {
        for (const g of groups) verdicts.add(`${g}: ${c.sensors!.view(g).verdict}`);
        const w = writes(seqAtReload);
        return (
          c.sensors!.counters.reports - reportsAtReload >= 2 * simSite.sensorNodes.length &&
          units.every((a) => (w.get(a)?.length ?? 0) >= 3)
        );
      },
      { timeoutMs: 20_000, intervalMs: 20 },
    );
    expect(modeLines(linesAtReload, 'blind')).toEqual([]);
    for (const [a, es] of writes(seqAtReload)) {
      const highest = Math.max(...es.map((e) => Number(e.values.fanPct)));
      expect(highest, `${a}: highest fan after the reload, ${lastBefore.get(a)} % before`).toBeLessThan(
        lastBefore.get(a)! + 5,
      );
    }
    expect([...verdicts].sort()).toEqual(groups.map((g) => `${g}: ok`).sort());
  }, 90_000);
});
