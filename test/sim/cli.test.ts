// The simulator as an operator runs it: `npm run sim -- --config FILE` prints where everything
// listens, serves its API, and stops cleanly with exit code 0 on SIGTERM.
import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers.ts';

const children: ReturnType<typeof spawn>[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

describe('npm run sim', () => {
  it('prints its endpoints, serves /sim/state, and exits 0 on SIGTERM', async () => {
    const child = spawn(
      process.execPath,
      [
        'firmware-sim/main.ts',
        '--config',
        'config/demo-site.yaml',
        '--ephemeral-ports',
        '--port',
        '0',
        '--log-level',
        'warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(child);
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const apiUrl = await waitFor(
      'the simulator to print its API address',
      () => {
        if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}: ${err}`);
        return /sim API\s+(http:\/\/[\d.]+:\d+)/.exec(out)?.[1];
      },
      { timeoutMs: 60_000 },
    );
    expect(out).toMatch(/MQTT broker\s+mqtt:\/\/127\.0\.0\.1:\d+/);
    expect(out).toMatch(/AHU-01\s+modbus-tcp\s+modbus-tcp:\/\/127\.0\.0\.1:\d+\/1/);
    expect(out).toMatch(/opcua\s+opc\.tcp:\/\/127\.0\.0\.1:\d+/);
    const state = (await (await fetch(`${apiUrl}/sim/state`)).json()) as { ahus: unknown[] };
    expect(state.ahus).toHaveLength(8);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  }, 90_000);
});
