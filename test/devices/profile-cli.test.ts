// `coolctl profile check FILE` run as a process, as an engineer commissioning a unit runs it.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function coolctl(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['src/cli.ts', ...args], { timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('coolctl profile check', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coolctl-profile-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('prints OK with the points, the read plan and the writes of a good profile', async () => {
    const r = await coolctl('profile', 'check', 'config/profiles/coolctl-native.yaml');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('OK — profile coolctl-native (modbus, opcua)');
    expect(r.stdout).toContain('modbus: 18 points, 5 written');
    expect(r.stdout).toContain('read plan: 1 request\n    FC3 holding 100 (40101) × 16');
    expect(r.stdout).toContain(
      'FC16 holding 0 (40001) × 8: epoch, heartbeat, remoteEnable, fanPct, supplySetpointC',
    );
    expect(r.stdout).toContain('fencing: epoch, lease');
  }, 30_000);

  it('with --firmware, counts the points that firmware has', async () => {
    const f = 'config/profiles/holding-tenths-c-timeout-register.yaml';
    const old = await coolctl('profile', 'check', f);
    const now = await coolctl('profile', 'check', f, '--firmware', '2.4');
    expect(old.stdout).toContain('1 left out');
    expect(now.stdout).not.toContain('left out');
    expect(now.stdout).toContain('read plan: 9 requests');
  }, 30_000);

  it('lists every problem with its line and exits 1', async () => {
    const file = join(dir, 'broken-unit.yaml');
    await writeFile(
      file,
      [
        'profile: broken-unit',
        'description: d',
        'source: s',
        'protocol: modbus',
        'fencing: [lease]',
        'watchdog: { style: none }',
        'modbus:',
        '  functionCodes: [3, 4, 16]',
        '  points:',
        '    supplyC: { table: holding, address: 30010, type: i16 }',
        '    fanPct: { table: holding, address: 40002, type: u16, write: 6 }',
        '    supplySetpointC: { table: holding, address: 40003, type: i16, write: 16, colour: red }',
        '',
      ].join('\n'),
    );
    const r = await coolctl('profile', 'check', file);
    expect(r.code).toBe(2); // an invalid config file, as config validate and site import say
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`${file}: 3 problem(s)`);
    expect(r.stderr).toContain('line 10: /modbus/points/supplyC/address: 30010 is a Modicon input number');
    expect(r.stderr).toContain(
      "line 11: /modbus/points/fanPct/write: FC6 is not in the unit's functionCodes",
    );
    expect(r.stderr).toContain('line 12: /modbus/points/supplySetpointC/colour: unknown setting');
  }, 30_000);

  it('a file that is not there is a problem too, not a crash', async () => {
    const r = await coolctl('profile', 'check', join(dir, 'missing.yaml'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot read file/);
    expect(r.stderr).not.toMatch(/fatal|at .*\.ts:\d+/);
  }, 30_000);
});
