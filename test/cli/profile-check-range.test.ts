// `coolctl profile check` judges a profile by every value control may write, not one sample: a fan
// point whose scale holds 1 % but not 100 %, or a setpoint point that holds 20 °C but not 27 °C, is
// a profile with a problem (exit 2, the point, its line and the value that does not fit) — not one
// that passes the check and then refuses every write at full load on site.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from './cli-process.ts';

const dir = mkdtempSync(join(tmpdir(), 'coolctl-profile-range-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const SHIPPED = 'config/profiles/holding-tenths-c-timeout-register.yaml';

function variant(name: string, edit: (text: string) => string): string {
  // A profile's file is named after it: one folder per variant.
  mkdirSync(join(dir, name));
  const file = join(dir, name, SHIPPED.split('/').at(-1)!);
  const text = readFileSync(SHIPPED, 'utf8');
  const edited = edit(text);
  expect(edited, 'the edit applies').not.toBe(text);
  writeFileSync(file, edited);
  return file;
}

describe('coolctl profile check and the range a command covers', () => {
  it('refuses a fan point that cannot carry 100 % and a setpoint point that cannot carry 27 °C, both at once', async () => {
    const file = variant('narrow', (t) =>
      t
        .replace(
          'fanPct: { table: holding, address: 40019, type: u16, write: 6 }',
          'fanPct: { table: holding, address: 40019, type: u16, scale: 0.001, write: 6 }',
        )
        .replace(/(supplySetpointC: \{[^}]*type: )i16(, scale: 0\.1)/, '$1i16$2, offset: -3255'),
    );
    const r = await runCli(['profile', 'check', file]);
    expect(r.status, r.stdout + r.stderr).toBe(2);
    const out = r.stdout + r.stderr;
    expect(out).toMatch(/2 problem\(s\)/);
    expect(out).toMatch(/line \d+: \/modbus\/points\/fanPct: .*writing 100, an end of its range/);
    expect(out).toMatch(/line \d+: \/modbus\/points\/supplySetpointC: .*writing 27, an end of its range/);
  }, 30_000);

  it('passes every shipped profile', async () => {
    for (const f of [
      'holding-tenths-c-timeout-register',
      'tenths-f-int32-msw-no-watchdog',
      'coolctl-native',
    ]) {
      const r = await runCli(['profile', 'check', `config/profiles/${f}.yaml`]);
      expect(r.status, `${f}: ${r.stdout}${r.stderr}`).toBe(0);
    }
  }, 30_000);
});
