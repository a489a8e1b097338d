// `coolctl site import`: a site file built from CSV inventories passes the daemon's own site parser;
// every problem — of the CSV (a cell that is no number, an endpoint of no known form, an unknown
// or missing column, an unclosed quote) or of the site it describes (a rack in an unknown room, a
// group naming a unit that does not exist) — is listed with its file and line, and nothing is
// written. Pure: the CSV reader and the builder, then the CLI as a process.
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCsv } from '../../src/cli/csv.ts';
import { importSite } from '../../src/cli/site-import.ts';
import { parseSite } from '../../src/config/load-site.ts';

const FIX = 'test/cli/fixtures/site-import';
const dir = mkdtempSync(join(tmpdir(), 'coolctl-import-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const files = (d: string) => ({
  siteId: 'hall-x',
  siteName: 'Hall X',
  rooms: join(d, 'rooms.csv'),
  racks: join(d, 'racks.csv'),
  units: join(d, 'units.csv'),
  sensors: join(d, 'sensors.csv'),
  groups: join(d, 'groups.csv'),
});

/** A copy of the fixtures with `edit` applied to one file. */
function variant(name: string, file: string, edit: (text: string) => string): string {
  const d = join(dir, name);
  rmSync(d, { recursive: true, force: true });
  spawnSync('mkdir', ['-p', d]);
  for (const f of ['rooms', 'racks', 'units', 'sensors', 'groups'])
    copyFileSync(join(FIX, `${f}.csv`), join(d, `${f}.csv`));
  writeFileSync(join(d, file), edit(readFileSync(join(d, file), 'utf8')));
  return d;
}

describe('the CSV reader', () => {
  it('keeps each record’s line, reads quotes, skips comments and blank lines', () => {
    const t = parseCsv('# exported\nid,name\n\nA,"Hall, ""north"""\nB,"two\nlines"\nC,x\n', 'f.csv');
    expect(t.headerLine).toBe(2);
    expect(t.rows.map((r) => [r.line, r.cells.id, r.cells.name])).toEqual([
      [4, 'A', 'Hall, "north"'],
      [5, 'B', 'two\nlines'],
      [7, 'C', 'x'],
    ]);
    expect(parseCsv('id\nA,B\n"open\n', 'g.csv').problems).toEqual([
      'g.csv:2: 2 cells, the header has 1',
      'g.csv:3: a quoted cell is never closed',
    ]);
  });
});

describe('coolctl site import', () => {
  it('builds a site file the daemon’s parser accepts: positions, loads, endpoints, sensors, groups', async () => {
    const r = await importSite(files(FIX));
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
    const site = parseSite(r.yaml, 'imported');
    expect(site.racks.map((x) => [x.id, x.itLoadKw])).toEqual([
      ['RA-01', 8.5],
      ['RA-02', 7],
      ['RB-01', 10],
      ['RB-02', 6.5],
    ]);
    expect(site.airHandlers.map((a) => [a.id, a.protocol, a.endpoint])).toEqual([
      ['AHU-01', 'modbus-tcp', { host: '10.0.1.21', port: 502, unitId: 1 }],
      ['AHU-02', 'opcua', expect.objectContaining({ url: 'opc.tcp://10.0.1.22:4840/ahu' })],
      ['AHU-03', 'modbus-rtu', expect.objectContaining({ path: '/dev/ttyUSB0', unitId: 3 })],
    ]);
    expect(site.sensorNodes[0]!.sensors).toEqual([
      { id: 'inlet-top', kind: 'inlet-top' },
      { id: 'inlet-middle', kind: 'inlet-middle' },
      { id: 'inlet-bottom', kind: 'inlet-bottom' },
      { id: 'rh', kind: 'humidity' },
    ]);
    expect(site.gateways.map((g) => g.id)).toEqual(['gw-1', 'gw-2']);
    expect(site.controlGroups).toEqual([
      { id: 'zone-1', airHandlers: ['AHU-01', 'AHU-03'], sensorNodes: ['N0001', 'N0002'] },
      { id: 'zone-2', airHandlers: ['AHU-02'], sensorNodes: ['N0003', 'N0004'] },
    ]);
  });

  it('lists every problem of the CSV with its file and line', async () => {
    const d = variant('cells', 'racks.csv', (t) =>
      t.replace('RB-02,hall-a,row-2,3.9,8.4,6.5', 'RB-02,hall-a,row-2,3.9,8.4,lots'),
    );
    writeFileSync(
      join(d, 'units.csv'),
      readFileSync(join(d, 'units.csv'), 'utf8').replace('/dev/ttyUSB0', 'serial-port-3'),
    );
    writeFileSync(
      join(d, 'groups.csv'),
      readFileSync(join(d, 'groups.csv'), 'utf8').replace('sensorNodes', 'sensorNodes,colour'),
    );
    const r = await importSite(files(d));
    expect(r.ok).toBe(false);
    expect(r.problems).toEqual([
      `${d}/racks.csv:6: itLoadKw "lots" is not a number`,
      expect.stringMatching(new RegExp(`^${d}/units.csv:4: endpoint "serial-port-3" is none of`)),
      `${d}/groups.csv:1: unknown column(s) colour (a groups inventory has id, airHandlers, sensorNodes)`,
    ]);
  });

  it('lists every problem of the site the CSV describes, traced to its row', async () => {
    const d = variant('refs', 'racks.csv', (t) => t.replace('RB-01,hall-a', 'RB-01,hall-b'));
    writeFileSync(
      join(d, 'groups.csv'),
      readFileSync(join(d, 'groups.csv'), 'utf8').replace('zone-2,AHU-02', 'zone-2,AHU-02 AHU-09'),
    );
    const r = await importSite(files(d));
    expect(r.ok).toBe(false);
    expect(r.problems).toEqual([
      expect.stringMatching(new RegExp(`^${d}/racks.csv:5: room: unknown room "hall-b"`)),
      expect.stringMatching(new RegExp(`^${d}/groups.csv:3: airHandlers.1: unknown air handler "AHU-09"`)),
    ]);
  });

  it('as a command: writes the file only when it is valid; exit 2 with the problems otherwise', () => {
    const out = join(dir, 'site.yaml');
    const args = (d: string, o: string) => {
      const f = files(d);
      return [
        'site',
        'import',
        '--site-id',
        f.siteId,
        '--site-name',
        f.siteName,
        '--rooms',
        f.rooms,
        '--racks',
        f.racks,
        '--units',
        f.units,
        '--sensors',
        f.sensors,
        '--groups',
        f.groups,
        '--out',
        o,
      ];
    };
    let r = spawnSync(process.execPath, ['src/cli.ts', ...args(FIX, out)], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/site hall-x: 1 rooms, 4 racks, 3 air handlers, 4 sensor nodes, 2 groups/);
    r = spawnSync(process.execPath, ['src/cli.ts', 'config', 'validate', out], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.stdout).toMatch(/valid site file/);
    const d = variant('cli', 'racks.csv', (t) => t.replace('RB-01,hall-a', 'RB-01,hall-b'));
    const bad = join(dir, 'bad.yaml');
    r = spawnSync(process.execPath, ['src/cli.ts', ...args(d, bad)], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/site import: 1 problem\(s\)\n {2}.*racks\.csv:5: room: unknown room "hall-b"/);
    expect(existsSync(bad)).toBe(false);
    // --out through a link (say a deploy's site.yaml -> releases/x/site.yaml) is refused, exit 2,
    // and the file it points to is left as it was; nothing is left beside it either.
    const target = join(dir, 'linked-target.yaml');
    writeFileSync(target, 'kept: true\n');
    const link = join(dir, 'linked.yaml');
    symlinkSync(target, link);
    r = spawnSync(process.execPath, ['src/cli.ts', ...args(FIX, link)], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--out .*linked\.yaml: a symbolic link/);
    expect(r.stderr).not.toMatch(/at .*\.ts:\d+/);
    expect(readFileSync(target, 'utf8')).toBe('kept: true\n');
  });
});
