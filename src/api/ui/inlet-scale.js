// The fixed inlet temperature scale (ASHRAE A1) and its legend: a rack's colour, mark and words
// are judged on the value as shown (0.1 °C), and every colour has its mark and words beside it.
import { $, el } from './dom.js';
import { fmt } from './format.js';

/**
 * The fixed inlet scale (ASHRAE A1): blue below 18 °C, green→yellow up to the recommended 27 °C,
 * orange up to the allowable 32 °C, red→dark red to 35 °C and above. The bands jump at 27 and 32
 * so a limit crossed shows as a change of colour, and each has its mark (RACK_MARK) beside it.
 */
const SCALE_LO_C = 18;

const SCALE_HI_C = 35;

const BANDS = [
  { from: 18, to: 27, c0: [67, 160, 71], c1: [253, 216, 53] },
  { from: 27, to: 32, c0: [251, 140, 0], c1: [230, 81, 0] },
  { from: 32, to: 35, c0: [211, 47, 47], c1: [127, 0, 0] },
];

const COLD = 'rgb(100, 181, 246)';

export const NO_DATA = '#cfd8dc';

export function inletColour(c) {
  if (typeof c !== 'number') return NO_DATA;
  if (c < SCALE_LO_C) return COLD;
  const b = BANDS.find((x) => c < x.to) ?? BANDS[BANDS.length - 1];
  const k = Math.min(1, (c - b.from) / (b.to - b.from));
  const ch = (i) => Math.round(b.c0[i] + k * (b.c1[i] - b.c0[i]));
  return `rgb(${ch(0)}, ${ch(1)}, ${ch(2)})`;
}

/** WCAG relative luminance of an `rgb(r, g, b)` or `#rrggbb` colour. */
function luminance(colour) {
  const hex = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(colour);
  const rgb = hex
    ? hex.slice(1).map((h) => Number.parseInt(h, 16))
    : (colour.match(/\d+/g) ?? []).map(Number);
  const lin = (v) => (v / 255 <= 0.04045 ? v / 255 / 12.92 : ((v / 255 + 0.055) / 1.055) ** 2.4);
  const [r, g, b] = rgb.map(lin);
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/**
 * White text where it reads better than black on `fill`: the scale runs from light yellow to dark
 * red, and a fixed text colour falls under 4.5:1 somewhere on it.
 */
export const lightTextOn = (fill) => {
  const l = luminance(fill);
  return 1.05 / (l + 0.05) > (l + 0.05) / 0.05;
};

/**
 * An inlet as the page shows it (0.1 °C): its level and colour are judged on that, so a rack at
 * 27.04 °C reads "27.0" in range, never "27.0 ▲ above the 27 °C limit".
 */
export const shownC = (c) => (typeof c === 'number' && Number.isFinite(c) ? Number(c.toFixed(1)) : c);

/** A rack's level against the scale, with the mark and words shown beside its colour. */
export function inletLevel(raw) {
  const c = shownC(raw);
  if (typeof c !== 'number') return { level: 'none', mark: '?', words: 'no data' };
  if (c > 32) return { level: 'crit', mark: '✖', words: 'above the 32 °C allowable limit' };
  if (c > 27) return { level: 'warn', mark: '▲', words: 'above the 27 °C recommended limit' };
  if (c < 18) return { level: 'cold', mark: '▼', words: 'below the 18 °C recommended range' };
  return { level: 'ok', mark: '', words: 'in the recommended range' };
}

/**
 * A hottest good inlet in words, one way everywhere (rack panel, group table): "28.4 °C ▲ (above the
 * 27 °C recommended limit)", or "no data" alone — the level's words already say it, never twice.
 */
export function inletWords(c) {
  const lv = inletLevel(c);
  if (lv.level === 'none') return lv.words;
  return `${fmt(c)} °C${lv.mark ? ` ${lv.mark}` : ''} (${lv.words})`;
}

/** The colour scale as a labelled bar (fixed: it never rescales to the data) and the marks' meaning. */
export function drawLegend() {
  const W = 420;
  const x = (c) => 10 + ((c - 16) / (SCALE_HI_C + 1 - 16)) * (W - 20);
  const bar = el('svg:svg', {
    viewBox: `0 0 ${W} 54`,
    class: 'scale',
    role: 'img',
    'aria-label':
      'inlet colour scale: below 18 °C blue, 18 to 27 °C green to yellow, 27 to 32 °C orange, above 32 °C red, grey no data',
  });
  for (let c = 16; c < SCALE_HI_C + 1; c += 0.25)
    bar.append(
      el('svg:rect', { x: x(c), y: 4, width: x(c + 0.25) - x(c) + 0.3, height: 14, fill: inletColour(c) }),
    );
  for (const c of [18, 21, 24, 27, 30, 32, 35]) {
    const limit = c === 27 || c === 32;
    bar.append(
      el('svg:line', {
        x1: x(c),
        x2: x(c),
        y1: 2,
        y2: limit ? 24 : 21,
        class: limit ? 'tick limit' : 'tick',
      }),
      el('svg:text', { x: x(c), y: 35, class: limit ? 'tick-label limit' : 'tick-label', text: `${c}` }),
    );
  }
  bar.append(el('svg:text', { x: x(27), y: 48, class: 'tick-note', text: 'recommended ▲' }));
  bar.append(el('svg:text', { x: x(32) + 28, y: 48, class: 'tick-note', text: 'allowable ✖' }));
  bar.append(el('svg:text', { x: W - 4, y: 35, class: 'tick-unit', text: '°C' }));
  $('floor-legend').replaceChildren(
    el('div', { class: 'legend-row' }, el('b', { text: 'Rack inlet (hottest good sensor), °C:' }), bar),
    el('div', {
      class: 'legend-row',
      text: 'Marks beside the value: ▲ above 27 °C · ✖ above 32 °C · ▼ below 18 °C · ? no trusted inlet reading (grey) · ◐ some inlet sensors untrusted.',
    }),
    el('div', {
      class: 'legend-row',
      text: 'Units: ● driven · ▲ fallback or link degraded · ✖ tripped, write error, link down or refusing reads · ▽ on local control · ○ not driven.',
    }),
    el('div', { id: 'floor-source', class: 'legend-row muted' }),
  );
}
