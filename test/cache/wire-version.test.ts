// Old and new releases side by side on the peer channel (the rolling upgrade's premise): each HELLO
// states the wire versions its node speaks, a link runs at the highest both speak, and a peer with
// none in common is refused with a message that says what to do — counted and logged, never a
// link that half works. Real loopback TLS links, several nodes in one process.
import { randomBytes } from 'node:crypto';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { type LeaderView, StateCache } from '../../src/cache/state-cache.ts';
import { agreedWireVersion, parseWireRange, VERSION, WIRE, type WireRange } from '../../src/version.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const SECRET = randomBytes(32);
const live: StateCache[] = [];

afterEach(async () => {
  await Promise.all(live.splice(0).map((c) => c.stop()));
});

async function start(name: string, wire: WireRange, view?: LeaderView) {
  const registry = new Registry();
  const cache = new StateCache({
    node: name,
    cluster: '/coolctl/wire',
    secret: SECRET,
    wire,
    listen: { host: '127.0.0.1', port: 0 },
    logger: quietLogger,
    registry,
    pingIntervalMs: 100,
    idleTimeoutMs: 600,
  });
  if (view) cache.setLeaderView(view);
  await cache.start();
  live.push(cache);
  return { cache, registry, url: `tcp://127.0.0.1:${cache.port}` };
}

async function helloRejects(registry: Registry): Promise<number> {
  const m = await registry.getSingleMetric('coolctl_cache_rejects_total')?.get();
  return m?.values.find((x) => x.labels.reason === 'hello')?.value ?? 0;
}

describe('wire versions on the peer channel', () => {
  it('a new release (speaks 1..2) and an old one (1 only) link at version 1 and replicate rows', async () => {
    const view: LeaderView = (g) =>
      g === 'g1' ? { leader: 'old', epoch: 7 } : { leader: null, epoch: null };
    const fresh = await start('new', { version: 2, oldest: 1 }, view);
    const old = await start('old', { version: 1, oldest: 1 }, view);
    fresh.cache.setMembers([{ node: 'old', peerUrl: old.url }]);
    old.cache.setMembers([{ node: 'new', peerUrl: fresh.url }]);
    await waitFor('both links up', () => fresh.cache.peers()[0]?.up && old.cache.peers()[0]?.up);
    expect(fresh.cache.peers()[0]).toMatchObject({ wire: 1, release: VERSION });
    expect(old.cache.peers()[0]).toMatchObject({ wire: 1, release: VERSION });
    old.cache.write('g1', 7, { integral: 3.5 });
    await waitFor('the old leader’s row reached the new node', () => fresh.cache.get('g1')?.seq === 1);
  });

  it('two new releases link at the newest version both speak', async () => {
    const a = await start('a', { version: 2, oldest: 1 });
    const b = await start('b', { version: 3, oldest: 2 });
    a.cache.setMembers([{ node: 'b', peerUrl: b.url }]);
    await waitFor('a → b up', () => a.cache.peers()[0]?.up);
    expect(a.cache.peers()[0]?.wire).toBe(2);
  });

  it('releases with no version in common are refused both ways, counted, and told what to do', async () => {
    const old = await start('old', { version: 1, oldest: 1 });
    const far = await start('far', { version: 3, oldest: 2 });
    far.cache.setMembers([{ node: 'old', peerUrl: old.url }]);
    old.cache.setMembers([{ node: 'far', peerUrl: far.url }]);
    await waitFor(
      'both sides refused a HELLO',
      async () => (await helloRejects(old.registry)) >= 1 && (await helloRejects(far.registry)) >= 1,
    );
    expect(far.cache.peers()[0]?.up).toBe(false);
    expect(old.cache.peers()[0]?.up).toBe(false);
    // The dialer sees the refusal on its own side (its check of the acceptor's answer) or the link
    // closed by the acceptor: either way the reason is in the peer's lastError or the counter.
    await waitFor('the old node says why its link to far is down', () =>
      /no wire version in common|closed by peer/.test(old.cache.peers()[0]?.lastError ?? ''),
    );
  });
});

describe('wire version ranges', () => {
  it('agree on the highest common version, or none', () => {
    expect(agreedWireVersion({ version: 2, oldest: 1 }, { version: 1, oldest: 1 })).toBe(1);
    expect(agreedWireVersion({ version: 4, oldest: 2 }, { version: 3, oldest: 1 })).toBe(3);
    expect(agreedWireVersion({ version: 3, oldest: 2 }, { version: 1, oldest: 1 })).toBeNull();
    expect(agreedWireVersion(WIRE, WIRE)).toBe(WIRE.version);
  });

  it('read a peer’s stated range; a release that sent only `v` speaks that version alone', () => {
    expect(parseWireRange(1, undefined)).toEqual({ version: 1, oldest: 1 });
    expect(parseWireRange(3, 2)).toEqual({ version: 3, oldest: 2 });
    for (const [v, min] of [
      [0, undefined],
      ['1', undefined],
      [2, 3],
      [2, 0],
      [1.5, 1],
      [null, null],
    ])
      expect(parseWireRange(v, min)).toBeNull();
  });
});
