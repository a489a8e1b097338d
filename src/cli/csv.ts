// A small CSV reader for inventories (RFC 4180: commas, double quotes, "" inside quotes, CRLF or
// LF): each record keeps the line it starts on, so every problem can name its file and line. The
// first record is the header; blank lines and lines starting with # are skipped.

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
}

/** Splits `text` into records of cells, with the line each starts on. */
function records(text: string): { line: number; cells: string[]; unclosed: boolean }[] {
  const out: { line: number; cells: string[]; unclosed: boolean }[] = [];
  let line = 1;
  let start = 1;
  let cells: string[] = [];
  let cell = '';
  let quoted = false;
  let any = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else {
        if (ch === '\n') line++;
        cell += ch;
      }
      continue;
    }
    if (ch === '"' && cell.trim() === '') {
      quoted = true;
      cell = '';
      any = true;
    } else if (ch === ',') {
      cells.push(cell);
      cell = '';
      any = true;
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      if (any || cell.trim() !== '') out.push({ line: start, cells: [...cells, cell], unclosed: false });
      cells = [];
      cell = '';
      any = false;
      line++;
      start = line;
    } else {
      cell += ch;
      if (ch.trim() !== '') any = true;
    }
  }
  if (quoted) out.push({ line: start, cells: [...cells, cell], unclosed: true });
  else if (any || cell.trim() !== '') out.push({ line: start, cells: [...cells, cell], unclosed: false });
  return out;
}

export function parseCsv(text: string, file: string): CsvTable {
  const problems: string[] = [];
  const recs = records(text.replace(/^\uFEFF/, '')).filter((r) => !r.cells[0]?.trimStart().startsWith('#'));
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
  const rows: CsvRow[] = [];
  for (const r of recs) {
    if (r.unclosed) {
      problems.push(`${file}:${r.line}: a quoted cell is never closed`);
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
    rows.push({ line: r.line, cells });
  }
  return { file, header, headerLine: head.line, rows, problems };
}
