// The dashboard page's Content-Security-Policy, through inject(): its connect-src names 'self' and
// the origins of the cluster's members as this node sees them now (no scheme that lets the page reach
// any host), a member that joins is in the next page served, and a member API URL that a member record
// can hold but that is no bare http(s) origin — one that would end the directive, add a wildcard or
// carry a path — is left out, counted and logged once, while the page is still served.
import type { IKeyValue } from 'etcd3';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { PagePolicy } from '../../src/api/dashboard.ts';
import { parseMember } from '../../src/cluster/etcd/snapshot.ts';
import { loadSite } from '../../src/config/load-site.ts';
import { WIRE, WIRE_FIELD } from '../../src/version.ts';
import { FakeCluster, type FakeNode, fakeNode } from '../support/fake-cluster.ts';

const site = await loadSite('config/demo-site.yaml');
const open: FakeNode[] = [];
afterEach(async () => {
  for (const n of open.splice(0)) await n.close();
});

/** The policy's directives by name, each with its sources. */
function directives(csp: string | string[] | number | undefined): Map<string, string[]> {
  expect(typeof csp).toBe('string');
  return new Map(
    (csp as string)
      .split(';')
      .map((d) => d.trim().split(/\s+/))
      .map(([name, ...sources]) => [name!, sources]),
  );
}

const DIRECTIVES = [
  'default-src',
  'script-src',
  'style-src',
  'img-src',
  'connect-src',
  'base-uri',
  'form-action',
  'frame-ancestors',
];

async function nodeA(members: { node: string; apiUrl: string }[]) {
  const cluster = new FakeCluster({ 'zone-1': ['node-a', 41] });
  cluster.members.push(...members.map((m, i) => ({ ...m, startedAtMs: i + 1 })));
  const a = await fakeNode(cluster, 'node-a', site, []);
  open.push(a);
  return { cluster, a };
}

/**
 * Member API URLs a member record in etcd can hold (the cluster layer takes any URL that parses as
 * http(s) without credentials) and that are no origin the header may carry.
 */
const HOSTILE = [
  'http://evil.example;script-src', // ends connect-src, starts a directive
  'http://evil.example,script-src', // a comma joins a second policy
  'http://evil.example%3bscript-src', // the URL parser decodes %3b to ;
  "http://a'unsafe-eval'",
  'http://a"b',
  'http://*.example', // a wildcard
  'http://under_score.example',
  'http://127.0.0.1:8103/api', // a path
  'http://127.0.0.1:8104/?q=1',
  'http://127.0.0.1:8105/#x',
  'http://127.0.0.1:8106\t', // a control character the URL parser strips
  'http://bücher.example', // non-ASCII
  "http://127.0.0.1:8107/ 'unsafe-inline'", // a space (the URL parser would encode it in a path)
];

describe('the dashboard page’s Content-Security-Policy', () => {
  it('lets the page connect to itself and to the cluster’s members only', async () => {
    const { cluster, a } = await nodeA([
      { node: 'node-a', apiUrl: 'http://127.0.0.1:8101' },
      { node: 'node-b', apiUrl: 'https://node-b.hall-a.example:8443/' },
    ]);
    for (const asset of ['/', '/ui/dashboard.js', '/ui/dashboard.css']) {
      const csp = directives((await a.app.inject(asset)).headers['content-security-policy']);
      expect([...csp.keys()], asset).toEqual(DIRECTIVES);
      expect(csp.get('connect-src'), asset).toEqual([
        "'self'",
        'http://127.0.0.1:8101',
        'https://node-b.hall-a.example:8443',
      ]);
      expect(csp.get('default-src'), asset).toEqual(["'none'"]);
      expect(csp.get('script-src'), asset).toEqual(["'self'"]);
    }
    // A member that joins is in the next page served; one that leaves is gone from it.
    cluster.members.push({ node: 'node-c', apiUrl: 'http://[::1]:8103', startedAtMs: 3 });
    cluster.members.splice(1, 1);
    const csp = directives((await a.app.inject('/')).headers['content-security-policy']);
    expect(csp.get('connect-src')).toEqual(["'self'", 'http://127.0.0.1:8101', 'http://[::1]:8103']);
  });

  it('leaves out a member API URL that is no bare http(s) origin, and still serves the page', async () => {
    // The cluster layer refuses each as a member record (src/util/api-origin.ts); the page guards
    // itself all the same, since its members may come from elsewhere (a test, an older reader).
    for (const [i, apiUrl] of HOSTILE.entries()) {
      const kv = {
        key: Buffer.from(`/coolctl/members/n${i}`),
        value: Buffer.from(JSON.stringify({ [WIRE_FIELD]: WIRE.version, apiUrl, startedAtMs: 1 })),
        lease: String(1000 + i),
      } as unknown as IKeyValue;
      expect(parseMember(kv, '/coolctl/members/', new Map()), apiUrl).toMatchObject({ kind: 'foreign' });
    }
    const { a } = await nodeA([
      { node: 'node-a', apiUrl: 'http://127.0.0.1:8101' },
      ...HOSTILE.map((apiUrl, i) => ({ node: `n${i}`, apiUrl })),
      { node: 'node-b', apiUrl: 'http://127.0.0.1:8102' },
    ]);
    const page = await a.app.inject('/');
    expect(page.statusCode).toBe(200);
    const csp = directives(page.headers['content-security-policy']);
    expect([...csp.keys()]).toEqual(DIRECTIVES);
    expect(csp.get('connect-src')).toEqual(["'self'", 'http://127.0.0.1:8101', 'http://127.0.0.1:8102']);
    expect(csp.get('script-src')).toEqual(["'self'"]);
    const metric = await a.registry.getSingleMetricAsString(
      'coolctl_dashboard_connect_sources_left_out_total',
    );
    expect(metric).toMatch(
      new RegExp(`^coolctl_dashboard_connect_sources_left_out_total ${HOSTILE.length}$`, 'm'),
    );
  });

  it('counts and logs each left-out URL once (never its password), however often the page is served', async () => {
    const lines: { apiUrl: string; why: string }[] = [];
    const raw: string[] = [];
    const log = pino(
      { level: 'warn' },
      {
        write: (s: string) => {
          raw.push(s);
          lines.push(JSON.parse(s));
        },
      },
    );
    const registry = new Registry();
    const members = [
      { node: 'node-a', apiUrl: 'http://127.0.0.1:8101' },
      { node: 'n1', apiUrl: 'http://evil.example;script-src' },
    ];
    const policy = new PagePolicy(() => members, log, registry);
    const first = policy.header();
    expect(policy.header()).toBe(first);
    expect(first).toContain("connect-src 'self' http://127.0.0.1:8101;");
    members.push({ node: 'n2', apiUrl: 'http://u:s3cret@127.0.0.1:8102' });
    const second = policy.header();
    expect(second).toBe(first);
    for (let i = 0; i < 5; i++) policy.header();
    expect(lines.map((l) => l.apiUrl)).toEqual(['http://evil.example;script-src', 'http://127.0.0.1:8102']);
    expect(raw.join('')).not.toContain('s3cret');
    expect(lines.map((l) => l.why)).toEqual([
      'holds a space, a quote, `;`, `,`, a control or a non-ASCII character',
      'carries credentials',
    ]);
    expect(
      await registry.getSingleMetricAsString('coolctl_dashboard_connect_sources_left_out_total'),
    ).toMatch(/^coolctl_dashboard_connect_sources_left_out_total 2$/m);
    members.push({ node: 'node-b', apiUrl: 'http://127.0.0.1:8108' });
    expect(policy.header()).toContain("connect-src 'self' http://127.0.0.1:8101 http://127.0.0.1:8108;");
    expect(lines).toHaveLength(2);
  });
});
