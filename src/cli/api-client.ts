// How the CLI reaches a controller's API: the address from --api, else COOLCTL_API, else the CLI
// config file's `api` (./cli-config.ts), else http://127.0.0.1:8101; the token from --token-file,
// else COOLCTL_TOKEN, else the file's `tokenFile` (never from an argument: it would show in `ps` and
// shell history); the CA that signed the API's certificate from --ca-file, else COOLCTL_CA_FILE,
// else the file's `caFile`, else the system's CAs. Every request has one deadline from dialling to
// the last byte of the answer, and an answer has a size and a nesting bound; a redirect is never
// followed (the token goes to the address given and nowhere else); a 2xx that is not a JSON object,
// or is an error body, is an error, never a success. A refusal prints the API's message and reasons. A server the CA did not sign, or whose
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

/**
 * One request's deadline, from dialling to the last byte of the answer (connect, headers and the whole
 * body: a node that trickles its answer a byte a second is cut off like one that never answers).
 */
export const API_DEADLINE_MS = 10_000;
/** Answers larger than this are cut off as an error: the largest (1000 audit entries) is far below. */
export const MAX_ANSWER_BYTES = 32 * 1024 * 1024;
/** Deeper answers are refused: ours nest under 10 levels, and printing a deep one overflows the stack. */
export const MAX_ANSWER_DEPTH = 64;

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

/** What came back: the status, the headers the CLI reads, and the body as text. */
interface Exchanged {
  status: number;
  location: string | undefined;
  retryAfter: string | undefined;
  text: string;
}

/** The node answered, but not so that the CLI can use it (too slow, too large): said as is, after its address. */
class AnswerRefused extends Error {}

const seconds = (ms: number): string => `${ms / 1000} s`;

/**
 * One HTTP(S) exchange within `deadlineMs`, dialling to last byte. https:// trusts the given CA only
 * (on an agent of its own, so the CA applies to this connection and nothing else), or the system's
 * CAs; Node checks the certificate's names against the host dialled. Node's client follows no
 * redirect. The body is read up to MAX_ANSWER_BYTES, refused at once when its Content-Length says more.
 */
function exchange(
  url: URL,
  method: string,
  headers: Record<string, string>,
  body: string | undefined,
  deadlineMs: number,
  ca: ApiCa | undefined,
): Promise<Exchanged> {
  const secure = url.protocol === 'https:';
  const options = {
    method,
    headers,
    ...(secure
      ? {
          // Explicit, so NODE_TLS_REJECT_UNAUTHORIZED=0 in the environment cannot turn it off.
          rejectUnauthorized: true,
          agent: new HttpsAgent({ keepAlive: false, ...(ca ? { ca: ca.pem } : {}) }),
        }
      : {}),
  };
  return new Promise((resolve, reject) => {
    let answered = false;
    let received = 0;
    let settled = false;
    // The first outcome wins; the connection is torn down with a refusal, and a late 'error' or
    // 'end' from it changes nothing.
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(err);
      req.destroy();
    };
    const tooLarge = () =>
      new AnswerRefused(
        `its answer is larger than ${MAX_ANSWER_BYTES / 1024 / 1024} MB, more than any coolctl answer: not read further`,
      );
    const onAnswer = (res: IncomingMessage): void => {
      answered = true;
      if (Number(res.headers['content-length']) > MAX_ANSWER_BYTES) {
        fail(tooLarge());
        return;
      }
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        received += c.length;
        if (received > MAX_ANSWER_BYTES) {
          fail(tooLarge());
          return;
        }
        chunks.push(c);
      });
      res.on('error', fail);
      res.on('end', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve({
          status: res.statusCode ?? 0,
          location: res.headers.location,
          retryAfter: res.headers['retry-after'],
          text: Buffer.concat(chunks).toString('utf8'),
        });
      });
    };
    const req = secure ? httpsRequest(url, options, onAnswer) : http.request(url, options, onAnswer);
    // Said by how far it got: a node that took the connection and went quiet is not one that is down.
    const timer = setTimeout(() => {
      const connected = req.socket !== null && req.socket !== undefined && !req.socket.connecting;
      fail(
        answered
          ? new AnswerRefused(
              `its answer stopped coming: its headers and ${received} bytes of its body in ${seconds(deadlineMs)}, not all of it (the deadline covers the whole answer)`,
            )
          : connected
            ? new Error(`connected, but no answer in ${deadlineMs} ms`)
            : new Error(`no connection in ${deadlineMs} ms`),
      );
    }, deadlineMs);
    req.on('error', fail);
    req.end(body);
  });
}

/** How deep `text`'s arrays and objects nest, counted until it passes `limit` (strings skipped). */
function nestingOver(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * An answer of a shape no coolctl node gives, as one line: where it came from and what is wrong, and
 * the likely cause (another service on the port, a proxy's page).
 */
export function wrongAnswer(where: string, what: string): CoolctlError {
  return new CoolctlError(
    ErrorCodes.BAD_REQUEST,
    `${shownUrl(where)} answered, but not as a coolctl node does (${printable(what)}): is the API address (--api, COOLCTL_API) a coolctl node's?`,
  );
}

/** What a success's body must hold for a command to use it: lists of objects, objects, strings. */
export interface AnswerShape {
  lists?: readonly string[];
  records?: readonly string[];
  strings?: readonly string[];
}

/** Why `body` does not have `shape`, or null. */
function shapeProblem(body: Record<string, unknown>, shape: AnswerShape): string | null {
  for (const k of shape.lists ?? []) {
    const v = body[k];
    if (!Array.isArray(v)) return `no ${k} list`;
    const bad = v.findIndex((x) => !isRecord(x));
    if (bad >= 0) return `${k} item ${bad + 1} is not an object`;
  }
  for (const k of shape.records ?? []) if (!isRecord(body[k])) return `no ${k} object`;
  for (const k of shape.strings ?? []) if (typeof body[k] !== 'string' || body[k] === '') return `no ${k}`;
  return null;
}

/** An API answer: its status, its body (a JSON object, `{}` for a refusal without one), and Retry-After. */
export interface ApiAnswer<T> {
  status: number;
  body: T;
  /** The Retry-After header, as sent. */
  retryAfter?: string;
}

/**
 * One API call; `url` is a path on `--api` or a whole URL (another node's). Throws when the node
 * cannot be reached or answers nothing usable: a redirect (never followed), an answer over a bound,
 * or a 2xx that is not a JSON object or is an error body. Any other status is returned.
 */
export async function apiRequest<T = unknown>(
  o: ApiOptions,
  method: string,
  url: string,
  body?: object,
  timeoutMs = API_DEADLINE_MS,
): Promise<ApiAnswer<T>> {
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
  const token = o.withoutToken ? {} : authHeaders(o);
  // The operator chose TLS for the API: a member record (the server's data) cannot take the token
  // back to plain HTTP, where anyone on the path reads it.
  if ('authorization' in token && target.protocol === 'http:' && apiBase(o).startsWith('https:'))
    throw new CoolctlError(
      ErrorCodes.BAD_REQUEST,
      `not calling ${shownUrl(full)}: the API was given as https://, and the token is not sent over plain HTTP`,
    );
  const headers = {
    ...token,
    ...(body ? { 'content-type': 'application/json' } : {}),
    // The API refuses state-changing requests a cross-site page could send; a CLI says it is none.
    'x-coolctl-request': 'cli',
  };
  let answer: Exchanged;
  try {
    answer = await exchange(target, method, headers, body ? JSON.stringify(body) : undefined, timeoutMs, ca);
  } catch (err) {
    const refusal = tlsRefusal(err as NodeJS.ErrnoException, target, ca);
    if (refusal) throw refusal;
    if (err instanceof AnswerRefused)
      throw new CoolctlError(ErrorCodes.BAD_REQUEST, `${shownUrl(full)}: ${err.message}`, { cause: err });
    throw new CoolctlError(
      ErrorCodes.STARTUP,
      `cannot reach ${shownUrl(full)}: ${printable((err as Error).message)}`,
      { cause: err },
    );
  }
  const { status } = answer;
  if (status >= 300 && status < 400) throw redirectError(target, full, status, answer.location);
  const ok = status >= 200 && status < 300;
  let out: unknown;
  if (nestingOver(answer.text, MAX_ANSWER_DEPTH)) {
    if (ok) throw wrongAnswer(full, `JSON nested deeper than ${MAX_ANSWER_DEPTH} levels`);
  } else
    try {
      out = JSON.parse(answer.text);
    } catch {
      if (ok) throw wrongAnswer(full, `${status}, but not JSON`);
    }
  if (ok && !isRecord(out)) throw wrongAnswer(full, `${status}, but a JSON ${jsonKind(out)}, not an object`);
  // A proxy or a broken node that answers 200 with an error body: what it says is not a success.
  if (ok && isRecord(out) && typeof out.error === 'string')
    throw new CoolctlError(
      ErrorCodes.BAD_REQUEST,
      `${shownUrl(full)} answered ${status}, but with an error, so it is not taken as done: ${printable(out.error)}${typeof out.message === 'string' ? `: ${readable(out.message)}` : ''}`,
    );
  return {
    status,
    body: (isRecord(out) ? out : {}) as T,
    ...(answer.retryAfter !== undefined ? { retryAfter: answer.retryAfter } : {}),
  };
}

const jsonKind = (v: unknown): string =>
  Array.isArray(v) ? 'list' : v === null ? 'null' : typeof v === 'object' ? 'object' : typeof v;

/**
 * A redirect, refused: followed, it would carry the token to wherever the node says — another host,
 * or plain http:// from https://. Where it points is said (without credentials, escaped), and why.
 */
function redirectError(
  target: URL,
  full: string,
  status: number,
  location: string | undefined,
): CoolctlError {
  let to: URL | undefined;
  try {
    to = location === undefined ? undefined : new URL(location, target);
  } catch {
    to = undefined;
  }
  const why = !to
    ? ''
    : to.protocol === 'http:' && target.protocol === 'https:'
      ? ' (to plain http://: the token would cross the network unencrypted)'
      : to.host !== target.host || to.protocol !== target.protocol
        ? ' (to another host)'
        : '';
  const where = location === undefined ? 'nowhere it names' : shownUrl(to?.href ?? location);
  return new CoolctlError(
    ErrorCodes.BAD_REQUEST,
    `${shownUrl(full)} answered ${status} ${http.STATUS_CODES[status] ?? ''}, a redirect to ${where}${why}: not followed — the CLI sends its token only to the API address it was given; if the API has moved, give its address with --api or COOLCTL_API`,
  );
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
  body: { message?: unknown; details?: unknown; error?: unknown },
  what = 'refused',
  retryAfter?: string,
): Error {
  const message =
    typeof body.message === 'string' && body.message !== '' ? readable(body.message) : undefined;
  // Reasons the message does not already say (a schema refusal's message lists them all).
  const details = (Array.isArray(body.details) ? body.details : [])
    .filter((d): d is string => typeof d === 'string')
    .map(readable)
    .filter((d, i, all) => !message?.includes(d) && all.indexOf(d) === i);
  const named = `${status} ${http.STATUS_CODES[status] ?? 'unknown status'}`;
  if (body.error === ErrorCodes.AUDIT_UNAVAILABLE) return auditRefusal(named, message, retryAfter);
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
 * An action the node did not carry out because its audit trail could not take the entry
 * (COOLCTL_E_AUDIT_UNAVAILABLE, 503): said as not done, in the CLI's words whatever the node's, with
 * when to try again. Not retried here: whether etcd takes writes again in Retry-After seconds is not
 * known, and the operator should see the cluster (coolctl status) before asking again.
 */
function auditRefusal(
  named: string,
  message: string | undefined,
  retryAfter: string | undefined,
): CoolctlError {
  const afterS =
    retryAfter !== undefined && /^\d{1,5}$/.test(retryAfter.trim()) ? Number(retryAfter) : undefined;
  return new CoolctlError(
    ErrorCodes.AUDIT_UNAVAILABLE,
    `not done: nothing was changed — the node refused the action because its audit trail (etcd) could not record it, and no action runs unrecorded (${named} ${ErrorCodes.AUDIT_UNAVAILABLE}${message ? `: ${message}` : ''}). Try again${afterS !== undefined ? ` in ${afterS} s or later` : ' later'}, once etcd takes writes (coolctl status; etcdctl endpoint health)`,
    { retryable: true },
  );
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

/**
 * As apiRequest, but an answer other than 2xx throws refusalError's error, and a 2xx must hold what
 * `shape` names (the lists, objects and strings the command prints), else it is a wrong answer.
 */
export async function apiCall<T = unknown>(
  o: ApiOptions,
  method: string,
  url: string,
  body?: object,
  shape: AnswerShape = {},
): Promise<T> {
  const r = await apiRequest<T & { message?: unknown; details?: unknown }>(o, method, url, body);
  if (r.status >= 200 && r.status < 300) {
    const problem = shapeProblem(r.body as Record<string, unknown>, shape);
    if (problem) throw wrongAnswer(url.startsWith('http') ? url : `${apiBase(o)}${url}`, problem);
    return r.body;
  }
  throw refusalError(r.status, r.body, undefined, r.retryAfter);
}
