// Labels on the floor map measured without a layout per label: each character's advance is
// measured once per drawing, and a label wider than its box is squeezed into it, never across a wall.
import { el, shown } from './dom.js';

/**
 * Label widths without a layout per label: each character's advance, measured once per drawing
 * for each kind of label (its font as the CSS sets it), summed. 6 000 labels measured one by one
 * would force the browser to lay the map out for each; a sum is arithmetic. A label wider than its
 * box is squeezed to the box (textLength), so no id, value, mark or state runs across a wall.
 */
const LABEL_KINDS = [
  ['rack', 'rack-id'],
  ['rack', 'rack-temp'],
  ['rack narrow', 'rack-temp'],
  ['ahu', 'ahu-id'],
  ['ahu', 'ahu-state'],
];

/** Every character a label can hold (ids: letters, digits, _ . -; values, marks and states). */
const LABEL_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-–?…,;:()/% ●▲▼✖◐▽○';

/** Kerning and hinting at small sizes move an advance by a few %: widths are taken this much larger. */
const LABEL_WIDTH_MARGIN = 1.06;

let labelAdvance = new Map();

export function measureLabelChars(svg) {
  const probes = LABEL_KINDS.map(([gClass, tClass]) => {
    const t = el('svg:text', { class: tClass, text: LABEL_CHARS });
    const g = el('svg:g', { class: gClass, visibility: 'hidden', 'aria-hidden': 'true' }, t);
    svg.append(g);
    return { key: `${gClass}|${tClass}`, g, t };
  });
  labelAdvance = new Map();
  for (const { key, g, t } of probes) {
    const per = new Map();
    // Not laid out (the map hidden): no advances, and labelWidth takes the font size per character.
    if (t.getNumberOfChars() === LABEL_CHARS.length && t.getComputedTextLength() > 0)
      for (const [i, ch] of [...LABEL_CHARS].entries()) per.set(ch, t.getSubStringLength(i, 1));
    per.set('em', Number.parseFloat(getComputedStyle(t).fontSize) || 0.34);
    labelAdvance.set(key, per);
    g.remove();
  }
}

/** A label's width as drawn (m), never less than it is: an unknown character counts one em. */
function labelWidth(key, text) {
  const per = labelAdvance.get(key);
  if (!per) return 0;
  let w = 0;
  for (const ch of text.trim()) w += per.get(ch) ?? per.get('em');
  return w * LABEL_WIDTH_MARGIN;
}

/** Writes `text` into label `t` of kind `key`, squeezed to `roomM` when it is wider. */
export function setLabel(t, key, raw, roomM) {
  const text = shown(raw);
  if (t.textContent !== text) t.textContent = text;
  if (labelWidth(key, text) > roomM) {
    t.setAttribute('textLength', String(Number(roomM.toFixed(3))));
    t.setAttribute('lengthAdjust', 'spacingAndGlyphs');
  } else if (t.hasAttribute('textLength')) {
    t.removeAttribute('textLength');
    t.removeAttribute('lengthAdjust');
  }
}

/** A label's room in its box (m): the box less a little on each side. */
export const labelRoomM = (box) => Math.max(0, box.w - 0.08);
