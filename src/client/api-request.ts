// A client of a controller's HTTP API, for whatever calls it from outside (the CLI, a rolling
// upgrade): one request with one deadline from dialling to the last byte of the answer, an answer
// with a size and a nesting bound; a redirect is never followed (the token goes to the address given
// and nowhere else); a 2xx that is not a JSON object, or is an error body, is an error, never a
// success. A server the CA did not sign, or whose certificate is not for the address dialled, is
// refused before the token is sent; nothing turns verification off (NODE_TLS_REJECT_UNAUTHORIZED
// included). An address with a user name or password in it is refused, never dialled (Node would
// send it as Basic auth). Where the address, token and CA come from is the caller's (ApiAccess):
// the CLI's are its options (src/cli/api-client.ts).
import type { IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { CoolctlError, ErrorCodes } from '../errors.ts';
import { isRecord } from '../util/is-record.ts';
import { http } from '../util/node-http.ts';
import { printable } from '../util/printable.ts';
import { withoutCredentials } from '../util/url-credentials.ts';

/**
 * One request's deadline, from dialling to the last byte of the answer (connect, headers and the whole
 * body: a node that trickles its answer a byte a second is cut off like one that never answers).
 */
export const API_DEADLINE_MS = 10_000;
/** Answers larger than this are cut off as an error: the largest (1000 audit entries) is far below. */
export const MAX_ANSWER_BYTES = 32 * 1024 * 1024;
/** Deeper answers are refused: ours nest under 10 levels, and printing a deep one overflows the stack. */
export const MAX_ANSWER_DEPTH = 64;

/**
 * Where a request goes and what it carries, each asked only when a request needs it and in the
 * order it always was (a bad address or token file is refused before anything is dialled).
 */
export interface ApiAccess {
  /** The API's base address, for a path (throws when the one given cannot be used). */
  base(): string;
  /** The CA to trust for https:// (undefined: the system's CAs). */
  ca(): ApiCa | undefined;
  /** The headers that say who is asking ({}: none). */
  authHeaders(): Record<string, string>;
  /** The error for a request that cannot be made as asked (the CLI: a usage error, exit 2). */
  misuse(message: string): Error;
}

/** The CA a command trusts for the API: where it was named (for messages) and its certificates. */
export interface ApiCa {
  /** `--ca-file F` or `COOLCTL_CA_FILE=F`, as the user gave it. */
  from: string;
  file: string;
  pem: string;
}

/** An address as the CLI prints it: without credentials, and escaped for the terminal. */
export function shownUrl(text: string): string {
  return printable(withoutCredentials(text));
}

/**
 * Whether an address may name a user or password before its host (`http://user:pass@host`). An API
 * address has no use for `@` anywhere, and a password with a `/` in it does not even parse as user
 * info, so any `@` counts.
 */
export function mayHoldCredentials(text: string): boolean {
  return text.includes('@');
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

/**
 * A message of the server's, one line and safe to print. A schema refusal can list one problem per
 * failed branch (`body/role must be equal to constant, body/role must be equal to constant, …`):
 * each is said once.
 */
export function readable(message: string): string {
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

/** An API answer: its status, its body (a JSON object, `{}` for a refusal without one), and Retry-After. */
export interface ApiAnswer<T> {
  status: number;
  body: T;
  /** The Retry-After header, as sent. */
  retryAfter?: string;
}

/** Requests to a controller's API, through one ApiAccess. */
export class ApiClient {
  private readonly access: ApiAccess;

  constructor(access: ApiAccess) {
    this.access = access;
  }

  /**
   * One API call; `url` is a path on `--api` or a whole URL (another node's). Throws when the node
   * cannot be reached or answers nothing usable: a redirect (never followed), an answer over a bound,
   * or a 2xx that is not a JSON object or is an error body. Any other status is returned.
   */
  async request<T = unknown>(
    method: string,
    url: string,
    body?: object,
    timeoutMs = API_DEADLINE_MS,
  ): Promise<ApiAnswer<T>> {
    const full = url.startsWith('http') ? url : `${this.access.base()}${url}`;
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
    const ca = this.access.ca();
    if (ca && target.protocol === 'http:')
      throw this.access.misuse(
        `${ca.from} is set, but ${target.protocol}//${target.host} is plain HTTP: there is no certificate to check; use the node’s https:// address`,
      );
    const token = this.access.authHeaders();
    // The operator chose TLS for the API: a member record (the server's data) cannot take the token
    // back to plain HTTP, where anyone on the path reads it.
    if ('authorization' in token && target.protocol === 'http:' && this.access.base().startsWith('https:'))
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
      answer = await exchange(
        target,
        method,
        headers,
        body ? JSON.stringify(body) : undefined,
        timeoutMs,
        ca,
      );
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
    if (ok && !isRecord(out))
      throw wrongAnswer(full, `${status}, but a JSON ${jsonKind(out)}, not an object`);
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
