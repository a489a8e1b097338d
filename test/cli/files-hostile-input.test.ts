// The files an operator hands the CLI, as a careless export or an attacker makes them: a FIFO or a
// device for a path, UTF-16 and Latin-1 saves, control characters in cells, a million rows, a
// decimal comma. Each is refused with exit 2 and a line that says what to fix — never a hang, a
// silent U+FFFD, an ESC that reaches the terminal, or gigabytes of problems.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { importSite } from '../../src/cli/site-import.ts';
import { runCli } from './cli-process.ts';

const FIX = 'test/cli/fixtures/site-import';
const dir = mkdtempSync(join(tmpdir(), 'coolctl-files-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const KINDS = ['rooms', 'racks', 'units', 'sensors', 'groups'] as const;

/** A copy of the fixtures with `file` replaced by `content` (bytes or text), or by what `make` leaves there. */
function variant(name: string, file: string, content: string | Buffer | ((path: string) => void)): string {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  for (const k of KINDS) copyFileSync(join(FIX, `${k}.csv`), join(d, `${k}.csv`));
  const path = join(d, file);
  if (typeof content === 'function') {
    rmSync(path);
    content(path);
  } else writeFileSync(path, content);
  return d;
}

const files = (d: string) =>
  ({
    siteId: 'hall-x',
    siteName: 'Hall X',
    ...Object.fromEntries(KINDS.map((k) => [k, join(d, `${k}.csv`)])),
  }) as Parameters<typeof importSite>[0];

const cliArgs = (d: string) => [
  'site',
  'import',
  '--site-id',
  'hall-x',
  '--site-name',
  'Hall X',
  ...KINDS.flatMap((k) => [`--${k}`, join(d, `${k}.csv`)]),
];

const ROOMS_HEAD = 'id,name,widthM,depthM,heightM\n';

describe('coolctl site import: hostile and careless files', () => {
  it('a FIFO, a directory or /dev/zero for a CSV is refused at once, not waited on or read', async () => {
    const fifo = variant('fifo', 'rooms.csv', (p) => execFileSync('mkfifo', [p]));
    const r = await runCli(cliArgs(fifo), { timeoutMs: 20_000 });
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toContain(`${fifo}/rooms.csv is not a regular file; want a CSV inventory`);
    expect(r.stderr).toMatch(/^site import: 1 problem\(s\)\n/);
    const zero = variant('zero', 'racks.csv', (p) => execFileSync('ln', ['-s', '/dev/zero', p]));
    expect((await importSite(files(zero))).problems).toEqual([
      `${zero}/racks.csv is not a regular file; want a CSV inventory`,
    ]);
    const folder = variant('folder', 'units.csv', (p) => mkdirSync(p));
    expect((await importSite(files(folder))).problems).toEqual([
      `${folder}/units.csv is not a regular file; want a CSV inventory`,
    ]);
  }, 30_000);

  it('a UTF-16 or Latin-1 save is refused with how to convert it, not imported with U+FFFD', async () => {
    const latin = variant(
      'latin1',
      'rooms.csv',
      Buffer.concat([
        Buffer.from(`${ROOMS_HEAD}hall-a,Halle S`),
        Buffer.from([0xfc]),
        Buffer.from('d,13.2,20.4,3.5\n'),
      ]),
    );
    const r = await importSite(files(latin));
    expect(r.ok).toBe(false);
    expect(r.problems).toEqual([
      expect.stringMatching(
        /rooms\.csv: byte 44 \(line 2\) is 0xfc, which is not UTF-8; want .*iconv -f LATIN1/,
      ),
    ]);
    const utf16 = variant(
      'utf16',
      'rooms.csv',
      Buffer.concat([
        Buffer.from([0xff, 0xfe]),
        Buffer.from(`${ROOMS_HEAD}hall-a,Hall A,13.2,20.4,3.5\n`, 'utf16le'),
      ]),
    );
    expect((await importSite(files(utf16))).problems).toEqual([
      expect.stringMatching(
        /rooms\.csv is UTF-16 \(little-endian\) text; want UTF-8: .*iconv -f UTF-16 -t UTF-8/,
      ),
    ]);
  });

  it('a cell with an ESC or a NUL is refused with its line, and nothing of it reaches the terminal', async () => {
    const esc = variant(
      'esc',
      'rooms.csv',
      `${ROOMS_HEAD}hall-a,Hall A,13.2\x1b]0;owned\x07\x1b[2J,20.4,3.5\n`,
    );
    const r = await runCli(cliArgs(esc));
    expect(r.status, r.stderr).toBe(2);
    expect([...r.stderr].filter((c) => c !== '\n' && (c < ' ' || c === '\x7f'))).toEqual([]);
    expect(r.stderr).toContain(`${esc}/rooms.csv:2: widthM holds the control character \\x1b`);
    const nul = variant('nul', 'rooms.csv', `${ROOMS_HEAD}hall-a,Hall\x00A,13.2,20.4,3.5\n`);
    expect((await importSite(files(nul))).problems).toEqual([
      expect.stringContaining(`${nul}/rooms.csv:2: name holds the control character \\x00`),
    ]);
    // A schema problem quotes the cell too: a bidi override in an id is escaped as well.
    const bidi = variant(
      'bidi',
      'groups.csv',
      'id,airHandlers,sensorNodes\nzone-1,AHU-01 AHU-03\u202e,N0001\n',
    );
    const b = await importSite(files(bidi));
    expect(b.problems.join('\n')).not.toMatch(/\u202e/);
    expect(b.problems.join('\n')).toContain('\\u202e');
  }, 30_000);

  it('a million rows are refused in one line, quickly and in bounded memory; a file wrong on every row lists its first problems', async () => {
    const rows = `id,room,row,xM,yM,itLoadKw\n${'1,\n'.repeat(1_000_000)}`;
    const big = variant('million', 'racks.csv', rows);
    const r = await runCli(cliArgs(big), { timeoutMs: 20_000 });
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toContain(`${big}/racks.csv: more than 100000 rows, more than a site holds`);
    const wrong = variant(
      'every-row',
      'racks.csv',
      `id,room,row,xM,yM,itLoadKw\n${Array.from({ length: 5000 }, (_, i) => `R${i},hall-a,r,1,1,lots\n`).join('')}`,
    );
    const w = await importSite(files(wrong));
    expect(w.problems).toHaveLength(101);
    expect(w.problems[0]).toBe(`${wrong}/racks.csv:2: itLoadKw "lots" is not a number`);
    // In the config loader's words (errors.ts): the count is a lower bound where checking stopped.
    expect(w.problemWords).toBe('at least 1000 problems (checking stops after 1000)');
    expect(w.problems[100]).toBe(
      '… and 900 more problem(s) like these, and more not checked (fix those above, then check again)',
    );
  }, 30_000);

  it('a file over the size limit is refused before it is read', async () => {
    const huge = variant('huge', 'sensors.csv', Buffer.alloc(9 * 1024 * 1024, 0x41));
    expect((await importSite(files(huge))).problems).toEqual([
      expect.stringMatching(/sensors\.csv is 9\.0 MB, more than the 8\.0 MB a CSV inventory may be/),
    ]);
  });

  it('says what a spreadsheet made of a number, and refuses text after a closing quote', async () => {
    const d = variant(
      'numbers',
      'rooms.csv',
      `${ROOMS_HEAD}hall-a,Hall A,"13,2",1e400,=1+2\nhall-b,"Hall B"x,1,1,1\n`,
    );
    expect((await importSite(files(d))).problems).toEqual([
      `${d}/rooms.csv:3: text after a closing quote: quote the whole cell ("Hall ""B"" north")`,
      `${d}/rooms.csv:2: widthM "13,2" is not a number (a decimal comma: write 13.2)`,
      `${d}/rooms.csv:2: depthM "1e400" is not a number (too large or too small for a number)`,
      `${d}/rooms.csv:2: heightM "=1+2" is not a number (a formula: export the values, not the formulas)`,
    ]);
  });
});

describe('coolctl profile read: its --config file', () => {
  it('a FIFO or /dev/zero is refused at once (exit 2), not waited on or read without end', async () => {
    const fifo = join(dir, 'site.fifo');
    execFileSync('mkfifo', [fifo]);
    for (const config of [fifo, '/dev/zero']) {
      const r = await runCli(['profile', 'read', '--unit', 'AHU-01', '--config', config], {
        timeoutMs: 20_000,
      });
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toContain(`${config} is not a regular file`);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  }, 45_000);
});
