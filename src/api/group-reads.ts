// What the dashboard's data routes (./routes/site.ts, ./routes/trends.ts) and the trend sampler
// (./trend-sampler.ts) read of one control group from this node's deps: its sensor view and units.
// A read never throws: a view that cannot answer is "no data" (null), never a failed request.
import { type GroupSensorView, SHARED_FIGURES_MAX_AGE_MS } from '../sensors/sensor-store.ts';
import type { ApiDeps } from './api-deps.ts';

/**
 * Work of one pass over every group (a trend sample, a take of the live figures) before the event
 * loop gets a turn: the control loops share it.
 */
export const SAMPLE_SLICE_MS = 2;

/** The group's sensor view: the figures its loop took this period when the view shares them. */
export function viewOf(deps: ApiDeps, group: string): GroupSensorView | null {
  try {
    const s = deps.sensors;
    return (s?.figures ? s.figures(group, SHARED_FIGURES_MAX_AGE_MS).view : s?.view(group)) ?? null;
  } catch {
    return null;
  }
}

/** A group's units: as its driver has them (the running config), else as the site says. */
export function unitsOf(deps: ApiDeps, group: string): string[] {
  const d = deps.drivers.get(group);
  if (d) return d.units().map((u) => u.ahu);
  return deps.site?.controlGroups.find((g) => g.id === group)?.airHandlers ?? [];
}
