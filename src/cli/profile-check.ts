// `coolctl profile check FILE`: loads a device profile and says either what it is — its points, the
// requests one status read takes, how a command is written, its watchdog and fencing — or every
// problem with its line. Returns the text and the exit code; the CLI entry point prints them. A
// profile that loads but cannot encode the command it shows (a scale or type too small for it) is a
// profile with a problem too, not a failure of the check. What checking a hostile file costs is
// bounded as the config loader bounds it: the file's size (PROFILE_FILE_MAX_BYTES), at most
// MAX_CHECKED_PROBLEMS problems kept and the first MAX_LISTED_PROBLEMS printed, in its words.
import { boundedProblems, lineFinder, shownProblem } from '../config/config-check.ts';
import { PROFILE_FILE_MAX_BYTES, readConfigFile } from '../config/config-files.ts';
import { compileProfile, ProfileValueError, type WriteRequest } from '../devices/profile/codec.ts';
import { parseProfile } from '../devices/profile/load.ts';
import { toModicon } from '../devices/profile/modicon.ts';
import { ModbusPointSchema } from '../devices/profile/schema.ts';
import {
  ConfigError,
  type ConfigProblem,
  MAX_LISTED_PROBLEMS,
  moreProblemsLine,
  problemCount,
  problemCountWords,
} from '../errors.ts';
import { POINT_RANGES, type PointRange, rangeText } from '../unit-contract.ts';
import { UsageError } from '../util/cli-args.ts';

/** A firmware version as a profile's `sinceFirmware` is written (the schema owns the pattern). */
const FIRMWARE = ModbusPointSchema.properties.sinceFirmware;
const FIRMWARE_PATTERN = new RegExp(FIRMWARE.pattern!);

export interface CheckOutcome {
  /** 2 for a profile with problems: an invalid config file, as `config validate` and `site import` say. */
  exitCode: 0 | 2;
  text: string;
}

export async function profileCheck(file: string, opts: { firmware?: string } = {}): Promise<CheckOutcome> {
  if (opts.firmware !== undefined && !FIRMWARE_PATTERN.test(opts.firmware))
    throw new UsageError(`--firmware ${JSON.stringify(opts.firmware)}: want ${FIRMWARE.description}`);
  let text: string;
  let profile: ReturnType<typeof parseProfile>;
  try {
    text = await readConfigFile(file, PROFILE_FILE_MAX_BYTES, 'device profile');
    profile = parseProfile(text, file);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return problemsOutcome(file, err.problems);
  }
  const c = compileProfile(profile, opts.firmware !== undefined ? { firmware: opts.firmware } : {});
  let writes: WriteRequest[] = [];
  if (profile.modbus) {
    const failed = commandProblems(c);
    if (failed.size > 0) {
      const line = lineFinder(text);
      return problemsOutcome(
        file,
        [...failed].map(([point, message]) => ({
          file,
          path: `/modbus/points/${point}`,
          line: line(`/modbus/points/${point}`),
          message: message.replace(`profile ${profile.profile}: ${point}: `, ''),
          allowed: 'a type and scale that hold every value a command writes to the point',
        })),
      );
    }
    writes = c.encodeCommand(sampleCommand(c));
  }
  const protocols = Array.isArray(profile.protocol) ? profile.protocol : [profile.protocol];
  const out = [
    `${file}: OK — profile ${profile.profile} (${protocols.join(', ')})`,
    `  ${profile.description}`,
  ];
  if (profile.modbus) {
    const all = Object.keys(profile.modbus.points).length;
    const left = all - c.points.size;
    out.push(
      `  modbus: ${c.points.size} points${left > 0 ? ` (${left} left out: sinceFirmware above ${opts.firmware ?? 'an unknown firmware'})` : ''}, ` +
        `${c.commandPoints.size} written (${[...c.commandPoints].join(', ')})`,
    );
    const plan = c.planReads();
    out.push(`  read plan: ${plan.length} request${plan.length === 1 ? '' : 's'}`);
    for (const r of plan) {
      out.push(`    FC${r.fc} ${r.table} ${r.address} (${toModicon(r.table, r.address)}) × ${r.count}`);
    }
    out.push(`  a full command: ${writes.length} write request${writes.length === 1 ? '' : 's'}`);
    for (const w of writes) {
      out.push(
        `    FC${w.fc} ${w.table} ${w.address} (${toModicon(w.table, w.address)}) × ${w.values.length}: ${w.points.join(', ')}`,
      );
    }
  }
  if (profile.opcua) {
    out.push(
      `  opcua: ${Object.keys(profile.opcua.points).length} nodes` +
        (profile.opcua.writeCommand ? `, method ${profile.opcua.writeCommand.method}` : ''),
    );
  }
  const w = profile.watchdog;
  out.push(
    w.style === 'none'
      ? '  watchdog: none — the unit keeps the last command when coolctl stops; coolctl is the only guard'
      : `  watchdog: ${w.style} via ${w.point}` +
          (w.timeoutS !== undefined ? `, timeout ${w.timeoutS} s` : ', timeout as the unit reports it') +
          (w.refreshS !== undefined ? `, refresh every ${w.refreshS} s` : ''),
  );
  out.push(`  fencing: ${profile.fencing.join(', ')}`);
  return { exitCode: 0, text: `${out.join('\n')}\n` };
}

/**
 * Every written point that cannot carry what control may write to it, with why: the sample command,
 * then each ranged point (fan speed, setpoints, valve) at both ends of the device contract's range
 * with the others at their sample values. A scale that fits 1 % but not 100 % is a problem the unit
 * would otherwise show only at full load. One message per point, the first value that failed.
 */
function commandProblems(c: ReturnType<typeof compileProfile>): Map<string, string> {
  const failed = new Map<string, string>();
  const sample = sampleCommand(c);
  const attempt = (cmd: Record<string, number | boolean>, tried?: { point: string; shown: string }) => {
    try {
      c.encodeCommand(cmd);
    } catch (err) {
      if (!(err instanceof ProfileValueError)) throw err;
      if (!failed.has(err.point))
        failed.set(err.point, err.point === tried?.point ? `${err.message}${tried.shown}` : err.message);
    }
  };
  attempt(sample);
  for (const n of c.commandPoints) {
    const range = (POINT_RANGES as Record<string, PointRange>)[n];
    if (!range || failed.has(n)) continue;
    for (const v of [range.min, range.max])
      attempt(
        { ...sample, [n]: v },
        { point: n, shown: ` (writing ${v}, an end of its range ${rangeText(range)})` },
      );
  }
  return failed;
}

/** A command that sets every point the profile can write, each to an ordinary value. */
function sampleCommand(c: ReturnType<typeof compileProfile>): Record<string, number | boolean> {
  const cmd: Record<string, number | boolean> = {};
  for (const n of c.commandPoints) {
    const p = c.points.get(n);
    cmd[n] =
      p?.kind === 'boolean'
        ? true
        : n === 'watchdogTimerS'
          ? (c.watchdog.timeoutS ?? 60)
          : n === 'supplySetpointC'
            ? 20
            : 1;
  }
  return cmd;
}

function problemsOutcome(file: string, problems: ConfigProblem[]): CheckOutcome {
  const kept = boundedProblems(problems, file);
  const listed = kept.slice(0, MAX_LISTED_PROBLEMS).filter((p) => !p.checkingStopped);
  const { problemCount: n, checkingStopped } = problemCount(kept);
  const more = moreProblemsLine(n - listed.length, checkingStopped === true);
  const lines = [
    `${file}: ${problemCountWords(kept)}`,
    ...listed.map((p) => problemLine(shownProblem(p))),
    ...(more === undefined ? [] : [more]),
  ];
  return { exitCode: 2, text: `${lines.join('\n')}\n` };
}

function problemLine(p: ConfigProblem): string {
  return `  line ${p.line ?? '?'}: ${p.path || '/'}: ${p.message} (allowed: ${p.allowed})`;
}
