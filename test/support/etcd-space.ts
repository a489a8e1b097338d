// etcd out of space, made on purpose: a hall's etcd started with a small backend quota, filled by
// another tenant's keys until etcd raises its NOSPACE alarm, and freed as an operator would
// (compact, defrag, disarm). Shared by test/cluster/etcd-no-space*.test.ts; every loop is bounded.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Etcd3 } from 'etcd3';
import { expect } from 'vitest';
import type { Hall } from './hall.ts';

/** A quota a few hundred KiB writes fill: `etcdFlags` of Hall.start. */
export const SMALL_QUOTA_FLAGS = [`--quota-backend-bytes=${4 * 1024 * 1024}`];

const FILL_VALUE = 'x'.repeat(512 * 1024);
/** 32 MiB of puts at most: far past the quota, so a cluster that never refuses fails the test. */
const MAX_FILL_PUTS = 64;

/**
 * Fills etcd under a prefix that is not coolctl's, as another tenant of the cluster would, until a
 * put is refused for lack of space; returns etcd's words for it.
 */
export async function fillEtcd(etcd: Etcd3): Promise<string> {
  let refusal = '';
  for (let i = 0; i < MAX_FILL_PUTS && !refusal; i++)
    await etcd
      .put(`/other-app/blob-${i}`)
      .value(FILL_VALUE)
      .catch((err: Error) => {
        refusal = err.message;
      });
  expect(refusal).toMatch(/database space exceeded/);
  return refusal;
}

/** What the operator does (docs/leadership.md, "etcd out of space"): delete, compact, defrag, disarm. */
export async function freeEtcd(
  hall: Pick<Hall, 'etcdctl'>, // a Hall, or anything that runs etcdctl against the cluster
  etcd: Etcd3,
): Promise<void> {
  await etcd.delete().prefix('/other-app/');
  const status = await hall.etcdctl(['endpoint', 'status', '-w', 'json']);
  const revision = /"revision":(\d+)/.exec(status)![1]!;
  await hall.etcdctl(['compact', revision]);
  await hall.etcdctl(['defrag'], 20_000);
  await hall.etcdctl(['alarm', 'disarm']);
}

export interface ApiAlarm {
  kind: string;
  state: string;
  subject: string | null;
  message: string;
}

/** A node's alarms, as its API lists them. */
export async function nodeAlarms(hall: Hall, node: string, which: 'active' | 'all'): Promise<ApiAlarm[]> {
  const res = await fetch(`${hall.apiUrl(node)}/api/v1/alarms?state=${which}`, {
    headers: hall.apiHeaders,
    signal: AbortSignal.timeout(5000),
  });
  return ((await res.json()) as { alarms: ApiAlarm[] }).alarms;
}

/** One unlabelled (or exactly labelled: `name{a="b"}`) sample of a node's /metrics; null if absent. */
export async function nodeMetric(hall: Hall, node: string, series: string): Promise<number | null> {
  const res = await fetch(`${hall.apiUrl(node)}/metrics`, {
    headers: hall.apiHeaders,
    signal: AbortSignal.timeout(5000),
  });
  const escaped = series.replace(/[{}"]/g, (c) => `\\${c}`);
  const m = new RegExp(`^${escaped} (\\S+)$`, 'm').exec(await res.text());
  return m ? Number(m[1]) : null;
}

/** How many lines of a node's log (all its runs) carry a message starting with `msg`. */
export async function logLines(hall: Hall, node: string, msg: string): Promise<number> {
  const text = await readFile(join(hall.dir, `${node}.log`), 'utf8').catch(() => '');
  return text.split('\n').filter((l) => l.includes(`"msg":"${msg}`)).length;
}
