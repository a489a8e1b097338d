// What a command line accepts beyond commander's own checks (coolctl's, and the fencing gateway's
// own entry): numbers, durations and the closed sets of values some options take. Every refusal is
// a UsageError — exit 2 and one line that names the option and says what it wants — raised before
// anything is sent. One parser for every number, so no option can turn "abc", "60%", "" or "1e999"
// into NaN, 0 or Infinity.
import { CommanderError, Option } from 'commander';
import { ConfigError, InputRefusedError } from '../errors.ts';

/** Bad usage: an option, argument or file the user gave (exit 2, one line, no stack). */
export class UsageError extends Error {}

/** The user stopped an interactive prompt (Ctrl-C): exit 130, as a shell reports an interrupt. */
export class CancelledError extends Error {}

/**
 * The one rule from what ended a command to its exit code (docs/cli.md, "Exit codes"): 2 for what
 * the user gave — an option or argument, a file that is not what the command needs (a config, a
 * profile, a release), a request the server refused as bad input — 130 for a cancelled prompt, and
 * 1 for what failed on the way (I/O on a good input, the API, the cluster, a start-up).
 */
export function exitCodeOf(err: unknown): 0 | 1 | 2 | 130 {
  if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
  if (err instanceof CancelledError) return 130;
  if (err instanceof UsageError || err instanceof ConfigError || err instanceof InputRefusedError) return 2;
  return 1;
}

/** pino's levels (`--log-level`): anything else makes pino throw at start. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** `--log-level <level>` with its choices listed in the help and refused otherwise (exit 2). */
export function logLevelOption(description: string, fallback = 'info'): Option {
  return new Option('--log-level <level>', description).choices(LOG_LEVELS).default(fallback);
}

/** Decimal notation only: `40`, `-1.5`, `.5`, `2e3` — not `0x10`, `Infinity`, ``, `60%` or `1_000`. */
const DECIMAL = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/** `text` as a finite number written in decimal, or undefined (empty, `60%`, `abc`, `1e999`, `0x10`). */
export function finiteNumber(text: string): number | undefined {
  const t = text.trim();
  if (!DECIMAL.test(t)) return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? n : undefined;
}

/** What a numeric option accepts: a closed range, ends included, and whether only whole numbers. */
export interface NumberRule {
  min: number;
  max: number;
  integer?: boolean;
  /** What the number is, for the message: `fanPct, %`. */
  what?: string;
}

/** "a number from 0 to 100 (fanPct, %)" */
function wanted(rule: NumberRule): string {
  return `want ${rule.integer ? 'a whole number' : 'a number'} from ${rule.min} to ${rule.max}${rule.what ? ` (${rule.what})` : ''}`;
}

/**
 * The one parser of numeric options: `text` as a finite number inside `rule`, else a UsageError
 * naming the option and the range (`--fan "abc": not a number; want a number from 0 to 100`).
 */
export function parseNumber(option: string, text: string, rule: NumberRule): number {
  const shown = JSON.stringify(text);
  const n = finiteNumber(text);
  if (n === undefined) throw new UsageError(`${option} ${shown}: not a number; ${wanted(rule)}`);
  if ((rule.integer && !Number.isInteger(n)) || n < rule.min || n > rule.max)
    throw new UsageError(`${option} ${shown}: ${wanted(rule)}`);
  return n;
}

/** A numeric option whose value commander parses with parseNumber (so a bad one stops the command). */
export function numberOption(flags: string, description: string, rule: NumberRule): Option {
  const opt = new Option(flags, description);
  return opt.argParser((text: string) => parseNumber(opt.long ?? flags, text, rule));
}

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
type DurationUnit = keyof typeof UNIT_MS;

/**
 * `90s`, `15m`, `1.5h`, `500ms` → ms, inside [minMs, maxMs]; a bare number is in `bare`. Anything
 * else is a UsageError saying what to give (`example`) and the range (`range`).
 */
export function parseDuration(
  option: string,
  text: string,
  o: {
    bare: DurationUnit;
    units: readonly DurationUnit[];
    minMs: number;
    maxMs: number;
    example: string;
    range: string;
  },
): number {
  const m = /^(.*?)\s*([a-z]*)$/.exec(text.trim());
  const unit = (m?.[2] || o.bare) as DurationUnit;
  const n = m && m[1] !== '' && !/[eE]/.test(m[1]!) ? finiteNumber(m[1]!) : undefined;
  if (n === undefined || n < 0 || !o.units.includes(unit))
    throw new UsageError(`${option} ${text}: give a duration such as ${o.example}`);
  const ms = n * UNIT_MS[unit];
  if (ms < o.minMs || ms > o.maxMs) throw new UsageError(`${option} ${text}: ${o.range}`);
  return ms;
}
