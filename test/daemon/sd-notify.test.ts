// sd_notify: the daemon as the systemd unit runs it (built dist/, the unit's Node flags) under a
// (stand-in) systemd — a Python AF_UNIX datagram listener as NOTIFY_SOCKET, Debian's
// systemd-notify as the sender — says READY once started, pings the watchdog while its loops run,
// and STOPPING on SIGTERM, then exits 0; it runs on the unit's malloc (jemalloc). The watchdog is withheld
// while the loops are unhealthy (a stand-in systemd-notify that records its arguments).
import { type ChildProcess, spawn } from 'node:child_process';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SdNotify } from '../../src/daemon/sd-notify.ts';
import { useEtcdFixture } from '../cluster/harness.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { buildDaemon, type DaemonCommand, deployedDaemon } from '../support/deployed-daemon.ts';
import { writeOneNodeConfig } from './one-node.ts';

const fx = useEtcdFixture('sd-notify');
const procs: ChildProcess[] = [];
let daemonCmd: DaemonCommand;
beforeAll(() => {
  buildDaemon();
  daemonCmd = deployedDaemon();
}, 120_000);
afterAll(() => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
});

const LISTENER = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print('listening', flush=True)
while True:
    print(s.recv(4096).decode().replace('\\n', ' '), flush=True)
`;

describe('systemd notification', () => {
  it('the daemon as the unit runs it: READY after start, WATCHDOG while running, STOPPING on SIGTERM, exit 0', async () => {
    expect(daemonCmd.script).toMatch(/dist\/src\/cli\.js$/);
    const dir = fx.root.dir;
    const sock = join(dir, 'notify.sock');
    const listener = spawn('python3', ['-c', LISTENER, sock], { stdio: ['ignore', 'pipe', 'inherit'] });
    procs.push(listener);
    let heard = '';
    listener.stdout!.on('data', (d: Buffer) => {
      heard += d.toString();
    });
    await waitFor('the notify socket', () => heard.includes('listening'));
    const { config } = await writeOneNodeConfig({
      dir: dir,
      etcd: fx.etcd.clientConfig(),
      prefix: '/coolctl/sd',
      periodMs: 200,
    });
    const daemon = spawn(
      process.execPath,
      [
        ...daemonCmd.nodeFlags,
        daemonCmd.script,
        'run',
        '--config',
        config,
        '--node',
        'n1',
        '--log-level',
        'warn',
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, ...daemonCmd.env, NOTIFY_SOCKET: sock, WATCHDOG_USEC: '600000' },
      },
    );
    procs.push(daemon);
    const exited = new Promise<number | null>((r) => daemon.once('exit', (code) => r(code)));
    await waitFor('READY=1', () => /READY=1/.test(heard), { timeoutMs: 20_000 });
    expect(heard).toMatch(/STATUS=node n1: 4 groups/);
    // The unit's malloc (LD_PRELOAD): prepare.sh and install.sh install it; without it glibc's would run.
    expect(await readFile(`/proc/${daemon.pid}/maps`, 'utf8')).toContain('libjemalloc');
    await waitFor('three watchdog pings', () => (heard.match(/WATCHDOG=1/g) ?? []).length >= 3, {
      timeoutMs: 10_000,
    });
    daemon.kill('SIGTERM');
    expect(await exited).toBe(0);
    await waitFor('STOPPING=1', () => /STOPPING=1/.test(heard));
  }, 60_000);

  it('withholds the watchdog ping while the loops are unhealthy, resumes when they recover', async () => {
    const log = join(fx.root.dir, 'fake-notify.log');
    const bin = join(fx.root.dir, 'fake-systemd-notify');
    await writeFile(bin, `#!/bin/sh\necho "$@" >> ${log}\n`);
    await chmod(bin, 0o755);
    const sd = new SdNotify(
      { NOTIFY_SOCKET: '/nonexistent', WATCHDOG_USEC: '200000' },
      process.pid,
      quietLogger,
      bin,
    );
    let healthy = false;
    let asked = 0;
    const pings = async () =>
      ((await readFile(log, 'utf8').catch(() => '')).match(/WATCHDOG=1/g) ?? []).length;
    sd.startWatchdog(() => {
      asked++;
      return healthy ? { ok: true, problems: [] } : { ok: false, problems: ['the test stopped a loop'] };
    });
    try {
      await waitFor('three watchdog periods while unhealthy', () => asked >= 3);
      expect(await pings()).toBe(0);
      healthy = true;
      await waitFor('pings once healthy', async () => (await pings()) >= 2);
      healthy = false;
      const [n, at] = [await pings(), asked];
      await waitFor('four more periods while unhealthy', () => asked >= at + 4);
      expect(await pings()).toBeLessThanOrEqual(n + 1); // at most one send already in flight
    } finally {
      sd.stopWatchdog();
    }
  });
});
