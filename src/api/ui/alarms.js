// The cluster's alarms (kept in etcd, any node answers): read by `since`, listed worst and newest
// first (at most ALARM_ROWS_MAX), acknowledged or shelved from here. A row that did not change keeps
// its element, so a button under the pointer or the keyboard focus survives the next poll.

import { placeAlarmStop } from './alarm-grid.js';
import { getJson, isObject, postJson } from './api.js';
import { $, clip, el, setText } from './dom.js';
import { agoIso, hhmm } from './format.js';
import { mergeAlarms } from './merge-answers.js';
import { state } from './state.js';

const SEVERITY_MARK = { critical: '✖', major: '◆', minor: '▲', warning: '●' };

const SEVERITY_RANK = { critical: 0, major: 1, minor: 2, warning: 3 };

const ALARM_STATES = ['raised', 'acknowledged', 'cleared'];

/**
 * Rows the alarm table lists at most, the worst and newest first; the rest are counted under them.
 * An alarm storm (a hall's every rack at once) must not turn each poll into thousands of rows.
 */
const ALARM_ROWS_MAX = 200;

/** A word the API sends that the page also puts in a class: a known one, else "unknown". */
const known = (word, words) => (words.includes(word) ? word : 'unknown');

/**
 * The cluster's alarms from this node (any node answers the same: they are kept in etcd). The first
 * read is whole; after it the page sends back the answer's `rev` (`since`, `changes=only`) and gets
 * only the alarms that changed and the ids that left the list, which it merges into what it holds
 * (at full size a few KiB instead of the whole list). A node that refuses `since` (rolled back to an
 * older version) is read again whole at once.
 */
export async function pollAlarms() {
  const which = state.alarmFilter === 'all' ? 'all' : 'active';
  const held = state.alarms;
  const since = !held.error && held.which === which && typeof held.rev === 'string' ? held.rev : null;
  try {
    const path = `/api/v1/alarms?state=${which}`;
    let r = await getJson(since ? `${path}&since=${encodeURIComponent(since)}&changes=only` : path);
    if (since && r.status === 400) r = await getJson(path);
    const rev = typeof r.body?.rev === 'string' ? r.body.rev : null;
    const changes = r.status === 200 && since && r.body?.since === since;
    const list = !changes
      ? r.status === 200 && Array.isArray(r.body?.alarms)
        ? r.body.alarms
        : null
      : !('alarms' in r.body) && !('removed' in r.body)
        ? held.list
        : mergeAlarms(held.list, r.body);
    state.alarms = list
      ? { list, error: null, which, rev }
      : {
          list: [],
          error: `this node's alarm API answered ${r.status}${r.body?.message ? `: ${r.body.message}` : ''}`,
        };
  } catch (err) {
    state.alarms = { list: [], error: `this node's alarm API did not answer: ${err.message}` };
  }
}

async function alarmAction(id, what, payload) {
  const p = $('alarm-result');
  p.className = 'muted';
  setText(p, `${what} ${id}: sending…`);
  try {
    const r = await postJson(`/api/v1/alarms/${encodeURIComponent(id)}/${what}`, payload);
    const ok = r.status >= 200 && r.status < 300;
    p.className = ok ? 'ok' : 'bad';
    setText(
      p,
      ok
        ? `${what} ${id}: done`
        : `${what} ${id}: refused (${r.status} ${r.body.error ?? ''}: ${r.body.message ?? ''})`,
    );
  } catch (err) {
    p.className = 'bad';
    setText(p, `${what} ${id}: this node did not answer (${err.message})`);
  }
  await pollAlarms();
  renderAlarms();
}

function alarmComment() {
  const c = $('alarm-comment').value.trim();
  return c ? { comment: c } : {};
}

function setAlarmFilter(f) {
  state.alarmFilter = f;
  $('alarms-active').setAttribute('aria-pressed', String(f === 'active'));
  $('alarms-all').setAttribute('aria-pressed', String(f === 'all'));
  pollAlarms().then(renderAlarms);
}

$('alarms-active').addEventListener('click', () => setAlarmFilter('active'));

$('alarms-all').addEventListener('click', () => setAlarmFilter('all'));

function raisedText(a) {
  return a.state === 'cleared' && a.clearedAt
    ? `${agoIso(a.raisedAt)}, cleared ${agoIso(a.clearedAt)}`
    : agoIso(a.raisedAt);
}

export function renderAlarms() {
  const body = $('alarms').tBodies[0];
  const raisedMs = new Map(state.alarms.list.map((a) => [a, Date.parse(a.raisedAt) || 0]));
  const all = state.alarms.list
    .slice()
    .sort(
      (a, b) =>
        (a.state === 'cleared') - (b.state === 'cleared') ||
        (SEVERITY_RANK[a.severity] ?? 9) - (SEVERITY_RANK[b.severity] ?? 9) ||
        raisedMs.get(b) - raisedMs.get(a),
    );
  const list = all.slice(0, ALARM_ROWS_MAX);
  // Rows that did not change are kept as they are (only their "ago" is rewritten): a button under
  // the pointer or the keyboard focus must not be replaced by the next poll.
  const kept = new Map(
    [...body.querySelectorAll('tr[data-alarm]')].map((tr) => [tr.getAttribute('data-alarm'), tr]),
  );
  const rows = list.map((a) => {
    const shelved = a.shelvedUntil !== null && Date.parse(a.shelvedUntil) > Date.now();
    const sig = JSON.stringify([
      a.state,
      a.severity,
      a.message,
      a.ack,
      a.clearedAt,
      shelved && a.shelvedUntil,
    ]);
    const old = kept.get(a.id);
    if (old?.getAttribute('data-sig') === sig) {
      old.querySelector('td.raised').textContent = raisedText(a);
      return old;
    }
    // One button per cell (APG grid): the arrow keys reach each, and a cell that lost its button
    // (acknowledged) keeps its place, so the focus stays in the alarm's column when it is redrawn.
    const button = (cls, text) =>
      el('button', {
        type: 'button',
        class: cls,
        text,
        tabindex: -1,
        'aria-label': `${text.toLowerCase()} ${a.message}`,
      });
    const ackCell = el(
      'td',
      { class: 'alarm-actions' },
      a.state === 'raised' ? button('ack', 'Acknowledge') : null,
    );
    const shelveCell = el(
      'td',
      { class: 'alarm-actions' },
      a.state === 'cleared' ? null : shelved ? button('unshelve', 'Unshelve') : button('shelve', 'Shelve'),
    );
    const tr = el(
      'tr',
      {
        'data-alarm': a.id,
        'data-kind': a.kind,
        'data-state': a.state,
        'data-sig': sig,
        // Only known words become classes: a severity of "sr-only" must not hide its row.
        class: `${known(a.severity, Object.keys(SEVERITY_RANK))} ${known(a.state, ALARM_STATES)}${shelved ? ' shelved' : ''}`,
      },
      el('td', {
        class: `sev ${known(a.severity, Object.keys(SEVERITY_RANK))}`,
        text: `${SEVERITY_MARK[a.severity] ?? '?'} ${a.severity}`,
      }),
      el('td', {
        class: 'alarm-state',
        text: `${a.state === 'raised' ? 'unacknowledged' : a.state}${shelved ? `, shelved until ${hhmm(Date.parse(a.shelvedUntil))}` : ''}`,
      }),
      el('td', { class: 'raised', text: raisedText(a), title: a.raisedAt }),
      el('td', { text: [a.group, a.subject].filter(Boolean).join(' / ') || 'cluster' }),
      el('td', { class: 'alarm-message', text: clip(String(a.message), 1000) }),
      el('td', {
        class: 'alarm-ack',
        text: isObject(a.ack)
          ? `by ${a.ack.user} ${agoIso(a.ack.at)}${a.ack.comment ? `: “${clip(String(a.ack.comment))}”` : ''}`
          : '–',
      }),
      ackCell,
      shelveCell,
    );
    // A cell is the grid's stop itself only where it holds no button (the button is, then).
    for (const td of tr.cells) if (!td.querySelector('button')) td.tabIndex = -1;
    tr.querySelector('button.ack')?.addEventListener('click', () => alarmAction(a.id, 'ack', alarmComment()));
    tr.querySelector('button.shelve')?.addEventListener('click', () =>
      alarmAction(a.id, 'shelve', { durationS: Number($('alarm-shelve-for').value), ...alarmComment() }),
    );
    tr.querySelector('button.unshelve')?.addEventListener('click', () => alarmAction(a.id, 'unshelve', {}));
    return tr;
  });
  const more = all.length - list.length;
  const moreText = `${more} more alarms not listed (the ${list.length} above are the worst and newest)`;
  const moreRow = body.querySelector('tr.more');
  const same =
    rows.length > 0 &&
    rows.length === kept.size &&
    rows.every((tr, i) => body.rows[i] === tr) &&
    (more > 0 ? moreRow?.textContent === moreText : !moreRow);
  const hadFocus = body.contains(document.activeElement);
  if (!same)
    body.replaceChildren(
      ...(rows.length
        ? [
            ...rows,
            more > 0
              ? el(
                  'tr',
                  { class: 'more' },
                  el('td', { colspan: 8, class: 'warn', text: moreText, tabindex: -1 }),
                )
              : null,
          ].filter(Boolean)
        : [
            el(
              'tr',
              { class: 'none' },
              el('td', {
                colspan: 8,
                tabindex: -1,
                class: state.alarms.error ? 'bad' : 'ok',
                text:
                  state.alarms.error ??
                  (state.alarmFilter === 'all' ? 'no alarms kept' : '✔ no active alarms'),
              }),
            ),
          ]),
    );
  // A row rebuilt or moved while it held the focus (its button pressed, the alarm acknowledged or
  // cleared meanwhile) gives it back to the same alarm's cell, or to the row that took its place.
  placeAlarmStop(hadFocus && !body.contains(document.activeElement));
  const open = state.alarms.list.filter((a) => a.state === 'raised');
  const badge = $('alarm-count');
  badge.hidden = state.alarms.error !== null;
  const worst = open.reduce((w, a) => Math.min(w, SEVERITY_RANK[a.severity] ?? 9), 9);
  badge.className = `badge ${open.length === 0 ? 'ok' : worst <= 1 ? 'bad' : 'warn'}`;
  badge.textContent =
    open.length === 0
      ? '✔ no unacknowledged alarms'
      : `${open.length} unacknowledged alarm${open.length > 1 ? 's' : ''}`;
}
