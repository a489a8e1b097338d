// `npm run bench -- api [requests]`: what authentication costs a request, and what the sign-in
// limiter lets through. Two servers in this process on loopback, same run: the API as the daemon
// builds it (guard, CORS, cookie, rate limits; a bearer token checked on every request) and the same
// route plugin on a bare fastify (no auth). Sequential GET /api/v1/cluster over keep-alive,
// one of each in turn so both see the same machine; p50/p99 of each and the ratio (goal ≤ 1.2).
// Then sign-ins from one address until the limiter answers 429, and the time one scrypt check takes.
// The users and tokens live in an in-memory KV (a request never reads etcd: the store is a copy).
import Fastify from 'fastify';
import { Registry } from 'prom-client';
import { buildApp } from '../src/api/app.ts';
import { clusterRoutes } from '../src/api/routes/cluster.ts';
import { quietLogger } from '../test/helpers.ts';
import { apiAuth, TEST_PASSWORD } from '../test/support/api-auth.ts';
import { FakeCluster } from '../test/support/fake-cluster.ts';

const ROUNDS = 10;

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

export async function run(args: string[]): Promise<Record<string, number>> {
  const total = Number(args[0] ?? 4000);
  const cluster = new FakeCluster({ 'zone-1': ['n1', 1], 'zone-2': ['n1', 2], 'zone-3': ['n2', 3] });
  cluster.members.push({ node: 'n1', apiUrl: 'http://127.0.0.1:1', startedAtMs: 1 });
  const leadership = cluster.node('n1');
  const registry = new Registry();
  const auth = await apiAuth(registry, quietLogger);
  const deps = {
    auth: auth.auth,
    audit: auth.audit,
    node: 'n1',
    version: 'bench',
    leadership,
    registry,
    groups: ['zone-1', 'zone-2', 'zone-3'],
    drivers: new Map(),
    logger: quietLogger,
    startedAtMs: Date.now(),
  };
  const secured = await buildApp(deps);
  const bare = Fastify({ logger: false });
  await bare.register(clusterRoutes, deps);
  const on = await secured.listen({ host: '127.0.0.1', port: 0 });
  const off = await bare.listen({ host: '127.0.0.1', port: 0 });
  const headers = auth.as('viewer');

  const time = async (url: string, h: Record<string, string>): Promise<number> => {
    const t0 = performance.now();
    const res = await fetch(url, { headers: h });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`${url} answered ${res.status}`);
    return performance.now() - t0;
  };
  // Warm both (JIT, connections).
  for (let i = 0; i < 200; i++) {
    await time(`${on}/api/v1/cluster`, headers);
    await time(`${off}/api/v1/cluster`, {});
  }
  const withAuth: number[] = [];
  const without: number[] = [];
  // One of each in turn, the order flipping every round, so neither side gets the quieter moments.
  const perRound = Math.ceil(total / ROUNDS);
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < perRound; i++) {
      if (r % 2 === 0) {
        withAuth.push(await time(`${on}/api/v1/cluster`, headers));
        without.push(await time(`${off}/api/v1/cluster`, {}));
      } else {
        without.push(await time(`${off}/api/v1/cluster`, {}));
        withAuth.push(await time(`${on}/api/v1/cluster`, headers));
      }
    }
  }
  withAuth.sort((a, b) => a - b);
  without.sort((a, b) => a - b);

  // Sign-ins from one address until the limiter refuses (wrong password: the same scrypt work).
  let allowed = 0;
  let scryptMs = 0;
  for (let i = 0; i < 100; i++) {
    const t0 = performance.now();
    const res = await fetch(`${on}/api/v1/auth/sign-in`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-coolctl-request': 'bench' },
      body: JSON.stringify({ name: 'viewer', password: i === 0 ? TEST_PASSWORD : 'wrong password' }),
    });
    await res.arrayBuffer();
    if (res.status === 429) break;
    if (i === 0) scryptMs = performance.now() - t0;
    allowed++;
  }
  await Promise.all([secured.close(), bare.close()]);
  await auth.auth.stop();
  const p99On = quantile(withAuth, 0.99);
  const p99Off = quantile(without, 0.99);
  return {
    requests_each: withAuth.length,
    p50_ms_auth_on: quantile(withAuth, 0.5),
    p50_ms_auth_off: quantile(without, 0.5),
    p99_ms_auth_on: p99On,
    p99_ms_auth_off: p99Off,
    p99_ratio_on_over_off: p99On / p99Off,
    signins_allowed_per_min_per_address: allowed,
    signin_ms: scryptMs,
  };
}
