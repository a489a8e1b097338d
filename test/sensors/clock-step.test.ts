// A wall-clock step under real ingest: a child process runs the sensor store and MQTT source on
// their default clocks under libfaketime; while a node keeps reporting over a real broker (the
// embedded aedes), its wall clock steps back an hour, then forward again. Readings keep updating,
// nothing is rate-limited, and a silent sensor still goes stale on time.
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { type BrokerHandle, startBroker } from '../../firmware-sim/mesh/broker.ts';
import type { SensorSnapshot } from '../../src/sensors/sensor-store.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const FAKETIME_LIB = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
// 20× time: the node's 10 s interval is 0.5 s of wall time, so it is stale after 1.5 s of silence.
const TIME_SCALE = 20;
const site = generateSite(demoShape);
const node = site.sensorNodes[0]!;
const topic = `coolctl/sim/gateway/${node.gateway}/node/${node.id}/report`;

interface ChildState {
  wallNowMs: number;
  sensor: SensorSnapshot;
  rateLimited: number;
  readings: number;
}

let dir: string;
let clockFile: string;
let broker: BrokerHandle;
let gateway: mqtt.MqttClient;
let child: ChildProcess;
let seq = 0;
let publishing: NodeJS.Timeout | undefined;

const reportedValue = (s: number) => Math.round((21 + (s % 100) * 0.01) * 100) / 100;

function startReports(): void {
  // 40 reports/s: inside the flood guard (50/s) only while its bucket refills on time; its burst
  // (100) is gone in 2.5 s otherwise
  publishing ??= setInterval(() => {
    seq++;
    void gateway.publishAsync(
      topic,
      JSON.stringify({
        node: node.id,
        gateway: node.gateway,
        seq,
        readings: [{ sensor: 'inlet-top', kind: 'inlet-top', value: reportedValue(seq) }],
      }),
    );
  }, 25);
}

function stopReports(): void {
  clearInterval(publishing);
  publishing = undefined;
}

function state(): Promise<ChildState> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no state from the child within 2 s')), 2000);
    child.once('message', (m) => {
      clearTimeout(timer);
      resolve(m as ChildState);
    });
    child.send('state');
  });
}

/**
 * Reports flowing: `more` readings applied since `since`, and the child's reading is the one just
 * published (or the one before, in flight).
 */
async function followsReports(what: string, since = 0, more = 5): Promise<ChildState> {
  let last: ChildState | undefined;
  return waitFor(what, async () => {
    const target = seq;
    last = await state();
    return last.readings >= since + more &&
      last.sensor.value !== null &&
      [reportedValue(target), reportedValue(target - 1)].includes(last.sensor.value) &&
      last.sensor.quality === 'good'
      ? last
      : undefined;
  }).catch((err: Error) => {
    throw new Error(`${err.message}; last state ${JSON.stringify(last)}, seq ${seq}`);
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coolctl-clock-'));
  clockFile = join(dir, 'clock');
  await writeFile(clockFile, '+0\n');
  broker = await startBroker({ host: '127.0.0.1', port: 0, logger: quietLogger });
  gateway = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
  child = fork(join(import.meta.dirname, 'clock-step-child.ts'), [broker.url, node.id, String(TIME_SCALE)], {
    execArgv: [],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: {
      ...process.env,
      LD_PRELOAD: FAKETIME_LIB,
      FAKETIME_TIMESTAMP_FILE: clockFile,
      FAKETIME_NO_CACHE: '1',
      DONT_FAKE_MONOTONIC: '1',
      FAKETIME_DONT_FAKE_MONOTONIC: '1',
    },
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the ingest child did not connect within 20 s')), 20_000);
    child.once('message', () => {
      clearTimeout(timer);
      resolve();
    });
    child.once('exit', (code) => reject(new Error(`the ingest child exited (${code})`)));
  });
}, 30_000);

afterAll(async () => {
  stopReports();
  if (child && child.exitCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.send('stop');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  }
  await gateway?.endAsync(true);
  await broker?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('a wall-clock step during ingest (libfaketime)', () => {
  it('an hour back, then forward: readings keep updating, no report is rate-limited, staleness stays on time', async () => {
    startReports();
    const before = await followsReports('readings flowing');

    await writeFile(clockFile, '-3600\n');
    await waitFor(
      'the child’s wall clock an hour back',
      async () => (await state()).wallNowMs < Date.now() - 3_500_000,
    );
    const stepped = await state();
    const afterBack = await followsReports(
      'readings still updating after the step back',
      stepped.readings,
      200,
    );
    expect(afterBack.readings).toBeGreaterThan(before.readings);
    expect(afterBack.rateLimited).toBe(0);
    // shown to people in the child's own (stepped) wall time
    expect(Math.abs(afterBack.sensor.receivedAtMs! - afterBack.wallNowMs)).toBeLessThan(2000);

    // silence: stale after three intervals (1.5 s), not an hour later
    stopReports();
    const silentFrom = performance.now();
    await waitFor('the silent sensor stale', async () => (await state()).sensor.flags.includes('stale'), {
      timeoutMs: 5000,
    });
    expect(performance.now() - silentFrom).toBeGreaterThan(1000);

    await writeFile(clockFile, '+0\n');
    await waitFor(
      'the child’s wall clock back to now',
      async () => Math.abs((await state()).wallNowMs - Date.now()) < 60_000,
    );
    const forward = await state();
    startReports();
    const afterForward = await followsReports(
      'readings updating after the step forward',
      forward.readings,
      200,
    );
    expect(afterForward.rateLimited).toBe(0);
    expect(afterForward.sensor.flags).toEqual([]);
    stopReports();
  }, 60_000);
});
