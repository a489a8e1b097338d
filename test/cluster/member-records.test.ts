// Member records in a snapshot: only one a node could have written counts (named after a node, an
// http(s) apiUrl, on its own lease); a hand-made put, a restore or a copy on a live node's lease is
// left out and reported, whatever order etcd lists them in. Pure: parseSnapshot on made-up kvs.
import type { IKeyValue } from 'etcd3';
import { describe, expect, it } from 'vitest';
import { parseSnapshot } from '../../src/cluster/etcd/snapshot.ts';

function kv(key: string, value: unknown, lease: string, rev: number): IKeyValue {
  return {
    key: Buffer.from(`/p/${key}`),
    value: Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)),
    lease,
    mod_revision: String(rev),
    create_revision: String(rev),
    version: '1',
  } as IKeyValue;
}

describe('member records', () => {
  it('count only when a node could have written them', () => {
    const ignored: string[] = [];
    const snap = parseSnapshot(
      [
        kv('members/a', '{"apiUrl":"http://127.0.0.1:1","startedAtMs":1e309}', '10', 5),
        // Listed first (key order) but put later on a's lease: the copy, not a's record.
        kv('members/0-copy', { apiUrl: 'http://127.0.0.1:9' }, '10', 9),
        kv('members/b', { apiUrl: 'https://[::1]:2', startedAtMs: -5 }, '11', 6),
        kv('members/phantom', { apiUrl: 'https://evil.example' }, '0', 7),
        kv('members/js', { apiUrl: 'javascript:alert(1)' }, '12', 8),
        kv('members/cred', { apiUrl: 'http://user:pw@127.0.0.1:3' }, '13', 10),
        kv('members/num', { apiUrl: 1e308 }, '14', 11),
        kv('members/a/b', { apiUrl: 'http://127.0.0.1:4' }, '15', 12),
        kv(`members/${'L'.repeat(300)}`, { apiUrl: 'http://127.0.0.1:5' }, '16', 13),
        kv('members/..', { apiUrl: 'http://127.0.0.1:6' }, '17', 14),
        kv('members/proto', '{"__proto__":{"apiUrl":"http://127.0.0.1:7"}}', '18', 15),
        kv('members/nan', '{"apiUrl":"http://127.0.0.1:8","wv":"NaN"}', '19', 16),
      ],
      '/p',
      [],
      20,
      0,
      (k, kind) => ignored.push(`${kind}:${k.key.toString().slice(11, 40)}`),
    );
    expect([...snap.members.keys()]).toEqual(['a', 'b']);
    expect(snap.members.get('a')).toMatchObject({ leaseHex: 'a', startedAtMs: 0 });
    expect(snap.members.get('b')).toMatchObject({ leaseHex: 'b', startedAtMs: 0 });
    expect(ignored).toEqual(
      expect.arrayContaining([
        'ghost:0-copy',
        'ghost:phantom',
        'foreign:js',
        'foreign:cred',
        'foreign:num',
        'foreign:a/b',
        `foreign:${'L'.repeat(29)}`,
        'foreign:..',
        'foreign:proto',
        'foreign:nan',
      ]),
    );
    expect(ignored).toHaveLength(10);
  });

  it('count only with an API address that is an origin, which every reader follows as such', () => {
    const ignored: string[] = [];
    const bad = [
      'http://evil.example;script-src', // a CSP header would read a second directive
      'http://127.0.0.1:8101/steer', // a path: an API URL is an origin
      'http://127.0.0.1:8101/?x=1',
      'http://127.0.0.1:8101#frag',
      'http://127.0.0.1:0', // nothing listens on port 0
      'http://a_b:8101', // not a DNS name
      'http://127.0.0.1:8101 ',
      "http://it's:8101",
      'http://a,b:8101',
    ];
    const snap = parseSnapshot(
      [
        kv('members/ok', { apiUrl: 'HTTP://Node-A.Hall.example:8101/' }, '10', 5),
        ...bad.map((apiUrl, i) => kv(`members/bad${i}`, { apiUrl }, String(20 + i), 6 + i)),
      ],
      '/p',
      [],
      40,
      0,
      (k, kind, why) => ignored.push(`${kind}:${k.key.toString().slice(11)}:${why}`),
    );
    expect([...snap.members.keys()]).toEqual(['ok']);
    // Kept as the origin it names: the form the API, the CSP and the CLI compare and dial.
    expect(snap.members.get('ok')?.apiUrl).toBe('http://node-a.hall.example:8101');
    expect(ignored).toHaveLength(bad.length);
    for (const line of ignored) expect(line).toMatch(/^foreign:bad\d+:not a member record: its apiUrl /);
  });

  it('keep the state cache’s peer address a node advertises (tcp://host:port), and only that', () => {
    const snap = parseSnapshot(
      [
        kv('members/a', { apiUrl: 'http://127.0.0.1:1', peerUrl: 'tcp://127.0.0.1:9401' }, '10', 5),
        kv('members/b', { apiUrl: 'http://127.0.0.1:2', peerUrl: 'tcp://[::1]:9402' }, '11', 6),
        kv('members/c', { apiUrl: 'http://127.0.0.1:3', peerUrl: 'javascript:alert(1)' }, '12', 7),
        kv('members/d', { apiUrl: 'http://127.0.0.1:4', peerUrl: 'tcp://user:pw@127.0.0.1:9' }, '13', 8),
      ],
      '/p',
      [],
      20,
      0,
      () => undefined,
    );
    // Without it the nodes never link: no process state reaches a new leader (no warm start).
    expect(snap.members.get('a')?.peerUrl).toBe('tcp://127.0.0.1:9401');
    expect(snap.members.get('b')?.peerUrl).toBe('tcp://[::1]:9402');
    expect(snap.members.get('c')?.peerUrl).toBeUndefined();
    expect(snap.members.get('d')?.peerUrl).toBeUndefined();
  });
});
