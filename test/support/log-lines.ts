// Log lines as the daemon writes them (pino JSON, one object a line), captured in memory, and a
// check that reads each line's raw text for keys that occur twice in one object: pino writes a
// child's bindings and a call's fields side by side, and JSON.parse (like most log tools) keeps
// only the last of two equal keys, so a parsed line cannot show the clash.
import { type Logger, pino } from 'pino';

export interface CapturedLogs {
  /** Root logger (level debug) with `bindings`, as the daemon's entry point makes it. */
  logger: Logger;
  /** Every line written so far, raw. */
  lines: string[];
  /** The lines parsed, for finding one by its message. */
  parsed(): Record<string, unknown>[];
}

export function captureLogs(bindings: Record<string, unknown> = {}): CapturedLogs {
  const lines: string[] = [];
  const logger = pino(
    { level: 'debug', base: bindings },
    {
      write(s: string) {
        for (const line of s.split('\n')) if (line) lines.push(line);
      },
    },
  );
  return { logger, lines, parsed: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

/**
 * Keys that occur more than once in one object of a JSON text, as `path.key` (`key` at the top);
 * [] when there are none. Reads the text itself; throws on text that is not JSON.
 */
export function duplicateKeys(json: string): string[] {
  type Frame = { keys: Set<string> | null; path: string; expectKey: boolean; lastKey: string };
  const stack: Frame[] = [];
  const dups: string[] = [];
  let i = 0;
  const n = json.length;
  while (i < n) {
    const c = json[i]!;
    if (c === '"') {
      let j = i + 1;
      let s = '';
      while (j < n && json[j] !== '"') {
        if (json[j] === '\\') {
          s += json.slice(j, j + 2);
          j += 2;
        } else s += json[j++];
      }
      if (j >= n) throw new SyntaxError(`unterminated string at ${i}`);
      const top = stack.at(-1);
      if (top?.keys && top.expectKey) {
        const key = JSON.parse(`"${s}"`) as string;
        if (top.keys.has(key)) dups.push(top.path ? `${top.path}.${key}` : key);
        top.keys.add(key);
        top.lastKey = key;
      }
      i = j + 1;
      continue;
    }
    const top = stack.at(-1);
    const childPath = top
      ? top.keys
        ? top.path
          ? `${top.path}.${top.lastKey}`
          : top.lastKey
        : `${top.path}[]`
      : '';
    if (c === '{') stack.push({ keys: new Set(), path: childPath, expectKey: true, lastKey: '' });
    else if (c === '[') stack.push({ keys: null, path: childPath, expectKey: false, lastKey: '' });
    else if (c === '}' || c === ']') stack.pop();
    else if (c === ':' && top?.keys) top.expectKey = false;
    else if (c === ',' && top?.keys) top.expectKey = true;
    i++;
  }
  if (stack.length > 0) throw new SyntaxError('unbalanced JSON');
  return dups;
}

/** Every line with a key twice in one object, with those keys: what a test expects to be []. */
export function linesWithDuplicateKeys(lines: readonly string[]): { line: string; keys: string[] }[] {
  return lines.map((line) => ({ line, keys: duplicateKeys(line) })).filter((x) => x.keys.length > 0);
}
