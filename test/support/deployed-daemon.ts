// The daemon as deploy/systemd/coolctl@.service runs it: the unit's Node flags and the built entry
// point (`npm run build` → dist/), read from the unit's ExecStart, and its Environment= lines, so
// that the test that starts it and the scale bench run what a gateway runs, not the TypeScript
// sources.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './repo.ts';

const UNIT_FILE = join(REPO_ROOT, 'deploy/systemd/coolctl@.service');
const INSTALL_DIR = '/opt/coolctl/';

/** How a controller is started: Node's flags, the entry point and the environment it adds. */
export interface DaemonCommand {
  nodeFlags: string[];
  script: string;
  env: Record<string, string>;
}

/**
 * The daemon as the systemd unit runs it — Node's flags and the built entry point (`npm run
 * build`), read from the unit's ExecStart, and the variables of its `Environment=` lines (one
 * `NAME=value` each) — so the bench measures what a gateway runs.
 */
export function deployedDaemon(): DaemonCommand {
  const unit = readFileSync(UNIT_FILE, 'utf8');
  const line = unit.split('\n').find((l) => l.startsWith('ExecStart='));
  if (!line) throw new Error(`${UNIT_FILE}: no ExecStart`);
  const [, ...rest] = line.slice('ExecStart='.length).trim().split(/\s+/);
  const nodeFlags = rest.filter(
    (t, i) => t.startsWith('--') && rest.slice(0, i).every((p) => p.startsWith('--')),
  );
  const script = rest[nodeFlags.length];
  if (!script?.startsWith(INSTALL_DIR)) throw new Error(`${UNIT_FILE}: cannot find the script in ${line}`);
  const env: Record<string, string> = {};
  for (const l of unit.split('\n')) {
    const m = /^Environment=([A-Za-z_][A-Za-z0-9_]*)=(\S*)$/.exec(l.trim());
    if (m) env[m[1]!] = m[2]!;
    else if (l.startsWith('Environment=')) throw new Error(`${UNIT_FILE}: cannot read ${l}`);
  }
  return { nodeFlags, script: join(REPO_ROOT, script.slice(INSTALL_DIR.length)), env };
}

/** Builds dist/ (`npm run build`), which deployedDaemon() runs. */
export function buildDaemon(): void {
  const r = spawnSync('npm', ['run', '--silent', 'build'], { cwd: REPO_ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`npm run build failed:\n${r.stdout}${r.stderr}`);
}
