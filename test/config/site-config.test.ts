import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { internValues } from '../../src/config/config-check.ts';
import { loadSite, parseSite } from '../../src/config/load-site.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { ConfigError } from '../../src/errors.ts';

const run = promisify(execFile);

describe('site config', () => {
  it('accepts the demo site, which has the hall the brief asks for', async () => {
    const site = await loadSite('config/demo-site.yaml');
    expect(site.racks.length).toBeGreaterThanOrEqual(40);
    expect(site.airHandlers).toHaveLength(8);
    expect(site.airHandlers.filter((a) => a.protocol === 'opcua').length).toBeGreaterThanOrEqual(2);
    expect(site.airHandlers.filter((a) => a.protocol === 'modbus-tcp').length).toBeGreaterThanOrEqual(1);
    expect(site.sensorNodes.length).toBeGreaterThanOrEqual(40);
    expect(site.gateways).toHaveLength(2);
    expect(site.controlGroups).toHaveLength(4);
    // every AHU belongs to exactly one group
    const grouped = site.controlGroups.flatMap((g) => g.airHandlers).sort();
    expect(grouped).toEqual(site.airHandlers.map((a) => a.id).sort());
  });

  it('reads a generated site back as written, defaults added (its repeated strings made one)', () => {
    const site = generateSite({ ...demoShape, airHandlers: 20, sensorNodes: 60, controlGroups: 4, seed: 3 });
    expect(parseSite(stringify(site))).toMatchObject(site);
    const nested = {
      a: ['x', { b: 'x', c: [1, 'y', null, true] }],
      d: 'y',
      e: { b: 'x', c: [1, 'y', null, true] },
    };
    const shared = internValues(structuredClone(nested)) as typeof nested;
    expect(shared).toEqual(nested);
    expect(shared.e).toBe(shared.a[1]);
    const many = { big: Array.from({ length: 100 }, (_, i) => `value ${i}`) };
    const copy = structuredClone(many);
    const both = internValues({ one: many, two: copy }) as { one: typeof many; two: typeof many };
    expect(both.two).toEqual(many);
    expect(both.two.big).not.toBe(both.one.big);
  });

  it('fills documented defaults', () => {
    const site = parseSite(stringify(minimalSite()));
    const ahu = site.airHandlers[0]!;
    expect(ahu.watchdogS).toBe(30);
    expect(ahu.localSetpointC).toBe(18);
    expect(ahu.protocol === 'modbus-tcp' && ahu.endpoint.unitId).toBe(1);
    expect(site.sensorNodes[0]!.reportIntervalS).toBe(10);
  });

  it('lists every problem in a bad file with file, path, line and what is allowed', async () => {
    const text = await readFile('test/fixtures/bad-site.yaml', 'utf8');
    let err: unknown;
    try {
      parseSite(text, 'bad-site.yaml');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems;
    const byPath = new Map(problems.map((p) => [p.path, p]));
    // schema problems come first; rule problems are reported once the shape is right
    expect(byPath.get('/racks/0/itLoadKw')?.allowed).toBe('<= 200');
    expect(byPath.get('/racks/0/itLoadKw')?.line).toBe(15);
    expect(byPath.get('/airHandlers/0/endpoint/port')?.allowed).toBe('<= 65535');
    expect(byPath.get('/airHandlers/0/colour')?.message).toBe('unknown setting');
    expect(byPath.get('/airHandlers/0/colour')?.line).toBe(32);
    expect(byPath.get('/sensorNodes/0/sensors')?.allowed).toBe('at least 1 item(s)');
    expect((err as ConfigError).code).toBe('COOLCTL_E_CONFIG_INVALID');
    expect((err as ConfigError).message).toContain('bad-site.yaml:15 /racks/0/itLoadKw');
  });

  it('reports every broken reference once the shape is valid', () => {
    const site = minimalSite();
    site.racks.push({ ...site.racks[0]!, xM: 30 });
    site.racks[0]!.room = 'hall-b';
    site.sensorNodes[0]!.rack = 'R9';
    site.controlGroups.push({
      id: 'zone-2',
      airHandlers: ['AHU-1', 'AHU-9'],
      sensorNodes: [],
      influence: { 'AHU-1': { R1: 0.5, R7: 0.2 }, 'AHU-3': { R1: 1 } },
    });
    let err: ConfigError | undefined;
    try {
      parseSite(stringify(site), 'refs.yaml');
    } catch (e) {
      err = e as ConfigError;
    }
    const messages = err?.problems.map((p) => `${p.path} ${p.message}`) ?? [];
    expect(messages).toEqual(
      expect.arrayContaining([
        '/racks/1/id duplicate id "R1"',
        '/racks/0/room unknown room "hall-b"',
        '/racks/1/xM position (30, 2) is outside room "hall-a"',
        '/sensorNodes/0/rack unknown rack "R9"',
        '/controlGroups/1/airHandlers/0 air handler "AHU-1" is already in control group "zone-1"',
        '/controlGroups/1/airHandlers/1 unknown air handler "AHU-9"',
        '/controlGroups/1/influence/AHU-1/R7 unknown rack "R7"',
        '/controlGroups/1/influence/AHU-3 air handler "AHU-3" is not in control group "zone-2"',
      ]),
    );
    expect(err?.problems.every((p) => typeof p.line === 'number')).toBe(true);
  });

  it('rejects YAML syntax errors with a line number', () => {
    expect(() => parseSite('site:\n  id: [unclosed\n', 'syntax.yaml')).toThrow(
      /syntax\.yaml:\d+ \/: YAML syntax/,
    );
    expect(() => parseSite('site: {}\nsite: {}\n', 'dup.yaml')).toThrow(/YAML syntax/);
  });

  it('rejects a file that is not a mapping, and an empty file', () => {
    expect(() => parseSite('- just\n- a list\n')).toThrow(ConfigError);
    expect(() => parseSite('')).toThrow(ConfigError);
  });

  it('generates large valid sites for the scale benchmarks', () => {
    const shape = {
      ...demoShape,
      airHandlers: 1000,
      sensorNodes: 10_000,
      controlGroups: 100,
      racksPerAirHandler: 5,
      modbusBasePort: 0,
    };
    const site = generateSite(shape);
    expect(site.airHandlers).toHaveLength(1000);
    expect(site.sensorNodes).toHaveLength(10_000);
    expect(site.controlGroups).toHaveLength(100);
    // round-trips through YAML and the full validation, ports 0 do not collide
    const again = parseSite(stringify(site), 'large.yaml');
    expect(again.racks).toHaveLength(5000);
    expect(generateSite(shape)).toEqual(site); // deterministic
  });

  it('the simulator exits 2 and lists the problems for a bad file', async () => {
    const err = (await run('node', ['firmware-sim/main.ts', '--config', 'test/fixtures/bad-site.yaml'], {
      timeout: 20_000,
    }).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(err.code).toBe(2);
    expect(err.stderr).toContain('not valid');
    expect(err.stderr).toContain('test/fixtures/bad-site.yaml:15 /racks/0/itLoadKw');
  });

  it('the simulator exits 2 for a missing file', async () => {
    const err = (await run('node', ['firmware-sim/main.ts', '--config', 'no/such/file.yaml'], {
      timeout: 20_000,
    }).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(err.code).toBe(2);
    expect(err.stderr).toContain('cannot read file (ENOENT)');
  });
});

function minimalSite() {
  return {
    site: { id: 'mini', name: 'Mini' },
    rooms: [{ id: 'hall-a', widthM: 10, depthM: 10 }],
    racks: [{ id: 'R1', room: 'hall-a', row: 'row-1', xM: 2, yM: 2, itLoadKw: 5 }],
    airHandlers: [
      {
        id: 'AHU-1',
        room: 'hall-a',
        xM: 0,
        yM: 0,
        capacityKw: 50,
        maxAirflowM3s: 4,
        fanMaxKw: 3,
        protocol: 'modbus-tcp',
        endpoint: { host: '127.0.0.1', port: 1502 },
      },
    ],
    gateways: [{ id: 'gw-1' }],
    sensorNodes: [{ id: 'N1', rack: 'R1', gateway: 'gw-1', sensors: [{ id: 't', kind: 'inlet-middle' }] }],
    controlGroups: [{ id: 'zone-1', airHandlers: ['AHU-1'], sensorNodes: ['N1'] }] as Site['controlGroups'],
  };
}
