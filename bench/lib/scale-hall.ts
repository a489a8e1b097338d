// The processes of bench/scale.ts: the simulator on a generated Modbus-only site, and one real
// `coolctl run` controller leading every group of it, each its own process pinned to a core when
// taskset is there. Every child is tracked; `stopAll()` is bounded (SIGTERM, SIGKILL after 5 s)
// and also runs on SIGINT/SIGTERM of the bench, so an interrupted run leaves nothing behind.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { seedApiAdmin } from '../../test/support/api-seed.ts';
import type { DaemonCommand } from '../../test/support/deployed-daemon.ts';
import { freePort } from '../../test/support/etcd-cluster.ts';
import { REPO_ROOT, simArgs } from '../../test/support/repo.ts';
import { delay } from './stats.ts';

export { REPO_ROOT };

/** Whether `taskset` (util-linux) runs here and there are at least two cores to pin to. */
export function canPin(): boolean {
  const r = spawnSync('taskset', ['-V'], { encoding: 'utf8' });
  const cores = spawnSync('nproc', [], { encoding: 'utf8' });
  return r.status === 0 && Number(cores.stdout.trim()) >= 2;
}

/** Pins every thread of this process to `core`; children spawned afterwards inherit it. */
export function pinSelf(core: number): void {
  const r = spawnSync('taskset', ['-a', '-pc', String(core), String(process.pid)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`taskset -a -pc ${core} ${process.pid}: ${r.stderr}`);
}

/** The shape `npm run gen-site -- --ahus A --nodes N --groups G` generates (Modbus TCP only). */
export function scaleSite(o: {
  ahus: number;
  nodes: number;
  groups: number;
  reportIntervalS?: number;
}): Site {
  const site = generateSite({
    ...demoShape,
    id: 'generated-hall',
    name: 'Generated hall',
    airHandlers: o.ahus,
    sensorNodes: o.nodes,
    controlGroups: o.groups,
    racksPerAirHandler: 5,
    opcuaShare: 0,
    modbusBasePort: 0,
    seed: 1,
  });
  if (o.reportIntervalS !== undefined)
    for (const n of site.sensorNodes) n.reportIntervalS = o.reportIntervalS;
  return site;
}

export const sensorCount = (site: Site): number =>
  site.sensorNodes.reduce((n, node) => n + node.sensors.length, 0);

interface Tracked {
  child: ChildProcess;
  exited: Promise<void>;
}

export interface Proc {
  pid: number;
  logPath: string;
  /** Set once the process exited (code or signal), for "it died" checks while measuring. */
  exit: () => string | null;
}

export class ScaleProcesses {
  private readonly children = new Set<Tracked>();
  private stopping: Promise<void> | undefined;
  private readonly extraStops: (() => Promise<void>)[] = [];

  readonly dir: string;
  private readonly pin: boolean;

  constructor(dir: string, pin: boolean) {
    this.dir = dir;
    this.pin = pin;
  }

  /** Something else to stop last (the etcd cluster). */
  onStop(fn: () => Promise<void>): void {
    this.extraStops.push(fn);
  }

  spawn(name: string, args: string[], core: number | null, env: Record<string, string> = {}): Proc {
    const logPath = join(this.dir, `${name}.log`);
    const fd = openSync(logPath, 'a');
    let child: ChildProcess;
    try {
      const [cmd, argv] =
        this.pin && core !== null
          ? ['taskset', ['-c', String(core), process.execPath, ...args]]
          : [process.execPath, args];
      // taskset execs the command: the child's pid is the node process's pid.
      child = spawn(cmd, argv, {
        cwd: REPO_ROOT,
        stdio: ['ignore', fd, fd],
        env: { ...process.env, ...env },
      });
    } finally {
      closeSync(fd);
    }
    if (child.pid === undefined) throw new Error(`could not spawn ${name}`);
    let exitInfo: string | null = null;
    const exited = new Promise<void>((r) =>
      child.once('exit', (code, signal) => {
        exitInfo = signal ? `killed by ${signal}` : `exited ${code}`;
        r();
      }),
    );
    const t: Tracked = { child, exited };
    this.children.add(t);
    void exited.then(() => this.children.delete(t));
    return { pid: child.pid, logPath, exit: () => exitInfo };
  }

  /** Stops one process: SIGTERM, SIGKILL after `graceMs`. */
  async stop(p: Proc, graceMs = 5000): Promise<void> {
    const t = [...this.children].find((c) => c.child.pid === p.pid);
    if (t) await this.stopTracked(t, graceMs);
  }

  private async stopTracked(t: Tracked, graceMs: number): Promise<void> {
    if (t.child.exitCode !== null || t.child.signalCode !== null) return;
    t.child.kill('SIGTERM');
    if ((await Promise.race([t.exited.then(() => 'done'), delay(graceMs)])) !== 'done') {
      t.child.kill('SIGKILL');
      await Promise.race([t.exited, delay(2000)]);
    }
  }

  stopAll(): Promise<void> {
    this.stopping ??= (async () => {
      await Promise.all([...this.children].map((t) => this.stopTracked(t, 5000)));
      for (const fn of this.extraStops) await fn().catch(() => {});
    })();
    return this.stopping;
  }
}

/** Starts the simulator on `site`; returns its API URL and the site as the controller must see it. */
export async function startSim(
  procs: ScaleProcesses,
  name: string,
  site: Site,
  core: number | null,
  timeoutMs: number,
): Promise<{ proc: Proc; simUrl: string; mqttUrl: string; controllerSite: Site }> {
  const sitePath = join(procs.dir, `${name}-site-sim.yaml`);
  await writeFile(sitePath, stringify(site));
  const proc = procs.spawn(`${name}-sim`, simArgs(sitePath), core);
  const simUrl = await poll(`the ${name} simulator to print its API address`, timeoutMs, async () => {
    const log = await readFile(proc.logPath, 'utf8').catch(() => '');
    if (proc.exit()) throw new Error(`the simulator ${proc.exit()}:\n${tail(log)}`);
    return /sim API\s+(http:\/\/[\d.]+:\d+)/.exec(log)?.[1];
  });
  // The controller's copy of the site names the ports the simulator really listens on.
  const state = await getJson<{ ahus: { id: string; endpoint: string }[]; mqttBrokerUrl: string }>(
    `${simUrl}/sim/state`,
    10_000,
  );
  const ports = new Map(state.ahus.map((a) => [a.id, Number(new URL(a.endpoint).port)]));
  const controllerSite = structuredClone(site);
  for (const a of controllerSite.airHandlers) {
    if (a.protocol !== 'modbus-tcp') continue;
    const port = ports.get(a.id);
    if (!port) throw new Error(`the simulator reports no port for ${a.id}`);
    a.endpoint.port = port;
  }
  return { proc, simUrl, mqttUrl: state.mqttBrokerUrl, controllerSite };
}

/**
 * Writes a one-node controller config (production timing: the schema's defaults) beside its site
 * and starts `coolctl run`; resolves once it says it runs.
 */
export async function startController(
  procs: ScaleProcesses,
  o: {
    name: string;
    site: Site;
    etcd: string[];
    mqttUrl: string;
    core: number | null;
    timeoutMs: number;
    daemon: DaemonCommand;
    nodeArgs?: string[];
  },
): Promise<{ proc: Proc; apiUrl: string; headers: Record<string, string> }> {
  const node = 'c1';
  const [apiPort, peerPort] = [await freePort(), await freePort()];
  await writeFile(join(procs.dir, `${o.name}-site.yaml`), stringify(o.site));
  await writeFile(join(procs.dir, `${o.name}.secret`), `${randomBytes(32).toString('hex')}\n`, {
    mode: 0o600,
  });
  const configPath = join(procs.dir, `${o.name}.yaml`);
  const prefix = `/coolctl-bench-scale-${o.name}-${process.pid}`;
  // The API needs an identity: an admin and token seeded in etcd before the controller starts.
  const { headers } = await seedApiAdmin(o.etcd, prefix);
  await writeFile(
    configPath,
    stringify({
      site: `${o.name}-site.yaml`,
      cluster: {
        etcd: o.etcd,
        prefix,
        secretFile: `${o.name}.secret`,
      },
      nodes: { [node]: { api: `127.0.0.1:${apiPort}`, peer: `127.0.0.1:${peerPort}` } },
      dataDir: `var-${o.name}/{node}`,
      sensors: { mqttUrl: o.mqttUrl },
    }),
  );
  const proc = procs.spawn(
    `${o.name}-controller`,
    [
      ...o.daemon.nodeFlags,
      ...(o.nodeArgs ?? []),
      o.daemon.script,
      'run',
      '--config',
      configPath,
      '--node',
      node,
    ],
    o.core,
    o.daemon.env,
  );
  await poll(`the ${o.name} controller to start`, o.timeoutMs, async () => {
    const log = await readFile(proc.logPath, 'utf8').catch(() => '');
    if (log.includes(`coolctl: node ${node} running`)) return true;
    if (proc.exit()) throw new Error(`the controller ${proc.exit()} on start:\n${tail(log)}`);
    return undefined;
  });
  return { proc, apiUrl: `http://127.0.0.1:${apiPort}`, headers };
}

export async function getJson<T>(
  url: string,
  timeoutMs = 2000,
  headers: Record<string, string> = {},
): Promise<T> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`${url} answered ${res.status}`);
  return (await res.json()) as T;
}

/** Polls `fn` until it returns something other than undefined; errors it throws end the wait. */
export async function poll<T>(
  what: string,
  timeoutMs: number,
  fn: () => Promise<T | undefined>,
  intervalMs = 250,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(intervalMs);
  }
}

export function tail(text: string, lines = 30): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}
