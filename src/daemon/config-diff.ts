// What changed between the running config and a reloaded one, and whether it can be applied while
// control runs. The controller config's schema classes each setting (src/config/reload-class.ts):
// the site file's contents and the sensor broker reload live; the node and its cluster (etcd,
// timing, nodes and addresses, data dir, period) and the API's settings need a restart and are
// refused on reload with the path that changed — the running config is kept. Alarm settings (the
// site's `alarms:` and a group's own limits) are read by the alarm engine at every evaluation: they
// apply live and are no reason to restart a group's loop (a restart starts a new term: a bump).
import { type ControllerConfig, ControllerConfigSchema } from '../config/controller-config.ts';
import { changedPaths, classifySettings } from '../config/reload-class.ts';
import type { Site } from '../config/site-schema.ts';
import { groupRacks, neighbourGroups } from '../control/law/influence.ts';
import type { ConfigProblem } from '../errors.ts';

export interface SiteDiff {
  addedGroups: string[];
  removedGroups: string[];
  /**
   * Groups whose definition (units, racks, tuning…) or any of whose units changed, or whose loop
   * would be built differently: the racks its sensors sit on moved, its neighbours changed, or the
   * site's dew point.
   */
  changedGroups: string[];
  addedAhus: string[];
  removedAhus: string[];
  changedAhus: string[];
  /** Racks, sensor nodes, gateways, sensing thresholds or the broker: the sensor ingest restarts. */
  sensorsChanged: boolean;
  /**
   * The site's `alarms:` section or a group's own alarm limits: applied by the alarm engine at its
   * next evaluation, without touching any loop (a group whose only change is this is not changed).
   */
  alarmsChanged: boolean;
}

/** A group as its loop is built from it: everything but its alarm limits, which only the alarm engine reads. */
function loopDefinition(g: Site['controlGroups'][number]): unknown {
  const { alarms: _alarms, ...loop } = g;
  return loop;
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
  const inputs = loopInputsChanged(old, next);
  const changedGroups = [...newGroups.keys()].filter(
    (id) =>
      oldGroups.has(id) &&
      (!same(loopDefinition(oldGroups.get(id)!), loopDefinition(newGroups.get(id)!)) ||
        newGroups.get(id)!.airHandlers.some((a) => touched.has(a)) ||
        inputs(id)),
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
  const alarmsChanged =
    !same(old.alarms, next.alarms) ||
    !same(
      old.controlGroups.map((g) => [g.id, g.alarms]),
      next.controlGroups.map((g) => [g.id, g.alarms]),
    );
  return {
    addedGroups,
    removedGroups,
    changedGroups,
    addedAhus,
    removedAhus,
    changedAhus,
    sensorsChanged,
    alarmsChanged,
  };
}

/**
 * Whether a group's loop would be built differently, beyond its own definition and units (as the
 * daemon builds it, src/control/law): the dew-point fallback (`site.site`), the geometry of the
 * racks its sensors sit on (its influence matrix), and the groups it answers (from every sensed
 * rack's geometry). Each is compared only as far as needed: a 1 000-unit site costs milliseconds.
 */
function loopInputsChanged(old: Site, next: Site): (group: string) => boolean {
  if (!same(old.site, next.site)) return () => true;
  const geometry = (site: Site) => {
    const racks = new Map(site.racks.map((r) => [r.id, r]));
    return (group: string) =>
      [...groupRacks(site, group)].sort().map((id) => {
        const r = racks.get(id);
        return r ? [id, r.room, r.xM, r.yM] : [id];
      });
  };
  const [was, is] = [geometry(old), geometry(next)];
  const everyGroup = (site: Site, of: ReturnType<typeof geometry>) => site.controlGroups.map((g) => of(g.id));
  // The groups a group answers follow from every sensed rack's geometry; the law computes them
  // only when that changed. A group added or removed next to it is no reason to restart a loop
  // (loops that did not change run on through a reload): only neighbours on both sides count.
  const newIds = new Set(next.controlGroups.map((g) => g.id));
  const kept = new Set(old.controlGroups.map((g) => g.id).filter((id) => newIds.has(id)));
  const neighbours = same(everyGroup(old, was), everyGroup(next, is))
    ? undefined
    : [neighbourGroups(old), neighbourGroups(next)].map(
        // A group id is any name the site file gives (`constructor` too): an own key, or none.
        (n) => (g: string) => (Object.hasOwn(n, g) ? n[g]! : []).filter((x) => kept.has(x)),
      );
  return (g) =>
    !same(was(g), is(g)) || (neighbours !== undefined && !same(neighbours[0]!(g), neighbours[1]!(g)));
}

export function isEmptyDiff(d: SiteDiff): boolean {
  return (
    !d.sensorsChanged &&
    !d.alarmsChanged &&
    [d.addedGroups, d.removedGroups, d.changedGroups, d.addedAhus, d.removedAhus, d.changedAhus].every(
      (x) => x.length === 0,
    )
  );
}

/**
 * What the restart-only settings hold beyond their text: the files they name, read at load. A
 * renewed etcd certificate or a new cluster secret under the same path is still only read at start.
 */
const READ_AT_START: [path: string, material: (c: ControllerConfig) => unknown][] = [
  ['/cluster/etcd', (c) => c.etcdSecurity],
  ['/cluster/secretFile', (c) => c.secret?.toString('hex')],
  [
    '/cluster/peerKeysFile',
    (c) => (c.peerKeys ? [...c.peerKeys].map(([n, k]) => [n, k.toString('hex')]) : null),
  ],
];

/**
 * Changes a reload cannot apply, each with its path and what to do: every setting the schema marks
 * restart-only (src/config/reload-class.ts) whose value changed, and the files behind them. A
 * setting the schema does not classify counts as restart-only, so nothing is ignored.
 */
export function restartOnlyChanges(old: ControllerConfig, next: ControllerConfig): ConfigProblem[] {
  const problems = new Map<string, ConfigProblem>();
  const refuse = (path: string, message: string, hint: string | undefined) => {
    // One problem per setting: a path already reported covers what lies under or above it.
    const near = (p: string) => path === p || path.startsWith(`${p}/`) || p.startsWith(`${path}/`);
    if ([...problems.keys()].some(near)) return;
    problems.set(path, {
      file: next.file,
      path,
      message,
      allowed: `restart the node (systemctl restart coolctl@${next.node}) to apply it${hint ? ` — ${hint}` : ''}; the running config is kept`,
    });
  };
  for (const s of classifySettings(ControllerConfigSchema)) {
    if (s.reload === 'live') continue;
    for (const path of changedPaths(old.doc, next.doc, s.path))
      refuse(path, 'changed, but this setting is only read at start', s.hint);
  }
  for (const [path, material] of READ_AT_START)
    if (!same(material(old), material(next)))
      refuse(path, 'a file this setting names changed, but it is only read at start', undefined);
  return [...problems.values()];
}
