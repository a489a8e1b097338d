// The store's Prometheus series: its counters are the truth, read when scraped (ingest pays no label
// lookup per report), and the good/bad sensor count judged then by the quality rules.
// Registered once per store; a reload removes them first (unregisterSensorMetrics).
import { Counter, Gauge, type Registry } from 'prom-client';
import { BAD_BITS, nodeBits, sensorBits } from './reading-quality.ts';
import { DROP_REASONS, type DropReason } from './report.ts';
import { type NodeRt, type SensorColumns, SOURCES } from './sensor-columns.ts';
import type { SourceName } from './sensor-view.ts';

const SENSOR_METRICS = [
  'coolctl_sensor_readings_total',
  'coolctl_sensor_reports_dropped_total',
  'coolctl_sensor_node_restarts_total',
  'coolctl_sensor_report_times_ignored_total',
  'coolctl_sensors',
];

/** What the store counts (SensorStore.counters): what the series read. */
export interface SensorCounters {
  readonly restarts: number;
  readonly timesIgnored: number;
  readonly readings: Readonly<Record<SourceName, number>>;
  readonly drops: Readonly<Record<DropReason, number>>;
}

/** Removes the store's series from `registry` (a reload builds a new store on the same registry). */
export function unregisterSensorMetrics(registry: Registry): void {
  for (const name of SENSOR_METRICS) registry.removeSingleMetric(name);
}

/**
 * The counters are the truth; Prometheus reads them when scraped, so ingest pays no label lookup
 * per report.
 */
export function registerSensorMetrics(
  registry: Registry,
  counters: SensorCounters,
  nodes: Map<string, NodeRt>,
  c: SensorColumns,
  now: () => number,
): void {
  const registers = [registry];
  new Counter({
    name: 'coolctl_sensor_readings_total',
    help: 'Sensor readings applied, by source',
    labelNames: ['source'],
    registers,
    collect() {
      this.reset();
      for (const source of SOURCES) this.inc({ source }, counters.readings[source]);
    },
  });
  new Counter({
    name: 'coolctl_sensor_reports_dropped_total',
    help: 'Sensor reports or readings not applied, by reason',
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset();
      for (const reason of DROP_REASONS) this.inc({ reason }, counters.drops[reason]);
    },
  });
  new Counter({
    name: 'coolctl_sensor_node_restarts_total',
    help: 'Sensor nodes followed into a new seq count (a node that rebooted counts from 1 again)',
    registers,
    collect() {
      this.reset();
      this.inc(counters.restarts);
    },
  });
  new Counter({
    name: 'coolctl_sensor_report_times_ignored_total',
    help:
      'Sensor reports whose sampledAt was ignored (unparseable, or more than 10 min ahead of our clock); ' +
      'the report itself is judged by its seq',
    registers,
    collect() {
      this.reset();
      this.inc(counters.timesIgnored);
    },
  });
  new Gauge({
    name: 'coolctl_sensors',
    help: 'Configured sensors by quality (good or bad) right now',
    labelNames: ['quality'],
    registers,
    collect() {
      let good = 0;
      let bad = 0;
      const nowMs = now();
      // forEach, not an iterator: no result object per node (~460 KB a scrape at 11 765 nodes).
      nodes.forEach((n) => {
        const count = n.layout.ids.length;
        if ((nodeBits(c, n) & BAD_BITS) !== 0) {
          bad += count;
          return;
        }
        for (let pos = 0; pos < count; pos++) {
          if ((sensorBits(c, n, pos, nowMs) & BAD_BITS) === 0) good++;
          else bad++;
        }
      });
      this.set({ quality: 'good' }, good);
      this.set({ quality: 'bad' }, bad);
    },
  });
}
