// `coolctl release install` handed a hostile bundle or folder on an air-gapped gateway, where it runs
// as root: members that would land outside the release, links out of it, device nodes, a tarball
// that claims gigabytes, a manifest that is a link to someone else's file, a version module with a
// side effect. Each is refused (exit-2 kind, saying which member and why) before anything is
// installed, and nothing outside the release root is read into it, written or changed.
import { execFileSync } from 'node:child_process';
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  symlink,
  truncate,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InputRefusedError } from '../../src/errors.ts';
import { MAX_UNPACKED_BYTES, ReleaseStore } from '../../src/upgrade/releases.ts';

let tmp: string;
let n = 0;

/** A packaged bundle's tree: compiled CLI and version module, manifest. */
async function bundle(dir: string, version: string): Promise<string> {
  await mkdir(join(dir, 'dist/src'), { recursive: true });
  await writeFile(join(dir, 'dist/src/cli.js'), '// the CLI\n');
  await writeFile(
    join(dir, 'dist/src/version.js'),
    `export const VERSION = '${version}';\nexport const WIRE = Object.freeze({ version: 1, oldest: 1 });\n`,
  );
  await writeFile(join(dir, 'release.json'), JSON.stringify({ name: 'coolctl', version }));
  return dir;
}

/** A fresh folder to build a hostile tarball's contents in. */
async function workdir(): Promise<string> {
  const d = join(tmp, `w${++n}`);
  await mkdir(d, { recursive: true });
  return d;
}

function tar(args: string[]): void {
  execFileSync('tar', args, { stdio: ['ignore', 'ignore', 'ignore'] });
}

async function refused(store: ReleaseStore, source: string): Promise<InputRefusedError> {
  const err = await store.install(source).then(
    () => null,
    (e: unknown) => e,
  );
  if (!(err instanceof InputRefusedError)) throw new Error(`not refused as bad input: ${String(err)}`);
  expect(err.code).toBe('COOLCTL_E_RELEASE_INVALID');
  // Nothing installed, no staging or unpack folder left behind.
  expect(await readdir(store.releasesDir)).toEqual([]);
  return err;
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'coolctl-release-hostile-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('release install refuses a hostile bundle tarball before unpacking it', () => {
  it('refuses members outside the one release folder, links out of it, and devices', async () => {
    const outside = join(tmp, 'outside');
    await mkdir(outside);
    // A release folder elsewhere on the host, with a file writable by everyone.
    const elsewhere = await bundle(join(tmp, 'elsewhere'), '7.7.7');
    await chmod(join(elsewhere, 'dist/src/cli.js'), 0o666);

    const cases: [string, () => Promise<string>, RegExp][] = [
      [
        'a `..` member',
        async () => {
          const w = await workdir();
          await bundle(join(w, 'coolctl'), '1.0.0');
          await writeFile(join(w, 'evil'), 'evil');
          tar([
            '-C',
            w,
            '-czf',
            join(w, 'b.tar.gz'),
            'coolctl',
            '--transform=s,^evil,coolctl/../../evil,',
            'evil',
          ]);
          return join(w, 'b.tar.gz');
        },
        /member "coolctl\/\.\.\/\.\.\/evil" would be written outside the release/,
      ],
      [
        'an absolute member',
        async () => {
          const w = await workdir();
          await bundle(join(w, 'coolctl'), '1.0.0');
          await writeFile(join(w, 'evil'), 'evil');
          tar([
            '-P',
            '-C',
            w,
            '-czf',
            join(w, 'b.tar.gz'),
            'coolctl',
            `--transform=s,^evil,${outside}/abs,`,
            'evil',
          ]);
          return join(w, 'b.tar.gz');
        },
        /member ".*\/outside\/abs" would be written outside the release/,
      ],
      [
        'the release folder itself a link to a folder elsewhere',
        async () => {
          const w = await workdir();
          await symlink(elsewhere, join(w, 'coolctl'));
          tar(['-C', w, '-czf', join(w, 'b.tar.gz'), 'coolctl']);
          return join(w, 'b.tar.gz');
        },
        /member "coolctl -> .*elsewhere" links to ".*elsewhere", outside the release/,
      ],
      [
        'a link out, then a member written through it',
        async () => {
          const w = await workdir();
          await bundle(join(w, 'coolctl'), '1.0.0');
          await symlink(outside, join(w, 'coolctl/esc'));
          tar(['-C', w, '-cf', join(w, 'b.tar'), 'coolctl']);
          await rm(join(w, 'coolctl/esc'));
          await mkdir(join(w, 'coolctl/esc'));
          await writeFile(join(w, 'coolctl/esc/pwned'), 'pwned');
          tar(['-C', w, '-rf', join(w, 'b.tar'), 'coolctl/esc/pwned']);
          execFileSync('gzip', [join(w, 'b.tar')]);
          return join(w, 'b.tar.gz');
        },
        /member "coolctl\/esc -> .*outside" links to ".*outside", outside the release/,
      ],
      [
        'a relative link that climbs out',
        async () => {
          const w = await workdir();
          await bundle(join(w, 'coolctl'), '1.0.0');
          await symlink('../../../../etc/shadow', join(w, 'coolctl/dist/shadow'));
          tar(['-C', w, '-czf', join(w, 'b.tar.gz'), 'coolctl']);
          return join(w, 'b.tar.gz');
        },
        /links to "\.\.\/\.\.\/\.\.\/\.\.\/etc\/shadow", outside the release/,
      ],
      [
        'a FIFO',
        async () => {
          const w = await workdir();
          await bundle(join(w, 'coolctl'), '1.0.0');
          execFileSync('mkfifo', [join(w, 'coolctl/fifo')]);
          tar(['-C', w, '-czf', join(w, 'b.tar.gz'), 'coolctl']);
          return join(w, 'b.tar.gz');
        },
        /member "coolctl\/fifo" is not a file, folder or link/,
      ],
      [
        'two top folders',
        async () => {
          const w = await workdir();
          await bundle(join(w, 'b'), '1.0.0');
          await mkdir(join(w, 'a'));
          tar(['-C', w, '-czf', join(w, 'b.tar.gz'), 'a', 'b']);
          return join(w, 'b.tar.gz');
        },
        /b\.tar\.gz: holds a, b at its top; a bundle holds one release folder/,
      ],
      [
        'files at the top, no folder',
        async () => {
          const w = await workdir();
          await bundle(join(w, 'r'), '1.0.0');
          tar(['-C', join(w, 'r'), '-czf', join(w, 'b.tar.gz'), 'dist', 'release.json']);
          return join(w, 'b.tar.gz');
        },
        /holds dist, release\.json at its top/,
      ],
      [
        'an empty archive',
        async () => {
          const w = await workdir();
          tar(['-czf', join(w, 'b.tar.gz'), '-T', '/dev/null']);
          return join(w, 'b.tar.gz');
        },
        /b\.tar\.gz: is empty; a bundle holds one release folder/,
      ],
    ];
    if (process.getuid?.() === 0)
      cases.push([
        'a device node',
        async () => {
          const w = await workdir();
          await bundle(join(w, 'coolctl'), '1.0.0');
          execFileSync('mknod', [join(w, 'coolctl/sda'), 'b', '8', '0']);
          tar(['-C', w, '-czf', join(w, 'b.tar.gz'), 'coolctl']);
          return join(w, 'b.tar.gz');
        },
        /member "coolctl\/sda" is not a file, folder or link/,
      ]);
    for (const [what, make, message] of cases) {
      const store = new ReleaseStore(join(tmp, `opt-${++n}`));
      await mkdir(store.releasesDir, { recursive: true });
      const err = await refused(store, await make());
      expect(err.message, what).toMatch(message);
    }
    // Nothing written outside, nothing changed there.
    expect(await readdir(outside)).toEqual([]);
    expect((await lstat(join(elsewhere, 'dist/src/cli.js'))).mode & 0o777).toBe(0o666);
  });

  it('refuses a tarball that would unpack to more than a release needs, before unpacking it', async () => {
    const w = await workdir();
    await bundle(join(w, 'coolctl'), '1.0.0');
    // A few hundred bytes of gzip that unpack to more than the bound (stored sparse here).
    await writeFile(join(w, 'coolctl/zeros'), '');
    await truncate(join(w, 'coolctl/zeros'), MAX_UNPACKED_BYTES + 1);
    tar(['-S', '-C', w, '-czf', join(w, 'bomb.tar.gz'), 'coolctl']);
    const store = new ReleaseStore(join(tmp, 'opt-bomb'));
    await mkdir(store.releasesDir, { recursive: true });
    const err = await refused(store, join(w, 'bomb.tar.gz'));
    expect(err.message).toMatch(/would unpack to more than \d+ bytes.*refused before unpacking/);
  });

  it('installs a bundle whose links stay inside it (a hard link, node_modules/.bin)', async () => {
    const w = await workdir();
    const tree = await bundle(join(w, 'coolctl'), '1.2.0');
    await mkdir(join(tree, 'node_modules/.bin'), { recursive: true });
    await symlink('../../dist/src/cli.js', join(tree, 'node_modules/.bin/coolctl'));
    execFileSync('ln', [join(tree, 'dist/src/cli.js'), join(tree, 'dist/cli-hardlink.js')]);
    tar(['-C', w, '-czf', join(w, 'b.tar.gz'), 'coolctl']);
    const store = new ReleaseStore(join(tmp, 'opt-good'));
    const r = await store.install(join(w, 'b.tar.gz'));
    expect(r.installed).toBe(true);
    expect(await readFile(join(r.release.dir, 'node_modules/.bin/coolctl'), 'utf8')).toBe('// the CLI\n');
  });
});

describe('release install reads a release folder, never writes through it or runs it', () => {
  it('refuses a release.json that is a link, and never rewrites the file it names', async () => {
    const victim = join(tmp, 'victim.json');
    await writeFile(victim, '{"keep":"me"}');
    const tree = await bundle(join(tmp, 'link-manifest'), '2.0.0');
    await rm(join(tree, 'release.json'));
    await symlink(victim, join(tree, 'release.json'));
    const store = new ReleaseStore(join(tmp, 'opt-link-manifest'));
    await mkdir(store.releasesDir, { recursive: true });
    const err = await refused(store, tree);
    expect(err.message).toMatch(/release\.json: is not a plain file/);
    expect(await readFile(victim, 'utf8')).toBe('{"keep":"me"}');
  });

  it('reads the version module as text: installing runs none of the release’s code', async () => {
    const marker = join(tmp, 'ran-as-root');
    const tree = await bundle(join(tmp, 'side-effect'), '2.1.0');
    await writeFile(
      join(tree, 'dist/src/version.js'),
      `import { writeFileSync } from 'node:fs';\nwriteFileSync(${JSON.stringify(marker)}, 'ran');\n` +
        `export const VERSION = '2.1.0';\nexport const WIRE = Object.freeze({ version: 2, oldest: 1 });\n`,
    );
    const store = new ReleaseStore(join(tmp, 'opt-side-effect'));
    const r = await store.install(tree);
    expect(r.release.manifest.wire).toEqual({ version: 2, oldest: 1 });
    expect(
      await lstat(marker).then(
        () => 'the module ran',
        () => 'not run',
      ),
    ).toBe('not run');
  });

  it('installs the folder a link names, not the link', async () => {
    const tree = await bundle(join(tmp, 'stick/coolctl-2.2.0'), '2.2.0');
    await symlink(tree, join(tmp, 'stick/latest'));
    const store = new ReleaseStore(join(tmp, 'opt-stick'));
    const r = await store.install(join(tmp, 'stick/latest'));
    expect((await lstat(r.release.dir)).isDirectory()).toBe(true);
    // The stick can go: the release is the node's own copy.
    await rm(join(tmp, 'stick'), { recursive: true });
    expect(await readFile(join(r.release.dir, 'dist/src/cli.js'), 'utf8')).toBe('// the CLI\n');
  });

  it('refuses a folder with a FIFO as bad input, not as a failure of this host', async () => {
    const tree = await bundle(join(tmp, 'fifo-folder'), '2.3.0');
    execFileSync('mkfifo', [join(tree, 'dist/fifo')]);
    const store = new ReleaseStore(join(tmp, 'opt-fifo'));
    await mkdir(store.releasesDir, { recursive: true });
    const err = await refused(store, tree);
    expect(err.message).toMatch(/dist\/fifo is not a file, folder or link/);
  });
});
