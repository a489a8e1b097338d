// The CLI's one exit-code rule (docs/cli.md, "Exit codes") for the file and release commands, each
// run as an operator runs it: 2 when what the user gave is not what the command needs (a profile
// that cannot encode its command, a bad argument, a folder or tarball that is no release, a version
// not installed, a node list that names no member), 1 when the operation failed on a good input
// (a release root that cannot be made, a cluster not fit for an upgrade). stderr names the problem.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, type StubApi, stubApi } from './cli-process.ts';

let tmp: string;
let api: StubApi;

/** A source tree as `release install` takes it: an entry and a version module. */
async function releaseTree(dir: string, version: string): Promise<string> {
  await mkdir(join(dir, 'src'), { recursive: true });
  await writeFile(join(dir, 'src/cli.ts'), '');
  await writeFile(
    join(dir, 'src/version.ts'),
    `export const VERSION = '${version}';\nexport const WIRE = Object.freeze({ version: 1, oldest: 1 });\n`,
  );
  return dir;
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'coolctl-exit-codes-'));
  // A profile that loads but whose setpoint register cannot hold the 20 °C a command writes.
  const profile = await readFile('config/profiles/holding-tenths-c-timeout-register.yaml', 'utf8');
  const narrow = profile.replace(
    'supplySetpointC: { table: holding, address: 40023, type: i16, scale: 0.1,',
    'supplySetpointC: { table: holding, address: 40023, type: i16, scale: 0.0001,',
  );
  expect(narrow).not.toBe(profile);
  await mkdir(join(tmp, 'narrow'));
  await writeFile(join(tmp, 'narrow/holding-tenths-c-timeout-register.yaml'), narrow);
  await mkdir(join(tmp, 'empty-folder'));
  await writeFile(join(tmp, 'garbage.tar.gz'), 'not a tarball');
  await writeFile(join(tmp, 'a-file'), '');
  await mkdir(join(tmp, 'opt/releases'), { recursive: true });
  const installed = await runCli([
    'release',
    'install',
    await releaseTree(join(tmp, 'tree'), '1.0.0'),
    '--root',
    join(tmp, 'opt'),
  ]);
  expect(installed.status, installed.stderr).toBe(0);
  // One member, n1, that answers /api/v1/cluster and nothing else: a cluster not fit to upgrade.
  api = await stubApi((r, self) =>
    r.url === '/api/v1/cluster'
      ? { status: 200, body: { node: 'n1', members: [{ node: 'n1', apiUrl: self }], groups: [] } }
      : { status: 503, body: { message: 'not ready' } },
  );
}, 60_000);

afterAll(async () => {
  await api?.close();
  await rm(tmp, { recursive: true, force: true });
});

describe('exit codes: invalid input is 2, a failed operation 1', () => {
  const root = () => join(tmp, 'opt');
  const rolling = (...args: string[]) => [...args, '--api', api.url, '--log-level', 'silent'];
  const cases: [string, () => string[], number, RegExp][] = [
    [
      'profile check: a profile that cannot encode the command it shows',
      () => ['profile', 'check', join(tmp, 'narrow/holding-tenths-c-timeout-register.yaml')],
      2,
      /line \d+: \/modbus\/points\/supplySetpointC: 20 is raw 200000, outside i16/,
    ],
    [
      'profile check --firmware that is no version',
      () => ['profile', 'check', 'config/profiles/coolctl-native.yaml', '--firmware', 'latest'],
      2,
      /--firmware "latest": want a dotted version such as 2 or 1\.4\.2/,
    ],
    [
      'release install: a folder that is not a release',
      () => ['release', 'install', join(tmp, 'empty-folder'), '--root', root()],
      2,
      /empty-folder is not a coolctl release/,
    ],
    [
      'release install: a .tar.gz that is not a tarball',
      () => ['release', 'install', join(tmp, 'garbage.tar.gz'), '--root', root()],
      2,
      /garbage\.tar\.gz: cannot be unpacked/,
    ],
    [
      'release activate: a version not installed',
      () => ['release', 'activate', '9.9.9', '--root', root()],
      2,
      /release 9\.9\.9 is not installed/,
    ],
    [
      'release activate: a version that names no release folder',
      () => ['release', 'activate', '../1.0.0', '--root', root()],
      2,
      /"\.\.\/1\.0\.0" is not a release version/,
    ],
    [
      'upgrade: a version not installed',
      () => rolling('upgrade', '9.9.9', '--root', root()),
      2,
      /release 9\.9\.9 is not installed/,
    ],
    [
      'upgrade --nodes: a name that is no member',
      () => rolling('upgrade', '1.0.0', '--root', root(), '--nodes', 'ghost'),
      2,
      /upgrade to 1\.0\.0 refused: ghost: not a member \(members: n1\)/,
    ],
    [
      'upgrade --nodes: a name that cannot go into a command',
      () => rolling('upgrade', '1.0.0', '--root', join(tmp, '{node}'), '--nodes', 'a;b'),
      2,
      /node "a;b" cannot go into a command/,
    ],
    [
      'upgrade: a cluster not fit (kept 1)',
      () => rolling('upgrade', '1.0.0', '--root', root()),
      1,
      /upgrade to 1\.0\.0 refused: .*n1/,
    ],
    [
      'release install: a release root that cannot be made (kept 1)',
      () => ['release', 'install', join(tmp, 'tree'), '--root', join(tmp, 'a-file/opt')],
      1,
      /cannot create .*a-file\/opt\/releases: ENOTDIR/,
    ],
  ];

  it.each(cases)('%s', async (_what, args, code, stderr) => {
    const r = await runCli(args());
    expect(r.status, r.stderr).toBe(code);
    expect(r.stderr).toMatch(stderr);
    expect(r.stderr).not.toMatch(/\n\s+at /); // a message, no stack
  });
});
