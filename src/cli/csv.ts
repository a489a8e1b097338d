// A small CSV reader for inventories (RFC 4180: commas, double quotes, "" inside quotes, CRLF or
// LF): each record keeps the line it starts on, so every problem can name its file and line. The
// first record is the header; blank lines and lines starting with # are skipped. A file is read as
// every config file is (config-files.ts): a regular file, sized before it is read, UTF-8 — so a
// FIFO, /dev/zero, a 100 MB export or a UTF-16 or Latin-1 save is refused with what to do, never
// waited on, read into memory or turned silently into U+FFFD. A cell holding a control character
// (a NUL of a binary file, an ESC) is refused with its line: no inventory has one. Cells are cut
// out of the text a run at a time, never a character at a time (a 7 MB cell built so is millions of
// string pieces, over 200 MB), and problems stop at the loader's MAX_CHECKED_PROBLEMS (one more is
// kept, so the caller knows checking stopped).
import { readBoundedFile, SITE_FILE_MAX_BYTES, utf8Text } from '../config/config-files.ts';
import { MAX_CHECKED_PROBLEMS } from '../errors.ts';
import { printable } from '../util/printable.ts';

/**
 * The largest inventory read: the site it builds must fit the site file the daemon reads, and an
 * inventory row is shorter than the YAML it becomes, so a bigger CSV could only build a refused site.
 */
export const CSV_FILE_MAX_BYTES = SITE_FILE_MAX_BYTES;
/**
 * The most rows an inventory may have: a site the daemon reads holds ~100 000 items at most (a
 * 10 000-node hall is 4.4 MB of the 8 MB); past that, each row would only cost memory (a problem or
 * more per row) to build a site that is refused anyway.
 */
export const CSV_MAX_ROWS = 100_000;

export interface CsvRow {
  /** 1-based line of the record's first character. */
  line: number;
  /** Header name → cell, trimmed; a missing cell is absent. */
  cells: Record<string, string>;
}

export interface CsvTable {
  file: string;
  header: string[];
  /** The header's line (comments and blank lines may come first). */
  headerLine: number;
  rows: CsvRow[];
  /** "file:line: message" for records that cannot be read (an unclosed quote, too many cells). */
  problems: string[];
  /** The file itself could not be read (missing, no regular file, too big, not UTF-8): no rows at all. */
  unread?: boolean;
}

/** Splits `text` into records of cells, with the line each starts on. */
interface CsvRecord {
  line: number;
  cells: string[];
  unclosed: boolean;
  /** Text after a closing quote (`"Hall B"x`): RFC 4180 has none, and a spreadsheet reads it otherwise. */
  stray: boolean;
}

/** Where the run of plain text that starts at `from` ends: at the next comma, quote or line end. */
function runEnd(text: string, from: number, specials: RegExp): number {
  specials.lastIndex = from;
  return specials.exec(text)?.index ?? text.length;
}

/** At most `max` records: the rest of the text is not split. */
function records(text: string, max: number): CsvRecord[] {
  const plainEnds = /[,"\r\n]/g;
  const quotedEnds = /["\n]/g;
  const out: CsvRecord[] = [];
  let line = 1;
  let start = 1;
  let cells: string[] = [];
  let cell = '';
  /** Whether `cell` is blank so far: asked at every quote, where trimming a long cell each time would not end. */
  let blank = true;
  const add = (text: string) => {
    cell += text;
    if (blank && text.trim() !== '') blank = false;
  };
  let quoted = false;
  let any = false;
  let closed = false;
  let stray = false;
  for (let i = 0; i < text.length && out.length < max; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        add('"');
        i++;
      } else if (ch === '"') {
        quoted = false;
        closed = true;
      } else if (ch === '\n') {
        line++;
        add(ch);
      } else {
        const end = runEnd(text, i, quotedEnds);
        add(text.slice(i, end));
        i = end - 1;
      }
      continue;
    }
    if (ch === '"' && blank) {
      quoted = true;
      cell = '';
      any = true;
    } else if (ch === ',') {
      cells.push(cell);
      cell = '';
      blank = true;
      any = true;
      closed = false;
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      if (any || cell.trim() !== '')
        out.push({ line: start, cells: [...cells, cell], unclosed: false, stray });
      cells = [];
      cell = '';
      blank = true;
      any = false;
      closed = false;
      stray = false;
      line++;
      start = line;
    } else {
      // A quote inside a cell is text; the run goes on to the next comma, quote or line end.
      const end = runEnd(text, i + 1, plainEnds);
      const run = text.slice(i, end);
      add(run);
      i = end - 1;
      if (run.trim() !== '') {
        any = true;
        if (closed) stray = true;
      }
    }
  }
  if (out.length >= max) return out;
  if (quoted) out.push({ line: start, cells: [...cells, cell], unclosed: true, stray });
  else if (any || cell.trim() !== '')
    out.push({ line: start, cells: [...cells, cell], unclosed: false, stray });
  return out;
}

/** C0 controls but tab and line ends, DEL, C1 and the bidi controls: what printable() escapes. */
function controlIn(cell: string): string | undefined {
  for (const c of cell) if (c !== '\t' && c !== '\r' && c !== '\n' && printable(c) !== c) return c;
  return undefined;
}

/** An inventory file read and split, or a table with no rows and the one problem that stopped it. */
export async function readCsv(file: string): Promise<CsvTable> {
  const bytes = await readBoundedFile(file, CSV_FILE_MAX_BYTES, 'CSV inventory');
  const text = bytes.ok ? utf8Text(bytes.value, file) : bytes;
  if (text.ok) return parseCsv(text.value, file);
  return {
    file,
    header: [],
    headerLine: 1,
    rows: [],
    problems: [`${text.message}; want ${text.allowed}`],
    unread: true,
  };
}

export function parseCsv(text: string, file: string): CsvTable {
  const problems: string[] = [];
  // Comments count towards the bound too: a file of a million "#" lines is no inventory either.
  const recs = records(text.replace(/^\uFEFF/, ''), CSV_MAX_ROWS + 2).filter(
    (r) => !r.cells[0]?.trimStart().startsWith('#'),
  );
  const head = recs.shift();
  if (!head)
    return {
      file,
      header: [],
      headerLine: 1,
      rows: [],
      problems: [`${file}:1: empty file: want a header line`],
    };
  const header = head.cells.map((c) => c.trim());
  if (recs.length > CSV_MAX_ROWS)
    return {
      file,
      header,
      headerLine: head.line,
      rows: [],
      problems: [`${file}: more than ${CSV_MAX_ROWS} rows, more than a site holds: is it the right export?`],
      unread: true,
    };
  const rows: CsvRow[] = [];
  for (const r of recs) {
    if (problems.length > MAX_CHECKED_PROBLEMS) break;
    if (r.unclosed) {
      problems.push(`${file}:${r.line}: a quoted cell is never closed`);
      continue;
    }
    if (r.stray) {
      problems.push(
        `${file}:${r.line}: text after a closing quote: quote the whole cell ("Hall ""B"" north")`,
      );
      continue;
    }
    if (r.cells.length > header.length) {
      problems.push(`${file}:${r.line}: ${r.cells.length} cells, the header has ${header.length}`);
      continue;
    }
    const cells: Record<string, string> = {};
    header.forEach((h, i) => {
      const v = r.cells[i]?.trim();
      if (v !== undefined && v !== '') cells[h] = v;
    });
    const bad = Object.entries(cells).find(([, v]) => controlIn(v) !== undefined);
    if (bad) {
      problems.push(
        `${file}:${r.line}: ${bad[0]} holds the control character ${printable(controlIn(bad[1]))}: a cell is plain text (a NUL is a sign of a binary or UTF-16 file)`,
      );
      continue;
    }
    rows.push({ line: r.line, cells });
  }
  return { file, header, headerLine: head.line, rows, problems };
}
