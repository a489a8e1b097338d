// The state cache over real loopback TLS sockets, several nodes in one process: broadcast,
// versioning against stale writers, anti-entropy for a node that joins late, big rows in chunks,
// and refusal of peers that are not ours.
import { createHash, randomBytes } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { BlackholeProxy } from '../../scripts/lib/blackhole-proxy.ts';
import { encodeFrame, FrameType } from '../../src/cache/frames.ts';
import { StateCache } from '../../src/cache/state-cache.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const SECRET = randomBytes(32);
const live: StateCache[] = [];
const proxies: BlackholeProxy[] = [];

interface Node {
  cache: StateCache;
  registry: Registry;
  url: string;
}

async function node(
  name: string,
  opts: { secret?: Buffer; cluster?: string; idleTimeoutMs?: number; bulkBytesPerS?: number } = {},
): Promise<Node> {
  const registry = new Registry();
  const cache = new StateCache({
    node: name,
    cluster: opts.cluster ?? '/coolctl/test',
    secret: opts.secret ?? SECRET,
    listen: { host: '127.0.0.1', port: 0 },
    logger: quietLogger,
    registry,
    pingIntervalMs: 100,
    idleTimeoutMs: opts.idleTimeoutMs ?? 600,
    ...(opts.bulkBytesPerS ? { bulkBytesPerS: opts.bulkBytesPerS } : {}),
  });
  await cache.start();
  live.push(cache);
  return { cache, registry, url: `tcp://127.0.0.1:${cache.port}` };
}

function mesh(nodes: Node[]): void {
  const members = nodes.map((n) => ({ node: n.cache.node, peerUrl: n.url }));
  for (const n of nodes) n.cache.setMembers(members);
}

async function counter(n: Node, name: string, labels: Record<string, string>): Promise<number> {
  const m = await n.registry.getSingleMetric(name)?.get();
  const v = m?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
  return v?.value ?? 0;
}

async function allUp(nodes: Node[]): Promise<void> {
  await waitFor('every peer link up', () =>
    nodes.every((n) => n.cache.peers().length === nodes.length - 1 && n.cache.peers().every((p) => p.up)),
  );
}

afterEach(async () => {
  await Promise.all(live.splice(0).map((c) => c.stop()));
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});

describe('state cache', () => {
  it('broadcasts a leader’s row to every member, which acknowledge it', async () => {
    const nodes = [await node('a'), await node('b'), await node('c')];
    mesh(nodes);
    await allUp(nodes);
    const replicated = new Promise<number>((r) => nodes[0]!.cache.once('replicated', (_g, ms) => r(ms)));
    nodes[0]!.cache.write('g1', 10, { fanPct: 62.5 });
    for (const n of nodes.slice(1)) {
      await waitFor(
        `${n.cache.node} caches g1`,
        () => n.cache.value<{ fanPct: number }>('g1')?.state.fanPct === 62.5,
      );
      expect(n.cache.get('g1')).toMatchObject({ epoch: 10, seq: 1, writer: 'a' });
    }
    expect(await replicated).toBeGreaterThan(0);
    nodes[0]!.cache.write('g1', 10, { fanPct: 63 });
    await waitFor('seq 2 everywhere', () => nodes.every((n) => n.cache.get('g1')?.seq === 2));
  });

  it('ignores a stale leader’s late row after a netsplit heals, and counts it', async () => {
    // a led g1 (epoch 10) and reaches c through a link we can cut; b leads after a netsplit (epoch 20).
    const c = await node('c');
    const b = await node('b');
    const a = await node('a', { idleTimeoutMs: 30_000 });
    const cut = await BlackholeProxy.start({ target: { host: '127.0.0.1', port: c.cache.port } });
    proxies.push(cut);
    a.cache.setMembers([{ node: 'c', peerUrl: `tcp://${cut.address}` }]);
    mesh([b, c]);
    await allUp([b, c]);
    await waitFor('a reaches c', () => a.cache.peers()[0]?.up);
    a.cache.write('g1', 10, { fanPct: 80 });
    await waitFor('c has a’s row', () => c.cache.get('g1')?.writer === 'a');

    cut.blackhole();
    b.cache.write('g1', 20, { fanPct: 40 });
    await waitFor('c has b’s row', () => c.cache.get('g1')?.epoch === 20);
    // a does not know yet: its write goes out and is held in the partition…
    expect(a.cache.write('g1', 10, { fanPct: 99 })).toMatchObject({ epoch: 10, seq: 2 });
    await waitFor('the row is held in the cut link', () => cut.stats.heldBytes > 0);
    cut.heal();
    // …and lands late at c, which ignores it.
    await waitFor(
      'c counted the stale row',
      async () => (await counter(c, 'coolctl_cache_rows_received_total', { result: 'stale' })) >= 1,
    );
    expect(c.cache.value<{ fanPct: number }>('g1')).toMatchObject({
      row: { epoch: 20, seq: 1, writer: 'b' },
      state: { fanPct: 40 },
    });
    // Once a hears of epoch 20 (anti-entropy when c's rows reach it), it cannot write g1 at all.
    c.cache.setMembers([{ node: 'a', peerUrl: a.url }]);
    await waitFor('a learns epoch 20', () => a.cache.get('g1')?.epoch === 20);
    expect(a.cache.write('g1', 10, { fanPct: 99 })).toBeNull();
  });

  it('brings a node that starts late up to date (anti-entropy), and pull() waits for newer rows', async () => {
    const [a, b] = [await node('a'), await node('b')];
    mesh([a!, b!]);
    await allUp([a!, b!]);
    for (let g = 0; g < 50; g++) a!.cache.write(`g${g}`, 5, { g });
    b!.cache.write('gb', 6, { from: 'b' });
    const late = await node('late');
    mesh([a!, b!, late]);
    await waitFor('late has every row', () => late.cache.rowCount === 51);
    expect(late.cache.value('g42')?.state).toEqual({ g: 42 });

    // A pull with nobody to ask returns at once; with peers it returns once newer rows arrived.
    const alone = await node('alone');
    const t0 = performance.now();
    await alone.cache.pull(['g1'], 5000);
    expect(performance.now() - t0).toBeLessThan(1000);
    a!.cache.write('g1', 7, { fresh: true });
    await late.cache.pull(['g1'], 5000);
    expect(late.cache.get('g1')?.epoch).toBe(7);
  });

  it('carries a 10 MB row in chunks, intact, while small rows keep flowing', async () => {
    const [a, b] = [await node('a'), await node('b')];
    mesh([a!, b!]);
    await allUp([a!, b!]);
    const big = randomBytes(10 * 1024 * 1024);
    a!.cache.write('bulk', 3, big);
    a!.cache.write('small', 3, { n: 1 });
    await waitFor('small row arrives', () => b!.cache.get('small')?.seq === 1, { timeoutMs: 5000 });
    await waitFor('big row arrives', () => b!.cache.get('bulk')?.body.length === big.length, {
      timeoutMs: 20_000,
    });
    const digest = (x: Buffer) => createHash('sha256').update(x).digest('hex');
    expect(digest(b!.cache.get('bulk')!.body)).toBe(digest(big));
  });

  it('big rows written faster than the link carries them: transfers complete, the newest row lands last', async () => {
    const [a, b] = [await node('a', { bulkBytesPerS: 8 * 1024 * 1024 }), await node('b')];
    mesh([a!, b!]);
    await allUp([a!, b!]);
    let applied = 0;
    b!.cache.on('row', (r: { group: string }) => {
      if (r.group === 'bulk') applied++;
    });
    // A 1 MB row every 100 ms; 8 MiB/s carries one per ~125 ms, so each write lands mid-transfer.
    const rows = Array.from({ length: 10 }, () => randomBytes(1024 * 1024));
    for (const r of rows) {
      a!.cache.write('bulk', 2, r);
      await new Promise((done) => setTimeout(done, 100)); // the writer's pace, not a wait for state
    }
    await waitFor('the newest row arrives whole', () => b!.cache.get('bulk')?.seq === 10, {
      timeoutMs: 10_000,
    });
    expect(b!.cache.get('bulk')!.body.equals(rows[9]!)).toBe(true);
    // Rows arrived all along, not only the last (restarting transfers would starve the peer).
    expect(applied).toBeGreaterThanOrEqual(4);
  });

  it('refuses a plain TCP client, a wrong secret, another cluster and malformed frames; counts each and keeps working', async () => {
    const [a, b] = [await node('a'), await node('b')];
    mesh([a!, b!]);
    await allUp([a!, b!]);
    const port = a!.cache.port;

    const plain = netConnect(port, '127.0.0.1', () => plain.write('GET / HTTP/1.1\r\n\r\n'));
    plain.on('error', () => {});
    const wrong = await node('b2', { secret: randomBytes(32) });
    wrong.cache.setMembers([{ node: 'a', peerUrl: a!.url }]);
    const other = await node('b3', { cluster: '/coolctl/other' });
    other.cache.setMembers([{ node: 'a', peerUrl: a!.url }]);
    await waitFor(
      'auth refusals counted',
      async () => (await counter(a!, 'coolctl_cache_rejects_total', { reason: 'auth' })) >= 3,
    );
    expect(wrong.cache.peers()[0]?.up).toBe(false);

    // An authenticated peer that sends garbage after its HELLO: refused as malformed, link closed.
    const { createHmac } = await import('node:crypto');
    const psk = createHmac('sha256', SECRET).update('coolctl peer channel v1 /coolctl/test').digest();
    const evil = tlsConnect({
      port,
      host: '127.0.0.1',
      ciphers: 'PSK-AES256-GCM-SHA384',
      maxVersion: 'TLSv1.2',
      pskCallback: () => ({ psk, identity: 'evil' }),
      checkServerIdentity: () => undefined,
    });
    evil.on('error', () => {});
    evil.resume(); // read, so the server's close is seen
    const closed = new Promise<void>((r) => evil.on('close', () => r()));
    evil.on('secureConnect', () => {
      evil.write(encodeFrame(FrameType.HELLO, { v: 1, node: 'evil', cluster: '/coolctl/test' }));
      evil.write(encodeFrame(FrameType.ROW, { group: 'g1', epoch: 'x' }, Buffer.from('{}')));
    });
    await closed;
    await waitFor(
      'malformed counted',
      async () => (await counter(a!, 'coolctl_cache_rejects_total', { reason: 'malformed' })) >= 1,
    );
    expect(a!.cache.get('g1')).toBeUndefined();

    // …and the real peers still replicate.
    b!.cache.write('g9', 4, { ok: true });
    await waitFor('a still receives', () => a!.cache.get('g9')?.epoch === 4);
  });

  it('answers failsafe pings with its responder, and reports a silent peer', async () => {
    const [a, b] = [await node('a'), await node('b')];
    mesh([a!, b!]);
    await allUp([a!, b!]);
    b!.cache.setFailsafeResponder((from, groups, windowMs) => ({
      ok: from === 'a' && groups[0]?.group === 'g1' && windowMs === 2000,
      reason: 'promised',
    }));
    const res = await a!.cache.failsafePing(['b', 'nobody'], [{ group: 'g1', epoch: 3 }], 2000, 500);
    expect(res.get('b')).toEqual({ ok: true, reason: 'promised' });
    expect(res.get('nobody')).toEqual({ ok: false, reason: 'no peer link' });
  });
});
