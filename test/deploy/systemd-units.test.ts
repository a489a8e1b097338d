// Both systemd units, as shipped (deploy/systemd/): systemd rates them safe (`systemd-analyze
// security --offline=true`: exposure ≤ 2.5), `systemd-analyze verify` finds nothing wrong with
// them, and the hardened controller unit really runs the daemon under a real service manager.
//
// There is no systemd as PID 1 on this machine (the test VM's init is something else), so
// `systemd-run` against the system manager cannot work. The test starts systemd's own service
// manager instead, as a user instance (`systemd --user`, run as root) in a private mount namespace
// (`unshare -m`), where a tmpfs on /run/systemd says "booted with systemd" and holds the
// inaccessible nodes that ProtectHome= and ProtectKernel*= mount over paths; nothing of it is seen
// outside. That manager applies the unit's sandbox for real (seccomp filter, empty capability
// bounding set, no new privileges, read-only file system, private /tmp, hidden /proc, the device
// ACL in the devices cgroup), receives sd_notify from the daemon's systemd-notify children and
// restarts it when the watchdog pings stop. What differs from a gateway, and why, is in a drop-in
// (`dropIn` below): the paths (the repository and a test config instead of /opt/coolctl and
// /etc/coolctl) and User=/Group= (a user manager runs its services as its own user, root here:
// with no capabilities, as under User=coolctl). The test needs root (unshare, mount); it fails,
// saying so, where it is not.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tmpDir } from '../cluster/harness.ts';
import { writeOneNodeConfig } from '../daemon/one-node.ts';
import { waitFor } from '../helpers.ts';
import { buildDaemon } from '../support/deployed-daemon.ts';
import { type EtcdCluster, startEtcdCluster } from '../support/etcd-cluster.ts';
import { REPO_ROOT } from '../support/repo.ts';

const CONTROLLER = join(REPO_ROOT, 'deploy/systemd/coolctl@.service');
const GATEWAY = join(REPO_ROOT, 'deploy/systemd/coolctl-gateway@.service');
const scratch = mkdtempSync('/tmp/coolctl-units-');
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** An instance of the template, as systemd would load it, with /opt/coolctl moved to `optDir`. */
function instance(unit: string, name: string, optDir = '/opt/coolctl'): string {
  const path = join(scratch, name);
  writeFileSync(path, readFileSync(unit, 'utf8').replaceAll('/opt/coolctl', optDir));
  return path;
}

describe.each([
  ['coolctl@.service', CONTROLLER, 'coolctl@n1.service'],
  ['coolctl-gateway@.service', GATEWAY, 'coolctl-gateway@hall-a.service'],
])('deploy/systemd/%s', (_name, unit, name) => {
  it('is rated safe: systemd-analyze security --offline exposure ≤ 2.5', () => {
    const res = spawnSync(
      'systemd-analyze',
      ['security', '--offline=true', '--no-pager', instance(unit, name)],
      { encoding: 'utf8', timeout: 20_000 },
    );
    const m = /Overall exposure level for \S+: ([\d.]+)/.exec(res.stdout);
    expect(m, res.stderr || res.stdout).not.toBeNull();
    expect(Number(m![1])).toBeLessThanOrEqual(2.5);
  });

  it('passes systemd-analyze verify: no unknown key, ExecStart runs a binary that exists', () => {
    // The repository stands in for /opt/coolctl: verify checks that ExecStart's binary exists.
    const res = spawnSync('systemd-analyze', ['verify', '--man=no', instance(unit, name, REPO_ROOT)], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(`${res.stdout}${res.stderr}`).toBe('');
    expect(res.status).toBe(0);
  });

  it('logs as itself and keeps serial ports the only devices it can open', () => {
    const text = readFileSync(unit, 'utf8');
    expect(text).toMatch(/^SyslogIdentifier=coolctl(-gateway)?$/m);
    expect(text).toMatch(/^DevicePolicy=closed$/m);
    const allowed = [...text.matchAll(/^DeviceAllow=(\S+) rw$/gm)].map((m) => m[1]);
    expect(allowed.sort()).toEqual(['char-ttyACM', 'char-ttyAMA', 'char-ttyS', 'char-ttyUSB']);
    expect(text).toMatch(/^CapabilityBoundingSet=$/m);
    expect(text).not.toMatch(/^MemoryDenyWriteExecute=yes/m);
  });
});

// ---- the controller unit under a real service manager ----

/** `systemd --user` in a private mount namespace; its runtime dir is outside /tmp, /run and /home,
 * which the unit's PrivateTmp=, ProtectProc= and ProtectHome= hide from the service. */
class UserManager {
  readonly runtimeDir = mkdtempSync('/dev/shm/coolctl-units-');
  private proc: ChildProcess | undefined;
  private log = '';

  private readonly home: string;

  constructor(home: string) {
    this.home = home;
  }

  get configDir(): string {
    return join(this.home, '.config');
  }

  get unitDir(): string {
    return join(this.configDir, 'systemd/user');
  }

  /** Where StateDirectory=`name` is. */
  stateDir(name: string): string {
    return join(this.configDir, name);
  }

  async start(): Promise<void> {
    if (process.getuid?.() !== 0) throw new Error('this test needs root: it runs unshare -m and mount');
    const boot = [
      'set -e',
      'mount -t tmpfs tmpfs /run/systemd',
      'mkdir -p /run/systemd/system /run/systemd/inaccessible/dir',
      'cd /run/systemd/inaccessible',
      'touch reg; mknod chr c 0 0; mknod blk b 0 0; mkfifo fifo',
      `python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind("sock")'`,
      'chmod 0000 reg chr blk fifo sock dir',
      'exec /lib/systemd/systemd --user --log-target=console --log-level=notice',
    ].join('\n');
    this.proc = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', boot], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH,
        HOME: this.home,
        XDG_RUNTIME_DIR: this.runtimeDir,
        // Units in $XDG_CONFIG_HOME/systemd/user; StateDirectory= in $XDG_CONFIG_HOME (systemd
        // 252) or $XDG_STATE_HOME (254 on): one dir for both.
        XDG_CONFIG_HOME: this.configDir,
        XDG_STATE_HOME: this.configDir,
      },
    });
    for (const s of [this.proc.stdout!, this.proc.stderr!]) s.on('data', (d: Buffer) => (this.log += d));
    await waitFor(
      'systemd --user to answer',
      () => {
        if (this.proc!.exitCode !== null) throw new Error(`systemd --user exited: ${this.log}`);
        return this.ctl(['show', '-p', 'Version', '--value']).status === 0;
      },
      { timeoutMs: 20_000, intervalMs: 200 },
    );
  }

  ctl(args: string[]): { status: number | null; stdout: string; stderr: string } {
    return spawnSync('systemctl', ['--user', '--no-pager', ...args], {
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...process.env, XDG_RUNTIME_DIR: this.runtimeDir },
    });
  }

  show(unit: string, props: string[]): Record<string, string> {
    const res = this.ctl(['show', unit, ...props.map((p) => `--property=${p}`)]);
    return Object.fromEntries(
      res.stdout
        .split('\n')
        .filter(Boolean)
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
  }

  /** Stops the manager (it stops its units first); SIGKILL after 15 s, then whatever it left. */
  async stop(unit: string): Promise<void> {
    const p = this.proc;
    if (p && p.exitCode === null) {
      const pid = Number(this.show(unit, ['MainPID']).MainPID);
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000).unref())]);
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
      if (pid > 1) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone: the manager stopped it
        }
      }
    }
    rmSync(this.runtimeDir, { recursive: true, force: true });
  }
}

describe('deploy/systemd/coolctl@.service under a real systemd service manager', () => {
  const UNIT = 'coolctl@n1.service';
  let root: { dir: string; cleanup: () => Promise<void> };
  let etcd: EtcdCluster;
  let manager: UserManager;
  let logFile: string;
  let api: string;

  beforeAll(async () => {
    buildDaemon();
    root = await tmpDir('units');
    etcd = await startEtcdCluster({ size: 1, dataDir: join(root.dir, 'etcd') });
    manager = new UserManager(join(root.dir, 'home'));
    const written = await writeOneNodeConfig({
      dir: root.dir,
      etcd: etcd.clientConfig(),
      prefix: '/coolctl/units',
      periodMs: 500,
    });
    api = written.api;
    // The unit's data dir: StateDirectory=coolctl/%i, as /var/lib/coolctl/NODE on a gateway.
    const config = readFileSync(written.config, 'utf8').replace(
      /^dataDir: .*$/m,
      `dataDir: ${manager.stateDir('coolctl/n1')}`,
    );
    writeFileSync(written.config, config);
    mkdirSync(join(manager.unitDir, 'coolctl@.service.d'), { recursive: true });
    copyFileSync(CONTROLLER, join(manager.unitDir, 'coolctl@.service'));
    logFile = join(root.dir, 'daemon.log');
    writeFileSync(
      join(manager.unitDir, 'coolctl@.service.d/test.conf'),
      dropIn(written.config, root.dir, logFile),
    );
    await manager.start();
  }, 180_000);

  afterAll(async () => {
    await manager?.stop(UNIT);
    await etcd?.stop();
    await root?.cleanup();
  }, 60_000);

  const daemonLog = (): string => {
    try {
      return readFileSync(logFile, 'utf8').split('\n').slice(-30).join('\n');
    } catch {
      return '(no log)';
    }
  };

  it('becomes active only on READY, runs sandboxed, leads every group, pings the watchdog', async () => {
    expect(manager.ctl(['start', '--no-block', UNIT]).status).toBe(0);
    await waitFor(
      'the unit to become active (Type=notify: READY=1 received)',
      () => {
        const s = manager.show(UNIT, ['ActiveState', 'SubState', 'Result']);
        if (s.ActiveState === 'failed' || s.SubState === 'auto-restart')
          throw new Error(`${JSON.stringify(s)}\n${daemonLog()}`);
        return s.ActiveState === 'active';
      },
      { timeoutMs: 45_000, intervalMs: 200 },
    );
    const s = manager.show(UNIT, ['MainPID', 'StatusText', 'NRestarts', 'ControlGroup']);
    expect(s.StatusText).toMatch(/^node n1: 4 groups, API /);
    expect(s.NRestarts).toBe('0');

    // The sandbox the manager applied to the daemon's process.
    const status = readFileSync(`/proc/${s.MainPID}/status`, 'utf8');
    expect(status).toMatch(/^CapBnd:\s+0+$/m);
    expect(status).toMatch(/^CapEff:\s+0+$/m);
    expect(status).toMatch(/^NoNewPrivs:\s+1$/m);
    expect(status).toMatch(/^Seccomp:\s+2$/m);
    const mounts = readFileSync(`/proc/${s.MainPID}/mountinfo`, 'utf8');
    expect(mounts).toMatch(/ \/proc .*hidepid=invisible/);
    expect(mounts).toMatch(/ \/usr ro,| \/ ro,/);
    // DevicePolicy=closed: the devices cgroup lets through the pseudo devices systemd always
    // allows, and of the serial classes those this kernel has (ttyS: major 4; ttyUSB, ttyACM and
    // ttyAMA only once their drivers are loaded), nothing else: no disk, no memory device.
    const devices = readFileSync(`/sys/fs/cgroup/devices${s.ControlGroup}/devices.list`, 'utf8');
    expect(devices).toContain('c 4:* rw');
    expect(devices).not.toMatch(/^a /m);
    expect(devices).not.toMatch(/^b (?!0:0)/m);
    expect(devices).not.toMatch(/^c 1:1 /m);

    // The daemon works in there: etcd, its API, every group led and driven.
    await waitFor('/readyz', async () => (await fetch(`${api}/readyz`)).ok, { timeoutMs: 20_000 });
    await waitFor(
      'four groups led',
      () => (readFileSync(logFile, 'utf8').match(/"from":"follower","to":"leader"/g) ?? []).length >= 4,
      { timeoutMs: 20_000, intervalMs: 200 },
    );
    // Its watchdog pings (systemd-notify children, NotifyAccess=all) reach the manager.
    const first = Number(manager.show(UNIT, ['WatchdogTimestampMonotonic']).WatchdogTimestampMonotonic);
    await waitFor(
      'two more watchdog pings',
      () => Number(manager.show(UNIT, ['WatchdogTimestampMonotonic']).WatchdogTimestampMonotonic) > first,
      { timeoutMs: 15_000, intervalMs: 250 },
    );
    expect(readFileSync(logFile, 'utf8')).not.toMatch(/sd_notify failed|"level":(50|60)/);
  }, 120_000);

  it('a daemon that stops pinging is killed by the watchdog and restarted, READY again', async () => {
    const before = manager.show(UNIT, ['MainPID', 'NRestarts']);
    // Only the daemon's own pid: kill(0) would stop this test's whole process group (the test
    // runner and everything it started), and the suite would hang for good.
    const pid = Number(before.MainPID);
    if (!Number.isSafeInteger(pid) || pid <= 1)
      throw new Error(`the unit has no main process: ${JSON.stringify(before)}`);
    // A frozen process pings nothing: WatchdogSec=10 s later systemd aborts it (and sends SIGCONT).
    process.kill(pid, 'SIGSTOP');
    // Restarted at least once (a start that fails once, e.g. while etcd still holds the old lease,
    // is retried by Restart= too), active again on a new process; a timeout says the last state.
    try {
      await waitFor(
        'a watchdog restart',
        () => {
          const s = manager.show(UNIT, ['ActiveState', 'SubState', 'Result', 'NRestarts', 'MainPID']);
          if (s.ActiveState === 'active' && Number(s.NRestarts) >= 1 && s.MainPID !== before.MainPID)
            return true;
          throw new Error(JSON.stringify(s));
        },
        // WatchdogSec=10, then abort (TimeoutAbortSec: 20 s at worst), RestartSec=2, a start.
        { timeoutMs: 90_000, intervalMs: 250 },
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${daemonLog()}`);
    }
    await waitFor('/readyz after the restart', async () => (await fetch(`${api}/readyz`)).ok, {
      timeoutMs: 20_000,
    });
  }, 130_000);

  it('stops cleanly on systemctl stop: exit 0, result success', async () => {
    expect(manager.ctl(['stop', UNIT]).status).toBe(0);
    const s = manager.show(UNIT, ['ActiveState', 'Result', 'ExecMainStatus']);
    expect(s).toMatchObject({ ActiveState: 'inactive', Result: 'success', ExecMainStatus: '0' });
    expect(readFileSync(logFile, 'utf8')).toMatch(/stopping: resigning every group/);
  }, 60_000);
});

/**
 * What the test changes in the unit, and nothing else: where the code and the config are, the
 * user, and where the log goes (no journald here). Every hardening line is the shipped unit's.
 */
function dropIn(config: string, testRoot: string, logFile: string): string {
  const unit = readFileSync(CONTROLLER, 'utf8');
  const exec = unit.split('\n').find((l) => l.startsWith('ExecStart='));
  if (!exec) throw new Error(`${CONTROLLER}: no ExecStart`);
  return [
    '[Service]',
    'User=',
    'Group=',
    `WorkingDirectory=${REPO_ROOT}`,
    'ExecStart=',
    exec.replaceAll('/opt/coolctl', REPO_ROOT).replace('/etc/coolctl/controller.yaml', config),
    // /var/lib/coolctl is the system manager's StateDirectory; a user manager's is under the test dir.
    'ReadWritePaths=',
    // The config, the admin bootstrap file and etcd's TLS files are in the test's dir under /tmp,
    // which PrivateTmp= hides: bound in read-only (the state dir below it is bound writable).
    `BindReadOnlyPaths=${testRoot}`,
    // A checkout under /tmp (CI's fresh clone may be one) is hidden the same way: bound in too.
    ...(REPO_ROOT.startsWith('/tmp/') ? [`BindReadOnlyPaths=${REPO_ROOT}`] : []),
    `StandardOutput=append:${logFile}`,
    `StandardError=append:${logFile}`,
    '',
  ].join('\n');
}
