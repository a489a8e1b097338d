// The gateway's systemd unit: hardened (systemd-analyze security exposure ≤ 2.5, as PRODUCT.md
// asks of our units), and the gateway as the unit runs it under a stand-in systemd — a Python
// AF_UNIX datagram listener as NOTIFY_SOCKET, Debian's systemd-notify as the sender — says READY
// once its lines and listener are up, pings the watchdog, and says STOPPING on SIGTERM, then exits 0.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/util/async.ts';
import { waitFor } from '../helpers.ts';
import { writeConfig } from './harness.ts';

const UNIT = 'deploy/systemd/coolctl-gateway@.service';
const dir = mkdtempSync(join(tmpdir(), 'coolctl-gateway-unit-'));
const procs: ChildProcess[] = [];

afterAll(() => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe('deploy/systemd/coolctl-gateway@.service', () => {
  it('is hardened: systemd-analyze security exposure ≤ 2.5', () => {
    // An instance of the template, as systemd would load it.
    const instance = join(dir, 'coolctl-gateway@hall-a.service');
    copyFileSync(UNIT, instance);
    const res = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', instance], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    const m = /Overall exposure level for \S+: ([\d.]+)/.exec(res.stdout);
    expect(m, res.stderr || res.stdout).not.toBeNull();
    expect(Number(m![1])).toBeLessThanOrEqual(2.5);
  });

  it('runs the gateway as a notify service with a watchdog, and does not restart on a bad config', () => {
    const text = readFileSync(UNIT, 'utf8');
    expect(text).toMatch(/^Type=notify$/m);
    expect(text).toMatch(/^WatchdogSec=\d+$/m);
    expect(text).toMatch(/^RestartPreventExitStatus=2$/m);
    expect(text).toMatch(
      /^ExecStart=\S+\/node .*\/dist\/src\/gateway\/main\.js --config \/etc\/coolctl\/gateway-%i\.yaml$/m,
    );
    expect(text).toMatch(/^StateDirectory=coolctl-gateway\/%i$/m);
  });
});

const LISTENER = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print('listening', flush=True)
while True:
    print(s.recv(4096).decode().replace('\\n', ' '), flush=True)
`;

describe('the gateway under systemd notification', () => {
  it('READY after start, WATCHDOG while running, STOPPING on SIGTERM, exit 0', async () => {
    const sock = join(dir, 'notify.sock');
    const listener = spawn('python3', ['-c', LISTENER, sock], { stdio: ['ignore', 'pipe', 'inherit'] });
    procs.push(listener);
    let heard = '';
    listener.stdout!.on('data', (d: Buffer) => {
      heard += d.toString();
    });
    await waitFor('the notify socket', () => heard.includes('listening'));
    // A Modbus TCP line connects on demand: nothing has to listen for the gateway to start.
    const config = writeConfig(dir, 'notify', {
      gateway: 'notify',
      listen: { host: '127.0.0.1', port: 0 },
      http: { host: '127.0.0.1', port: 0 },
      stateFile: join(dir, 'epochs.json'),
      lines: [{ name: 'tcp', tcp: { host: '127.0.0.1', port: await freePort('127.0.0.1') } }],
      units: [{ id: 1, line: 'tcp' }],
    });
    // The unit's own entry (src/gateway/main.ts; the unit runs its compiled dist/ twin).
    const gw = spawn(process.execPath, ['src/gateway/main.ts', '--config', config, '--log-level', 'warn'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NOTIFY_SOCKET: sock, WATCHDOG_USEC: '600000' },
    });
    procs.push(gw);
    const exited = new Promise<number | null>((r) => gw.once('exit', (code) => r(code)));
    await waitFor('READY=1', () => /READY=1/.test(heard), { timeoutMs: 20_000 });
    expect(heard).toMatch(/STATUS=gateway notify: 1 units/);
    await waitFor('three watchdog pings', () => (heard.match(/WATCHDOG=1/g) ?? []).length >= 3, {
      timeoutMs: 10_000,
    });
    gw.kill('SIGTERM');
    expect(await exited).toBe(0);
    await waitFor('STOPPING=1', () => /STOPPING=1/.test(heard));
  }, 60_000);
});
