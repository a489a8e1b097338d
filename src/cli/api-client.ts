// The CLI's side of reaching a controller's API: the address from --api, else COOLCTL_API, else the
// CLI config file's `api` (./cli-config.ts), else http://127.0.0.1:8101; the token from --token-file,
// else COOLCTL_TOKEN, else the file's `tokenFile` (never from an argument: it would show in `ps` and
// shell history); the CA that signed the API's certificate from --ca-file, else COOLCTL_CA_FILE,
// else the file's `caFile`, else the system's CAs. A bad one is a usage error (exit 2) before any
// request; an address with a user name or password in it is never printed, and a token that is not
// one line of token characters is refused. The requests themselves (deadline, bounds, TLS, no
// redirect) are src/client/api-request.ts's; here too is how a refusal reads and exits.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Option } from 'commander';
import {
  API_DEADLINE_MS,
  type ApiAnswer,
  type ApiCa,
  ApiClient,
  mayHoldCredentials,
  readable,
  shownUrl,
  wrongAnswer,
} from '../client/api-request.ts';
import { CoolctlError, ErrorCodes } from '../errors.ts';
import { UsageError } from '../util/cli-args.ts';
import { isRecord } from '../util/is-record.ts';
import { http } from '../util/node-http.ts';
import { cliConfig } from './cli-config.ts';

export const DEFAULT_API = 'http://127.0.0.1:8101';

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

/** The client of the API these options name: its address, token and CA as the CLI resolves them. */
export function apiClient(o: ApiOptions): ApiClient {
  return new ApiClient({
    base: () => apiBase(o),
    ca: () => apiCa(o),
    authHeaders: () => (o.withoutToken ? {} : authHeaders(o)),
    misuse: (message) => new ApiUsageError(message),
  });
}

/** One API call with the CLI's options (ApiClient.request). */
export function apiRequest<T = unknown>(
  o: ApiOptions,
  method: string,
  url: string,
  body?: object,
  timeoutMs = API_DEADLINE_MS,
): Promise<ApiAnswer<T>> {
  return apiClient(o).request<T>(method, url, body, timeoutMs);
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
