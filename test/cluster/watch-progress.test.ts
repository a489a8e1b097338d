// The watch-progress check on a stand-in for etcd3's WatchManager and grpc-js's stream: a quiet
// stream is asked for its progress once, an answer keeps it, no answer fails it as UNAVAILABLE
// once; a progress answer never reaches etcd3 (which would throw on a response no watcher owns).
import { status as GrpcStatus } from '@grpc/grpc-js';
import type { Etcd3 } from 'etcd3';
import { afterEach, describe, expect, it } from 'vitest';
import {
  isProgressResponse,
  PROGRESS_AFTER_MS,
  PROGRESS_ANSWER_MS,
  WATCH_SILENCE_BOUND_MS,
  WatchProgress,
} from '../../src/cluster/etcd/watch-progress.ts';

function fakeClient() {
  const written: unknown[] = [];
  const cancelled: { code: number; details: string }[] = [];
  const passedOn: unknown[] = [];
  const stream = {
    write: (m: unknown) => written.push(m) > 0,
    call: { cancelWithStatus: (code: number, details: string) => cancelled.push({ code, details }) },
  };
  const watchManager = {
    state: 2,
    stream,
    watchers: [{}],
    handleResponse: (res: unknown) => passedOn.push(res),
    handleCreatedResponse: (res: unknown) => passedOn.push(res),
  };
  return { client: { watchManager } as unknown as Etcd3, watchManager, written, cancelled, passedOn };
}

let progress: WatchProgress | undefined;
afterEach(() => progress?.stop());

describe('watch progress', () => {
  it('asks a quiet stream once and keeps it while it answers', () => {
    let now = 0;
    const f = fakeClient();
    const silent: number[] = [];
    progress = new WatchProgress(f.client, {
      answerMs: 500,
      now: () => now,
      onSilent: (ms) => silent.push(ms),
    });
    progress.check();
    now = PROGRESS_AFTER_MS - 1;
    progress.check();
    expect(f.written).toEqual([]);
    now = PROGRESS_AFTER_MS;
    progress.check();
    progress.check();
    expect(f.written).toEqual([{ progress_request: {} }]);
    now += 100;
    f.watchManager.handleResponse({ watch_id: '-1', created: false, events: [] });
    expect(f.passedOn).toEqual([]);
    now += PROGRESS_ANSWER_MS * 3;
    progress.check();
    expect(f.cancelled).toEqual([]);
    expect(f.written).toHaveLength(2);
    // An event is as good as an answer, and goes on to etcd3.
    f.watchManager.handleResponse({ watch_id: '7', events: [{}] });
    now += PROGRESS_ANSWER_MS * 3;
    progress.check();
    expect(f.passedOn).toHaveLength(1);
    expect(f.cancelled).toEqual([]);
    expect(silent).toEqual([]);
  });

  it('fails a stream that leaves its progress request unanswered, once, within the bound', () => {
    let now = 0;
    const f = fakeClient();
    const silent: number[] = [];
    progress = new WatchProgress(f.client, {
      answerMs: 500,
      now: () => now,
      onSilent: (ms) => silent.push(ms),
    });
    // Ticks as the timer runs them: the stream's last message was at 0.
    for (; now <= 10_000 && f.cancelled.length === 0; now += 500) progress.check();
    expect(f.cancelled).toEqual([{ code: GrpcStatus.UNAVAILABLE, details: expect.stringMatching(/silent/) }]);
    expect(now - 500).toBeLessThanOrEqual(WATCH_SILENCE_BOUND_MS);
    expect(silent).toHaveLength(1);
    for (let i = 0; i < 10; i++, now += 500) progress.check();
    expect(f.cancelled).toHaveLength(1);
  });

  it('waits a whole call deadline when that is longer than the least answer time', () => {
    let now = 0;
    const f = fakeClient();
    progress = new WatchProgress(f.client, { answerMs: 5_000, now: () => now });
    progress.check();
    now = PROGRESS_AFTER_MS;
    progress.check();
    now += 4_999;
    progress.check();
    expect(f.cancelled).toEqual([]);
    now += 1;
    progress.check();
    expect(f.cancelled).toHaveLength(1);
  });

  it('leaves an idle client alone and starts afresh on a new stream', () => {
    let now = 0;
    const f = fakeClient();
    progress = new WatchProgress(f.client, { answerMs: 500, now: () => now });
    f.watchManager.watchers = [];
    now = 10_000;
    progress.check();
    expect(f.written).toEqual([]);
    f.watchManager.watchers = [{}];
    progress.check();
    expect(f.written).toEqual([]);
    now += PROGRESS_AFTER_MS;
    progress.check();
    expect(f.written).toHaveLength(1);
    f.watchManager.stream = { ...f.watchManager.stream };
    now += PROGRESS_ANSWER_MS;
    progress.check();
    expect(f.cancelled).toEqual([]);
  });

  it('tells a progress answer from a watcher’s response', () => {
    expect(isProgressResponse({ watch_id: '-1' })).toBe(true);
    expect(isProgressResponse({ watch_id: -1 })).toBe(true);
    expect(isProgressResponse({ watch_id: '0' })).toBe(false);
    expect(isProgressResponse({ watch_id: '-1', created: true })).toBe(false);
  });
});
