// The API over HTTPS (api.tls): buildApp serves the certificate ApiTls read, and the dashboard's
// session cookie is then Secure, so a browser never sends it over plain HTTP.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { makeCa, makeLeaf } from '../../scripts/lib/throwaway-pki.ts';
import { buildApp } from '../../src/api/app.ts';
import { ApiTls } from '../../src/api/tls.ts';
import { quietLogger } from '../helpers.ts';
import { apiAuth, TEST_PASSWORD } from '../support/api-auth.ts';
import { FakeCluster } from '../support/fake-cluster.ts';

let dir: string | undefined;
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('API over TLS', () => {
  it('serves HTTPS with the configured certificate and sets a Secure session cookie', async () => {
    dir = await mkdtemp(join(tmpdir(), 'coolctl-https-'));
    const ca = await makeCa(dir, 'ca');
    const leaf = await makeLeaf(ca, 'api', { cn: 'localhost', usage: ['serverAuth'] });
    const tls = await ApiTls.load({ certFile: leaf.certFile, keyFile: leaf.keyFile });
    const registry = new Registry();
    const auth = await apiAuth(registry, quietLogger);
    const app = await buildApp({
      auth: auth.auth,
      audit: auth.audit,
      https: tls.httpsOptions(),
      security: { secureCookies: true },
      node: 'n1',
      version: '0',
      leadership: new FakeCluster({}).node('n1'),
      registry,
      groups: [],
      drivers: new Map(),
      logger: quietLogger,
      startedAtMs: 0,
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = (app.server.address() as { port: number }).port;
    const caPem = await readFile(ca.caFile);
    const answer = await new Promise<{ status: number; cookie: string }>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port,
          servername: 'localhost',
          ca: caPem,
          method: 'POST',
          path: '/api/v1/auth/sign-in',
          headers: { 'content-type': 'application/json', 'x-coolctl-request': '1' },
          timeout: 5_000,
        },
        (res) => {
          res.resume();
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, cookie: String(res.headers['set-cookie']) }),
          );
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ name: 'operator', password: TEST_PASSWORD }));
    });
    expect(answer.status).toBe(200);
    expect(answer.cookie).toMatch(/coolctl_session=.*; Secure/);
    await app.close();
    await auth.auth.stop();
  }, 60_000);
});
