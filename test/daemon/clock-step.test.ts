// The wall clock stepped under a running controller (a real process, real etcd; the demo site
// without its simulator, so every group is blind and raises its sensors alarm): NTP steps of a day
// either way, as a gateway without a clock battery sees at boot. Only the controller's clock is
// faked (libfaketime, Debian's `faketime` package; its monotonic clock stays real, as on a real
// box). What an operator would notice is asserted after each step: no lease is lost and every loop
// runs, a shelved alarm stays shelved for what it was shelved for, and a node whose clock ran a day
// ahead deletes nobody's session or token from the cluster.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { Site } from '../../src/config/site-schema.ts';
import { tmpDir } from '../cluster/harness.ts';
import { waitFor } from '../helpers.ts';
import { type EtcdCluster, startEtcdCluster } from '../support/etcd-cluster.ts';
import { writeOneNodeConfig } from './one-node.ts';

const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';

let etcd: EtcdCluster | undefined;
let root: { dir: string; cleanup: () => Promise<void> } | undefined;
let daemon: ChildProcess | undefined;
let log = '';

async function stopDaemon(): Promise<void> {
  if (!daemon || daemon.exitCode !== null) return;
  const exited = new Promise((r) => daemon!.once('exit', r));
  daemon.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000).unref())]);
  if (daemon.exitCode === null) daemon.kill('SIGKILL');
}

beforeAll(async () => {
  if (!existsSync(LIBFAKETIME))
    throw new Error(`${LIBFAKETIME} missing: install Debian's faketime package (deploy/dev/prepare.sh)`);
  root = await tmpDir('clock-step');
  etcd = await startEtcdCluster({ size: 1 });
}, 60_000);
afterAll(async () => {
  if (process.env.CLOCK_STEP_LOG) await writeFile(process.env.CLOCK_STEP_LOG, log);
  await stopDaemon();
  await etcd?.stop();
  await root?.cleanup();
});

/** The controller with its wall clock at the offset in `clockFile` (re-read at every call). */
function runFaked(config: string, clockFile: string): void {
  log = '';
  daemon = spawn(process.execPath, ['src/cli.ts', 'run', '--config', config, '--node', 'n1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      LD_PRELOAD: LIBFAKETIME,
      FAKETIME_TIMESTAMP_FILE: clockFile,
      FAKETIME_NO_CACHE: '1',
      FAKETIME_DONT_FAKE_MONOTONIC: '1',
    },
  });
  daemon.stdout!.on('data', (c) => {
    log += c;
  });
  daemon.stderr!.on('data', (c) => {
    log += c;
  });
}

interface Line {
  msg: string;
  group?: string;
}
const lines = (): Line[] =>
  log
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);

describe('the wall clock stepped under a running node', () => {
  it('keeps leaders, shelves and everybody’s sessions through steps of a day', async () => {
    const dir = root!.dir;
    const site = parse(await readFile('config/demo-site.yaml', 'utf8')) as Site;
    const sitePath = join(dir, 'site.yaml');
    await writeFile(sitePath, stringify({ ...site, alarms: { delays: { sensorsS: 1 } } }));
    const { config, api, admin } = await writeOneNodeConfig({
      dir,
      etcd: etcd!.clientConfig(),
      prefix: '/coolctl/clock-step',
    });
    const doc = parse(await readFile(config, 'utf8')) as { site: string };
    doc.site = sitePath;
    await writeFile(config, stringify(doc));
    const clock = join(dir, 'clock');
    const step = (offset: string) => writeFile(clock, `${offset}\n`);
    await step('+0');
    runFaked(config, clock);
    const groups = site.controlGroups.map((g) => g.id);
    const driven = () =>
      groups.every((g) => lines().some((l) => l.msg.startsWith('driving the group') && l.group === g));
    await waitFor('every group driven by the one node', driven, { timeoutMs: 120_000, intervalMs: 200 });

    const call = async (token: string, path: string, body?: unknown) => {
      const r = await fetch(`${api}${path}`, {
        method: body === undefined ? 'GET' : 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: r.status, json: (await r.json()) as Record<string, unknown> };
    };
    const signIn = await fetch(`${api}/api/v1/auth/sign-in`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-coolctl-request': '1' },
      body: JSON.stringify({ name: admin.name, password: admin.password, as: 'token' }),
    });
    expect(signIn.status).toBe(200);
    const session = ((await signIn.json()) as { token: string }).token;
    const minted = await call(session, '/api/v1/tokens', { label: 'grafana', ttlS: 2 * 86_400 });
    expect(minted.status).toBe(200);
    const token = minted.json.token as string;

    // Without the simulator no unit answers, so a leader hands its group on now and then (and takes
    // it straight back, the only node): what a clock step must not do is cost a lease or stop a loop.
    const allLed = async () => {
      const r = await call(token, '/api/v1/cluster');
      return (r.json.groups as { leader: string | null }[]).every((g) => g.leader === 'n1');
    };
    const leaseTrouble = () =>
      lines().filter(
        (l) =>
          /lease guard deadline|etcd not readable|member key is gone/.test(l.msg) ||
          (l as { to?: string }).to === 'fenced',
      );

    // A blind group's alarm, shelved for 10 minutes.
    type A = { id: string; kind: string; shelvedUntil: string | null };
    const blind = await waitFor(
      'a sensors alarm raised',
      async () =>
        ((await call(token, '/api/v1/alarms')).json.alarms as A[]).find((a) => a.kind === 'sensors-blind'),
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    expect((await call(token, `/api/v1/alarms/${blind.id}/shelve`, { durationS: 600 })).status).toBe(200);
    const shelfEnded = () => lines().some((l) => l.msg.startsWith('alarm shelf expired'));

    for (const offset of ['+1d', '-1d', '+0']) {
      await step(offset);
      // Several evaluations and keepalive rounds under the new clock.
      const until = performance.now() + 4_000;
      await waitFor('time under the stepped clock', () => performance.now() > until, {
        timeoutMs: 6_000,
        intervalMs: 100,
      });
      await waitFor(`every group led by n1 after a step to ${offset}`, allLed, { timeoutMs: 10_000 });
      expect(leaseTrouble(), `after a step to ${offset}`).toEqual([]);
      const health = await fetch(`${api}/healthz`);
      expect(health.status, `every loop runs after a step to ${offset}`).toBe(200);
      // The process's age, not the wall clock's: a step back made it −86 395 s.
      expect(
        ((await health.json()) as { uptimeS: number }).uptimeS,
        `uptime after ${offset}`,
      ).toBeGreaterThanOrEqual(0);
      expect(shelfEnded(), `a 10-minute shelf ended by a step to ${offset}`).toBe(false);
      const shelvedNow = ((await call(token, '/api/v1/alarms')).json.alarms as A[]).find(
        (a) => a.id === blind.id,
      );
      expect(shelvedNow?.shelvedUntil, `the shelf as the API shows it after ${offset}`).not.toBeNull();
      // A token with a day or more left works whatever the step.
      expect((await call(token, '/api/v1/auth/me')).status, `the API token after ${offset}`).toBe(200);
    }

    // Restarted with its clock a day ahead (no RTC battery and a bad NTP answer, say): the node
    // refuses what has run out by its clock, but deletes nothing of the cluster's for it.
    await stopDaemon();
    await step('+1d');
    runFaked(config, clock);
    await waitFor('every group driven again', driven, { timeoutMs: 120_000, intervalMs: 200 });
    await step('+0');
    expect((await call(session, '/api/v1/auth/me')).status, 'the session once the clock is right').toBe(200);
    expect((await call(token, '/api/v1/auth/me')).status).toBe(200);
  }, 360_000);
});
