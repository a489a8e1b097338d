// Who may call what, checked once for every route (registered without encapsulation so it sees
// them all): a route's `config.access` names the least role it needs (none declared: admin, so a
// new route is closed until someone opens it); `public` routes need no identity. The identity comes
// from `Authorization: Bearer <token>` or the dashboard's session cookie. A state-changing request
// (any method but GET/HEAD/OPTIONS) must also be one a cross-site page cannot send: a body only as
// JSON, and either the bearer token or the X-Coolctl-Request header — a form post from another
// site carries the cookie but can set neither (a custom header needs a CORS preflight, which only
// the cluster's own dashboards pass). Each state-changing request that got past all that — and its
// schema and the limiter — is written to the audit trail before it runs (../audit/record-first.ts).
// A request the guard refuses (no identity, cross-site, a role too low) never is: it is counted and
// logged like any refusal (../refusals.ts), so nobody can fill the trail with refusals and push the
// real entries out. `req.identity` is set only once the role allows the route.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequestError, ErrorCodes } from '../../errors.ts';
import { type AuthStore, unauthenticated } from './auth-store.ts';
import { type Identity, roleAllows } from './roles.ts';

export const REQUEST_HEADER = 'x-coolctl-request';
export const SESSION_COOKIE_NAME = 'coolctl_session';
const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

export function changesState(method: string): boolean {
  return !READS.has(method);
}

export interface GuardOptions {
  auth: AuthStore;
}

function identify(req: FastifyRequest, auth: AuthStore): Identity | null {
  const h = req.headers.authorization;
  if (typeof h === 'string' && h !== '') {
    const m = /^Bearer\s+(\S+)$/i.exec(h);
    return m ? auth.authenticate(m[1]!) : null;
  }
  const cookie = req.cookies?.[SESSION_COOKIE_NAME];
  if (!cookie) return null;
  const id = auth.authenticate(cookie);
  return id?.via === 'session' ? id : null;
}

function crossSiteProblem(req: FastifyRequest, viaBearer: boolean): string | null {
  const hasBody =
    Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
  const type = String(req.headers['content-type'] ?? '')
    .split(';')[0]!
    .trim()
    .toLowerCase();
  if (hasBody && type !== 'application/json')
    return `send the body as application/json (got "${type || 'none'}")`;
  if (!viaBearer && req.headers[REQUEST_HEADER] === undefined)
    return `send the ${REQUEST_HEADER} header (any value) or an Authorization: Bearer token`;
  return null;
}

async function guardPlugin(app: FastifyInstance, opts: GuardOptions): Promise<void> {
  const { auth } = opts;
  app.decorateRequest('identity', null);
  app.decorateRequest('junk', false);

  app.addHook('onRequest', async (req) => {
    if (req.method === 'OPTIONS' || req.is404) return; // CORS preflight (@fastify/cors), unknown routes
    const access = req.routeOptions.config?.access ?? 'admin';
    let id: Identity | null = null;
    if (access !== 'public') {
      id = identify(req, auth);
      if (!id) {
        auth.authFailed('unauthenticated');
        throw unauthenticated();
      }
    }
    if (changesState(req.method)) {
      const problem = crossSiteProblem(req, /^Bearer\s/i.test(req.headers.authorization ?? ''));
      if (problem) {
        auth.authFailed('cross_site');
        throw new BadRequestError(
          ErrorCodes.CROSS_SITE,
          `${req.method} ${req.routeOptions.url}: refused as a possible cross-site request`,
          [problem],
          problem.startsWith('send the body') ? 415 : 403,
        );
      }
    }
    if (!id || access === 'public') return;
    if (!roleAllows(id.role, access)) {
      auth.authFailed('forbidden');
      throw new BadRequestError(
        ErrorCodes.FORBIDDEN,
        `${req.method} ${req.routeOptions.url} needs the ${access} role; ${id.user} is ${id.role}`,
        ['ask an admin for the role, or use another account'],
        403,
      );
    }
    req.identity = id;
  });
}

Object.assign(guardPlugin, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'coolctl-guard',
});
export const guard = guardPlugin;
