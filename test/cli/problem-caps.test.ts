// `coolctl site import` and `coolctl profile check` on generated hostile input: files wrong on every
// row or point, a 7 MB cell, a 6 MB profile. Each is refused (exit 2) in the config loader's words
// ("at least 1000 problems (checking stops after 1000)"), prints its first 100 problems and a count,
// and runs in a 128 MB heap, as the loader's own bounds are held (test/config/config-hostile-size).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PROFILE_FILE_MAX_BYTES } from '../../src/config/config-files.ts';
import { MAX_CHECKED_PROBLEMS, MAX_LISTED_PROBLEMS } from '../../src/errors.ts';
import { runCli } from './cli-process.ts';

const dir = mkdtempSync(join(tmpdir(), 'coolctl-problem-caps-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The CLI as an operator runs it, in a heap a 1 GB gateway can spare. */
const smallHeap = { env: { NODE_OPTIONS: '--max-old-space-size=128' }, timeoutMs: 60_000 };
const STOPPED = `at least ${MAX_CHECKED_PROBLEMS} problems (checking stops after ${MAX_CHECKED_PROBLEMS})`;
const MORE =
  /^ {2}… and \d+ more problem\(s\) like these, and more not checked \(fix those above, then check again\)$/;

/** Valid small inventories, and `racks` as given. */
function inventories(name: string, racks: string): string[] {
  const d = join(dir, name);
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d);
  const f = (file: string, text: string) => {
    writeFileSync(join(d, file), text);
    return join(d, file);
  };
  return [
    '--site-id',
    'hall-x',
    '--site-name',
    'Hall X',
    '--rooms',
    f('rooms.csv', 'id,name,widthM,depthM\nA,Hall A,10,10\n'),
    '--racks',
    f('racks.csv', racks),
    '--units',
    f(
      'units.csv',
      'id,room,xM,yM,capacityKw,maxAirflowM3s,fanMaxKw,endpoint\nU1,A,1,1,10,1,1,127.0.0.1:502\n',
    ),
    '--sensors',
    f('sensors.csv', 'id,rack,gateway,sensors\nN1,R1,gw,inlet-top\n'),
    '--groups',
    f('groups.csv', 'id,airHandlers,sensorNodes\ng1,U1,N1\n'),
  ];
}

const RACKS_HEAD = 'id,room,row,xM,yM,itLoadKw\n';

describe('coolctl site import on hostile inventories', () => {
  it('99 000 rows wrong: stops at 1000 problems, in the loader’s words, listing the first 100', async () => {
    const rows = Array.from({ length: 99_000 }, (_, i) => `"R${i}"x,A,r,1,1,1\n`).join('');
    const r = await runCli(['site', 'import', ...inventories('every-row', RACKS_HEAD + rows)], smallHeap);
    expect(r.status, r.stderr.slice(0, 2000)).toBe(2);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines[0]).toBe(`site import: ${STOPPED}`);
    expect(lines[1]).toMatch(/racks\.csv:2: text after a closing quote/);
    expect(lines).toHaveLength(1 + MAX_LISTED_PROBLEMS + 1);
    expect(lines.at(-1)).toMatch(MORE);
    expect(lines.at(-1)).toContain(`and ${MAX_CHECKED_PROBLEMS - MAX_LISTED_PROBLEMS} more`);
  }, 90_000);

  it('a 7 MB cell: one problem that quotes 300 characters of it, in a 128 MB heap', async () => {
    const cell = 'q'.repeat(7_000_000);
    const r = await runCli(
      ['site', 'import', ...inventories('big-cell', `${RACKS_HEAD}R1,A,r,${cell},1,1\n`)],
      smallHeap,
    );
    expect(r.status, r.stderr.slice(0, 2000)).toBe(2);
    expect(r.stderr.length).toBeLessThan(2_000);
    expect(r.stderr).toMatch(
      /^site import: 1 problem\(s\)\n {2}\S+racks\.csv:2: xM "q{300}… \(7000000 chars\)" is not a number\n$/,
    );
  }, 90_000);
});

describe('coolctl profile check on hostile profiles', () => {
  const HEAD = 'description: x\nsource: x\nprotocol: modbus\nfencing: [lease]\nwatchdog: { style: none }\n';

  it('a profile of empty points just under the size limit: at least 1000 problems, the first 100 listed', async () => {
    const file = join(dir, 'empty-points.yaml');
    let points = '';
    for (let i = 0; points.length < PROFILE_FILE_MAX_BYTES - 200; i++) points += `p${i}: {}, `;
    writeFileSync(file, `profile: empty-points\n${HEAD}modbus:\n  points: {${points}}\n`);
    const r = await runCli(['profile', 'check', file], smallHeap);
    expect(r.status, r.stderr.slice(0, 2000)).toBe(2);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines[0]).toBe(`${file}: ${STOPPED}`);
    expect(lines[1]).toMatch(/^ {2}line \d+: \/modbus\/functionCodes: is required/);
    expect(lines).toHaveLength(1 + MAX_LISTED_PROBLEMS + 1);
    expect(lines.at(-1)).toMatch(MORE);
  }, 90_000);

  it('a 6 MB profile is refused by its size before it is parsed, in a 128 MB heap', async () => {
    const file = join(dir, 'huge.yaml');
    const points = Array.from({ length: 400_000 }, (_, i) => `    p${i}: {}\n`).join('');
    writeFileSync(file, `profile: huge\n${HEAD}modbus:\n  points:\n${points}`);
    const r = await runCli(['profile', 'check', file], smallHeap);
    expect(r.status, r.stderr.slice(0, 2000)).toBe(2);
    expect(r.stderr).toContain(`more than the ${PROFILE_FILE_MAX_BYTES / 1024} KB a device profile may be`);
    expect(r.stderr.split('\n').length).toBeLessThan(5);
  }, 90_000);
});
