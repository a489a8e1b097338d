// The rack panel: a rack's sensors and their trust, read from its group's leader (whose view
// control acts on), else this node. Opened from the map; Escape closes it and gives the focus back.

import { getJson } from './api.js';
import { $, el } from './dom.js';
import { ago, fmt } from './format.js';
import { inletWords } from './inlet-scale.js';
import { leaderBase, nodeAt, sourceOf } from './members.js';
import { index, state } from './state.js';

export function selectRack(id) {
  state.rack = { id, body: null, from: null, error: null };
  // Said once when it opens: the panel itself redraws every poll and is no live region.
  $('rack-status').textContent = `Rack ${id} opened beside the map; Escape closes it.`;
  for (const g of document.querySelectorAll('#floor g.rack'))
    g.setAttribute('aria-pressed', String(g.getAttribute('data-id') === id));
  renderRack();
  pollRack(id).then(renderRack);
}

/** The rack's sensors from its group's leader (whose view control acts on), else this node. */
export async function pollRack(id) {
  const group = index.racks.get(id)?.group;
  const from = group ? sourceOf(group) : '';
  try {
    const r = await getJson(`${from}/api/v1/site/racks/${encodeURIComponent(id)}`);
    if (state.rack?.id !== id) return;
    state.rack =
      r.status === 200
        ? { id, body: r.body, from, error: null }
        : { id, body: null, from, error: `HTTP ${r.status}: ${r.body?.message ?? ''}` };
  } catch (err) {
    if (state.rack?.id === id)
      state.rack = { id, body: null, from, error: `${nodeAt(from)} unreachable: ${err.message}` };
  }
}

function trustOf(good, of) {
  if (of === 0) return { mark: '?', text: 'no inlet sensors' };
  if (good === of) return { mark: '✔', text: `trusted: ${good} of ${of} inlet sensors good` };
  if (good === 0) return { mark: '✖', text: `not trusted: none of ${of} inlet sensors good` };
  return { mark: '◐', text: `partly trusted: ${good} of ${of} inlet sensors good` };
}

/** Closes the rack panel and gives the focus back to its rack. */
function closeRack() {
  const id = state.rack?.id;
  if (id === undefined) return;
  state.rack = null;
  $('rack-details').replaceChildren(
    el('p', { class: 'muted', text: 'Select a rack to see its sensors and their trust.' }),
  );
  for (const g of document.querySelectorAll('#floor g.rack[aria-pressed]')) g.removeAttribute('aria-pressed');
  $('rack-status').textContent = `Rack ${id} closed.`;
  document.querySelector(`#floor g.rack[data-id="${CSS.escape(id)}"]`)?.focus();
}

// Escape closes what a rack opened, from the map or the panel (not from a form field elsewhere).
for (const id of ['floor', 'rack-details'])
  $(id).addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && state.rack) {
      ev.preventDefault();
      closeRack();
    }
  });

export function renderRack() {
  const host = $('rack-details');
  const r = state.rack;
  if (!r) return;
  const hadFocus = document.activeElement?.id === 'rack-close';
  const close = el('button', { type: 'button', id: 'rack-close', text: 'Close' });
  close.addEventListener('click', closeRack);
  const rack = state.site?.racks.find((x) => x.id === r.id);
  const head = el('h3', { text: `Rack ${r.id}${rack?.group ? ` (${rack.group})` : ''}` });
  if (!r.body) {
    host.replaceChildren(
      head,
      el('p', { class: r.error ? 'bad' : 'muted', text: r.error ?? 'reading…' }),
      close,
    );
    return;
  }
  const b = r.body;
  const trust = trustOf(b.goodInlets, b.inlets);
  const rows = b.sensors.map((s) => {
    const warnFlags = s.flags.length ? ` (${s.flags.join(', ')})` : '';
    const q =
      s.quality === 'good'
        ? { cls: 'ok', text: `✔ good${warnFlags}` }
        : s.quality === 'bad'
          ? { cls: 'bad', text: `✖ untrusted${warnFlags}` }
          : { cls: 'warn', text: '? unknown' };
    return el(
      'tr',
      { 'data-sensor': `${s.node}/${s.sensor}` },
      el('td', { text: `${s.node} / ${s.sensor}` }),
      el('td', { text: s.kind }),
      el('td', { class: 'num', text: s.value === null ? 'no reading' : `${fmt(s.value)} ${s.unit}` }),
      el('td', { class: 'num', text: s.ageS === null ? '–' : `${fmt(s.ageS, 0)} s` }),
      el('td', { class: q.cls, text: q.text }),
    );
  });
  host.replaceChildren(
    head,
    el('p', {
      class: 'rack-summary',
      text: `Hottest good inlet: ${inletWords(b.inletMaxC)}. ${trust.mark} ${trust.text}.`,
    }),
    el('p', {
      class: 'muted',
      text: `As ${b.node} sees it${rack?.group ? (r.from === '' && leaderBase(rack.group) === null ? ' (the group has no leader)' : `, the leader of ${rack.group}`) : ''}, ${ago(b.atMs)}.${b.sensorsKnown ? '' : ' That node has no sensor view: no readings.'}`,
    }),
    el(
      'table',
      { class: 'sensors' },
      el(
        'thead',
        {},
        el('tr', {}, ...['node / sensor', 'kind', 'value', 'age', 'trust'].map((t) => el('th', { text: t }))),
      ),
      el('tbody', {}, ...rows),
    ),
    close,
  );
  if (hadFocus) close.focus();
}
