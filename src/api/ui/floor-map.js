// The floor map: rooms, racks coloured by inlet and units by state, drawn once per site and then
// updated in place (only the items whose figures changed). Every item stays inside its room, and
// its colour has its mark and words (text, aria-label, title).
import { $, el, setText } from './dom.js';
import { applyFind } from './find.js';
import { fmt } from './format.js';
import { drawLegend, inletColour, inletLevel, lightTextOn, NO_DATA, shownC } from './inlet-scale.js';
import { labelRoomM, measureLabelChars, setLabel } from './map-labels.js';
import { liveOf } from './members.js';
import { selectRack } from './rack.js';
import { floorItems, state } from './state.js';
import { setTrendSubject } from './trends.js';
import { unitState } from './unit-state.js';

/** Room placement: rooms side by side, 1 m apart; a room deeper than wide is turned a quarter so the page's width holds its length. */
function layout(site) {
  const rooms = new Map();
  let x = 0.5;
  let depth = 0;
  for (const r of site.rooms) {
    const turned = r.depthM > r.widthM;
    const w = turned ? r.depthM : r.widthM;
    const d = turned ? r.widthM : r.depthM;
    rooms.set(r.id, { ...r, x0: x, turned, w, d });
    x += w + 1;
    depth = Math.max(depth, d);
  }
  const at = (room, xM, yM) => {
    const r = rooms.get(room);
    if (!r) return [0, 0];
    return r.turned ? [r.x0 + yM, 0.9 + (r.widthM - xM)] : [r.x0 + xM, 0.9 + yM];
  };
  return { rooms, at, width: x - 0.5, height: depth + 1.3 };
}

/**
 * What the map draws of a rack and a unit (m, as drawn: a turned room's racks lie across). The site
 * gives only a position (a rack's centre, a unit's place, anywhere from wall to wall); the drawing
 * gives the footprint, so the drawing keeps the footprint inside the room (boxInRoom).
 */
const RACK_DRAWN_M = { long: 1, short: 0.56 };

const UNIT_DRAWN_M = { w: 2.4, h: 1 };

/**
 * How far a drawn box stays off its room's walls (m): half the focus frame's stroke (0.12, CSS)
 * and half the wall's (0.05), so a focused item against a wall is framed inside the room.
 */
const WALL_INSET_M = 0.1;

/**
 * Where a box of `size` is centred on one axis of a room spanning `from`…`to` (map coordinates),
 * for an item at `p`: where it is, except within a box's half-size of the room's inner limit
 * (`lo`, `hi`: the box touching the wall), where positions from the wall on are eased into that
 * band. So an item against a wall is drawn touching it from inside, and two items near one wall
 * stay apart in the order they stand (a plain clamp would stack them, and the arrow keys, which
 * go by drawn centres, would skip all but one).
 */
function centreInRoom(p, from, to, size, inset) {
  const lo = from + inset + size / 2;
  const hi = to - inset - size / 2;
  if (hi <= lo) return (from + to) / 2;
  const q = Math.min(to, Math.max(from, p));
  const band = Math.min(size / 2, (hi - lo) / 2);
  if (q < lo + band) return lo + (band * (q - from)) / (lo + band - from);
  if (q > hi - band) return hi - (band * (to - q)) / (to - hi + band);
  return q;
}

/**
 * A `w` × `h` box for an item at (px, py) inside `room` (centreInRoom on each axis): never across
 * a wall. A room smaller than the box gets the box shrunk to fit, marked `cramped` (its labels
 * then hidden).
 */
function boxInRoom(room, px, py, w, h) {
  const inset = Math.min(WALL_INSET_M, room.w / 4, room.d / 4);
  const fw = Math.min(w, room.w - 2 * inset);
  const fh = Math.min(h, room.d - 2 * inset);
  const cx = centreInRoom(px, room.x0, room.x0 + room.w, fw, inset);
  const cy = centreInRoom(py, 0.9, 0.9 + room.d, fh, inset);
  return { x: cx - fw / 2, y: cy - fh / 2, w: fw, h: fh, cx, cy, cramped: fw < w || fh < h };
}

export function drawFloor() {
  const site = state.site;
  const host = $('floor');
  host.replaceChildren();
  floorItems.racks = [];
  floorItems.ahus = [];
  floorItems.ofElement = new WeakMap();
  if (site.missing) {
    host.append(el('p', { class: 'muted', text: 'This node was started without a site model.' }));
    return;
  }
  setText($('site-name'), site.name);
  const geo = layout(site);
  floorItems.geo = geo;
  const svg = el('svg:svg', {
    viewBox: `0 0 ${geo.width} ${geo.height}`,
    role: 'group',
    'aria-label': `floor map of ${site.name}: racks coloured by inlet temperature`,
    'aria-describedby': 'floor-keys',
  });
  for (const r of geo.rooms.values()) {
    svg.append(el('svg:rect', { class: 'room', x: r.x0, y: 0.9, width: r.w, height: r.d }));
    svg.append(
      el('svg:text', {
        class: 'room-name',
        x: r.x0 + 0.1,
        y: 0.7,
        text: `${r.name}${r.turned ? ' (turned a quarter: its length runs across)' : ''}`,
      }),
    );
  }
  measureLabelChars(svg);
  // The rules refuse an item in no room; were one drawn, it would stay inside the hall.
  const hall = { x0: 0.5, w: Math.max(0.1, geo.width - 1), d: geo.height - 1.3 };
  for (const k of site.racks) {
    const room = geo.rooms.get(k.room);
    const [px, py] = geo.at(k.room, k.xM, k.yM);
    const { long, short } = RACK_DRAWN_M;
    const box = boxInRoom(room ?? hall, px, py, room?.turned ? long : short, room?.turned ? short : long);
    const { cx, cy, w, h } = box;
    const g = el('svg:g', {
      // A rack drawn upright is narrow: its value goes in a smaller font.
      class: `${room?.turned ? 'rack' : 'rack narrow'}${box.cramped ? ' cramped' : ''}`,
      'data-id': k.id,
      'data-group': k.group ?? '',
      'data-level': 'none',
      // One Tab stop for the whole map (see placeMapStop): every item but the stop is -1.
      tabindex: -1,
      role: 'button',
      'aria-label': `${k.id}: no data`,
    });
    const id = el('svg:text', { class: 'rack-id', x: cx, y: cy - h / 2 + 0.17 });
    const temp = el('svg:text', { class: 'rack-temp', x: cx, y: cy + h / 2 - 0.08 });
    const tempKey = room?.turned ? 'rack|rack-temp' : 'rack narrow|rack-temp';
    setLabel(id, 'rack|rack-id', k.id, labelRoomM(box));
    setLabel(temp, tempKey, '?', labelRoomM(box));
    g.append(
      el('svg:rect', { class: 'rack-box', x: box.x, y: box.y, width: w, height: h, fill: NO_DATA }),
      id,
      temp,
      el('svg:title', { text: `${k.id}: no data` }),
    );
    // Its centre as drawn: the arrow keys go by what the operator sees.
    const rack = { kind: 'rack', g, id: k.id, group: k.group ?? '', x: cx, y: cy, sig: null, box, tempKey };
    floorItems.racks.push(rack);
    floorItems.ofElement.set(g, rack);
    g.addEventListener('click', () => selectRack(k.id));
    g.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        selectRack(k.id);
      }
    });
    svg.append(g);
  }
  for (const a of site.airHandlers) {
    const [px, py] = geo.at(a.room, a.xM, a.yM);
    const box = boxInRoom(geo.rooms.get(a.room) ?? hall, px, py, UNIT_DRAWN_M.w, UNIT_DRAWN_M.h);
    const { cx, cy } = box;
    const g = el('svg:g', {
      class: box.cramped ? 'ahu cramped' : 'ahu',
      'data-id': a.id,
      'data-group': a.group ?? '',
      tabindex: -1,
      role: 'button',
      'aria-label': `${a.id}: show its trend`,
    });
    const id = el('svg:text', { class: 'ahu-id', x: cx, y: cy - 0.1 });
    const stateText = el('svg:text', { class: 'ahu-state', x: cx, y: cy + 0.32 });
    setLabel(id, 'ahu|ahu-id', a.id, labelRoomM(box));
    setLabel(stateText, 'ahu|ahu-state', '…', labelRoomM(box));
    g.append(
      el('svg:rect', { class: 'ahu-box', x: box.x, y: box.y, width: box.w, height: box.h, fill: '#eceff1' }),
      id,
      stateText,
      el('svg:title', { text: `${a.id} (${a.protocol}, ${a.capacityKw} kW, ${a.group ?? 'no group'})` }),
    );
    const unit = { kind: 'ahu', g, id: a.id, group: a.group ?? '', x: cx, y: cy, sig: null, box };
    floorItems.ahus.push(unit);
    floorItems.ofElement.set(g, unit);
    const show = () => {
      setTrendSubject(`unit:${a.id}`);
      $('trends-section').scrollIntoView({ block: 'nearest' });
    };
    g.addEventListener('click', show);
    g.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        show();
      }
    });
    svg.append(g);
  }
  host.append(svg);
  fitRoomNames(svg, geo);
  drawLegend();
  applyFind();
}

/**
 * A room's name is drawn within its room: a long one (names are free text) is cut with "…" and
 * the whole name is its tooltip, instead of running across the rooms beside it.
 */
function fitRoomNames(svg, geo) {
  const names = svg.querySelectorAll('text.room-name');
  [...geo.rooms.values()].forEach((r, i) => {
    const t = names[i];
    const full = t?.textContent ?? '';
    const room = r.w - 0.2;
    // No layout yet (the map hidden): nothing to measure, and nothing is drawn over anything.
    if (!t || t.getComputedTextLength() <= room) return;
    let lo = 0;
    let hi = full.length;
    // Bounded: a binary search over the name's length, about 20 steps for a million characters.
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      t.textContent = `${full.slice(0, mid)}…`;
      if (t.getComputedTextLength() <= room) lo = mid;
      else hi = mid - 1;
    }
    t.textContent = `${full.slice(0, lo)}…`;
    t.append(el('svg:title', { text: full }));
  });
}

export function updateFloor() {
  if (!state.site || state.site.missing) return;
  const unknown = [];
  // Per group, once per poll: where its figures come from is the same for all its racks.
  const liveByGroup = new Map();
  const liveFor = (group) => {
    if (!liveByGroup.has(group)) liveByGroup.set(group, (group && liveOf(group)) || state.live.get(''));
    return liveByGroup.get(group);
  };
  for (const item of floorItems.racks) {
    const { g, id, group } = item;
    const live = liveFor(group);
    const known = live && !live.error && live.rackInletsKnown;
    if (!known && !unknown.includes(group)) unknown.push(group || 'no group');
    const c = known ? live.racks?.[id] : null;
    const trust = known ? live.rackTrust?.[id] : undefined;
    // What the rack shows: its value as shown (0.1 °C) and its trust. Nothing else changes it.
    const sig = `${typeof c === 'number' ? fmt(c) : '?'}|${trust?.goodInlets}|${trust?.inlets}`;
    if (item.sig === sig) continue;
    item.sig = sig;
    const lv = inletLevel(c);
    const partial = trust && trust.inlets > 0 && trust.goodInlets < trust.inlets && typeof c === 'number';
    const mark = `${lv.mark}${partial ? '◐' : ''}`;
    g.setAttribute('data-level', lv.level);
    g.classList.toggle('partial', !!partial);
    const fill = inletColour(shownC(c));
    g.querySelector('rect').setAttribute('fill', fill);
    const temp = g.querySelector('.rack-temp');
    // The leading space (not drawn) keeps id and value two words in the rack's text, as read
    // aloud and as its accessible name must contain it.
    setLabel(
      temp,
      item.tempKey,
      typeof c === 'number' ? ` ${fmt(c)}${mark ? ` ${mark}` : ''}` : '– ?',
      labelRoomM(item.box),
    );
    for (const t of g.querySelectorAll('text')) t.classList.toggle('light', lightTextOn(fill));
    const trustText = trust ? `; ${trust.goodInlets} of ${trust.inlets} inlet sensors good` : '';
    // Starts with what the rack shows (its id and value), so speech and sight name it alike.
    const label = `${id}${typeof c === 'number' ? `${temp.textContent}: inlet ${fmt(c)} °C, ${lv.words}` : ': no data'}${trustText}`;
    g.setAttribute('aria-label', `${label}. Enter shows its sensors.`);
    g.querySelector('title').textContent = label;
  }
  for (const item of floorItems.ahus) {
    const s = unitState(item.id);
    const sig = `${s.key}|${s.text}`;
    if (item.sig === sig) continue;
    item.sig = sig;
    const g = item.g;
    g.setAttribute('data-state', s.key);
    g.querySelector('rect').setAttribute('fill', s.fill);
    setLabel(g.querySelector('.ahu-state'), 'ahu|ahu-state', `${s.mark} ${s.text}`, labelRoomM(item.box));
    g.setAttribute('aria-label', `${item.id}: ${s.text}. Enter shows its trend.`);
  }
  const source = unknown.length
    ? `Rack inlets of ${unknown.join(', ')}: no data (the node read has no sensor view of them).`
    : 'Each group’s racks and units as its leader sees them (this node where a group has no leader).';
  if ($('floor-source').textContent !== source) $('floor-source').textContent = source;
}
