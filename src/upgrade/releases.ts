// A node's releases side by side under one root (/opt/coolctl, the .deb's layout):
// `releases/VERSION/` each with its manifest `release.json` ({version, wire, …}), `current` → the
// release the node starts from, `previous` → the one it ran before (what `rollback` goes back to).
// Invariants: a release folder appears whole or not at all (copied under a dot-name, then renamed);
// an installed release is never written over (a running node's files never change under it);
// `current` and `previous` are switched by a rename of a fresh link, so they never dangle or vanish;
// an activation or a restore cut short between its two switches leaves `previous` == `current`, never
// a `previous` naming a release the node never ran or just failed on (`activate` with an explicit
// `previous` is how a failed upgrade step puts a node's links back as they were).
// A release is refused before anything is copied when it is for another OS or CPU than this host's,
// or when a tarball has a SHA256SUMS beside it (as `npm run package` writes one) that it does not
// match; an installed release's files belong to the installer and nobody else may write them, whatever
// owners and modes its tarball or folder carried (the code runs as the service and as root's CLI).
// A root that cannot be written (full, read-only) fails with RELEASE_INVALID naming the path and the
// errno, and leaves no staging folder or link behind. What is refused for what it was given (no
// release, damaged, for another host, a version not installed) is an InputRefusedError; what failed
// on this host is not (the CLI's exit 2 and 1).
// What a release holds is read, never run, and never written through: install runs as root on a
// bundle nobody has vetted yet. A tarball is listed before it is unpacked and refused when a member
// would land outside its one top folder (an absolute or `..` name, a link that leaves the release),
// is not a file, folder or link (a device, a FIFO), or the whole would unpack to more than
// MAX_UNPACKED_BYTES; `release.json` and the version module must be plain files of the release.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import {
  chmod,
  cp,
  lchown,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  realpath,
  rename,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { basename, dirname, join, posix } from 'node:path';
import { promisify } from 'node:util';
import { CoolctlError, ErrorCodes, InputRefusedError } from '../errors.ts';
import { pidExists } from '../util/pid.ts';
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
/**
 * Says "no release" where a version is expected (`release activate V --previous none`, a command
 * template's `{previous}`), so no release may be called this.
 */
export const NO_RELEASE = 'none';
/**
 * The most a bundle tarball may unpack to, and the most members it may have. A bundle (compiled JS,
 * its packages, Node itself) unpacks to a few hundred MB; a gateway's SD card holds a few GB, so a
 * tarball that would fill it (a few KB of gzip can say 100 GB of zeros) is refused before unpacking.
 */
export const MAX_UNPACKED_BYTES = 2 * 1024 ** 3;
export const MAX_MEMBERS = 200_000;

/**
 * VERSION and WIRE as a version module states them (src/version.ts, or tsc's dist/src/version.js):
 * `export const VERSION = '…';` and `export const WIRE… = Object.freeze({ version: N, oldest: M })`.
 */
function statedVersion(text: string): { VERSION?: string; WIRE?: { version?: number; oldest?: number } } {
  const version = /^export const VERSION(?:\s*:\s*string)?\s*=\s*(['"])([^'"\n]*)\1;?\s*$/m.exec(text);
  const wire = /^export const WIRE(?:\s*:\s*\w+)?\s*=\s*(?:Object\.freeze\()?\{([^}]*)\}\)?;?\s*$/m.exec(
    text,
  )?.[1];
  const field = (name: string) => {
    const m =
      wire === undefined ? null : new RegExp(`(?:^|[\\s,{])${name}\\s*:\\s*(\\d+)\\s*(?:,|$)`).exec(wire);
    return m ? Number(m[1]) : undefined;
  };
  return {
    ...(version ? { VERSION: version[2]! } : {}),
    ...(wire !== undefined ? { WIRE: { version: field('version'), oldest: field('oldest') } } : {}),
  } as { VERSION?: string; WIRE?: { version?: number; oldest?: number } };
}

/** The folder, tarball or version given is not a release this host can install or run. */
function invalid(message: string, cause?: unknown): CoolctlError {
  return new InputRefusedError(ErrorCodes.RELEASE_INVALID, message, cause === undefined ? {} : { cause });
}

/** A good release this host could not install or switch to (a full or read-only root, a copy cut short). */
function failed(message: string, cause?: unknown): CoolctlError {
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
    // A link would be read from elsewhere and, at install, written through (an outside file rewritten).
    if (!(await lstat(manifestFile)).isFile()) throw invalid(`${manifestFile}: is not a plain file`);
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
    // The release's own statement of what it speaks, read as text: importing it would run the
    // bundle's code, as root, before anyone chose to run that release.
    if (!(await lstat(module)).isFile()) throw invalid(`${module}: is not a plain file`);
    let m: { VERSION?: unknown; WIRE?: { version?: unknown; oldest?: unknown } };
    try {
      m = statedVersion(await readFile(module, 'utf8'));
    } catch (err) {
      throw invalid(`${module}: cannot be read: ${(err as Error).message}`, err);
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
  if (!VERSION_NAME.test(version) || version === NO_RELEASE)
    throw invalid(`${dir}: version "${version}" cannot name a release folder`);
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
    await mkdir(this.releasesDir, { recursive: true }).catch((err: unknown) => {
      throw failed(`cannot create ${this.releasesDir}: ${(err as Error).message}`, err);
    });
    await this.sweepDeadStaging();
    if (/\.(tar\.gz|tgz)$/.test(source)) {
      await checkSums(source);
      const top = await checkMembers(source);
      const unpacked = await mkdtemp(join(this.releasesDir, `.unpack-${process.pid}-`)).catch(
        (err: unknown) => {
          throw failed(
            `${source}: cannot be unpacked in ${this.releasesDir}: ${(err as Error).message}`,
            err,
          );
        },
      );
      try {
        // Root's tar would keep the archive's owners and modes: a foreign uid or a world-writable
        // file in the code the service runs. Both are reset here and again by sealRelease.
        const tarArgs = ['--no-same-owner', '--no-same-permissions', '-xzf', source, '-C', unpacked];
        await run('tar', tarArgs, { timeout: 300_000 }).catch(async (err: unknown) => {
          // A tarball tar cannot even list is not a release; one it lists but cannot unpack here
          // failed on this host (a full or read-only root).
          const listed = await run('tar', ['-tzf', source], { timeout: 300_000, maxBuffer: 64 << 20 }).then(
            () => true,
            () => false,
          );
          throw (listed ? failed : invalid)(`${source}: cannot be unpacked: ${(err as Error).message}`, err);
        });
        // Checked again on what tar wrote: the one top folder, a real folder (not a link out).
        const dir = join(unpacked, top);
        if (
          !(await lstat(dir).then(
            (st) => st.isDirectory(),
            () => false,
          ))
        )
          throw invalid(`${source}: ${top} is not a folder`);
        await checkTree(dir, source, { linksMayLeave: false });
        return await this.installFolder(dir, source);
      } finally {
        await rm(unpacked, { recursive: true, force: true });
      }
    }
    // A folder the operator named: follow the name (a link to the stick's release is fine), then
    // copy the folder itself, never the link (which would install a pointer to someone else's files).
    const dir = await realpath(source).catch((err: unknown) => {
      throw invalid(`${source} is not a coolctl release: ${(err as Error).message}`, err);
    });
    if (!(await lstat(dir)).isDirectory())
      throw invalid(`${source} is not a coolctl release: not a folder or a .tar.gz`);
    // A folder may link outside itself (a source build's node_modules); a tarball may not.
    await checkTree(dir, source, { linksMayLeave: true });
    return await this.installFolder(dir, source);
  }

  /** Installs the checked release folder `source`; `shownAs` is what messages call it. */
  private async installFolder(
    source: string,
    shownAs: string,
  ): Promise<{ release: InstalledRelease; installed: boolean }> {
    const manifest = await readReleaseDir(source);
    const foreign = platformMismatch(manifest);
    if (foreign) throw invalid(`${shownAs}: ${foreign}`);
    const target = this.dirOf(manifest.version);
    if (await exists(target)) return { release: await this.get(manifest.version), installed: false };
    const staging = join(
      this.releasesDir,
      `.install-${manifest.version}-${process.pid}-${randomBytes(6).toString('hex')}`,
    );
    let renamed = false;
    try {
      // Links are copied as links: a bundle's node_modules/.bin, a test build's node_modules.
      await cp(source, staging, {
        recursive: true,
        verbatimSymlinks: true,
        force: false,
        errorOnExist: true,
      });
      // Removed first and created new: never written through whatever the copy put there.
      await rm(join(staging, 'release.json'), { force: true });
      await writeFile(join(staging, 'release.json'), `${JSON.stringify(manifest, null, 2)}\n`, {
        flag: 'wx',
      });
      await sealRelease(staging);
      await rename(staging, target).then(
        () => {
          renamed = true;
        },
        async (err: NodeJS.ErrnoException) => {
          // Another install of the same version won the rename: it is installed, whole, once.
          if ((err.code === 'ENOTEMPTY' || err.code === 'EEXIST') && (await exists(target))) return;
          throw err;
        },
      );
    } catch (err) {
      await rm(staging, { recursive: true, force: true }).catch(() => {});
      if (err instanceof CoolctlError) throw err;
      throw failed(`${source} → ${target}: ${(err as Error).message}`, err);
    }
    if (!renamed) await rm(staging, { recursive: true, force: true }).catch(() => {});
    return { release: await this.get(manifest.version), installed: renamed };
  }

  /**
   * Removes what an install killed mid-way left (a power cut, kill -9): its staging and unpack
   * folders, named with its pid, once that process is gone. Never taken for a release (a dot-name);
   * only the space they hold on a small card is at stake. A live install's folders are left alone.
   */
  private async sweepDeadStaging(): Promise<void> {
    for (const n of await readdir(this.releasesDir).catch(() => [] as string[])) {
      const pid = Number(/^\.(?:install-.+|unpack)-(\d+)-[0-9A-Za-z]{6,12}$/.exec(n)?.[1]);
      if (!pid || pid === process.pid || pidExists(pid)) continue;
      await rm(join(this.releasesDir, n), { recursive: true, force: true }).catch(() => {});
    }
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
   * `version` installed and intact: its folder, its manifest, its entry and version module there and
   * agreeing with the manifest (what a node needs to start on it). Refused (InputRefusedError) saying
   * what is missing or damaged.
   */
  async check(version: string): Promise<InstalledRelease> {
    const release = await this.get(version).catch((err: unknown) => {
      if (err instanceof InputRefusedError) throw err;
      throw invalid(
        `release ${version} under ${this.releasesDir} is damaged: ${(err as Error).message}`,
        err,
      );
    });
    const damaged = (why: string, cause?: unknown) =>
      invalid(`release ${version} under ${this.releasesDir} is damaged: ${why}`, cause);
    if (!(await lstat(release.dir)).isDirectory()) throw damaged(`${release.dir} is not a folder`);
    const found = await readReleaseDir(release.dir).catch((err: unknown) => {
      throw damaged((err as Error).message, err);
    });
    if (found.version !== version) throw damaged(`its files say ${found.version}`);
    return release;
  }

  /**
   * Points `current` at `version`, and `previous` at what `current` was, or, when given, at
   * `o.previous` (null: no `previous`; a failed upgrade step puts a node's links back as they were
   * with it). A node already running keeps the files it loaded; it starts on `version` at its next
   * start.
   */
  async activate(
    version: string,
    o: { previous?: string | null } = {},
  ): Promise<{ from: string | null; to: string; previous: string | null }> {
    await this.get(version);
    const [from, was] = await Promise.all([this.linked('current'), this.linked('previous')]);
    const previous = o.previous === undefined ? (from === version ? was : (from ?? was)) : o.previous;
    if (previous !== null) await this.get(previous);
    // The order keeps a cut-short switch at previous == current: an activation sets `previous` first
    // (to what `current` is), a restore `current` first (back to what `previous` is). Either way
    // `previous` never names a release the node never ran, nor the one a restore moves away from.
    const previousFirst = previous === from;
    if (previousFirst && previous !== was) await this.link('previous', previous);
    if (from !== version) await this.link('current', version);
    if (!previousFirst && previous !== was) await this.link('previous', previous);
    return { from, to: version, previous };
  }

  /** `name` → releases/VERSION (null: removed), relative (the .deb's links are too), by one rename or unlink. */
  private async link(name: 'current' | 'previous', version: string | null): Promise<void> {
    if (version === null) {
      await rm(join(this.root, name), { force: true }).catch((err: unknown) => {
        throw failed(`cannot remove ${join(this.root, name)}: ${(err as Error).message}`, err);
      });
      return;
    }
    // Unique per call: two activations in one millisecond must not remove each other's new link.
    const tmp = join(this.root, `.${name}.${process.pid}.${randomBytes(6).toString('hex')}`);
    try {
      await rm(tmp, { force: true });
      await symlink(`releases/${version}`, tmp);
      await rename(tmp, join(this.root, name));
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => {});
      throw failed(`cannot point ${join(this.root, name)} at ${version}: ${(err as Error).message}`, err);
    }
  }
}

/**
 * Why a release cannot run on this host: its manifest names another OS or CPU (a bundle's `os` and
 * `cpu`, as `npm run package` writes them), or null. A tree without them (a source build) runs anywhere.
 */
export function platformMismatch(
  m: Record<string, unknown>,
  host: { os: string; cpu: string } = { os: process.platform, cpu: process.arch },
): string | null {
  const wrong: string[] = [];
  if (m.os !== undefined && m.os !== host.os) wrong.push(`os ${JSON.stringify(m.os)}`);
  if (m.cpu !== undefined && m.cpu !== host.cpu) wrong.push(`cpu ${JSON.stringify(m.cpu)}`);
  return wrong.length === 0
    ? null
    : `it is built for ${wrong.join(' and ')}, this host is ${host.os}-${host.cpu}: install the bundle for ${host.cpu}`;
}

/**
 * Checks `tarball` against the SHA256SUMS beside it, if there is one: a release folder copied whole
 * (USB stick, jump host) is checked end to end; a tarball the sums do not list, or that differs from
 * them (truncated, corrupted, altered), is refused before it is unpacked.
 */
async function checkSums(tarball: string): Promise<void> {
  const sumsFile = join(dirname(tarball), 'SHA256SUMS');
  let sums: string;
  try {
    sums = await readFile(sumsFile, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw invalid(`${sumsFile}: ${(err as Error).message}`, err);
  }
  const name = basename(tarball);
  const line = sums
    .split('\n')
    .map((l) => /^([0-9a-f]{64}) [ *](.+)$/.exec(l.trim()))
    .find((m) => m !== null && basename(m[2]!) === name);
  if (!line) throw invalid(`${tarball}: ${sumsFile} does not list it, so it cannot be checked`);
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(tarball)) hash.update(chunk as Buffer);
  } catch (err) {
    throw invalid(`${tarball}: ${(err as Error).message}`, err);
  }
  const actual = hash.digest('hex');
  if (actual !== line[1])
    throw invalid(
      `${tarball}: its SHA-256 is ${actual}, ${sumsFile} says ${line[1]}: the file is damaged or altered; copy it again`,
    );
}

/**
 * The one top folder of a bundle tarball, after its listing (`tar -tv`, nothing written) shows that
 * every member stays inside it and is a file, folder or link, and that the whole fits the bounds.
 */
async function checkMembers(tarball: string): Promise<string> {
  const listing = await run('tar', ['--numeric-owner', '--quoting-style=escape', '-tvzf', tarball], {
    timeout: 300_000,
    maxBuffer: 256 << 20,
  }).catch((err: unknown) => {
    throw invalid(`${tarball}: cannot be unpacked: tar cannot list it: ${(err as Error).message}`, err);
  });
  const lines = listing.stdout.split('\n').filter((l) => l !== '');
  if (lines.length === 0) throw invalid(`${tarball}: is empty; a bundle holds one release folder`);
  if (lines.length > MAX_MEMBERS)
    throw invalid(`${tarball}: has ${lines.length} members, more than a release has (${MAX_MEMBERS})`);
  const tops = new Set<string>();
  let bytes = 0;
  for (const line of lines) {
    // MODE OWNER/GROUP SIZE DATE TIME NAME[ -> LINK | link to TARGET]
    const m = /^(\S)\S*\s+\S+\s+(\S+)\s+\S+\s+\S+\s(.*)$/.exec(line);
    const bad = (why: string) => invalid(`${tarball}: member ${JSON.stringify(m?.[3] ?? line)} ${why}`);
    if (!m) throw bad('cannot be read from its listing');
    const [, type, size, rest] = m as unknown as [string, string, string, string];
    const sep = type === 'l' ? ' -> ' : type === 'h' ? ' link to ' : null;
    const parts = sep ? rest.split(sep) : [rest];
    if (!['-', 'd', 'l', 'h'].includes(type)) throw bad('is not a file, folder or link (a device or FIFO?)');
    if (parts.length !== (sep ? 2 : 1)) throw bad('has a name that cannot be told from its link');
    const [name, linkTo] = parts as [string, string | undefined];
    const norm = posix.normalize(name);
    if (name.startsWith('/') || norm === '..' || norm.startsWith('../') || name.split('/').includes('..'))
      throw bad('would be written outside the release (an absolute or `..` name)');
    const top = norm.split('/')[0]!;
    if (top !== '.' && top !== '') tops.add(top);
    if (linkTo !== undefined) {
      // A symlink resolves from its own folder, a hard link from the archive's root.
      const to =
        type === 'l' ? posix.normalize(posix.join(posix.dirname(norm), linkTo)) : posix.normalize(linkTo);
      if (linkTo.startsWith('/') || to === '..' || to.startsWith('../') || to.split('/')[0] !== top)
        throw bad(`links to ${JSON.stringify(linkTo)}, outside the release`);
    }
    if (type === '-') bytes += Number(size) || 0;
    if (bytes > MAX_UNPACKED_BYTES)
      throw invalid(
        `${tarball}: would unpack to more than ${MAX_UNPACKED_BYTES} bytes, more than a release needs; refused before unpacking`,
      );
  }
  if (tops.size !== 1)
    throw invalid(
      `${tarball}: holds ${[...tops].slice(0, 5).join(', ') || 'nothing'} at its top; a bundle holds one release folder`,
    );
  return [...tops][0]!;
}

/**
 * Refuses a tree with anything but files, folders and links (a device node copied as root is a way
 * into the host's disks), and, unless `linksMayLeave`, a link whose target is outside the tree.
 */
async function checkTree(root: string, shownAs: string, o: { linksMayLeave: boolean }): Promise<void> {
  const folders = [root];
  for (let next = folders.pop(); next !== undefined; next = folders.pop()) {
    for (const e of await readdir(next, { withFileTypes: true })) {
      const path = join(next, e.name);
      const rel = path.slice(root.length + 1);
      if (e.isDirectory()) folders.push(path);
      else if (e.isSymbolicLink()) {
        if (o.linksMayLeave) continue;
        const to = await readlink(path);
        const resolved = posix.normalize(posix.join(posix.dirname(rel), to));
        if (to.startsWith('/') || resolved === '..' || resolved.startsWith('../'))
          throw invalid(`${shownAs}: ${rel} links to ${JSON.stringify(to)}, outside the release`);
      } else if (!e.isFile())
        throw invalid(`${shownAs}: ${rel} is not a file, folder or link (a device, FIFO or socket)`);
    }
  }
}

/**
 * Every file and folder of a staged release owned by the installer and written by nobody else (no
 * group or world write, no set-id bits); links are left as links.
 */
async function sealRelease(dir: string): Promise<void> {
  const uid = process.getuid?.() ?? -1;
  const gid = process.getgid?.() ?? -1;
  // Walked by hand: readdir's `recursive` descends into linked folders (a test build's node_modules
  // link), which are not the release's to change.
  const folders = [dir];
  for (let next = folders.pop(); next !== undefined; next = folders.pop()) {
    await seal(next);
    for (const e of await readdir(next, { withFileTypes: true })) {
      const path = join(next, e.name);
      if (e.isDirectory()) folders.push(path);
      else if (!e.isSymbolicLink()) await seal(path);
    }
  }
  async function seal(path: string): Promise<void> {
    const st = await lstat(path);
    if (uid >= 0 && (st.uid !== uid || st.gid !== gid)) await lchown(path, uid, gid);
    const mode = st.mode & 0o7777;
    if (mode & 0o7022) await chmod(path, mode & 0o755);
  }
}

/** An installed release's manifest: written at install, so only read (and checked) here. */
async function readInstalledManifest(dir: string): Promise<ReleaseManifest> {
  const file = join(dir, 'release.json');
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw failed(
      `${file}: ${(err as Error).message} (install the release with coolctl release install)`,
      err,
    );
  }
  const w = parsed.wire as { version?: unknown; oldest?: unknown } | undefined;
  const wire = parseWireRange(w?.version, w?.oldest);
  if (typeof parsed.version !== 'string' || !wire)
    throw failed(
      `${file}: no version and wire {version, oldest} (install the release with coolctl release install)`,
    );
  return { ...parsed, version: parsed.version, wire };
}
