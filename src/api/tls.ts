// The API's TLS material: a certificate chain and its key, read from files. reload() reads them
// again and swaps the server's secure context, so a renewed certificate serves the next connection
// without a restart (the entry point calls it on SIGHUP); a file that is missing, broken or whose
// key does not match is refused and the running certificate kept. Errors name files, never key bytes.
import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import type { Logger } from 'pino';
import {
  CERT_FILE_MAX_BYTES,
  type FileRead,
  readBoundedFile,
  readSecretFile,
} from '../config/config-files.ts';
import { CoolctlError, ErrorCodes } from '../errors.ts';

export interface ApiTlsFiles {
  /** PEM certificate chain, leaf first. */
  certFile: string;
  /** PEM private key of the leaf. */
  keyFile: string;
}

/** What a TLS server needs to take a new certificate on its next handshake (node:tls Server). */
export interface SecureContextTarget {
  setSecureContext(options: { cert: Buffer; key: Buffer; minVersion: 'TLSv1.2' }): void;
}

interface Material {
  cert: Buffer;
  key: Buffer;
  fingerprint256: string;
  validTo: string;
}

export class ApiTls {
  private readonly files: ApiTlsFiles;
  private readonly log: Logger | undefined;
  private material: Material;
  private readonly servers = new Set<SecureContextTarget>();

  private constructor(files: ApiTlsFiles, material: Material, log: Logger | undefined) {
    this.files = files;
    this.material = material;
    this.log = log;
  }

  /** Reads and checks the files; throws COOLCTL_E_CONFIG_INVALID naming what to fix. */
  static async load(files: ApiTlsFiles, opts: { logger?: Logger } = {}): Promise<ApiTls> {
    const tls = new ApiTls(files, await readMaterial(files), opts.logger);
    tls.log?.info(
      {
        certFile: files.certFile,
        fingerprint256: tls.material.fingerprint256,
        validTo: tls.material.validTo,
      },
      'API TLS certificate loaded',
    );
    return tls;
  }

  /** Options for an HTTPS server (fastify's `https`). */
  httpsOptions(): { cert: Buffer; key: Buffer; minVersion: 'TLSv1.2' } {
    return { cert: this.material.cert, key: this.material.key, minVersion: 'TLSv1.2' };
  }

  get fingerprint256(): string {
    return this.material.fingerprint256;
  }

  /** Servers whose certificate reload() replaces. */
  attach(server: SecureContextTarget): void {
    this.servers.add(server);
  }

  detach(server: SecureContextTarget): void {
    this.servers.delete(server);
  }

  /**
   * Reads the files again; when they hold a valid pair, every attached server serves it from its
   * next handshake on (connections already open keep theirs). Throws, keeping the running
   * certificate, when they do not.
   */
  async reload(): Promise<{ changed: boolean; fingerprint256: string }> {
    let next: Material;
    try {
      next = await readMaterial(this.files);
    } catch (err) {
      this.log?.error(
        { err: (err as Error).message, fingerprint256: this.material.fingerprint256 },
        'API TLS reload refused: the running certificate is kept',
      );
      throw err;
    }
    const changed =
      next.fingerprint256 !== this.material.fingerprint256 || !next.key.equals(this.material.key);
    this.material = next;
    for (const s of this.servers) s.setSecureContext(this.httpsOptions());
    this.log?.info(
      { changed, fingerprint256: next.fingerprint256, validTo: next.validTo },
      changed ? 'API TLS certificate reloaded' : 'API TLS certificate unchanged',
    );
    return { changed, fingerprint256: next.fingerprint256 };
  }
}

async function readMaterial(files: ApiTlsFiles): Promise<Material> {
  // The same rules as the config check (src/config/config-files.ts), on every read, SIGHUP's too:
  // a key swapped in with other users' access is refused, and the running certificate kept.
  const got = <T>(r: FileRead<T>): T => {
    if (!r.ok) throw invalid(`${r.message} (allowed: ${r.allowed})`);
    return r.value;
  };
  const cert = got(await readBoundedFile(files.certFile, CERT_FILE_MAX_BYTES, 'certificate file'));
  const key = got(await readSecretFile(files.keyFile));
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw invalid(`${files.certFile} holds no PEM certificate`, err);
  }
  try {
    // Checks the key parses and matches the certificate, as the server would on its next handshake.
    createSecureContext({ cert, key });
  } catch {
    // The library's message can quote the PEM it failed on: only the file names go out.
    throw invalid(`${files.keyFile} is not the private key of ${files.certFile} (or not a PEM key)`);
  }
  return { cert, key, fingerprint256: x509.fingerprint256, validTo: x509.validTo };
}

function invalid(message: string, cause?: unknown): CoolctlError {
  return new CoolctlError(ErrorCodes.CONFIG_INVALID, `API TLS: ${message}`, cause ? { cause } : {});
}
