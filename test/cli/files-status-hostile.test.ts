// `coolctl status` against a cluster that misbehaves, over real loopback sockets: a leader that
// accepts connections and never answers (a node hung or cut off) leading many groups, and a node
// whose /api/v1/cluster answer is not a coolctl one (another service on the port, a proxy's page).
// The operator gets the table within one request deadline, or one line that says what is wrong —
// never minutes of waiting, never a stack.
import { createServer, type Server } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, type StubApi, stubApi } from './cli-process.ts';

const stubs: StubApi[] = [];
const holes: Server[] = [];
afterAll(async () => {
  await Promise.all(stubs.map((s) => s.close()));
  for (const h of holes) h.close();
});

/** A loopback address that accepts TCP connections and never answers a byte. */
async function blackhole(): Promise<string> {
  const sockets: import('node:net').Socket[] = [];
  const server = createServer((s) => sockets.push(s));
  server.on('close', () => {
    for (const s of sockets) s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  holes.push(server);
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

describe('coolctl status against a misbehaving cluster', () => {
  it('a leader that never answers is asked once, not once per group: 200 groups in one deadline', async () => {
    const hung = await blackhole();
    const groups = Array.from({ length: 200 }, (_, i) => ({ id: `g${i}`, leader: 'node-b', epoch: i + 1 }));
    const api = await stubApi((r, self) =>
      r.url === '/api/v1/cluster'
        ? {
            status: 200,
            body: {
              node: 'node-a',
              members: [
                { node: 'node-a', apiUrl: self },
                { node: 'node-b', apiUrl: hung },
              ],
              groups,
            },
          }
        : {
            status: 200,
            body: {
              leader: 'node-b',
              driving: false,
              mode: null,
              operator: { paused: false, overrides: {} },
            },
          },
    );
    stubs.push(api);
    // Asked per group, 8 at a time, 5 s each, this took 125 s.
    const r = await runCli(['status', '--api', api.url, '--output', 'json'], { timeoutMs: 30_000 });
    expect(r.status, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as {
      groups: { id: string; driven: boolean | null; problem: string }[];
    };
    expect(report.groups).toHaveLength(200);
    expect(report.groups.every((g) => g.driven === null)).toBe(true);
    expect(report.groups[199]!.problem).toMatch(/no answer in 5000 ms/);
    // The pause and overrides came from the node asked, for every group.
    expect(api.requests.filter((q) => q.url.startsWith('/api/v1/groups/'))).toHaveLength(200);
  }, 40_000);

  it('an answer that is not a coolctl cluster is one line naming the address, exit 1, no stack', async () => {
    const answers: unknown[] = [
      {},
      [],
      { node: 'x', members: [null], groups: [] },
      { node: 'x', members: [], groups: [{ id: {} }] },
    ];
    let next = 0;
    const api = await stubApi(() => ({ status: 200, body: answers[next++] as object }));
    stubs.push(api);
    for (let i = 0; i < answers.length; i++) {
      const r = await runCli(['status', '--api', api.url]);
      expect(r.status, r.stderr).toBe(1);
      expect(r.stderr).toMatch(
        new RegExp(`^coolctl: ${api.url}/api/v1/cluster answered, but not as a coolctl node does \\(.+\\)`),
      );
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(r.stdout).toBe('');
    }
  }, 60_000);

  it('a group answer with fields of the wrong type shows them as unknown, not as garbage or a crash', async () => {
    const api = await stubApi((r, self) =>
      r.url === '/api/v1/cluster'
        ? {
            status: 200,
            body: {
              node: 'node-a',
              members: [{ node: 'node-a', apiUrl: self }],
              groups: [{ id: 'zone-1', leader: 'node-a', epoch: 4 }],
            },
          }
        : {
            status: 200,
            body: {
              driving: 'yes',
              mode: { evil: true },
              sensors: 'ok',
              operator: { paused: 'no', overrides: 'AHU-01', reason: 7 },
            },
          },
    );
    stubs.push(api);
    const r = await runCli(['status', '--api', api.url]);
    expect(r.status, r.stderr).toBe(0);
    const row = r.stdout.split('\n').find((l) => l.startsWith('zone-1'));
    expect(row?.split(/\s+/)).toEqual(['zone-1', 'node-a', '4', '-', 'no', '-', 'no', '-']);
  }, 30_000);
});
