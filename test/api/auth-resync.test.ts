// A node's auth store follows users and tokens by a watch and reads them all again whenever the
// watch is (re)confirmed, since events may have been missed. Two ways that re-read used to lose a
// token another node had just issued, so this node refused it (401) until its watch next
// reconnected: a re-read that failed (an etcd timeout under load) was never tried again, and a
// re-read whose answer came back after the token's event replaced the maps with that older answer.
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { AuthStore } from '../../src/api/auth/auth-store.ts';
import { ClusterError, ClusterErrorCodes } from '../../src/cluster/errors.ts';
import type { KvEntry, KvEvent } from '../../src/cluster/etcd/prefix-kv.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { MemoryKv } from '../support/memory-kv.ts';

const PREFIX = '/coolctl';
const PASSWORD = 'correct-horse-battery';

/** A MemoryKv whose watch resyncs on demand and can miss events; whose list() can fail or be held. */
class ResyncKv extends MemoryKv {
  readonly resyncs: (() => void)[] = [];
  failures = 0;
  lists = 0;
  answered = 0;
  /** While true, watches hear nothing (a watch that is down). */
  deaf = false;
  /** While set, list() reads at once but answers only when it resolves. */
  hold: Promise<void> | null = null;
  override async watch(prefix: string, on: (e: KvEvent) => void, resync?: () => void) {
    if (resync) this.resyncs.push(resync);
    return super.watch(prefix, (e) => {
      if (!this.deaf) on(e);
    });
  }
  override async list(...args: Parameters<MemoryKv['list']>): Promise<KvEntry[]> {
    this.lists++;
    if (this.failures > 0) {
      this.failures--;
      throw new ClusterError(ClusterErrorCodes.ETCD_TIMEOUT, 'etcd list: no answer within 500 ms', {
        retryable: true,
      });
    }
    const rows = await super.list(...args);
    if (this.hold) await this.hold;
    this.answered++;
    return rows;
  }
}

const stores: AuthStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.stop()));
});

function store(kv: ResyncKv): AuthStore {
  const s = new AuthStore({ kv, prefix: PREFIX, logger: quietLogger, registry: new Registry() });
  stores.push(s);
  return s;
}

/** This node (`here`) and another (`there`) on one kv with an admin; tokens are issued there. */
async function twoNodes(kv: ResyncKv) {
  const there = store(kv);
  await there.start();
  await there.addUser('admin', 'admin', PASSWORD);
  const here = store(kv);
  await here.start();
  return { here, there };
}

describe('auth store resync', () => {
  it('tries a failed re-read again until etcd answers, and then knows the tokens it missed', async () => {
    const kv = new ResyncKv();
    const { here, there } = await twoNodes(kv);
    // Issued while this node's watch is down: its event never reaches this node.
    kv.deaf = true;
    const { token } = await there.issue('admin', 'token', 3_600_000);
    await new Promise<void>((r) => setImmediate(r));
    kv.deaf = false;
    expect(here.authenticate(token)).toBeNull();
    // The watch is confirmed again; etcd times out three times before it answers.
    kv.failures = 3;
    const lists = kv.lists;
    kv.resyncs.at(-1)!();
    await waitFor(
      'the missed token known after the retries',
      () => here.authenticate(token)?.user === 'admin',
      {
        timeoutMs: 10_000,
      },
    );
    expect(kv.lists - lists).toBeGreaterThanOrEqual(5);
  });

  it('keeps a token whose event came while a re-read was out', async () => {
    const kv = new ResyncKv();
    const { here, there } = await twoNodes(kv);
    let release!: () => void;
    kv.hold = new Promise<void>((r) => {
      release = r;
    });
    const answered = kv.answered;
    // The re-read reads now (no token yet) and answers after the token's event has arrived.
    kv.resyncs.at(-1)!();
    const { token } = await there.issue('admin', 'token', 3_600_000);
    await waitFor('the token event seen', () => here.authenticate(token) !== null);
    kv.hold = null;
    release();
    await waitFor('the held re-read answered', () => kv.answered >= answered + 2);
    await new Promise<void>((r) => setImmediate(r));
    expect(here.authenticate(token)?.user).toBe('admin');
  });

  it('an etcd that times out every re-read for two minutes costs a line a minute, and the counter counts each', async () => {
    const kv = new ResyncKv();
    const lines: { msg: string; notLogged?: number }[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    let clockMs = 0;
    const registry = new Registry();
    const here = new AuthStore({ kv, prefix: PREFIX, logger, registry, monotonicNow: () => clockMs });
    stores.push(here);
    await here.start();
    lines.length = 0;
    // The watch is confirmed again every 5 s (a flapping link, an overloaded etcd) and each re-read
    // times out: 25 resyncs over two minutes, none answered.
    kv.failures = Number.MAX_SAFE_INTEGER;
    for (let i = 0; i <= 24; i++, clockMs += 5_000) {
      const lists = kv.lists;
      kv.resyncs.at(-1)!();
      await waitFor('the re-read tried and failed', () => kv.lists >= lists + 2);
    }
    // etcd answers again.
    kv.failures = 0;
    const answered = kv.answered;
    kv.resyncs.at(-1)!();
    await waitFor('the re-read answered', () => kv.answered >= answered + 2);
    await waitFor('the recovery logged', () => lines.some((l) => l.msg.startsWith('auth resync done')));
    await here.stop();

    const failed = lines.filter(
      (l) => l.msg.startsWith('auth resync') && !l.msg.startsWith('auth resync done'),
    );
    // at 0, 60 and 120 s: one at once, then one a minute saying how many were not logged
    expect(failed).toHaveLength(3);
    expect(failed.slice(1).every((l) => (l.notLogged ?? 0) > 0)).toBe(true);
    expect(lines.filter((l) => l.msg.startsWith('auth resync done'))).toHaveLength(1);
    const counted = (await registry.getSingleMetric('coolctl_auth_resync_failures_total')?.get())?.values[0]
      ?.value;
    expect(counted).toBeGreaterThanOrEqual(25);
  });
});
