// A unit whose profile has no section for the protocol it speaks — a Modbus-only profile on an
// OPC-UA unit, or an OPC-UA-only profile on a Modbus unit — is refused when the site file loads,
// each with the line of its `profile:`; and the simulator's servers refuse such a unit at start
// when a site is built in code without the loader.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OpcuaAhuServer } from '../../firmware-sim/ahu/opcua-server.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import { loadSite } from '../../src/config/load-site.ts';
import { ConfigError } from '../../src/errors.ts';
import { quietLogger } from '../helpers.ts';
import { TEST_AHU_PLANT } from '../support/air-handler.ts';

const plant = Object.entries(TEST_AHU_PLANT)
  .map(([k, v]) => `    ${k}: ${v}`)
  .join('\n');

function site(units: string): string {
  return `site: { id: profile-protocols, name: profile protocols }
rooms: [{ id: hall, widthM: 10, depthM: 10 }]
racks: [{ id: R1, room: hall, row: A, xM: 2, yM: 2, itLoadKw: 5 }]
gateways: [{ id: gw1, topicPrefix: coolctl/sim }]
sensorNodes: []
controlGroups: []
airHandlers:
${units}
`;
}

const OPCUA_ON_MODBUS_PROFILE = `  - id: AHU-01
${plant}
    protocol: opcua
    endpoint: { url: "opc.tcp://127.0.0.1:4841/sim" }
    profile: float32-lsw-toggle-inverted-coil
`;
const MODBUS_ON_OPCUA_PROFILE = `  - id: AHU-02
${plant}
    protocol: modbus-tcp
    endpoint: { host: 127.0.0.1, port: 1502, unitId: 1 }
    profile: opcua-tenths-c-method-heartbeat
`;
const GOOD = `  - id: AHU-03
${plant}
    protocol: opcua
    endpoint: { url: "opc.tcp://127.0.0.1:4841/sim" }
    profile: opcua-tenths-c-method-heartbeat
  - id: AHU-04
${plant}
    protocol: modbus-tcp
    endpoint: { host: 127.0.0.1, port: 1503, unitId: 1 }
    profile: float32-lsw-toggle-inverted-coil
`;

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coolctl-profile-protocols-'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The line (1-based) of `profile: NAME` of the unit `id` in `text`. */
function profileLine(text: string, id: string): number {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.includes(`id: ${id}`));
  return lines.findIndex((l, i) => i > start && l.trim().startsWith('profile:')) + 1;
}

describe('a unit’s profile must speak the unit’s protocol', () => {
  it('is refused at site load, every such unit listed with its line', async () => {
    const text = site(GOOD + OPCUA_ON_MODBUS_PROFILE + MODBUS_ON_OPCUA_PROFILE);
    const file = join(dir, 'site.yaml');
    await writeFile(file, text);
    const err = await loadSite(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems;
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatchObject({
      path: '/airHandlers/2/profile',
      line: profileLine(text, 'AHU-01'),
      message: expect.stringMatching(
        /"AHU-01" speaks opcua, but profile "float32-lsw-toggle-inverted-coil" is for modbus only/,
      ),
    });
    expect(problems[1]).toMatchObject({
      path: '/airHandlers/3/profile',
      line: profileLine(text, 'AHU-02'),
      message: expect.stringMatching(
        /"AHU-02" speaks modbus-tcp, but profile "opcua-tenths-c-method-heartbeat" is for opcua only/,
      ),
    });
    expect((err as Error).message).toContain(`${file}:${profileLine(text, 'AHU-01')} /airHandlers/2/profile`);
  });

  it('a site whose units match their profiles loads', async () => {
    const file = join(dir, 'good.yaml');
    await writeFile(file, site(GOOD));
    const s = await loadSite(file);
    expect(s.airHandlers.map((a) => a.profile)).toEqual([
      'opcua-tenths-c-method-heartbeat',
      'float32-lsw-toggle-inverted-coil',
    ]);
  });

  it('the OPC-UA server refuses to serve a Modbus-only profile, naming the unit', async () => {
    const unit = new SimAirHandler(
      {
        id: 'AHU-01',
        ...TEST_AHU_PLANT,
        protocol: 'opcua',
        endpoint: { url: 'opc.tcp://127.0.0.1:0/sim' },
        profile: 'float32-lsw-toggle-inverted-coil',
      },
      new Journal(() => 0),
    );
    const server = new OpcuaAhuServer([unit], {
      host: '127.0.0.1',
      port: 0,
      resourcePath: '/sim',
      logger: quietLogger,
    });
    try {
      await expect(server.start()).rejects.toThrow(
        /AHU-01: profile float32-lsw-toggle-inverted-coil has no opcua section/,
      );
    } finally {
      await server.stop();
    }
  });
});
