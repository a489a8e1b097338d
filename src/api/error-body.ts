// The body of every refused or failed API request, as the OpenAPI description states it: a stable
// COOLCTL_E_… code, a message that says what to fix, and the list of problems. And the answers every
// route can give before or beside its handler, described for each route from what the app checks
// (so the description cannot drift from the guard, the limiter and the body parser).
import type { RouteOptions } from 'fastify';

export const ErrorBody = {
  type: 'object',
  properties: {
    error: { type: 'string' },
    message: { type: 'string' },
    details: { type: 'array', items: { type: 'string' } },
  },
} as const;

/** A success a route does not describe further (a page, an asset, a view with a large shape). */
const DONE = { description: 'done' } as const;

/**
 * A route's schema as /openapi.json describes it (the description's transform): its own declared
 * answers, completed with what the app answers for it whatever its handler does — 400 (a query,
 * path or body its schemas refuse; an unreadable URL), 414 (a path parameter over its length), 401
 * (no identity, on every route but the public ones), 403 (a role too low; a state-changing request
 * a cross-site page could have sent), 413 and 415 (a body too big or not JSON), 429 (the limiter,
 * on every state-changing route), 503 (etcd or the cluster out of reach: retry); and a 200 where the
 * route declares no success. A route's own declaration wins. Only the description: these bodies are
 * made by one error handler and need no serializer per route (~280 of them: ~3 MB of the node's RSS).
 */
export function declaredAnswers(
  schema: Record<string, unknown> | undefined,
  r: Pick<RouteOptions, 'method' | 'url' | 'config'>,
  changesState: (method: string) => boolean,
): Record<string, unknown> | undefined {
  const methods = Array.isArray(r.method) ? r.method : [r.method];
  if (methods.every((m) => m === 'OPTIONS')) return schema;
  const access = (r.config as { access?: string } | undefined)?.access ?? 'admin';
  const changes = methods.some(changesState);
  const statuses = [400, 503];
  if (r.url.includes(':')) statuses.push(414);
  if (access !== 'public') statuses.push(401);
  if (changes || (access !== 'public' && access !== 'viewer')) statuses.push(403);
  if (changes) statuses.push(413, 415, 429);
  const response = { ...(schema?.response as Record<string, unknown> | undefined) };
  if (!Object.keys(response).some((s) => s.startsWith('2'))) response[200] = DONE;
  for (const s of statuses) response[s] ??= ErrorBody;
  return { ...schema, response };
}
