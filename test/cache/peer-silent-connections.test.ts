// Connections to the peer channel that never get past HELLO — plain TCP that sends nothing, or a
// TLS handshake begun and stalled — must not pile up on a node (each is a descriptor the whole
// process shares) nor keep a real peer out (src/cache/peer-channel.ts): with 1 000 of them opened
// inside the handshake timeout, the node holds at most MAX_UNPROVEN_PEER_CONNECTIONS, counts the
// rest as `crowded-out`, and a peer still links up and syncs; a link past HELLO is never displaced.
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_UNPROVEN_PEER_CONNECTIONS } from '../../src/cache/peer-channel.ts';
import { StateCache } from '../../src/cache/state-cache.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const SECRET = randomBytes(32);
const CLUSTER = '/coolctl/silent';
const FLOOD = 1_000;
const live: StateCache[] = [];
const sockets: Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(live.splice(0).map((c) => c.stop()));
});

async function node(name: string) {
  const registry = new Registry();
  const cache = new StateCache({
    node: name,
    cluster: CLUSTER,
    secret: SECRET,
    listen: { host: '127.0.0.1', port: 0 },
    logger: quietLogger,
    registry,
    pingIntervalMs: 100,
    idleTimeoutMs: 2_000,
    // Long enough that none of the flood is cut by the handshake timeout while the test looks.
    connectTimeoutMs: 30_000,
  });
  await cache.start();
  live.push(cache);
  return { cache, registry, url: `tcp://127.0.0.1:${cache.port}` };
}

async function rejects(registry: Registry, reason: string): Promise<number> {
  const m = await registry.getSingleMetric('coolctl_cache_rejects_total')?.get();
  return m?.values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

/** A connection that sends `bytes` (or nothing) once connected, and whether the node closed it. */
function silent(port: number, bytes?: Buffer) {
  const s = connect({ host: '127.0.0.1', port });
  sockets.push(s);
  const got = { closed: false };
  s.on('error', () => {});
  s.on('close', () => {
    got.closed = true;
  });
  const connected = new Promise<void>((resolve) =>
    s.once('connect', () => {
      if (bytes) s.write(bytes);
      resolve();
    }),
  );
  return { got, connected };
}

describe('peer channel connections that never get past HELLO', () => {
  it(`${FLOOD} silent or stalled handshakes: the node holds at most ${MAX_UNPROVEN_PEER_CONNECTIONS}, a linked peer keeps its link, a new peer links up and syncs`, async () => {
    const [a, b, c] = [await node('a'), await node('b'), await node('c')];
    a.cache.setMembers([{ node: 'b', peerUrl: b.url }]);
    b.cache.setMembers([{ node: 'a', peerUrl: a.url }]);
    await waitFor('a ⇄ b up', () => a.cache.peers()[0]?.up && b.cache.peers()[0]?.up);
    // Half send nothing; half a TLS record header promising a ClientHello that never comes.
    const flood: ReturnType<typeof silent>[] = [];
    for (let i = 0; i < FLOOD; i++) {
      const f = silent(a.cache.port, i % 2 ? Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]) : undefined);
      flood.push(f);
      if (i % 100 === 99) await Promise.all(flood.slice(-100).map((x) => x.connected));
    }
    await Promise.all(flood.map((x) => x.connected));
    await waitFor(
      `the node holds at most ${MAX_UNPROVEN_PEER_CONNECTIONS} of them`,
      () => flood.filter((f) => !f.got.closed).length <= MAX_UNPROVEN_PEER_CONNECTIONS,
      { timeoutMs: 5_000 },
    );
    expect(await rejects(a.registry, 'crowded-out')).toBeGreaterThanOrEqual(
      FLOOD - MAX_UNPROVEN_PEER_CONNECTIONS,
    );
    // Each crowded-out connection is counted once, not again as a failed handshake.
    expect(await rejects(a.registry, 'auth')).toBe(0);
    // b's link, past HELLO, was never displaced: a's row reaches b over it.
    expect(a.cache.peers()[0]?.up && b.cache.peers()[0]?.up).toBe(true);
    a.cache.write('g1', 3, { fanPct: 40 });
    await waitFor('b caches a’s row', () => b.cache.get('g1')?.seq === 1);
    // A peer that dials in now links up and is brought up to date.
    c.cache.setMembers([{ node: 'a', peerUrl: a.url }]);
    a.cache.setMembers([
      { node: 'b', peerUrl: b.url },
      { node: 'c', peerUrl: c.url },
    ]);
    await waitFor('c linked to a', () => c.cache.peers()[0]?.up, { timeoutMs: 5_000 });
    await waitFor('c has a’s row', () => c.cache.get('g1')?.epoch === 3, { timeoutMs: 5_000 });
  }, 30_000);
});
