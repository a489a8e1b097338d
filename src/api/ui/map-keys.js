// The floor map from the keyboard and its zoom: one Tab stop (a roving tabindex) kept by kind and
// id across redraws, arrow keys by drawn centres, zoom levels that keep the focused item in view.
import { $, setText } from './dom.js';
import { floorItems } from './state.js';

/**
 * The map is one Tab stop (a roving tabindex, as the alarm grid): 5 000 racks and 1 000 units as
 * Tab stops of their own put 6 000 presses between the find box and the rest of the page. The stop
 * is one item (tabindex 0, every other -1), kept by kind and id: items are updated in place, so it
 * survives the redraw, and Tab back returns to the item last used. Items the find box dims are
 * never the stop and the arrow keys skip them, as Tab skipped them.
 */
const mapStop = { kind: 'rack', id: null };

const usableItem = (item) => !item.g.classList.contains('unmatched');

const mapItemList = () => [...floorItems.racks, ...floorItems.ahus];

/**
 * Makes `item` the map's stop (null: the one `mapStop` names, else the first usable item), and
 * gives it the focus when `focus`, scrolled into the zoomed map's view.
 */
export function placeMapStop(item, focus) {
  const items = mapItemList();
  const named = item ?? items.find((i) => i.kind === mapStop.kind && i.id === mapStop.id);
  const stop = named && usableItem(named) ? named : items.find(usableItem);
  for (const e of $('floor').querySelectorAll('g[tabindex="0"]')) if (e !== stop?.g) e.tabIndex = -1;
  // Nothing matches the find box: no stop (Tab goes past the map), and the old one is remembered.
  if (!stop) return;
  stop.g.tabIndex = 0;
  mapStop.kind = stop.kind;
  mapStop.id = stop.id;
  if (focus) {
    keepInMapView(stop);
    stop.g.focus();
  }
}

/**
 * The usable item nearest to `from` in the arrow's direction, by the items' drawn centres: within
 * the 90° cone around it first (Right from a rack: the next rack of its row), else anywhere on
 * that side, so that every item can be reached; off-axis distance counts double.
 */
function mapNeighbour(from, dx, dy) {
  let best = null;
  let bestScore = Number.POSITIVE_INFINITY;
  for (const item of mapItemList()) {
    if (item === from || !usableItem(item)) continue;
    const along = (item.x - from.x) * dx + (item.y - from.y) * dy;
    if (along <= 1e-6) continue;
    const across = Math.abs((item.x - from.x) * dy - (item.y - from.y) * dx);
    // Outside the cone costs more than anything inside it.
    const score = along + 2 * across + (across > along ? 1e6 : 0);
    if (score < bestScore) {
      best = item;
      bestScore = score;
    }
  }
  return best;
}

/** Zoom levels of the map (× the whole view): at ×16 a rack of a 5 000-rack hall is ~55 px wide on a 1366 px screen. */
const MAP_ZOOMS = [1, 2, 4, 8, 16, 32];

/** The map's height at ×1, at most (px): the find box, map and legend fit a 768 px screen. */
const MAP_MAX_HEIGHT_PX = 640;

const mapZoom = { level: 1 };

/** Scrolls the zoomed map so `item` is in view (centred when it was not), as the arrow keys pan. */
function keepInMapView(item) {
  const host = $('floor');
  const view = host.getBoundingClientRect();
  const r = item.g.getBoundingClientRect();
  const left = r.left - view.left;
  const top = r.top - view.top;
  if (left < 0 || left + r.width > host.clientWidth)
    host.scrollLeft += left + r.width / 2 - host.clientWidth / 2;
  if (top < 0 || top + r.height > host.clientHeight)
    host.scrollTop += top + r.height / 2 - host.clientHeight / 2;
}

/** Sizes the map's drawing for the zoom level: ×1 fits the host (CSS), above it is drawn larger and the host scrolls. */
function sizeMap() {
  const host = $('floor');
  const svg = host.querySelector('svg');
  if (!svg) return;
  const level = mapZoom.level;
  host.classList.toggle('zoomed', level > 1);
  if (level === 1) {
    svg.style.width = '';
    svg.style.height = '';
    return;
  }
  const [, , w, h] = svg.getAttribute('viewBox').split(' ').map(Number);
  const fitPx = Math.min(host.clientWidth, (MAP_MAX_HEIGHT_PX * w) / h);
  svg.style.width = `${Math.round(fitPx * level)}px`;
  svg.style.height = `${Math.round((fitPx * level * h) / w)}px`;
}

/**
 * Sets the zoom level; the map's stop keeps its place on screen (centred if it was out of view),
 * so zooming from the keyboard never loses the focused item.
 */
export function setMapZoom(level) {
  const next = Math.min(MAP_ZOOMS.at(-1), Math.max(1, level));
  const host = $('floor');
  const stop = mapItemList().find((i) => i.g.tabIndex === 0);
  let at = null;
  if (stop && next !== mapZoom.level) {
    const view = host.getBoundingClientRect();
    const r = stop.g.getBoundingClientRect();
    const x = r.left + r.width / 2 - view.left;
    const y = r.top + r.height / 2 - view.top;
    at = x >= 0 && x <= host.clientWidth && y >= 0 && y <= host.clientHeight ? [x, y] : null;
  }
  const changed = next !== mapZoom.level;
  mapZoom.level = next;
  sizeMap();
  if (changed && stop) {
    const view = host.getBoundingClientRect();
    const r = stop.g.getBoundingClientRect();
    const [x, y] = at ?? [host.clientWidth / 2, host.clientHeight / 2];
    host.scrollLeft += r.left + r.width / 2 - view.left - x;
    host.scrollTop += r.top + r.height / 2 - view.top - y;
  }
  // A status line: written only when it changes, so a screen reader says each zoom once.
  if ($('map-zoom-level').textContent !== `×${next}`) setText($('map-zoom-level'), `×${next}`);
  $('map-zoom-in').disabled = next >= MAP_ZOOMS.at(-1);
  $('map-zoom-out').disabled = next <= 1;
}

const zoomStep = (up) =>
  setMapZoom(
    up
      ? (MAP_ZOOMS.find((z) => z > mapZoom.level) ?? MAP_ZOOMS.at(-1))
      : (MAP_ZOOMS.findLast((z) => z < mapZoom.level) ?? 1),
  );

/** Back to the whole hall at ×1 (the find box's matches stay dimmed; typing in it zooms to them again). */
function fitMap() {
  const geo = floorItems.geo;
  const svg = $('floor').querySelector('svg');
  if (geo && svg) svg.setAttribute('viewBox', `0 0 ${geo.width} ${geo.height}`);
  setMapZoom(1);
}

$('map-zoom-in').addEventListener('click', () => zoomStep(true));

$('map-zoom-out').addEventListener('click', () => zoomStep(false));

$('map-fit').addEventListener('click', fitMap);

window.addEventListener('resize', () => {
  if (mapZoom.level > 1) sizeMap();
});

$('floor').addEventListener('keydown', (ev) => {
  const item = ev.target.closest && floorItems.ofElement.get(ev.target.closest('g.rack, g.ahu'));
  if (!item || ev.altKey || ev.ctrlKey || ev.metaKey) return;
  const step = { ArrowRight: [1, 0], ArrowLeft: [-1, 0], ArrowDown: [0, 1], ArrowUp: [0, -1] }[ev.key];
  if (step) {
    ev.preventDefault();
    const next = mapNeighbour(item, step[0], step[1]);
    if (next) placeMapStop(next, true);
  } else if (ev.key === 'Home' || ev.key === 'End') {
    ev.preventDefault();
    const usable = mapItemList().filter(usableItem);
    const next = ev.key === 'Home' ? usable[0] : usable.at(-1);
    if (next) placeMapStop(next, true);
  } else if (ev.key === '+' || ev.key === '=' || ev.key === '-' || ev.key === '_') {
    ev.preventDefault();
    zoomStep(ev.key === '+' || ev.key === '=');
    keepInMapView(item);
  }
});

// A click (or the find box's Enter, or the rack panel closing) focuses an item: it is the stop now.
$('floor').addEventListener('focusin', (ev) => {
  const item = floorItems.ofElement.get(ev.target);
  if (item && item.g.tabIndex !== 0) placeMapStop(item, false);
});
