// How the CLI reaches a controller's API: the address from --api, else COOLCTL_API, else the CLI
// config file's `api` (./cli-config.ts), else http://127.0.0.1:8101; the token from --token-file,
// else COOLCTL_TOKEN, else the file's `tokenFile` (never from an argument: it would show in `ps` and
// shell history); the CA that signed the API's certificate from --ca-file, else COOLCTL_CA_FILE,
// else the file's `caFile`, else the system's CAs. Every request has a deadline; a refusal becomes an
// error that prints the API's message and reasons. A server the CA did not sign, or whose
// certificate is not for the address dialled, is refused before the token is sent; nothing turns
// verification off (NODE_TLS_REJECT_UNAUTHORIZED included). An address with a user name or
// password in it is refused, never dialled (Node would send it as Basic auth) and never printed; a
// token that is not one line of token characters is refused before any request.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Option } from 'commander';
import { CoolctlError, ErrorCodes } from '../errors.ts';
import { http } from '../util/node-http.ts';
import { printable } from '../util/printable.ts';
import { withoutCredentials } from '../util/url-credentials.ts';
import { UsageError } from './args.ts';
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
  /** Send no token, and read none (sign-in: the token file may be the one being written). */
  withoutToken?: boolean;
}

/** --api, --token-file and --ca-file, for every command that calls the API. */
export function apiOptions(): Option[] {
  return [
    new Option(
      '--api <url>',
      `any node’s API, without user:password@ (default: $COOLCTL_API, the CLI config’s api, else ${DEFAULT_API})`,
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
export class ApiUsageError extends UsageError {}

/** An address as the CLI prints it: without credentials, and escaped for the terminal. */
export function shownUrl(text: string): string {
  return printable(withoutCredentials(text));
}

/**
 * Whether an address may name a user or password before its host (`http://user:pass@host`). An API
 * address has no use for `@` anywhere, and a password with a `/` in it does not even parse as user
 * info, so any `@` counts.
 */
function mayHoldCredentials(text: string): boolean {
  return text.includes('@');
}

/**
 * The API's base address and where it came from: --api, else COOLCTL_API, else the CLI config's
 * `api`, else the default. One with a user name or password is refused (exit 2) without printing
 * it: the CLI proves who it is with a token, and a password in an address ends up in shell
 * history, `ps`, logs and a proxy's Basic auth.
 */
export function apiBase(o: ApiOptions): string {
  const env = process.env.COOLCTL_API;
  const [text, from] =
    o.api !== undefined
      ? [o.api, '--api']
      : env
        ? [env, 'COOLCTL_API']
        : cliConfig().api !== undefined
          ? [cliConfig().api!, `api in ${cliConfig().file}`]
          : [DEFAULT_API, 'the default API address'];
  if (mayHoldCredentials(text))
    throw new ApiUsageError(
      `${from}: the address holds "@" — a user name or password (user:password@host), which the CLI never sends (not shown); give the address alone, and the token with --token-file or COOLCTL_TOKEN`,
    );
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ApiUsageError(`${from}: not an API address: ${shownUrl(text)} (want http(s)://host:port)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new ApiUsageError(`${from}: not an API address: ${shownUrl(text)} (want http(s)://host:port)`);
  return text.replace(/\/+$/, '');
}

/** One line of the characters a bearer token is made of (RFC 6750's b64token). */
const TOKEN_CHARS = /^[A-Za-z0-9\-._~+/]+=*$/;

/**
 * A token as read from `from` (`--token-file F`, `COOLCTL_TOKEN`, …): trimmed of the spaces and line
 * end around it; empty, several lines or other characters are refused naming where it came from,
 * never showing it (it would otherwise fail as a header, as "cannot reach", after the DNS lookup).
 */
function checkedToken(raw: string, from: string): string {
  const token = raw.trim();
  if (token === '') throw new UsageError(`${from}: no token in it (coolctl login prints one)`);
  if (/[\r\n]/.test(token))
    throw new UsageError(
      `${from}: holds more than one line; it must hold the token alone, one line as coolctl login or token create prints it`,
    );
  if (!TOKEN_CHARS.test(token))
    throw new UsageError(
      `${from}: holds characters no token has (a token is letters, digits and - . _ ~ + /); it must hold the token alone`,
    );
  return token;
}

function readTokenFile(file: string, from: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new UsageError(`${from}: cannot read the token file (${code})`);
  }
  return checkedToken(text, from);
}

/** The token from --token-file, else COOLCTL_TOKEN, else the CLI config's tokenFile, else none. */
export function apiToken(o: ApiOptions): string | undefined {
  if (o.tokenFile !== undefined) return readTokenFile(o.tokenFile, `--token-file ${o.tokenFile}`);
  const fromEnv = process.env.COOLCTL_TOKEN;
  if (fromEnv !== undefined && fromEnv.trim() !== '') return checkedToken(fromEnv, 'COOLCTL_TOKEN');
  const cfg = cliConfig();
  if (!cfg.tokenFile) return undefined;
  return readTokenFile(cfg.tokenFile, `tokenFile ${cfg.tokenFile} (${cfg.file})`);
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
    const req = secure ? httpsRequest(url, options, onAnswer) : http.request(url, options, onAnswer);
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
  // A whole URL is another node's address, as a member record gives it: the server's data, not the
  // user's, so a bad one fails the request (exit 1) rather than the usage.
  if (mayHoldCredentials(full))
    throw new CoolctlError(
      ErrorCodes.BAD_REQUEST,
      `not calling ${shownUrl(full)}: the address holds "@" — a user name or password, which the CLI never sends`,
    );
  let target: URL;
  try {
    target = new URL(full);
  } catch {
    throw new CoolctlError(
      ErrorCodes.BAD_REQUEST,
      `not an API address: ${shownUrl(full)} (want http(s)://host:port)`,
    );
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:')
    throw new CoolctlError(
      ErrorCodes.BAD_REQUEST,
      `not an API address: ${shownUrl(full)} (want http(s)://host:port)`,
    );
  const ca = apiCa(o);
  if (ca && target.protocol === 'http:')
    throw new ApiUsageError(
      `${ca.from} is set, but ${target.protocol}//${target.host} is plain HTTP: there is no certificate to check; use the node’s https:// address`,
    );
  const headers = {
    ...(o.withoutToken ? {} : authHeaders(o)),
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
    throw new CoolctlError(ErrorCodes.STARTUP, `cannot reach ${shownUrl(full)}: ${printable(why)}`, {
      cause: err,
    });
  }
  let out: unknown;
  try {
    out = JSON.parse(answer.text);
  } catch {
    out = undefined;
  }
  return { status: answer.status, body: (typeof out === 'object' && out !== null ? out : {}) as T };
}

/** How a proxy's or a node's answer without a message reads to an operator: what it means, and what to check. */
const STATUS_HINTS: Record<number, string> = {
  502: 'a proxy between here and the node, or the node behind it, is not reachable',
  503: 'the node is not ready (starting, stopping, or not able to serve this now); try again shortly, or another node',
  504: 'a proxy between here and the node got no answer from the node in time',
};

/**
 * The API's refusal as an error, by one rule (docs/cli.md, "Exit codes"): 401 and 403 say how to
 * sign in or whose role it needs (exit 1); 408 and 429 are worth retrying (exit 1); any other 4xx is
 * a request the server refused as bad input (ApiUsageError, exit 2); 5xx and anything else failed
 * (exit 1). The server's message and reasons are escaped for the terminal; a schema refusal's
 * repeats are said once; an answer without a message is named by its status text, with a hint.
 */
export function refusalError(
  status: number,
  body: { message?: unknown; details?: unknown },
  what = 'refused',
): Error {
  const message =
    typeof body.message === 'string' && body.message !== '' ? readable(body.message) : undefined;
  // Reasons the message does not already say (a schema refusal's message lists them all).
  const details = (Array.isArray(body.details) ? body.details : [])
    .filter((d): d is string => typeof d === 'string')
    .map(readable)
    .filter((d, i, all) => !message?.includes(d) && all.indexOf(d) === i);
  const named = `${status} ${http.STATUS_CODES[status] ?? 'unknown status'}`;
  const text = message
    ? `${message}${details.length ? ` (${details.join('; ')})` : ''}`
    : `the API answered ${named}${STATUS_HINTS[status] ? ` — ${STATUS_HINTS[status]}` : ''}`;
  if (status === 401)
    return new CoolctlError(
      ErrorCodes.UNAUTHENTICATED,
      `${text} — set COOLCTL_TOKEN or --token-file (coolctl login prints a token)`,
    );
  if (status === 403) return new CoolctlError(ErrorCodes.FORBIDDEN, text);
  if (status >= 400 && status < 500 && status !== 408 && status !== 429) return new ApiUsageError(text);
  return new CoolctlError(ErrorCodes.BAD_REQUEST, message ? `${what} (${named}): ${text}` : text);
}

/**
 * A message of the server's, one line and safe to print. A schema refusal can list one problem per
 * failed branch (`body/role must be equal to constant, body/role must be equal to constant, …`):
 * each is said once.
 */
function readable(message: string): string {
  const once = (text: string, sep: string) => [...new Set(text.split(sep))].join(sep);
  return printable(
    once(
      message
        .split('; ')
        .map((part) => once(part, ', '))
        .join('; '),
      '; ',
    ),
  );
}

/** As apiRequest, but an answer other than 2xx throws refusalError's error. */
export async function apiCall<T = unknown>(
  o: ApiOptions,
  method: string,
  url: string,
  body?: object,
): Promise<T> {
  const r = await apiRequest<T & { message?: unknown; details?: unknown }>(o, method, url, body);
  if (r.status >= 200 && r.status < 300) return r.body;
  throw refusalError(r.status, r.body);
}
