// A sign-in for a name that does not exist does the same work as a wrong password, from the first
// one after start: the decoy hash it checks against is made when the auth store starts, not by the
// first unknown name (which would then take one scrypt more and tell that the name is unknown).
// Counted in scrypt runs, not timed: speed lives in bench/.
import * as crypto from 'node:crypto';
import { Registry } from 'prom-client';
import { describe, expect, it, vi } from 'vitest';
import { AuthStore } from '../../src/api/auth/auth-store.ts';
import { quietLogger } from '../helpers.ts';
import { TEST_PASSWORD } from '../support/api-auth.ts';
import { MemoryKv } from '../support/memory-kv.ts';

vi.mock('node:crypto', async (original) => {
  const m = await original<typeof import('node:crypto')>();
  return { ...m, scrypt: vi.fn(m.scrypt) };
});

describe('sign-in of an unknown name', () => {
  it('runs as many scrypts as a wrong password, the first time after start too', async () => {
    const scrypt = vi.mocked(crypto.scrypt);
    const store = new AuthStore({
      kv: new MemoryKv(),
      prefix: '/c',
      logger: quietLogger,
      registry: new Registry(),
    });
    await store.start();
    await store.addUser('alice', 'operator', TEST_PASSWORD);
    const runs = async (name: string) => {
      scrypt.mockClear();
      await expect(store.verify(name, 'not the password')).rejects.toThrow(/sign in/);
      return scrypt.mock.calls.length;
    };
    const unknownFirst = await runs('nobody');
    const wrongPassword = await runs('alice');
    const unknownAgain = await runs('nobody-else');
    expect(wrongPassword).toBe(1);
    expect(unknownFirst).toBe(wrongPassword);
    expect(unknownAgain).toBe(wrongPassword);
    await store.stop();
  });
});
