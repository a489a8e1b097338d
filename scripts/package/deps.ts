// Which npm packages a bundle ships: the bare imports its compiled JavaScript really makes (read
// from the files, not from package.json), closed over package-lock.json the way Node resolves a
// name (nearest node_modules first, then each parent's). Invariant: a bundle holds every package
// its code can load on the target platform, at the locked version, and nothing else.
import { readdirSync, readFileSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { dirname, join, resolve } from 'node:path';

/** One package-lock.json v3 entry (the fields the closure needs). */
interface LockEntry {
  version?: string;
  dev?: boolean;
  optional?: boolean;
  cpu?: string[];
  os?: string[];
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

export interface Lock {
  packages: Record<string, LockEntry>;
}

export function readLock(repo: string): Lock {
  const lock = JSON.parse(readFileSync(join(repo, 'package-lock.json'), 'utf8')) as Lock & {
    lockfileVersion: number;
  };
  if (lock.lockfileVersion < 2) throw new Error('package-lock.json: lockfileVersion 2 or 3 needed');
  return lock;
}

// import … from 'x' | export … from 'x' | import 'x' | import('x') | require('x') | createRequire(…)('x')
const SPECIFIER =
  /(?:\bfrom\s*|\bimport\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|\)\s*\(\s*)(['"])([^'"\n]+)\1/g;

/** The package name of a bare specifier ('@s/p/x' → '@s/p', 'p/x' → 'p'); null for paths and builtins. */
export function packageOf(specifier: string): string | null {
  if (specifier.startsWith('.') || specifier.startsWith('/') || isBuiltin(specifier)) return null;
  if (!/^(@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.-]*(\/|$)/i.test(specifier)) return null;
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
}

function jsFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && /\.[cm]?js$/.test(e.name))
    .map((e) => join(e.parentPath, e.name));
}

/** What the compiled files reachable from some entries import. */
export interface Imports {
  /** Each imported package, with the first file that imports it. */
  packages: Map<string, string>;
  /** Every compiled file reached (the entries and the relative imports they lead to). */
  files: Set<string>;
}

/**
 * The packages the compiled files reachable from `entries` (files, or folders taken whole) import:
 * relative imports are followed, so a simulator entry pulls in only the src/ modules it uses.
 */
export function importedPackages(entries: string[]): Imports {
  const files = new Set<string>();
  const queue = entries.flatMap((e) => (/\.[cm]?js$/.test(e) ? [resolve(e)] : jsFiles(e)));
  const packages = new Map<string, string>();
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (files.has(file)) continue;
    files.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(SPECIFIER)) {
      const spec = m[2]!;
      if (spec.startsWith('.')) {
        // Only compiled modules are followed (a './ui/x' asset URL is not an import).
        if (/\.[cm]?js$/.test(spec)) queue.push(resolve(dirname(file), spec));
        continue;
      }
      const name = packageOf(spec);
      if (name && !packages.has(name)) packages.set(name, file);
    }
  }
  return { packages, files };
}

/** Where Node finds `name` from the package installed at `from` ('' is the project root). */
function resolveIn(lock: Lock, from: string, name: string): string | null {
  let at = from;
  for (;;) {
    const candidate = at ? `${at}/node_modules/${name}` : `node_modules/${name}`;
    if (lock.packages[candidate]) return candidate;
    if (!at) return null;
    const i = at.lastIndexOf('/node_modules/');
    at = i < 0 ? '' : at.slice(0, i);
  }
}

export interface Target {
  /** Node's names: linux, arm64 | x64. */
  os: string;
  cpu: string;
}

/** npm's rule for a package's `os` and `cpu` lists: a `!name` excludes, any plain name must match. */
function allows(list: string[] | undefined, value: string): boolean {
  if (!list || list.length === 0) return true;
  if (list.includes(`!${value}`)) return false;
  const wanted = list.filter((x) => !x.startsWith('!'));
  return wanted.length === 0 || wanted.includes(value);
}

function fits(entry: LockEntry, target: Target): boolean {
  return allows(entry.os, target.os) && allows(entry.cpu, target.cpu);
}

/**
 * Every lock path (e.g. `node_modules/a/node_modules/b`) the `roots` need on `target`: their
 * dependencies, optional ones that fit the platform, and peers that are installed. A missing
 * required dependency is an error (the lock and the code disagree), never a silent gap.
 */
export function closure(lock: Lock, roots: Iterable<string>, target: Target): string[] {
  const out = new Set<string>();
  const queue: { from: string; name: string; optional: boolean; via: string }[] = [];
  for (const name of roots) queue.push({ from: '', name, optional: false, via: 'the code' });
  while (queue.length > 0) {
    const { from, name, optional, via } = queue.shift()!;
    const path = resolveIn(lock, from, name);
    if (!path) {
      if (optional) continue;
      throw new Error(`package-lock.json has no ${name} (needed by ${via}): run npm install`);
    }
    const entry = lock.packages[path]!;
    if (!fits(entry, target)) {
      if (optional) continue;
      throw new Error(`${path} does not run on ${target.os}-${target.cpu} (needed by ${via})`);
    }
    if (out.has(path)) continue;
    out.add(path);
    for (const d of Object.keys(entry.dependencies ?? {}))
      queue.push({ from: path, name: d, optional: false, via: path });
    for (const d of Object.keys(entry.optionalDependencies ?? {}))
      queue.push({ from: path, name: d, optional: true, via: path });
    for (const d of Object.keys(entry.peerDependencies ?? {}))
      queue.push({ from: path, name: d, optional: true, via: path });
  }
  return [...out].sort();
}
