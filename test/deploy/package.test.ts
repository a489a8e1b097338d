// The x64 .deb, installed and run (docs/packaging.md). `npm run package` builds the release once
// (reused while its inputs are unchanged). The package installs with the real dpkg into a fresh
// root, in a network namespace of its own (so with no network at all): `dpkg --root` with
// --force-script-chrootless runs the maintainer scripts on this host with DPKG_ROOT set (the
// root has no shell or useradd of its own), and --force-depends because the empty root registers
// no libc6. Then the installed `coolctl` validates a config, and the daemon, started as the
// installed unit's ExecStart says (its node flags, its Environment=), takes node c2's place in a
// running hall — etcd ×3, the simulator's Modbus and OPC-UA units, c1 — leads a group, drives it,
// and hands it back when stopped. A newer .deb (this one repacked under another version) then
// installs its release beside the one the node ran, leaving that release's files and `current` as
// they were; purge removes the release store.
import { type ChildProcess, execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import {
  chmod,
  chown,
  mkdir,
  mkdtemp,
  readFile,
  readlink,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { md5sums } from '../../scripts/package/deb.ts';
import { waitFor } from '../helpers.ts';
import { Hall } from '../support/hall.ts';
import {
  buildRelease,
  packagedNodeConfig,
  procFigures,
  startLogged,
  stop,
  unitCommand,
  waitRunning,
} from './package-release.ts';

const run = promisify(execFile);

let hall: Hall | undefined;
let tmp = '';
let root = '';
let deb = '';
let version = '';
let daemon: ChildProcess | undefined;
let simTarball = '';
let sim: ChildProcess | undefined;
let launcherPath = '';

beforeAll(async () => {
  const release = await buildRelease();
  deb = release.arch.x64!.deb;
  simTarball = release.arch.x64!.sim;
  version = release.version;
  tmp = await mkdtemp(join(tmpdir(), 'coolctl-package-'));
  // Others (the coolctl user) must reach the staged root's files.
  await chmod(tmp, 0o755);
  root = join(tmp, 'root');
  // No Node on PATH (this host's /usr/bin has Node 20): only the tools the launchers use.
  launcherPath = join(tmp, 'bin');
  await mkdir(launcherPath);
  for (const tool of ['readlink', 'dirname']) await symlink(`/usr/bin/${tool}`, join(launcherPath, tool));
  hall = await Hall.start({
    name: 'package',
    controllers: 2,
    groups: 2,
    airHandlers: 4,
    opcuaShare: 0.5,
    timing: { periodMs: 1000 },
  });
}, 600_000);

afterAll(async () => {
  if (daemon) await stop(daemon, 10_000);
  if (sim) await stop(sim, 10_000);
  await hall?.stopAll();
  if (tmp) await rm(tmp, { recursive: true, force: true });
}, 60_000);

/**
 * The .deb restated as another version, as the next release's package would be: unpacked, every
 * place that names the version changed (control, postinst, the bundle's folder, its manifest and
 * version module), packed again uncompressed (seconds, where a build takes a minute).
 */
async function repackAs(from: string, next: string): Promise<string> {
  const tree = join(tmp, `deb-${next}`);
  await run('dpkg-deb', ['-R', from, tree], { timeout: 120_000 });
  const restate = async (file: string, from: RegExp, to: string) => {
    const text = await readFile(file, 'utf8');
    const changed = text.replace(from, to);
    if (changed === text) throw new Error(`${file}: nothing matched ${from}`);
    await writeFile(file, changed);
  };
  await restate(join(tree, 'DEBIAN/control'), /^Version: .*$/m, `Version: ${next}`);
  await restate(join(tree, 'DEBIAN/postinst'), /^version=".*"$/m, `version="${next}"`);
  // Where the package keeps its release: /usr/lib/coolctl, or /opt/coolctl/releases in the layout
  // before side-by-side installs (so the test also says what that layout does on upgrade).
  const home = existsSync(join(tree, 'usr/lib/coolctl')) ? 'usr/lib/coolctl' : 'opt/coolctl/releases';
  const bundle = join(tree, home, next);
  await rename(join(tree, home, version), bundle);
  await restate(join(bundle, 'release.json'), /"version": "[^"]*"/, `"version": "${next}"`);
  await restate(
    join(bundle, 'dist/src/version.js'),
    /export const VERSION = '[^']*';/,
    `export const VERSION = '${next}';`,
  );
  await writeFile(join(tree, 'DEBIAN/md5sums'), md5sums(tree));
  const out = join(tmp, `coolctl_${next}_amd64.deb`);
  await run('dpkg-deb', ['--root-owner-group', '-Znone', '--build', tree, out], { timeout: 120_000 });
  await rm(tree, { recursive: true, force: true });
  return out;
}

/** `dpkg -i` into the fresh root, in a network namespace of its own (an install needs no network). */
function dpkgInstall(deb: string): Promise<{ stdout: string; stderr: string }> {
  return run(
    'unshare',
    [
      '--net',
      'dpkg',
      `--root=${root}`,
      '--force-script-chrootless',
      '--force-depends',
      '--log=/dev/null',
      '-i',
      deb,
    ],
    { timeout: 180_000 },
  );
}

/** A field of `name`'s line in the root's passwd or group file. */
async function entry(file: 'passwd' | 'group', name: string): Promise<string[] | undefined> {
  const lines = (await readFile(join(root, 'etc', file), 'utf8')).split('\n');
  return lines.map((l) => l.split(':')).find((f) => f[0] === name);
}

describe('the x64 .deb', () => {
  it('installs with no network into a fresh root: user, conffiles, units, release layout', async () => {
    // A fresh root: dpkg's empty database, and the account files useradd --prefix adds to.
    await mkdir(join(root, 'var/lib/dpkg/info'), { recursive: true });
    await mkdir(join(root, 'var/lib/dpkg/updates'), { recursive: true });
    for (const f of ['status', 'available']) await writeFile(join(root, 'var/lib/dpkg', f), '');
    await mkdir(join(root, 'etc'));
    await writeFile(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
    await writeFile(join(root, 'etc/group'), 'root:x:0:\n');
    await writeFile(join(root, 'etc/shadow'), 'root:*:19000:0:99999:7:::\n', { mode: 0o640 });
    await writeFile(join(root, 'etc/gshadow'), 'root:*::\n', { mode: 0o640 });
    const dpkg = await dpkgInstall(deb);
    expect(dpkg.stdout).toMatch(/Setting up coolctl/);

    const admin = `--admindir=${join(root, 'var/lib/dpkg')}`;
    // dpkg-query's own ${field} syntax (escaped: not this template's placeholders).
    const q = await run('dpkg-query', [admin, '-W', `-f=\${Status} \${Version}\n\${Conffiles}\n`, 'coolctl']);
    const [status, ...conffiles] = q.stdout.trim().split('\n');
    expect(status).toBe(`install ok installed ${version}`);
    expect(conffiles.map((l) => l.trim().split(' ')[0]).sort()).toEqual([
      '/etc/coolctl/controller.yaml',
      '/etc/coolctl/gateway.yaml.example',
    ]);

    const user = await entry('passwd', 'coolctl');
    expect(user?.slice(5)).toEqual(['/var/lib/coolctl', '/usr/sbin/nologin']);
    const gid = Number((await entry('group', 'coolctl'))?.[2]);
    expect(Number(user?.[2])).toBeGreaterThan(0);
    const state = await stat(join(root, 'var/lib/coolctl'));
    expect([state.uid, state.gid, state.mode & 0o777]).toEqual([Number(user?.[2]), gid, 0o750]);
    const etc = await stat(join(root, 'etc/coolctl'));
    expect([etc.uid, etc.gid, etc.mode & 0o777]).toEqual([0, gid, 0o750]);
    const conf = await stat(join(root, 'etc/coolctl/controller.yaml'));
    expect([conf.gid, conf.mode & 0o777]).toEqual([gid, 0o640]);

    expect(await readlink(join(root, 'opt/coolctl/current'))).toBe(`releases/${version}`);
    expect(await readlink(join(root, 'usr/bin/coolctl'))).toBe('../../opt/coolctl/current/bin/coolctl');
    for (const u of ['coolctl@.service', 'coolctl-gateway@.service'])
      expect(await readFile(join(root, 'usr/lib/systemd/system', u), 'utf8')).toBe(
        await readFile(join('deploy/systemd', u), 'utf8'),
      );
    const manifest = JSON.parse(
      await readFile(join(root, 'opt/coolctl/releases', version, 'release.json'), 'utf8'),
    ) as { version: string; cpu: string };
    expect([manifest.version, manifest.cpu]).toEqual([version, 'x64']);
    // dpkg owns the package's copy of the release, never the installed one a node runs from.
    const owned = (await run('dpkg-query', [admin, '-L', 'coolctl'], { maxBuffer: 64 * 1024 * 1024 })).stdout;
    expect(owned).toContain(`/usr/lib/coolctl/${version}/release.json`);
    expect(owned).not.toContain('/opt/coolctl/releases');
    // DEBIAN/md5sums: dpkg --verify finds nothing changed as shipped, and names a file changed since.
    const verify = () =>
      run('dpkg', [`--root=${root}`, '--verify', 'coolctl']).then(
        (r) => r.stdout,
        (err: { stdout?: string }) => err.stdout ?? '',
      );
    expect(await verify()).toBe('');
    const shipped = join(root, 'usr/lib/coolctl', version, 'release.json');
    const text = await readFile(shipped, 'utf8');
    await writeFile(shipped, `${text} `);
    expect(await verify()).toMatch(
      new RegExp(`^\\?\\?5\\S* +/usr/lib/coolctl/${version}/release\\.json$`, 'm'),
    );
    await writeFile(shipped, text);
  }, 180_000);

  it('runs coolctl from /usr/bin: --version, and config validate', async () => {
    const coolctl = join(root, 'usr/bin/coolctl');
    const env = { ...process.env, PATH: launcherPath };
    expect((await run(coolctl, ['--version'], { env })).stdout.trim()).toBe(version);

    const config = await packagedNodeConfig({
      hallDir: hall!.dir,
      node: 'c2',
      etcDir: join(root, 'etc/coolctl'),
      stateDir: join(root, 'var/lib/coolctl'),
    });
    const ok = await run(coolctl, ['config', 'validate', config, '--node', 'c2'], { env });
    expect(ok.stdout).toMatch(/valid/i);
    const bad = join(tmp, 'bad.yaml');
    await writeFile(bad, 'cluster: {}\n');
    const refused = await run(coolctl, ['config', 'validate', bad, '--node', 'c2'], { env }).then(
      () => null,
      (err: { code: number; stdout: string; stderr: string }) => err,
    );
    expect(refused?.code).toBe(2);
    expect(`${refused?.stdout}${refused?.stderr}`).toMatch(/site/);
  }, 60_000);

  it('runs as its unit says, joins the hall as c2, leads a group and drives its units', async () => {
    const h = hall!;
    await h.kill('c2', 'SIGTERM');
    await h.waitForLeaders({ among: ['c1'], timeoutMs: 20_000 });
    const seq0 = await h.lastSeq();

    const etcDir = join(root, 'etc/coolctl');
    const unit = unitCommand(join(root, 'usr/lib/systemd/system/coolctl@.service'), {
      instance: 'c2',
      opt: join(root, 'opt/coolctl'),
      etc: etcDir,
    });
    // The unit's user where every file the node reads is in the root; the secure hall's
    // certificates stay in the hall's own root-only dir, so there it runs as root.
    const uid = Number((await entry('passwd', 'coolctl'))?.[2]);
    const gid = Number((await entry('group', 'coolctl'))?.[2]);
    const asUser = !h.security;
    if (asUser) {
      for (const f of ['site.yaml', 'cluster.secret', 'controller.yaml']) {
        await chown(join(etcDir, f), 0, gid);
        await chmod(join(etcDir, f), 0o640);
      }
      await run('chown', ['-R', `${uid}:${gid}`, join(root, 'var/lib/coolctl')]);
    }
    const cmd = asUser
      ? {
          cmd: 'setpriv',
          args: [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', unit.cmd, ...unit.args],
        }
      : unit;
    process.stdout.write(
      `installed daemon: ${asUser ? `as uid ${uid}: ` : 'as root: '}${unit.cmd} ${unit.args.join(' ')}\n`,
    );
    const logPath = join(h.dir, 'c2.log');
    // HOME as systemd sets it for the unit's User=.
    daemon = startLogged(
      cmd,
      logPath,
      asUser ? { ...unit.env, HOME: join(root, 'var/lib/coolctl') } : unit.env,
    );
    const startMs = await waitRunning(daemon, 'c2', logPath, 60_000);

    const leaders = await h.waitForLeaders({
      among: ['c1', 'c2'],
      timeoutMs: 30_000,
      where: (l) => [...l.values()].some((x) => x.node === 'c2'),
    });
    const [group, lead] = [...leaders].find(([, l]) => l.node === 'c2')!;
    const units = h.groups[group]!;
    await waitFor(
      `an accepted write to every unit of ${group} under c2's epoch ${lead.epoch}`,
      async () => {
        const r = await h.journal(seq0);
        return units.every((a) => r.entries.some((e) => e.ahu === a && e.accepted && e.epoch === lead.epoch));
      },
      { timeoutMs: 20_000, intervalMs: 250 },
    );
    const fig = procFigures(daemon.pid!);
    process.stdout.write(
      `installed x64 daemon: running after ${(startMs / 1000).toFixed(1)} s, leads ${group} (${units.join(', ')}); RSS ${fig.rssMb.toFixed(0)} MB, CPU ${fig.cpuS.toFixed(1)} s so far\n`,
    );

    // Stopped, it hands its group back: c1 leads everything again.
    expect(await stop(daemon, 20_000)).toBe(0);
    await h.waitForLeaders({ among: ['c1'], timeoutMs: 20_000 });
    expect((await h.check()).violations.map((v) => v.message)).toEqual([]);
  }, 180_000);

  it('a newer .deb installs beside the running release and leaves it and current alone; purge removes them', async () => {
    const next = `${version}+next`;
    const nextDeb = await repackAs(deb, next);
    const opt = join(root, 'opt/coolctl');
    const oldCli = join(opt, 'releases', version, 'dist/src/cli.js');
    const oldNode = join(opt, 'releases', version, 'node/bin/node');
    const [cliBefore, nodeBefore] = [await stat(oldCli), await stat(oldNode)];

    const dpkg = await dpkgInstall(nextDeb);
    const admin = `--admindir=${join(root, 'var/lib/dpkg')}`;
    expect((await run('dpkg-query', [admin, '-W', `-f=\${Status} \${Version}`, 'coolctl'])).stdout).toBe(
      `install ok installed ${next}`,
    );

    // The release the node ran from: the very same files, still what `current` names.
    for (const [file, before] of [
      [oldCli, cliBefore],
      [oldNode, nodeBefore],
    ] as const) {
      expect(existsSync(file), `${file} after the upgrade`).toBe(true);
      const now = await stat(file);
      expect([now.ino, now.size, now.mode]).toEqual([before.ino, before.size, before.mode]);
    }
    expect(await readlink(join(opt, 'current'))).toBe(`releases/${version}`);
    expect(dpkg.stdout).toContain(`coolctl ${next} installed beside ${version}, which the nodes still run`);
    // dpkg took away only its own copy of the old release.
    expect(existsSync(join(root, 'usr/lib/coolctl', version))).toBe(false);
    expect(existsSync(join(root, 'usr/lib/coolctl', next, 'release.json'))).toBe(true);

    const coolctl = join(root, 'usr/bin/coolctl');
    const env = { ...process.env, PATH: launcherPath };
    expect((await run(coolctl, ['--version'], { env })).stdout.trim()).toBe(version);
    const list = JSON.parse(
      (await run(coolctl, ['release', 'list', '--root', opt, '--output', 'json'], { env })).stdout,
    ) as { version: string; current: boolean; manifest: { version: string; cpu: string } }[];
    expect(list.map((r) => [r.version, r.current, r.manifest.version, r.manifest.cpu])).toEqual([
      [version, true, version, 'x64'],
      [next, false, next, 'x64'],
    ]);
    // What the rolling upgrade does on this host for its node: current moves, coolctl is the new one.
    await run(coolctl, ['release', 'activate', next, '--root', opt], { env });
    expect((await run(coolctl, ['--version'], { env })).stdout.trim()).toBe(next);
    expect(await readlink(join(opt, 'previous'))).toBe(`releases/${version}`);

    await run(
      'dpkg',
      [`--root=${root}`, '--force-script-chrootless', '--log=/dev/null', '--purge', 'coolctl'],
      {
        timeout: 120_000,
      },
    );
    for (const gone of ['opt/coolctl', 'usr/lib/coolctl', 'usr/bin/coolctl', 'var/lib/coolctl'])
      expect(existsSync(join(root, gone)), gone).toBe(false);
  }, 300_000);

  it("the simulator's own bundle runs the demo hall from its folder", async () => {
    await run('tar', ['-xzf', simTarball, '-C', tmp]);
    const folder = join(tmp, `coolctl-sim-${version}-linux-x64`);
    const logPath = join(tmp, 'sim.log');
    sim = startLogged(
      {
        cmd: join(folder, 'bin/coolctl-sim'),
        args: ['--ephemeral-ports', '--port', '0', '--profile', 'constant'],
      },
      logPath,
      { PATH: launcherPath },
      folder,
    );
    const api = await waitFor(
      'the bundled simulator to print its API address',
      async () => {
        const log = await readFile(logPath, 'utf8');
        if (sim!.exitCode !== null) throw new Error(`coolctl-sim exited ${sim!.exitCode}:\n${log}`);
        return /sim API\s+(http:\/\/[\d.]+:\d+)/.exec(log)?.[1];
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    const state = (await (await fetch(`${api}/sim/state`)).json()) as { ahus: { protocol: string }[] };
    expect(new Set(state.ahus.map((a) => a.protocol))).toEqual(new Set(['modbus-tcp', 'opcua']));
    expect(await stop(sim, 10_000)).toBe(0);
  }, 60_000);
});
