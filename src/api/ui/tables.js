// The control-group and air-handler tables. A poll rewrites only the cells whose text changed
// (syncRows); past UNIT_ROWS_MAX units those that need someone are listed first, the rest counted.

import { isObject, num } from './api.js';
import { $, el, shown } from './dom.js';
import { ago, fmt } from './format.js';
import { inletLevel } from './inlet-scale.js';
import { liveOf } from './members.js';
import { floorItems, index, state, WINDOW_MS } from './state.js';
import { unitState } from './unit-state.js';

/** What the group's handover cell says: its leader cannot drive it, or who handed it on lately and why. */
function handoverOf(g) {
  const problem = state.views.get(g.id)?.view?.problem ?? (g.state === 'leader' ? g.problem : null);
  if (problem) return { level: 'bad', text: `${g.leader} cannot drive it: ${problem}` };
  const op = state.views.get(g.id)?.view?.operatorProblem;
  if (op)
    return {
      level: 'bad',
      text: `stored operator state invalid (${op.problem}): ${op.keptLastValid ? 'the last valid one is in force' : 'group paused until it is fixed'}`,
    };
  const h = state.handOns.get(g.id);
  if (h && Date.now() - h.atMs < WINDOW_MS)
    return { level: 'warn', text: `handed on by ${h.node} ${ago(h.atMs)}: ${h.reason}` };
  return null;
}

/** Every unit of the site with what its group's leader holds for it. */
function unitRows() {
  const rows = new Map();
  for (const a of state.site?.airHandlers ?? []) rows.set(a.id, { ahu: a.id, group: a.group });
  for (const [group, v] of state.views) {
    if (!v.view?.driving) continue;
    const leader = index.groups.get(group)?.leader ?? null;
    for (const u of v.view.units) {
      const row = rows.get(u.ahu) ?? { ahu: u.ahu, group };
      Object.assign(row, {
        group,
        drivenBy: leader,
        held: u.held,
        lastWriteOkMs: u.lastWriteOkMs,
        error: u.lastError,
      });
      rows.set(u.ahu, row);
    }
  }
  return rows;
}

/** " — why" from a live group's `reasons` (strings only, at most three: a table cell). */
function reasonsText(reasons) {
  if (!Array.isArray(reasons)) return '';
  const words = reasons.filter((r) => typeof r === 'string' && r !== '').slice(0, 3);
  return words.length ? ` — ${words.join('; ')}` : '';
}

/** The operators' pause and overrides of a group, in words beside "driving" (its leader's view). */
function operatorText(op) {
  if (!isObject(op)) return '';
  const words = [];
  if (op.paused === true)
    words.push(`⏸ paused${typeof op.reason === 'string' && op.reason ? ` (${op.reason})` : ''}`);
  const units = isObject(op.overrides) ? Object.keys(op.overrides) : [];
  if (units.length) words.push(`override on ${units.slice(0, 4).join(', ')}${units.length > 4 ? ' …' : ''}`);
  return words.length ? ` — ${words.join('; ')}` : '';
}

/**
 * Brings a table body to `rows` ({key, cells: [{text, cls}]}) touching only what changed: a row
 * whose key is drawn already keeps its element, and only the cells whose text or class differ are
 * written; the rows are re-placed only when their order changed. `keyAttr` names the row's key.
 */
function syncRows(body, keyAttr, rows, tail = null) {
  const kept = new Map();
  for (const tr of body.rows) {
    const k = tr.getAttribute(keyAttr);
    if (k !== null) kept.set(k, tr);
  }
  const out = rows.map(({ key, cells }) => {
    let tr = kept.get(key);
    if (!tr || tr.cells.length !== cells.length) {
      tr = el('tr', { [keyAttr]: key }, ...cells.map(() => el('td')));
    }
    cells.forEach((c, i) => {
      const td = tr.cells[i];
      const text = shown(c.text);
      if (td.textContent !== text) td.textContent = text;
      const cls = c.cls ?? '';
      if ((td.getAttribute('class') ?? '') !== cls) {
        if (cls) td.setAttribute('class', cls);
        else td.removeAttribute('class');
      }
    });
    return tr;
  });
  if (tail) out.push(tail);
  const same = out.length === body.rows.length && out.every((tr, i) => body.rows[i] === tr);
  if (same) return;
  const oldTail = body.querySelector('tr.more');
  if (tail && oldTail && oldTail.textContent === tail.textContent && out.length === body.rows.length) {
    // Only the note changed its element: keep the drawn one.
    out[out.length - 1] = oldTail;
    if (out.every((tr, i) => body.rows[i] === tr)) return;
  }
  body.replaceChildren(...out);
}

export function renderGroups() {
  const body = $('groups').tBodies[0];
  const { found } = floorItems;
  const groups = (state.cluster?.groups ?? []).filter((g) => !found || found.groups.has(g.id));
  syncRows(
    body,
    'data-group',
    groups.map((g) => {
      const v = state.views.get(g.id);
      const s = liveOf(g.id)?.groups?.[g.id];
      const h = handoverOf(g);
      const lv = inletLevel(s?.inletMaxC);
      return {
        key: g.id,
        cells: [
          { text: g.id },
          { cls: g.leader ? '' : 'bad', text: g.leader ?? '✖ none' },
          { text: g.epoch ?? '–' },
          { text: g.state },
          {
            cls: v?.view ? (v.view.driving ? '' : 'bad') : '',
            text: v?.view
              ? `${v.view.driving ? 'yes' : '✖ no'}${operatorText(v.view.operator)}`
              : (v?.error ?? '…'),
          },
          {
            cls: `handover ${h?.level ?? ''}`,
            text: h ? `${h.level === 'bad' ? '✖' : '▲'} ${h.text}` : '–',
          },
          {
            cls: s?.verdict === 'blind' ? 'bad' : s?.verdict === 'degraded' ? 'warn' : '',
            // Why it is not ok, in the node's words (the racks nobody watches, named): not colour only.
            text: s
              ? `${s.verdict === 'ok' ? '' : s.verdict === 'blind' ? '✖ ' : '◐ '}${s.verdict} (${num(s.coverage) === null ? '–' : Math.round(s.coverage * 100)} %)${reasonsText(s.reasons)}`
              : 'no data',
          },
          {
            cls: lv.level === 'crit' ? 'bad' : lv.level === 'warn' ? 'warn' : '',
            text: s?.inletMaxC == null ? 'no data' : `${fmt(s.inletMaxC)} °C${lv.mark ? ` ${lv.mark}` : ''}`,
          },
        ],
      };
    }),
  );
}

/**
 * Rows the air-handler table lists at most. A full site has 1 000 units: all of them in the page,
 * rewritten every poll, is what no one reads; the find box narrows the list, and past this bound
 * the units that need someone (not driven, in error, on fallback) come first.
 */
const UNIT_ROWS_MAX = 200;

const UNIT_STATE_RANK = {
  tripped: 0,
  error: 0,
  'link-down': 0,
  refusing: 0,
  unknown: 1,
  'not-driven': 1,
  fallback: 2,
  'link-degraded': 2,
  local: 3,
  none: 3,
  driven: 4,
};

export function renderUnits() {
  const body = $('units').tBodies[0];
  const { found } = floorItems;
  let units = [...unitRows().values()]
    .filter((u) => !found || found.ahus.has(u.ahu))
    .map((u) => ({ u, s: unitState(u.ahu) }));
  const total = units.length;
  if (total > UNIT_ROWS_MAX)
    units = units
      .map((x, i) => ({ ...x, i }))
      .sort((a, b) => (UNIT_STATE_RANK[a.s.key] ?? 1) - (UNIT_STATE_RANK[b.s.key] ?? 1) || a.i - b.i)
      .slice(0, UNIT_ROWS_MAX);
  const more = total - units.length;
  syncRows(
    body,
    'data-ahu',
    units.map(({ u, s }) => {
      const live = u.group ? liveOf(u.group)?.units?.[u.ahu] : undefined;
      const link = live?.link;
      const refused = live?.refusal
        ? `, refuses every read: Modbus exception ${live.refusal.code} (${live.refusal.name})`
        : '';
      return {
        key: u.ahu,
        cells: [
          { text: u.ahu },
          { text: u.group ?? '–' },
          { cls: u.drivenBy ? '' : 'warn', text: u.drivenBy ?? 'nobody' },
          {
            cls: `unit-state ${s.key === 'driven' ? 'ok' : ['tripped', 'error', 'link-down', 'refusing'].includes(s.key) ? 'bad' : 'warn'}`,
            text: `${s.mark} ${s.text}`,
          },
          { cls: 'held-fan', text: fmt(u.held?.fanPct) },
          { cls: 'held-setpoint', text: fmt(u.held?.supplySetpointC) },
          { cls: u.error ? 'bad' : '', text: u.error ? `✖ error: ${u.error}` : ago(u.lastWriteOkMs) },
          {
            cls: refused ? 'bad' : link === 'up' ? 'ok' : link ? 'warn' : '',
            text: link
              ? `${refused ? '✖' : link === 'up' ? '●' : link === 'down' ? '✖' : '▲'} ${link}${refused}`
              : 'no data',
          },
        ],
      };
    }),
    more > 0
      ? el(
          'tr',
          { class: 'more' },
          el('td', {
            colspan: 8,
            class: 'warn',
            text: `${more} more units not listed (the ${units.length} above: those that need someone first); type in “find” above the map to list others`,
          }),
        )
      : null,
  );
}
