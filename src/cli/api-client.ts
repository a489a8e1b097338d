// How the CLI reaches a controller's API: the address from --api, else COOLCTL_API, else the CLI
// config file's `api` (./cli-config.ts), else http://127.0.0.1:8101; the token from --token-file,
// else COOLCTL_TOKEN, else the file's `tokenFile` (never from an argument: it would show in `ps` and
// shell history); the CA that signed the API's certificate from --ca-file, else COOLCTL_CA_FILE,
// else the file's `caFile`, else the system's CAs. Every request has a deadline; a refusal becomes an
// error that prints the API's message and reasons. A server the CA did not sign, or whose
// certificate is not for the address dialled, is refused before the token is sent; nothing turns
// verification off (NODE_TLS_REJECT_UNAUTHORIZED included).
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Option } from 'commander';
import { CoolctlError, ErrorCodes } from '../errors.ts';
import { cliConfig } from './cli-config.ts';

export const DEFAULT_API = 'http://127.0.0.1:8101';

/** Answers larger than this are cut off as an error: the largest (the audit trail) is far below. */
const MAX_ANSWER_BYTES = 32 * 1024 * 1024;

export interface ApiOptions {
  api?: string;
  tokenFile?: string;
  caFile?: string;
  /** --output (table or json), which every command that calls the API takes. */
  output?: string;
}

/** --api, --token-file and --ca-file, for every command that calls the API. */
export function apiOptions(): Option[] {
  return [
    new Option(
      '--api <url>',
      `any node’s API (default: $COOLCTL_API, the CLI config’s api, else ${DEFAULT_API})`,
    ),
    new Option(
      '--token-file <file>',
      'file holding the API token (default: $COOLCTL_TOKEN, the CLI config’s tokenFile)',
    ),
    new Option(
      '--ca-file <file>',
      'PEM CA certificate(s) that signed the API’s certificate; only these are trusted for https:// (default: $COOLCTL_CA_FILE, the CLI config’s caFile, else the system’s CAs)',
    ),
  ];
}

/** A request the API refused because of what was asked (exit code 2), not because it failed. */
export class ApiUsageError extends Error {}

export function apiBase(o: ApiOptions): string {
  return (o.api ?? process.env.COOLCTL_API ?? cliConfig().api ?? DEFAULT_API).replace(/\/+$/, '');
}

export function apiToken(o: ApiOptions): string | undefined {
  if (o.tokenFile) {
    try {
      return readFileSync(o.tokenFile, 'utf8').trim();
    } catch (err) {
      throw new CoolctlError(ErrorCodes.STARTUP, `--token-file ${o.tokenFile}: ${(err as Error).message}`);
    }
  }
  const fromEnv = process.env.COOLCTL_TOKEN?.trim();
  if (fromEnv) return fromEnv;
  const cfg = cliConfig();
  if (!cfg.tokenFile) return undefined;
  try {
    return readFileSync(cfg.tokenFile, 'utf8').trim() || undefined;
  } catch (err) {
    throw new CoolctlError(
      ErrorCodes.STARTUP,
      `tokenFile ${cfg.tokenFile} (${cfg.file}): ${(err as Error).message}`,
    );
  }
}

export function authHeaders(o: ApiOptions): Record<string, string> {
  const token = apiToken(o);
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** The CA a command trusts for the API: where it was named (for messages) and its certificates. */
export interface ApiCa {
  /** `--ca-file F` or `COOLCTL_CA_FILE=F`, as the user gave it. */
  from: string;
  file: string;
  pem: string;
}

const loadedCas = new Map<string, ApiCa>();

/**
 * The CA from --ca-file, else COOLCTL_CA_FILE, else undefined (the system's CAs). A file that cannot
 * be read or holds no valid PEM certificate is a usage error (exit 2) naming the file: the user asked
 * for a CA, so the CLI never carries on with another.
 */
export function apiCa(o: ApiOptions): ApiCa | undefined {
  const env = process.env.COOLCTL_CA_FILE;
  const fromFile = cliConfig().caFile;
  const file = o.caFile ?? (env ? env : undefined) ?? fromFile;
  if (file === undefined) return undefined;
  const from =
    o.caFile !== undefined
      ? `--ca-file ${file}`
      : env
        ? `COOLCTL_CA_FILE=${file}`
        : `caFile ${file} (${cliConfig().file})`;
  const cached = loadedCas.get(from);
  if (cached) return cached;
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new ApiUsageError(
      `${from}: cannot read the CA file (${code}); give the PEM file of the CA that signed the API’s certificate`,
    );
  }
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0)
    throw new ApiUsageError(`${from}: the file holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  blocks.forEach((b, i) => {
    try {
      new X509Certificate(b);
    } catch {
      throw new ApiUsageError(`${from}: certificate ${i + 1} in the file is not a valid PEM certificate`);
    }
  });
  const ca = { from, file, pem: blocks.join('\n') };
  loadedCas.set(from, ca);
  return ca;
}

/** The peer-verification failures OpenSSL and Node report, by what they mean to the operator. */
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_REJECTED',
  'INVALID_CA',
]);
const OUT_OF_DATE = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);

/** A TLS verification failure as an error that says what the server's certificate failed, and the fix. */
function tlsRefusal(err: NodeJS.ErrnoException, url: URL, ca: ApiCa | undefined): CoolctlError | undefined {
  const code = err.code ?? '';
  const where = `${url.protocol}//${url.host}`;
  const fix = ca
    ? `check that ${ca.from} is the CA that signed the API’s certificate (api.tls.certFile)`
    : 'give the site CA with --ca-file FILE or COOLCTL_CA_FILE';
  let what: string | undefined;
  if (UNTRUSTED.has(code))
    what = ca
      ? `its certificate is not signed by the CA in ${ca.file}`
      : 'its certificate is not signed by a CA this machine trusts';
  else if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    const names = (err as { cert?: { subjectaltname?: string } }).cert?.subjectaltname;
    what = `its certificate is not for ${url.hostname} (it names ${names || 'no subject alternative name'})`;
  } else if (OUT_OF_DATE.has(code)) what = `its certificate is out of date (${err.message})`;
  if (!what) return undefined;
  return new CoolctlError(
    ErrorCodes.API_UNTRUSTED,
    `refused ${where}: ${what} [${code}]; nothing was sent — ${code === 'ERR_TLS_CERT_ALTNAME_INVALID' ? 'use the address the certificate names, or reissue it for this one' : fix}`,
    { cause: err },
  );
}

/**
 * One HTTP(S) exchange. https:// trusts the given CA only (on an agent of its own, so the CA applies
 * to this connection and nothing else), or the system's CAs; Node checks the certificate's names
 * against the host dialled.
 */
function exchange(
  url: URL,
  method: string,
  headers: Record<string, string>,
  body: string | undefined,
  timeoutMs: number,
  ca: ApiCa | undefined,
): Promise<{ status: number; text: string }> {
  const secure = url.protocol === 'https:';
  const options = {
    method,
    headers,
    signal: AbortSignal.timeout(timeoutMs),
    ...(secure
      ? {
          // Explicit, so NODE_TLS_REJECT_UNAUTHORIZED=0 in the environment cannot turn it off.
          rejectUnauthorized: true,
          agent: new HttpsAgent({ keepAlive: false, ...(ca ? { ca: ca.pem } : {}) }),
        }
      : {}),
  };
  return new Promise((resolve, reject) => {
    const onAnswer = (res: IncomingMessage): void => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_ANSWER_BYTES) {
          res.destroy(new Error(`the answer is larger than ${MAX_ANSWER_BYTES} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on('error', reject);
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
      );
    };
    const req = secure ? httpsRequest(url, options, onAnswer) : httpRequest(url, options, onAnswer);
    req.on('error', reject);
    req.end(body);
  });
}

/** One API call; `url` is a path on `--api` or a whole URL (another node's). */
export async function apiRequest<T = unknown>(
  o: ApiOptions,
  method: string,
  url: string,
  body?: object,
  timeoutMs = 10_000,
): Promise<{ status: number; body: T }> {
  const full = url.startsWith('http') ? url : `${apiBase(o)}${url}`;
  let target: URL;
  try {
    target = new URL(full);
  } catch {
    throw new ApiUsageError(`not an API address: ${full} (want http(s)://host:port)`);
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:')
    throw new ApiUsageError(`not an API address: ${full} (want http(s)://host:port)`);
  const ca = apiCa(o);
  if (ca && target.protocol === 'http:')
    throw new ApiUsageError(
      `${ca.from} is set, but ${target.protocol}//${target.host} is plain HTTP: there is no certificate to check; use the node’s https:// address`,
    );
  const headers = {
    ...authHeaders(o),
    ...(body ? { 'content-type': 'application/json' } : {}),
    // The API refuses state-changing requests a cross-site page could send; a CLI says it is none.
    'x-coolctl-request': 'cli',
  };
  let answer: { status: number; text: string };
  try {
    answer = await exchange(target, method, headers, body ? JSON.stringify(body) : undefined, timeoutMs, ca);
  } catch (err) {
    const refusal = tlsRefusal(err as NodeJS.ErrnoException, target, ca);
    if (refusal) throw refusal;
    const why =
      (err as Error).name === 'AbortError' ? `no answer in ${timeoutMs} ms` : (err as Error).message;
    throw new CoolctlError(ErrorCodes.STARTUP, `cannot reach ${full}: ${why}`, { cause: err });
  }
  let out: unknown;
  try {
    out = JSON.parse(answer.text);
  } catch {
    out = undefined;
  }
  return { status: answer.status, body: (typeof out === 'object' && out !== null ? out : {}) as T };
}

/** As apiRequest, but a non-2xx answer throws: 400/404 as a usage error, 401/403 saying how to sign in. */
export async function apiCall<T = unknown>(
  o: ApiOptions,
  method: string,
  url: string,
  body?: object,
): Promise<T> {
  const r = await apiRequest<T & { message?: string; details?: string[] }>(o, method, url, body);
  if (r.status < 300) return r.body;
  const details = r.body.details?.length ? ` (${r.body.details.join('; ')})` : '';
  const message = `${r.body.message ?? r.status}${details}`;
  if (r.status === 401)
    throw new CoolctlError(
      ErrorCodes.UNAUTHENTICATED,
      `${message} — set COOLCTL_TOKEN or --token-file (coolctl login prints a token)`,
    );
  if (r.status === 403) throw new CoolctlError(ErrorCodes.FORBIDDEN, message);
  if (r.status === 400 || r.status === 404 || r.status === 409) throw new ApiUsageError(message);
  throw new CoolctlError(ErrorCodes.BAD_REQUEST, `refused (${r.status}): ${message}`);
}
