// Clients that connect and never send a whole request — silent, or stalled in the TLS handshake —
// must not keep an operator out of the API's server (src/api/connection-limits.ts): with more of
// them than the cap open, an operator's pause is served at once, and the silent ones closed for it
// are counted; a keep-alive client that has been served keeps its connection; and a host that
// holds its share of connections with real requests leaves the rest to other hosts. Clients that
// were served once and then sit idle give way too, longest idle first, but a connection whose next
// request is still being read (a slow body, headers half sent) is never displaced. Clients without
// an identity that keep asking (each answered 401) prove nothing: they give way to an operator and to
// one another, while a signed-in dashboard's and a scrape's keep-alive connections are kept.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { makeCa, makeLeaf } from '../../scripts/lib/throwaway-pki.ts';
import { buildApp } from '../../src/api/app.ts';
import { ApiTls } from '../../src/api/tls.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { apiAuth } from '../support/api-auth.ts';
import { FakeCluster } from '../support/fake-cluster.ts';
import { type ApiNode, apiNode } from './api-node.ts';

const CAP = 20;
const open: ApiNode[] = [];
const sockets: Socket[] = [];
const dirs: string[] = [];
const closing: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const n of open.splice(0)) await n.close();
  for (const c of closing.splice(0)) await c();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A raw TCP client from `localAddress`: what it received, and whether the server closed it. */
function rawClient(port: number, localAddress = '127.0.0.1') {
  const s = connect({ host: '127.0.0.1', port, localAddress });
  sockets.push(s);
  const got = { text: '', closed: false };
  s.setEncoding('utf8');
  s.on('data', (d: string) => {
    got.text += d;
  });
  s.on('error', () => {});
  s.on('close', () => {
    got.closed = true;
  });
  const connected = new Promise<void>((resolve) => s.once('connect', () => resolve()));
  return { s, got, connected };
}

async function listen(n: ApiNode): Promise<number> {
  await n.app.listen({ host: '127.0.0.1', port: 0 });
  return (n.app.server.address() as { port: number }).port;
}

/** `count` connections that send nothing (or `bytes`, then nothing), each connected. */
async function silent(port: number, count: number, localAddress = '127.0.0.1', bytes?: string) {
  const all = [];
  for (let i = 0; i < count; i++) {
    const c = rawClient(port, localAddress);
    all.push(c);
    await c.connected;
    if (bytes) c.s.write(bytes);
  }
  return all;
}

const pause = (n: ApiNode) =>
  `POST /api/v1/groups/zone-1/pause HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${n.auth.as('operator').authorization}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`;
const clusterGet = (n: ApiNode) =>
  `GET /api/v1/cluster HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${n.auth.as('viewer').authorization}\r\n\r\n`;

/** An operator's pause on a new connection is answered 200 at once (the test's point each time). */
async function operatorPauses(n: ApiNode, port: number): Promise<void> {
  const op = rawClient(port);
  await op.connected;
  op.s.write(pause(n));
  await waitFor('the operator’s pause answered', () => op.got.closed, { timeoutMs: 3_000 });
  expect(op.got.text).toMatch(/^HTTP\/1\.1 200 /);
}

describe('API connections that never send a request', () => {
  it(`${CAP + 100} silent or half-sent connections over a cap of ${CAP}: an operator's pause is served at once, a served keep-alive client keeps its connection`, async () => {
    const n = await apiNode({ limits: { maxConnections: CAP } });
    open.push(n);
    const port = await listen(n);
    // The dashboard: a keep-alive connection that has been answered.
    const keep = rawClient(port);
    await keep.connected;
    keep.s.write(clusterGet(n));
    await waitFor('the first answer on the keep-alive connection', () => keep.got.text.includes('"groups"'));
    // Half send nothing, half the start of a request's headers and then nothing.
    const flood = [
      ...(await silent(port, (CAP + 100) / 2)),
      ...(await silent(port, (CAP + 100) / 2, '127.0.0.1', 'GET /api/v1/cluster HTTP/1.1\r\nHost: x\r\n')),
    ];
    // The operator comes last, well inside the 10 s the silent ones would otherwise hold their slots.
    await operatorPauses(n, port);
    expect(n.cluster.operators.get('zone-1')?.paused).toBe(true);
    // The server holds no more than its cap; every silent connection beyond it was closed, counted.
    const stillOpen = flood.filter((c) => !c.got.closed).length;
    expect(stillOpen).toBeLessThanOrEqual(CAP);
    const evicted = await n.count('coolctl_api_requests_refused_total', { route: 'connection' });
    expect(evicted).toBeGreaterThanOrEqual(100);
    expect(
      n.lines.some(
        (l) =>
          l.msg === 'request refused' &&
          l.route === 'connection' &&
          l.status === 408 &&
          String(l.message).includes('delivered no request'),
      ),
    ).toBe(true);
    // Rate-limited: one line for the lot, not one per connection.
    expect(n.lines.filter((l) => l.msg === 'request refused').length).toBeLessThan(5);
    // The dashboard's connection was never the one displaced, and still answers.
    expect(keep.got.closed).toBe(false);
    const answered = keep.got.text.length;
    keep.s.write(clusterGet(n));
    await waitFor('the second answer on the keep-alive connection', () =>
      keep.got.text.slice(answered).includes('"groups"'),
    );
    expect(keep.got.text.slice(answered)).toMatch(/^HTTP\/1\.1 200 /);
  });

  it('over HTTPS, connections that never finish the TLS handshake give way to a signed-in client', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coolctl-silent-'));
    dirs.push(dir);
    const ca = await makeCa(dir, 'ca');
    const leaf = await makeLeaf(ca, 'api', { cn: 'localhost', usage: ['serverAuth'] });
    const tls = await ApiTls.load({ certFile: leaf.certFile, keyFile: leaf.keyFile });
    const caPem = await readFile(ca.caFile);
    const registry = new Registry();
    const auth = await apiAuth(registry, quietLogger);
    const app: FastifyInstance = await buildApp({
      auth: auth.auth,
      audit: auth.audit,
      https: tls.httpsOptions(),
      node: 'n1',
      version: '0',
      leadership: new FakeCluster({}).node('n1'),
      registry,
      groups: [],
      drivers: new Map(),
      logger: quietLogger,
      startedAtMs: 0,
      limits: { maxConnections: CAP },
    });
    closing.push(async () => {
      await app.close();
      await auth.auth.stop();
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = (app.server.address() as { port: number }).port;
    const get = `GET /api/v1/cluster HTTP/1.1\r\nHost: localhost\r\nAuthorization: ${auth.as('viewer').authorization}\r\n\r\n`;
    const tlsClient = () => {
      const t = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: caPem });
      sockets.push(t);
      const got = { text: '', closed: false };
      t.setEncoding('utf8');
      t.on('data', (d: string) => {
        got.text += d;
      });
      t.on('error', () => {});
      t.on('close', () => {
        got.closed = true;
      });
      t.once('secureConnect', () => t.write(get));
      return { t, got };
    };
    // A served keep-alive client over TLS.
    const { t: keep, got: kept } = tlsClient();
    await waitFor('the first answer over TLS', () => kept.text.includes('"groups"'));
    // Silent TCP connections, and ones that send the start of a TLS record and stall.
    const flood = [
      ...(await silent(port, (CAP + 100) / 2)),
      ...(await silent(port, (CAP + 100) / 2, '127.0.0.1', '\x16\x03\x01\x02\x00')),
    ];
    const { got: op } = tlsClient();
    await waitFor('the signed-in request answered over TLS', () => op.text.includes('"groups"'), {
      timeoutMs: 3_000,
    });
    expect(op.text).toMatch(/^HTTP\/1\.1 200 /);
    expect(flood.filter((c) => !c.got.closed).length).toBeLessThanOrEqual(CAP);
    const refused = await registry.getSingleMetric('coolctl_api_requests_refused_total')?.get();
    expect(refused?.values.find((v) => v.labels.route === 'connection')?.value).toBeGreaterThanOrEqual(100);
    // The first client, served, kept its connection and is answered again on it.
    expect(kept.closed).toBe(false);
    expect(op.closed).toBe(false);
    const answered = kept.text.length;
    keep.write(get);
    await waitFor('the second answer over TLS', () => kept.text.slice(answered).includes('"groups"'));
  });

  it('one host holding its share of connections with served requests leaves the rest to other hosts', async () => {
    const n = await apiNode({ limits: { maxConnections: CAP } });
    open.push(n);
    const port = await listen(n);
    // 127.0.0.2 asks /healthz on each of CAP connections and keeps them all alive.
    const hog = await silent(port, CAP, '127.0.0.2', 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor('the hog’s kept connections answered or closed', () =>
      hog.every((c) => c.got.closed || c.got.text.includes('200 OK')),
    );
    const kept = hog.filter((c) => !c.got.closed).length;
    expect(kept).toBeLessThanOrEqual(CAP / 2);
    // An operator from another address is served.
    await operatorPauses(n, port);
    expect(
      n.lines.some(
        (l) =>
          l.msg === 'request refused' && l.route === 'connection' && String(l.message).includes('its share'),
      ),
    ).toBe(true);
  });

  it(`${CAP} connections served once and then idle hold the cap: an operator's pause is served at once, requests still being read are not displaced`, async () => {
    // Stands in for the 5 s default, so the test waits a tenth of a second, not five.
    const IDLE_MS = 100;
    const n = await apiNode({ limits: { maxConnections: CAP, idleDisplaceAfterMs: IDLE_MS } });
    open.push(n);
    const port = await listen(n);
    // Served with an identity (a connection only ever served public routes gives way first: below).
    const served = async (c: ReturnType<typeof rawClient>) => {
      await c.connected;
      c.s.write(clusterGet(n));
      await waitFor('a served keep-alive connection', () => c.got.text.includes('"groups"'));
    };
    // Answered first, so idle longest by their answers, but each with its next request being read:
    // a body announced and not all sent, and headers half sent.
    const slowBody = rawClient(port, '127.0.0.2');
    const slowHeaders = rawClient(port, '127.0.0.2');
    await served(slowBody);
    await served(slowHeaders);
    const bodyAnswered = slowBody.got.text.length;
    const headersAnswered = slowHeaders.got.text.length;
    slowBody.s.write(
      `POST /api/v1/groups/zone-1/resume HTTP/1.1\r\nHost: x\r\nAuthorization: ${n.auth.as('operator').authorization}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{`,
    );
    slowHeaders.s.write('GET /api/v1/cluster HTTP/1.1\r\nHost: x\r\n');
    // The rest of the cap from two hosts, each at its share (10): served once, then nothing.
    const idle: ReturnType<typeof rawClient>[] = [];
    for (let i = 0; i < CAP - 2; i++) {
      const c = rawClient(port, i < CAP / 2 ? '127.0.0.3' : '127.0.0.2');
      await served(c);
      idle.push(c);
    }
    const servedAt = performance.now();
    expect([slowBody.got.text.length, slowHeaders.got.text.length]).toEqual([bodyAnswered, headersAnswered]);
    await waitFor(
      'the served connections idle past the minimum',
      () => performance.now() - servedAt > IDLE_MS,
    );

    // Before, the operator was closed at accept until the idle ones' keep-alive ran out (65 s).
    await operatorPauses(n, port);
    expect(n.cluster.operators.get('zone-1')?.paused).toBe(true);
    // The one displaced is the idle connection answered first; the busy ones older than it stay.
    await waitFor('the displaced connection closed', () => idle[0]!.got.closed);
    expect(idle.filter((c) => c.got.closed)).toHaveLength(1);
    expect(slowBody.got.closed || slowHeaders.got.closed).toBe(false);
    expect(await n.count('coolctl_api_requests_refused_total', { route: 'connection' })).toBe(1);
    const line = n.lines.find((l) => l.msg === 'request refused' && l.route === 'connection');
    expect(String(line?.message)).toMatch(
      /^connection closed: idle \d+\.\d s after its last answer, and a newcomer needed its slot/,
    );
    expect(line?.details).toEqual(['evicted-idle at the open bound']);
    // The requests that were being read finish and are answered on their connections.
    slowBody.s.write('}');
    slowHeaders.s.write(`Authorization: ${n.auth.as('viewer').authorization}\r\n\r\n`);
    await waitFor('the slow body answered', () => slowBody.got.text.length > bodyAnswered);
    await waitFor('the slow headers answered', () => slowHeaders.got.text.includes('"groups"'));
    expect(slowBody.got.text.slice(bodyAnswered)).toMatch(/^HTTP\/1\.1 200 /);
    expect(slowHeaders.got.text.slice(headersAnswered)).toMatch(/^HTTP\/1\.1 200 /);
  });

  /** A request without an identity on a keep-alive connection, answered 401. */
  const anonymous = 'GET /api/v1/cluster HTTP/1.1\r\nHost: x\r\n\r\n';
  /** `count` keep-alive connections from `localAddress`, each asking without an identity once (401). */
  async function unidentified(port: number, count: number, localAddress: string) {
    const all = await silent(port, count, localAddress, anonymous);
    await waitFor('every unidentified request answered 401', () =>
      all.every((c) => c.got.closed || c.got.text.includes(' 401 ')),
    );
    return all;
  }

  it(`${CAP} connections from two hosts asking again and again without an identity (401) hold the cap: an operator's connection is admitted and served, one of them closed`, async () => {
    const n = await apiNode({ limits: { maxConnections: CAP } });
    open.push(n);
    const port = await listen(n);
    // Each host at its share, each connection answered just now: before, all were "proven" and
    // busy-ish (idle under 5 s), and the operator was closed at accept.
    const flood = [
      ...(await unidentified(port, CAP / 2, '127.0.0.2')),
      ...(await unidentified(port, CAP / 2, '127.0.0.3')),
    ];
    expect(flood.filter((c) => c.got.closed)).toHaveLength(0);
    // They ask again, as a client holding the slots would every few seconds: refused again, or a
    // CORS preflight with a member's Origin (answered, but no request served).
    const before = flood.map((c) => c.got.text.length);
    for (const [i, c] of flood.entries())
      c.s.write(
        i % 2
          ? anonymous
          : 'OPTIONS /api/v1/cluster HTTP/1.1\r\nHost: x\r\nOrigin: http://127.0.0.1:8101\r\nAccess-Control-Request-Method: GET\r\n\r\n',
      );
    await waitFor('the second answers', () =>
      flood.every((c, i) => c.got.text.slice(before[i]).includes(i % 2 ? ' 401 ' : ' 204 ')),
    );

    await operatorPauses(n, port);
    expect(n.cluster.operators.get('zone-1')?.paused).toBe(true);
    // The one closed for it is the oldest unidentified connection; the rest stay until needed.
    await waitFor('the displaced connection closed', () => flood[0]!.got.closed);
    expect(flood.filter((c) => c.got.closed)).toHaveLength(1);
    expect(await n.count('coolctl_api_requests_refused_total', { route: 'connection' })).toBe(1);
    const line = n.lines.find((l) => l.msg === 'request refused' && l.route === 'connection');
    expect(String(line?.message)).toMatch(
      /^connection closed: it sent only refused requests \(2, none accepted\), and a newcomer needed its slot \(20 connections are open\)/,
    );
    expect(line?.details).toEqual(['evicted-refused at the unproven bound']);
    expect(line?.status).toBe(400);
    expect(line?.clientIp).toBe('127.0.0.2');
  });

  it('a signed-in dashboard and a scrape with a bearer token keep their connections while unidentified newcomers take one another’s slots', async () => {
    const n = await apiNode({ limits: { maxConnections: CAP } });
    open.push(n);
    const port = await listen(n);
    const dashboard = rawClient(port);
    const scrape = rawClient(port);
    await Promise.all([dashboard.connected, scrape.connected]);
    const scrapeGet = `GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: ${n.auth.as('viewer').authorization}\r\n\r\n`;
    dashboard.s.write(clusterGet(n));
    scrape.s.write(scrapeGet);
    await waitFor('the dashboard and the scrape answered', () =>
      [dashboard, scrape].every((c) => /^HTTP\/1\.1 200 /.test(c.got.text)),
    );
    // Three times the cap of newcomers without an identity, from two hosts, each asking once and
    // staying open: each is admitted and answered (one unidentified connection gives way for it).
    const flood: ReturnType<typeof rawClient>[] = [];
    for (let i = 0; i < 3 * CAP; i++) {
      if (i % 10 === 0) {
        // The dashboard polls meanwhile, on the same connection.
        const answered = dashboard.got.text.length;
        dashboard.s.write(clusterGet(n));
        await waitFor('the dashboard’s poll answered', () =>
          dashboard.got.text.slice(answered).includes('"groups"'),
        );
      }
      flood.push(...(await unidentified(port, 1, i % 2 ? '127.0.0.2' : '127.0.0.3')));
      expect(flood.at(-1)!.got.text).toMatch(/^HTTP\/1\.1 401 /);
    }
    expect(flood.filter((c) => !c.got.closed).length).toBeLessThanOrEqual(CAP - 2);
    expect(
      await n.count('coolctl_api_requests_refused_total', { route: 'connection' }),
    ).toBeGreaterThanOrEqual(2 * CAP);
    // Neither signed-in connection was displaced; both still answer.
    expect([dashboard.got.closed, scrape.got.closed]).toEqual([false, false]);
    const dashboardAnswered = dashboard.got.text.length;
    const scrapeAnswered = scrape.got.text.length;
    dashboard.s.write(clusterGet(n));
    scrape.s.write(scrapeGet);
    await waitFor('the dashboard’s last poll', () =>
      dashboard.got.text.slice(dashboardAnswered).includes('"groups"'),
    );
    await waitFor('the last scrape', () => scrape.got.text.slice(scrapeAnswered).includes('coolctl_'));
    expect(dashboard.got.text.slice(dashboardAnswered)).toMatch(/^HTTP\/1\.1 200 /);
    expect(scrape.got.text.slice(scrapeAnswered)).toMatch(/^HTTP\/1\.1 200 /);
  });
  it('connections that only poll public routes (/healthz, 200) give way to an operator, oldest first, before a signed-in dashboard idle for less than 5 s', async () => {
    const n = await apiNode({ limits: { maxConnections: CAP } });
    open.push(n);
    const port = await listen(n);
    // The dashboard first (the oldest connection), signed in and answered.
    const dashboard = rawClient(port);
    await dashboard.connected;
    dashboard.s.write(clusterGet(n));
    await waitFor('the dashboard answered', () => /^HTTP\/1\.1 200 /.test(dashboard.got.text));
    // Then the cap filled by two hosts polling the public health route, each answered 200, twice.
    const health = 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n';
    const pollers = [
      ...(await silent(port, CAP / 2, '127.0.0.2', health)),
      ...(await silent(port, CAP / 2 - 1, '127.0.0.3', health)),
    ];
    await waitFor('every poll answered', () => pollers.every((c) => c.got.text.includes(' 200 ')));
    const before = pollers.map((c) => c.got.text.length);
    for (const c of pollers) c.s.write(health);
    await waitFor('the second polls answered', () =>
      pollers.every((c, i) => c.got.text.slice(before[i]).includes(' 200 ')),
    );
    expect(pollers.filter((c) => c.got.closed)).toHaveLength(0);

    // Before, each poller was proven and idle under 5 s: the operator was closed at accept.
    const op = rawClient(port, '127.0.0.4');
    await op.connected;
    op.s.write(pause(n));
    await waitFor('the operator’s pause answered', () => op.got.closed, { timeoutMs: 3_000 });
    expect(op.got.text).toMatch(/^HTTP\/1\.1 200 /);
    await waitFor('the displaced poller closed', () => pollers[0]!.got.closed);
    expect(pollers.filter((c) => c.got.closed)).toHaveLength(1);
    expect(dashboard.got.closed).toBe(false);
    expect(await n.count('coolctl_api_requests_refused_total', { route: 'connection' })).toBe(1);
    const line = n.lines.find((l) => l.msg === 'request refused' && l.route === 'connection');
    expect(String(line?.message)).toMatch(
      /^connection closed: it was served only without an identity \(public routes\), and a newcomer needed its slot \(20 connections are open\)/,
    );
    expect(line?.details).toEqual(['evicted-anonymous at the open bound']);
    expect(line?.clientIp).toBe('127.0.0.2');
    // The dashboard still answers on its connection.
    const answered = dashboard.got.text.length;
    dashboard.s.write(clusterGet(n));
    await waitFor('the dashboard’s next poll', () => dashboard.got.text.slice(answered).includes('"groups"'));
  });
});
