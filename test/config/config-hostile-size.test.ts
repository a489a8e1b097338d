// Files within the size limit that cost far more than their size to refuse: 8 MB of `{}` is 2.8
// million values, and as many empty racks would be 16 million "is required". Refusing one must
// cost a bounded heap (a reload on a 1 GB gateway that drives cooling), so each is checked in a
// child process with a 256 MB heap, as the user meets it: the refusal's words and count.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_YAML_NODES } from '../../src/config/config-check.ts';
import { SITE_FILE_MAX_BYTES } from '../../src/config/config-files.ts';
import { MAX_CHECKED_PROBLEMS } from '../../src/errors.ts';
import { REPO_ROOT } from '../support/repo.ts';

const DEMO = resolve('config/demo-site.yaml');

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'coolctl-config-hostile-size-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** The demo site with its `key:` list replaced by `[item, item, …]`, `count` items. */
async function siteWith(key: string, item: string, count: number): Promise<string> {
  const demo = await readFile(DEMO, 'utf8');
  const text = `${demo.replace(new RegExp(`^${key}:`, 'm'), `${key}Old:`)}\n${key}: [${`${item},`.repeat(count - 1)}${item}]\n`;
  expect(Buffer.byteLength(text)).toBeLessThanOrEqual(SITE_FILE_MAX_BYTES);
  const file = join(root, `${key}-${count}.yaml`);
  await writeFile(file, text);
  return file;
}

interface Refusal {
  lines: string[];
  problemCount: number;
  checkingStopped?: boolean;
}

/** loadSite in a child with a 256 MB heap: how it refused the file (a heap out of memory fails). */
async function refusedInSmallHeap(file: string): Promise<Refusal> {
  const code = `
    const { loadSite } = await import(${JSON.stringify(`${REPO_ROOT}/src/config/load-site.ts`)});
    const { problemCount } = await import(${JSON.stringify(`${REPO_ROOT}/src/errors.ts`)});
    try {
      await loadSite(process.argv[1]);
      console.log(JSON.stringify({ loaded: true }));
    } catch (err) {
      const lines = err.message.split('\\n');
      console.log(JSON.stringify({ lines: [...lines.slice(0, 3), lines.at(-1)], ...problemCount(err.problems) }));
    }`;
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--max-old-space-size=256', '--input-type=module', '-e', code, file],
    { timeout: 120_000, maxBuffer: 1024 * 1024 },
  );
  return JSON.parse(stdout) as Refusal;
}

describe('a site file within the size limit whose refusal would cost gigabytes', () => {
  it(`is refused at the parser past ${MAX_YAML_NODES} keys and values (8 MB of {})`, async () => {
    const file = await siteWith('sensorNodes', '{}', Math.floor((SITE_FILE_MAX_BYTES - 30_000) / 3));
    const r = await refusedInSmallHeap(file);
    expect(r.problemCount).toBe(1);
    expect(r.lines[0]).toBe(`${file}: 1 problem(s)`);
    expect(r.lines[1]).toMatch(
      /:\d+ \/: more than 1200000 YAML keys and values \(reading stopped here\) \(allowed: at most 1200000 \(docs\/site-config\.md, "File limits"\)/,
    );
  }, 180_000);

  it(`lists the first problems and stops counting at ${MAX_CHECKED_PROBLEMS} (a million empty racks)`, async () => {
    const file = await siteWith('racks', '{}', 1_150_000);
    const r = await refusedInSmallHeap(file);
    expect(r).toMatchObject({ problemCount: MAX_CHECKED_PROBLEMS, checkingStopped: true });
    expect(r.lines[0]).toBe(`${file}: at least 1000 problems (checking stops after 1000)`);
    expect(r.lines[1]).toMatch(/ \/racksOld: unknown setting/);
    expect(r.lines[2]).toMatch(/ \/racks\/0\/id: is required/);
    expect(r.lines[3]).toBe(
      '  … and 900 more problem(s) like these, and more not checked (fix those above, then check again)',
    );
  }, 180_000);

  it('lists the first of 540 000 unknown settings and stops there', async () => {
    const demo = await readFile(DEMO, 'utf8');
    const keys = Array.from({ length: 540_000 }, (_, i) => `k${i.toString(36)}: 1\n`).join('');
    const file = join(root, 'unknown-keys.yaml');
    await writeFile(file, `${demo}\n${keys}`);
    const r = await refusedInSmallHeap(file);
    expect(r).toMatchObject({ problemCount: MAX_CHECKED_PROBLEMS, checkingStopped: true });
    expect(r.lines[0]).toMatch(/: at least 1000 problems \(checking stops after 1000\)$/);
    expect(r.lines[1]).toMatch(/ \/k0: unknown setting \(allowed: remove it or check the spelling\)$/);
  }, 180_000);
});
