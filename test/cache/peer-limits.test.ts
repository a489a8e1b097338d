// What one peer — hostile, stuck, or merely holding a big cache — can do to a node over the peer
// channel, and what it must not: crash it (a list too long for one frame, an exception in a frame's
// handler), grow its memory without end (chunked rows never finished, replies it never reads), or
// hold a link open without ever completing a frame. Real loopback TLS links; several nodes and
// hand-written peers (fixtures/raw-peer.ts) in one process. An uncaught exception anywhere fails
// the file (vitest.config.ts), so "the node survives" is checked by every test here.
import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeFrame, type Frame, FrameType, MAX_HEADER_BYTES } from '../../src/cache/frames.ts';
import { type LeaderView, StateCache, type StateCacheOptions } from '../../src/cache/state-cache.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { RawPeer, type RawPeerOptions } from './fixtures/raw-peer.ts';

const SECRET = randomBytes(32);
const CLUSTER = '/coolctl/limits';
const MiB = 1024 * 1024;
const live: StateCache[] = [];
const raws: RawPeer[] = [];

interface Node {
  cache: StateCache;
  registry: Registry;
  url: string;
}

async function node(name: string, opts: Partial<StateCacheOptions> = {}, view?: LeaderView): Promise<Node> {
  const registry = new Registry();
  const cache = new StateCache({
    node: name,
    cluster: CLUSTER,
    secret: SECRET,
    listen: { host: '127.0.0.1', port: 0 },
    logger: quietLogger,
    registry,
    pingIntervalMs: 100,
    idleTimeoutMs: 600,
    ...opts,
  });
  if (view) cache.setLeaderView(view);
  await cache.start();
  live.push(cache);
  return { cache, registry, url: `tcp://127.0.0.1:${cache.port}` };
}

async function raw(n: Node, opts: Partial<RawPeerOptions> = {}): Promise<RawPeer> {
  const p = await RawPeer.connect({
    port: n.cache.port,
    secret: SECRET,
    cluster: CLUSTER,
    name: 'evil',
    ...opts,
  });
  raws.push(p);
  await waitFor(
    `${n.cache.node} accepted ${opts.name ?? 'evil'}`,
    () => opts.read === false || p.of(FrameType.HELLO).length > 0,
  );
  return p;
}

function mesh(nodes: Node[]): void {
  const members = nodes.map((n) => ({ node: n.cache.node, peerUrl: n.url }));
  for (const n of nodes) n.cache.setMembers(members);
}

async function allUp(nodes: Node[]): Promise<void> {
  await waitFor('every peer link up', () => nodes.every((n) => n.cache.peers().every((p) => p.up)));
}

async function count(n: Node, metric: string, label: string, value: string): Promise<number> {
  const m = await n.registry.getSingleMetric(metric)?.get();
  return m?.values.find((x) => x.labels[label] === value)?.value ?? 0;
}
const rejects = (n: Node, reason: string) => count(n, 'coolctl_cache_rejects_total', 'reason', reason);
const received = (n: Node, result: string) => count(n, 'coolctl_cache_rows_received_total', 'result', result);

/** Realistic group names of ~30 characters. */
const group = (i: number) =>
  `hall-a.row-${String(i % 40).padStart(2, '0')}.zone-${String(i).padStart(5, '0')}`;

/** Frames written as fast as the node takes them; a bounded wait when its socket is full. */
async function writeAll(p: RawPeer, frames: Iterable<Buffer>): Promise<void> {
  for (const f of frames) {
    if (p.isClosed) return;
    if (!p.socket.write(f))
      await Promise.race([new Promise((r) => p.socket.once('drain', r)), p.closed, delay(2000)]);
  }
}

function* times<T>(n: number, make: (i: number) => T): Generator<T> {
  for (let i = 0; i < n; i++) yield make(i);
}

/** Every frame the node sent so far has been read: it answers a PING after them. */
async function roundTrip(p: RawPeer): Promise<void> {
  const before = p.of(FrameType.PONG).length;
  p.send(FrameType.PING, {});
  await waitFor('a PONG', () => p.of(FrameType.PONG).length > before);
}

afterEach(async () => {
  for (const p of raws.splice(0)) p.close();
  await Promise.all(live.splice(0).map((c) => c.stop()));
});

describe('lists longer than one frame', () => {
  it('two nodes of 10 000 groups mesh and converge both ways; a late node pulls every group at once', async () => {
    const a = await node('a', { idleTimeoutMs: 5000 });
    const b = await node('b', { idleTimeoutMs: 5000 });
    // a holds every group; b holds the upper half, newer, and none of the lower half.
    for (let i = 0; i < 10_000; i++) a.cache.write(group(i), 5, { i });
    for (let i = 5_000; i < 10_000; i++) b.cache.write(group(i), 9, { i, from: 'b' });
    mesh([a, b]);
    const converged = (n: Node) =>
      n.cache.rowCount === 10_000 &&
      Array.from({ length: 10_000 }, (_, i) => i).every(
        (i) => n.cache.get(group(i))?.epoch === (i < 5_000 ? 5 : 9),
      );
    await waitFor('both hold every group at its newest version', () => converged(a) && converged(b), {
      timeoutMs: 20_000,
      intervalMs: 100,
    });
    await allUp([a, b]);

    const late = await node('late', { idleTimeoutMs: 5000 });
    late.cache.setMembers([{ node: 'a', peerUrl: a.url }]);
    await waitFor('late reaches a', () => late.cache.peers()[0]?.up);
    const all = Array.from({ length: 10_000 }, (_, i) => group(i));
    const t0 = performance.now();
    await late.cache.pull(all, 15_000);
    // Every page answered and every row it announced arrived: the pull did not run out its time.
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(late.cache.rowCount).toBe(10_000);
    expect(late.cache.get(group(9_999))?.epoch).toBe(9);
  });

  it('a failsafe ping for 5 000 groups goes in pages, and the member backs the leader only if it backs them all', async () => {
    const [a, b] = [await node('a'), await node('b')];
    mesh([a, b]);
    await allUp([a, b]);
    const asked: string[] = [];
    b.cache.setFailsafeResponder((_from, groups) => {
      asked.push(...groups.map((g) => g.group));
      return groups.some((g) => g.group === group(4_321))
        ? { ok: false, reason: 'I lead one of them' }
        : { ok: true, reason: 'promised' };
    });
    const groups = Array.from({ length: 5_000 }, (_, i) => ({ group: group(i), epoch: 12_345_678 }));
    const res = await a.cache.failsafePing(['b'], groups, 2000, 2000);
    expect(new Set(asked).size).toBe(5_000);
    expect(res.get('b')).toEqual({ ok: false, reason: 'I lead one of them' });
    asked.length = 0;
    const backed = await a.cache.failsafePing(['b'], groups.slice(0, 4_000), 2000, 2000);
    expect(backed.get('b')).toEqual({ ok: true, reason: 'promised' });
    expect(asked.length).toBe(4_000);
  });

  it('an older release (wire 1: no pages, one SYNC_DONE per SYNC) syncs with a node of 9 000 groups both ways, never past 64 KiB', async () => {
    const fresh = await node('new', { idleTimeoutMs: 5000 });
    for (let i = 0; i < 9_000; i++) fresh.cache.write(group(i), 5, { i });
    // The old release holds 100 of those groups newer, and 100 groups the new node lacks.
    const held = new Map<string, [number, number]>();
    for (let i = 0; i < 100; i++) held.set(group(i), [7, 1]);
    for (let i = 20_000; i < 20_100; i++) held.set(group(i), [7, 1]);
    let wouldCrash: Error | undefined;
    // What a release from before paging does with each frame (state-cache.ts at wire version 1),
    // down to encodeFrame refusing a header over 64 KiB — where that release's process would exit.
    const v1 = (f: Frame, peer: RawPeer): void => {
      try {
        if (f.type === FrameType.HELLO) {
          peer.send(FrameType.SYNC, { id: 0, digest: Object.fromEntries(held) });
        } else if (f.type === FrameType.SYNC) {
          const digest = f.header.digest as Record<string, unknown>;
          const names = (f.header.groups as string[] | undefined) ?? [...held.keys()];
          const sent: [string, number, number][] = [];
          for (const g of names) {
            const v = held.get(g);
            const d = digest[g];
            const theirs = Array.isArray(d) ? (d as [number, number]) : [0, 0];
            if (!v || v[0] < theirs[0]! || (v[0] === theirs[0] && v[1] <= theirs[1]!)) continue;
            const row = { group: g, epoch: v[0], seq: v[1], writer: 'old', atMs: 1, size: 2, off: 0 };
            peer.send(FrameType.ROW, row, Buffer.from('{}'));
            sent.push([g, v[0], v[1]]);
          }
          peer.send(FrameType.SYNC_DONE, { id: f.header.id, rows: sent });
        } else if (f.type === FrameType.ROW) {
          const { group: g, epoch, seq } = f.header as { group: string; epoch: number; seq: number };
          const cur = held.get(g);
          if (!cur || epoch > cur[0] || (epoch === cur[0] && seq > cur[1])) held.set(g, [epoch, seq]);
        } else if (f.type === FrameType.PING) {
          peer.send(FrameType.PONG, {});
        }
      } catch (err) {
        wouldCrash = err as Error;
      }
    };
    const old = await raw(fresh, { name: 'old', onFrame: v1 });
    await waitFor(
      'each side holds the other’s rows',
      () =>
        held.size === 9_100 &&
        fresh.cache.rowCount === 9_100 &&
        fresh.cache.get(group(0))?.epoch === 7 &&
        fresh.cache.get(group(20_099))?.epoch === 7,
      { timeoutMs: 20_000, intervalMs: 100 },
    );
    expect(wouldCrash).toBeUndefined();
    expect(old.readError).toBeUndefined();
    expect(old.maxHeaderBytes).toBeLessThanOrEqual(MAX_HEADER_BYTES);
    // The new node's digest went in pages that name their groups (what wire 1 answers page by page).
    const digests = old.of(FrameType.SYNC).filter((f) => f.header.id === 0);
    expect(digests.length).toBeGreaterThan(1);
    expect(digests.every((f) => Array.isArray(f.header.groups))).toBe(true);
    expect(old.isClosed).toBe(false);
  });
});

describe('a hostile peer', () => {
  const planted = (i: number) => `${'g'.repeat(120)}${String(i).padStart(5, '0')}`;
  const plant = (i: number, size = 2) =>
    encodeFrame(
      FrameType.ROW,
      { group: planted(i), epoch: 1, seq: 1, writer: 'evil', atMs: 1, size, off: 0 },
      Buffer.from('{}'),
    );

  it('cannot plant rows for groups the site does not have; they are refused, counted, and never spread', async () => {
    const victim = await node('victim', { siteGroups: () => ['zone-1'] }, (g) =>
      g === 'zone-1' ? { leader: 'victim', epoch: 5 } : undefined,
    );
    const evil = await raw(victim);
    await writeAll(evil, times(700, plant));
    evil.send(FrameType.SYNC, { id: 1, digest: {} });
    await waitFor('the SYNC answered', () => evil.of(FrameType.SYNC_DONE).some((f) => f.header.id === 1));
    expect(victim.cache.rowCount).toBe(0);
    expect(await received(victim, 'unknown-group')).toBe(700);
    expect(await rejects(victim, 'unknown-group')).toBe(700);
    expect(evil.isClosed).toBe(false);
  });

  it('asking for everything a big cache holds gets SYNC_DONE in pages under 64 KiB, and the link lives on', async () => {
    // No site list (as in a tool or a test): the 700 rows with 125-character names are taken.
    const victim = await node('victim');
    const evil = await raw(victim);
    await writeAll(evil, times(700, plant));
    await waitFor('700 rows planted', () => victim.cache.rowCount === 700);
    evil.send(FrameType.SYNC, { id: 1, digest: {} });
    await waitFor('the last page', () =>
      evil.of(FrameType.SYNC_DONE).some((f) => f.header.id === 1 && f.header.more !== true),
    );
    const pages = evil.of(FrameType.SYNC_DONE).filter((f) => f.header.id === 1);
    expect(pages.length).toBeGreaterThan(1);
    expect(pages.slice(0, -1).every((f) => f.header.more === true)).toBe(true);
    expect(new Set(pages.flatMap((f) => (f.header.rows as [string][]).map((r) => r[0]))).size).toBe(700);
    expect(evil.readError).toBeUndefined();
    expect(evil.maxHeaderBytes).toBeLessThanOrEqual(MAX_HEADER_BYTES);
    await roundTrip(evil);
    expect(evil.isClosed).toBe(false);
  });

  it('an exception while handling its frame closes that link (internal), counted; never the process', async () => {
    const [a, b] = [await node('a'), await node('b')];
    mesh([a, b]);
    await allUp([a, b]);
    b.cache.setFailsafeResponder(() => {
      throw new Error('a bug in the responder');
    });
    const res = await a.cache.failsafePing(['b'], [{ group: 'g1', epoch: 3 }], 2000, 500);
    expect(res.get('b')?.ok).toBe(false);
    await waitFor('the refusal counted', async () => (await rejects(b, 'internal')) >= 1);
    // The link comes back, and the rows go on flowing.
    await allUp([a, b]);
    a.cache.write('g1', 3, { fanPct: 55 });
    await waitFor('b has g1', () => b.cache.get('g1')?.epoch === 3);
  });

  it('starting chunked rows and finishing none holds one row per link, within the node’s budget; a rogue writer’s row is refused before a byte is kept', async () => {
    const victim = await node('victim', { idleTimeoutMs: 5000 }, (g) =>
      g === 'zone-led' ? { leader: 'victim', epoch: 5 } : undefined,
    );
    const evil = await raw(victim);
    const chunk = Buffer.alloc(256 * 1024, 0x41);
    const first = (i: number) =>
      encodeFrame(
        FrameType.ROW,
        { group: `zone-${i}`, epoch: 1, seq: 1, writer: 'evil', atMs: 1, size: 64 * MiB, off: 0 },
        chunk,
      );
    // A row for a group someone else leads: refused at its first chunk.
    evil.send(
      FrameType.ROW,
      { group: 'zone-led', epoch: 5, seq: 1, writer: 'evil', atMs: 1, size: 64 * MiB, off: 0 },
      chunk,
    );
    await roundTrip(evil);
    expect(victim.cache.assemblyBytes).toBe(0);
    expect(await received(victim, 'not-leader')).toBe(1);
    // 200 rows of a declared 64 MiB each, first chunks only (50 MB sent): one in assembly at a time.
    await writeAll(evil, times(200, first));
    await roundTrip(evil);
    expect(victim.cache.assemblyBytes).toBe(64 * MiB);
    // The budget (default: one row of the largest size) is taken: another link's row is refused.
    const other = await raw(victim, { name: 'evil2' });
    other.send(
      FrameType.ROW,
      { group: 'zone-x', epoch: 1, seq: 1, writer: 'evil2', atMs: 1, size: MiB, off: 0 },
      chunk,
    );
    await waitFor('assembly-full counted', async () => (await rejects(victim, 'assembly-full')) >= 1);
    // A link that goes gives its bytes back.
    evil.close();
    await waitFor('the bytes given back', () => victim.cache.assemblyBytes === 0);
  });

  it('a row whose chunks stopped gives its bytes up to one that needs them', async () => {
    const victim = await node('victim', { maxAssemblyBytes: 512 * 1024, idleTimeoutMs: 600 });
    const evil = await raw(victim);
    const chunk = Buffer.alloc(256 * 1024, 0x42);
    const header = (g: string, seq: number, off: number) => ({
      group: g,
      epoch: 1,
      seq,
      writer: 'evil',
      atMs: 1,
      size: 2 * chunk.length,
      off,
    });
    evil.send(FrameType.ROW, header('zone-stalled', 1, 0), chunk);
    await roundTrip(evil);
    expect(victim.cache.assemblyBytes).toBe(2 * chunk.length);
    // Another peer sends whole 2-chunk rows, a newer one every 150 ms (its pace), while the first
    // keeps its link alive and never continues its row.
    const other = await raw(victim, { name: 'honest' });
    for (let seq = 1; seq <= 40 && !victim.cache.get('zone-y'); seq++) {
      other.send(FrameType.ROW, { ...header('zone-y', seq, 0), writer: 'honest' }, chunk);
      other.send(FrameType.ROW, { ...header('zone-y', seq, chunk.length), writer: 'honest' }, chunk);
      evil.send(FrameType.PING, {});
      await delay(150);
    }
    expect(victim.cache.get('zone-y')?.body.length).toBe(2 * chunk.length);
    expect(await rejects(victim, 'assembly-full')).toBeGreaterThanOrEqual(1);
    expect(evil.isClosed).toBe(false);
  });

  it('reading none of our replies gets it cut off: we stop reading it, then close the link (backlog)', async () => {
    const victim = await node('victim');
    const evil = await raw(victim, { read: false });
    const batch = Buffer.concat(Array.from({ length: 6000 }, () => encodeFrame(FrameType.PING, {})));
    const limit = 64 * MiB;
    let sent = 0;
    const deadline = performance.now() + 15_000;
    while (!evil.isClosed && sent < limit && performance.now() < deadline) {
      sent += batch.length;
      if (!evil.socket.write(batch))
        await Promise.race([new Promise((r) => evil.socket.once('drain', r)), evil.closed, delay(200)]);
    }
    await waitFor('backlog counted', async () => (await rejects(victim, 'backlog')) >= 1);
    await evil.closed;
    // It stopped taking our input long before the flood was over.
    expect(sent).toBeLessThan(limit);
  });

  it('a peer that takes our backlog slowly is not cut off while we wait for it', async () => {
    // 8 MB of rows: enough to back up the link, little enough that writing them (in one turn of
    // this process's event loop, shared with the peer) does not outlast the idle timeout itself.
    const ROWS = 250;
    const victim = await node('victim'); // idle timeout 600 ms
    for (let i = 0; i < ROWS; i++) victim.cache.write(`zone-${i}`, 1, randomBytes(32 * 1024));
    const slow = await raw(victim, { name: 'slow' });
    slow.socket.pause(); // reads nothing for now
    // Ask for every row (8 MB into the node's socket), then enough PINGs (660 KB) that their PONGs
    // back up behind the rows and the node stops reading us.
    slow.send(FrameType.SYNC, { id: 0, digest: {} });
    const batch = Buffer.concat(Array.from({ length: 6000 }, () => encodeFrame(FrameType.PING, {})));
    for (let i = 0; i < 10; i++) slow.socket.write(batch);
    // Now read, a few ms in every 200 ms, pinging as a live peer does: for several idle timeouts
    // the node reads nothing from us, but sees its backlog going down.
    const t0 = performance.now();
    while (performance.now() - t0 < 12_000 && slow.of(FrameType.ROW).length < ROWS) {
      slow.socket.resume();
      await delay(1);
      slow.socket.pause();
      slow.send(FrameType.PING, {});
      await delay(200); // the slow reader's pace
    }
    slow.socket.resume();
    await waitFor('every row arrived', () => slow.of(FrameType.ROW).length >= ROWS, { timeoutMs: 15_000 });
    expect(performance.now() - t0).toBeGreaterThan(1_000); // slow indeed: longer than the idle timeout
    await roundTrip(slow);
    expect(await rejects(victim, 'backlog')).toBe(0);
    expect(slow.isClosed).toBe(false);
  });

  it('trickling bytes that never make a frame does not keep a link alive', async () => {
    const victim = await node('victim'); // idle timeout 600 ms
    const evil = await raw(victim);
    const frame = encodeFrame(FrameType.SYNC, { id: 1, digest: {}, pad: 'x'.repeat(80) });
    const t0 = performance.now();
    // One byte per 150 ms (the trickler's pace): well inside the idle timeout, for 17 s if let be.
    for (let i = 0; i < frame.length && !evil.isClosed; i++) {
      evil.socket.write(frame.subarray(i, i + 1));
      await Promise.race([evil.closed, delay(150)]);
    }
    expect(evil.isClosed).toBe(true);
    expect(performance.now() - t0).toBeLessThan(3000);
  });
});
