// What the CLI prints of text it did not write — pause reasons, token labels, alarm comments, user
// and node names, the API's messages, what a config refusal quotes of its file — goes to an
// operator's terminal or log. Control characters there are commands to the terminal (ESC clears the
// screen, retitles the window, rewrites lines), and bidi overrides make text read as something else. So every such string is shown with those characters
// escaped (`\x1b`, `\n`, `\u202e`): the text stays readable, and nothing in it acts on the terminal.

/**
 * C0 controls, DEL, C1 controls, the Unicode line and paragraph separators, and the bidi controls
 * (ALM, LRM, RLM, LRE…RLO, LRI…PDI).
 */
function unsafe(code: number): boolean {
  return (
    code < 0x20 ||
    (code >= 0x7f && code <= 0x9f) ||
    code === 0x061c ||
    code === 0x200e ||
    code === 0x200f ||
    code === 0x2028 ||
    code === 0x2029 ||
    (code >= 0x202a && code <= 0x202e) ||
    (code >= 0x2066 && code <= 0x2069)
  );
}

const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** `\n`, `\x1b`, `\u202e`. */
const hex = (code: number, width: number): string => code.toString(16).padStart(width, '0');
const shown = (c: string, code: number): string =>
  NAMED[c] ?? (code < 0x100 ? `\\x${hex(code, 2)}` : `\\u${hex(code, 4)}`);

function escapeUnsafe(
  text: string,
  keep: (c: string) => boolean,
  as: (c: string, code: number) => string,
): string {
  let out = '';
  for (const c of text) {
    const code = c.codePointAt(0)!;
    out += unsafe(code) && !keep(c) ? as(c, code) : c;
  }
  return out;
}

/** One field as it may be printed: every control and bidi character escaped, newlines included. */
export function printable(value: unknown): string {
  return escapeUnsafe(String(value), () => false, shown);
}

/** Text of several lines (a table, a report): as printable, but its own line ends kept. */
export function printableText(text: string): string {
  return escapeUnsafe(text, (c) => c === '\n', shown);
}

/**
 * `value` as the CLI prints JSON: JSON.stringify escapes C0 controls already; DEL, C1, the line
 * separators and bidi controls are escaped too (`\u009b`), which leaves the same JSON value.
 */
export function jsonText(value: unknown, indent = 2): string {
  return escapeUnsafe(
    JSON.stringify(value, null, indent) ?? 'null',
    (c) => c === '\n',
    (_c, code) => `\\u${hex(code, 4)}`,
  );
}
