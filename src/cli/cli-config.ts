// The CLI's own small config file, so an operator's shell needs no exports: which API to call, the
// token file, the CA file and the default output. Looked for at $COOLCTL_CLI_CONFIG, else
// $XDG_CONFIG_HOME/coolctl/cli.yaml (~/.config/coolctl/cli.yaml), else /etc/coolctl/cli.yaml; the
// first that exists is read, and an unknown key or a wrong type in it is a usage error naming the
// file and the key. Precedence everywhere: a command-line option, then the environment
// (COOLCTL_API, COOLCTL_TOKEN, COOLCTL_CA_FILE, COOLCTL_OUTPUT), then this file, then the default.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { UsageError } from '../util/cli-args.ts';
import { jsonText, printable, printableText } from '../util/printable.ts';
import { yamlLib } from '../util/yaml-lib.ts';

export const OUTPUT_FORMATS = ['table', 'json'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export interface CliConfig {
  /** The file it came from (null: none was found). */
  file: string | null;
  api?: string;
  /** Absolute: a relative path in the file is relative to the file. */
  tokenFile?: string;
  caFile?: string;
  output?: OutputFormat;
}

/** A CLI config file that cannot be used: the command stops (exit 2) rather than guess. */
export class CliConfigError extends UsageError {}

const KEYS: Record<string, string> = {
  api: 'any node’s API address, e.g. https://gw-1.example:8101',
  tokenFile: 'file holding the API token',
  caFile: 'PEM CA that signed the API’s certificate',
  output: 'table or json',
};

/** Where the CLI looks, in order ($COOLCTL_CLI_CONFIG alone when it is set). */
export function cliConfigCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  if (env.COOLCTL_CLI_CONFIG) return [env.COOLCTL_CLI_CONFIG];
  const xdg = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config');
  return [join(xdg, 'coolctl/cli.yaml'), '/etc/coolctl/cli.yaml'];
}

/** Parses a CLI config file's text; every problem is listed in one error. */
export function parseCliConfig(text: string, file: string): CliConfig {
  let doc: unknown;
  try {
    // Loaded here, not with this module: it is on the path of every command, `coolctl run` included.
    doc = yamlLib().parse(text);
  } catch (err) {
    throw new CliConfigError(`${file}: not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return { file };
  if (typeof doc !== 'object' || Array.isArray(doc))
    throw new CliConfigError(`${file}: want a mapping of ${Object.keys(KEYS).join(', ')}`);
  const problems: string[] = [];
  const out: CliConfig = { file };
  const base = dirname(resolve(file));
  for (const [k, v] of Object.entries(doc)) {
    if (!(k in KEYS)) {
      problems.push(`unknown key "${k}" (allowed: ${Object.keys(KEYS).join(', ')})`);
      continue;
    }
    if (typeof v !== 'string' || v === '') {
      problems.push(`${k}: want a string — ${KEYS[k]}`);
      continue;
    }
    if (k === 'output') {
      if (!(OUTPUT_FORMATS as readonly string[]).includes(v))
        problems.push(`output: "${v}" — want table or json`);
      else out.output = v as OutputFormat;
    } else if (k === 'api') out.api = v;
    else if (k === 'tokenFile') out.tokenFile = resolve(base, v);
    else if (k === 'caFile') out.caFile = resolve(base, v);
  }
  if (problems.length > 0) throw new CliConfigError(`${file}: ${problems.join('; ')}`);
  return out;
}

let loaded: CliConfig | undefined;

/** The CLI config in force for this process (read once). */
export function cliConfig(env: NodeJS.ProcessEnv = process.env): CliConfig {
  if (loaded) return loaded;
  const file = cliConfigCandidates(env).find((f) => existsSync(f));
  if (!file) {
    if (env.COOLCTL_CLI_CONFIG)
      throw new CliConfigError(`COOLCTL_CLI_CONFIG=${env.COOLCTL_CLI_CONFIG}: no such file`);
    loaded = { file: null };
    return loaded;
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CliConfigError(
      `${file}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  loaded = parseCliConfig(text, file);
  return loaded;
}

/** The output a command prints: --output, else --json (kept for scripts), else COOLCTL_OUTPUT, else the file's, else table. */
export function outputFormat(
  o: { output?: string; json?: boolean },
  env: NodeJS.ProcessEnv = process.env,
): OutputFormat {
  const pick =
    o.output ?? (o.json ? 'json' : undefined) ?? env.COOLCTL_OUTPUT ?? cliConfig(env).output ?? 'table';
  if (!(OUTPUT_FORMATS as readonly string[]).includes(pick))
    throw new CliConfigError(`--output ${pick}: want table or json`);
  return pick as OutputFormat;
}

/**
 * Prints `data` as JSON, or `table()`'s text. Whatever a table forgot to escape cannot act on the
 * terminal either: every control character but its line ends is escaped on the way out.
 */
export function emit(o: { output?: string; json?: boolean }, data: unknown, table: () => string): void {
  const text = outputFormat(o) === 'json' ? jsonText(data) : printableText(table());
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

/**
 * Rows as aligned columns (the header first). A cell never holds a newline or any other control or
 * bidi character: each is escaped (./printable.ts), so a cell from the server cannot break a row
 * or act on the terminal.
 */
export function formatTable(header: string[], rows: (string | number | null | undefined)[][]): string {
  const cells = [
    header,
    ...rows.map((r) => r.map((c) => (c === null || c === undefined ? '-' : printable(c)))),
  ];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
