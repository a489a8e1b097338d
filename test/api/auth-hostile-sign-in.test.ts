// Guessing one account's password from many addresses: the per-address limit alone let a host that
// takes many addresses (every free one of the hall's subnet) try as fast as the node hashes. Each node also limits the
// attempts per name (any name, so the limit tells nothing about who exists), counted before the hash
// so a parallel burst gets no further; the account's owner is told plainly why and for how long; and
// nothing the probes send — passwords, a password typed as a name, tokens — reaches a log line.
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { AuthStore, SIGN_IN_NAME_WINDOW_MS, SIGN_INS_PER_NAME } from '../../src/api/auth/auth-store.ts';
import { quietLogger } from '../helpers.ts';
import { TEST_PASSWORD } from '../support/api-auth.ts';
import { MemoryKv } from '../support/memory-kv.ts';
import { type ApiNode, apiNode } from './api-node.ts';

const open: ApiNode[] = [];
afterEach(async () => {
  for (const n of open.splice(0)) await n.close();
});

const GUESS = 'Tr0ub4dor&3-guess';
/** What people type into the name field by mistake: their password. */
const PASSWORD_AS_NAME = 'hunter2hunter2';

function signIn(n: ApiNode, name: string, password: string, remoteAddress: string) {
  return n.app.inject({
    method: 'POST',
    url: '/api/v1/auth/sign-in',
    headers: { authorization: '', 'content-type': 'application/json', 'x-coolctl-request': '1' },
    payload: JSON.stringify({ name, password, as: 'token' }),
    remoteAddress,
  });
}

describe('sign-in guessing from many addresses', () => {
  it('limits the attempts per name on a node, in a parallel burst too, and tells the owner why', async () => {
    const n = await apiNode();
    open.push(n);
    // One attempt from each of 50 addresses at once: each address is far under its own limit.
    const burst = await Promise.all(
      Array.from({ length: 50 }, (_, i) => signIn(n, 'admin', `${GUESS}${i}`, `10.3.0.${i + 1}`)),
    );
    const codes = burst.map((r) => r.statusCode);
    expect(codes.filter((c) => c === 401)).toHaveLength(SIGN_INS_PER_NAME);
    expect(codes.filter((c) => c === 429)).toHaveLength(50 - SIGN_INS_PER_NAME);
    // The owner, from an address of their own and with the right password: a clear answer, not
    // "wrong name or password".
    const owner = await signIn(n, 'admin', TEST_PASSWORD, '10.1.1.1');
    expect(owner.statusCode).toBe(429);
    expect(owner.json()).toMatchObject({ error: 'COOLCTL_E_RATE_LIMITED' });
    expect(owner.json().message).toMatch(/too many sign-in attempts for this name.*retry in \d+ s/);
    const retryAfterS = Number(owner.headers['retry-after']);
    expect(retryAfterS).toBeGreaterThan(0);
    expect(retryAfterS).toBeLessThanOrEqual(SIGN_IN_NAME_WINDOW_MS / 1000);
    // Other accounts are untouched, and an API token of the limited one still works.
    expect((await signIn(n, 'viewer', TEST_PASSWORD, '10.1.1.2')).statusCode).toBe(200);
    expect((await n.app.inject({ url: '/api/v1/auth/me', headers: n.as('admin') })).statusCode).toBe(200);
    // Counted, and logged once for the burst, naming the account.
    expect(await n.count('coolctl_api_auth_failures_total', { reason: 'sign_in_limited' })).toBe(
      50 - SIGN_INS_PER_NAME + 1,
    );
    const limited = n.lines.filter((l) => String(l.msg).includes('attempts for one name over the limit'));
    expect(limited).toHaveLength(1);
    expect(limited[0]).toMatchObject({ user: 'admin', level: 40 });
  });

  it('treats a name nobody has the same way, and never logs what was typed as a name', async () => {
    const n = await apiNode();
    open.push(n);
    const codes: number[] = [];
    for (let i = 0; i < SIGN_INS_PER_NAME + 2; i++)
      codes.push((await signIn(n, PASSWORD_AS_NAME, GUESS, `10.2.0.${i + 1}`)).statusCode);
    expect(codes).toEqual([...Array(SIGN_INS_PER_NAME).fill(401), 429, 429]);
    const logs = JSON.stringify(n.lines);
    expect(logs).toContain('attempts for one name over the limit');
    for (const secret of [PASSWORD_AS_NAME, GUESS, TEST_PASSWORD, ...Object.values(n.auth.tokens)])
      expect(logs).not.toContain(secret);
  });

  it('a success starts the count again, and the window ends on the monotonic clock', async () => {
    let monoMs = 0;
    const store = new AuthStore({
      kv: new MemoryKv(),
      prefix: '/c',
      logger: quietLogger,
      registry: new Registry(),
      monotonicNow: () => monoMs,
      // The wall clock stepped back a day must not stretch the window.
      now: () => Date.now() - 86_400_000,
    });
    await store.start();
    await store.addUser('alice', 'operator', TEST_PASSWORD);
    const wrong = () => store.verify('alice', GUESS);
    for (let i = 0; i < SIGN_INS_PER_NAME - 1; i++)
      await expect(wrong()).rejects.toMatchObject({ httpStatus: 401 });
    await expect(store.verify('alice', TEST_PASSWORD)).resolves.toMatchObject({ name: 'alice' });
    for (let i = 0; i < SIGN_INS_PER_NAME; i++)
      await expect(wrong()).rejects.toMatchObject({ httpStatus: 401 });
    await expect(store.verify('alice', TEST_PASSWORD)).rejects.toMatchObject({ httpStatus: 429 });
    monoMs += SIGN_IN_NAME_WINDOW_MS;
    await expect(store.verify('alice', TEST_PASSWORD)).resolves.toMatchObject({ name: 'alice' });
    await store.stop();
  });
});

describe('sign-out', () => {
  it('ends the session cookie sent beside a bearer token, not only the token', async () => {
    const n = await apiNode();
    open.push(n);
    const signedIn = await n.app.inject({
      method: 'POST',
      url: '/api/v1/auth/sign-in',
      headers: { authorization: '', 'content-type': 'application/json', 'x-coolctl-request': '1' },
      payload: JSON.stringify({ name: 'operator', password: TEST_PASSWORD }),
    });
    const cookie = String(signedIn.headers['set-cookie']).split(';')[0]!;
    const me = (headers: Record<string, string>) =>
      n.app.inject({ url: '/api/v1/auth/me', headers: { authorization: '', ...headers } });
    expect((await me({ cookie })).statusCode).toBe(200);
    const token = (await n.auth.auth.issue('viewer', 'token', 60_000, 'cli')).token;
    const out = await n.app.inject({
      method: 'POST',
      url: '/api/v1/auth/sign-out',
      headers: { authorization: `Bearer ${token}`, cookie },
    });
    expect(out.statusCode).toBe(200);
    expect(String(out.headers['set-cookie'])).toMatch(
      /coolctl_session=;.*Max-Age=0.*HttpOnly.*SameSite=Strict/,
    );
    expect((await me({ authorization: `Bearer ${token}` })).statusCode).toBe(401);
    // Copied before the sign-out, the cookie is worth nothing after it.
    expect((await me({ cookie })).statusCode).toBe(401);
  });
});
