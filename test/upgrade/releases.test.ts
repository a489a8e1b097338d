// The release store on a real filesystem: a release installs beside the others with its wire range
// in its manifest, is never written over, `current`/`previous` are switched by rename, and bad
// releases are refused with the reason.
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InputRefusedError } from '../../src/errors.ts';
import { ReleaseStore, readReleaseDir } from '../../src/upgrade/releases.ts';

let tmp: string;

/** A minimal release tree: what readReleaseDir looks at (the CLI entry and the version module). */
async function tree(dir: string, version: string, wire: string, manifest?: object): Promise<string> {
  await mkdir(join(dir, 'src'), { recursive: true });
  await writeFile(join(dir, 'src/cli.ts'), '');
  await writeFile(
    join(dir, 'src/version.ts'),
    `export const VERSION = '${version}';\nexport const WIRE = Object.freeze(${wire});\n`,
  );
  if (manifest) await writeFile(join(dir, 'release.json'), JSON.stringify(manifest));
  return dir;
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'coolctl-releases-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('release store', () => {
  it('installs releases side by side, switches current and previous, never overwrites', async () => {
    const store = new ReleaseStore(join(tmp, 'opt'));
    const a = await tree(join(tmp, 'a'), '1.0.0', '{ version: 1, oldest: 1 }', {
      version: '1.0.0',
      arch: 'x64',
    });
    const b = await tree(join(tmp, 'b'), '1.1.0', '{ version: 2, oldest: 1 }');
    expect((await store.install(a)).installed).toBe(true);
    expect((await store.install(b)).installed).toBe(true);
    const manifest = JSON.parse(await readFile(join(tmp, 'opt/releases/1.0.0/release.json'), 'utf8'));
    // the bundle's own fields are kept, the wire range added
    expect(manifest).toEqual({ version: '1.0.0', arch: 'x64', wire: { version: 1, oldest: 1 } });

    expect(await store.activate('1.0.0')).toEqual({ from: null, to: '1.0.0', previous: null });
    expect(await readlink(join(tmp, 'opt/current'))).toBe('releases/1.0.0');
    expect(await store.linked('previous')).toBeNull();
    expect(await store.activate('1.1.0')).toEqual({ from: '1.0.0', to: '1.1.0', previous: '1.0.0' });
    expect(await store.linked('current')).toBe('1.1.0');
    expect(await store.linked('previous')).toBe('1.0.0');
    // the link resolves: what a node started from `current` runs
    expect((await lstat(join(tmp, 'opt/current/src/version.ts'))).isFile()).toBe(true);
    const list = await store.list();
    expect(list.map((r) => [r.version, r.current, r.previous, r.manifest.wire.version])).toEqual([
      ['1.0.0', false, true, 1],
      ['1.1.0', true, false, 2],
    ]);
    // rollback: back to previous, which now names the release rolled back from
    expect(await store.activate('1.0.0')).toEqual({ from: '1.1.0', to: '1.0.0', previous: '1.1.0' });
    expect(await store.linked('previous')).toBe('1.1.0');

    // the same version again: left as it is, even from a different tree
    const again = await tree(join(tmp, 'a2'), '1.0.0', '{ version: 9, oldest: 9 }');
    const r = await store.install(again);
    expect(r.installed).toBe(false);
    expect(r.release.manifest.wire).toEqual({ version: 1, oldest: 1 });
    // no staging folder or temporary link left behind
    const { readdir } = await import('node:fs/promises');
    expect((await readdir(join(tmp, 'opt/releases'))).sort()).toEqual(['1.0.0', '1.1.0']);
    expect((await readdir(join(tmp, 'opt'))).sort()).toEqual(['current', 'previous', 'releases']);
  });

  it('refuses a release it cannot trust, saying why', async () => {
    const store = new ReleaseStore(join(tmp, 'opt2'));
    const cases: [string, () => Promise<string>, RegExp][] = [
      [
        'empty',
        async () => mkdir(join(tmp, 'empty'), { recursive: true }).then(() => join(tmp, 'empty')),
        /is not a coolctl release/,
      ],
      [
        'mismatch',
        () => tree(join(tmp, 'm'), '2.0.0', '{ version: 1, oldest: 1 }', { version: '2.0.1' }),
        /release\.json says 2\.0\.1, .*version\.ts says 2\.0\.0/,
      ],
      [
        'bad wire',
        () => tree(join(tmp, 'w'), '2.0.0', '{ version: 1, oldest: 3 }'),
        /states no VERSION string and WIRE/,
      ],
      [
        'bad name',
        () => tree(join(tmp, 'n'), '../evil', '{ version: 1, oldest: 1 }'),
        /cannot name a release folder/,
      ],
      [
        'bad json',
        async () => {
          const d = await tree(join(tmp, 'j'), '2.0.0', '{ version: 1, oldest: 1 }');
          await writeFile(join(d, 'release.json'), '{');
          return d;
        },
        /release\.json: /,
      ],
    ];
    for (const [what, make, message] of cases) {
      const dir = await make();
      const err = await store.install(dir).catch((e: unknown) => e);
      expect((err as { code?: string }).code, what).toBe('COOLCTL_E_RELEASE_INVALID');
      expect((err as Error).message, what).toMatch(message);
    }
    await expect(store.activate('9.9.9')).rejects.toThrow(/release 9\.9\.9 is not installed/);
    await expect(store.activate('../x')).rejects.toThrow(/is not a release version/);
  });

  it('sets previous explicitly, or removes it, as a failed upgrade step puts a node back', async () => {
    const store = new ReleaseStore(join(tmp, 'opt-explicit'));
    for (const [v, w] of [
      ['0.9.0', '{ version: 1, oldest: 1 }'],
      ['1.0.0', '{ version: 1, oldest: 1 }'],
      ['1.1.0', '{ version: 1, oldest: 1 }'],
    ] as const)
      await store.install(await tree(join(tmp, `x-${v}`), v, w));
    await store.activate('0.9.0');
    await store.activate('1.0.0');
    await store.activate('1.1.0');
    expect([await store.linked('current'), await store.linked('previous')]).toEqual(['1.1.0', '1.0.0']);
    // Back on the release it ran, `previous` as it was before the step.
    expect(await store.activate('1.0.0', { previous: '0.9.0' })).toEqual({
      from: '1.1.0',
      to: '1.0.0',
      previous: '0.9.0',
    });
    expect([await store.linked('current'), await store.linked('previous')]).toEqual(['1.0.0', '0.9.0']);
    // None: the link is gone (a bare rollback then asks for a version).
    await store.activate('1.0.0', { previous: null });
    expect([await store.linked('current'), await store.linked('previous')]).toEqual(['1.0.0', null]);
    // `previous` must be installed: it never dangles.
    await expect(store.activate('1.0.0', { previous: '2.0.0' })).rejects.toThrow(
      /release 2\.0\.0 is not installed/,
    );
    expect(await store.linked('previous')).toBeNull();
  });

  it('checks a release intact: its folder, manifest, entry and version module', async () => {
    const store = new ReleaseStore(join(tmp, 'opt-check'));
    for (const v of ['2.0.0', '2.1.0', '2.2.0', '2.3.0'])
      await store.install(await tree(join(tmp, `k-${v}`), v, '{ version: 1, oldest: 1 }'));
    expect((await store.check('2.0.0')).version).toBe('2.0.0');
    await rm(join(store.releasesDir, '2.1.0/src/cli.ts'));
    await writeFile(join(store.releasesDir, '2.2.0/src/version.ts'), "export const VERSION = '9.9.9';\n");
    await writeFile(join(store.releasesDir, '2.3.0/release.json'), '{');
    for (const [v, why] of [
      ['2.1.0', /is damaged: .*is not a coolctl release: it has neither/],
      ['2.2.0', /is damaged: .*states no VERSION string and WIRE/],
      ['2.3.0', /is damaged: .*release\.json/],
      ['2.4.0', /release 2\.4\.0 is not installed/],
    ] as const) {
      const err = await store.check(v).catch((e: unknown) => e);
      expect((err as { code?: string }).code, v).toBe('COOLCTL_E_RELEASE_INVALID');
      expect(err, v).toBeInstanceOf(InputRefusedError);
      expect((err as Error).message, v).toMatch(why);
    }
  });

  it('reads a packaged bundle’s compiled version module and keeps its manifest fields', async () => {
    const d = join(tmp, 'bundle');
    await mkdir(join(d, 'dist/src'), { recursive: true });
    await writeFile(join(d, 'dist/src/cli.js'), '');
    await writeFile(
      join(d, 'dist/src/version.js'),
      "export const VERSION = '3.0.0';\nexport const WIRE = Object.freeze({ version: 3, oldest: 2 });\n",
    );
    await writeFile(
      join(d, 'release.json'),
      JSON.stringify({ name: 'coolctl', version: '3.0.0', cpu: 'arm64' }),
    );
    expect(await readReleaseDir(d)).toEqual({
      name: 'coolctl',
      version: '3.0.0',
      cpu: 'arm64',
      wire: { version: 3, oldest: 2 },
    });
  });
});
