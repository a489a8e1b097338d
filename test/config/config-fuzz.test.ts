// Structured, seeded fuzzing of every config coolctl reads: the site file, the controller config and
// the fencing gateway's, from the shipped examples. Each case changes one node of the YAML tree (a
// type swap, null, a huge or non-finite number, a look-alike or unknown id, deep nesting, …) or one
// thing about the text (BOM, CRLF, tabs, a byte that is not UTF-8, duplicated keys, aliases, an
// alias bomb, merge keys, tags). What must hold for every case: the loader returns, in bounded time,
// either a config that says what the file says, or a ConfigError whose every problem names a place
// (a JSON pointer or a line) and what is allowed. A sample goes through `coolctl config validate`
// as a real process: exit 0 or 2, never a stack trace. COOLCTL_FUZZ_CASES=N runs more cases.
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { mulberry32 } from '../../firmware-sim/random.ts';
import { valueAt } from '../../src/config/config-check.ts';
import { loadControllerConfig } from '../../src/config/controller-config.ts';
import { parseSite } from '../../src/config/load-site.ts';
import { ConfigError } from '../../src/errors.ts';
import { parseGatewayConfig } from '../../src/gateway/config.ts';

const CASES = Number(process.env.COOLCTL_FUZZ_CASES ?? 400);
const SEED = Number(process.env.COOLCTL_FUZZ_SEED ?? 20261206);

// The simulator's seeded PRNG: the same cases on every run.
const rng = mulberry32;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
interface Case {
  what: string;
  text: string;
  /** For a one-node value change: where, and the value the loaded config must then hold there. */
  at?: { pointer: string; value: Json };
}

const tok = (k: string) => k.replace(/~/g, '~0').replace(/\//g, '~1');

/** Every node's JSON pointer, document order. */
function pointers(v: Json, at = '', out: string[] = []): string[] {
  out.push(at);
  if (Array.isArray(v)) for (const [i, x] of v.entries()) pointers(x, `${at}/${i}`, out);
  else if (v && typeof v === 'object')
    for (const k of Object.keys(v)) pointers(v[k]!, `${at}/${tok(k)}`, out);
  return out;
}

function setAt(doc: Json, pointer: string, value: Json | undefined): Json {
  if (pointer === '') return value ?? null;
  const parts = pointer
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  const copy = structuredClone(doc);
  let node = copy as Record<string, Json>;
  for (const p of parts.slice(0, -1)) node = node[p] as Record<string, Json>;
  const last = parts.at(-1)!;
  if (value === undefined) {
    if (Array.isArray(node)) node.splice(Number(last), 1);
    else delete node[last];
  } else node[last] = value;
  return copy;
}

const lookalike = (s: string) => s.replace(/a/, '\u0430').replace(/e/, '\u0435').replace(/o/, '\u043e');
const deep = (n: number): Json => {
  let v: Json = 1;
  for (let i = 0; i < n; i++) v = [v];
  return v;
};

/** One-node value mutations: [name, the new value from the old one] (undefined deletes it). */
const VALUE_MUTATIONS: [string, (old: Json, r: () => number) => Json | undefined][] = [
  ['null', () => null],
  ['empty text', () => ''],
  ['empty list', () => []],
  ['empty mapping', () => ({})],
  ['delete', () => undefined],
  ['true', () => true],
  ['number as text', (o) => (typeof o === 'number' ? String(o) : '12')],
  ['text as number', (o) => (typeof o === 'string' ? o.length : 7)],
  ['huge', () => 1e308],
  ['negative huge', () => -1e308],
  ['beyond 2^53', () => Number('9007199254740993')],
  ['negative zero', () => -0],
  ['negative', (o) => (typeof o === 'number' ? -Math.abs(o) - 1 : -1)],
  ['fraction', (o) => (typeof o === 'number' ? o + 0.5 : 0.5)],
  ['zero', () => 0],
  ['NaN as text', () => 'NaN'],
  ['Infinity as text', () => 'Infinity'],
  ['long text', (_, r) => 'x'.repeat(50_000 + Math.floor(r() * 50_000))],
  ['look-alike', (o) => (typeof o === 'string' ? lookalike(o) : 'c\u043er\u0435')],
  ['other case', (o) => (typeof o === 'string' ? o.toUpperCase() : 'X')],
  ['unknown id', () => 'no-such-id-404'],
  ['control character', (o) => `${typeof o === 'string' ? o : 'x'}\u0000\u001b[2J`],
  ['bidi', (o) => `${typeof o === 'string' ? o : 'x'}\u202e`],
  ['deep nesting', () => deep(500)],
  ['unknown key', (o) => (o && typeof o === 'object' && !Array.isArray(o) ? { ...o, zzUnknown: 1 } : o)],
  [
    'hostile key',
    (o) => (o && typeof o === 'object' && !Array.isArray(o) ? { ...o, 'a\u001b]0;x\u0007\u202eb': 1 } : o),
  ],
  [
    '__proto__ key',
    (o) => (o && typeof o === 'object' && !Array.isArray(o) ? JSON.parse(`{"__proto__":{"x":1}}`) : o),
  ],
  ['duplicate item', (o) => (Array.isArray(o) && o.length > 0 ? [...o, o[0]!] : o)],
  ['list of one', (o) => [o]],
];

/** Whole-text mutations: BOM, line ends, encodings, YAML features. */
const TEXT_MUTATIONS: [string, (text: string, r: () => number) => string][] = [
  ['BOM', (t) => `\ufeff${t}`],
  ['CRLF', (t) => t.replace(/\n/g, '\r\n')],
  ['tab indent', (t, r) => lineAt(t, r, (l) => l.replace(/^( +)/, '\t'))],
  ['duplicated key line', (t, r) => lineAt(t, r, (l) => (/^\s*[\w-]+:/.test(l) ? `${l}\n${l}` : l))],
  ['merge key', (t) => `base: &b { zz: 1 }\n${t}\nother:\n  <<: *b\n`],
  ['binary tag', (t, r) => lineAt(t, r, (l) => l.replace(/: (\S.*)$/, ': !!binary aGk='))],
  ['js tag', (t, r) => lineAt(t, r, (l) => l.replace(/: (\S.*)$/, ': !!js/undefined ~'))],
  ['str tag', (t, r) => lineAt(t, r, (l) => l.replace(/: (\d+)$/, ': !!str $1'))],
  ['cycle', (t) => `${t}\ncycle: &c [*c]\n`],
  ['cycle in a mapping', (t) => `${t}\ncycle: &c { self: *c }\n`],
  ['alias bomb', (t) => `${t}\n${bomb(9)}`],
  ['truncated', (t, r) => t.slice(0, Math.floor(r() * t.length))],
  ['unclosed flow', (t) => `${t}\nzz: [1, 2\n`],
  ['deep flow', (t) => `${t}\nzz: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`],
  ['NUL', (t, r) => lineAt(t, r, (l) => `${l}\u0000`)],
  ['only comments', () => '# nothing\n\n# here\n'],
  ['a scalar', () => '42\n'],
  ['a list', (t) => `- ${JSON.stringify(t.slice(0, 20))}\n`],
  ['two documents', (t) => `${t}\n---\n${t}`],
];

function lineAt(text: string, r: () => number, f: (line: string) => string): string {
  const lines = text.split('\n');
  const i = Math.floor(r() * lines.length);
  lines[i] = f(lines[i]!);
  return lines.join('\n');
}

/** Nine anchors, each nine aliases of the one before: 9^9 values from ~400 bytes. */
function bomb(levels: number): string {
  const out = ['lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]'];
  for (let i = 1; i < levels; i++)
    out.push(
      `lol${i}: &l${i} [${Array(9)
        .fill(`*l${i - 1}`)
        .join(', ')}]`,
    );
  return `${out.join('\n')}\n`;
}

/** Bytes that are not UTF-8, inserted at a random line: the loader reads bytes, not text. */
const NON_UTF8 = [Buffer.from([0xff]), Buffer.from([0xc3, 0x28]), Buffer.from([0xed, 0xa0, 0x80])];

function cases(base: string, n: number, seed: number): Case[] {
  const r = rng(seed);
  const doc = parseYaml(base) as Json;
  const ptrs = pointers(doc);
  const out: Case[] = [];
  for (let i = 0; i < n; i++) {
    if (r() < 0.25) {
      const [what, f] = TEXT_MUTATIONS[Math.floor(r() * TEXT_MUTATIONS.length)]!;
      out.push({ what, text: f(base, r) });
      continue;
    }
    const pointer = ptrs[1 + Math.floor(r() * (ptrs.length - 1))]!;
    const [what, f] = VALUE_MUTATIONS[Math.floor(r() * VALUE_MUTATIONS.length)]!;
    const value = f(valueAt(doc, pointer) as Json, r);
    const mutated = setAt(doc, pointer, value);
    out.push({
      what: `${what} at ${pointer}`,
      text: stringifyYaml(mutated, { aliasDuplicateObjects: false, lineWidth: 0 }),
      ...(value !== undefined ? { at: { pointer, value } } : {}),
    });
  }
  return out;
}

/** What a problem must never carry raw: C0 and C1 controls, DEL, bidi overrides and isolates. */
// biome-ignore lint/complexity/useRegexLiterals: as a literal, these characters are refused as controls in a regex
const CONTROL_OR_BIDI = new RegExp('[\\u0000-\\u001f\\u007f-\\u009f\\u202a-\\u202e\\u2066-\\u2069]');

/** Whether a loaded value says what was written: the same, but for defaults filled in beside it. */
function holds(got: unknown, written: Json): boolean {
  if (written === null || typeof written !== 'object')
    return Object.is(JSON.parse(JSON.stringify(written)), got);
  if (got === null || typeof got !== 'object' || Array.isArray(got) !== Array.isArray(written)) return false;
  const g = got as Record<string, unknown>;
  if (Array.isArray(written))
    return written.length === (got as unknown[]).length && written.every((w, i) => holds(g[i], w));
  return Object.keys(written).every((k) => Object.hasOwn(g, k) && holds(g[k], written[k]!));
}

interface Verdict {
  ok: boolean;
  value?: unknown;
  ms: number;
}

/** Runs one case; anything but a value or a ConfigError whose problems each say where and what is a failure. */
async function judge(c: Case, load: (text: string) => unknown | Promise<unknown>): Promise<string | Verdict> {
  const t0 = performance.now();
  try {
    const value = await load(c.text);
    return { ok: true, value, ms: performance.now() - t0 };
  } catch (err) {
    const ms = performance.now() - t0;
    if (!(err instanceof ConfigError)) return `${c.what}: threw ${String(err).slice(0, 200)}`;
    if (err.problems.length === 0) return `${c.what}: a ConfigError with no problem`;
    for (const p of err.problems) {
      if (typeof p.path !== 'string' || (p.path !== '' && !p.path.startsWith('/')))
        return `${c.what}: problem path ${JSON.stringify(p.path)}`;
      if (p.path === '' && p.line === undefined && !/file|YAML|UTF|empty|mapping/i.test(p.message))
        return `${c.what}: a problem with neither a path nor a line: ${p.message}`;
      if (CONTROL_OR_BIDI.test(`${p.path}${p.message}${p.allowed}`))
        return `${c.what}: a problem carries a control or bidi character: ${JSON.stringify(p)}`;
      if (!p.message || !p.allowed)
        return `${c.what}: a problem without message or allowed: ${JSON.stringify(p)}`;
      // (A word the file itself holds is fine: a line named NaN, the tag !!js/undefined.)
      const words = `${p.message} ${p.allowed}`.replace(/[\w/!.<>:,-]*(js\/undefined)[\w/!.<>:,-]*/g, '');
      if (/\bundefined\b|\[object Object\]/.test(words) || (/\bNaN\b/.test(words) && !c.text.includes('NaN')))
        return `${c.what}: a problem that reads badly: ${p.message} (allowed: ${p.allowed})`;
      // A problem quotes no long value back: the message stays a line.
      if (p.message.length > 600) return `${c.what}: a ${p.message.length}-character message`;
    }
    return { ok: false, ms };
  }
}

async function fuzz(
  base: string,
  n: number,
  seed: number,
  load: (text: string) => unknown | Promise<unknown>,
  checkMeaning = true,
): Promise<{ failures: string[]; accepted: number; refused: number; slowestMs: number }> {
  const failures: string[] = [];
  let accepted = 0;
  let refused = 0;
  let slowestMs = 0;
  for (const c of cases(base, n, seed)) {
    const v = await judge(c, load);
    if (typeof v === 'string') {
      failures.push(v);
      continue;
    }
    slowestMs = Math.max(slowestMs, v.ms);
    if (v.ms > 3000) failures.push(`${c.what}: took ${Math.round(v.ms)} ms`);
    if (!v.ok) {
      refused++;
      continue;
    }
    accepted++;
    // Accepted means what it says: the value changed is the value loaded, not clamped or dropped.
    if (checkMeaning && c.at) {
      const got = valueAt(v.value, c.at.pointer);
      if (!holds(got, c.at.value))
        failures.push(
          `${c.what}: accepted, but the config holds ${JSON.stringify(got)?.slice(0, 80)} there, not ${JSON.stringify(c.at.value).slice(0, 80)}`,
        );
    }
  }
  return { failures, accepted, refused, slowestMs };
}

describe('config fuzzing (seeded)', () => {
  it('the site file: every mutation is a config that says what the file says, or a located refusal', async () => {
    const base = await readFile('config/demo-site.yaml', 'utf8');
    const r = await fuzz(base, CASES, SEED, (t) => parseSite(t, 'site.yaml'));
    expect(r.failures).toEqual([]);
    expect(r.refused).toBeGreaterThan(CASES / 3);
  }, 120_000);

  it('the fencing gateway config: likewise', async () => {
    const base = await readFile('config/examples/gateway.yaml', 'utf8');
    const r = await fuzz(base, CASES, SEED + 1, (t) => parseGatewayConfig(t, 'gateway.yaml'), false);
    expect(r.failures).toEqual([]);
    expect(r.refused).toBeGreaterThan(CASES / 3);
  }, 120_000);

  it('the controller config (with its site file): likewise', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coolctl-fuzz-'));
    const base = (await readFile('test/fixtures/cluster/controller.yaml', 'utf8')).replace(
      /^site: .*$/m,
      `site: ${resolve('config/demo-site.yaml')}`,
    );
    let i = 0;
    await writeFile(join(dir, 'base.yaml'), base);
    expect((await loadControllerConfig(join(dir, 'base.yaml'), 'node-a')).node).toBe('node-a');
    const r = await fuzz(
      base,
      Math.ceil(CASES / 3),
      SEED + 2,
      async (t) => {
        const file = join(dir, `c${i++}.yaml`);
        await writeFile(file, t);
        return loadControllerConfig(file, 'node-a');
      },
      false,
    );
    expect(r.failures).toEqual([]);
    expect(r.accepted).toBeGreaterThan(0);
  }, 120_000);

  it('bytes that are not UTF-8, anywhere, are refused with their line', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coolctl-fuzz-'));
    const base = await readFile('config/demo-site.yaml');
    const r = rng(SEED + 3);
    for (let k = 0; k < 30; k++) {
      const at = Math.floor(r() * base.length);
      const bad = NON_UTF8[k % NON_UTF8.length]!;
      const file = join(dir, `s${k}.yaml`);
      await writeFile(file, Buffer.concat([base.subarray(0, at), bad, base.subarray(at)]));
      const { loadSite } = await import('../../src/config/load-site.ts');
      const err = await loadSite(file).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      const p = (err as ConfigError).problems[0]!;
      expect(p.message).toMatch(/not UTF-8/);
      expect(p.line).toBe(base.subarray(0, at).toString('latin1').split('\n').length);
    }
  });

  it('a sample through `coolctl config validate`: exit 0 or 2, one message per problem, no stack trace', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coolctl-fuzz-'));
    const base = await readFile('config/demo-site.yaml', 'utf8');
    const sample = cases(base, 400, SEED + 4).filter((_, k) => k % 100 === 0);
    sample.push(
      { what: 'alias bomb', text: `${base}\n${bomb(9)}` },
      { what: 'cycle', text: `${base}\nc: &c [*c]\n` },
    );
    for (const [k, c] of sample.entries()) {
      const file = join(dir, `site-${k}.yaml`);
      await writeFile(file, c.text);
      const res = spawnSync(process.execPath, ['src/cli.ts', 'config', 'validate', file], {
        encoding: 'utf8',
        timeout: 30_000,
      });
      expect(res.status, `${c.what}: ${res.stderr}`).toSatisfy((s: number) => s === 0 || s === 2);
      expect(res.stderr, c.what).not.toMatch(/\n\s+at .+:\d+:\d+\)?$/m);
      if (res.status === 2) expect(res.stderr, c.what).toMatch(/not a valid|problem/);
    }
  }, 120_000);
});

describe('aliases', () => {
  it('a value that holds itself through an alias is refused with its place, not walked forever', () => {
    const base = 'site: {id: x, name: y}\n';
    for (const cyc of ['c: &c [*c]', 'c: &c {self: *c}', 'c: &c [1, [2, {deeper: *c}]]']) {
      const err = (() => {
        try {
          parseSite(`${base}${cyc}\n`, 'site.yaml');
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(ConfigError);
      const [p] = (err as ConfigError).problems;
      expect(p).toMatchObject({ line: 2, message: expect.stringMatching(/alias .* holds it/) });
      expect(p!.path).toMatch(/^\/c\//);
    }
  });

  it('an alias bomb is refused in well under a second', () => {
    const t0 = performance.now();
    expect(() => parseSite(`site: {id: x, name: y}\n${bomb(9)}`, 'site.yaml')).toThrow(/alias bomb/);
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('aliases that repeat a small value are still fine', async () => {
    // The demo site with every repeated list (a node's sensors, a group's units) given once and aliased after.
    const doc = parseYaml(await readFile('config/demo-site.yaml', 'utf8')) as {
      sensorNodes: { sensors: unknown }[];
    };
    const shared = new Map<string, unknown>();
    for (const n of doc.sensorNodes) {
      const key = JSON.stringify(n.sensors);
      if (!shared.has(key)) shared.set(key, n.sensors);
      n.sensors = shared.get(key);
    }
    const text = stringifyYaml(doc, { aliasDuplicateObjects: true });
    expect(text).toMatch(/\*\w+/);
    expect(parseSite(text).sensorNodes.length).toBeGreaterThan(40);
  });
});

describe('what a refusal quotes of the file', () => {
  const refusal = (text: string) => {
    try {
      parseSite(text, 'site.yaml');
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      return (e as ConfigError).problems;
    }
    throw new Error('expected a refusal');
  };

  it('a key with terminal escapes and bidi controls is shown escaped, on its line', async () => {
    const base = await readFile('config/demo-site.yaml', 'utf8');
    const [p] = refusal(`${base}"ab\\e]0;pwned\\a\\u202ecd": 1\n`);
    expect(p).toMatchObject({
      path: '/ab\\x1b]0;pwned\\x07\\u202ecd',
      line: base.split('\n').length,
      message: 'unknown setting',
    });
  });

  it('an unknown protocol of 100 000 characters is quoted in a line of ordinary length', async () => {
    const base = await readFile('config/demo-site.yaml', 'utf8');
    const [p] = refusal(base.replace('protocol: modbus-tcp', `protocol: "\\e[2J${'x'.repeat(100_000)}"`));
    expect(p!.path).toMatch(/^\/airHandlers\/\d+\/protocol$/);
    expect(p!.message).toMatch(/^unknown protocol "\\u001b\[2Jxxx.*… \(\d+ chars\)$/);
    expect(p!.message.length).toBeLessThan(400);
  });

  it('a unit without a protocol is told the protocol is required, not "unknown protocol undefined"', async () => {
    const base = await readFile('config/demo-site.yaml', 'utf8');
    const problems = refusal(base.replace(/^( +)protocol: modbus-tcp\n/m, ''));
    expect(problems).toContainEqual(
      expect.objectContaining({
        path: expect.stringMatching(/^\/airHandlers\/\d+\/protocol$/),
        message: 'is required',
      }),
    );
    expect(JSON.stringify(problems)).not.toMatch(/undefined/);
  });
});

describe('a group tuning whose range crosses', () => {
  it('is refused with the setting to fix, not run with its ends swapped', async () => {
    const doc = parseYaml(await readFile('config/demo-site.yaml', 'utf8')) as {
      controlGroups: Record<string, unknown>[];
    };
    // Under the default 30 % fan floor, a 20 % ceiling would have become a 20–30 % range.
    doc.controlGroups[1]!.tuning = { fan: { maxPct: 20 }, setpoint: { minC: 23, maxC: 17 } };
    let err: unknown;
    try {
      parseSite(stringifyYaml(doc), 'site.yaml');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual([
      expect.objectContaining({
        path: '/controlGroups/1/tuning/fan/maxPct',
        message: 'fan minPct (30) is above maxPct (20)',
        line: expect.any(Number),
      }),
      expect.objectContaining({
        path: '/controlGroups/1/tuning/setpoint/maxC',
        message: 'setpoint minC (23) is above maxC (17)',
      }),
    ]);
  });

  it('a range set inside the defaults or with both ends is still fine', async () => {
    const doc = parseYaml(await readFile('config/demo-site.yaml', 'utf8')) as {
      controlGroups: Record<string, unknown>[];
    };
    doc.controlGroups[1]!.tuning = { fan: { minPct: 10, maxPct: 20 }, setpoint: { minC: 18 } };
    const site = parseSite(stringifyYaml(doc), 'site.yaml');
    expect(site.controlGroups[1]!.tuning).toMatchObject({ fan: { minPct: 10, maxPct: 20 } });
  });
});
