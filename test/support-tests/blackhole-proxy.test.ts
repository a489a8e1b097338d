// The blackhole proxy cuts a link the way a partition does: connections stay open, nothing gets
// through either way, new connections are accepted and never answered; healing delivers what was
// held, in order. Tested against a real echo server that counts what reaches it.
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BlackholeProxy } from '../../scripts/lib/blackhole-proxy.ts';
import { waitFor } from '../helpers.ts';

let echo: Server;
let echoPort = 0;
const seen = { connections: 0, bytes: 0, closes: 0 };
const serverSockets = new Set<Socket>();

beforeAll(async () => {
  echo = createServer((s) => {
    seen.connections++;
    serverSockets.add(s);
    s.on('data', (d) => {
      seen.bytes += d.length;
      s.write(d);
    });
    s.on('close', () => {
      seen.closes++;
      serverSockets.delete(s);
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  echoPort = (echo.address() as AddressInfo).port;
});

afterAll(async () => {
  for (const s of serverSockets) s.destroy();
  await new Promise<void>((r) => echo.close(() => r()));
});

const proxies: BlackholeProxy[] = [];
const clients: Socket[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});

async function proxy(): Promise<BlackholeProxy> {
  const p = await BlackholeProxy.start({ target: { host: '127.0.0.1', port: echoPort } });
  proxies.push(p);
  return p;
}

function client(port: number): { sock: Socket; received: () => string; events: string[] } {
  const sock = connect(port, '127.0.0.1');
  clients.push(sock);
  let buf = '';
  const events: string[] = [];
  sock.on('connect', () => events.push('connect'));
  sock.on('data', (d) => {
    buf += d.toString();
  });
  sock.on('end', () => events.push('end'));
  sock.on('close', () => events.push('close'));
  sock.on('error', (e) => events.push(`error:${e.message}`));
  return { sock, received: () => buf, events };
}

/** Lets the event loop and the loopback carry anything in flight (the assertion is that nothing arrives). */
const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('BlackholeProxy', () => {
  it('forwards both ways in pass mode', async () => {
    const p = await proxy();
    const c = client(p.port);
    c.sock.write('hello');
    await waitFor('the echo', () => c.received() === 'hello');
    expect(p.mode).toBe('pass');
    expect(p.stats.bytesUp).toBe(5);
    expect(p.stats.bytesDown).toBe(5);
  });

  it('in blackhole mode keeps an open connection open and forwards nothing either way', async () => {
    const p = await proxy();
    const c = client(p.port);
    c.sock.write('a');
    await waitFor('the first echo', () => c.received() === 'a');
    const bytesBefore = seen.bytes;
    const closesBefore = seen.closes;
    p.blackhole();
    c.sock.write('bcd');
    await settle(300);
    expect(c.received()).toBe('a');
    expect(seen.bytes).toBe(bytesBefore);
    expect(seen.closes).toBe(closesBefore);
    expect(c.events).toEqual(['connect']);
    expect(c.sock.destroyed).toBe(false);
  });

  it('accepts new connections while cut but never answers nor opens the upstream', async () => {
    const p = await proxy();
    p.blackhole();
    const before = seen.connections;
    const c = client(p.port);
    await waitFor('the TCP connect', () => c.events.includes('connect'));
    c.sock.write('ping');
    await settle(300);
    expect(c.received()).toBe('');
    expect(c.events).toEqual(['connect']);
    expect(seen.connections).toBe(before);
    expect(p.stats.accepted).toBe(1);
  });

  it('heal delivers the held bytes in order and connects held connections', async () => {
    const p = await proxy();
    const old = client(p.port);
    old.sock.write('1');
    await waitFor('the first echo', () => old.received() === '1');
    p.blackhole();
    old.sock.write('2');
    old.sock.write('3');
    const fresh = client(p.port);
    await waitFor('the TCP connect', () => fresh.events.includes('connect'));
    fresh.sock.write('x');
    await settle(150);
    expect(old.received()).toBe('1');
    p.heal();
    await waitFor('the held echo', () => old.received() === '123');
    await waitFor('the fresh echo', () => fresh.received() === 'x');
    old.sock.write('4');
    await waitFor('a later echo', () => old.received() === '1234');
  });

  it('a client that gives up on a cut link is not seen upstream until the link heals', async () => {
    const p = await proxy();
    const c = client(p.port);
    c.sock.write('a');
    await waitFor('the first echo', () => c.received() === 'a');
    const closesBefore = seen.closes;
    p.blackhole();
    c.sock.destroy();
    await settle(200);
    expect(seen.closes).toBe(closesBefore);
    p.heal();
    await waitFor('the upstream close after heal', () => seen.closes === closesBefore + 1);
    expect(p.stats.open).toBe(0);
  });

  it('close() drops every connection', async () => {
    const p = await proxy();
    const c = client(p.port);
    c.sock.write('a');
    await waitFor('the echo', () => c.received() === 'a');
    await p.close();
    await waitFor('the client to see the close', () => c.events.includes('close'));
  });

  it('can rewrite client bytes on their way upstream', async () => {
    const p = await BlackholeProxy.start({
      target: { host: '127.0.0.1', port: echoPort },
      clientToUpstream: (b) => Buffer.from(b.toString().toUpperCase()),
    });
    proxies.push(p);
    const c = client(p.port);
    c.sock.write('abc');
    await waitFor('the rewritten echo', () => c.received() === 'ABC');
  });

  it('impaired: delays every chunk either way, in order, and drops chunks whole', async () => {
    const p = await proxy();
    const c = client(p.port);
    c.sock.write('warm');
    await waitFor('the echo', () => c.received() === 'warm');
    p.impair({ delayMs: 150 });
    const sent = performance.now();
    c.sock.write('a');
    await settle(20);
    c.sock.write('b');
    await waitFor('the delayed echo', () => c.received() === 'warmab', { timeoutMs: 3000 });
    // held up and down: about two delays for the round trip
    expect(performance.now() - sent).toBeGreaterThanOrEqual(280);
    p.impair({ dropPct: 100 });
    c.sock.write('lost');
    await settle(100);
    expect(c.received()).toBe('warmab');
    expect(p.stats.droppedChunks).toBe(1);
    p.unimpair();
    c.sock.write('c');
    await waitFor('the echo after recovery', () => c.received() === 'warmabc');
  });

  it('resetAll ends every connection with a TCP reset on both sides', async () => {
    const p = await proxy();
    const c = client(p.port);
    c.sock.write('x');
    await waitFor('the echo', () => c.received() === 'x');
    const closesBefore = seen.closes;
    expect(p.resetAll()).toBe(1);
    await waitFor('the client to see the reset', () => c.events.includes('close'));
    expect(c.events.some((e) => e.includes('ECONNRESET'))).toBe(true);
    await waitFor('the server side to close', () => seen.closes > closesBefore);
    expect(p.stats.resets).toBe(1);
    expect(p.stats.open).toBe(0);
  });
});
