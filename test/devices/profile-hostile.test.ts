// Device profiles against an attacker and a careless integrator: profile files that must be refused
// at load (every problem at once, with its line, `coolctl profile check` exiting 2), command values
// that must be refused or kept inside the device contract rather than wrapped, and register
// contents that must not decode into a believable figure. Pure codec tests here; what travels on
// the wire is in profile-hostile-wire.test.ts.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileProfile } from '../../src/devices/profile/codec.ts';
import { loadProfile, parseProfile } from '../../src/devices/profile/load.ts';
import { ProfileValueError } from '../../src/devices/profile/values.ts';
import { ConfigError, ErrorCodes } from '../../src/errors.ts';
import { SUPPLY_SETPOINT_RANGE_C } from '../../src/unit-contract.ts';

/** A Modbus profile named `hostile-unit` with these point lines (YAML, four spaces in). */
function modbusProfile(points: string, extra = ''): string {
  return [
    'profile: hostile-unit',
    'description: d',
    'source: s',
    'protocol: modbus',
    'fencing: [lease]',
    'watchdog: { style: none }',
    'modbus:',
    '  functionCodes: [1, 2, 3, 4, 5, 6, 15, 16]',
    extra,
    '  points:',
    '    supplyC: { table: input, address: 0, type: i16, scale: 0.1 }',
    points,
    '',
  ]
    .filter((l) => l !== '')
    .join('\n')
    .concat('\n');
}

function problemsOf(text: string): { path: string; message: string; line?: number }[] {
  try {
    parseProfile(text, '/profiles/hostile-unit.yaml');
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).code).toBe(ErrorCodes.PROFILE_INVALID);
    return (e as ConfigError).problems;
  }
  return [];
}

const words = (f: number): [number, number] => {
  const dv = new DataView(new ArrayBuffer(4));
  dv.setFloat32(0, f);
  return [dv.getUint16(0), dv.getUint16(2)];
};

describe('profile files a careless integrator writes are refused at load', () => {
  it('a negative scale, a non-finite offset and a 16-bit fencing epoch, each with its line', () => {
    const problems = problemsOf(
      modbusProfile(
        [
          '    fanPct: { table: holding, address: 0, type: u16, scale: -1, write: 16 }',
          '    returnC: { table: input, address: 1, type: i16, offset: .inf }',
          '    cwValvePct: { table: input, address: 2, type: u16, offset: .nan }',
          '    epoch: { table: holding, address: 1, type: u16, write: 16 }',
        ].join('\n'),
        '  writeTogether: [[fanPct, epoch]]',
      ),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          path: '/modbus/points/fanPct/scale',
          message: 'scale -1 is negative',
          line: 12,
        }),
        expect.objectContaining({
          path: '/modbus/points/returnC/offset',
          message: 'offset Infinity is not a finite number',
          line: 13,
        }),
        expect.objectContaining({
          path: '/modbus/points/cwValvePct/offset',
          message: 'offset NaN is not a finite number',
          line: 14,
        }),
        expect.objectContaining({
          path: '/modbus/points/epoch/type',
          message: 'the fencing epoch outgrows type u16',
          line: 15,
        }),
      ]),
    );
  });

  it('a profile built in code is refused the same way when compiled', () => {
    expect(() =>
      compileProfile({
        profile: 'in-code',
        description: 'd',
        source: 's',
        protocol: 'modbus',
        fencing: ['lease'],
        watchdog: { style: 'none' },
        modbus: {
          functionCodes: [3, 4, 16],
          points: {
            supplyC: { table: 'input', address: 0, type: 'i16', scale: -0.1 },
            fanPct: { table: 'holding', address: 0, type: 'u16', write: 16 },
          },
        },
      }),
    ).toThrow(/scale -0.1 is negative/);
  });
});

describe('what refusing a hostile profile costs is bounded', () => {
  it('a point of 3 000 unknown settings is refused with at most 1 000 problems, the last saying checking stopped', () => {
    const junk = Array.from({ length: 3000 }, (_, i) => `k${i}: 1`).join(', ');
    const text = modbusProfile(`    returnC: { table: input, address: 1, type: i16, scale: 0.1, ${junk} }`);
    expect(text.length).toBeLessThan(32 * 1024);
    const problems = problemsOf(text) as { message: string; checkingStopped?: boolean }[];
    expect(problems.length).toBeGreaterThan(900);
    expect(problems.length).toBeLessThanOrEqual(1001);
    expect(problems.at(-1)).toMatchObject({ checkingStopped: true });
    expect(problems.at(-1)!.message).toMatch(/checking stopped/);
  });

  it('the daemon’s profile reader refuses a file over 32 KB unread, naming the limit', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coolctl-profile-size-'));
    try {
      const file = join(dir, 'hostile-unit.yaml');
      await writeFile(file, modbusProfile(`    # ${'x'.repeat(40 * 1024)}`));
      const err = await loadProfile(file).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).message).toMatch(/device profile/);
      expect((err as ConfigError).message).toMatch(/32 KB|32768|32 KiB/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('commands that do not fit are refused, never wrapped', () => {
  it('a negative setpoint into an unsigned register, overflow after scaling, NaN and Infinity', () => {
    const c = compileProfile(
      parseProfile(
        modbusProfile(
          [
            '    supplySetpointC: { table: holding, address: 0, type: u16, scale: 0.1, write: 6 }',
            '    fanPct: { table: holding, address: 1, type: i16, scale: 0.01, write: 6 }',
          ].join('\n'),
        ),
      ),
    );
    for (const cmd of [
      { supplySetpointC: -5 },
      { supplySetpointC: 6553.6 },
      { supplySetpointC: Number.NaN },
      { supplySetpointC: Number.POSITIVE_INFINITY },
      { fanPct: 327.68 },
      { fanPct: -327.69 },
      { fanPct: Number.NEGATIVE_INFINITY },
    ]) {
      let err: unknown;
      try {
        c.encodeCommand(cmd);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(cmd)).toBeInstanceOf(ProfileValueError);
      expect((err as ProfileValueError).code).toBe(ErrorCodes.PROFILE_VALUE);
    }
  });

  it('rounding keeps a setpoint inside the contract: 27 °C to a whole-°F unit is 80 °F, not 81', () => {
    const c = compileProfile(
      parseProfile(
        modbusProfile(
          [
            '    supplySetpointC: { table: holding, address: 0, type: i16, unit: F, write: 6 }',
            '    fanPct: { table: holding, address: 1, type: u16, scale: 3, write: 6 }',
          ].join('\n'),
        ),
      ),
    );
    // What the unit (and the simulator) reads from each write must be inside the range it accepts.
    for (let v = SUPPLY_SETPOINT_RANGE_C.min; v <= SUPPLY_SETPOINT_RANGE_C.max; v += 0.1) {
      const [w] = c.encodeCommand({ supplySetpointC: v });
      const back = c.decodeWrite(6, w?.address ?? -1, w?.values ?? []);
      expect(back.ok, String(v)).toBe(true);
      const got = back.ok ? (back.command.supplySetpointC as number) : Number.NaN;
      expect(got, String(v)).toBeGreaterThanOrEqual(SUPPLY_SETPOINT_RANGE_C.min);
      expect(got, String(v)).toBeLessThanOrEqual(SUPPLY_SETPOINT_RANGE_C.max);
      // One whole °F at most from what was asked.
      expect(Math.abs(got - v), String(v)).toBeLessThanOrEqual(5 / 9 + 1e-9);
    }
    expect(c.encodeCommand({ supplySetpointC: 27 })[0]?.values).toEqual([80]);
    // 100 % in steps of 3 % is 99 %, not 102 %.
    expect(c.encodeCommand({ fanPct: 100 })[0]?.values).toEqual([33]);
  });

  it('a float32 setpoint in °F reads back inside the range too (12 °C is not 11.999999)', () => {
    const c = compileProfile(
      parseProfile(
        modbusProfile('    supplySetpointC: { table: holding, address: 0, type: f32, unit: F, write: 16 }'),
      ),
    );
    for (const v of [SUPPLY_SETPOINT_RANGE_C.min, SUPPLY_SETPOINT_RANGE_C.max]) {
      const [w] = c.encodeCommand({ supplySetpointC: v });
      const back = c.decodeWrite(16, 0, w?.values ?? []);
      expect(back.ok && back.command.supplySetpointC).toBeGreaterThanOrEqual(SUPPLY_SETPOINT_RANGE_C.min);
      expect(back.ok && back.command.supplySetpointC).toBeLessThanOrEqual(SUPPLY_SETPOINT_RANGE_C.max);
      expect(back.ok && back.command.supplySetpointC).toBeCloseTo(v, 5);
    }
  });

  it('OPC-UA: a method argument beyond its point’s Int16 is refused, not handed to the unit to wrap', () => {
    const ua = compileProfile(
      parseProfile(
        [
          'profile: hostile-ua',
          'description: d',
          'source: s',
          'protocol: opcua',
          'fencing: [lease]',
          'watchdog: { style: none }',
          'opcua:',
          '  points:',
          '    supplyC: { nodeId: "s={unit}.Supply" }',
          '    supplySetpointC: { nodeId: "s={unit}.Sp", type: Int16, scale: 0.01 }',
          '    fanPct: { nodeId: "s={unit}.Fan", type: UInt16 }',
          '  writeCommand: { object: "s={unit}", method: "s={unit}.Apply", arguments: [fanPct, supplySetpointC] }',
          '',
        ].join('\n'),
      ),
    ).opcua!;
    // 20 °C is 2000 hundredths: fine. 400 °C is 40 000, past an Int16's 32 767.
    expect(ua.encodeCommand({ fanPct: 50, supplySetpointC: 20 }, 'U').call?.inputArguments).toEqual([
      { point: 'fanPct', value: 50 },
      { point: 'supplySetpointC', value: 2000 },
    ]);
    expect(() => ua.encodeCommand({ fanPct: 50, supplySetpointC: 400 }, 'U')).toThrow(
      /supplySetpointC: 400 is 40000 as the unit's Int16, outside -32768…32767/,
    );
    expect(() => ua.encodeCommand({ fanPct: -1, supplySetpointC: 20 }, 'U')).toThrow(ProfileValueError);
  });
});

describe('readings that are not measurements decode as absent', () => {
  it('a float register holding Infinity, or a reading with its words swapped, is absent', () => {
    const c = compileProfile(
      parseProfile(
        modbusProfile(
          [
            '    returnC: { table: input, address: 10, type: f32 }',
            '    cwValvePct: { table: input, address: 12, type: f32 }',
            '    fanPct: { table: holding, address: 0, type: u16, write: 6 }',
          ].join('\n'),
        ),
      ),
    );
    const [hi, lo] = words(21.5);
    const d = c.decodeReads([
      { request: { fc: 4, table: 'input', address: 10, count: 4 }, values: [0x7f80, 0, lo, hi] },
    ]);
    expect(d.returnC).toBeUndefined();
    expect(d.cwValvePct).toBeUndefined();
    expect(d.absent).toEqual(['returnC', 'cwValvePct']);
    // The same words in the right order are a reading; 0.0 is one too.
    const ok = c.decodeReads([
      { request: { fc: 4, table: 'input', address: 10, count: 4 }, values: [hi, lo, 0, 0] },
    ]);
    expect(ok).toMatchObject({ returnC: 21.5, cwValvePct: 0, absent: [] });
  });

  it('a float no-data value is matched as the register holds it (−999.9 is −999.900024 in a float32)', () => {
    const c = compileProfile(
      parseProfile(
        modbusProfile(
          [
            '    returnC: { table: input, address: 10, type: f32, noData: [-999.9, 3.4e38] }',
            '    fanPct: { table: holding, address: 0, type: u16, write: 6 }',
          ].join('\n'),
        ),
      ),
    );
    for (const nd of [-999.9, 3.4e38]) {
      const d = c.decodeReads([
        { request: { fc: 4, table: 'input', address: 10, count: 2 }, values: words(nd) },
      ]);
      expect(d.returnC, String(nd)).toBeUndefined();
      expect(d.absent).toEqual(['returnC']);
    }
    // The simulator shows a missing value as that same no-data value.
    const image = c.encodeImage({});
    expect([image.get('input')?.get(10), image.get('input')?.get(11)]).toEqual(words(-999.9));
  });
});

describe('coolctl profile check on a hostile file', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coolctl-hostile-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('prints every problem at once, each with its line, and exits 2', async () => {
    const file = join(dir, 'hostile-unit.yaml');
    await writeFile(
      file,
      modbusProfile(
        [
          '    fanPct: { table: holding, address: 0, type: u16, scale: -0.1, write: 16 }',
          '    returnC: { table: input, address: 0, type: i16, scale: 0.01 }',
          '    cwValvePct: { table: input, address: 65535, type: u32 }',
          '    coolingKw: { table: input, address: 7, type: u16, offset: .nan }',
          '    fanKw: { table: input, address: 8, type: u16, colour: red }',
          '    epoch: { table: holding, address: 1, type: i16, write: 16 }',
        ].join('\n'),
        '  numbering: wire\n  writeTogether: [[fanPct, epoch]]',
      ),
    );
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        ['src/cli.ts', 'profile', 'check', file],
        { timeout: 20_000 },
        (err, stdout, stderr) =>
          resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`${file}: 6 problem(s)`);
    for (const line of [
      'line 13: /modbus/points/fanPct/scale: scale -0.1 is negative',
      'line 14: /modbus/points/returnC/address: returnC overlaps supplyC in the input table',
      'line 15: /modbus/points/cwValvePct/address: a u32 at 65535 runs past 65535',
      'line 16: /modbus/points/coolingKw/offset: offset NaN is not a finite number',
      'line 17: /modbus/points/fanKw/colour: unknown setting',
      'line 18: /modbus/points/epoch/type: the fencing epoch outgrows type i16',
    ]) {
      expect(r.stderr).toContain(line);
    }
  }, 30_000);
});
