// The member record's config hash after a hot reload: a write etcd refuses is tried again every 5 s
// (not on every tick) until it lands, with one warn line when it fails and one info line when it
// lands, so `coolctl status` never shows an old hash for good. Real 3-member etcd; etcd refuses the
// write here because the lease it names is gone; the clock is the test's.
import { afterEach, describe, expect, it } from 'vitest';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import type { SessionLease } from '../../src/cluster/etcd/etcd-session.ts';
import { MemberRecord } from '../../src/cluster/etcd/member-record.ts';
import { waitFor } from '../helpers.ts';
import { captureLogs } from '../support/log-lines.ts';
import { TEST_TIMING, useEtcdFixture } from './harness.ts';

const PREFIX = '/coolctl-test/member-record';
const fx = useEtcdFixture('member-record');
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('member record', () => {
  it('a config hash etcd refuses is written again every 5 s until it lands: one warn line, one info line', async () => {
    const client = createEtcdClient({
      ...fx.etcd.clientOptions(),
      callTimeoutMs: TEST_TIMING.etcdCallTimeoutMs,
    });
    cleanups.push(() => client.close());
    const grant = async (): Promise<SessionLease> => {
      const { ID } = await client.leaseClient.leaseGrant({ TTL: 30 });
      return { id: ID, hex: BigInt(ID).toString(16) };
    };
    const live = await grant();
    const gone = await grant();
    await client.leaseClient.leaseRevoke({ ID: gone.id });
    cleanups.push(() => client.leaseClient.leaseRevoke({ ID: live.id }).then(() => {}));

    // Every write the record asks etcd for, counted where it leaves for etcd.
    let puts = 0;
    const counted = new Proxy(client, {
      get(target, prop) {
        const v = Reflect.get(target, prop, target) as unknown;
        if (prop === 'put')
          return (key: string) => {
            puts++;
            return target.put(key);
          };
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const logs = captureLogs();
    let nowMs = 1_000;
    let lease = live;
    const stopping = new AbortController();
    cleanups.push(() => stopping.abort());
    const record = new MemberRecord({
      client: counted,
      prefix: PREFIX,
      node: 'n1',
      apiUrl: 'http://127.0.0.1:1',
      configHash: 'hash-a',
      callTimeoutMs: TEST_TIMING.etcdCallTimeoutMs,
      logger: logs.logger,
      now: () => nowMs,
      lease: () => lease,
      signal: stopping.signal,
      stopping: () => stopping.signal.aborted,
    });
    const shown = async (): Promise<unknown> => {
      const v = await client.get(`${PREFIX}/members/n1`).string();
      return v === null ? null : (JSON.parse(v) as { configHash?: string }).configHash;
    };
    const lines = (msg: string): number => logs.parsed().filter((l) => l.msg === msg).length;
    const failed = 'member record keeps the old config hash; retrying until etcd takes the write';
    const landed = 'member record shows the config hash it runs';

    await record.register(stopping.signal);
    expect(record.registered).toBe(true);
    expect(await shown()).toBe('hash-a');

    // A hot reload while etcd refuses the write: the record keeps the old hash, one warn line.
    lease = gone;
    puts = 0;
    record.setConfigHash('hash-b');
    await waitFor('the refused write logged', () => lines(failed) === 1);
    expect(logs.parsed().find((l) => l.msg === failed)).toMatchObject({ level: 40, retryMs: 5_000 });
    expect(puts).toBe(1);
    expect(await shown()).toBe('hash-a');

    // etcd would take it now, but the retry waits its 5 s: ticks before then write nothing.
    lease = live;
    nowMs += 4_999;
    for (let i = 0; i < 10; i++) record.publishConfigHash();
    expect(puts).toBe(1);

    nowMs += 1;
    record.publishConfigHash();
    expect(puts).toBe(2);
    await waitFor('the record shows the new hash', async () => (await shown()) === 'hash-b');
    await waitFor('its landing logged', () => lines(landed) === 1);
    expect(lines(failed)).toBe(1);

    // Landed: nothing pending, so later ticks write nothing.
    nowMs += 60_000;
    for (let i = 0; i < 10; i++) record.publishConfigHash();
    expect(puts).toBe(2);
  }, 30_000);
});
