// `coolctl profile read --unit ID` as a process against the simulator's OPC-UA server: a unit with
// the vendor profile opcua-tenths-c-method-heartbeat (over SignAndEncrypt) and a native unit on
// the same server. Every node printed once with the browse path it was found by, its raw value and
// type (or the Bad status that says why there is none: "no data", never 0), value and unit;
// nothing written. An untrusted server certificate, an unreachable unit: exit 1 with the typed
// error and what to do, no stack.
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OpcuaAhuServer } from '../../firmware-sim/ahu/opcua-server.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import type { OpcuaAirHandler } from '../../src/config/site-schema.ts';
import { freePort } from '../../src/util/async.ts';
import { quietLogger } from '../helpers.ts';
import { TEST_AHU_PLANT } from '../support/air-handler.ts';
import { type CliRun, runCoolctl } from '../support/cli-run.ts';

const CLI_DEADLINE_MS = 40_000;
const PROFILE = 'opcua-tenths-c-method-heartbeat';
const NO_DATA_MS = 60_000;

function opcuaAhu(id: string, url: string, extra: Partial<OpcuaAirHandler> = {}): OpcuaAirHandler {
  return {
    id,
    ...TEST_AHU_PLANT,
    localSetpointC: 17,
    protocol: 'opcua',
    endpoint: { url },
    client: { timeoutMs: 2_000 },
    ...extra,
  };
}

const journal = new Journal(() => 0);
let clockMs = 0;
const vendor = new SimAirHandler(
  opcuaAhu('AHU-07', 'opc.tcp://127.0.0.1:0/sim', { profile: PROFILE }),
  journal,
);
const native = new SimAirHandler(opcuaAhu('AHU-01', 'opc.tcp://127.0.0.1:0/sim'), journal);
let server: OpcuaAhuServer;
let dir = '';
let siteFile = '';
let pkiDir = '';

beforeAll(async () => {
  server = new OpcuaAhuServer([native, vendor], {
    host: '127.0.0.1',
    port: 0,
    resourcePath: '/sim',
    logger: quietLogger,
    profileQuirks: { notReadyMs: 0, noDataMs: NO_DATA_MS, firstReadDelayMs: 0 },
    wallNowMs: () => clockMs,
  });
  const { endpointUrl } = await server.start();
  dir = await mkdtemp(join(tmpdir(), 'coolctl-profile-read-opcua-'));
  pkiDir = join(dir, 'pki');
  siteFile = join(dir, 'site.json');
  const site = {
    site: { id: 'read-test', name: 'profile read test' },
    rooms: [{ id: 'hall', widthM: 10, depthM: 10 }],
    racks: [{ id: 'R1', room: 'hall', row: 'A', xM: 2, yM: 2, itLoadKw: 5 }],
    airHandlers: [
      opcuaAhu('AHU-01', endpointUrl),
      opcuaAhu('AHU-07', endpointUrl, {
        profile: PROFILE,
        endpoint: { url: endpointUrl, securityMode: 'SignAndEncrypt' },
      }),
      opcuaAhu('AHU-09', `opc.tcp://127.0.0.1:${await freePort('127.0.0.1')}/sim`, { profile: PROFILE }),
    ],
    gateways: [{ id: 'gw1', topicPrefix: 'coolctl/sim' }],
    sensorNodes: [],
    controlGroups: [],
  };
  await writeFile(siteFile, JSON.stringify(site, null, 2));
}, 60_000);

afterAll(async () => {
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 30_000);

function coolctl(...args: string[]): Promise<CliRun> {
  return runCoolctl(args, { deadlineMs: CLI_DEADLINE_MS });
}

const read = (unit: string) =>
  coolctl('profile', 'read', '--unit', unit, '--config', siteFile, '--pki', pkiDir);

/** The printed row of a point: its columns. */
function row(out: string, point: string): string[] {
  const line = out.split('\n').find((l) => l.startsWith(`${point} `));
  if (!line) throw new Error(`no row for ${point} in:\n${out}`);
  return line.split(/\s{2,}/);
}

describe('coolctl profile read, OPC-UA', () => {
  it('an untrusted server certificate: exit 1, the typed error and the file to move; no stack', async () => {
    const r = await read('AHU-07');
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toMatch(
      /^AHU-07 \(opc\.tcp:\/\/127\.0\.0\.1:\d+\/sim, profile opcua-tenths-c-method-heartbeat\): COOLCTL_E_DEVICE_UNTRUSTED_CERTIFICATE: /,
    );
    expect(r.err).not.toMatch(/\n\s+at /);
    const m = /move (.+\.pem) to (\S+)\/ /.exec(r.err);
    expect(m).not.toBeNull();
    // What the message tells the operator to do.
    await rename(m![1]!, join(m![2]!, m![1]!.split('/').pop()!));
  }, 60_000);

  it('a vendor unit: every node, found by id or browse path; no data before its sensors are valid', async () => {
    const before = journal.lastSeq;
    const early = await read('AHU-07');
    expect(early.err).toBe('');
    expect(early.code).toBe(0);
    expect(early.out).toMatch(
      /^AHU-07: opcua opc\.tcp:\/\/127\.0\.0\.1:\d+\/sim, profile opcua-tenths-c-method-heartbeat, fencing lease, watchdog toggle\n/,
    );
    expect(row(early.out, 'supplyC')).toEqual([
      'supplyC',
      expect.stringMatching(
        /^\/Objects\/2:AHU-07\/2:Measurements\/2:SupplyAirTemp = ns=2;s=AHU-07\.Measurements\.SupplyAirTemp$/,
      ),
      'BadWaitingForInitialData',
      'no data',
      '°C',
    ]);
    expect(row(early.out, 'mode').slice(1)).toEqual(['ns=2;s=AHU-07.ControlMode', '0 UInt16', 'local (0)']);

    clockMs = NO_DATA_MS;
    vendor.updateMeasurements({
      fanPct: 80,
      supplyC: 18.44,
      returnC: 29.16,
      cwValvePct: 41,
      fanKw: 3.27,
      coolingKw: 40,
    });
    const r = await read('AHU-07');
    expect(r.code).toBe(0);
    expect(row(r.out, 'supplyC').slice(2)).toEqual(['184 Int16', '18.4', '°C']);
    expect(row(r.out, 'fanKw').slice(2)).toEqual(['33 UInt16', '3.3', 'kW']);
    expect(row(r.out, 'supplySetpointFeedbackC')).toEqual([
      'supplySetpointFeedbackC',
      'ns=2;s=AHU-07.ActualSetpoint',
      '170 Int16',
      '17',
      '°C',
    ]);
    expect(row(r.out, 'run').slice(2)).toEqual(['false Boolean', 'true']);
    expect(row(r.out, 'alarmWord').slice(2)).toEqual(['0 UInt16', 'off']);
    // Reads only.
    expect(journal.lastSeq).toBe(before);
  }, 90_000);

  it('a native unit through the coolctl-native profile’s OPC-UA nodes', async () => {
    const r = await read('AHU-01');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^AHU-01: opcua .*, profile coolctl-native, fencing epoch, watchdog toggle\n/);
    const s = native.status();
    expect(row(r.out, 'mode').slice(1)).toEqual([
      expect.stringMatching(/^ns=\d+;s=AHU-01\.Mode$/),
      '0 Int32',
      'local (0)',
    ]);
    expect(Number(row(r.out, 'supplyC')[3])).toBeCloseTo(s.supplyC, 2);
    expect(row(r.out, 'epochFeedback').slice(2)).toEqual(['0 Double', '0']);
  }, 60_000);

  it('a unit that does not answer: exit 1 and a typed error, no stack; an unknown unit: exit 2', async () => {
    const dead = await read('AHU-09');
    expect(dead.code).toBe(1);
    expect(dead.err).toMatch(
      /^AHU-09 \(opc\.tcp:\/\/127\.0\.0\.1:\d+\/sim, profile opcua-tenths-c-method-heartbeat\): COOLCTL_E_DEVICE_UNREACHABLE: /,
    );
    expect(dead.err).not.toMatch(/\n\s+at /);
    const unknown = await read('AHU-99');
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/no air handler "AHU-99"/);
  }, 90_000);
});
