// Signing in and out, and the admin's users and API tokens. Sign-in (public, rate-limited per
// address) checks the name and password against the scrypt hash and opens a session: a cookie for
// the dashboard (HttpOnly, SameSite=Strict, Secure with TLS), or with `as: "token"` the session
// token itself for the CLI. API tokens are shown once, stored hashed, expire, and are revocable; a
// revoke reaches every node through the etcd watch (./auth/auth-store.ts). A sign-in and a sign-out
// are audited as operator actions (../audit/record-first.ts); a failed sign-in as a `failed-sign-in` entry,
// one per name and address a minute (../audit/audit-trail.ts).
import { type FastifyPluginAsyncTypebox, Type as T } from '@fastify/type-provider-typebox';
import { MIN_PASSWORD_CHARS, USER_NAME } from '../../config/user-rules.ts';
import { BadRequestError, ErrorCodes } from '../../errors.ts';
import type { ApiDeps } from '../api-deps.ts';
import { SignInLimitedError } from '../auth/auth-store.ts';
import { SESSION_COOKIE_NAME as SESSION_COOKIE } from '../auth/guard.ts';
import { ROLES } from '../auth/roles.ts';
import { ErrorBody } from '../error-body.ts';
import { Name, NoBody, Text } from '../request-schema.ts';

export const DEFAULT_SESSION_TTL_S = 8 * 3600;
export const DEFAULT_TOKEN_TTL_S = 90 * 86_400;
const MAX_TOKEN_TTL_S = 366 * 86_400;

const RoleSchema = T.Union(ROLES.map((r) => T.Literal(r)));
const UserView = T.Object({ name: T.String(), role: T.String(), createdAtMs: T.Number() });
const TokenView = T.Object({
  id: T.String(),
  user: T.String(),
  kind: T.String(),
  label: T.String(),
  createdAtMs: T.Number(),
  expiresAtMs: T.Number(),
});
const Refusals = {
  400: ErrorBody,
  401: ErrorBody,
  403: ErrorBody,
  404: ErrorBody,
  409: ErrorBody,
  429: ErrorBody,
};

export const authRoutes: FastifyPluginAsyncTypebox<ApiDeps> = async (app, deps) => {
  const { auth } = deps;
  const sessionTtlS = deps.security?.sessionTtlS ?? DEFAULT_SESSION_TTL_S;

  app.post(
    '/api/v1/auth/sign-in',
    {
      config: {
        access: 'public',
        rateLimit: { max: deps.security?.signInsPerMinute ?? 10, timeWindow: 60_000, hook: 'onRequest' },
      },
      schema: {
        description: `Signs in with a name and password. Answers a session cookie (${SESSION_COOKIE}: HttpOnly, SameSite=Strict, Secure over TLS) that expires after ${DEFAULT_SESSION_TTL_S / 3600} h by default, or with \`as: "token"\` the session token itself (for the CLI). Wrong name or password: 401, the same answer whether or not the user exists. Rate-limited per client address and per name (429 with Retry-After).`,
        body: T.Object(
          {
            name: Text({ minLength: 1, maxLength: 64 }),
            password: T.String({ minLength: 1, maxLength: 1024 }),
            as: T.Optional(T.Union([T.Literal('cookie'), T.Literal('token')])),
          },
          { additionalProperties: false },
        ),
        response: {
          200: T.Object({
            user: T.String(),
            role: T.String(),
            expiresAtMs: T.Number(),
            token: T.Optional(T.String({ description: 'with `as: "token"` only' })),
          }),
          ...Refusals,
        },
      },
    },
    async (req, reply) => {
      const user = await auth.verify(req.body.name, req.body.password).catch(async (err: unknown) => {
        const limited = err instanceof SignInLimitedError;
        if (limited) reply.header('retry-after', String(err.retryAfterS));
        if (limited || (err as { code?: unknown }).code === ErrorCodes.UNAUTHENTICATED)
          await deps.audit.recordFailedSignIn({
            // People type their password into the name field: only a name that is a user is kept.
            name: auth.hasUser(req.body.name) ? req.body.name : '(no such user)',
            clientIp: req.ip,
            node: deps.node,
            reason: limited ? 'limited' : 'wrong name or password',
          });
        throw err;
      });
      const { token, record } = await auth.issue(user.name, 'session', sessionTtlS * 1000);
      req.identity = { user: user.name, role: user.role, via: 'session', tokenId: record.id };
      const body = { user: user.name, role: user.role, expiresAtMs: record.expiresAtMs };
      if (req.body.as === 'token') return { ...body, token };
      reply.setCookie(SESSION_COOKIE, token, {
        path: '/',
        httpOnly: true,
        sameSite: 'strict',
        secure: deps.security?.secureCookies ?? false,
        maxAge: sessionTtlS,
      });
      return body;
    },
  );

  app.post(
    '/api/v1/auth/sign-out',
    {
      config: { access: 'viewer' },
      schema: {
        description:
          'Ends this session (or revokes the token sent, and the session cookie sent beside it) on every node.',
        body: NoBody,
        response: { 200: T.Object({ signedOut: T.Boolean() }), ...Refusals },
      },
    },
    async (req, reply) => {
      if (req.identity) await auth.revoke(req.identity.tokenId);
      // The identity is the bearer token when one is sent; the session cookie beside it, which this
      // answer drops from the browser, must end too, not live on in etcd for whoever copied it.
      const cookie = req.cookies?.[SESSION_COOKIE];
      const session = cookie ? auth.authenticate(cookie) : null;
      if (session?.via === 'session' && session.tokenId !== req.identity?.tokenId)
        await auth.revoke(session.tokenId);
      reply.clearCookie(SESSION_COOKIE, {
        path: '/',
        httpOnly: true,
        sameSite: 'strict',
        secure: deps.security?.secureCookies ?? false,
      });
      return { signedOut: true };
    },
  );

  app.get(
    '/api/v1/auth/me',
    {
      config: { access: 'viewer' },
      schema: {
        description: 'Who this request is signed in as, and the role.',
        response: {
          200: T.Object({
            user: T.String(),
            role: RoleSchema,
            via: T.Union([T.Literal('token'), T.Literal('session')]),
          }),
          ...Refusals,
        },
      },
    },
    async (req) => ({ user: req.identity?.user, role: req.identity?.role, via: req.identity?.via }),
  );

  app.get(
    '/api/v1/users',
    {
      config: { access: 'admin' },
      schema: {
        description: 'The cluster’s users and their roles (never their password hashes).',
        response: { 200: T.Object({ users: T.Array(UserView) }), ...Refusals },
      },
    },
    async () => ({ users: auth.listUsers() }),
  );

  app.post(
    '/api/v1/users',
    {
      config: { access: 'admin' },
      schema: {
        description: `Adds a user with a role (viewer, operator, admin) and a password of at least ${MIN_PASSWORD_CHARS} characters (stored as an scrypt hash).`,
        body: T.Object(
          {
            name: T.String({ pattern: USER_NAME }),
            role: RoleSchema,
            password: T.String({ minLength: MIN_PASSWORD_CHARS, maxLength: 1024 }),
          },
          { additionalProperties: false },
        ),
        response: { 200: UserView, ...Refusals },
      },
    },
    async (req) => auth.addUser(req.body.name, req.body.role, req.body.password),
  );

  app.delete(
    '/api/v1/users/:name',
    {
      config: { access: 'admin' },
      schema: {
        description: 'Removes a user and revokes every token and session of theirs, on every node.',
        params: T.Object({ name: Name }),
        body: NoBody,
        response: { 200: T.Object({ removed: T.String() }), ...Refusals },
      },
    },
    async (req) => {
      if (req.params.name === req.identity?.user)
        throw new BadRequestError(
          ErrorCodes.BAD_REQUEST,
          'you cannot remove yourself',
          ['ask another admin'],
          409,
        );
      if (!(await auth.removeUser(req.params.name)))
        throw new BadRequestError(ErrorCodes.BAD_REQUEST, `no user "${req.params.name}"`, [], 404);
      return { removed: req.params.name };
    },
  );

  app.get(
    '/api/v1/tokens',
    {
      config: { access: 'admin' },
      schema: {
        description: 'API tokens and open sessions: owner, label, expiry (never the secret).',
        response: { 200: T.Object({ tokens: T.Array(TokenView) }), ...Refusals },
      },
    },
    async () => ({ tokens: auth.listTokens() }),
  );

  app.post(
    '/api/v1/tokens',
    {
      config: { access: 'admin' },
      schema: {
        description: `Creates an API token for a user (default: the caller) that acts with that user’s role and expires after ttlS (default ${DEFAULT_TOKEN_TTL_S / 86_400} days). The token is in this answer only; it is stored hashed.`,
        body: T.Object(
          {
            user: T.Optional(T.String({ pattern: USER_NAME })),
            label: Text({ minLength: 1, maxLength: 64 }),
            ttlS: T.Optional(T.Integer({ minimum: 60, maximum: MAX_TOKEN_TTL_S })),
          },
          { additionalProperties: false },
        ),
        response: { 200: T.Object({ token: T.String(), ...TokenView.properties }), ...Refusals },
      },
    },
    async (req) => {
      const user = req.body.user ?? req.identity?.user ?? '';
      if (!auth.hasUser(user))
        throw new BadRequestError(ErrorCodes.BAD_REQUEST, `no user "${user}"`, ['add the user first'], 404);
      const { token, record } = await auth.issue(
        user,
        'token',
        (req.body.ttlS ?? DEFAULT_TOKEN_TTL_S) * 1000,
        req.body.label,
      );
      return { token, ...record };
    },
  );

  app.delete(
    '/api/v1/tokens/:tokenId',
    {
      config: { access: 'admin' },
      schema: {
        description: 'Revokes a token or session; every node refuses it within about a second.',
        params: T.Object({ tokenId: T.String({ pattern: '^[0-9a-f]{16}$' }) }),
        body: NoBody,
        response: { 200: T.Object({ revoked: T.String() }), ...Refusals },
      },
    },
    async (req) => {
      if (!(await auth.revoke(req.params.tokenId)))
        throw new BadRequestError(ErrorCodes.BAD_REQUEST, `no token "${req.params.tokenId}"`, [], 404);
      return { revoked: req.params.tokenId };
    },
  );
};
