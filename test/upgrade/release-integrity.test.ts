// `coolctl release install` given what an air-gapped gateway may be handed: a tarball altered or
// damaged after `npm run package` wrote its SHA256SUMS, the bundle of the other architecture, and an
// archive whose files belong to another user or are writable by everyone. Each is refused before
// anything is installed, or installed owned by the installer and written by nobody else.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, chown, lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { platformMismatch, ReleaseStore } from '../../src/upgrade/releases.ts';

let tmp: string;
const OTHER_CPU = process.arch === 'arm64' ? 'x64' : 'arm64';

/** A packaged bundle's tree (compiled CLI and version module, manifest with os and cpu). */
async function bundle(dir: string, version: string, cpu = process.arch): Promise<string> {
  await mkdir(join(dir, 'dist/src'), { recursive: true });
  await writeFile(join(dir, 'dist/src/cli.js'), '// the CLI\n');
  await writeFile(
    join(dir, 'dist/src/version.js'),
    `export const VERSION = '${version}';\nexport const WIRE = Object.freeze({ version: 1, oldest: 1 });\n`,
  );
  await writeFile(
    join(dir, 'release.json'),
    JSON.stringify({ name: 'coolctl', version, os: process.platform, cpu }),
  );
  return dir;
}

/** `dir` packed as `out` (its name the top folder), as scripts/package.ts packs a bundle. */
function pack(dir: string, out: string): string {
  execFileSync('tar', ['--numeric-owner', '-C', join(dir, '..'), '-czf', out, 'coolctl-bundle']);
  return out;
}

async function sha256(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

async function refusal(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  const err = await p.then(
    () => null,
    (e: unknown) => e as { code?: string; message: string },
  );
  if (!err) throw new Error('the release was installed');
  return err;
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'coolctl-release-integrity-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('release install checks what it is given', () => {
  it('refuses a tarball that differs from the SHA256SUMS beside it, or that the sums do not list', async () => {
    const out = join(tmp, 'sums');
    await mkdir(out);
    const tree = await bundle(join(tmp, 'sums-src/coolctl-bundle'), '4.0.0');
    const tarball = pack(tree, join(out, 'coolctl-4.0.0-linux-x.tar.gz'));
    await writeFile(join(out, 'SHA256SUMS'), `${await sha256(tarball)}  coolctl-4.0.0-linux-x.tar.gz\n`);
    // Altered after the sums were written: a line of code added, packed again.
    await writeFile(join(tree, 'dist/src/cli.js'), '// the CLI\nfetch("http://evil.invalid");\n');
    pack(tree, tarball);

    const store = new ReleaseStore(join(tmp, 'opt-sums'));
    const altered = await refusal(store.install(tarball));
    expect(altered.code).toBe('COOLCTL_E_RELEASE_INVALID');
    expect(altered.message).toMatch(
      /SHA-256 is [0-9a-f]{64}, .*SHA256SUMS says [0-9a-f]{64}: .*damaged or altered/,
    );

    // Truncated in transit.
    const whole = await readFile(tarball);
    await writeFile(join(out, 'SHA256SUMS'), `${await sha256(tarball)} *coolctl-4.0.0-linux-x.tar.gz\n`);
    await writeFile(tarball, whole.subarray(0, whole.length - 100));
    expect((await refusal(store.install(tarball))).message).toMatch(/damaged or altered/);

    // Not listed (renamed, or the sums of another release).
    await writeFile(tarball, whole);
    await writeFile(join(out, 'SHA256SUMS'), `${await sha256(tarball)}  coolctl-9.9.9-linux-x.tar.gz\n`);
    expect((await refusal(store.install(tarball))).message).toMatch(/SHA256SUMS does not list it/);

    // Nothing was installed, nothing half-unpacked is left.
    expect(await readdir(join(tmp, 'opt-sums/releases'))).toEqual([]);

    // The sums that match: installed.
    await writeFile(join(out, 'SHA256SUMS'), `${await sha256(tarball)}  coolctl-4.0.0-linux-x.tar.gz\n`);
    expect((await store.install(tarball)).installed).toBe(true);
  });

  it('refuses the bundle of another architecture, folder or tarball, naming both', async () => {
    const store = new ReleaseStore(join(tmp, 'opt-arch'));
    const tree = await bundle(join(tmp, 'arch-src/coolctl-bundle'), '5.0.0', OTHER_CPU);
    const tarball = pack(tree, join(tmp, 'coolctl-5.0.0-other.tar.gz'));
    for (const source of [tree, tarball]) {
      const err = await refusal(store.install(source));
      expect(err.code).toBe('COOLCTL_E_RELEASE_INVALID');
      expect(err.message).toContain(`${source}: it is built for cpu "${OTHER_CPU}"`);
      expect(err.message).toContain(`this host is ${process.platform}-${process.arch}`);
    }
    expect(await readdir(join(tmp, 'opt-arch/releases'))).toEqual([]);
    expect(platformMismatch({ os: 'linux', cpu: 'arm64' }, { os: 'linux', cpu: 'arm64' })).toBeNull();
    expect(platformMismatch({ os: 'win32' }, { os: 'linux', cpu: 'x64' })).toMatch(/os "win32"/);
    // a source tree states no platform: it runs where its Node runs
    expect(platformMismatch({ version: '1' })).toBeNull();
  });

  it('installs a release owned by the installer, with no file another user may write', async () => {
    const tree = await bundle(join(tmp, 'modes-src/coolctl-bundle'), '6.0.0');
    await chmod(join(tree, 'dist/src/cli.js'), 0o666);
    await chmod(join(tree, 'dist/src'), 0o777);
    await chmod(join(tree, 'dist/src/version.js'), 0o4755);
    const root = process.getuid?.() === 0;
    if (root) await chown(join(tree, 'dist/src/cli.js'), 4321, 4321);
    const tarball = pack(tree, join(tmp, 'coolctl-6.0.0.tar.gz'));
    const folder = await bundle(join(tmp, 'modes-folder'), '6.0.1');
    await chmod(join(folder, 'dist/src/cli.js'), 0o666);

    const store = new ReleaseStore(join(tmp, 'opt-modes'));
    for (const source of [tarball, folder]) {
      const { release } = await store.install(source);
      for (const rel of ['', 'dist', 'dist/src', 'dist/src/cli.js', 'dist/src/version.js', 'release.json']) {
        const st = await lstat(join(release.dir, rel));
        expect(st.mode & 0o7022, `${release.version}/${rel} mode ${(st.mode & 0o7777).toString(8)}`).toBe(0);
        expect(st.uid, `${release.version}/${rel} owner`).toBe(process.getuid?.());
      }
    }
  });
});
