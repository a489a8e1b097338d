// The config fingerprint `coolctl status` compares across members: the same for the same meaning
// (comments, key order, layout do not count), different for a different value; and the member
// record that carries it parses with it, and without it (a node of an older version). Pure.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IKeyValue } from 'etcd3';
import { afterAll, describe, expect, it } from 'vitest';
import { parseSnapshot } from '../../src/cluster/etcd/snapshot.ts';
import { configHash } from '../../src/config/config-hash.ts';

const dir = mkdtempSync(join(tmpdir(), 'coolctl-hash-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const f = join(dir, name);
  writeFileSync(f, text);
  return f;
};

describe('configHash', () => {
  it('counts what the files say, not how they say it', async () => {
    const site = file('site.yaml', 'site: {id: a, name: A}\nracks: [{id: R1, itLoadKw: 5}]\n');
    const a = await configHash(
      file('a.yaml', 'site: site.yaml\ncluster: {prefix: /x, leaseTtlS: 2}\n'),
      site,
    );
    const b = await configHash(
      file('b.yaml', '# the same, reordered\ncluster:\n  leaseTtlS: 2\n  prefix: /x\nsite: site.yaml\n'),
      site,
    );
    const c = await configHash(
      file('c.yaml', 'site: site.yaml\ncluster: {prefix: /x, leaseTtlS: 3}\n'),
      site,
    );
    const d = await configHash(
      file('a.yaml', 'site: site.yaml\ncluster: {prefix: /x, leaseTtlS: 2}\n'),
      file('site2.yaml', 'site: {id: a, name: A}\nracks: [{id: R1, itLoadKw: 6}]\n'),
    );
    expect(a).toMatch(/^[0-9a-f]{12}$/);
    expect(b).toBe(a);
    expect(c).not.toBe(a);
    expect(d).not.toBe(a);
  });

  it('a file swapped for an alias bomb or a cycle since it was loaded: still a fingerprint', async () => {
    const controller = file('ok.yaml', 'site: site.yaml\ncluster: {prefix: /x, leaseTtlS: 2}\n');
    const levels = ['a: &a [x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 9; i++)
      levels.push(
        `${'abcdefghi'[i]}: &${'abcdefghi'[i]} [${Array(9)
          .fill(`*${'abcdefghi'[i - 1]}`)
          .join(', ')}]`,
      );
    const bomb = file('bomb.yaml', `${levels.join('\n')}\n`);
    const cycle = file('cycle.yaml', 'x: &c [*c]\n');
    // The old read walked the bomb's 9^9 values (minutes, or out of memory: past the test's timeout).
    const [h1, h2] = await Promise.all([configHash(controller, bomb), configHash(controller, cycle)]);
    expect(h1).toMatch(/^[0-9a-f]{12}$/);
    expect(h2).toMatch(/^[0-9a-f]{12}$/);
    expect(h1).not.toBe(h2);
  });
});

describe('member records', () => {
  // Each node's record on its own lease, as a node registers it (a second record on one lease is a
  // copy, not a member: snapshot.ts's parseMember).
  const kv = (node: string, value: object, lease: string): IKeyValue => ({
    key: Buffer.from(`/p/members/${node}`),
    value: Buffer.from(JSON.stringify(value)),
    create_revision: '2',
    mod_revision: '2',
    version: '1',
    lease,
  });

  it('carry the config hash, and parse without one (an older node)', () => {
    const snap = parseSnapshot(
      [
        kv('n1', { node: 'n1', apiUrl: 'http://a:1', startedAtMs: 5, configHash: '0123456789ab' }, '7'),
        kv('n2', { node: 'n2', apiUrl: 'http://b:1', startedAtMs: 6 }, '8'),
      ],
      '/p',
      ['g1'],
      10,
      0,
    );
    expect(snap.members.get('n1')).toMatchObject({ node: 'n1', configHash: '0123456789ab' });
    expect(snap.members.get('n2')).toMatchObject({ node: 'n2', apiUrl: 'http://b:1' });
    expect(snap.members.get('n2')).not.toHaveProperty('configHash');
  });
});
