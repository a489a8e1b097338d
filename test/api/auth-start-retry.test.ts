// A node's start waits out an etcd that answers slowly or not at all for a while: the auth store's
// first reads are retried with backoff (only errors that say retrying can help), so one slow answer
// does not make the node exit; an etcd that never answers still fails the start, by its deadline.
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { AuthStore } from '../../src/api/auth/auth-store.ts';
import { ClusterError, ClusterErrorCodes } from '../../src/cluster/errors.ts';
import { BadRequestError, ErrorCodes } from '../../src/errors.ts';
import { quietLogger } from '../helpers.ts';
import { MemoryKv } from '../support/memory-kv.ts';

const PREFIX = '/coolctl';

/** A store whose first `failures` list() calls fail with `error()`. */
class FlakyKv extends MemoryKv {
  lists = 0;
  failures: number;
  private readonly error: () => Error;
  constructor(failures: number, error: () => Error) {
    super();
    this.failures = failures;
    this.error = error;
  }
  override async list(...args: Parameters<MemoryKv['list']>) {
    this.lists++;
    if (this.failures > 0) {
      this.failures--;
      throw this.error();
    }
    return super.list(...args);
  }
}

const timeout = () =>
  new ClusterError(ClusterErrorCodes.ETCD_TIMEOUT, 'etcd list: no answer within 500 ms', { retryable: true });

async function storeWithAdmin(kv: MemoryKv): Promise<void> {
  const seed = new AuthStore({ kv, prefix: PREFIX, logger: quietLogger, registry: new Registry() });
  await seed.start();
  await seed.addUser('admin', 'admin', 'correct-horse-battery');
  await seed.stop();
}

describe('auth store start', () => {
  it('waits out etcd timeouts at start and then reads every user', async () => {
    const kv = new FlakyKv(0, timeout);
    await storeWithAdmin(kv);
    kv.failures = 3;
    const lists = kv.lists;
    const auth = new AuthStore({ kv, prefix: PREFIX, logger: quietLogger, registry: new Registry() });
    await auth.start(AbortSignal.timeout(10_000));
    expect(auth.empty).toBe(false);
    expect((await auth.verify('admin', 'correct-horse-battery')).name).toBe('admin');
    // Three failed reads, then the two (users, tokens) that succeeded, at least.
    expect(kv.lists - lists).toBeGreaterThanOrEqual(5);
    await auth.stop();
  });

  it('fails at once on an error retrying cannot help', async () => {
    const kv = new FlakyKv(1, () => new BadRequestError(ErrorCodes.BAD_REQUEST, 'refused', []));
    const auth = new AuthStore({ kv, prefix: PREFIX, logger: quietLogger, registry: new Registry() });
    await expect(auth.start(AbortSignal.timeout(10_000))).rejects.toThrow('refused');
    // One read of users and tokens together, and no second attempt.
    expect(kv.lists).toBe(2);
    await auth.stop();
  });

  it('gives up with the last etcd error when etcd never answers before the start deadline', async () => {
    const kv = new FlakyKv(Number.POSITIVE_INFINITY, timeout);
    const auth = new AuthStore({ kv, prefix: PREFIX, logger: quietLogger, registry: new Registry() });
    const t0 = performance.now();
    await expect(auth.start(AbortSignal.timeout(600))).rejects.toThrow('no answer within 500 ms');
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(kv.lists).toBeGreaterThan(1);
    await auth.stop();
  });
});
