// What changed between the running config and a reloaded one, and whether it can be applied while
// control runs. The site (groups, air handlers, sensors, tuning) and the sensor broker reload live;
// everything about the node and its cluster (etcd, timing, nodes and addresses, data dir, period)
// needs a restart and is refused on reload with the path that changed — the running config is kept.
import type { ConfigProblem } from '../errors.ts';
import type { ControllerConfig } from './controller-config.ts';
import type { Site } from './site-schema.ts';

export interface SiteDiff {
  addedGroups: string[];
  removedGroups: string[];
  /** Groups whose definition (units, racks, tuning…) or any of whose units changed. */
  changedGroups: string[];
  addedAhus: string[];
  removedAhus: string[];
  changedAhus: string[];
  /** Racks, sensor nodes, gateways, sensing thresholds or the broker: the sensor ingest restarts. */
  sensorsChanged: boolean;
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

function byId<T extends { id: string }>(xs: readonly T[]): Map<string, T> {
  return new Map(xs.map((x) => [x.id, x]));
}

export function diffSites(old: Site, next: Site, mqttChanged = false): SiteDiff {
  const oldAhus = byId(old.airHandlers);
  const newAhus = byId(next.airHandlers);
  const addedAhus = [...newAhus.keys()].filter((id) => !oldAhus.has(id));
  const removedAhus = [...oldAhus.keys()].filter((id) => !newAhus.has(id));
  const changedAhus = [...newAhus.keys()].filter(
    (id) => oldAhus.has(id) && !same(oldAhus.get(id), newAhus.get(id)),
  );
  const touched = new Set([...removedAhus, ...changedAhus]);
  const oldGroups = byId(old.controlGroups);
  const newGroups = byId(next.controlGroups);
  const addedGroups = [...newGroups.keys()].filter((id) => !oldGroups.has(id));
  const removedGroups = [...oldGroups.keys()].filter((id) => !newGroups.has(id));
  const changedGroups = [...newGroups.keys()].filter(
    (id) =>
      oldGroups.has(id) &&
      (!same(oldGroups.get(id), newGroups.get(id)) ||
        newGroups.get(id)!.airHandlers.some((a) => touched.has(a))),
  );
  const sensorsChanged =
    mqttChanged ||
    !same(old.racks, next.racks) ||
    !same(old.sensorNodes, next.sensorNodes) ||
    !same(old.gateways, next.gateways) ||
    !same(old.sensing, next.sensing) ||
    !same(
      old.controlGroups.map((g) => [g.id, g.sensorNodes]),
      next.controlGroups.map((g) => [g.id, g.sensorNodes]),
    );
  return { addedGroups, removedGroups, changedGroups, addedAhus, removedAhus, changedAhus, sensorsChanged };
}

export function isEmptyDiff(d: SiteDiff): boolean {
  return (
    !d.sensorsChanged &&
    [d.addedGroups, d.removedGroups, d.changedGroups, d.addedAhus, d.removedAhus, d.changedAhus].every(
      (x) => x.length === 0,
    )
  );
}

/** Changes a reload cannot apply: each with its path and what to do. */
export function restartOnlyChanges(old: ControllerConfig, next: ControllerConfig): ConfigProblem[] {
  const checks: [string, unknown, unknown][] = [
    ['/cluster', old.cluster, next.cluster],
    ['/nodes', old.nodes, next.nodes],
    ['/dataDir', old.dataDir, next.dataDir],
    ['/control/periodMs', old.periodMs, next.periodMs],
    ['/timeScale', old.timeScale, next.timeScale],
    ['/cluster/secretFile', old.secret?.toString('hex'), next.secret?.toString('hex')],
  ];
  return checks
    .filter(([, a, b]) => !same(a, b))
    .map(([path]) => ({
      file: next.file,
      path,
      message: 'changed, but this setting is only read at start',
      allowed: 'restart the node (systemctl restart coolctl@NODE) to apply it; the running config is kept',
    }));
}
