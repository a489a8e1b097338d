// Every numeric option of the CLI goes through one parser (src/util/cli-args.ts): anything that is not a
// finite decimal number inside the option's range — "abc", "60%", "", "1e999", "0x10", "7d", out of
// range, a fraction where a whole number goes — is refused with exit 2 and one line naming the
// option and the range, before anything is sent (the API counts no request, nothing is stored). The
// same for options with a closed set of values (--log-level, --role): the choices are listed. The
// CLI as its own process against the real API of a fake node.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finiteNumber, parseNumber, UsageError } from '../../src/util/cli-args.ts';
import { expectUsageRefusal, type FakeApi, fakeApi, runCli } from './cli-process.ts';

let api: FakeApi;
beforeAll(async () => {
  api = await fakeApi();
});
afterAll(async () => {
  await api?.node.close();
});

const as = (role: 'viewer' | 'operator' | 'admin') => ({ COOLCTL_TOKEN: api.node.auth.tokens[role] });
const NOT_NUMBERS = ['abc', '60%', '', ' ', '1e999', '-1e999', 'Infinity', 'NaN', '0x10', '1_000', '4O'];
/** The audit's cases, run as processes (each costs a process start; the parser test covers the rest). */
const AUDITED = ['abc', '60%', '', '1e999'];

/** `coolctl ARGS… --api API` for each value, all at once. */
const each = (values: string[], args: (v: string) => string[], role: 'viewer' | 'operator' | 'admin') =>
  Promise.all(values.map((v) => runCli([...args(v), '--api', api.url], { env: as(role) })));

describe('the one number parser', () => {
  it('takes finite decimal numbers only', () => {
    for (const [text, n] of [
      ['40', 40],
      [' 40 ', 40],
      ['-1.5', -1.5],
      ['.5', 0.5],
      ['2e3', 2000],
      ['+7', 7],
      ['0', 0],
    ] as const)
      expect(finiteNumber(text), text).toBe(n);
    for (const text of NOT_NUMBERS) expect(finiteNumber(text), JSON.stringify(text)).toBeUndefined();
  });

  it('refuses outside the range or a fraction where a whole number goes, naming the option', () => {
    const rule = { min: 1, max: 1000, integer: true };
    expect(parseNumber('--limit', '50', rule)).toBe(50);
    expect(() => parseNumber('--limit', '0', rule)).toThrow(UsageError);
    expect(() => parseNumber('--limit', '2.5', rule)).toThrow(
      '--limit "2.5": want a whole number from 1 to 1000',
    );
    expect(() => parseNumber('--fan', '60%', { min: 0, max: 100, what: 'fanPct, %' })).toThrow(
      '--fan "60%": not a number; want a number from 0 to 100 (fanPct, %)',
    );
  });

  it('no option of the CLI parses a number any other way', () => {
    // The class of the defect: `.option(…, Number)`, parseInt/parseFloat, or Number() of an option.
    const files = [
      'src/cli.ts',
      ...readdirSync('src/cli')
        .filter((f) => f.endsWith('.ts'))
        .map((f) => join('src/cli', f)),
    ];
    for (const f of files) {
      const text = readFileSync(f, 'utf8');
      expect(text, f).not.toMatch(/\.option\([^)]*,\s*(Number|parseInt|parseFloat)\b/);
      expect(text, f).not.toMatch(/\bparse(Int|Float)\(/);
      expect(text, f).not.toMatch(/Number\(o\.\w+/);
    }
  });
});

describe('numeric options refuse what is not a number in range, and send nothing', () => {
  it('override --fan and --setpoint: the unit contract’s ranges; nothing stored', async () => {
    const before = api.received();
    const fans = await each(
      [...AUDITED, '150', '-1'],
      (v) => ['override', 'zone-1', 'AHU-01', '--fan', v],
      'operator',
    );
    for (const r of fans)
      expectUsageRefusal(r, /^coolctl: --fan ".*": .*want a number from 0 to 100 \(fanPct, %\)$/);
    expect(fans[0]!.stderr.trim()).toBe(
      'coolctl: --fan "abc": not a number; want a number from 0 to 100 (fanPct, %)',
    );
    const setpoints = await each(
      ['abc', '30'],
      (v) => ['override', 'zone-1', 'AHU-01', '--setpoint', v],
      'operator',
    );
    for (const r of setpoints)
      expectUsageRefusal(
        r,
        /^coolctl: --setpoint ".*": .*want a number from 12 to 27 \(supplySetpointC, °C\)$/,
      );
    // --clear with a value is ambiguous: refused rather than one of them silently dropped.
    const both = await runCli(['override', 'zone-1', 'AHU-01', '--clear', '--fan', '40', '--api', api.url], {
      env: as('operator'),
    });
    expectUsageRefusal(both, /--clear goes alone/);
    expect(api.received()).toBe(before);
    expect(api.cluster.operators.get('zone-1')?.overrides ?? {}).toEqual({});

    const ok = await runCli(['override', 'zone-1', 'AHU-01', '--fan', '40.5', '--api', api.url], {
      env: as('operator'),
    });
    expect(ok.status, ok.stderr).toBe(0);
    expect(api.cluster.operators.get('zone-1')?.overrides).toEqual({ 'AHU-01': { fanPct: 40.5 } });
    const clear = await runCli(['override', 'zone-1', 'AHU-01', '--clear', '--api', api.url], {
      env: as('operator'),
    });
    expect(clear.status, clear.stderr).toBe(0);
  }, 120_000);

  it('token create --ttl-days: a positive number of days up to 366; nothing created', async () => {
    const before = api.received();
    const refused = await each(
      ['7d', '0', '367', ''],
      (v) => ['token', 'create', '--label', 'ci', '--ttl-days', v],
      'admin',
    );
    for (const r of refused)
      expectUsageRefusal(r, /^coolctl: --ttl-days ".*": .*want a number from 0\.01 to 366 \(days\)$/);
    expect(api.received()).toBe(before);
    const ok = await runCli(
      ['token', 'create', '--label', 'ci', '--ttl-days', '7', '--api', api.url, '--output', 'json'],
      { env: as('admin') },
    );
    expect(ok.status, ok.stderr).toBe(0);
    const days = ((JSON.parse(ok.stdout) as { expiresAtMs: number }).expiresAtMs - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(6.99);
    expect(days).toBeLessThanOrEqual(7);
  }, 60_000);

  it('history --limit: a whole number from 1 to 1000', async () => {
    const before = api.received();
    for (const r of await each(['0', '2.5', 'abc', '1001'], (v) => ['history', '--limit', v], 'viewer'))
      expectUsageRefusal(r, /^coolctl: --limit ".*": .*want a whole number from 1 to 1000$/);
    expect(api.received()).toBe(before);
    const ok = await runCli(['history', '--limit', '5', '--api', api.url], { env: as('viewer') });
    expect(ok.status, ok.stderr).toBe(0);
  }, 60_000);
});

describe('options with a closed set of values list them and exit 2', () => {
  it('--log-level of run, gateway (both entries) and upgrade', async () => {
    const runs = await Promise.all(
      [
        ['run', '--config', 'x.yaml', '--node', 'n1'],
        ['gateway', '--config', 'x.yaml'],
        ['upgrade', '1.2.3'],
      ].map((args) => runCli([...args, '--log-level', 'verbose'])),
    );
    // The gateway's own entry point, as its systemd unit runs it.
    const gw = spawnSync(
      process.execPath,
      ['src/gateway/main.ts', '--config', 'x.yaml', '--log-level', 'verbose'],
      {
        encoding: 'utf8',
        timeout: 20_000,
      },
    );
    for (const r of [...runs, { status: gw.status, stderr: gw.stderr }]) {
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr.trim()).toBe(
        "error: option '--log-level <level>' argument 'verbose' is invalid. Allowed choices are fatal, error, warn, info, debug, trace, silent.",
      );
    }
  }, 60_000);

  it('user add --role lists the roles; nothing is sent', async () => {
    const before = api.received();
    const r = await runCli(['user', 'add', 'bob', '--role', 'superuser', '--api', api.url], {
      env: as('admin'),
      stdin: 'a long enough password\n',
    });
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe(
      "error: option '--role <role>' argument 'superuser' is invalid. Allowed choices are viewer, operator, admin.",
    );
    expect(api.received()).toBe(before);
  }, 30_000);
});
