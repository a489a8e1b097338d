// Figures and times as the page shows them: "–" where there is none, never NaN or a wrong
// figure; times relative to now or in the browser's local time.
import { num } from './api.js';

/** A figure as shown: "–" when there is none, "out of range" for one no sensor or unit gives. */
export const fmt = (x, digits = 1) =>
  typeof x !== 'number' || !Number.isFinite(x)
    ? '–'
    : Math.abs(x) >= 1e6
      ? 'out of range'
      : x.toFixed(digits);

export const ago = (ms) =>
  num(ms) && ms > 0 ? `${Math.max(0, Math.round((Date.now() - ms) / 1000))} s ago` : 'never';

export const agoIso = (iso) => {
  const ms = Date.parse(iso);
  if (!Number.isFinite(ms)) return '–';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 120
    ? `${s} s ago`
    : s < 7200
      ? `${Math.round(s / 60)} min ago`
      : `${Math.round(s / 3600)} h ago`;
};

export const hhmm = (ms) => {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
};
