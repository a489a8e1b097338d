// The API's server on a real socket (127.0.0.1): a request whose body trickles in is cut off once
// the request bound has passed, however steadily bytes arrive, with a 408 in the error contract, and
// so is a connection that sends nothing; a keep-alive connection idle between requests for longer
// than that bound is not; once the cap is held by connections that have been served, connections
// over it are closed as they come, and counted (silent ones give way: silent-connections.test.ts).
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { CONNECTION_LIMITS, IDLE_DISPLACE_AFTER_MS } from '../../src/api/connection-limits.ts';
import { waitFor } from '../helpers.ts';
import { type ApiNode, apiNode } from './api-node.ts';

const open: ApiNode[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const n of open.splice(0)) await n.close();
});

/** A raw client: what it received, and when it closed (ms after `since`). */
function rawClient(port: number, localAddress = '127.0.0.1') {
  const s = connect({ host: '127.0.0.1', port, localAddress });
  sockets.push(s);
  const got = { text: '', closedAt: null as number | null };
  const since = performance.now();
  s.setEncoding('utf8');
  s.on('data', (d: string) => {
    got.text += d;
  });
  s.on('error', () => {});
  s.on('close', () => {
    got.closedAt = performance.now() - since;
  });
  const connected = new Promise<void>((resolve) => s.once('connect', () => resolve()));
  return { s, got, connected };
}

async function listen(n: ApiNode): Promise<number> {
  await n.app.listen({ host: '127.0.0.1', port: 0 });
  const a = n.app.server.address();
  if (!a || typeof a === 'string') throw new Error('no port');
  return a.port;
}

describe('API connection limits', () => {
  it('ships bounds for a request, an idle connection and the number of connections', async () => {
    const n = await apiNode();
    open.push(n);
    const s = n.app.server;
    expect(s.requestTimeout).toBe(CONNECTION_LIMITS.requestMs);
    expect(s.headersTimeout).toBe(CONNECTION_LIMITS.requestMs);
    expect(s.keepAliveTimeout).toBe(CONNECTION_LIMITS.keepAliveMs);
    expect(s.timeout).toBe(CONNECTION_LIMITS.idleMs);
    expect(CONNECTION_LIMITS.maxConnections).toBe(512);
    // The dashboard polls every 1.5 s: its connections are kept between polls; a switchover (at
    // most 60 s) is answered before its silent connection is cut.
    expect(CONNECTION_LIMITS.keepAliveMs).toBeGreaterThan(10_000);
    expect(CONNECTION_LIMITS.idleMs).toBeGreaterThan(60_000);
    expect(CONNECTION_LIMITS.requestMs).toBeLessThanOrEqual(10_000);
    // At the cap an idle keep-alive gives way after three polls' worth, long before its keep-alive ends.
    expect(IDLE_DISPLACE_AFTER_MS).toBeGreaterThanOrEqual(3 * 1_500);
    expect(IDLE_DISPLACE_AFTER_MS).toBeLessThan(CONNECTION_LIMITS.keepAliveMs / 10);
  });

  it('cuts a body that trickles in, or none at all, once the request bound passes; a keep-alive connection idle as long is kept', async () => {
    const n = await apiNode();
    open.push(n);
    const port = await listen(n);
    const { requestMs, checkEveryMs } = CONNECTION_LIMITS;
    // A keep-alive client: one request now, the next after the slow one is cut.
    const keep = rawClient(port);
    await keep.connected;
    const get = `GET /api/v1/cluster HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${n.auth.as('viewer').authorization}\r\n\r\n`;
    keep.s.write(get);
    await waitFor('the first answer on the keep-alive connection', () => keep.got.text.includes('"groups"'));
    // A client that connects and sends nothing.
    const mute = rawClient(port);
    await mute.connected;
    // The slow client: authenticated, a body of 64 bytes announced, one byte every 400 ms.
    const slow = rawClient(port);
    await slow.connected;
    slow.s.write(
      `POST /api/v1/groups/zone-1/pause HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${n.auth.as('operator').authorization}\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n{`,
    );
    const drip = setInterval(() => {
      if (!slow.s.destroyed) slow.s.write(' ');
    }, 400);
    try {
      await waitFor('the slow request cut off', () => slow.got.closedAt !== null, {
        timeoutMs: requestMs + checkEveryMs + 5_000,
      });
    } finally {
      clearInterval(drip);
    }
    expect(slow.got.closedAt!).toBeGreaterThanOrEqual(requestMs - 100);
    expect(slow.got.closedAt!).toBeLessThan(requestMs + checkEveryMs + 2_000);
    expect(slow.got.text).toMatch(/^HTTP\/1\.1 408 /);
    expect(slow.got.text).toContain('"error":"COOLCTL_E_BAD_REQUEST"');
    expect(n.cluster.operators.get('zone-1')?.paused ?? false).toBe(false);
    await waitFor('the mute connection cut off', () => mute.got.closedAt !== null, { timeoutMs: 5_000 });
    expect(mute.got.closedAt!).toBeLessThan(requestMs + checkEveryMs + 2_000);
    expect(mute.got.text).toMatch(/^HTTP\/1\.1 408 /);
    expect(await n.count('coolctl_api_requests_refused_total', { route: 'connection' })).toBe(2);
    expect(
      n.lines.some((l) => l.msg === 'request refused' && l.route === 'connection' && l.status === 408),
    ).toBe(true);
    // Idle for longer than the request bound, the keep-alive connection still answers.
    expect(keep.got.closedAt).toBeNull();
    const answered = keep.got.text.length;
    keep.s.write(get);
    await waitFor('the second answer on the keep-alive connection', () =>
      keep.got.text.slice(answered).includes('"groups"'),
    );
    expect(keep.got.text.slice(answered)).toMatch(/^HTTP\/1\.1 200 /);
  });

  it('closes connections over a cap held by served ones as they come, and counts them', async () => {
    const n = await apiNode({ limits: { maxConnections: 4 } });
    open.push(n);
    const port = await listen(n);
    // Two hosts, each with its share (half the cap) of keep-alive connections served with an
    // identity (one only ever served public routes gives way: silent-connections.test.ts).
    const held = [];
    for (let i = 0; i < 4; i++) {
      const c = rawClient(port, i % 2 ? '127.0.0.2' : '127.0.0.1');
      await c.connected;
      c.s.write(
        `GET /api/v1/cluster HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${n.auth.as('viewer').authorization}\r\n\r\n`,
      );
      await waitFor('an answer on a held connection', () => c.got.text.includes('"groups"'));
      held.push(c);
    }
    const connections = () =>
      new Promise<number>((resolve, reject) =>
        n.app.server.getConnections((err, k) => (err ? reject(err) : resolve(k))),
      );
    await waitFor('the server holds 4 connections', async () => (await connections()) === 4);
    const over = rawClient(port, '127.0.0.3');
    await waitFor('the fifth connection closed', () => over.got.closedAt !== null);
    expect(over.got.text).toBe('');
    expect(held.every((c) => c.got.closedAt === null)).toBe(true);
    expect(await n.count('coolctl_api_requests_refused_total', { route: 'connection' })).toBe(1);
    expect(
      n.lines.some((l) => l.msg === 'request refused' && l.route === 'connection' && l.status === 503),
    ).toBe(true);
    // One held connection goes: a new one is served.
    held[0]!.s.destroy();
    await waitFor('the server holds 3 connections', async () => (await connections()) === 3);
    const next = rawClient(port);
    await next.connected;
    next.s.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    await waitFor('an answer on a connection under the cap', () => next.got.closedAt !== null);
    expect(next.got.text).toMatch(/^HTTP\/1\.1 200 /);
  });
});
