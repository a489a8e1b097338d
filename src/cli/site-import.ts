// `coolctl site import`: a site file from the CSV inventories a site already keeps — rooms, racks
// (positions and loads), air handlers (endpoints and profiles), sensor nodes (their racks) and
// control groups. Every problem is listed with its CSV file and line, whether the CSV itself is
// wrong (a missing column, a cell that is no number, an endpoint of no known form) or what it
// describes breaks the site schema or its rules (a rack in no room, a unit in no group): the site
// is built, then validated by the same parser the daemon uses (config/load-site.ts), and each of
// its problems is traced back to the row it came from. Nothing is written unless all is valid.
// Problems quote the files' cells, so each is escaped for the terminal it is printed on and
// clipped as the loader clips what it quotes; a file wrong on every row (an export of the wrong
// table) stops the check at the loader's MAX_CHECKED_PROBLEMS, in its words, and lists the first.
import { lstat, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { SHOWN_PROBLEM_CHARS } from '../config/config-check.ts';
import { SITE_FILE_MAX_BYTES } from '../config/config-files.ts';
import {
  ConfigError,
  type ConfigProblem,
  countWords,
  MAX_CHECKED_PROBLEMS,
  MAX_LISTED_PROBLEMS,
  moreProblemsLine,
} from '../errors.ts';
import { finiteNumber, UsageError } from '../util/cli-args.ts';
import { clip } from '../util/log-limit.ts';
import { printable } from '../util/printable.ts';
import { type CsvRow, type CsvTable, readCsv } from './csv.ts';

/**
 * Past MAX_CHECKED_PROBLEMS, rows are no longer checked: a file wrong on every row would hold them
 * all in memory. One more is kept, to know that checking stopped.
 */
const stopped = (problems: readonly string[]): boolean => problems.length > MAX_CHECKED_PROBLEMS;

/** A cell or header as a problem quotes it: no longer than the loader quotes a value. */
const quoted = (text: string): string => clip(text, SHOWN_PROBLEM_CHARS);

export type InventoryKind = 'rooms' | 'racks' | 'units' | 'sensors' | 'groups' | 'gateways';

type CellType = 'string' | 'number' | 'integer' | 'list';
interface Column {
  type: CellType;
  required?: boolean;
}

/** The columns each inventory may have (their names are the site file's keys where they map 1:1). */
export const COLUMNS: Record<InventoryKind, Record<string, Column>> = {
  rooms: {
    id: { type: 'string', required: true },
    name: { type: 'string' },
    widthM: { type: 'number', required: true },
    depthM: { type: 'number', required: true },
    heightM: { type: 'number' },
  },
  racks: {
    id: { type: 'string', required: true },
    room: { type: 'string', required: true },
    row: { type: 'string', required: true },
    xM: { type: 'number', required: true },
    yM: { type: 'number', required: true },
    itLoadKw: { type: 'number', required: true },
    airflowM3s: { type: 'number' },
  },
  units: {
    id: { type: 'string', required: true },
    room: { type: 'string', required: true },
    xM: { type: 'number', required: true },
    yM: { type: 'number', required: true },
    capacityKw: { type: 'number', required: true },
    maxAirflowM3s: { type: 'number', required: true },
    fanMaxKw: { type: 'number', required: true },
    endpoint: { type: 'string', required: true },
    unitId: { type: 'integer' },
    baudRate: { type: 'integer' },
    parity: { type: 'string' },
    profile: { type: 'string' },
    fencing: { type: 'string' },
    localSetpointC: { type: 'number' },
    localFanPct: { type: 'number' },
    watchdogS: { type: 'number' },
  },
  sensors: {
    id: { type: 'string', required: true },
    rack: { type: 'string', required: true },
    gateway: { type: 'string', required: true },
    sensors: { type: 'list', required: true },
    hops: { type: 'integer' },
    reportIntervalS: { type: 'number' },
    unitId: { type: 'integer' },
  },
  groups: {
    id: { type: 'string', required: true },
    airHandlers: { type: 'list', required: true },
    sensorNodes: { type: 'list' },
  },
  gateways: {
    id: { type: 'string', required: true },
    transport: { type: 'string' },
    topicPrefix: { type: 'string' },
    host: { type: 'string' },
    port: { type: 'integer' },
  },
};

/** The inventory each section of the site is built from. */
const SECTION_KIND: Record<string, InventoryKind> = {
  rooms: 'rooms',
  racks: 'racks',
  airHandlers: 'units',
  sensorNodes: 'sensors',
  controlGroups: 'groups',
  gateways: 'gateways',
};

/** Where each item of the site came from: section → index → "file:line". */
type Origins = Record<string, string[]>;

export interface ImportResult {
  ok: boolean;
  /** "file:line: what is wrong", in file order: the first MAX_LISTED_PROBLEMS, then a line with the rest. */
  problems: string[];
  /** The problems found (at most MAX_CHECKED_PROBLEMS), and whether checking stopped there. */
  problemCount: number;
  checkingStopped: boolean;
  /** `12 problem(s)`, or `at least 1000 problems (checking stops after 1000)`. */
  problemWords: string;
  /** The site, when it is valid. */
  site: Record<string, unknown> | null;
  yaml: string;
  summary: string;
}

type Row = Record<string, string | number | string[]>;

/** Typed cells of each row, or problems naming the file, line and column. */
function typedRows(t: CsvTable, kind: InventoryKind, problems: string[]): { row: Row; at: string }[] {
  const spec = COLUMNS[kind];
  for (const p of t.problems) {
    if (stopped(problems)) return [];
    problems.push(p);
  }
  if (t.unread) return [];
  const unknown = t.header.filter((h) => !(h in spec));
  if (unknown.length > 0)
    problems.push(
      `${t.file}:${t.headerLine}: unknown column(s) ${quoted(unknown.join(', '))} (a ${kind} inventory has ${Object.keys(spec).join(', ')})`,
    );
  const missing = Object.entries(spec)
    .filter(([name, c]) => c.required && !t.header.includes(name))
    .map(([name]) => name);
  if (missing.length > 0) {
    problems.push(`${t.file}:${t.headerLine}: missing column(s) ${missing.join(', ')}`);
    return [];
  }
  const out: { row: Row; at: string }[] = [];
  for (const r of t.rows) {
    if (stopped(problems)) break;
    out.push({ row: typedRow(t.file, r, spec, problems), at: `${t.file}:${r.line}` });
  }
  return out;
}

function typedRow(file: string, r: CsvRow, spec: Record<string, Column>, problems: string[]): Row {
  const row: Row = {};
  for (const [name, col] of Object.entries(spec)) {
    const v = r.cells[name];
    if (v === undefined) {
      if (col.required) problems.push(`${file}:${r.line}: ${name} is empty`);
      continue;
    }
    if (col.type === 'number' || col.type === 'integer') {
      // The CLI's one number syntax (decimal, finite): "0x10", "Infinity" or "1e999" are not numbers.
      const n = finiteNumber(v);
      if (n === undefined || (col.type === 'integer' && !Number.isInteger(n)))
        problems.push(
          `${file}:${r.line}: ${name} "${quoted(v)}" is not ${col.type === 'integer' ? 'a whole number' : 'a number'}${numberHint(v)}`,
        );
      else row[name] = n;
    } else if (col.type === 'list') row[name] = v.split(/[\s;|]+/).filter(Boolean);
    else row[name] = v;
  }
  return row;
}

/** What a spreadsheet's export may have made of a number, and how to write it. */
function numberHint(v: string): string {
  if (/^[+-]?\d+,\d+$/.test(v)) return ` (a decimal comma: write ${v.replace(',', '.')})`;
  if (/^[+-]?(?:\d+\.?\d*|\.\d+)[eE][+-]?\d+$/.test(v)) return ' (too large or too small for a number)';
  if (/^[=+\-@]/.test(v) && finiteNumber(v) === undefined)
    return ' (a formula: export the values, not the formulas)';
  return '';
}

const pick = (row: Row, keys: string[]): Record<string, unknown> =>
  Object.fromEntries(keys.filter((k) => row[k] !== undefined).map((k) => [k, row[k]]));

/** A unit's endpoint cell: opc.tcp://… (OPC-UA), /dev/… (Modbus RTU), host:port or modbus-tcp://host:port. */
function unitEndpoint(row: Row, at: string, problems: string[]): Record<string, unknown> | null {
  const text = String(row.endpoint);
  if (text.startsWith('opc.tcp://')) return { protocol: 'opcua', endpoint: { url: text } };
  if (text.startsWith('/dev/'))
    return {
      protocol: 'modbus-rtu',
      endpoint: { path: text, ...pick(row, ['baudRate', 'parity', 'unitId']) },
    };
  const m = /^(?:modbus-tcp:\/\/)?(\[[^\]]+\]|[^:/\s]+):(\d{1,5})$/.exec(text);
  if (m)
    return { protocol: 'modbus-tcp', endpoint: { host: m[1], port: Number(m[2]), ...pick(row, ['unitId']) } };
  problems.push(
    `${at}: endpoint "${quoted(text)}" is none of opc.tcp://host:port/path, /dev/ttyUSB0 (Modbus RTU), host:port or modbus-tcp://host:port (Modbus TCP)`,
  );
  return null;
}

/** The site built from the tables, and where each item came from. Pure. */
export function buildSite(
  siteId: string,
  siteName: string,
  tables: Partial<Record<InventoryKind, CsvTable>>,
  problems: string[],
): { site: Record<string, unknown>; origins: Origins } {
  const origins: Origins = {};
  const rows = (kind: InventoryKind) => (tables[kind] ? typedRows(tables[kind], kind, problems) : []);
  const section = <T>(
    name: string,
    items: { row: Row; at: string }[],
    make: (r: Row, at: string) => T | null,
  ): T[] => {
    const out: T[] = [];
    origins[name] = [];
    for (const { row, at } of items) {
      const v = make(row, at);
      if (v === null) continue;
      out.push(v);
      origins[name].push(at);
    }
    return out;
  };
  const rooms = section('rooms', rows('rooms'), (r) =>
    pick(r, ['id', 'name', 'widthM', 'depthM', 'heightM']),
  );
  const racks = section('racks', rows('racks'), (r) =>
    pick(r, ['id', 'room', 'row', 'xM', 'yM', 'itLoadKw', 'airflowM3s']),
  );
  const airHandlers = section('airHandlers', rows('units'), (r, at) => {
    // A unit whose endpoint cannot be read stays (without one), so groups that name it still resolve.
    const ep = unitEndpoint(r, at, problems) ?? {};
    return {
      ...pick(r, ['id', 'room', 'xM', 'yM', 'capacityKw', 'maxAirflowM3s', 'fanMaxKw']),
      ...pick(r, ['localSetpointC', 'localFanPct', 'watchdogS', 'profile', 'fencing']),
      ...ep,
    };
  });
  const sensorRows = rows('sensors');
  const sensorNodes = section('sensorNodes', sensorRows, (r) => ({
    ...pick(r, ['id', 'rack', 'gateway', 'hops', 'reportIntervalS', 'unitId']),
    // A cell "inlet-top inlet-bottom humidity" or "t=inlet-top rh=humidity": one sensor each.
    sensors: ((r.sensors as string[] | undefined) ?? []).map((s) => {
      const [id, kind] = s.includes('=') ? s.split('=', 2) : [s, s];
      return { id, kind };
    }),
  }));
  let gateways: Record<string, unknown>[];
  if (tables.gateways)
    gateways = section('gateways', rows('gateways'), (r) => ({
      ...pick(r, ['id', 'transport', 'topicPrefix']),
      ...(r.host !== undefined || r.port !== undefined ? { endpoint: pick(r, ['host', 'port']) } : {}),
    }));
  else {
    // The gateways the sensor nodes name, in order of first mention: MQTT, the schema's defaults.
    const seen = new Map<string, string>();
    for (const { row, at } of sensorRows)
      if (typeof row.gateway === 'string' && !seen.has(row.gateway)) seen.set(row.gateway, at);
    gateways = [...seen.keys()].map((id) => ({ id }));
    origins.gateways = [...seen.values()];
  }
  const controlGroups = section('controlGroups', rows('groups'), (r) => ({
    id: r.id,
    airHandlers: r.airHandlers,
    sensorNodes: r.sensorNodes ?? [],
  }));
  return {
    site: {
      site: { id: siteId, name: siteName },
      rooms,
      racks,
      airHandlers,
      gateways,
      sensorNodes,
      controlGroups,
    },
    origins,
  };
}

/** A schema or rule problem of the built site, as its CSV row says it: "file:line: column: message". */
function traced(p: ConfigProblem, origins: Origins): string {
  const parts = p.path.split('/').filter(Boolean);
  const [sectionName, index, ...rest] = parts;
  const at =
    sectionName === 'site'
      ? `--site-${rest[0] === 'name' || index === 'name' ? 'name' : 'id'}`
      : sectionName && index !== undefined
        ? (origins[sectionName]?.[Number(index)] ?? `(${sectionName})`)
        : `(${sectionName ?? 'site'})`;
  const column = sectionName === 'site' ? '' : rest.length > 0 ? `${rest.join('.')}: ` : '';
  return `${at}: ${column}${p.message} (allowed: ${p.allowed})`;
}

/** Reads the CSV files, builds the site and validates it; nothing is thrown for bad input. */
export async function importSite(o: {
  siteId: string;
  siteName: string;
  rooms: string;
  racks: string;
  units: string;
  sensors: string;
  groups: string;
  gateways?: string;
}): Promise<ImportResult> {
  const problems: string[] = [];
  const tables: Partial<Record<InventoryKind, CsvTable>> = {};
  const files: [InventoryKind, string | undefined][] = [
    ['rooms', o.rooms],
    ['racks', o.racks],
    ['units', o.units],
    ['sensors', o.sensors],
    ['groups', o.groups],
    ['gateways', o.gateways],
  ];
  for (const [kind, file] of files) if (file !== undefined) tables[kind] = await readCsv(file);
  return validateImport(o.siteId, o.siteName, tables, problems);
}

/**
 * Problems as printed, in the loader's words: a cell's ESC or bidi override escaped, the first
 * MAX_LISTED_PROBLEMS, then how many more (at least, where checking stopped).
 */
function refused(problems: string[], loaderStopped = false): ImportResult {
  const checkingStopped = loaderStopped || stopped(problems);
  const problemCount = Math.min(problems.length, MAX_CHECKED_PROBLEMS);
  const shown = problems.slice(0, MAX_LISTED_PROBLEMS).map((p) => printable(p));
  const more = moreProblemsLine(problemCount - shown.length, checkingStopped);
  return {
    ok: false,
    problems: more === undefined ? shown : [...shown, more.trimStart()],
    problemCount,
    checkingStopped,
    problemWords: countWords(problemCount, checkingStopped),
    site: null,
    yaml: '',
    summary: '',
  };
}

/** Builds and validates; the problems of the CSV come first, then the site's, each traced to its row. */
export async function validateImport(
  siteId: string,
  siteName: string,
  tables: Partial<Record<InventoryKind, CsvTable>>,
  problems: string[] = [],
): Promise<ImportResult> {
  const { site, origins } = buildSite(siteId, siteName, tables, problems);
  const yaml = `# Built by coolctl site import from ${Object.values(tables)
    .map((t) => t.file)
    .join(', ')}\n${stringify(site)}`;
  const fail = (): ImportResult => refused(problems);
  let loaderStopped = false;
  // A file not read at all leaves every row that names its items dangling: the schema would only
  // repeat that, once per row.
  // Nor does a check that stopped early: the rows it did not reach would be missing.
  if (Object.values(tables).some((t) => t.unread) || stopped(problems)) return fail();
  const bytes = Buffer.byteLength(yaml);
  if (bytes > SITE_FILE_MAX_BYTES) {
    problems.push(
      `(site): the site file would be ${(bytes / 1024 / 1024).toFixed(1)} MB, more than the ${SITE_FILE_MAX_BYTES / 1024 / 1024} MB the daemon reads (docs/site-config.md, "File limits")`,
    );
    return fail();
  }
  // Rows the CSV checks already found wrong: the schema's complaints about them would repeat those.
  const badRows = new Set(problems.map((p) => /^(.+?:\d+): /.exec(p)?.[1]).filter(Boolean));
  const { parseSite } = await import('../config/load-site.ts');
  try {
    const s = parseSite(yaml, '<imported site>');
    if (s.airHandlers.some((a) => a.profile !== undefined && a.profile !== 'coolctl-native')) {
      const { unitProfileProblems } = await import('../config/site-profiles.ts');
      const more = await unitProfileProblems(s);
      if (more.length > 0)
        throw new ConfigError(
          '<imported site>',
          more.map((p) => ({ ...p, file: '' })),
        );
    }
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    // A section the schema finds empty or short, whose file had rows refused already, says it twice.
    const badFiles = new Set(
      Object.values(tables)
        .filter((t) => problems.some((p) => p.startsWith(`${t.file}:`)))
        .map((t) => t.file),
    );
    for (const p of err.problems) {
      if (stopped(problems)) break;
      // Where the loader stopped checking, the count is a lower bound here too.
      if (p.checkingStopped) {
        loaderStopped = true;
        continue;
      }
      const line = traced(p, origins);
      const [sectionName, index] = p.path.split('/').filter(Boolean);
      const kind = sectionName === undefined ? undefined : SECTION_KIND[sectionName];
      const file = kind === undefined ? undefined : tables[kind]?.file;
      if (index === undefined && file !== undefined && badFiles.has(file)) continue;
      if (!badRows.has(/^(.+?:\d+): /.exec(line)?.[1])) problems.push(line);
    }
    return refused(problems, loaderStopped);
  }
  if (problems.length > 0) return fail();
  const count = (k: string) => (site[k] as unknown[]).length;
  return {
    ok: true,
    problems: [],
    problemCount: 0,
    checkingStopped: false,
    problemWords: countWords(0, false),
    site,
    yaml,
    summary: `site ${siteId}: ${count('rooms')} rooms, ${count('racks')} racks, ${count('airHandlers')} air handlers, ${count('sensorNodes')} sensor nodes, ${count('controlGroups')} groups`,
  };
}

/**
 * Writes the site file for `--out` as a running daemon must see it (it reloads when the file
 * changes): whole or not at all — a temporary file beside it, flushed, then renamed over it, so a
 * reload never reads half a site (a site cut at a line end can still be valid, with units missing).
 * A symbolic link, a directory or a device at `out` is refused rather than written through, and
 * every refusal is a UsageError (exit 2) that names the file and what to do.
 */
export async function writeSiteFile(out: string, yaml: string): Promise<void> {
  const code = (err: unknown) => (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  let mode = 0o644;
  try {
    const st = await lstat(out);
    if (st.isSymbolicLink())
      throw new UsageError(`--out ${out}: a symbolic link; give the file it points to, not the link`);
    if (!st.isFile()) throw new UsageError(`--out ${out}: not a regular file; give a file's path`);
    mode = st.mode & 0o777;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    if (code(err) !== 'ENOENT') throw new UsageError(`--out ${out}: cannot use it (${code(err)})`);
  }
  const tmp = join(dirname(out), `.${basename(out)}.${process.pid}.tmp`);
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(tmp, 'wx', mode);
    await fh.writeFile(yaml);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, out);
  } catch (err) {
    await fh?.close().catch(() => {});
    await rm(tmp, { force: true }).catch(() => {});
    throw new UsageError(`--out ${out}: cannot write it (${code(err)}); nothing was written`);
  }
}
