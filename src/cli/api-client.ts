// How the CLI reaches a controller's API: the address from --api, else COOLCTL_API, else
// http://127.0.0.1:8101; the token from --token-file, else COOLCTL_TOKEN (never from an argument: it
// would show in `ps` and shell history). Every request has a deadline; a refusal becomes an error
// that prints the API's message and reasons.
import { readFileSync } from 'node:fs';
import { Option } from 'commander';
import { CoolctlError, ErrorCodes } from '../errors.ts';

export const DEFAULT_API = 'http://127.0.0.1:8101';

export interface ApiOptions {
  api?: string;
  tokenFile?: string;
}

/** --api and --token-file, for every command that calls the API. */
export function apiOptions(): Option[] {
  return [
    new Option('--api <url>', `any node’s API (default: $COOLCTL_API, else ${DEFAULT_API})`),
    new Option('--token-file <file>', 'file holding the API token (default: $COOLCTL_TOKEN)'),
  ];
}

/** A request the API refused because of what was asked (exit code 2), not because it failed. */
export class ApiUsageError extends Error {}

export function apiBase(o: ApiOptions): string {
  return (o.api ?? process.env.COOLCTL_API ?? DEFAULT_API).replace(/\/+$/, '');
}

export function apiToken(o: ApiOptions): string | undefined {
  if (o.tokenFile) {
    try {
      return readFileSync(o.tokenFile, 'utf8').trim();
    } catch (err) {
      throw new CoolctlError(ErrorCodes.STARTUP, `--token-file ${o.tokenFile}: ${(err as Error).message}`);
    }
  }
  return process.env.COOLCTL_TOKEN?.trim() || undefined;
}

export function authHeaders(o: ApiOptions): Record<string, string> {
  const token = apiToken(o);
  return token ? { authorization: `Bearer ${token}` } : {};
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
  let res: Response;
  try {
    res = await fetch(full, {
      method,
      headers: {
        ...authHeaders(o),
        ...(body ? { 'content-type': 'application/json' } : {}),
        // The API refuses state-changing requests a cross-site page could send; a CLI says it is none.
        'x-coolctl-request': 'cli',
      },
      ...(body ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    throw new CoolctlError(ErrorCodes.STARTUP, `cannot reach ${full}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const out = (await res.json().catch(() => ({}))) as T;
  return { status: res.status, body: out };
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
