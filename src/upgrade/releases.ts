// A node's releases side by side under one root (/opt/coolctl, the .deb's layout):
// `releases/VERSION/` each with its manifest `release.json` ({version, wire, …}), `current` → the
// release the node starts from, `previous` → the one it ran before (what `rollback` goes back to).
// Invariants: a release folder appears whole or not at all (copied under a dot-name, then renamed);
// an installed release is never written over (a running node's files never change under it);
// `current` and `previous` are switched by a rename of a fresh link, so they never dangle or vanish.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  cp,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { CoolctlError, ErrorCodes } from '../errors.ts';
import { parseWireRange, type WireRange } from '../version.ts';

const run = promisify(execFile);

/** What a release folder's `release.json` says; the bundle's own fields (arch, commit, …) are kept. */
export interface ReleaseManifest {
  version: string;
  /** The wire versions the release speaks (its src/version.ts WIRE), read at install. */
  wire: WireRange;
  [field: string]: unknown;
}

export interface InstalledRelease {
  version: string;
  dir: string;
  manifest: ReleaseManifest;
  current: boolean;
  previous: boolean;
}

/** Where a release's version module is: a packaged bundle's compiled one, else a source tree's. */
const VERSION_MODULES = ['dist/src/version.js', 'src/version.ts'];
/** What starts a release: the bundle's compiled CLI, else the source tree's. */
const ENTRIES = ['dist/src/cli.js', 'src/cli.ts'];
/** A version is a folder name: no separators, no dot-names, nothing a shell or a path would bend. */
const VERSION_NAME = /^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$/;

function invalid(message: string, cause?: unknown): CoolctlError {
  return new CoolctlError(ErrorCodes.RELEASE_INVALID, message, cause === undefined ? {} : { cause });
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

async function firstExisting(dir: string, names: readonly string[]): Promise<string | null> {
  for (const n of names) if (await exists(join(dir, n))) return join(dir, n);
  return null;
}

/**
 * The manifest of a release folder: its `release.json`, with the wire range its version module
 * states (VERSION and WIRE, as the release itself reports them). A folder whose manifest and
 * module disagree on the version, or that states no usable wire range, is refused.
 */
export async function readReleaseDir(dir: string): Promise<ReleaseManifest> {
  let stated: Record<string, unknown> = {};
  const manifestFile = join(dir, 'release.json');
  if (await exists(manifestFile)) {
    try {
      const parsed: unknown = JSON.parse(await readFile(manifestFile, 'utf8'));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
        throw new Error('not a JSON object');
      stated = parsed as Record<string, unknown>;
    } catch (err) {
      throw invalid(`${manifestFile}: ${(err as Error).message}`, err);
    }
  }
  if (!(await firstExisting(dir, ENTRIES)))
    throw invalid(`${dir} is not a coolctl release: it has neither ${ENTRIES.join(' nor ')}`);
  let fromModule: { version: string; wire: WireRange } | null = null;
  const module = await firstExisting(dir, VERSION_MODULES);
  if (module) {
    // The release's own statement of what it speaks: a module without side effects (src/version.ts).
    let m: { VERSION?: unknown; WIRE?: { version?: unknown; oldest?: unknown } };
    try {
      m = (await import(pathToFileURL(module).href)) as typeof m;
    } catch (err) {
      throw invalid(`${module}: cannot be loaded: ${(err as Error).message}`, err);
    }
    const wire = parseWireRange(m.WIRE?.version, m.WIRE?.oldest);
    if (typeof m.VERSION !== 'string' || !wire)
      throw invalid(`${module}: states no VERSION string and WIRE {version, oldest}`);
    fromModule = { version: m.VERSION, wire };
  }
  const version = typeof stated.version === 'string' ? stated.version : fromModule?.version;
  if (!version)
    throw invalid(`${dir}: no release.json version and no version module (${VERSION_MODULES.join(', ')})`);
  if (fromModule && fromModule.version !== version)
    throw invalid(`${dir}: release.json says ${version}, ${module} says ${fromModule.version}`);
  if (!VERSION_NAME.test(version)) throw invalid(`${dir}: version "${version}" cannot name a release folder`);
  const statedWire = stated.wire as { version?: unknown; oldest?: unknown } | undefined;
  const wire = statedWire ? parseWireRange(statedWire.version, statedWire.oldest) : fromModule?.wire;
  if (!wire)
    throw invalid(`${dir}: no usable wire range (release.json "wire" or ${VERSION_MODULES.join(', ')})`);
  if (fromModule && (fromModule.wire.version !== wire.version || fromModule.wire.oldest !== wire.oldest))
    throw invalid(
      `${dir}: release.json says wire ${wire.oldest}..${wire.version}, the version module ${fromModule.wire.oldest}..${fromModule.wire.version}`,
    );
  return { ...stated, version, wire };
}

export class ReleaseStore {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  get releasesDir(): string {
    return join(this.root, 'releases');
  }

  dirOf(version: string): string {
    if (!VERSION_NAME.test(version)) throw invalid(`"${version}" is not a release version`);
    return join(this.releasesDir, version);
  }

  /**
   * Installs a release folder or a bundle tarball (.tar.gz, one folder inside) beside the others.
   * An already installed version is left as it is (`installed: false`): never written over.
   */
  async install(source: string): Promise<{ release: InstalledRelease; installed: boolean }> {
    await mkdir(this.releasesDir, { recursive: true });
    if (/\.(tar\.gz|tgz)$/.test(source)) {
      const unpacked = await mkdtemp(join(this.releasesDir, '.unpack-'));
      try {
        await run('tar', ['-xzf', source, '-C', unpacked], { timeout: 300_000 }).catch((err: unknown) => {
          throw invalid(`${source}: cannot be unpacked: ${(err as Error).message}`, err);
        });
        const inside = (await readdir(unpacked)).filter((n) => !n.startsWith('.'));
        const dir = inside.length === 1 ? join(unpacked, inside[0]!) : unpacked;
        return await this.install(dir);
      } finally {
        await rm(unpacked, { recursive: true, force: true });
      }
    }
    const manifest = await readReleaseDir(source);
    const target = this.dirOf(manifest.version);
    if (await exists(target)) return { release: await this.get(manifest.version), installed: false };
    const staging = join(this.releasesDir, `.install-${manifest.version}-${randomBytes(6).toString('hex')}`);
    try {
      // Links are copied as links: a bundle's node_modules/.bin, a test build's node_modules.
      await cp(source, staging, {
        recursive: true,
        verbatimSymlinks: true,
        force: false,
        errorOnExist: true,
      });
      await writeFile(join(staging, 'release.json'), `${JSON.stringify(manifest, null, 2)}\n`);
      await rename(staging, target);
    } catch (err) {
      await rm(staging, { recursive: true, force: true });
      if (err instanceof CoolctlError) throw err;
      throw invalid(`${source} → ${target}: ${(err as Error).message}`, err);
    }
    return { release: await this.get(manifest.version), installed: true };
  }

  /** The release a link (`current`, `previous`) points at, or null when there is none. */
  async linked(name: 'current' | 'previous'): Promise<string | null> {
    const target = await readlink(join(this.root, name)).catch(() => null);
    if (target === null) return null;
    const m = /(?:^|\/)releases\/([^/]+)\/?$/.exec(target);
    return m ? m[1]! : null;
  }

  async get(version: string): Promise<InstalledRelease> {
    const dir = this.dirOf(version);
    if (!(await exists(dir))) throw invalid(`release ${version} is not installed under ${this.releasesDir}`);
    const [manifest, current, previous] = await Promise.all([
      readInstalledManifest(dir),
      this.linked('current'),
      this.linked('previous'),
    ]);
    return { version, dir, manifest, current: current === version, previous: previous === version };
  }

  /** Every installed release, oldest name first (a folder without a usable manifest is skipped). */
  async list(): Promise<InstalledRelease[]> {
    const names = await readdir(this.releasesDir).catch(() => [] as string[]);
    const out: InstalledRelease[] = [];
    for (const n of names.sort()) {
      if (n.startsWith('.') || !VERSION_NAME.test(n)) continue;
      const r = await this.get(n).catch(() => null);
      if (r) out.push(r);
    }
    return out;
  }

  /**
   * Points `current` at `version` (and `previous` at what `current` was). A node already running
   * keeps the files it loaded; it starts on `version` at its next start.
   */
  async activate(version: string): Promise<{ from: string | null; to: string }> {
    await this.get(version);
    const from = await this.linked('current');
    if (from === version) return { from, to: version };
    // `previous` first: a crash between the two renames leaves previous == current, never a
    // `previous` that names a release the node never ran.
    if (from !== null) await this.link('previous', from);
    await this.link('current', version);
    return { from, to: version };
  }

  /** `name` → releases/VERSION, relative (the .deb's links are too), swapped in by one rename. */
  private async link(name: 'current' | 'previous', version: string): Promise<void> {
    const tmp = join(this.root, `.${name}.${process.pid}.${Date.now()}`);
    await rm(tmp, { force: true });
    await symlink(`releases/${version}`, tmp);
    try {
      await rename(tmp, join(this.root, name));
    } catch (err) {
      await rm(tmp, { force: true });
      throw invalid(`cannot point ${join(this.root, name)} at ${version}: ${(err as Error).message}`, err);
    }
  }
}

/** An installed release's manifest: written at install, so only read (and checked) here. */
async function readInstalledManifest(dir: string): Promise<ReleaseManifest> {
  const file = join(dir, 'release.json');
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw invalid(
      `${file}: ${(err as Error).message} (install the release with coolctl release install)`,
      err,
    );
  }
  const w = parsed.wire as { version?: unknown; oldest?: unknown } | undefined;
  const wire = parseWireRange(w?.version, w?.oldest);
  if (typeof parsed.version !== 'string' || !wire)
    throw invalid(
      `${file}: no version and wire {version, oldest} (install the release with coolctl release install)`,
    );
  return { ...parsed, version: parsed.version, wire };
}
