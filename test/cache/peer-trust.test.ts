// Trust on the peer channel, over real loopback TLS links, several nodes in one process:
// (1) with per-pair keys a PSK identity is bound to its node — a member that presents another
// member's name fails the handshake (with the shared secret alone it would get in);
// (2) a row is applied only when the receiver's leadership view backs its writer at its epoch — a
// member cannot plant state for a group it does not lead, nor a far-future epoch that would shadow
// every real row — while the leader's rows, and a predecessor's after a handover, go through.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { pairKey } from '../../src/cache/peer-channel.ts';
import { type LeaderView, StateCache } from '../../src/cache/state-cache.ts';
import { loadControllerConfig } from '../../src/config/controller-config.ts';
import type { ConfigError } from '../../src/errors.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const CLUSTER = '/coolctl/trust';
const MASTER = randomBytes(32);
const live: StateCache[] = [];

interface Node {
  cache: StateCache;
  registry: Registry;
  url: string;
}

/** This node's keys with each of `names`, as scripts/peer-keys.ts writes them. */
function keysOf(node: string, names: string[], master = MASTER): Map<string, Buffer> {
  return new Map(names.filter((n) => n !== node).map((n) => [n, pairKey(master, CLUSTER, node, n)]));
}

async function start(
  name: string,
  opts: { peerKeys?: Map<string, Buffer>; secret?: Buffer; view?: LeaderView },
): Promise<Node> {
  const registry = new Registry();
  const cache = new StateCache({
    node: name,
    cluster: CLUSTER,
    ...(opts.secret ? { secret: opts.secret } : {}),
    ...(opts.peerKeys ? { peerKeys: opts.peerKeys } : {}),
    listen: { host: '127.0.0.1', port: 0 },
    logger: quietLogger,
    registry,
    pingIntervalMs: 100,
    idleTimeoutMs: 600,
  });
  if (opts.view) cache.setLeaderView(opts.view);
  await cache.start();
  live.push(cache);
  return { cache, registry, url: `tcp://127.0.0.1:${cache.port}` };
}

async function counter(n: Node, name: string, labels: Record<string, string>): Promise<number> {
  const m = await n.registry.getSingleMetric(name)?.get();
  return m?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l))?.value ?? 0;
}

afterEach(async () => {
  await Promise.all(live.splice(0).map((c) => c.stop()));
});

describe('peer channel trust', () => {
  it('with pair keys, a member presenting another member’s name is refused in the handshake', async () => {
    const names = ['a', 'b', 'c'];
    const a = await start('a', { peerKeys: keysOf('a', names) });
    const b = await start('b', { peerKeys: keysOf('b', names) });
    // c holds its own keys (with a and with b) and claims to be b when it dials a.
    const cKeys = keysOf('c', names);
    const impostor = await start('b', { peerKeys: new Map([['a', cKeys.get('a')!]]) });
    a.cache.setMembers([{ node: 'b', peerUrl: b.url }]);
    b.cache.setMembers([{ node: 'a', peerUrl: a.url }]);
    await waitFor('a ⇄ b up', () => a.cache.peers()[0]?.up && b.cache.peers()[0]?.up);
    impostor.cache.setMembers([{ node: 'a', peerUrl: a.url }]);
    await waitFor(
      'the impostor refused (auth) at a',
      async () => (await counter(a, 'coolctl_cache_rejects_total', { reason: 'auth' })) >= 1,
    );
    expect(impostor.cache.peers()[0]?.up).toBe(false);
    expect(a.cache.peers()[0]?.up).toBe(true);
  });

  it('with the shared secret only, the same impostor gets in (why pair keys exist)', async () => {
    const secret = randomBytes(32);
    const a = await start('a', { secret });
    const impostor = await start('b', { secret });
    impostor.cache.setMembers([{ node: 'a', peerUrl: a.url }]);
    await waitFor('the impostor is up as b', () => impostor.cache.peers()[0]?.up);
  });

  it('applies a row only from the node that leads its group at its epoch', async () => {
    const names = ['leader', 'member', 'rogue', 'observer'];
    // Every node's leadership view: g1 led by `leader` at epoch 10, then (after a handover) by
    // `member` at epoch 20.
    let g1 = { leader: 'leader', epoch: 10 };
    const view: LeaderView = (group) => (group === 'g1' ? g1 : { leader: null, epoch: null });
    const nodes = await Promise.all(names.map((n) => start(n, { peerKeys: keysOf(n, names), view })));
    const [leader, member, rogue, observer] = nodes as [Node, Node, Node, Node];
    const members = nodes.map((n) => ({ node: n.cache.node, peerUrl: n.url }));
    for (const n of nodes) n.cache.setMembers(members);
    await waitFor('every link up', () =>
      nodes.every((n) => n.cache.peers().length === 3 && n.cache.peers().every((p) => p.up)),
    );
    const refused = () => counter(observer, 'coolctl_cache_rows_received_total', { result: 'not-leader' });

    leader.cache.write('g1', 10, { integral: 1 });
    await waitFor('the leader’s row applied', () => observer.cache.get('g1')?.seq === 1);

    // A member that does not lead g1: same epoch, then a far-future one that would shadow every real row.
    rogue.cache.write('g1', 10, { integral: 666 });
    await waitFor('refused: not the leader at epoch 10', async () => (await refused()) === 1);
    rogue.cache.write('g1', 1_000_000, { integral: 666 });
    await waitFor('refused: an epoch the view does not know', async () => (await refused()) === 2);
    expect(observer.cache.get('g1')).toMatchObject({ writer: 'leader', epoch: 10, seq: 1 });

    // The leader's next row still goes through.
    leader.cache.write('g1', 10, { integral: 2 });
    await waitFor('the leader’s second row applied', () => observer.cache.get('g1')?.seq === 2);

    // Handover: the member now leads at epoch 20; its rows go through.
    g1 = { leader: 'member', epoch: 20 };
    member.cache.write('g1', 20, { integral: 3 });
    await waitFor('the new leader’s row applied', () => observer.cache.get('g1')?.writer === 'member');
    expect(observer.cache.get('g1')).toMatchObject({ epoch: 20 });
    expect(await refused()).toBe(2);
    expect(await counter(observer, 'coolctl_cache_rejects_total', { reason: 'not-leader' })).toBe(2);
  });

  it('scripts/peer-keys.ts writes each node its own pair keys; the config loads them, and names a missing peer', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coolctl-peer-keys-'));
    try {
      await writeFile(join(dir, 'master'), `${MASTER.toString('hex')}\n`, { mode: 0o600 });
      const run = spawnSync(
        process.execPath,
        [
          'scripts/peer-keys.ts',
          '--master',
          join(dir, 'master'),
          '--cluster',
          CLUSTER,
          '--out',
          dir,
          'n1',
          'n2',
          'n3',
        ],
        { encoding: 'utf8', timeout: 20_000 },
      );
      expect(run.status, run.stderr).toBe(0);
      expect((await stat(join(dir, 'n1.peer-keys'))).mode & 0o777).toBe(0o600);
      const nodes = {
        n1: { api: '127.0.0.1:1', peer: '127.0.0.1:2' },
        n2: { api: '127.0.0.1:3', peer: '127.0.0.1:4' },
        n3: { api: '127.0.0.1:5', peer: '127.0.0.1:6' },
      };
      const config = async (keys: string) => {
        const file = join(dir, 'controller.yaml');
        await writeFile(
          file,
          stringify({
            site: resolve('config/demo-site.yaml'),
            cluster: { etcd: ['http://127.0.0.1:2379'], prefix: CLUSTER, peerKeysFile: keys },
            nodes,
          }),
        );
        return file;
      };
      const master = Buffer.from(MASTER.toString('hex'));
      const cfg = await loadControllerConfig(await config('n1.peer-keys'), 'n1');
      expect(cfg.secret).toBeUndefined();
      expect(cfg.peerKeys?.get('n2')).toEqual(pairKey(master, CLUSTER, 'n1', 'n2'));
      expect(cfg.peerKeys?.get('n3')).toEqual(pairKey(master, CLUSTER, 'n1', 'n3'));
      expect(cfg.peerKeys?.has('n1')).toBe(false);
      // n2's file does not hold n1's key with n3: what n1 holds, n2 cannot derive.
      expect(
        (await readFile(join(dir, 'n2.peer-keys'), 'utf8')).includes(
          pairKey(master, CLUSTER, 'n1', 'n3').toString('hex'),
        ),
      ).toBe(false);

      const partial = (await readFile(join(dir, 'n1.peer-keys'), 'utf8'))
        .split('\n')
        .filter((l) => !l.startsWith('n3'))
        .join('\n');
      // Mode 0600, as scripts/peer-keys.ts writes them: the config refuses a key file others can read.
      await writeFile(join(dir, 'partial.peer-keys'), partial, { mode: 0o600 });
      const err = (await loadControllerConfig(await config('partial.peer-keys'), 'n1').catch(
        (e: unknown) => e,
      )) as ConfigError;
      expect(err.message).toContain('has no key for n3');
      expect(err.message).not.toMatch(/[0-9a-f]{64}/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
