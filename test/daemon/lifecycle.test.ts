// The daemon's life as an operator and a careless deploy script drive it, on real processes and a
// real 3-member etcd: signals while it starts (a SIGHUP must neither kill it nor be lost; a SIGTERM
// before etcd answers or while it joins is a clean stop, exit 0, nothing left running), a second
// SIGTERM during the handover (ignored, the stop completes), a data dir it cannot use (exit 1, named
// with its setting), and a config that lives where a Kubernetes ConfigMap puts it (a symlink through
// `..data`, swapped whole) reloaded once per change.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, readFile, rename, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { tmpDir } from '../cluster/harness.ts';
import { waitFor } from '../helpers.ts';
import { type EtcdCluster, freePort, startEtcdCluster } from '../support/etcd-cluster.ts';
import { writeOneNodeConfig } from './one-node.ts';

let etcd: EtcdCluster | undefined;
let root: { dir: string; cleanup: () => Promise<void> } | undefined;
const procs: ChildProcess[] = [];
beforeAll(async () => {
  root = await tmpDir('lifecycle');
  etcd = await startEtcdCluster({ size: 3 });
}, 90_000);
afterAll(async () => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await etcd?.stop();
  await root?.cleanup();
});

interface Daemon {
  child: ChildProcess;
  log: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function run(config: string): Daemon {
  const child = spawn(process.execPath, ['src/cli.ts', 'run', '--config', config, '--node', 'n1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  procs.push(child);
  let log = '';
  child.stdout!.on('data', (c) => {
    log += c;
  });
  child.stderr!.on('data', (c) => {
    log += c;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once('exit', (code, signal) => r({ code, signal })),
  );
  return { child, log: () => log, exited };
}

/** Whether the process has a handler for signal number `n` (SigCgt in /proc/PID/status). */
async function catches(pid: number, n: number): Promise<boolean> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const mask = BigInt(`0x${/^SigCgt:\s*([0-9a-f]+)/m.exec(status)![1]}`);
  return ((mask >> BigInt(n - 1)) & 1n) === 1n;
}
const SIGHUP = 1;

/** The daemon's log lines (JSON ones parsed) whose msg is `msg`. */
function lines(log: string, msg: string): Record<string, unknown>[] {
  return log
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l['msg'] === msg);
}

async function exitWithin(d: Daemon, ms: number): Promise<{ code: number | null; signal: string | null }> {
  return Promise.race([
    d.exited,
    new Promise<{ code: number | null; signal: string | null }>((r) =>
      setTimeout(() => r({ code: null, signal: 'still running' }), ms).unref(),
    ),
  ]);
}

/** Asserts that `ok()` stays true for `ms` (what must not happen, watched for that long). */
async function holdsFor(what: string, ok: () => boolean, ms: number): Promise<void> {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    expect(ok(), what).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('coolctl run: lifecycle', () => {
  it('SIGHUPs while it starts: it starts, reloads once after, and a second SIGTERM does not cut the handover', async () => {
    const dir = join(root!.dir, 'hup');
    await mkdir(dir);
    const { config } = await writeOneNodeConfig({
      dir,
      etcd: etcd!.clientConfig(),
      prefix: '/coolctl/lifecycle-hup',
      periodMs: 200,
    });
    const d = run(config);
    // The units (none reachable) are opened first thing: the node is inside its start, and a
    // reload sent now comes before it runs.
    await waitFor('the start under way', () => d.log().includes('unit not reachable yet'), {
      timeoutMs: 60_000,
      intervalMs: 2,
    });
    for (let i = 0; i < 5; i++) d.child.kill('SIGHUP');
    expect(d.log()).not.toContain('running, API');
    await waitFor(
      'the node running',
      () => d.log().includes('node n1 running') || d.child.exitCode !== null || d.child.signalCode,
      {
        timeoutMs: 60_000,
      },
    );
    expect(d.child.signalCode, d.log()).toBeNull();
    await waitFor(
      'the reload asked for while it started',
      () => lines(d.log(), 'config reloaded: nothing changed').length > 0,
    );
    expect(lines(d.log(), 'reloading the config').map((l) => l['why'])).toEqual(['SIGHUP']);
    expect(await catches(d.child.pid!, SIGHUP)).toBe(true);

    d.child.kill('SIGTERM');
    await waitFor('the stop begun', () => lines(d.log(), 'stopping: resigning every group').length > 0, {
      intervalMs: 2,
    });
    d.child.kill('SIGTERM');
    const r = await exitWithin(d, 30_000);
    expect(r, d.log()).toEqual({ code: 0, signal: null });
    expect(lines(d.log(), 'controller stopped')).toHaveLength(1);
  }, 120_000);

  it('SIGTERM before etcd answers: exit 0 at once, saying it stopped during start-up', async () => {
    const dir = join(root!.dir, 'no-etcd');
    await mkdir(dir);
    const { config } = await writeOneNodeConfig({
      dir,
      etcd: { hosts: [`http://127.0.0.1:${await freePort()}`] }, // nothing listens there
      prefix: '/coolctl/lifecycle-no-etcd',
    });
    const d = run(config);
    // The units (none reachable) are opened before etcd is asked: the node is inside its start.
    await waitFor('the start under way', () => d.log().includes('unit not reachable yet'), {
      timeoutMs: 60_000,
    });
    d.child.kill('SIGTERM');
    const r = await exitWithin(d, 15_000);
    expect(r, d.log()).toEqual({ code: 0, signal: null });
    expect(d.log()).toContain('stopped during start-up, as asked');
    expect(d.log()).not.toContain('cannot use etcd');
  }, 120_000);

  it('a data dir it cannot use (a file is in the way): exit 1, naming dataDir, its file and what to do', async () => {
    const dir = join(root!.dir, 'data-dir');
    await mkdir(dir);
    const { config } = await writeOneNodeConfig({
      dir,
      etcd: etcd!.clientConfig(),
      prefix: '/coolctl/lifecycle-data-dir',
    });
    await writeFile(join(dir, 'var'), 'not a folder');
    const d = run(config);
    const r = await exitWithin(d, 60_000);
    expect(r, d.log()).toEqual({ code: 1, signal: null });
    expect(d.log()).toContain(
      `coolctl: cannot use the data dir ${join(dir, 'var')} (dataDir in ${config}): EEXIST`,
    );
    expect(d.log()).toMatch(/must be a directory this service user can write/);
    expect(d.log()).not.toContain('node n1 running');
  }, 90_000);

  it('SIGTERM while it joins (the API bound, not ready yet): exit 0, nothing left leading', async () => {
    const dir = join(root!.dir, 'joining');
    await mkdir(dir);
    const { config, api } = await writeOneNodeConfig({
      dir,
      etcd: etcd!.clientConfig(),
      prefix: '/coolctl/lifecycle-joining',
    });
    const d = run(config);
    const ready = await waitFor(
      'the API answering',
      async () => (await fetch(`${api}/readyz`).catch(() => null))?.status,
      { timeoutMs: 60_000, intervalMs: 5 },
    );
    d.child.kill('SIGTERM');
    const r = await exitWithin(d, 15_000);
    expect(r, d.log()).toEqual({ code: 0, signal: null });
    expect(d.log()).not.toContain('cannot use etcd');
    if (ready === 503) expect(d.log()).toContain('stopped during start-up, as asked');
    // Joined or not by then, it left nothing behind: no key on a lease of its (a campaign, a
    // member record) waits for the TTL to run out.
    const got = JSON.parse(
      await etcd!.ctl(['get', '--prefix', '/coolctl/lifecycle-joining/', '-w', 'json'], { asRoot: true }),
    ) as { kvs?: { key: string; lease?: number }[] };
    expect((got.kvs ?? []).filter((kv) => kv.lease).map((kv) => atob(kv.key))).toEqual([]);
  }, 120_000);

  it('a config in a Kubernetes ConfigMap: the `..data` symlink swap is one reload; a rewrite of the same bytes none', async () => {
    const dir = join(root!.dir, 'configmap');
    await mkdir(dir);
    const { config } = await writeOneNodeConfig({
      dir,
      etcd: etcd!.clientConfig(),
      prefix: '/coolctl/lifecycle-cm',
      periodMs: 200,
    });
    const text = await readFile(config, 'utf8');
    // The kubelet's layout: controller.yaml -> ..data/controller.yaml, ..data -> ..v1.
    const cm = join(dir, 'cm');
    await mkdir(join(cm, '..v1'), { recursive: true });
    await writeFile(join(cm, '..v1', 'controller.yaml'), text);
    await symlink('..v1', join(cm, '..data'));
    await symlink('..data/controller.yaml', join(cm, 'controller.yaml'));
    const d = run(join(cm, 'controller.yaml'));
    await waitFor('the node running', () => d.log().includes('node n1 running'), { timeoutMs: 60_000 });
    const reloads = () => lines(d.log(), 'reloading the config').length;

    // The kubelet's swap: a new folder, a new link, renamed over ..data.
    const swap = async (version: string, content: string): Promise<void> => {
      await mkdir(join(cm, version));
      await writeFile(join(cm, version, 'controller.yaml'), content);
      await symlink(version, join(cm, '..data_tmp'));
      await rename(join(cm, '..data_tmp'), join(cm, '..data'));
    };
    const changed = stringify({ ...(parse(text) as object), control: { periodMs: 250 } });
    await swap('..v2', changed);
    await waitFor('the swap reloaded', () => reloads() === 1, { timeoutMs: 15_000 });
    // control.periodMs is read at start: refused, named, the running config kept.
    await waitFor(
      'the refusal',
      () => lines(d.log(), 'config reload refused: the running config is kept')[0],
    );
    expect(JSON.stringify(lines(d.log(), 'config reload refused: the running config is kept')[0])).toContain(
      '/control/periodMs',
    );

    // The same bytes again (a swap to a copy, as a re-applied ConfigMap does): no reload, for three
    // settle periods; then the old config back: one reload.
    await swap('..v3', changed);
    await holdsFor('no reload of the same bytes', () => reloads() === 1, 1500);
    await swap('..v4', text);
    await waitFor(
      'the rewrite reloaded',
      () => lines(d.log(), 'config reloaded: nothing changed').length > 0,
      {
        timeoutMs: 15_000,
      },
    );
    expect(reloads()).toBe(2);
    d.child.kill('SIGTERM');
    expect(await exitWithin(d, 30_000)).toEqual({ code: 0, signal: null });
    expect(lines(d.log(), 'reloading the config').map((l) => l['why'])).toEqual([
      'config file changed',
      'config file changed',
    ]);
  }, 120_000);
});
