// Every shipped device profile, served by the simulator and read by Debian's mbpoll — a Modbus
// master nobody here wrote — point by point at the address, table, type and word order the
// profile's YAML gives, scaled back by this test's own arithmetic (not the codec's). A write by
// mbpoll reaches the unit and is journaled by coolctl's point names.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { load as loadYaml } from 'js-yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_PROFILES_DIR, ModbusDevices } from '../../firmware-sim/ahu/modbus-devices.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import type { ModbusAirHandler, ModbusRtuAirHandler } from '../../src/config/site-schema.ts';
import { compileProfile } from '../../src/devices/profile/codec.ts';
import { loadProfile } from '../../src/devices/profile/load.ts';
import { quietLogger, waitFor } from '../helpers.ts';

/** The profiles a Modbus unit can serve (OPC-UA-only ones are proven in opcua-profile-unit.test.ts). */
function servesModbus(file: string): boolean {
  return (
    (loadYaml(readFileSync(join(DEFAULT_PROFILES_DIR, file), 'utf8')) as { modbus?: unknown }).modbus !==
    undefined
  );
}

const run = promisify(execFile);

interface YamlPoint {
  table: 'coil' | 'discrete' | 'input' | 'holding';
  address: number | string;
  type: 'bool' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'u64';
  scale?: number;
  offset?: number;
  unit?: 'C' | 'F';
  inverted?: boolean;
  enum?: Record<string, string>;
  alarm?: string;
  alarmBits?: Record<string, string>;
  command?: { on: number; off: number };
  wordOrder?: 'msw-first' | 'lsw-first';
  sinceFirmware?: string;
}

interface YamlProfile {
  profile: string;
  watchdog: { style: string; timeoutS?: number };
  modbus: {
    wordOrder?: 'msw-first' | 'lsw-first';
    numbering?: 'auto' | 'wire';
    points: Record<string, YamlPoint>;
  };
}

const PROFILES = readdirSync(DEFAULT_PROFILES_DIR)
  .filter((f) => f.endsWith('.yaml') && servesModbus(f))
  .map((f) => f.slice(0, -'.yaml'.length))
  .sort();

const base = generateSite(demoShape).airHandlers.find(
  (a): a is ModbusAirHandler => a.protocol === 'modbus-tcp',
);
if (!base) throw new Error('demo site has no Modbus TCP air handler');
const journal = new Journal(() => 0);
const units = new Map<string, SimAirHandler>();
const configs = PROFILES.map(
  (profile, i): ModbusAirHandler => ({
    ...base,
    id: `AHU-P${i + 1}`,
    endpoint: { host: '127.0.0.1', port: 0, unitId: 1 },
    localSetpointC: 18.5,
    localFanPct: 80,
    profile,
  }),
);
for (const c of configs) units.set(c.id, new SimAirHandler(c, journal));
const devices = new ModbusDevices(units, {
  ephemeralPorts: true,
  profileQuirks: { notReadyMs: 0, noDataMs: 0, firstReadDelayMs: 0 },
  logger: quietLogger,
});
const portOf = (id: string) =>
  Number(new URL((devices.endpoint(id) ?? '').replace(/^modbus-tcp:/, 'http:')).port);

beforeAll(async () => {
  await devices.start(configs);
  // Values with a fraction in every scale: a wrong scale or word order cannot read back right.
  for (const u of units.values()) {
    u.updateMeasurements({
      fanPct: 63,
      supplyC: 19.4,
      returnC: 29.7,
      cwValvePct: 41,
      fanKw: 3.25,
      coolingKw: 45.6,
    });
  }
});
afterAll(() => devices.stop());

/** The wire address of a profile address, by the numbering rules of docs/device-profiles.md. */
function wireAddress(p: YamlPoint, numbering: 'auto' | 'wire'): number {
  const modicon = (n: number) => (n % (n >= 100_000 ? 100_000 : 10_000)) - 1;
  if (typeof p.address === 'string') return modicon(Number(p.address));
  return numbering === 'auto' && p.address > 10_000 ? modicon(p.address) : p.address;
}

/** What the unit should show for a point, in engineering units (no write has reached it). */
function expectedValue(
  name: string,
  p: YamlPoint,
  unit: SimAirHandler,
  prof: YamlProfile,
): number | boolean | string {
  const st = unit.status();
  const cfg = unit.config;
  if (p.alarm !== undefined) return false;
  if (p.alarmBits !== undefined) return 0;
  const values: Record<string, number | boolean | string> = {
    supplyC: st.supplyC,
    returnC: st.returnC,
    supplySetpointFeedbackC: st.supplySetpointC,
    localSetpointC: cfg.localSetpointC,
    fanFeedbackPct: st.fanPct,
    cwValvePct: st.cwValvePct,
    fanKw: st.fanKw,
    coolingKw: st.coolingKw,
    mode: st.mode,
    runFeedback: true,
    heartbeatFeedback: 0,
    epochFeedback: 0,
    watchdogS: cfg.watchdogS,
    // Command registers before any write: the unit's local values, run on, timer at its default.
    supplySetpointC: cfg.localSetpointC,
    fanPct: cfg.localFanPct,
    remoteEnable: false,
    run: true,
    heartbeat: 0,
    epoch: 0,
    watchdogTimerS: prof.watchdog.timeoutS ?? 0,
  };
  const v = values[name];
  if (v === undefined) throw new Error(`test knows no expected value for point ${name}`);
  return v;
}

/** The raw value mbpoll should print, from the engineering value by the YAML's own fields. */
function expectedRaw(p: YamlPoint, v: number | boolean | string): number {
  if (typeof v === 'boolean') return Number(v !== (p.inverted ?? false));
  if (typeof v === 'string') {
    const code = Object.entries(p.enum ?? {}).find(([, m]) => m === v)?.[0];
    if (code === undefined) throw new Error(`mode ${v} has no code`);
    return Number(code);
  }
  const inUnit = p.unit === 'F' ? (v * 9) / 5 + 32 : v;
  return (inUnit - (p.offset ?? 0)) / (p.scale ?? 1);
}

async function mbpoll(port: number, args: string[]): Promise<number[]> {
  const { stdout } = await run(
    'mbpoll',
    ['-m', 'tcp', '-p', String(port), '-a', '1', '-0', '-1', '-o', '2', ...args, '127.0.0.1'],
    { timeout: 10_000 },
  );
  // Value lines: "[ref]: \tvalue"; 16-bit registers may print signed.
  return [...stdout.matchAll(/^\[\d+\]:\s+(-?[\d.]+(?:e[-+]?\d+)?)/gim)].map((m) => Number(m[1]));
}

/** One point read by mbpoll with the table, type and word order its YAML says; the raw value. */
async function readPoint(port: number, p: YamlPoint, address: number, wordOrder: string): Promise<number> {
  const table = { coil: '0', discrete: '1', input: '3', holding: '4' }[p.table];
  const msw = (p.wordOrder ?? wordOrder) === 'msw-first';
  const at = ['-r', String(address)];
  switch (p.type) {
    case 'i32':
    case 'u32':
    case 'f32': {
      const t = `${table}:${p.type === 'f32' ? 'float' : 'int'}`;
      const [v] = await mbpoll(port, ['-t', t, ...at, '-c', '1', ...(msw ? ['-B'] : [])]);
      return p.type === 'u32' && (v ?? 0) < 0 ? (v ?? 0) + 2 ** 32 : (v ?? Number.NaN);
    }
    case 'u64': {
      const ws = await mbpoll(port, ['-t', table, ...at, '-c', '4']);
      return ws.reduce((acc, w) => acc * 0x10000 + ((w + 0x10000) % 0x10000), 0);
    }
    default: {
      const [v] = await mbpoll(port, ['-t', table, ...at, '-c', '1']);
      const w = ((v ?? Number.NaN) + 0x10000) % 0x10000;
      if (p.table === 'coil' || p.table === 'discrete') return v ?? Number.NaN;
      return p.type === 'i16' && w >= 0x8000 ? w - 0x10000 : w;
    }
  }
}

describe('mbpoll reads every shipped profile from the simulator', () => {
  it('ships the native profile and at least three vendor-style ones', () => {
    expect(PROFILES).toContain('coolctl-native');
    expect(PROFILES.length).toBeGreaterThanOrEqual(4);
  });

  it.each(PROFILES)('%s: every point at its address, table, type, word order and scale', async (name) => {
    const i = PROFILES.indexOf(name);
    const cfg = configs[i] as ModbusAirHandler;
    const unit = units.get(cfg.id) as SimAirHandler;
    const prof = loadYaml(readFileSync(join(DEFAULT_PROFILES_DIR, `${name}.yaml`), 'utf8')) as YamlProfile;
    const compiled = compileProfile(await loadProfile(join(DEFAULT_PROFILES_DIR, `${name}.yaml`)));
    const port = portOf(cfg.id);
    const checked: string[] = [];
    for (const [point, p] of Object.entries(prof.modbus.points)) {
      // A point from a later firmware is absent on the simulated unit (firmware unknown), as the codec says.
      if (p.sinceFirmware !== undefined) {
        expect(compiled.points.has(point)).toBe(false);
        continue;
      }
      // Command bits are a write, not a state: nothing to read back.
      if (p.command !== undefined) continue;
      const address = wireAddress(p, prof.modbus.numbering ?? 'auto');
      expect(compiled.points.get(point)?.address, `${point}: the codec's wire address`).toBe(address);
      const raw = await readPoint(port, p, address, prof.modbus.wordOrder ?? 'msw-first');
      const want = expectedRaw(p, expectedValue(point, p, unit, prof));
      // Integers round to the nearest raw step; float32 carries the value to its precision.
      const tolerance =
        p.type === 'f32'
          ? Math.abs(want) * 1e-6 + 1e-6
          : point === 'watchdogTimerS' && prof.watchdog.style === 'countdown'
            ? 5
            : 0.5;
      expect(
        Math.abs(raw - want),
        `${name} ${point} @${p.table} ${address}: mbpoll read ${raw}, expected ${want}`,
      ).toBeLessThanOrEqual(tolerance);
      checked.push(point);
    }
    expect(checked.length).toBeGreaterThanOrEqual(5);
  });

  it('a write by mbpoll reaches the unit, journaled by point name', async () => {
    const i = PROFILES.indexOf('holding-tenths-c-timeout-register');
    expect(i).toBeGreaterThanOrEqual(0);
    const cfg = configs[i] as ModbusAirHandler;
    const unit = units.get(cfg.id) as SimAirHandler;
    const seq = journal.lastSeq;
    // Setpoint 40023 (wire 22) in tenths of °C: 20.5 °C.
    await run('mbpoll', [
      '-m',
      'tcp',
      '-p',
      String(portOf(cfg.id)),
      '-a',
      '1',
      '-0',
      '-1',
      '-t',
      '4',
      '-r',
      '22',
      '127.0.0.1',
      '205',
    ]);
    expect(journal.since(seq).entries).toEqual([
      expect.objectContaining({
        ahu: cfg.id,
        epoch: 0,
        values: { supplySetpointC: 20.5 },
        accepted: true,
        reason: null,
      }),
    ]);
    expect(unit.status()).toMatchObject({ mode: 'remote', supplySetpointC: 20.5 });
  });
});

describe('mbpoll as an RTU master on a shared line', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterAll(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('reads a native unit (address 1) and a vendor unit (address 2) on one pty line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'coolctl-mbpoll-'));
    const master = join(dir, 'master');
    const device = join(dir, 'device');
    const socat: ChildProcess = spawn(
      'socat',
      ['-d', '-d', `pty,raw,echo=0,link=${master}`, `pty,raw,echo=0,link=${device}`],
      { stdio: 'ignore' },
    );
    socat.on('error', () => undefined);
    cleanups.push(() => {
      if (socat.exitCode === null) socat.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    });
    await waitFor('socat pty pair (apt-get install socat)', () => existsSync(master) && existsSync(device));
    const rtu = (id: string, unitId: number, profile?: string): ModbusRtuAirHandler => ({
      ...(base as unknown as ModbusRtuAirHandler),
      id,
      protocol: 'modbus-rtu',
      endpoint: { path: master, simPath: device, unitId },
      localSetpointC: 18.5,
      ...(profile ? { profile } : {}),
    });
    const ahus = [rtu('AHU-RN', 1), rtu('AHU-RV', 2, 'float32-lsw-toggle-inverted-coil')];
    const lineUnits = new Map(ahus.map((a) => [a.id, new SimAirHandler(a, journal)]));
    const line = new ModbusDevices(lineUnits, {
      ephemeralPorts: true,
      profileQuirks: { notReadyMs: 0, noDataMs: 0, firstReadDelayMs: 0 },
      logger: quietLogger,
    });
    cleanups.push(() => line.stop());
    await line.start(ahus);
    for (const u of lineUnits.values()) {
      u.updateMeasurements({
        fanPct: 63,
        supplyC: 19.4,
        returnC: 29.7,
        cwValvePct: 41,
        fanKw: 3.25,
        coolingKw: 45.6,
      });
    }
    const rtuPoll = async (unitId: number, args: string[]) => {
      const { stdout } = await run(
        'mbpoll',
        [
          '-m',
          'rtu',
          '-b',
          '19200',
          '-P',
          'even',
          '-a',
          String(unitId),
          '-0',
          '-1',
          '-o',
          '1',
          ...args,
          master,
        ],
        { timeout: 10_000 },
      );
      return [...stdout.matchAll(/^\[\d+\]:\s+(-?[\d.]+(?:e[-+]?\d+)?)/gim)].map((m) => Number(m[1]));
    };
    // Native status block: local setpoint at 115 in tenths.
    expect(await rtuPoll(1, ['-t', '4', '-r', '115', '-c', '1'])).toEqual([185]);
    // Vendor: supply air float32 low word first at 30010 (wire 9), no -B.
    expect(await rtuPoll(2, ['-t', '3:float', '-r', '9', '-c', '1'])).toEqual([19.4]);
    // Nobody at address 5: mbpoll gets no answer.
    await expect(rtuPoll(5, ['-t', '4', '-r', '115', '-c', '1'])).rejects.toThrow();
    expect(line.sharedLines()).toEqual([
      expect.objectContaining({
        kind: 'rtu-line',
        units: [
          { ahu: 'AHU-RN', unitId: 1 },
          { ahu: 'AHU-RV', unitId: 2 },
        ],
      }),
    ]);
  });
});
