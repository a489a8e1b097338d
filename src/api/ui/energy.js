// Fan and cooling energy summed over every member (each integrated only the groups it drove),
// against the local-control baseline. A figure that is no energy is not counted, and the member is named.

import { getJson, isObject, num } from './api.js';
import { ticks } from './chart.js';
import { $, el, setText, shown } from './dom.js';
import { state } from './state.js';

/** The energy report changes by the minute: read it this often once it holds a measured hour. */
const ENERGY_EVERY_MS = 15_000;

/** Until the report holds a measured hour (a page opened as the nodes start), read it this often. */
const ENERGY_EMPTY_EVERY_MS = 2_000;

const FIGURES = ['fanKwh', 'estimatedFanKwh', 'baselineFanKwh', 'coolingKwh', 'unitSeconds'];

/**
 * An hour's or a day's kWh (or unit-seconds) as a member reports it, or null: energy is never
 * negative, and 1e9 is beyond any hall's day, so a figure outside that is a fault and not counted
 * (summed as given, it would draw a bar below the axis or overflow the sum to Infinity).
 */
const energyFigure = (x) => (num(x) !== null && x >= 0 && x < 1e9 ? x : null);

/** Every member's energy report, summed per hour and day: each integrated only the groups it drove. */
export async function pollEnergy() {
  const measured = state.energy?.hours?.some((h) => h.unitSeconds > 0 && h.baselineFanKwh > 0) ?? false;
  if (Date.now() - state.energyAtMs < (measured ? ENERGY_EVERY_MS : ENERGY_EMPTY_EVERY_MS)) return;
  state.energyAtMs = Date.now();
  const members = state.cluster?.members ?? [];
  const bases = members.length
    ? members.map((m) => {
        try {
          const o = new URL(m.apiUrl).origin;
          return { node: m.node, base: o === location.origin ? '' : o };
        } catch {
          return { node: m.node, base: null };
        }
      })
    : [{ node: state.node, base: '' }];
  const answers = await Promise.all(
    bases.map(async ({ node, base }) => {
      if (base === null) return { node, body: null };
      try {
        const r = await getJson(`${base}/api/v1/energy`);
        return { node, body: r.status === 200 && isObject(r.body) ? r.body : null };
      } catch {
        return { node, body: null };
      }
    }),
  );
  /** Members that sent a figure that is no energy: the operator is told their sums are short. */
  const faulty = new Set();
  const sum = (key) => {
    const by = new Map();
    for (const a of answers)
      for (const b of Array.isArray(a.body?.[key]) ? a.body[key] : []) {
        if (num(b?.startMs) === null) continue;
        const cur =
          by.get(b.startMs) ?? Object.fromEntries([['startMs', b.startMs], ...FIGURES.map((f) => [f, 0])]);
        for (const f of FIGURES) {
          const v = energyFigure(b[f]);
          if (v === null && b[f] !== undefined) faulty.add(a.node);
          cur[f] += v ?? 0;
        }
        by.set(b.startMs, cur);
      }
    return [...by.values()].sort((x, y) => x.startMs - y.startMs);
  };
  state.energy = {
    hours: sum('hours'),
    days: sum('days'),
    basis: String(answers.find((a) => a.body)?.body.basis ?? ''),
    missing: answers.filter((a) => !a.body).map((a) => a.node),
    faulty: [...faulty],
  };
}

const saving = (b) => {
  const kwh = b.baselineFanKwh - b.fanKwh;
  return { kwh, pct: b.baselineFanKwh > 0 ? (kwh / b.baselineFanKwh) * 100 : null };
};

const kwh = (x) => x.toFixed(Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : Math.abs(x) >= 1 ? 2 : 3);

function energyRow(label, b) {
  const s = saving(b);
  return el(
    'tr',
    { 'data-start': b.startMs },
    el('td', { text: label }),
    el('td', {
      class: 'num',
      text: kwh(b.fanKwh),
      title:
        b.estimatedFanKwh > 0 ? `${kwh(b.estimatedFanKwh)} kWh of it estimated from fan speed` : undefined,
    }),
    el('td', { class: 'num', text: kwh(b.baselineFanKwh) }),
    el('td', { class: 'num', text: kwh(s.kwh) }),
    el('td', { class: 'num', text: s.pct === null ? '–' : `${s.pct.toFixed(0)} %` }),
    el('td', { class: 'num', text: kwh(b.coolingKwh) }),
  );
}

export function renderEnergy() {
  const e = state.energy;
  if (!e) return;
  const utcDay = (ms) => new Date(ms).toISOString().slice(0, 10);
  const utcHour = (ms) => `${new Date(ms).toISOString().slice(11, 16)} UTC`;
  const today = e.days.find((d) => utcDay(d.startMs) === utcDay(Date.now()));
  const faultyText = e.faulty.length
    ? ` Not counted: figures from ${e.faulty.join(', ')} that are no energy (not a number, negative or beyond any hall).`
    : '';
  if (today) {
    const s = saving(today);
    $('energy-summary').textContent = shown(
      `Today (UTC, ${(today.unitSeconds / 3600).toFixed(1)} unit-hours measured): fans ${kwh(today.fanKwh)} kWh against ${kwh(today.baselineFanKwh)} kWh on local control — ${s.kwh >= 0 ? 'saving' : 'over by'} ${kwh(Math.abs(s.kwh))} kWh${s.pct === null ? '' : ` (${Math.abs(s.pct).toFixed(0)} %)`}; cooling delivered ${kwh(today.coolingKwh)} kWh.` +
        (e.missing.length ? ` Not counted: ${e.missing.join(', ')} did not answer.` : '') +
        faultyText,
    );
  } else
    setText(
      $('energy-summary'),
      `No energy measured yet today: a node counts the units of the groups it drives.${e.missing.length ? ` ${e.missing.join(', ')} did not answer.` : ''}${faultyText}`,
    );
  $('energy-days').tBodies[0].replaceChildren(
    ...e.days
      .slice()
      .reverse()
      .map((d) => energyRow(utcDay(d.startMs), d)),
  );
  $('energy-hours').tBodies[0].replaceChildren(
    ...e.hours
      .slice(-24)
      .reverse()
      .map((h) => energyRow(`${utcDay(h.startMs)} ${utcHour(h.startMs)}`, h)),
  );
  setText($('energy-basis'), e.basis);
  $('energy-chart').replaceChildren(energyChart(e.hours));
}

/** The last 24 hours: per hour, the fans' kWh beside the baseline's, on a labelled kWh axis. */
function energyChart(hours) {
  const W = 560;
  const H = 220;
  const m = { l: 50, r: 10, t: 12, b: 30 };
  const end = Math.floor(Date.now() / 3_600_000) * 3_600_000;
  const slots = Array.from({ length: 24 }, (_, i) => end - (23 - i) * 3_600_000);
  const by = new Map(hours.map((h) => [h.startMs, h]));
  const top = Math.max(0.01, ...hours.map((h) => Math.max(h.baselineFanKwh, h.fanKwh)));
  const yt = ticks(0, top, 4);
  const yHi = Math.max(top, yt[yt.length - 1] ?? top);
  const bw = (W - m.l - m.r) / 24;
  const py = (v) => m.t + (1 - v / yHi) * (H - m.t - m.b);
  const svg = el('svg:svg', {
    viewBox: `0 0 ${W} ${H}`,
    class: 'chart energy',
    role: 'img',
    'aria-label': 'fan energy per hour, kWh, against the local-control baseline, last 24 hours',
  });
  for (const v of yt)
    svg.append(
      el('svg:line', { class: 'grid', x1: m.l, x2: W - m.r, y1: py(v), y2: py(v) }),
      el('svg:text', { class: 'y-label', x: m.l - 5, y: py(v) + 4, text: kwh(v) }),
    );
  svg.append(
    el('svg:text', {
      class: 'axis-title',
      x: 12,
      y: H / 2,
      transform: `rotate(-90 12 ${H / 2})`,
      text: 'kWh per hour',
    }),
  );
  slots.forEach((s, i) => {
    const x = m.l + i * bw;
    const h = by.get(s);
    if (h) {
      svg.append(
        el('svg:rect', {
          class: 'bar baseline',
          x: x + 1,
          y: py(h.baselineFanKwh),
          width: bw / 2 - 1,
          height: py(0) - py(h.baselineFanKwh),
        }),
        el('svg:rect', {
          class: 'bar fan',
          x: x + bw / 2,
          y: py(h.fanKwh),
          width: bw / 2 - 1,
          height: py(0) - py(h.fanKwh),
        }),
      );
    }
    if (i % 3 === 0)
      svg.append(
        el('svg:text', {
          class: 'x-label',
          x: x + bw / 2,
          y: H - m.b + 16,
          text: new Date(s).toISOString().slice(11, 16),
        }),
      );
  });
  svg.append(
    el('svg:line', { class: 'axis', x1: m.l, x2: m.l, y1: m.t, y2: H - m.b }),
    el('svg:line', { class: 'axis', x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }),
  );
  return el(
    'figure',
    { class: 'energy-figure' },
    el('figcaption', { text: 'Fan energy per hour (UTC), last 24 h' }),
    svg,
    el(
      'ul',
      { class: 'chart-key' },
      el(
        'li',
        {},
        el('span', { class: 'swatch baseline', 'aria-hidden': 'true' }),
        'left bar: local-control baseline',
      ),
      el(
        'li',
        {},
        el('span', { class: 'swatch fan', 'aria-hidden': 'true' }),
        'right bar: fans under coolctl',
      ),
    ),
  );
}
