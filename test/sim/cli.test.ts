// The simulator as an operator runs it: `npm run sim -- --config FILE` prints where everything
// listens, serves its API, and stops cleanly with exit code 0 on SIGTERM.
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers.ts';

const children: ReturnType<typeof spawn>[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

/** `firmware-sim/main.ts ARGS` as an operator starts it, with what it has printed so far. */
function startSim(args: string[]) {
  const child = spawn(process.execPath, ['firmware-sim/main.ts', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const printed = { out: '', err: '' };
  child.stdout!.on('data', (d: Buffer) => {
    printed.out += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    printed.err += d.toString();
  });
  return { child, printed };
}

describe('npm run sim', () => {
  it('prints its endpoints, serves /sim/state, and exits 0 on SIGTERM', async () => {
    const { child, printed } = startSim([
      '--config',
      'config/demo-site.yaml',
      '--ephemeral-ports',
      '--port',
      '0',
      '--log-level',
      'warn',
    ]);
    const apiUrl = await waitFor(
      'the simulator to print its API address',
      () => {
        if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}: ${printed.err}`);
        return /sim API\s+(http:\/\/[\d.]+:\d+)/.exec(printed.out)?.[1];
      },
      { timeoutMs: 60_000 },
    );
    expect(printed.out).toMatch(/MQTT broker\s+mqtt:\/\/127\.0\.0\.1:\d+/);
    expect(printed.out).toMatch(/AHU-01\s+modbus-tcp\s+modbus-tcp:\/\/127\.0\.0\.1:\d+\/1/);
    expect(printed.out).toMatch(/opcua\s+opc\.tcp:\/\/127\.0\.0\.1:\d+/);
    const state = (await (await fetch(`${apiUrl}/sim/state`)).json()) as { ahus: unknown[] };
    expect(state.ahus).toHaveLength(8);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  }, 90_000);

  it('drops a silent Modbus client after --modbus-idle-timeout-ms, and refuses a bad value', async () => {
    const { child: bad, printed: badPrinted } = startSim(['--modbus-idle-timeout-ms', '10']);
    // A usage error: exit 2, the usage printed.
    expect(await new Promise((r) => bad.once('exit', r))).toBe(2);
    expect(badPrinted.err).toMatch(/--modbus-idle-timeout-ms must be a number in 1000…3600000, got "10"/);

    const { child, printed } = startSim([
      '--ephemeral-ports',
      '--port',
      '0',
      '--log-level',
      'warn',
      '--modbus-idle-timeout-ms',
      '1000',
    ]);
    const port = await waitFor(
      'the simulator to print AHU-01',
      () => /AHU-01\s+modbus-tcp\s+modbus-tcp:\/\/127\.0\.0\.1:(\d+)\//.exec(printed.out)?.[1],
      { timeoutMs: 60_000 },
    );
    const silent = connect(Number(port), '127.0.0.1');
    silent.on('error', () => undefined);
    const openedAt = performance.now();
    const closedAt = await new Promise<number>((r) => silent.once('close', () => r(performance.now())));
    expect(closedAt - openedAt).toBeGreaterThanOrEqual(900);
    expect(closedAt - openedAt).toBeLessThan(10_000);
    child.kill('SIGTERM');
  }, 90_000);
});
