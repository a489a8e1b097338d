// What an API test needs to call a secured API through inject(): an auth store and audit trail on
// an in-memory KV, one user per role, and a token for each; `as(role)` gives the headers.
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { AuditTrail } from '../../src/api/audit/audit-trail.ts';
import { AuthStore } from '../../src/api/auth/auth-store.ts';
import { hashPassword, newToken } from '../../src/api/auth/credentials.ts';
import { ROLES, type Role } from '../../src/api/auth/roles.ts';
import { MemoryKv } from './memory-kv.ts';

export const TEST_PASSWORD = 'correct horse battery';

export interface ApiAuth {
  kv: MemoryKv;
  auth: AuthStore;
  audit: AuditTrail;
  tokens: Record<Role, string>;
  /** Headers that authenticate as a user of `role`. */
  as(role: Role): { authorization: string };
}

/** One scrypt per test file, not one per user and test: the hash is the same for every seeded user. */
let passwordHash: Promise<string> | undefined;
const seeded = new WeakMap<MemoryKv, Promise<Record<Role, string>>>();

/** Users `viewer`, `operator` and `admin` (each with its role) and a token for each, once per KV. */
function seed(kv: MemoryKv, prefix: string): Promise<Record<Role, string>> {
  let s = seeded.get(kv);
  if (!s) {
    s = (async () => {
      passwordHash ??= hashPassword(TEST_PASSWORD);
      const hash = await passwordHash;
      const tokens = {} as Record<Role, string>;
      for (const role of ROLES) {
        await kv.put(
          `${prefix}/auth/users/${role}`,
          JSON.stringify({ name: role, role, passwordHash: hash, createdAtMs: Date.now() }),
        );
        const t = newToken();
        const at = Date.now();
        await kv.put(
          `${prefix}/auth/tokens/${t.id}`,
          JSON.stringify({
            id: t.id,
            user: role,
            kind: 'token',
            label: 'test',
            hash: t.hash,
            createdAtMs: at,
            expiresAtMs: at + 3_600_000,
          }),
        );
        tokens[role] = t.token;
      }
      return tokens;
    })();
    seeded.set(kv, s);
  }
  return s;
}

/**
 * One node's auth store and audit trail on `kv` (shared by the nodes of one fake cluster, as etcd
 * is), seeded with a user and token per role.
 */
export async function apiAuth(
  registry: Registry,
  logger: Logger,
  kv: MemoryKv = new MemoryKv(),
  prefix = '/coolctl',
): Promise<ApiAuth> {
  const tokens = await seed(kv, prefix);
  const auth = new AuthStore({ kv, prefix, logger, registry });
  await auth.start();
  const audit = new AuditTrail({ kv, prefix, logger, registry });
  return { kv, auth, audit, tokens, as: (role) => ({ authorization: `Bearer ${tokens[role]}` }) };
}

/**
 * Makes `app.inject` send `headers` unless a request sets its own: the API tests written before the
 * API needed an identity keep their shape and run as the given role.
 */
export function injectAs<A extends { inject: (...args: never[]) => unknown }>(
  app: A,
  headers: Record<string, string>,
): A {
  const inject = (app.inject as (o: unknown) => unknown).bind(app);
  (app as { inject: unknown }).inject = (opts: string | { headers?: Record<string, string> }) =>
    inject(
      typeof opts === 'string'
        ? { url: opts, headers }
        : { ...opts, headers: { ...headers, ...opts.headers } },
    );
  return app;
}
