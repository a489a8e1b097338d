// The page's DOM helpers: every element and text the page draws goes through `el` and `setText`,
// so data is only ever put in as text or an attribute, never as HTML, and a character that would
// change how the text around it reads (a direction override, a zero-width space) is shown as its code.

const SVG = 'http://www.w3.org/2000/svg';

export const $ = (id) => document.getElementById(id);

/**
 * Characters that change how the text around them is drawn, or are not drawn at all: controls,
 * direction embeddings, overrides and isolates, zero-width spaces and word joiners. A name, comment
 * or message from a config, etcd or a peer that holds one would be obeyed (the words after a
 * right-to-left override read backwards) or hide in plain sight; the page writes each as its code.
 * Tabs, line ends, soft hyphens, the joiners a script needs (U+200C, U+200D) and the direction
 * marks LRM/RLM, which override nothing, are left alone.
 */
const HIDDEN_CHARS = /(?![\t\n\u00ad\u200c-\u200f])[\p{Cc}\p{Cf}]/gu;

export const shown = (s) =>
  String(s).replace(
    HIDDEN_CHARS,
    (c) => `‹U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')}›`,
  );

/** At most `max` characters of a free text for a table cell: the rest is said to be there. */
export const clip = (s, max = 300) =>
  s.length > max ? `${s.slice(0, max)}… (${s.length - max} more characters)` : s;

/** Sets an element's text the one way the page does: hidden characters shown. */
export const setText = (e, s) => {
  e.textContent = shown(s);
};

export function el(tag, attrs = {}, ...children) {
  const e = tag.startsWith('svg:')
    ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === 'text') setText(e, v);
    // What is read aloud or shown on hover is text as well; every other attribute is data.
    else e.setAttribute(k, k === 'aria-label' || k === 'title' ? shown(v) : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(typeof c === 'string' ? shown(c) : c);
  return e;
}

export function setOptions(select, values) {
  const want = values.map(([v, label]) => `${v}\u0000${label}`).join('\u0001');
  if (select.dataset.options === want) return;
  const keep = select.value;
  select.replaceChildren(...values.map(([v, label]) => el('option', { value: v, text: label })));
  if (values.some(([v]) => v === keep)) select.value = keep;
  select.dataset.options = want;
}
