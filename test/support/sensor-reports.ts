// Sensor reports for tests that need a sensor store that believes something: every listed node
// reports once, each sensor's value from one function, through the store's own ingest path (seq
// order, quality rules). One builder for the alarm rules' tests, the process values' tests and the
// sensor-trust tests, so a change to the report shape is made once.
import type { RackClimate } from '../../firmware-sim/thermal/types.ts';
import type { SensorKindName, SensorNode, Site } from '../../src/config/site-schema.ts';
import type { Report } from '../../src/sensors/report.ts';
import type { SensorStore } from '../../src/sensors/sensor-store.ts';

/** What a report may say besides its readings. */
export type ReportFields = Partial<Pick<Report, 'batteryPct' | 'rssiDbm' | 'hops'>>;

/** A sensor's value in one report; `index` is the node's position in the list reported. */
export type SensorValueOf = (
  node: SensorNode,
  sensor: { id: string; kind: SensorKindName },
  index: number,
) => number;

/**
 * Every node of `nodeIds` reports once, with sequence number `seq` (default 1), received at the
 * store's monotonic `atMs` (default: its clock now), with `fields` (battery, RSSI…) in each. Throws
 * if the store drops a report: a fixture that feeds nothing would let a test pass for the wrong
 * reason.
 */
export function reportNodes(
  store: SensorStore,
  site: Site,
  nodeIds: readonly string[],
  reading: SensorValueOf,
  opts: {
    seq?: number;
    atMs?: number;
    fields?: ReportFields;
  } = {},
): void {
  const byId = new Map(site.sensorNodes.map((n) => [n.id, n]));
  for (const [index, id] of nodeIds.entries()) {
    const n = byId.get(id);
    if (!n) throw new Error(`no sensor node "${id}" in the site`);
    const dropped = store.ingestReport(
      {
        node: n.id,
        gateway: n.gateway,
        seq: opts.seq ?? 1,
        readings: n.sensors.map((s) => ({ sensor: s.id, kind: s.kind, value: reading(n, s, index) })),
        ...opts.fields,
      },
      'mqtt',
      opts.atMs ?? store.nowMs(),
    );
    if (dropped) throw new Error(`the store dropped ${id}'s report: ${dropped}`);
  }
}

/** What a sensor of `kind` reads of a rack's climate (the simulator's sensors, without their noise). */
export function climateValue(c: RackClimate, kind: SensorKindName): number {
  switch (kind) {
    case 'inlet-top':
      return c.inletTopC;
    case 'inlet-middle':
      return c.inletMiddleC;
    case 'inlet-bottom':
      return c.inletBottomC;
    case 'humidity':
      return c.relativeHumidityPct;
    case 'subfloor-pressure':
      return c.subfloorPa;
  }
}
