// The release store under races and interruptions a careless operator (or two of them, or a power
// cut) brings: one version installed twice at once, an install killed mid-copy, `current` switched
// while something reads it, two activations at once, a switch of the two links cut short between
// them, a rollback with no `previous`, upgrade commands that could not put a node back.
import { spawn } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReleaseStore } from '../../src/upgrade/releases.ts';
import { waitFor } from '../helpers.ts';
import { runCoolctl } from '../support/cli-run.ts';
import { REPO_ROOT } from '../support/repo.ts';

let tmp: string;

async function tree(dir: string, version: string, files = 0): Promise<string> {
  await mkdir(join(dir, 'src'), { recursive: true });
  await writeFile(join(dir, 'src/cli.ts'), '');
  await writeFile(
    join(dir, 'src/version.ts'),
    `export const VERSION = '${version}';\nexport const WIRE = Object.freeze({ version: 1, oldest: 1 });\n`,
  );
  if (files > 0) {
    await mkdir(join(dir, 'lib'));
    const blob = 'x'.repeat(64 * 1024);
    for (let i = 0; i < files; i++) await writeFile(join(dir, 'lib', `f${i}.js`), blob);
  }
  return dir;
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'coolctl-release-hostile-state-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('release store races and interruptions', () => {
  it('installs one version given twice at once exactly once, and both callers succeed', async () => {
    const src = await tree(join(tmp, 'twice'), '1.0.0', 50);
    const store = new ReleaseStore(join(tmp, 'opt-twice'));
    const results = await Promise.all([store.install(src), store.install(src), store.install(src)]);
    expect(results.filter((r) => r.installed)).toHaveLength(1);
    expect(results.every((r) => r.release.version === '1.0.0')).toBe(true);
    expect(await readdir(store.releasesDir)).toEqual(['1.0.0']);
    expect((await readdir(join(store.releasesDir, '1.0.0/lib'))).length).toBe(50);
  });

  it('never takes an install killed mid-copy for an installed release', async () => {
    const src = await tree(join(tmp, 'killed'), '2.0.0', 400);
    const root = join(tmp, 'opt-killed');
    const store = new ReleaseStore(root);
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { ReleaseStore } from ${JSON.stringify(join(REPO_ROOT, 'src/upgrade/releases.ts'))};
         await new ReleaseStore(${JSON.stringify(root)}).install(${JSON.stringify(src)});`,
      ],
      { stdio: 'ignore' },
    );
    const exited = new Promise((r) => child.once('exit', r));
    // Killed while its staging folder has some of the files and not all.
    await waitFor(
      'the install to be half-way through its copy',
      async () => {
        const staging = (await readdir(store.releasesDir).catch(() => [] as string[])).find((n) =>
          n.startsWith('.install-2.0.0-'),
        );
        if (!staging) return false;
        const copied = await readdir(join(store.releasesDir, staging, 'lib')).catch(() => [] as string[]);
        return copied.length > 0;
      },
      { timeoutMs: 20_000, intervalMs: 5 },
    );
    child.kill('SIGKILL');
    await exited;
    expect((await store.list()).map((r) => r.version)).toEqual([]);
    await expect(store.get('2.0.0')).rejects.toThrow(/release 2\.0\.0 is not installed/);
    await expect(store.activate('2.0.0')).rejects.toThrow(/release 2\.0\.0 is not installed/);
    // Installing again completes it, whole.
    const again = await store.install(src);
    expect(again.installed).toBe(true);
    expect((await readdir(join(again.release.dir, 'lib'))).length).toBe(400);
    // What the killed install left is gone: it held space on the card and nothing else.
    expect(await readdir(store.releasesDir)).toEqual(['2.0.0']);
  });

  it('switches current by one rename: a reader never finds it missing, two activations at once both land', async () => {
    const store = new ReleaseStore(join(tmp, 'opt-switch'));
    await store.install(await tree(join(tmp, 's1'), '3.0.0'));
    await store.install(await tree(join(tmp, 's2'), '3.1.0'));
    await store.activate('3.0.0');
    let missing = 0;
    let stop = false;
    const reader = (async () => {
      for (let i = 0; i < 100_000 && !stop; i++) {
        if (
          !(await lstat(join(store.root, 'current')).then(
            () => true,
            () => false,
          ))
        )
          missing++;
      }
    })();
    for (let i = 0; i < 50; i++) await store.activate(i % 2 === 0 ? '3.1.0' : '3.0.0');
    // Two operators at once: each switch lands whole; current names one of the two.
    const both = await Promise.allSettled([store.activate('3.0.0'), store.activate('3.1.0')]);
    stop = true;
    await reader;
    expect(both.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled']);
    expect(missing).toBe(0);
    expect(['releases/3.0.0', 'releases/3.1.0']).toContain(await readlink(join(store.root, 'current')));
    // No temporary links left in the root.
    expect((await readdir(store.root)).sort()).toEqual(['current', 'previous', 'releases']);
  });

  it('refuses a rollback with no previous, or a previous whose release is gone, before touching a node', async () => {
    const root = join(tmp, 'opt-rollback');
    const store = new ReleaseStore(root);
    await store.install(await tree(join(tmp, 'r1'), '4.0.0'));
    await store.activate('4.0.0');
    const none = await runCoolctl(['rollback', '--root', root]);
    expect(none.code).toBe(2);
    expect(none.err).toMatch(/has no previous release; give the version/);
    await store.install(await tree(join(tmp, 'r2'), '4.1.0'));
    await store.activate('4.1.0');
    await rm(join(root, 'releases/4.0.0'), { recursive: true });
    const gone = await runCoolctl(['rollback', '--root', root]);
    expect(gone.code).toBe(2);
    expect(gone.err).toMatch(/release 4\.0\.0 is not installed/);
  });

  it('a switch cut short between its two links never leaves previous on a release the node did not run or failed on', async () => {
    // `previous` is made a folder its new link cannot be renamed over: the second switch fails.
    const cutShort = async (root: string) => {
      await rm(join(root, 'previous'), { force: true });
      await mkdir(join(root, 'previous', 'in-the-way'), { recursive: true });
    };
    const store = new ReleaseStore(join(tmp, 'opt-cut'));
    for (const [i, v] of ['6.0.0', '6.1.0', '6.2.0'].entries())
      await store.install(await tree(join(tmp, `c${i}`), v));
    await store.activate('6.0.0');
    await store.activate('6.1.0');
    // An activation sets `previous` first: cut short, `current` still names what the node runs.
    await cutShort(store.root);
    await expect(store.activate('6.2.0')).rejects.toThrow(/cannot point .*previous at 6\.1\.0/);
    expect(await store.linked('current')).toBe('6.1.0');
    // A restore after a failed step (current → the release it ran, previous → as it was) sets
    // `current` first: cut short, the node starts on what it ran, and `previous` is not the failed one.
    await rm(join(store.root, 'previous'), { recursive: true });
    await store.activate('6.2.0');
    expect([await store.linked('current'), await store.linked('previous')]).toEqual(['6.2.0', '6.1.0']);
    await cutShort(store.root);
    await expect(store.activate('6.1.0', { previous: '6.0.0' })).rejects.toThrow(
      /cannot point .*previous at 6\.0\.0/,
    );
    expect(await store.linked('current')).toBe('6.1.0');
    // No temporary links left in the root.
    expect((await readdir(store.root)).sort()).toEqual(['current', 'previous', 'releases']);
  });

  it('refuses an upgrade whose commands could not check a node or put its previous back, before reading the cluster', async () => {
    const root = join(tmp, 'opt-cmd');
    await new ReleaseStore(root).install(await tree(join(tmp, 'q1'), '7.0.0'));
    const noPrevious = await runCoolctl([
      'upgrade',
      '7.0.0',
      '--root',
      root,
      '--activate-cmd',
      'ssh {node} coolctl release activate {version}',
      '--show-cmd',
      'ssh {node} coolctl release show {version} --output json',
    ]);
    expect(noPrevious.code).toBe(2);
    expect(noPrevious.err).toMatch(
      /does not pass \{previous\} \(… coolctl release activate \{version\} --previous \{previous\}\)/,
    );
    const noShow = await runCoolctl([
      'rollback',
      '7.0.0',
      '--root',
      root,
      '--activate-cmd',
      'ssh {node} coolctl release activate {version} --previous {previous}',
    ]);
    expect(noShow.code).toBe(2);
    expect(noShow.err).toMatch(/an activate command needs a show command beside it/);
  });
});
