// Line charts drawn as SVG: labelled axes (values with their unit, local time), gaps where there
// is no data, min–max bands, dashed reference lines. No library: text only, as everywhere.

import { num } from './api.js';
import { el } from './dom.js';
import { hhmm } from './format.js';

/** Round tick steps for an axis from lo to hi, about `n` of them. */
export function ticks(lo, hi, n) {
  const raw = (hi - lo) / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 && out.length < 50; v += step)
    out.push(+v.toFixed(6));
  return out;
}

/**
 * One chart: labelled axes (values with their unit, local time), lines per series (gaps where no
 * data), a min–max band for 24-hour series, dashed reference lines (the inlet limits).
 */
export function chart({ label, unit, x0, x1, xStep, yLo, yHi, series, refs = [] }) {
  const W = 640;
  const H = 220;
  const m = { l: 46, r: 12, t: 12, b: 30 };
  const px = (t) => m.l + ((t - x0) / (x1 - x0)) * (W - m.l - m.r);
  const py = (v) => m.t + (1 - (Math.min(yHi, Math.max(yLo, v)) - yLo) / (yHi - yLo)) * (H - m.t - m.b);
  const svg = el('svg:svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': label });
  for (const v of ticks(yLo, yHi, 5)) {
    svg.append(
      el('svg:line', { class: 'grid', x1: m.l, x2: W - m.r, y1: py(v), y2: py(v) }),
      el('svg:text', { class: 'y-label', x: m.l - 5, y: py(v) + 4, text: `${v}` }),
    );
  }
  svg.append(
    el('svg:text', {
      class: 'axis-title',
      x: 12,
      y: m.t + (H - m.t - m.b) / 2,
      transform: `rotate(-90 12 ${m.t + (H - m.t - m.b) / 2})`,
      text: unit,
    }),
  );
  for (let t = Math.ceil(x0 / xStep) * xStep; t <= x1; t += xStep) {
    // Whole steps of UTC time, labelled in the browser's local time.
    svg.append(
      el('svg:line', { class: 'grid', x1: px(t), x2: px(t), y1: m.t, y2: H - m.b }),
      el('svg:text', { class: 'x-label', x: px(t), y: H - m.b + 16, text: hhmm(t) }),
    );
  }
  svg.append(
    el('svg:line', { class: 'axis', x1: m.l, x2: m.l, y1: m.t, y2: H - m.b }),
    el('svg:line', { class: 'axis', x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }),
  );
  for (const r of refs) {
    if (r.v < yLo || r.v > yHi) continue;
    svg.append(
      el('svg:line', { class: 'ref', x1: m.l, x2: W - m.r, y1: py(r.v), y2: py(r.v) }),
      el('svg:text', { class: 'ref-label', x: W - m.r - 4, y: py(r.v) - 3, text: r.text }),
    );
  }
  for (const s of series) {
    if (s.lo && s.hi) {
      // The band: each run of steps with data is one closed polygon, max forward then min back.
      let run = [];
      const flush = () => {
        if (run.length > 1) {
          const pts = [
            ...run.map((i) => `${px(s.t[i])},${py(s.hi[i])}`),
            ...run.reverse().map((i) => `${px(s.t[i])},${py(s.lo[i])}`),
          ];
          svg.append(el('svg:polygon', { class: `band ${s.cls}`, points: pts.join(' ') }));
        }
        run = [];
      };
      for (let i = 0; i < s.t.length; i++) {
        if (num(s.t[i]) !== null && num(s.lo[i]) !== null && num(s.hi[i]) !== null) run.push(i);
        else flush();
      }
      flush();
    }
    let d = '';
    let pen = false;
    s.t.forEach((t, i) => {
      const v = s.v[i];
      if (num(v) === null || num(t) === null || t < x0) {
        pen = false;
        return;
      }
      d += `${pen ? 'L' : 'M'}${px(t).toFixed(1)},${py(v).toFixed(1)} `;
      pen = true;
    });
    svg.append(el('svg:path', { class: `line ${s.cls}`, d: d.trim(), 'data-series': s.name }));
    // A step with no neighbour draws no line: a dot shows it (a fresh unit's first 15 minutes).
    const has = (i) => num(s.v[i]) !== null && num(s.t[i]) !== null && s.t[i] >= x0;
    for (let i = 0; i < s.t.length; i++)
      if (has(i) && !has(i - 1) && !has(i + 1))
        svg.append(el('svg:circle', { class: `dot ${s.cls}`, cx: px(s.t[i]), cy: py(s.v[i]), r: 3 }));
  }
  return svg;
}
