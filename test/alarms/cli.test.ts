// `coolctl alarms` as an engineer runs it (a process of its own) against a node's API serving the
// fake cluster's alarms: list, --all, --ack with a comment, --shelve --for, --unshelve; the token
// from COOLCTL_TOKEN's file form; usage mistakes exit 2 without a request.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDurationS } from '../../src/cli/alarm-commands.ts';
import { loadSite } from '../../src/config/load-site.ts';
import { runCoolctl } from '../support/cli-run.ts';
import { FakeCluster, type FakeNode, fakeNode } from '../support/fake-cluster.ts';

let node: FakeNode;
let c: FakeCluster;
let dir: string;
let api: string;
const files: Record<'viewer' | 'operator', string> = { viewer: '', operator: '' };

beforeAll(async () => {
  const site = await loadSite('config/demo-site.yaml');
  c = new FakeCluster({ 'zone-1': ['node-a', 41], 'zone-2': ['node-a', 42], 'zone-3': ['node-a', 43] });
  node = await fakeNode(c, 'node-a', site, []);
  api = await node.app.listen({ host: '127.0.0.1', port: 0 });
  dir = await mkdtemp(join(tmpdir(), 'coolctl-alarms-cli-'));
  for (const role of ['viewer', 'operator'] as const) {
    files[role] = join(dir, role);
    await writeFile(files[role], `${node.auth.tokens[role]}\n`, { mode: 0o600 });
  }
});
afterAll(async () => {
  await node?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const cli = (role: 'viewer' | 'operator', ...args: string[]) =>
  runCoolctl(['alarms', ...args, '--api', api, '--token-file', files[role]]);

describe('coolctl alarms', () => {
  it('lists, acknowledges, shelves and unshelves', async () => {
    const tripped = c.alarms.raise('unit-tripped', 'zone-1', 'AHU-01', 'unit AHU-01 tripped');
    const old = c.alarms.raise('node-down', null, 'n3', 'node n3 is not a member', {
      atMs: Date.now() - 60_000,
    });
    c.alarms.clear(old);

    const list = await cli('viewer');
    expect(list.code, list.err).toBe(0);
    expect(list.out).toContain('unit AHU-01 tripped');
    expect(list.out).toContain(`id ${tripped}`);
    expect(list.out).not.toContain(old);
    const all = await cli('viewer', '--all');
    expect(all.out).toContain(`id ${old}`);
    expect(all.out).toMatch(/minor\s+cleared/);

    const asViewer = await cli('viewer', '--ack', tripped);
    expect(asViewer.code).toBe(1);
    expect(asViewer.err).toContain('needs the operator role');

    const ack = await cli('operator', '--ack', tripped, '--comment', 'reset at the unit');
    expect(ack.code, ack.err).toBe(0);
    expect(ack.out).toMatch(/major\s+acknowledged/);
    expect(ack.out).toContain('ack operator');
    expect(ack.out).toContain('"reset at the unit"');

    const shelf = await cli('operator', '--shelve', tripped, '--for', '2h', '--json');
    expect(shelf.code, shelf.err).toBe(0);
    const until = Date.parse(
      (JSON.parse(shelf.out) as { alarm: { shelvedUntil: string } }).alarm.shelvedUntil,
    );
    expect(until - Date.now()).toBeGreaterThan(7_100_000);
    expect(until - Date.now()).toBeLessThanOrEqual(7_200_000);
    expect((await cli('viewer')).out).toContain('shelved until');
    const un = await cli('operator', '--unshelve', tripped);
    expect(un.code, un.err).toBe(0);
    expect(un.out).not.toContain('shelved until');

    const unknown = await cli('operator', '--ack', 'unit-tripped~zone-1~AHU-09~zz');
    expect(unknown.code).toBe(2);
    expect(unknown.err).toContain('unknown alarm');
  }, 60_000);

  it('usage mistakes: exit 2, nothing sent', async () => {
    const r = await cli('operator', '--shelve', 'x~y~z~1');
    expect(r.code).toBe(2);
    expect(r.err).toContain('give --for');
    expect((await cli('operator', '--ack', 'a~b~c~1', '--shelve', 'a~b~c~1', '--for', '1h')).code).toBe(2);
    expect(parseDurationS('90')).toBe(90);
    expect(parseDurationS('15m')).toBe(900);
    expect(parseDurationS('1.5h')).toBe(5400);
    expect(() => parseDurationS('30s')).toThrow(/1 minute to 24 hours/);
    expect(() => parseDurationS('2d')).toThrow(/such as/);
  }, 30_000);
});
