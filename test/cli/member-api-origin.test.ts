// The CLI carries an operator's token to wherever a member record says a node's API is. A record
// whose address is not a plain origin (a path, a `;`, port 0, credentials) — hand-written in etcd, or
// answered by something that is not a coolctl node — is listed but never dialled: `status` says why
// the group's leader was not asked, `switchover` refuses with one line, and no request with the
// token reaches the address. Real loopback sockets, the real CLI.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, type StubApi, stubApi } from './cli-process.ts';

const stubs: StubApi[] = [];
afterAll(async () => {
  await Promise.all(stubs.map((s) => s.close()));
});

const TOKEN = 'coolctl-test-token-7f3a';

/** A node whose cluster answer names node-b, leader of zone-1, at `bad(self)`; every request recorded. */
async function clusterWith(bad: (self: string) => string): Promise<StubApi> {
  const api = await stubApi((r, self) =>
    r.url === '/api/v1/cluster'
      ? {
          status: 200,
          body: {
            node: 'node-a',
            members: [
              { node: 'node-a', apiUrl: self },
              { node: 'node-b', apiUrl: bad(self) },
            ],
            groups: [{ id: 'zone-1', leader: 'node-b', epoch: 3 }],
          },
        }
      : {
          status: 200,
          body: { leader: 'node-b', driving: true, operator: { paused: false, overrides: {} } },
        },
  );
  stubs.push(api);
  return api;
}

const BAD: [string, (self: string) => string][] = [
  ['a path', (self) => `${self}/steal`],
  ['a `;`', (self) => `${self.replace('127.0.0.1', 'evil.example;script-src')}`],
  ['a query', (self) => `${self}/?next=x`],
  ['port 0', () => 'http://127.0.0.1:0'],
  ['credentials', (self) => self.replace('http://', 'http://u:p@')],
];

describe('member API addresses that are not origins', () => {
  it.each(BAD)(
    'with %s: status lists the member, does not dial it, and says why',
    async (_what, bad) => {
      const api = await clusterWith(bad);
      const r = await runCli(['status', '--api', api.url, '--output', 'json'], {
        env: { COOLCTL_TOKEN: TOKEN },
      });
      expect(r.status, r.stderr).toBe(0);
      const report = JSON.parse(r.stdout) as {
        members: { node: string; apiUrl: string }[];
        groups: { id: string; driven: boolean | null; problem: string | null; from: string | null }[];
      };
      expect(report.members.map((m) => m.node)).toEqual(['node-a', 'node-b']);
      expect(report.members[1]!.apiUrl).not.toMatch(/u:p@/);
      expect(report.groups[0]).toMatchObject({ id: 'zone-1', driven: null, from: 'node-a' });
      expect(report.groups[0]!.problem).toMatch(/^not asked: the API address of node-b's member record /);
      // Only the node asked was dialled, and only for what it serves itself.
      expect(api.requests.map((q) => q.url)).toEqual(['/api/v1/cluster', '/api/v1/groups/zone-1']);
    },
    30_000,
  );

  it.each(BAD)(
    'with %s: switchover refuses in one line, exit 1, and sends the token nowhere else',
    async (_what, bad) => {
      const api = await clusterWith(bad);
      const r = await runCli(['switchover', 'zone-1', '--to', 'node-a', '--api', api.url], {
        env: { COOLCTL_TOKEN: TOKEN },
      });
      expect(r.status, r.stderr).toBe(1);
      expect(r.stderr).toMatch(
        /^coolctl: node-b leads zone-1, but the API address of its member record .+: not asked/,
      );
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(r.stderr).not.toContain(TOKEN);
      expect(api.requests.map((q) => `${q.method} ${q.url}`)).toEqual(['GET /api/v1/cluster']);
    },
    30_000,
  );

  it('the controller config refuses such an address before a node could advertise it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'coolctl-origin-'));
    const base = readFileSync('test/fixtures/cluster/controller.yaml', 'utf8').replace(
      /^site: .*$/m,
      `site: ${resolve('config/demo-site.yaml')}`,
    );
    try {
      for (const api of ['127.0.0.1:0', 'evil;script-src:8101', 'a_b:8101', '127.0.0.1:65536', 'u@h:8101']) {
        const f = join(dir, 'controller.yaml');
        writeFileSync(f, base.replace('node-b: { api: 127.0.0.1:8102 }', `node-b: { api: '${api}' }`));
        const r = await runCli(['config', 'validate', f]);
        expect(r.status, `${api}: ${r.stdout}${r.stderr}`).toBe(2);
        expect(r.stderr).toMatch(/\/nodes\/node-b\/api/);
      }
      // The same file with the address as it was is valid: the refusals are the address's.
      writeFileSync(join(dir, 'controller.yaml'), base);
      expect((await runCli(['config', 'validate', join(dir, 'controller.yaml')])).status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
