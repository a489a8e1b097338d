// The alarm table from the keyboard: a WAI-ARIA grid with one Tab stop, kept by alarm id and
// column across redraws (alarms.js redraws, this module only moves the stop).
import { $ } from './dom.js';

/**
 * The alarm table is a WAI-ARIA grid (APG "data grid"): the whole table is one Tab stop, so the
 * 200 rows' buttons do not stand between the keyboard and the rest of the page. The stop is one
 * cell, or the button in it (tabindex 0; every other cell and button -1); the arrow keys, Home/End
 * (a row's ends), Ctrl+Home/End (first/last row) and Page Up/Down (ten rows) move it. It is kept
 * by alarm id and column across redraws; an alarm gone from the list leaves it on the row that
 * took its place. `col` is the column asked for: a row of one cell ("no active alarms") does not
 * forget it.
 */
const alarmStop = { key: null, row: 0, col: 0 };

const ALARM_PAGE_ROWS = 10;

const rowKey = (tr) => tr.getAttribute('data-alarm') ?? `.${tr.className}`;

/** A cell's focusable: its button, else the cell. */
const stopIn = (td) => td.querySelector('button') ?? td;

/** The cell the stop is on now (row found by alarm, else by place; column clamped to the row). */
function alarmStopCell() {
  const rows = $('alarms').tBodies[0].rows;
  if (rows.length === 0) return null;
  const byKey = [...rows].find((tr) => rowKey(tr) === alarmStop.key);
  const tr = byKey ?? rows[Math.min(alarmStop.row, rows.length - 1)];
  return tr.cells[Math.min(alarmStop.col, tr.cells.length - 1)] ?? null;
}

/** Puts the grid's one Tab stop where `alarmStop` says, and the focus there when `focus`. */
export function placeAlarmStop(focus) {
  const td = alarmStopCell();
  if (!td) return;
  const stop = stopIn(td);
  for (const e of $('alarms').tBodies[0].querySelectorAll('[tabindex="0"]')) if (e !== stop) e.tabIndex = -1;
  stop.tabIndex = 0;
  alarmStop.key = rowKey(td.parentElement);
  alarmStop.row = td.parentElement.sectionRowIndex;
  if (focus) stop.focus();
}

$('alarms').tBodies[0].addEventListener('keydown', (ev) => {
  const td = ev.target.closest('td');
  if (!td || ev.altKey || ev.metaKey) return;
  const rows = $('alarms').tBodies[0].rows;
  const r = td.parentElement.sectionRowIndex;
  const c = td.cellIndex;
  const last = rows.length - 1;
  const move = {
    ArrowDown: [Math.min(last, r + 1), alarmStop.col],
    ArrowUp: [Math.max(0, r - 1), alarmStop.col],
    ArrowRight: [r, c + 1],
    ArrowLeft: [r, Math.max(0, c - 1)],
    PageDown: [Math.min(last, r + ALARM_PAGE_ROWS), alarmStop.col],
    PageUp: [Math.max(0, r - ALARM_PAGE_ROWS), alarmStop.col],
    Home: ev.ctrlKey ? [0, 0] : [r, 0],
    End: ev.ctrlKey ? [last, Number.MAX_SAFE_INTEGER] : [r, Number.MAX_SAFE_INTEGER],
  }[ev.key];
  if (!move || (ev.ctrlKey && ev.key !== 'Home' && ev.key !== 'End')) return;
  ev.preventDefault();
  const [row, col] = move;
  alarmStop.key = rowKey(rows[row]);
  alarmStop.row = row;
  // Right past a row's last cell stays there (no wrap, as the APG grid).
  alarmStop.col = Math.min(col, rows[row].cells.length - 1);
  if (ev.key === 'ArrowUp' || ev.key === 'ArrowDown' || ev.key.startsWith('Page')) alarmStop.col = col;
  placeAlarmStop(true);
});

// A click (or any focus) on a cell or button makes it the stop: Tab out and back returns there.
$('alarms').tBodies[0].addEventListener('focusin', (ev) => {
  const td = ev.target.closest('td');
  if (!td) return;
  alarmStop.key = rowKey(td.parentElement);
  alarmStop.row = td.parentElement.sectionRowIndex;
  alarmStop.col = td.cellIndex;
  placeAlarmStop(false);
});
