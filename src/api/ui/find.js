// The find box: matches units and racks by id or group, zooms the map to them, dims the rest
// (which the keyboard then skips) and narrows the groups and units tables. Run when it changes.
import { $, setText } from './dom.js';
import { placeMapStop, setMapZoom } from './map-keys.js';
import { floorItems, state } from './state.js';
import { renderGroups, renderUnits } from './tables.js';

/**
 * What the find box matches: null when it is empty. An item matches when its id contains the
 * words typed (any case), or its group is exactly them ("zone-1" is not "zone-12"); a group when
 * its id contains them or it holds a match.
 */
function findMatches() {
  const q = $('find').value.trim().toLowerCase();
  if (!q) return null;
  const hit = (item) => item.id.toLowerCase().includes(q) || item.group.toLowerCase() === q;
  const racks = new Set(floorItems.racks.filter(hit).map((i) => i.id));
  const ahus = new Set(floorItems.ahus.filter(hit).map((i) => i.id));
  const groups = new Set();
  for (const g of state.site?.groups ?? []) if (g.id.toLowerCase().includes(q)) groups.add(g.id);
  for (const i of [...floorItems.racks, ...floorItems.ahus])
    if (i.group && (racks.has(i.id) || ahus.has(i.id))) groups.add(i.group);
  return { q, racks, ahus, groups };
}

/**
 * Applies the find box: the map zooms to what matches (1 000 units and 5 000 racks on a 1366 px
 * screen are a few pixels each) and dims the rest, which Tab then skips; the groups and units
 * tables list only the matches. Run when the box changes, not every poll.
 */
export function applyFind() {
  const found = findMatches();
  floorItems.found = found;
  const geo = floorItems.geo;
  const svg = $('floor').querySelector('svg');
  let box = null;
  for (const list of [floorItems.racks, floorItems.ahus])
    for (const item of list) {
      const on = !found || found.racks.has(item.id) || found.ahus.has(item.id);
      item.g.classList.toggle('unmatched', !on);
      if (!on || !found) continue;
      box = box
        ? [
            Math.min(box[0], item.x),
            Math.min(box[1], item.y),
            Math.max(box[2], item.x),
            Math.max(box[3], item.y),
          ]
        : [item.x, item.y, item.x, item.y];
    }
  if (svg && geo) {
    // Around the matches with a margin of 2 m, never smaller than 12 × 6 m (a rack stays a rack).
    const view = box
      ? (() => {
          const w = Math.max(12, box[2] - box[0] + 4);
          const h = Math.max(6, box[3] - box[1] + 4);
          return [(box[0] + box[2]) / 2 - w / 2, (box[1] + box[3]) / 2 - h / 2, w, h];
        })()
      : [0, 0, geo.width, geo.height];
    svg.setAttribute('viewBox', view.map((v) => Number(v.toFixed(2))).join(' '));
    // The matches fill the map: any zoom the operator set was of the view now replaced.
    setMapZoom(1);
  }
  // A dimmed stop would leave Tab on something the find box hid: the stop goes to the first match.
  placeMapStop(null, false);
  const status = !found
    ? ''
    : `${found.ahus.size} unit${found.ahus.size === 1 ? '' : 's'}, ${found.racks.size} rack${found.racks.size === 1 ? '' : 's'} in ${found.groups.size} group${found.groups.size === 1 ? '' : 's'} match “${found.q}”${found.ahus.size + found.racks.size ? '; Enter goes to the first on the map' : ''}`;
  setText($('find-status'), status);
  if (state.cluster) {
    renderGroups();
    renderUnits();
  }
}

$('find').addEventListener('input', applyFind);

$('find').addEventListener('keydown', (ev) => {
  if (ev.key !== 'Enter') return;
  ev.preventDefault();
  const { found } = floorItems;
  const first =
    floorItems.ahus.find((i) => found?.ahus.has(i.id)) ??
    floorItems.racks.find((i) => found?.racks.has(i.id));
  if (first) placeMapStop(first, true);
});
