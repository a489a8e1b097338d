// The gateway's HTTP side (/healthz, /metrics) probed as an attacker would, as a real process:
// nothing there can steer a unit (every other route and method is refused), and a request the
// gateway will not serve gets a status that says why — 405 with `Allow` for a known route asked
// with another method, 404 naming the routes, 400 with a reason for what it cannot parse — a
// counter and a log line. HEAD, which health checkers send, is served as GET without the body.
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/util/async.ts';
import { waitFor } from '../helpers.ts';
import { type GatewayProcess, metric, startGateway, stopAll, writeConfig } from './harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'coolctl-gw-hhttp-'));
let gw: GatewayProcess;

beforeAll(async () => {
  gw = await startGateway(
    writeConfig(dir, 'gateway', {
      gateway: 'http-probe',
      listen: { host: '127.0.0.1', port: 0 },
      http: { host: '127.0.0.1', port: 0 },
      stateFile: join(dir, 'epochs.json'),
      lines: [{ name: 'gone', tcp: { host: '127.0.0.1', port: await freePort('127.0.0.1') } }],
      units: [{ id: 1, line: 'gone' }],
    }),
  );
}, 60_000);

afterAll(async () => {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
});

/** Sends `text` as is; resolves with the status line, the headers (lower-case) and the body. */
function send(text: string): Promise<{ status: number; headers: string; body: string }> {
  const url = new URL(gw.httpUrl);
  return new Promise((resolve, reject) => {
    const s = connect({ host: url.hostname, port: Number(url.port) });
    let out = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no complete answer in 5 s: ${JSON.stringify(out)}`));
    }, 5_000);
    s.on('data', (d: Buffer) => {
      out += d.toString();
    });
    s.on('error', () => undefined);
    s.once('close', () => {
      clearTimeout(timer);
      const end = out.indexOf('\r\n\r\n');
      const head = out.slice(0, end).toLowerCase();
      let body = out.slice(end + 4);
      // A chunked body's framing is not what a user reads.
      if (/\r\ntransfer-encoding: chunked/.test(head)) {
        let plain = '';
        for (let size = Number.parseInt(body, 16); size > 0; size = Number.parseInt(body, 16)) {
          const at = body.indexOf('\r\n') + 2;
          plain += body.slice(at, at + size);
          body = body.slice(at + size + 2);
        }
        body = plain;
      }
      resolve({ status: Number(head.split(' ')[1]), headers: head, body });
    });
    s.write(text);
  });
}

const req = (method: string, path: string, extra = '') =>
  send(`${method} ${path} HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n${extra}\r\n`);

describe('the gateway’s HTTP side', () => {
  it('no route steers anything: every other method on its routes is 405 with Allow, counted and logged', async () => {
    const before = await metric(gw.httpUrl, 'coolctl_gateway_http_refused_total', {
      reason: 'method_not_allowed',
    });
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH'])
      for (const path of ['/healthz', '/metrics']) {
        const r = await req(method, path, 'content-length: 2\r\n');
        expect(r.status, `${method} ${path}`).toBe(405);
        expect(r.headers).toMatch(/\r\nallow: get, head\r\n/);
        expect(JSON.parse(r.body)).toEqual({ error: `method ${method} not allowed on ${path}: GET or HEAD` });
      }
    expect(
      await metric(gw.httpUrl, 'coolctl_gateway_http_refused_total', { reason: 'method_not_allowed' }),
    ).toBe(before + 8);
    await waitFor('the refusal logged', () =>
      gw.logs().find((l) => l.msg === 'http connection refused' && l.reason === 'method_not_allowed'),
    );
  });

  it('unknown routes are 404 naming the two there are, counted; the controller’s API is not here', async () => {
    const before = await metric(gw.httpUrl, 'coolctl_gateway_http_refused_total', { reason: 'not_found' });
    for (const [method, path] of [
      ['POST', '/api/v1/switchover'],
      ['GET', '/api/v1/cluster'],
      ['GET', '/healthz/../metrics'],
      ['GET', '/HEALTHZ'],
      ['GET', '/%ZZ'],
      ['OPTIONS', '*'],
    ] as const) {
      const r = await req(method, path);
      expect(r.status, `${method} ${path}`).toBe(404);
      expect(JSON.parse(r.body)).toEqual({ error: 'not found: GET or HEAD /healthz or /metrics' });
    }
    expect(await metric(gw.httpUrl, 'coolctl_gateway_http_refused_total', { reason: 'not_found' })).toBe(
      before + 6,
    );
  });

  it('HEAD and the absolute form of a URL are served as GET', async () => {
    const head = await req('HEAD', '/healthz');
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    expect((await req('HEAD', '/metrics')).status).toBe(200);
    const abs = await req('GET', `${gw.httpUrl}/healthz?probe=1`);
    expect(abs.status).toBe(200);
    expect(JSON.parse(abs.body)).toMatchObject({ gateway: 'http-probe' });
  });

  it('a request it cannot parse gets 400 with a reason, not an empty answer', async () => {
    for (const bad of [
      'BREW /pot HTTP/1.1\r\nhost: gw\r\n\r\n',
      'GET /healthz HTTP/1.1\r\nhost: gw\r\nx: \x01\r\n\r\n',
      'GET /healthz HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n',
    ]) {
      const r = await send(bad);
      expect(r.status, JSON.stringify(bad)).toBe(400);
      expect(JSON.parse(r.body)).toEqual({ error: 'the request is not HTTP this server can read' });
    }
    expect((await req('GET', '/healthz')).status).toBe(200);
  });
});
