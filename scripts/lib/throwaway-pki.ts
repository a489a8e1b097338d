// A throwaway PKI for link tests, made with the system's `openssl`: one CA, and leaf certificates it
// signs for servers (SAN 127.0.0.1 and localhost) and clients. Files land in `dir`; keys are
// mode 0600 as a deployment would have them. Every openssl run has a deadline.
import { execFile } from 'node:child_process';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface TestCa {
  dir: string;
  caFile: string;
  caKeyFile: string;
}

export interface TestLeaf {
  certFile: string;
  keyFile: string;
}

function openssl(args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd, timeout: 20_000, killSignal: 'SIGKILL' }, (err, _out, stderr) =>
      err ? reject(new Error(`openssl ${args[0]}: ${stderr || err.message}`)) : resolve(),
    );
  });
}

/** A CA named `name` (its files are `<name>.crt` / `<name>.key` in `dir`). */
export async function makeCa(dir: string, name = 'ca'): Promise<TestCa> {
  const caFile = join(dir, `${name}.crt`);
  const caKeyFile = join(dir, `${name}.key`);
  await openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '2',
      '-subj',
      `/CN=coolctl test ${name}`,
      '-keyout',
      caKeyFile,
      '-out',
      caFile,
    ],
    dir,
  );
  await chmod(caKeyFile, 0o600);
  return { dir, caFile, caKeyFile };
}

/**
 * A leaf certificate signed by `ca`. `usage` sets extendedKeyUsage: a server (also dialled by its
 * peers, like an etcd member) needs both.
 */
export async function makeLeaf(
  ca: TestCa,
  name: string,
  opts: { cn?: string; usage: ('serverAuth' | 'clientAuth')[]; subjectAltName?: string },
): Promise<TestLeaf> {
  const keyFile = join(ca.dir, `${name}.key`);
  const csr = join(ca.dir, `${name}.csr`);
  const certFile = join(ca.dir, `${name}.crt`);
  const ext = join(ca.dir, `${name}.ext`);
  await writeFile(
    ext,
    [
      'basicConstraints=CA:FALSE',
      'keyUsage=digitalSignature,keyEncipherment',
      `extendedKeyUsage=${opts.usage.join(',')}`,
      `subjectAltName=${opts.subjectAltName ?? 'IP:127.0.0.1,DNS:localhost'}`,
      '',
    ].join('\n'),
  );
  await openssl(
    [
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-subj',
      `/CN=${opts.cn ?? name}`,
      '-keyout',
      keyFile,
      '-out',
      csr,
    ],
    ca.dir,
  );
  await openssl(
    [
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      ca.caFile,
      '-CAkey',
      ca.caKeyFile,
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      ext,
      '-out',
      certFile,
    ],
    ca.dir,
  );
  await chmod(keyFile, 0o600);
  return { certFile, keyFile };
}
