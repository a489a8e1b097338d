// The profile loader: every problem of a bad file listed with its line, Modicon numbers, and every
// shipped profile loading and compiling.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { supportedFields } from '../../src/devices/opcua/profile-command.ts';
import { compileProfile } from '../../src/devices/profile/codec.ts';
import { loadProfile, parseProfile } from '../../src/devices/profile/load.ts';
import { resolveAddress, toModicon } from '../../src/devices/profile/modicon.ts';
import { ConfigError } from '../../src/errors.ts';

const PROFILES = 'config/profiles';

function problemsOf(
  text: string,
  file = '/x/bad-unit.yaml',
): { line?: number; path: string; message: string }[] {
  try {
    parseProfile(text, file);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).code).toBe('COOLCTL_E_PROFILE_INVALID');
    return (e as ConfigError).problems;
  }
  throw new Error('expected problems');
}

// Each line marked `# L<n>` carries the problem the test expects there.
const BAD = `profile: bad-unit
description: many problems at once
source: test
protocol: modbus
fencing: [epoch]                                                    # L5 epoch without a point
colour: blue                                                        # L6 unknown key
watchdog: { style: toggle, point: heartbeat, timeoutS: 60, refreshS: 45 }   # L7 refresh too slow
modbus:
  functionCodes: [1, 2, 3, 4, 5, 16]
  points:
    supplyC: { table: holding, address: 30010, type: i16, scale: 0.1 }     # L11 Modicon input on holding
    returnC: { table: input, address: 30011, type: i24 }                   # L12 bad type
    fanPct: { table: holding, address: 40002, type: u16, write: 6 }        # L13 no FC6
    supplySetpointC: { table: input, address: 30020, type: i16, write: 16 } # L14 input is read only
    run: { table: coil, address: 5, type: u16, write: 15 }                 # L15 coil u16, no FC15
    remoteEnable: { table: holding, address: 40010, type: u16, command: { on: 1, off: 1 }, write: 16 } # L16
    heartbeat: { table: holding, address: 40006, type: bool, write: 16 }   # L17 bool needs bit
    fanSpeedBoost: { table: holding, address: 40004, type: u16 }          # L18 unknown point
    mode: { table: input, address: 30001, type: u16, enum: { 0: local, 1: manual } } # L19 bad mode
    cwValvePct: { table: input, address: 30002, type: u16, inverted: true, noData: -1 } # L20
    alarmFan: { table: discrete, address: 10001, type: bool, alarm: fan, colour: red } # L21 unknown key
    watchdogS: { table: input, address: 30003, type: u16, sinceFirmware: "2.1" } # L22 no firmware note
  writeTogether:
    - [fanPct, heartbeat]                                                  # L24 not contiguous
`;

describe('loading a profile', () => {
  it('lists every problem of a bad file, each with its line', () => {
    const problems = problemsOf(BAD);
    const at = (line: number, text: RegExp) =>
      expect(problems.some((p) => p.line === line && text.test(p.message))).toBe(true);
    at(5, /fencing epoch but no writable epoch point/);
    at(6, /unknown setting/);
    at(7, /refresh every 45 s leaves no room/);
    at(11, /Modicon input number but the point's table is holding/);
    at(12, /"i24" is not allowed/);
    at(13, /FC6 is not in the unit's functionCodes/);
    at(14, /FC16 cannot write a input \(read only\)/);
    at(15, /a coil is one bit/);
    at(15, /FC15 is not in the unit's functionCodes/);
    at(16, /on and off are the same code/);
    at(17, /needs the bit it is/);
    at(18, /unknown point "fanSpeedBoost"/);
    at(19, /"manual" is not allowed/);
    at(20, /inverted on a point that is not a boolean/);
    at(20, /no-data value -1 is not a raw u16/);
    at(21, /unknown setting/);
    at(22, /sinceFirmware without a firmware note/);
    at(24, /fanPct and heartbeat are not contiguous \(3 unused between them\)/);
    expect(problems.length).toBeGreaterThanOrEqual(19);
    expect(problems.every((p) => p.line !== undefined)).toBe(true);
    // In file order, so a reader can walk down the file.
    const lines = problems.map((p) => p.line as number);
    expect(lines).toEqual([...lines].sort((a, b) => a - b));
  });

  it('the message names the file, the line and what is allowed', () => {
    try {
      parseProfile(BAD, '/x/bad-unit.yaml');
    } catch (e) {
      expect((e as Error).message).toMatch(
        /\/x\/bad-unit\.yaml:13 \/modbus\/points\/fanPct\/write: FC6 is not in/,
      );
      expect((e as Error).message).toMatch(
        /allowed: write: 16 \(this unit writes single registers by FC16\)/,
      );
    }
  });

  it('refuses a profile whose name is not its file name, and YAML that does not parse', () => {
    const ok = readdirSync(PROFILES).find((f) => f.startsWith('tenths-f')) as string;
    const text = readFileSync(`${PROFILES}/${ok}`, 'utf8');
    expect(problemsOf(text, '/x/other-name.yaml')).toEqual([
      expect.objectContaining({ path: '/profile', line: expect.any(Number) }),
    ]);
    expect(problemsOf('profile: [unclosed\n')[0]?.message).toMatch(/YAML syntax/);
  });

  it('a writeTogether group needs FC16, and one that spans tables is refused', () => {
    const base = (fcs: string, group: string) => `profile: g
description: d
source: s
protocol: modbus
fencing: [lease]
watchdog: { style: none }
modbus:
  functionCodes: [${fcs}]
  points:
    supplyC: { table: input, address: 0, type: i16 }
    fanPct: { table: holding, address: 10, type: u16, write: 16 }
    supplySetpointC: { table: holding, address: 11, type: i16, write: 16 }
    run: { table: coil, address: 3, type: bool, write: 5 }
  writeTogether: [${group}]
`;
    expect(() => parseProfile(base('1,3,4,5,16', '[fanPct, supplySetpointC]'), '/x/g.yaml')).not.toThrow();
    expect(
      problemsOf(base('1,3,4,5,6', '[fanPct, supplySetpointC]'), '/x/g.yaml').map((p) => p.message),
    ).toContain('needs FC16 to go in one request, and the unit has no FC16');
    expect(problemsOf(base('1,3,4,5,16', '[fanPct, run]'), '/x/g.yaml')[0]?.message).toMatch(/mixes tables/);
  });

  it('epoch fencing needs the epoch in the same write as every command', () => {
    const text = `profile: e
description: d
source: s
protocol: modbus
fencing: [epoch]
watchdog: { style: none }
modbus:
  functionCodes: [3, 16]
  points:
    supplyC: { table: holding, address: 100, type: i16 }
    epoch: { table: holding, address: 0, type: u64, write: 16 }
    fanPct: { table: holding, address: 4, type: u16, write: 16 }
    supplySetpointC: { table: holding, address: 9, type: i16, write: 16 }
  writeTogether: [[epoch, fanPct]]
`;
    expect(problemsOf(text, '/x/e.yaml').map((p) => p.message)).toEqual([
      'fencing epoch: supplySetpointC would be written without the epoch',
    ]);
  });
});

describe('sections that fail their schema', () => {
  it('a broken modbus section is listed, and its points are still judged', () => {
    const text = `profile: half
description: d
source: s
protocol: modbus
fencing: [lease]
watchdog: { style: none }
modbus:
  maxGap: -1
  points:
    supplyC: { table: holding, address: 30010, type: i16 }
`;
    const problems = problemsOf(text, '/x/half.yaml');
    // A missing setting is placed at the first line of its section.
    expect(problems.map((p) => [p.line, p.path])).toEqual([
      [8, '/modbus/functionCodes'],
      [8, '/modbus/maxGap'],
      [10, '/modbus/points/supplyC/address'],
    ]);
  });

  it('OPC-UA points need exactly one of nodeId and browsePath; method arguments are command points', () => {
    const text = `profile: ua
description: d
source: s
protocol: opcua
fencing: [epoch]
watchdog: { style: none }
opcua:
  points:
    supplyC: { nodeId: "s={unit}.SupplyC", browsePath: "/Objects/{unit}/SupplyC" }
    returnC: {}
    fanPct: { nodeId: "s={unit}.Fan", write: true }
  writeCommand: { object: "s={unit}", method: "s={unit}.Write", arguments: [fanPct, supplyC] }
`;
    const problems = problemsOf(text, '/x/ua.yaml');
    expect(problems.map((p) => [p.line, p.message])).toEqual([
      [5, 'fencing epoch but the OPC-UA write method takes no epoch'],
      [9, 'a point needs exactly one of nodeId and browsePath'],
      [10, 'a point needs exactly one of nodeId and browsePath'],
      [12, '"supplyC" is not a command point'],
    ]);
  });
});

describe('Modicon numbers', () => {
  it('converts each table’s numbers to wire addresses and back', () => {
    expect(resolveAddress('holding', 40001)).toEqual({ wire: 0 });
    expect(resolveAddress('holding', 40448)).toEqual({ wire: 447 });
    expect(resolveAddress('input', 30501)).toEqual({ wire: 500 });
    expect(resolveAddress('discrete', 10011)).toEqual({ wire: 10 });
    expect(resolveAddress('coil', '00062')).toEqual({ wire: 61 });
    expect(resolveAddress('holding', '465536')).toEqual({ wire: 65_535 });
    expect(resolveAddress('holding', 400001)).toEqual({ wire: 0 });
    expect(toModicon('holding', 447)).toBe('40448');
    expect(toModicon('coil', 61)).toBe('00062');
    expect(toModicon('input', 20_000)).toBe('320001');
  });

  it('takes small integers, and every integer with numbering wire, as wire addresses', () => {
    expect(resolveAddress('coil', 62)).toEqual({ wire: 62 });
    expect(resolveAddress('holding', 10_000)).toEqual({ wire: 10_000 });
    expect(resolveAddress('holding', 30_010, 'wire')).toEqual({ wire: 30_010 });
    expect(resolveAddress('holding', 70_000, 'wire')).toMatchObject({
      problem: expect.stringMatching(/past 65535/),
    });
  });

  it('refuses a number whose prefix names another table, or none', () => {
    expect(resolveAddress('holding', 30_010)).toMatchObject({
      problem: "30010 is a Modicon input number but the point's table is holding",
    });
    expect(resolveAddress('coil', '40001')).toMatchObject({
      problem: expect.stringMatching(/holding number/),
    });
    expect(resolveAddress('holding', 40_000)).toMatchObject({ problem: expect.stringMatching(/outside/) });
    expect(resolveAddress('holding', 25_000)).toMatchObject({
      problem: expect.stringMatching(/not a Modicon number/),
    });
    expect(resolveAddress('holding', '465537')).toMatchObject({ problem: expect.stringMatching(/outside/) });
  });
});

describe('the shipped profiles', () => {
  const files = readdirSync(PROFILES).filter((f) => f.endsWith('.yaml'));

  it('are there: native and at least three vendor-style ones', () => {
    expect(files).toContain('coolctl-native.yaml');
    expect(files.length).toBeGreaterThanOrEqual(4);
  });

  for (const f of files) {
    it(`${f} loads, compiles, and round-trips a command`, async () => {
      const p = await loadProfile(`${PROFILES}/${f}`);
      const c = compileProfile(p, { firmware: '99' });
      const cmd: Record<string, number | boolean> = {};
      const sample: Record<string, number | boolean> = {
        epoch: 7,
        heartbeat: 3,
        remoteEnable: true,
        run: true,
        fanPct: 55,
        supplySetpointC: 18.5,
        watchdogTimerS: p.watchdog.timeoutS ?? 60,
      };
      if (!p.modbus && c.opcua) {
        // An OPC-UA-only profile: its method arguments and variable writes decode back.
        for (const n of supportedFields(c.opcua, 'U')) cmd[n] = sample[n] as number | boolean;
        const { call, writes } = c.opcua.encodeCommand(cmd, 'U');
        const raw = Object.fromEntries([
          ...(call?.inputArguments ?? []).map((a) => [a.point, a.value]),
          ...writes.map((w) => [w.point, w.value]),
        ]);
        const back = c.opcua.decode(raw) as unknown as Record<string, unknown>;
        for (const k of Object.keys(cmd).filter((n) => n in (p.opcua?.points ?? {})))
          expect(back[k]).toEqual(cmd[k]);
        return;
      }
      expect(c.planReads().length).toBeGreaterThan(0);
      for (const n of c.commandPoints) cmd[n] = sample[n] as number | boolean;
      const writes = c.encodeCommand(cmd);
      const back: Record<string, unknown> = {};
      for (const w of writes) {
        const d = c.decodeWrite(w.fc, w.address, w.values);
        expect(d.ok).toBe(true);
        if (d.ok) Object.assign(back, d.command);
      }
      for (const [k, v] of Object.entries(cmd)) {
        if (typeof v === 'number' && k !== 'heartbeat') expect(back[k]).toBeCloseTo(v, 3);
        else if (k === 'heartbeat') expect(back[k]).toBe(c.points.get(k)?.type === 'bool' ? 1 : 3);
        else expect(back[k]).toBe(v);
      }
    });
  }

  it('together cover every convention the issue names', async () => {
    const all = await Promise.all(files.map((f) => loadProfile(`${PROFILES}/${f}`)));
    const pts = all.flatMap((p) =>
      Object.entries(p.modbus?.points ?? {}).map(([name, pt]) => ({ name, pt, p })),
    );
    const styles = new Set(all.map((p) => p.watchdog.style));
    expect([...styles].sort()).toEqual(['countdown', 'none', 'timeout-register', 'toggle', 'validity']);
    const has = (f: (x: (typeof pts)[number]) => boolean) => expect(pts.some(f)).toBe(true);
    has((x) => x.name.endsWith('C') && x.pt.scale === 0.1 && x.pt.unit === undefined); // temps ×10
    has((x) => x.pt.unit === 'F');
    has((x) => x.pt.type === 'i32' && (x.pt.wordOrder ?? x.p.modbus?.wordOrder) === 'msw-first');
    has((x) => x.pt.type === 'f32' && (x.pt.wordOrder ?? x.p.modbus?.wordOrder) === 'msw-first');
    has((x) => x.pt.type === 'f32' && (x.pt.wordOrder ?? x.p.modbus?.wordOrder) === 'lsw-first');
    has((x) => x.name === 'run' && x.pt.table === 'coil');
    has((x) => x.pt.inverted === true);
    has((x) => x.pt.command !== undefined);
    has((x) => x.pt.noData === -32768);
    has((x) => x.pt.sinceFirmware !== undefined);
    has((x) => x.name === 'watchdogTimerS' && x.p.watchdog.style === 'timeout-register');
    expect(
      all.some((p) => !p.modbus?.functionCodes.includes(6) && !p.modbus?.functionCodes.includes(15)),
    ).toBe(true);
  });
});
