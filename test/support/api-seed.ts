// An admin and an API token for a test cluster, written straight into etcd before the controllers
// start (as `coolctl user add` + `coolctl token create` would leave them), so a harness has its
// credentials at once and every request it sends can carry them. One scrypt per test process.
import { hashPassword, newToken } from '../../src/api/auth/credentials.ts';
import { etcdctl } from './etcd-cluster.ts';

export const HARNESS_ADMIN = 'harness';
export const HARNESS_PASSWORD = 'harness password 1234';

export interface SeededAdmin {
  user: string;
  password: string;
  token: string;
  /** Headers for fetch(): the bearer token. */
  headers: { authorization: string };
}

let hash: Promise<string> | undefined;

/** `ctl` runs etcdctl with whatever the cluster needs (a secured one: certificates and a user). */
export async function seedApiAdmin(
  endpoints: string[],
  prefix: string,
  ctl: (args: string[]) => Promise<string> = (args) => etcdctl(endpoints, args),
): Promise<SeededAdmin> {
  hash ??= hashPassword(HARNESS_PASSWORD);
  const t = newToken();
  const at = Date.now();
  await ctl([
    'put',
    `${prefix}/auth/users/${HARNESS_ADMIN}`,
    JSON.stringify({ name: HARNESS_ADMIN, role: 'admin', passwordHash: await hash, createdAtMs: at }),
  ]);
  await ctl([
    'put',
    `${prefix}/auth/tokens/${t.id}`,
    JSON.stringify({
      id: t.id,
      user: HARNESS_ADMIN,
      kind: 'token',
      label: 'test harness',
      hash: t.hash,
      createdAtMs: at,
      expiresAtMs: at + 7 * 86_400_000,
    }),
  ]);
  return {
    user: HARNESS_ADMIN,
    password: HARNESS_PASSWORD,
    token: t.token,
    headers: { authorization: `Bearer ${t.token}` },
  };
}
