// Who may call what, checked once for every route (registered without encapsulation so it sees
// them all): a route's `config.access` names the least role it needs (none declared: admin, so a
// new route is closed until someone opens it); `public` routes need no identity. The identity comes
// from `Authorization: Bearer <token>` or the dashboard's session cookie. A state-changing request
// (any method but GET/HEAD/OPTIONS) must also be one a cross-site page cannot send: a body only as
// JSON, and either the bearer token or the X-Coolctl-Request header — a form post from another
// site carries the cookie but can set neither (a custom header needs a CORS preflight, which only
// the cluster's own dashboards pass). Without a bearer token it must also come from the cluster's
// own dashboards by what the browser says: an `Origin` that is a member's API origin or names the
// Host it was sent to, or `Sec-Fetch-Site: same-origin` (this node's page, at whatever address or
// proxy it was opened); with neither header (curl, old tools) no page sent it. Each
// state-changing request that got past all that — and its schema and the limiter — is written to
// the audit trail before it runs (../audit/record-first.ts).
// A request the guard refuses (no identity, cross-site, a role too low) never is: it is counted and
// logged like any refusal (../refusals.ts), so nobody can fill the trail with refusals and push the
// real entries out. `req.identity` is set only once the role allows the route.
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BadRequestError, ErrorCodes } from '../../errors.ts';
import { quoted } from '../request-schema.ts';
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
  /** Whether `origin` is one of the cluster's own (its members' API origins; CORS allows the same). None when not given. */
  memberOrigin?: (origin: string) => boolean;
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

/**
 * Why a request that is not a bearer token's comes from another origin's page, or null. The browser
 * sets both headers and no page can: `Sec-Fetch-Site: same-origin` is this node's own page as the
 * browser reached it (a DNS name or a reverse proxy the node cannot know of — the request-side
 * twin of the page's CSP `'self'`); a member's API origin is the cluster's dashboard on another
 * node. Browsers send `Origin` on every POST, PUT, PATCH and DELETE; without it, `Sec-Fetch-Site`
 * alone says another origin sent it. Browsers send `Sec-Fetch-Site` only over HTTPS and to
 * localhost, so an `Origin` naming the host the request was sent to (Host) is the node's own page
 * too: a plain-HTTP page at a name no member advertises.
 */
function foreignOrigin(req: FastifyRequest, memberOrigin: (origin: string) => boolean): string | null {
  const fetchSite = req.headers['sec-fetch-site'];
  if (fetchSite === 'same-origin') return null;
  const origin = req.headers.origin;
  if (origin !== undefined) {
    if (memberOrigin(origin) || sameHost(origin, req.headers.host)) return null;
    return `the page that sent it is at "${quoted(origin, 100)}", not a dashboard of this cluster: open the dashboard at a member's API address (GET /api/v1/cluster) or over HTTPS`;
  }
  if (fetchSite === 'cross-site' || fetchSite === 'same-site')
    return `the browser says a page of another origin sent it (Sec-Fetch-Site: ${fetchSite})`;
  return null;
}

/**
 * Whether `origin` names the host the request was sent to (its Host header): the node's own page
 * opened over plain HTTP at a name no member advertises, where browsers send no Sec-Fetch-Site.
 * Another site's page has its own host in Origin. A name made to point at the node (DNS rebinding)
 * matches too, but its page has no session cookie for it, and this rule guards cookie sessions only.
 */
function sameHost(origin: string, host: string | undefined): boolean {
  if (!host) return false;
  try {
    return new URL(origin).host === new URL(`http://${host}`).host;
  } catch {
    return false;
  }
}

function crossSiteProblem(
  req: FastifyRequest,
  viaBearer: boolean,
  memberOrigin: (origin: string) => boolean,
): string | null {
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
  return viaBearer ? null : foreignOrigin(req, memberOrigin);
}

async function guardPlugin(app: FastifyInstance, opts: GuardOptions): Promise<void> {
  const { auth } = opts;
  const memberOrigin = opts.memberOrigin ?? (() => false);
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
      const problem = crossSiteProblem(req, /^Bearer\s/i.test(req.headers.authorization ?? ''), memberOrigin);
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
    identifiedRequests.add(req.raw);
  });
}

/**
 * The requests (node's) the guard let in with an identity: a connection that only ever carried
 * requests without one holds its slot only until someone needs it (../connection-limits.ts).
 */
const identifiedRequests = new WeakSet<IncomingMessage>();

export function carriedIdentity(req: IncomingMessage): boolean {
  return identifiedRequests.has(req);
}

Object.assign(guardPlugin, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'coolctl-guard',
});
export const guard = guardPlugin;
