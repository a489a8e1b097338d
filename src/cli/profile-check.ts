// `coolctl profile check FILE`: loads a device profile and says either what it is — its points, the
// requests one status read takes, how a command is written, its watchdog and fencing — or every
// problem with its line. Returns the text and the exit code; the CLI entry point prints them.
import { compileProfile, type WriteRequest } from '../devices/profile/codec.ts';
import { loadProfile } from '../devices/profile/load.ts';
import { toModicon } from '../devices/profile/modicon.ts';
import { ConfigError } from '../errors.ts';

export interface CheckOutcome {
  /** 2 for a profile with problems: an invalid config file, as `config validate` and `site import` say. */
  exitCode: 0 | 2;
  text: string;
}

export async function profileCheck(file: string, opts: { firmware?: string } = {}): Promise<CheckOutcome> {
  let profile: Awaited<ReturnType<typeof loadProfile>>;
  try {
    profile = await loadProfile(file);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const lines = [`${file}: ${err.problems.length} problem(s)`, ...err.problems.map(problemLine)];
    return { exitCode: 2, text: `${lines.join('\n')}\n` };
  }
  const c = compileProfile(profile, opts.firmware !== undefined ? { firmware: opts.firmware } : {});
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
    const writes = sampleWrites(c);
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

/** The writes of a command that sets every point the profile can write. */
function sampleWrites(c: ReturnType<typeof compileProfile>): WriteRequest[] {
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
  return c.encodeCommand(cmd);
}

function problemLine(p: ConfigError['problems'][number]): string {
  return `  line ${p.line ?? '?'}: ${p.path || '/'}: ${p.message} (allowed: ${p.allowed})`;
}
