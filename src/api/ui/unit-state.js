// A unit's state as its group's leader holds it, one way for the map and the unit table: each
// state has its words, mark and fill, so no state is told by colour alone.

import { liveOf } from './members.js';
import { index, state, unitOf } from './state.js';

/** A unit whose last good write is older than this is "not driven". */
const STALE_WRITE_MS = 10_000;

/** A unit's state as its group's leader holds it: what the map and the unit table show. */
export function unitState(ahu) {
  const group = index.airHandlers.get(ahu)?.group;
  const g = index.groups.get(group);
  const pick = (key, text, mark, fill) => ({ key, text, mark, fill });
  if (!group || !g) return pick('none', 'in no group', '○', '#eceff1');
  if (!g.leader) return pick('not-driven', 'no leader', '○', '#eceff1');
  const v = state.views.get(group);
  if (!v?.view) return pick('unknown', 'unknown', '?', '#eceff1');
  if (!v.view.driving) return pick('not-driven', 'not driven', '○', '#eceff1');
  const u = unitOf(v.view, ahu);
  if (!u) return pick('not-driven', 'not driven', '○', '#eceff1');
  const link = liveOf(group)?.units?.[ahu]?.link;
  if (u.mode === 'tripped') return pick('tripped', 'tripped', '✖', '#ffcdd2');
  if (u.lastError) return pick('error', 'write error', '✖', '#ffcdd2');
  if (link === 'down') return pick('link-down', 'link down', '✖', '#ffcdd2');
  const refusal = liveOf(group)?.units?.[ahu]?.refusal;
  if (refusal) return pick('refusing', `refuses reads (exception ${refusal.code})`, '✖', '#ffcdd2');
  if (u.released || u.mode === 'local') return pick('local', 'local control', '▽', '#e1f5fe');
  if (u.mode === 'fallback') return pick('fallback', 'fallback', '▲', '#ffe0b2');
  if (!u.lastWriteOkMs || Date.now() - u.lastWriteOkMs > STALE_WRITE_MS)
    return pick('not-driven', 'not driven', '○', '#eceff1');
  if (link === 'degraded') return pick('link-degraded', 'link degraded', '▲', '#ffe0b2');
  return pick('driven', 'driven', '●', '#c8e6c9');
}
