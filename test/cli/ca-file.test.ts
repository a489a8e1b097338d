// The CLI checks the API's server against a CA file (--ca-file, COOLCTL_CA_FILE): the real API over
// HTTPS with a certificate from a site CA made here with openssl, and the CLI as a child process.
// The site CA → it works; another CA, none (a self-signed root is in no system store), or a
// certificate the site CA signed for another name → refused, saying why, before anything is sent —
// even with NODE_TLS_REJECT_UNAUTHORIZED=0; a missing CA file → exit 2 and one line, no stack.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCa, makeLeaf, type TestCa } from '../../scripts/lib/throwaway-pki.ts';
import { buildApp } from '../../src/api/app.ts';
import { ApiTls } from '../../src/api/tls.ts';
import { quietLogger } from '../helpers.ts';
import { type ApiAuth, apiAuth } from '../support/api-auth.ts';
import { FakeCluster } from '../support/fake-cluster.ts';

let dir: string;
let siteCa: TestCa;
let otherCa: TestCa;
let auth: ApiAuth;
let app: FastifyInstance;
let api: string;
/** Requests the API received: a refused handshake must leave it at what it was. */
let received = 0;
let elsewhere: Server;
let elsewhereUrl: string;
let elsewhereRequests = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coolctl-cli-ca-'));
  siteCa = await makeCa(dir, 'site-ca');
  otherCa = await makeCa(dir, 'other-ca');
  const leaf = await makeLeaf(siteCa, 'api', { cn: 'localhost', usage: ['serverAuth'] });
  const tls = await ApiTls.load({ certFile: leaf.certFile, keyFile: leaf.keyFile });
  const registry = new Registry();
  auth = await apiAuth(registry, quietLogger);
  app = await buildApp({
    auth: auth.auth,
    audit: auth.audit,
    https: tls.httpsOptions(),
    security: { secureCookies: true },
    node: 'n1',
    version: '0',
    leadership: new FakeCluster({ 'zone-1': ['n1', 7] }).node('n1'),
    registry,
    groups: ['zone-1'],
    drivers: new Map(),
    logger: quietLogger,
    startedAtMs: 0,
  });
  app.addHook('onRequest', async () => {
    received++;
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  api = `https://127.0.0.1:${(app.server.address() as { port: number }).port}`;

  // Signed by the site CA, but for a name that is not the address the CLI dials.
  const other = await makeLeaf(siteCa, 'elsewhere', {
    cn: 'elsewhere.example',
    usage: ['serverAuth'],
    subjectAltName: 'DNS:elsewhere.example',
  });
  elsewhere = createServer(
    { cert: await readFile(other.certFile), key: await readFile(other.keyFile) },
    (_q, s) => {
      elsewhereRequests++;
      s.end('{}');
    },
  );
  await new Promise<void>((r) => elsewhere.listen(0, '127.0.0.1', r));
  elsewhereUrl = `https://127.0.0.1:${(elsewhere.address() as { port: number }).port}`;
}, 60_000);

afterAll(async () => {
  await app?.close();
  await auth?.auth.stop();
  await new Promise((r) => (elsewhere ? elsewhere.close(r) : r(undefined)));
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The CLI as a process (asynchronous: the API answers from this one). */
function cli(
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['src/cli.ts', ...args], {
      env: {
        ...process.env,
        COOLCTL_API: undefined,
        COOLCTL_CA_FILE: undefined,
        NODE_EXTRA_CA_CERTS: undefined,
        NODE_TLS_REJECT_UNAUTHORIZED: undefined,
        COOLCTL_TOKEN: auth.tokens.viewer,
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 20_000,
      killSignal: 'SIGKILL',
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => {
      stdout += c;
    });
    child.stderr.on('data', (c) => {
      stderr += c;
    });
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

const noStack = (s: string) => expect(s).not.toMatch(/\n\s+at /);

describe('CLI against an HTTPS API, with a CA file', () => {
  it('the site CA, from --ca-file or COOLCTL_CA_FILE: status and history work', async () => {
    let r = await cli(['status', '--api', api, '--ca-file', siteCa.caFile]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/zone-1\s+n1\s+7/);
    r = await cli(['history', '--api', api], { COOLCTL_CA_FILE: siteCa.caFile });
    expect(r.status, r.stderr).toBe(0);
    // The option wins over the environment.
    r = await cli(['status', '--api', api, '--ca-file', siteCa.caFile], { COOLCTL_CA_FILE: otherCa.caFile });
    expect(r.status, r.stderr).toBe(0);
  }, 60_000);

  it('another CA: refused, naming that CA, and nothing reaches the API', async () => {
    const before = received;
    const r = await cli(['status', '--api', api, '--ca-file', otherCa.caFile]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`its certificate is not signed by the CA in ${otherCa.caFile}`);
    expect(r.stderr).toMatch(/nothing was sent/);
    noStack(r.stderr);
    expect(received).toBe(before);
  }, 30_000);

  it('no CA option: refused (the site root is in no system store), even with NODE_TLS_REJECT_UNAUTHORIZED=0', async () => {
    const before = received;
    for (const env of [{}, { NODE_TLS_REJECT_UNAUTHORIZED: '0' }]) {
      const r = await cli(['status', '--api', api], env);
      expect(r.status, JSON.stringify(env)).toBe(1);
      expect(r.stderr).toMatch(/its certificate is not signed by a CA this machine trusts/);
      expect(r.stderr).toMatch(/--ca-file FILE or COOLCTL_CA_FILE/);
      noStack(r.stderr);
    }
    expect(received).toBe(before);
  }, 30_000);

  it('a certificate the site CA signed for another name: refused', async () => {
    const r = await cli(['status', '--api', elsewhereUrl, '--ca-file', siteCa.caFile]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/its certificate is not for 127\.0\.0\.1 \(it names DNS:elsewhere\.example\)/);
    noStack(r.stderr);
    expect(elsewhereRequests).toBe(0);
  }, 30_000);

  it('a missing or unusable CA file: exit 2 with one clear line, no stack', async () => {
    const missing = join(dir, 'no-such-ca.pem');
    let r = await cli(['status', '--api', api, '--ca-file', missing]);
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe(
      `coolctl: --ca-file ${missing}: cannot read the CA file (ENOENT); give the PEM file of the CA that signed the API’s certificate`,
    );
    const notPem = join(dir, 'not-a-ca.txt');
    await writeFile(notPem, 'hello\n');
    r = await cli(['status', '--api', api], { COOLCTL_CA_FILE: notPem });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/COOLCTL_CA_FILE=.*not-a-ca\.txt: the file holds no PEM certificate/);
    noStack(r.stderr);
    // A CA for plain HTTP has nothing to check: refused rather than ignored.
    r = await cli(['status', '--api', 'http://127.0.0.1:9', '--ca-file', siteCa.caFile]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/is plain HTTP: there is no certificate to check/);
  }, 30_000);
});
