// What the package tests and bench share: the release built once (`npm run package --
// --if-changed`: built again only when its inputs changed), a packaged unit's command line with
// its paths moved into a staged root, a node of a running hall replaced by a packaged one, and the
// figures of a running process from /proc. qemu-user runs the arm64 runtime on this machine.
import { type ChildProcess, execFile, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { copyFile, cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parse, stringify } from 'yaml';
import { type ReleaseFiles, releaseFiles } from '../../scripts/package.ts';
import { waitFor } from '../helpers.ts';
import { spawnLogged } from '../support/hall.ts';
import { REPO_ROOT } from '../support/repo.ts';

const exec = promisify(execFile);

export const QEMU = 'qemu-aarch64-static';
/** Where Debian's libc6-arm64-cross and libstdc++6-arm64-cross put the arm64 loader and libraries. */
export const ARM64_SYSROOT = '/usr/aarch64-linux-gnu';

/** Builds the release unless release/VERSION already holds one of these very inputs. */
export async function buildRelease(): Promise<ReleaseFiles> {
  await exec(process.execPath, [join(REPO_ROOT, 'scripts/package.ts'), '--if-changed'], {
    cwd: REPO_ROOT,
    timeout: 600_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string })
    .version;
  return releaseFiles(join(REPO_ROOT, 'release'), version, ['arm64', 'x64']);
}

/** Why arm64 code cannot run here (qemu-user or the arm64 libraries missing), or null. */
export function qemuProblem(arm64Node: string): string | null {
  if (!existsSync(join(ARM64_SYSROOT, 'lib/ld-linux-aarch64.so.1')))
    return `no arm64 loader in ${ARM64_SYSROOT} (Debian's libc6-arm64-cross)`;
  const r = spawnSync(QEMU, ['-L', ARM64_SYSROOT, arm64Node, '--version'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.error) return `${QEMU} cannot run: ${r.error.message}`;
  if (r.status !== 0) return `${QEMU} ran the arm64 node, which exited ${r.status}: ${r.stderr.trim()}`;
  return null;
}

/** Node and its arguments for the arm64 runtime `node` under qemu-user (what bin/coolctl runs). */
export function underQemu(node: string, args: string[]): { cmd: string; args: string[] } {
  return { cmd: QEMU, args: ['-L', ARM64_SYSROOT, node, ...args] };
}

export interface UnitCommand {
  cmd: string;
  args: string[];
  env: Record<string, string>;
}

/**
 * A unit's ExecStart and Environment= lines for instance `instance`, with /opt/coolctl and
 * /etc/coolctl moved to `opt` and `etc` (a staged root), or with `release` for both /opt/coolctl
 * and /opt/coolctl/current (an unpacked bundle, which is one release).
 */
export function unitCommand(
  unitFile: string,
  o: { instance: string; etc: string } & ({ opt: string } | { release: string }),
): UnitCommand {
  const unit = readFileSync(unitFile, 'utf8');
  const opt = 'opt' in o ? o.opt : o.release;
  const current = 'opt' in o ? join(o.opt, 'current') : o.release;
  const move = (t: string) =>
    t
      .replaceAll('%i', o.instance)
      .replace(/^\/opt\/coolctl\/current(?=\/|$)/, current)
      .replace(/^\/opt\/coolctl(?=\/|$)/, opt)
      .replace(/^\/etc\/coolctl(?=\/|$)/, o.etc);
  const exec = unit.split('\n').find((l) => l.startsWith('ExecStart='));
  if (!exec) throw new Error(`${unitFile}: no ExecStart`);
  const [cmd, ...args] = exec.slice('ExecStart='.length).trim().split(/\s+/).map(move);
  const env: Record<string, string> = {};
  for (const l of unit.split('\n')) {
    const m = /^Environment=([A-Za-z_][A-Za-z0-9_]*)=(\S*)$/.exec(l.trim());
    if (m) env[m[1]!] = m[2]!;
  }
  return { cmd: cmd!, args, env };
}

/** What startLogged writes before each start: a node's log may hold an earlier process's lines. */
const START_MARK = '--- packaged start at ';

/**
 * A process started with its output appended to `logPath` (after a start mark), as the hall logs
 * its controllers.
 */
export function startLogged(
  c: { cmd: string; args: string[] },
  logPath: string,
  env: NodeJS.ProcessEnv,
  cwd = REPO_ROOT,
): ChildProcess {
  appendFileSync(logPath, `${START_MARK}${new Date().toISOString()}: ${c.cmd} ---\n`);
  return spawnLogged(c.cmd, c.args, logPath, env, cwd);
}

/**
 * Waits until the node's log says, since its start mark, that it runs (or it exits: then throws
 * with the log's tail). Returns the ms it waited.
 */
export async function waitRunning(
  child: ChildProcess,
  node: string,
  logPath: string,
  timeoutMs: number,
): Promise<number> {
  const t0 = performance.now();
  await waitFor(
    `${node} to say it runs`,
    async () => {
      const all = await readFile(logPath, 'utf8').catch(() => '');
      const log = all.slice(all.lastIndexOf(START_MARK));
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`${node} exited ${child.exitCode ?? child.signalCode}:\n${log.slice(-3000)}`);
      return log.includes(`coolctl: node ${node} running`);
    },
    { timeoutMs, intervalMs: 100 },
  );
  return performance.now() - t0;
}

/** SIGTERM, then the exit code (SIGKILL and null after `timeoutMs`). */
export async function stop(child: ChildProcess, timeoutMs: number): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill('SIGTERM');
  const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), timeoutMs).unref());
  if ((await Promise.race([exited, timer])) === 'timeout') {
    child.kill('SIGKILL');
    await exited;
    return null;
  }
  return exited;
}

/** RSS (MB) and CPU time used so far (s) of a running process, from /proc. */
export function procFigures(pid: number): { rssMb: number; cpuS: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? Number.NaN);
  // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return { rssMb: rssKb / 1024, cpuS: ticks / 100 };
}

/**
 * The hall's config of `node` as a packaged node reads it: the site file and the cluster secret
 * copied into `etcDir` (where an operator puts them: /etc/coolctl), dataDir under `stateDir`
 * (/var/lib/coolctl/{node}) with the OPC-UA certificates the hall put in the node's data dir (the
 * secure hall's trusted one). The hall's other paths are absolute already. Returns its path.
 */
export async function packagedNodeConfig(o: {
  hallDir: string;
  node: string;
  etcDir: string;
  stateDir: string;
}): Promise<string> {
  const cfg = parse(await readFile(join(o.hallDir, `${o.node}.yaml`), 'utf8')) as {
    site: string;
    cluster: { secretFile?: string };
    dataDir?: string;
  };
  await mkdir(o.etcDir, { recursive: true });
  await copyFile(resolve(o.hallDir, cfg.site), join(o.etcDir, 'site.yaml'));
  cfg.site = join(o.etcDir, 'site.yaml');
  if (cfg.cluster.secretFile) {
    await copyFile(resolve(o.hallDir, cfg.cluster.secretFile), join(o.etcDir, 'cluster.secret'));
    cfg.cluster.secretFile = join(o.etcDir, 'cluster.secret');
  }
  cfg.dataDir = join(o.stateDir, '{node}');
  // Only the certificates: the rest of a node's data dir (its lock, its lease id) is its own.
  const pki = join(o.hallDir, 'var', o.node, 'opcua-pki');
  if (existsSync(pki)) await cp(pki, join(o.stateDir, o.node, 'opcua-pki'), { recursive: true });
  const file = join(o.etcDir, 'controller.yaml');
  await writeFile(file, stringify(cfg));
  return file;
}

/** How long a process has run (s), from its start time in /proc (clock ticks since boot). */
export function procLifeS(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const startTicks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  const uptimeS = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  return uptimeS - startTicks / 100;
}
