// `coolctl release …`, `coolctl upgrade` and `coolctl rollback` as an operator runs them, without a
// cluster: installing a folder and a bundle tarball, listing, showing, activating (with an explicit
// previous too), and the refusals that come before any node is touched (an unknown release, no
// previous one, no API to read the cluster from).
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCoolctl } from '../support/cli-run.ts';

let tmp: string;

async function tree(dir: string, version: string, wire: string): Promise<string> {
  await mkdir(join(dir, 'src'), { recursive: true });
  await writeFile(join(dir, 'src/cli.ts'), '');
  await writeFile(
    join(dir, 'src/version.ts'),
    `export const VERSION = '${version}';\nexport const WIRE = Object.freeze(${wire});\n`,
  );
  return dir;
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'coolctl-release-cli-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('coolctl release, upgrade, rollback', () => {
  it('installs a folder and a tarball, lists them, points current and previous', async () => {
    const root = join(tmp, 'opt');
    const a = await tree(join(tmp, 'a'), '1.0.0', '{ version: 1, oldest: 1 }');
    const r1 = await runCoolctl(['release', 'install', a, '--root', root]);
    expect(r1.err).toBe('');
    expect(r1.code).toBe(0);
    expect(r1.out).toBe(`1.0.0 (wire 1..1) installed in ${root}/releases/1.0.0\n`);
    // a bundle tarball: one folder inside, as npm run package makes them
    await tree(join(tmp, 'pack', 'coolctl-1.1.0-linux-x64'), '1.1.0', '{ version: 2, oldest: 1 }');
    const tarball = join(tmp, 'coolctl-1.1.0-linux-x64.tar.gz');
    await promisify(execFile)('tar', ['-czf', tarball, '-C', join(tmp, 'pack'), 'coolctl-1.1.0-linux-x64']);
    const r2 = await runCoolctl(['release', 'install', tarball, '--root', root]);
    expect(r2.code).toBe(0);
    expect(r2.out).toContain('1.1.0 (wire 1..2) installed in');
    const again = await runCoolctl(['release', 'install', a, '--root', root]);
    expect(again.out).toContain('1.0.0 (wire 1..1) already installed in');

    expect((await runCoolctl(['release', 'activate', '1.0.0', '--root', root])).out).toBe(
      'current: none → 1.0.0, previous: none\n',
    );
    expect((await runCoolctl(['release', 'activate', '1.1.0', '--root', root])).out).toBe(
      'current: 1.0.0 → 1.1.0, previous: 1.0.0\n',
    );
    expect(await readlink(join(root, 'current'))).toBe('releases/1.1.0');
    const list = await runCoolctl(['release', 'list', '--root', root, '--output', 'json']);
    const rows = JSON.parse(list.out) as { version: string; current: boolean; previous: boolean }[];
    expect(rows.map((r) => [r.version, r.current, r.previous])).toEqual([
      ['1.0.0', false, true],
      ['1.1.0', true, false],
    ]);

    // show: the release checked intact, and where the root's links point (what --show-cmd reads)
    const show = await runCoolctl(['release', 'show', '1.0.0', '--root', root]);
    expect(show.code).toBe(0);
    expect(show.out).toBe(
      `1.0.0 (wire 1..1) intact in ${root}/releases/1.0.0; current: 1.1.0, previous: 1.0.0\n`,
    );
    const shown = JSON.parse(
      (await runCoolctl(['release', 'show', '1.1.0', '--root', root, '--output', 'json'])).out,
    );
    expect(shown).toMatchObject({
      version: '1.1.0',
      current: true,
      links: { current: '1.1.0', previous: '1.0.0' },
    });
    const missing = await runCoolctl(['release', 'show', '9.9.9', '--root', root, '--output', 'json']);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/release 9\.9\.9 is not installed/);

    // activate with an explicit previous (none: no previous), as a failed upgrade step puts a node back
    const back = await runCoolctl(['release', 'activate', '1.0.0', '--previous', 'none', '--root', root]);
    expect(back.out).toBe('current: 1.1.0 → 1.0.0, previous: none\n');
    expect([
      await readlink(join(root, 'current')),
      await readlink(join(root, 'previous')).catch(() => null),
    ]).toEqual(['releases/1.0.0', null]);
    await runCoolctl(['release', 'activate', '1.1.0', '--previous', '1.0.0', '--root', root]);
  }, 60_000);

  it('refuses before touching anything, saying why', async () => {
    const root = join(tmp, 'opt');
    const bad = await runCoolctl(['release', 'install', join(tmp, 'nowhere'), '--root', root]);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/nowhere is not a coolctl release/);
    const unknown = await runCoolctl(['upgrade', '9.9.9', '--root', root]);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/release 9\.9\.9 is not installed/);
    const noPrevious = await runCoolctl(['rollback', '--root', join(tmp, 'empty-root')]);
    expect(noPrevious.code).toBe(2);
    expect(noPrevious.err).toMatch(/has no previous release; give the version/);
    // No API to read the cluster from: refused, nothing stopped (current unchanged).
    const noApi = await runCoolctl([
      'rollback',
      '--root',
      root,
      '--api',
      'http://127.0.0.1:9',
      '--log-level',
      'silent',
    ]);
    expect(noApi.code).toBe(1);
    expect(noApi.err).toMatch(/upgrade to 1\.0\.0 refused: cannot read the cluster: no node answered/);
    expect(await readlink(join(root, 'current'))).toBe('releases/1.1.0');
    const badTimeout = await runCoolctl(['upgrade', '1.0.0', '--root', root, '--rejoin-timeout', 'soon']);
    expect(badTimeout.code).toBe(2);
    expect(badTimeout.err).toMatch(/--rejoin-timeout soon: give a duration/);
  }, 60_000);
});
