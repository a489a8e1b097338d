// One release bundle in a staging folder: the compiled JavaScript, the packages its code imports
// (copied from node_modules at their locked versions, native prebuilds for the target only), the
// target's Node runtime and a launcher; then a reproducible .tar.gz of it. Invariants: every ELF
// file in a bundle is for the bundle's architecture, and nothing in it needs the network.
import { spawn } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  cpSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  symlinkSync,
} from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import type { Target } from './deps.ts';

/** Files a running bundle never reads: type declarations, source maps, TypeScript sources. */
const UNUSED_FILE = /\.(d\.[cm]?ts|[cm]?ts|map)$/;

/**
 * Copies each package of `lockPaths` (lock keys: `node_modules/a/node_modules/b`) from `repo` to
 * the same place under `dest`. A package's own nested node_modules are copied only as their own
 * entries, so a bundle holds exactly the closure. Prebuilt native addons (`prebuilds/<os>-<cpu>`)
 * are kept for `target` only.
 */
export function copyPackages(repo: string, lockPaths: string[], dest: string, target: Target): void {
  const wantedPrebuild = `${target.os}-${target.cpu}`;
  for (const p of lockPaths) {
    const from = join(repo, p);
    cpSync(from, join(dest, p), {
      recursive: true,
      verbatimSymlinks: true,
      filter: (src) => {
        const rel = relative(from, src);
        if (rel === '') return true;
        const parts = rel.split('/');
        if (parts[0] === 'node_modules') return false;
        const prebuilds = parts.indexOf('prebuilds');
        if (prebuilds >= 0 && parts.length > prebuilds + 1 && parts[prebuilds + 1] !== wantedPrebuild)
          return false;
        return !UNUSED_FILE.test(basename(src));
      },
    });
  }
}

// ELF e_machine values (the architectures a bundle is built for).
const ELF_MACHINE: Record<string, number> = { x64: 0x3e, arm64: 0xb7 };

/** Every ELF file under `dir` whose machine is not `cpu`'s, as paths relative to `dir`. */
export function foreignBinaries(dir: string, cpu: string): string[] {
  const want = ELF_MACHINE[cpu];
  if (want === undefined) throw new Error(`no ELF machine known for ${cpu}`);
  const bad: string[] = [];
  const head = Buffer.alloc(20);
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const file = join(e.parentPath, e.name);
    const fd = openSync(file, 'r');
    let n = 0;
    try {
      n = readSync(fd, head, 0, 20, 0);
    } finally {
      closeSync(fd);
    }
    if (n < 20 || head.readUInt32BE(0) !== 0x7f454c46) continue;
    if (head.readUInt16LE(18) !== want) bad.push(relative(dir, file));
  }
  return bad;
}

/** Writes an executable launcher `bin/NAME` that runs the release's own Node on `script`. */
export function writeLauncher(bundle: string, name: string, launcherSource: string): void {
  mkdirSync(join(bundle, 'bin'), { recursive: true });
  cpSync(launcherSource, join(bundle, 'bin', name));
  chmodSync(join(bundle, 'bin', name), 0o755);
}

/**
 * `node_modules/.bin/node` → the bundled runtime: the systemd units run
 * /opt/coolctl/node_modules/.bin/node, the path a development install has too.
 */
export function linkNodeBin(bundle: string): void {
  mkdirSync(join(bundle, 'node_modules/.bin'), { recursive: true });
  symlinkSync('../../node/bin/node', join(bundle, 'node_modules/.bin/node'));
}

/** Runs a command to its end; rejects with its stderr on a non-zero exit. */
export function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => {
      stderr += c;
    });
    child.once('error', reject);
    child.once('exit', (code, signal) =>
      code === 0
        ? resolve()
        : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code ?? signal}\n${stderr}`)),
    );
  });
}

/**
 * A reproducible .tar.gz of `dir` (its name the top folder): sorted, owned by root, one mtime,
 * permissions without group or world write.
 */
export function tarGz(dir: string, out: string, mtimeS: number): Promise<void> {
  mkdirSync(dirname(out), { recursive: true });
  return run('tar', [
    '--sort=name',
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    `--mtime=@${mtimeS}`,
    '--mode=go-w',
    '-C',
    dirname(dir),
    '-cf',
    out,
    '-I',
    'gzip -6 -n',
    basename(dir),
  ]);
}
