import { describe, expect, it } from 'vitest';
import {
  CallLane,
  LaneCall,
  LinkMonitor,
  retry,
  SerialQueue,
  withDeadline,
  writeBudgetMs,
} from '../../src/devices/resilience.ts';
import { DeviceError, ErrorCodes } from '../../src/errors.ts';
import { Backoff } from '../../src/util/async.ts';

const never = () => new Promise<never>(() => {});

describe('withDeadline', () => {
  it('rejects a call that never answers with a retryable timeout', async () => {
    const err = await withDeadline('AHU-1', 'read', 30, undefined, never).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeviceError);
    expect((err as DeviceError).code).toBe(ErrorCodes.DEVICE_TIMEOUT);
    expect((err as DeviceError).retryable).toBe(true);
    expect((err as DeviceError).message).toBe('AHU-1: read: no answer within 30 ms');
  });

  it('rejects at once when the caller aborts, and says so', async () => {
    const ac = new AbortController();
    const p = withDeadline('AHU-1', 'write', 10_000, ac.signal, never);
    ac.abort(new Error('demoted'));
    const err = (await p.catch((e: unknown) => e)) as DeviceError;
    expect(err.code).toBe(ErrorCodes.DEVICE_ABORTED);
    expect(err.retryable).toBe(false);
  });

  it('passes results and errors through, and hands the signal to the call', async () => {
    expect(await withDeadline('d', 'x', 1000, undefined, async (s) => s.aborted)).toBe(false);
    await expect(
      withDeadline('d', 'x', 1000, undefined, async () => Promise.reject(new Error('boom'))),
    ).rejects.toThrow('boom');
  });
});

describe('SerialQueue', () => {
  it('runs one task at a time, in order', async () => {
    const q = new SerialQueue('d');
    const log: string[] = [];
    let running = 0;
    const task = (name: string) => async () => {
      running++;
      expect(running).toBe(1);
      log.push(`start ${name}`);
      await new Promise((r) => setImmediate(r));
      log.push(`end ${name}`);
      running--;
      return name;
    };
    const results = await Promise.all([q.run(task('a')), q.run(task('b')), q.run(task('c'))]);
    expect(results).toEqual(['a', 'b', 'c']);
    expect(log).toEqual(['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
  });

  it('keeps going after a failed task', async () => {
    const q = new SerialQueue('d');
    await expect(q.run(async () => Promise.reject(new Error('first')))).rejects.toThrow('first');
    expect(await q.run(async () => 2)).toBe(2);
  });

  it('settles every waiting task on close', async () => {
    const q = new SerialQueue('d');
    let release!: () => void;
    const first = q.run(() => new Promise<string>((r) => (release = () => r('done'))));
    await new Promise((r) => setImmediate(r)); // let the first task start
    const waiting = [q.run(async () => 1), q.run(async () => 2)].map((p) =>
      p.then(String, (e: DeviceError) => e.code),
    );
    q.close();
    expect(await Promise.all(waiting)).toEqual([ErrorCodes.DEVICE_CLOSED, ErrorCodes.DEVICE_CLOSED]);
    await expect(q.run(async () => 3)).rejects.toMatchObject({ code: ErrorCodes.DEVICE_CLOSED });
    release();
    expect(await first).toBe('done'); // the one already running finishes on its own deadline
  });
});

describe('CallLane', () => {
  const call = (what: string, signal?: AbortSignal) => new LaneCall(what, signal);
  const outcome = (p: Promise<unknown>) => p.then(String, (e: DeviceError) => e.code);

  it('runs calls one at a time, in order, the first at once when idle', async () => {
    const lane = new CallLane('d', 1000);
    const log: string[] = [];
    let running = 0;
    const body = (name: string) => async () => {
      running++;
      expect(running).toBe(1);
      log.push(`start ${name}`);
      await new Promise((r) => setImmediate(r));
      log.push(`end ${name}`);
      running--;
      return name;
    };
    const first = lane.run(call('a'), body('a'));
    expect(log).toEqual(['start a']); // started in the caller's tick
    const results = await Promise.all([
      first,
      lane.run(call('b'), body('b')),
      lane.run(call('c'), body('c')),
    ]);
    expect(results).toEqual(['a', 'b', 'c']);
    expect(log).toEqual(['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
    lane.close(new DeviceError(ErrorCodes.DEVICE_CLOSED, 'd', 'closed'));
  });

  it('settles each call at its deadline, tells the running body, and never starts a call whose deadline passed', async () => {
    const lane = new CallLane('d', 50);
    let told: DeviceError | undefined;
    let release!: () => void;
    const stuck = lane.run(call('stuck'), (c) => {
      c.onAbandon = (e) => {
        told = e;
      };
      return new Promise<string>((r) => (release = () => r('late')));
    });
    let laterStarted = false;
    const later = lane.run(call('later'), async () => {
      laterStarted = true;
      return 'ran';
    });
    const started = performance.now();
    expect(await outcome(stuck)).toBe(ErrorCodes.DEVICE_TIMEOUT);
    expect(await outcome(later)).toBe(ErrorCodes.DEVICE_TIMEOUT);
    expect(performance.now() - started).toBeLessThan(500);
    expect(told?.code).toBe(ErrorCodes.DEVICE_TIMEOUT);
    release();
    await new Promise((r) => setImmediate(r));
    expect(laterStarted).toBe(false);
    expect(await lane.run(call('next'), async () => 'ok')).toBe('ok');
    lane.close(new DeviceError(ErrorCodes.DEVICE_CLOSED, 'd', 'closed'));
  });

  it("ends a call on its caller's abort, and every pending call on close", async () => {
    const lane = new CallLane('d', 10_000);
    const never = () => new Promise<never>(() => {});
    const ac = new AbortController();
    const aborted = lane.run(call('a'), never);
    const waiting = [lane.run(call('b', ac.signal), never), lane.run(call('c'), never)];
    ac.abort(new Error('demoted'));
    expect(await outcome(waiting[0]!)).toBe(ErrorCodes.DEVICE_ABORTED);
    lane.close(new DeviceError(ErrorCodes.DEVICE_CLOSED, 'd', 'closed'));
    expect(await Promise.all([outcome(aborted), outcome(waiting[1]!)])).toEqual([
      ErrorCodes.DEVICE_CLOSED,
      ErrorCodes.DEVICE_CLOSED,
    ]);
    expect(await outcome(lane.run(call('d'), async () => 1))).toBe(ErrorCodes.DEVICE_CLOSED);
  });
});

describe('retry and backoff', () => {
  it('backs off exponentially with jitter, capped', () => {
    const b = new Backoff(100, 1000, () => 1);
    expect([b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([100, 200, 400, 800, 1000]);
    const low = new Backoff(100, 1000, () => 0);
    expect(low.next()).toBe(50);
  });

  it('retries retryable errors only, up to the attempt limit', async () => {
    let calls = 0;
    const timeout = new DeviceError(ErrorCodes.DEVICE_TIMEOUT, 'd', 't', { retryable: true });
    await expect(
      retry(
        async () => {
          calls++;
          throw timeout;
        },
        { attempts: 3, backoff: new Backoff(1, 2) },
      ),
    ).rejects.toBe(timeout);
    expect(calls).toBe(3);

    calls = 0;
    const fenced = new DeviceError(ErrorCodes.DEVICE_FENCED, 'd', 'stale epoch');
    await expect(
      retry(
        async () => {
          calls++;
          throw fenced;
        },
        { attempts: 3, backoff: new Backoff(1, 2) },
      ),
    ).rejects.toBe(fenced);
    expect(calls).toBe(1);

    calls = 0;
    const value = await retry(
      async () => {
        if (++calls < 2) throw timeout;
        return 'ok';
      },
      { attempts: 3, backoff: new Backoff(1, 2) },
    );
    expect(value).toBe('ok');
  });

  it('does not back off past a deadline: the last real error comes back at once', async () => {
    let calls = 0;
    const unreachable = new DeviceError(ErrorCodes.DEVICE_UNREACHABLE, 'd', 'refused', { retryable: true });
    const started = performance.now();
    await expect(
      retry(
        async () => {
          calls++;
          throw unreachable;
        },
        { attempts: 5, backoff: new Backoff(10_000, 10_000), deadlineMs: performance.now() + 1000 },
      ),
    ).rejects.toBe(unreachable);
    expect(calls).toBe(1);
    expect(performance.now() - started).toBeLessThan(500);
  });
});

describe('LinkMonitor', () => {
  it('goes up on success, degraded on a failure, down after the failure limit, up again on success', () => {
    let now = 0;
    const changes: string[] = [];
    const m = new LinkMonitor(
      { degradedAfterFailures: 1, downAfterFailures: 3, downAfterMs: 5000 },
      (from, to) => changes.push(`${from}->${to}`),
      () => now,
    );
    expect(m.state).toBe('down');
    m.success();
    m.failure('timeout');
    m.failure('timeout');
    expect(m.state).toBe('degraded');
    m.failure('timeout');
    expect(m.state).toBe('down');
    m.success();
    expect(changes).toEqual(['down->up', 'up->degraded', 'degraded->down', 'down->up']);
    // silence: no success for longer than downAfterMs degrades, then takes the link down
    now = 6000;
    m.evaluate();
    expect(m.state).toBe('degraded');
    m.evaluate();
    expect(m.state).toBe('down');
  });
});

describe('writeBudgetMs', () => {
  const refusal = (f: () => unknown): DeviceError => {
    try {
      f();
    } catch (err) {
      expect(err).toBeInstanceOf(DeviceError);
      return err as DeviceError;
    }
    throw new Error('expected a refusal');
  };

  it('without a caller deadline, a write has all the time its call has', () => {
    expect(writeBudgetMs({}, 'AHU-1', 'write', 1_000)).toBe(Number.POSITIVE_INFINITY);
  });

  it('returns what is left of the deadline when the unit’s worst case fits', () => {
    const deadline = performance.now() + 2_000;
    const budget = writeBudgetMs({ deadlineMs: () => deadline }, 'AHU-1', 'write', 1_000);
    expect(budget).toBeGreaterThan(1_900);
    expect(budget).toBeLessThanOrEqual(2_000);
  });

  it('refuses (NOT_LEADER, not retryable) when the unit could apply the write after the deadline', () => {
    const e = refusal(() =>
      writeBudgetMs({ deadlineMs: () => performance.now() + 500 }, 'AHU-1', 'fenced write', 1_000),
    );
    expect(e.code).toBe(ErrorCodes.NOT_LEADER);
    expect(e.retryable).toBe(false);
    expect(e.message).toMatch(
      /fenced write: not sent, \d+ ms are left of the lease but the unit may take 1000 ms/,
    );
  });

  it('refuses when the deadline has passed, when there is none (null), and when mayWrite says no', () => {
    for (const opts of [
      { deadlineMs: () => performance.now() - 1 },
      { deadlineMs: () => null },
      { mayWrite: () => false, deadlineMs: () => performance.now() + 10_000 },
    ]) {
      expect(refusal(() => writeBudgetMs(opts, 'AHU-1', 'write', 1)).code).toBe(ErrorCodes.NOT_LEADER);
    }
  });

  it('reads the deadline at each call: a renewed lease lets the next attempt go', () => {
    let deadline = performance.now() + 100;
    const opts = { deadlineMs: () => deadline };
    expect(refusal(() => writeBudgetMs(opts, 'AHU-1', 'write', 1_000)).code).toBe(ErrorCodes.NOT_LEADER);
    deadline = performance.now() + 3_000;
    expect(writeBudgetMs(opts, 'AHU-1', 'write', 1_000)).toBeGreaterThan(1_000);
  });
});
