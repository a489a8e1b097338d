// Trends of a group or a unit, from the group's leader: the last 10 minutes each poll, the last
// 24 hours once a minute. An answer for a choice no longer shown is dropped; one that fails is said.

import { getJson, num, refusedText } from './api.js';
import { chart } from './chart.js';
import { $, el, setOptions, setText } from './dom.js';
import { fmt } from './format.js';
import { leaderBase, nodeAt, sourceOf } from './members.js';
import { index, state, WINDOW_MS } from './state.js';

const DAY_MS = 24 * 3_600_000;

/** The 24-hour trend changes by the minute: read it this often. */
const DAY_TREND_EVERY_MS = 60_000;

function trendGroupOf(subject) {
  if (!subject) return null;
  const [kind, id] = [subject.slice(0, subject.indexOf(':')), subject.slice(subject.indexOf(':') + 1)];
  return kind === 'group' ? id : (index.airHandlers.get(id)?.group ?? null);
}

export function setTrendSubject(subject) {
  if (state.trend.subject === subject) return;
  state.trend.subject = subject;
  $('trend-subject').value = subject;
  state.trend.body = null;
  state.trend.readAtMs = 0;
  pollTrend().then(renderTrends);
}

function setTrendRange(range) {
  state.trend.range = range;
  $('trend-recent').setAttribute('aria-pressed', String(range === 'recent'));
  $('trend-day').setAttribute('aria-pressed', String(range === 'day'));
  state.trend.body = null;
  state.trend.readAtMs = 0;
  pollTrend().then(renderTrends);
}

$('trend-recent').addEventListener('click', () => setTrendRange('recent'));

$('trend-day').addEventListener('click', () => setTrendRange('day'));

$('trend-subject').addEventListener('change', () => setTrendSubject($('trend-subject').value));

/** The chosen group's trends (and its units') from the group's leader: it reads the units, so it has their supply air. */
export async function pollTrend() {
  const t = state.trend;
  if (!t.subject) {
    const first = state.site?.groups[0]?.id;
    if (!first) return;
    t.subject = `group:${first}`;
  }
  const group = trendGroupOf(t.subject);
  if (!group) return;
  const from = sourceOf(group);
  const key = `${from}|${group}|${t.range}`;
  if (t.range === 'day' && t.key === key && Date.now() - t.readAtMs < DAY_TREND_EVERY_MS) return;
  try {
    const r = await getJson(`${from}/api/v1/trends?range=${t.range}&group=${encodeURIComponent(group)}`);
    // The operator chose something else meanwhile: this answer is for a chart no longer shown.
    if (`${sourceOf(trendGroupOf(t.subject))}|${trendGroupOf(t.subject)}|${t.range}` !== key) return;
    if (r.status !== 200 || !Array.isArray(r.body?.groups) || !Array.isArray(r.body?.units))
      throw new Error(refusedText(r));
    Object.assign(t, { body: r.body, from, error: null, readAtMs: Date.now(), key });
  } catch (err) {
    Object.assign(t, { error: `trends from ${nodeAt(from)}: ${err.message}`, key });
  }
}

/** The widest temperature axis a trend draws, °C: beyond it a reading is no air a hall has. */
const TREND_LO_C = -40;

const TREND_HI_C = 120;

function lastOf(xs) {
  for (let i = xs.length - 1; i >= 0; i--) if (typeof xs[i] === 'number') return xs[i];
  return null;
}

export function renderTrendChoices() {
  const opts = [];
  for (const g of state.site?.groups ?? []) {
    opts.push([`group:${g.id}`, `group ${g.id}`]);
    for (const a of g.airHandlers) opts.push([`unit:${a}`, `  unit ${a} (${g.id})`]);
  }
  setOptions($('trend-subject'), opts);
  if (state.trend.subject) $('trend-subject').value = state.trend.subject;
}

export function renderTrends() {
  const t = state.trend;
  const host = $('trends');
  const body = t.body;
  if (!t.subject || !body) {
    host.replaceChildren(el('p', { class: t.error ? 'bad' : 'muted', text: t.error ?? 'reading…' }));
    return;
  }
  const day = t.range === 'day';
  const x1 = Date.now();
  const x0 = x1 - (day ? DAY_MS : WINDOW_MS);
  const xStep = day ? 3 * 3_600_000 : 2 * 60_000;
  const [kind, id] = t.subject.split(':');
  const g = body.groups[0];
  const u = kind === 'unit' ? body.units.find((x) => x.ahu === id) : null;
  if (!g || (kind === 'unit' && !u)) {
    host.replaceChildren(el('p', { class: 'muted', text: `no trend of ${id} at ${nodeAt(t.from)}` }));
    return;
  }
  const band = (s, k) => (day && s.min ? { lo: s.min[k], hi: s.max[k] } : {});
  const tempSeries = [
    {
      name: 'inletMaxC',
      cls: 'inlet',
      label: 'hottest inlet',
      t: g.t,
      v: g.inletMaxC,
      ...(kind === 'group' ? band(g, 'inletMaxC') : {}),
    },
  ];
  if (u)
    tempSeries.push(
      {
        name: 'supplyC',
        cls: 'supply',
        label: 'supply air (measured)',
        t: u.t,
        v: u.supplyC,
        ...band(u, 'supplyC'),
      },
      {
        name: 'supplySetpointC',
        cls: 'setpoint',
        label: 'supply setpoint (told)',
        t: u.t,
        v: u.supplySetpointC,
      },
    );
  const fan = u
    ? { name: 'fanPct', cls: 'fan', label: 'fan % (told)', t: u.t, v: u.fanPct, ...band(u, 'fanPct') }
    : {
        name: 'fanPct',
        cls: 'fan',
        label: 'mean fan % of its units (told)',
        t: g.t,
        v: g.fanPct,
        ...band(g, 'fanPct'),
      };
  // The axis takes in every plausible reading, no more: one absurd figure (a sensor's garbage, a
  // peer's bug) is drawn at the axis' edge instead of squashing the rest into a flat line.
  let yLo = 15;
  let yHi = 35;
  for (const s of tempSeries)
    for (const xs of [s.v, s.hi ?? [], s.lo ?? []])
      for (const v of xs)
        if (num(v) !== null) {
          yLo = Math.min(yLo, Math.max(TREND_LO_C, v));
          yHi = Math.max(yHi, Math.min(TREND_HI_C, v));
        }
  yLo = Math.floor(yLo / 5) * 5;
  yHi = Math.ceil(yHi / 5) * 5;
  const what = kind === 'unit' ? `unit ${id} (group ${g.group})` : `group ${id}`;
  const stepText = (ms) =>
    num(ms) === null || ms <= 0
      ? 'step not stated'
      : ms >= 60_000
        ? `${ms / 60_000}-min means, band min–max`
        : `every ${ms / 1000} s`;
  const key = (series) =>
    el(
      'ul',
      { class: 'chart-key' },
      ...series.map((s) =>
        el(
          'li',
          {},
          el('span', { class: `swatch ${s.cls}`, 'aria-hidden': 'true' }),
          `${s.label}: ${fmt(lastOf(s.v))}`,
        ),
      ),
    );
  host.replaceChildren(
    el(
      'figure',
      { class: 'trend', 'data-subject': t.subject, 'data-chart': 'temperature' },
      el('figcaption', { text: `${what}: temperature, °C — last ${day ? '24 h' : '10 min'}` }),
      chart({
        label: `${what} temperatures, °C, last ${day ? '24 hours' : '10 minutes'}`,
        unit: '°C',
        x0,
        x1,
        xStep,
        yLo,
        yHi,
        series: tempSeries,
        refs: [
          { v: 27, text: '27 °C recommended' },
          { v: 32, text: '32 °C allowable' },
        ],
      }),
      key(tempSeries),
    ),
    el(
      'figure',
      { class: 'trend', 'data-subject': t.subject, 'data-chart': 'fan' },
      el('figcaption', { text: `${what}: fan speed, % — last ${day ? '24 h' : '10 min'}` }),
      chart({
        label: `${what} fan speed, %, last ${day ? '24 hours' : '10 minutes'}`,
        unit: '%',
        x0,
        x1,
        xStep,
        yLo: 0,
        yHi: 100,
        series: [fan],
      }),
      key([fan]),
    ),
  );
  const kept = num(body.memoryBytes);
  setText(
    $('trend-source'),
    `from ${nodeAt(t.from)} (the group’s ${t.from === '' && leaderBase(g.group) === null ? 'node: no leader' : 'leader'}); group ${stepText(body.periodMs)}${u ? `, unit ${stepText(u.stepMs)}` : ''}${kept === null ? '' : `; ${(kept / 1024).toFixed(0)} KiB of trends kept there`}${t.error ? ` — last read failed: ${t.error}` : ''}`,
  );
}
