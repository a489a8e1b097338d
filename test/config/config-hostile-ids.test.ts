// Ids a careless or hostile author writes: names every JavaScript object answers to (`constructor`,
// `toString`, …). Code keys maps by id; such an id found Object.prototype's function where no entry
// was (a unit called `constructor` got a fan floor of NaN), so both config files refuse them at
// their path and line, as any other bad id.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { loadControllerConfig } from '../../src/config/controller-config.ts';
import { parseSite } from '../../src/config/load-site.ts';
import { ConfigError } from '../../src/errors.ts';

const DEMO = resolve('config/demo-site.yaml');

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'coolctl-config-hostile-ids-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function refusal(text: string): ConfigError {
  try {
    parseSite(text, 'site.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('the site should be refused');
}

describe('ids that every JavaScript object answers to', () => {
  it('a unit, rack, row, sensor and group so named are each refused at their path and line', async () => {
    const demo = await readFile(DEMO, 'utf8');
    const text = demo
      .replaceAll('AHU-01', 'constructor')
      .replaceAll(/\bRA-01\b/g, 'toString')
      .replace('row: row-1', 'row: valueOf')
      .replace(/(sensors:\n\s+- id: )\S+/, '$1hasOwnProperty')
      .replace(/(controlGroups:\n\s+- id: )\S+/, '$1isPrototypeOf');
    const err = refusal(text);
    const reserved = err.problems.filter((p) => /a name every JavaScript object has/.test(p.message));
    expect(reserved.map((p) => p.path).sort()).toEqual(
      [
        '/airHandlers/0/id',
        '/racks/0/id',
        '/racks/0/row',
        '/sensorNodes/0/sensors/0/id',
        '/controlGroups/0/id',
      ].sort(),
    );
    const lines = text.split('\n');
    for (const p of reserved) {
      expect(p.line, p.path).toBeGreaterThan(0);
      expect(lines[p.line! - 1], p.path).toMatch(/constructor|toString|valueOf|hasOwnProperty|isPrototypeOf/);
    }
    expect(reserved[0]!.allowed).toMatch(/another name/);
  });

  it('the same names with anything added are ordinary ids', async () => {
    const demo = await readFile(DEMO, 'utf8');
    expect(() => parseSite(demo.replaceAll('AHU-01', 'constructor-1'), 'site.yaml')).not.toThrow();
  });

  it('a node so named in the controller config is refused at /nodes/NAME', async () => {
    const file = join(root, 'controller.yaml');
    const text = stringify({
      site: DEMO,
      cluster: { etcd: ['http://127.0.0.1:2379'] },
      nodes: { a: { api: '127.0.0.1:8101' }, constructor: { api: '127.0.0.1:8102' } },
    });
    await writeFile(file, text);
    const err = await loadControllerConfig(file, 'a').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    const p = (err as ConfigError).problems.find((x) => x.path === '/nodes/constructor');
    expect(p?.message).toMatch(/a name every JavaScript object has/);
    // The line of the node's entry (its value, as for any mapping a problem is about).
    expect(text.split('\n')[p!.line! - 1]).toMatch(/constructor:|127\.0\.0\.1:8102/);
  });
});
