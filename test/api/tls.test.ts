// The API's TLS (src/api/tls.ts) on a real HTTPS server (fastify): it serves the certificate from
// its files; after the files are replaced, reload() makes the next connection get the new one
// without a restart; a broken key on reload is refused, the error names the file and not the key,
// and the running certificate stays.
import { chmod, copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCa, makeLeaf, type TestCa, type TestLeaf } from '../../scripts/lib/throwaway-pki.ts';
import { ApiTls } from '../../src/api/tls.ts';
import { ErrorCodes } from '../../src/errors.ts';

let dir: string;
let ca: TestCa;
let first: TestLeaf;
let second: TestLeaf;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coolctl-api-tls-'));
  ca = await makeCa(dir, 'api-ca');
  first = await makeLeaf(ca, 'api-1', { cn: 'localhost', usage: ['serverAuth'] });
  second = await makeLeaf(ca, 'api-2', { cn: 'localhost', usage: ['serverAuth'] });
}, 60_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The fingerprint of the certificate a fresh connection is served, verified against the CA. */
async function served(port: number): Promise<string> {
  const caPem = await readFile(ca.caFile);
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, ca: caPem, servername: 'localhost' }, () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.destroy();
      resolve(fp);
    });
    s.setTimeout(5_000, () => s.destroy(new Error('no handshake in 5 s')));
    s.once('error', reject);
  });
}

describe('API TLS', () => {
  it('serves its certificate, takes a renewed one on reload, refuses a broken one', async () => {
    const certFile = join(dir, 'api.crt');
    const keyFile = join(dir, 'api.key');
    await copyFile(first.certFile, certFile);
    await copyFile(first.keyFile, keyFile);
    const tls = await ApiTls.load({ certFile, keyFile });
    const app = Fastify({ https: tls.httpsOptions() });
    app.get('/healthz', async () => ({ ok: true }));
    await app.listen({ host: '127.0.0.1', port: 0 });
    tls.attach(app.server as unknown as Parameters<ApiTls['attach']>[0]);
    try {
      const port = (app.server.address() as { port: number }).port;
      const fp1 = await served(port);
      expect(fp1).toBe(tls.fingerprint256);

      await copyFile(second.certFile, certFile);
      await copyFile(second.keyFile, keyFile);
      expect((await tls.reload()).changed).toBe(true);
      const fp2 = await served(port);
      expect(fp2).not.toBe(fp1);
      expect(fp2).toBe(tls.fingerprint256);

      // A key that is not the certificate's: refused, named, not quoted; the renewed one stays.
      await copyFile(first.keyFile, keyFile);
      const keyText = (await readFile(keyFile, 'utf8')).split('\n')[1]!;
      const err = (await tls.reload().catch((e: unknown) => e)) as Error & { code: string };
      expect(err.code).toBe(ErrorCodes.CONFIG_INVALID);
      expect(err.message).toContain(keyFile);
      expect(err.message).not.toContain(keyText);
      await writeFile(keyFile, 'not a key\n');
      await expect(tls.reload()).rejects.toThrow(keyFile);
      // The right key, but readable by every user: refused as the config check refuses it.
      await copyFile(second.keyFile, keyFile);
      await chmod(keyFile, 0o644);
      await expect(tls.reload()).rejects.toThrow(/open to every user on this machine \(mode 0644\)/);
      expect(await served(port)).toBe(fp2);
    } finally {
      await app.close();
    }
  });
});
