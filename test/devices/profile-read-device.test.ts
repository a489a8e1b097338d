// `coolctl profile read --unit ID --config FILE` as a process, for commissioning: against the
// simulator's native Modbus unit (the coolctl-native profile) and a vendor-style unit served by
// Debian's pymodbus (float32-lsw-toggle-inverted-coil). Every point printed once with its raw
// words, its value in engineering units and its unit; nothing written; a dead unit is exit 1 with
// a typed error, an unknown unit exit 2.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModbusAhuServer } from '../../firmware-sim/ahu/modbus-server.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import type { ModbusAirHandler } from '../../src/config/site-schema.ts';
import { freePort } from '../../src/util/async.ts';
import { quietLogger } from '../helpers.ts';
import { modbusTestAhu } from '../support/air-handler.ts';
import { type CliRun, runCoolctl } from '../support/cli-run.ts';
import { PymodbusUnit } from './pymodbus-unit.ts';

const CLI_DEADLINE_MS = 30_000;
const journal = new Journal(() => 0);
let py: PymodbusUnit;
let sim: ModbusAhuServer;
let unit: SimAirHandler;
let dir = '';
let siteFile = '';

function ahu(id: string, port: number, extra: object = {}): ModbusAirHandler {
  return modbusTestAhu(id, port, { client: { timeoutMs: 1_000, retries: 0 }, ...extra });
}

beforeAll(async () => {
  py = await PymodbusUnit.start();
  unit = new SimAirHandler(ahu('AHU-01', 0), journal);
  sim = new ModbusAhuServer(unit, { host: '127.0.0.1', port: 0, unitId: 1, logger: quietLogger });
  const { port } = await sim.start();
  dir = await mkdtemp(join(tmpdir(), 'coolctl-profile-read-'));
  siteFile = join(dir, 'site.json');
  const site = {
    site: { id: 'read-test', name: 'profile read test' },
    rooms: [{ id: 'hall', widthM: 10, depthM: 10 }],
    racks: [{ id: 'R1', room: 'hall', row: 'A', xM: 2, yM: 2, itLoadKw: 5 }],
    airHandlers: [
      ahu('AHU-01', port),
      ahu('AHU-07', py.port, { profile: 'float32-lsw-toggle-inverted-coil' }),
      ahu('AHU-09', await freePort('127.0.0.1'), { profile: 'float32-lsw-toggle-inverted-coil' }),
    ],
    gateways: [{ id: 'gw1', topicPrefix: 'coolctl/sim' }],
    sensorNodes: [],
    controlGroups: [],
  };
  await writeFile(siteFile, JSON.stringify(site, null, 2));
}, 30_000);

afterAll(async () => {
  await sim?.stop();
  await py?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function coolctl(...args: string[]): Promise<CliRun> {
  return runCoolctl(args, { deadlineMs: CLI_DEADLINE_MS });
}

/** The printed row of a point: its columns. */
function row(out: string, point: string): string[] {
  const line = out.split('\n').find((l) => l.startsWith(`${point} `));
  if (!line) throw new Error(`no row for ${point} in:\n${out}`);
  return line.split(/\s{2,}/);
}

function f32lsw(v: number): number[] {
  const dv = new DataView(new ArrayBuffer(4));
  dv.setFloat32(0, v);
  return [dv.getUint16(2), dv.getUint16(0)];
}

describe('coolctl profile read', () => {
  it('prints every point of a vendor unit: raw words, scaled value, unit; writes nothing', async () => {
    await py.set('input', 9, f32lsw(19.5)); // supplyC, float32 low word first
    await py.set('input', 1, f32lsw(28.25)); // returnC
    await py.set('holding', 4, [0x8000]); // setpoint: the no-data value
    await py.set('input', 5044, [41]); // cwValvePct
    await py.set('discrete', 10, [1]); // airflow alarm
    await py.set('coil', 61, [1]); // supervisory off: 1 = off
    const before = (await py.writes()).length;
    const r = await coolctl('profile', 'read', '--unit', 'AHU-07', '--config', siteFile);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(
      /^AHU-07: modbus-tcp 127\.0\.0\.1:\d+\/1, profile float32-lsw-toggle-inverted-coil, fencing lease, watchdog toggle/,
    );
    expect(row(r.out, 'supplyC')).toEqual(['supplyC', 'input', '9 (30010)', '0x0000 0x419c', '19.5', '°C']);
    expect(row(r.out, 'returnC').slice(3)).toEqual(['0x0000 0x41e2', '28.25', '°C']);
    expect(row(r.out, 'supplySetpointC').slice(3)).toEqual(['0x8000', 'no data', '°C']);
    expect(row(r.out, 'cwValvePct').slice(3)).toEqual(['0x0029', '41', '%']);
    expect(row(r.out, 'alarmAirflow').slice(3)).toEqual(['1', 'on: airflow']);
    expect(row(r.out, 'run').slice(1)).toEqual(['coil', '61 (00062)', '1', 'false']);
    expect((await py.writes()).length).toBe(before);
  }, 60_000);

  it('reads a native unit through the coolctl-native profile', async () => {
    const r = await coolctl('profile', 'read', '--unit', 'AHU-01', '--config', siteFile);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/profile coolctl-native, fencing epoch, watchdog toggle/);
    const s = unit.status();
    expect(row(r.out, 'mode')[4]).toBe(
      `${s.mode} (${['local', 'remote', 'fallback', 'tripped'].indexOf(s.mode)})`,
    );
    expect(Number(row(r.out, 'supplyC')[4])).toBeCloseTo(s.supplyC, 1);
    expect(row(r.out, 'epochFeedback').slice(1, 3)).toEqual(['holding', '107 (40108)']);
  }, 60_000);

  it('a unit that does not answer: exit 1 and a typed error; an unknown unit: exit 2', async () => {
    const dead = await coolctl('profile', 'read', '--unit', 'AHU-09', '--config', siteFile);
    expect(dead.code).toBe(1);
    expect(dead.err).toMatch(
      /^AHU-09 \(127\.0\.0\.1:\d+\/1, profile float32-lsw-toggle-inverted-coil\): COOLCTL_E_DEVICE_UNREACHABLE/,
    );
    const unknown = await coolctl('profile', 'read', '--unit', 'AHU-99', '--config', siteFile);
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/no air handler "AHU-99"/);
  }, 60_000);
});
