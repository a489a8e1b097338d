// `npm run demo`: the whole product on loopback — a 3-member etcd cluster, the simulator with the
// demo site (Modbus, OPC-UA, MQTT), and three controllers (c1…c3) with their peer channel and the
// dashboard — then prints where to look and stops everything, in order, on Ctrl-C.
// Everything lives under var/demo/ (logs, etcd data, the generated controller config and secret);
// one demo per directory (demo.pid). COOLCTL_DEMO_DIR moves the directory and COOLCTL_DEMO_PORTS=free
// takes every port from the OS, so a second demo (or the suite's test) runs beside a user's.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDocument, stringify } from 'yaml';
import { DEFAULT_PKI_DIR } from '../firmware-sim/ahu/opcua-server.ts';
import { freePort } from '../src/util/async.ts';
import { startEtcdCluster } from './lib/etcd-cluster.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DIR = process.env.COOLCTL_DEMO_DIR ? resolve(process.env.COOLCTL_DEMO_DIR) : join(ROOT, 'var', 'demo');
const SITE = join(ROOT, 'config', 'demo-site.yaml');
/** `free`: the OS picks every port (sim API, MQTT, units, controllers); unset: the fixed ones below. */
const PORTS = process.env.COOLCTL_DEMO_PORTS ?? '';
const FREE_PORTS = PORTS === 'free';
const SIM_PORT = 8090;
const MQTT_PORT = 1883;
const NODES = ['c1', 'c2', 'c3'];
const fixedApiPort = (i: number) => 8101 + i;
const fixedPeerPort = (i: number) => 8201 + i;
/** How long the controllers, then the simulator, get to stop on SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 8000;

const procs: { name: string; proc: ChildProcess }[] = [];

function spawnLogged(name: string, args: string[]): ChildProcess {
  const log = join(DIR, `${name}.log`);
  const fd = openSync(log, 'a');
  const proc = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  procs.push({ name, proc });
  proc.once('exit', (code, signal) => {
    if (!stopping) process.stderr.write(`demo: ${name} exited (${code ?? signal}); its log: ${log}\n`);
  });
  return proc;
}

async function waitForLog(name: string, pattern: RegExp, timeoutMs: number): Promise<string> {
  const deadline = performance.now() + timeoutMs;
  const log = join(DIR, `${name}.log`);
  for (;;) {
    const text = (() => {
      try {
        return readFileSync(log, 'utf8');
      } catch {
        return '';
      }
    })();
    const m = pattern.exec(text);
    if (m) return m[1] ?? m[0];
    const p = procs.find((x) => x.name === name)?.proc;
    // Killed by a signal (the OOM killer, a kill -9) it has no exit code, but is just as gone.
    if (p && (p.exitCode !== null || p.signalCode !== null))
      throw new Error(`${name} exited (${p.exitCode ?? p.signalCode}):\n${text.slice(-2000)}`);
    if (performance.now() > deadline)
      throw new Error(`${name} did not start within ${timeoutMs} ms:\n${text.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let stopping = false;
let etcdStop: (() => Promise<void>) | undefined;

/** SIGTERM to each running process of `names` at once, SIGKILL to any still running after the grace. */
async function stopProcs(names: (name: string) => boolean): Promise<void> {
  const running = procs.filter(
    ({ name, proc }) => names(name) && proc.exitCode === null && proc.signalCode === null,
  );
  const exited = running.map(({ proc }) => new Promise((r) => proc.once('exit', r)));
  for (const { proc } of running) proc.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(exited), new Promise((r) => (timer = setTimeout(r, STOP_GRACE_MS)))]);
  clearTimeout(timer);
  for (const { proc } of running)
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  await Promise.all(exited);
}

/**
 * The one stop path: the controllers first (they resign while etcd and their units are still
 * there), then the simulator, then etcd. A second call (a second Ctrl-C) ends at once.
 */
async function stopAll(code: number): Promise<never> {
  if (stopping) process.exit(code);
  stopping = true;
  process.stdout.write('\ndemo: stopping the controllers (they resign), the simulator, etcd…\n');
  await stopProcs((name) => NODES.includes(name));
  await stopProcs(() => true);
  await etcdStop?.().catch(() => {});
  rmSync(join(DIR, 'demo.pid'), { force: true });
  process.stdout.write('demo: stopped\n');
  process.exit(code);
}

/** Set when a stop began while starting: main() then starts nothing more and leaves the stop to stopAll. */
class Stopped extends Error {}
const notStopping = (): void => {
  if (stopping) throw new Stopped('stopped while starting');
};

/** The pid of a demo that still runs from DIR, or null. */
function runningDemo(): number | null {
  let pid: number;
  try {
    pid = Number.parseInt(readFileSync(join(DIR, 'demo.pid'), 'utf8'), 10);
  } catch {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return null;
  try {
    // A pid reused by something else is not a demo.
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('demo.ts') ? pid : null;
  } catch {
    return null;
  }
}

/** Where the simulator's units really listen, written into a copy of the site the controllers read. */
async function siteWithSimPorts(simUrl: string): Promise<{ site: string; mqttUrl: string }> {
  const res = await fetch(`${simUrl}/sim/state`, { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`the simulator's ${simUrl}/sim/state answered ${res.status}`);
  const state = (await res.json()) as { ahus: { id: string; endpoint: string }[]; mqttBrokerUrl: string };
  const endpoints = new Map(state.ahus.map((a) => [a.id, a.endpoint]));
  const doc = parseDocument(readFileSync(SITE, 'utf8'));
  const units = doc.toJS().airHandlers as { id: string; protocol: string }[];
  units.forEach((a, i) => {
    const ep = endpoints.get(a.id);
    if (!ep) throw new Error(`the simulator does not report ${a.id}`);
    if (a.protocol === 'opcua') doc.setIn(['airHandlers', i, 'endpoint', 'url'], ep);
    else doc.setIn(['airHandlers', i, 'endpoint', 'port'], Number(new URL(ep).port));
  });
  const site = join(DIR, 'site.yaml');
  writeFileSync(
    site,
    `# config/demo-site.yaml with the ports the simulator took (COOLCTL_DEMO_PORTS=free).\n${doc}`,
  );
  return { site, mqttUrl: state.mqttBrokerUrl };
}

async function main(): Promise<void> {
  if (PORTS !== '' && !FREE_PORTS) {
    process.stderr.write(`demo: COOLCTL_DEMO_PORTS=${JSON.stringify(PORTS)}: expected "free" or unset\n`);
    process.exit(2);
  }
  // Wiping the directory of a running demo would pull its etcd data and token from under it.
  const other = runningDemo();
  if (other !== null) {
    process.stderr.write(
      `demo: a demo is already running from ${DIR} (pid ${other}): stop it first (Ctrl-C in its terminal, or kill ${other}), or run this one beside it with COOLCTL_DEMO_DIR=/tmp/demo2 COOLCTL_DEMO_PORTS=free\n`,
    );
    process.exit(1);
  }
  rmSync(DIR, { recursive: true, force: true });
  mkdirSync(DIR, { recursive: true });
  writeFileSync(join(DIR, 'demo.pid'), `${process.pid}\n`);
  process.once('SIGINT', () => void stopAll(0));
  process.once('SIGTERM', () => void stopAll(0));

  process.stdout.write('demo: starting a 3-member etcd cluster…\n');
  // Plain links whatever COOLCTL_TEST_LINKS says: the controllers' config below names URLs only.
  const etcd = await startEtcdCluster({ dataDir: join(DIR, 'etcd'), secure: false });
  etcdStop = () => etcd.stop();
  notStopping();

  process.stdout.write('demo: starting the simulator (demo site)…\n');
  spawnLogged('sim', [
    'firmware-sim/main.ts',
    '--config',
    'config/demo-site.yaml',
    ...(FREE_PORTS
      ? ['--ephemeral-ports', '--port', '0']
      : ['--port', String(SIM_PORT), '--mqtt-port', String(MQTT_PORT)]),
    '--profile',
    'daily',
  ]);
  const simUrl = await waitForLog('sim', /sim API\s+(http:\/\/[\d.]+:\d+)/, 60_000);
  notStopping();
  const { site, mqttUrl } = FREE_PORTS
    ? await siteWithSimPorts(simUrl)
    : { site: SITE, mqttUrl: `mqtt://127.0.0.1:${MQTT_PORT}` };
  const apiPorts: number[] = [];
  const peerPorts: number[] = [];
  for (let i = 0; i < NODES.length; i++) {
    apiPorts.push(FREE_PORTS ? await freePort('127.0.0.1') : fixedApiPort(i));
    peerPorts.push(FREE_PORTS ? await freePort('127.0.0.1') : fixedPeerPort(i));
  }
  const apiPort = (i: number) => apiPorts[i]!;

  // The OPC-UA units use SignAndEncrypt and nothing is trusted automatically: trust the
  // simulator's certificate in each controller's PKI, as an operator would after checking it.
  const simCertificate = join(DEFAULT_PKI_DIR, 'own', 'certs', 'certificate.pem');
  for (const n of NODES) {
    const trusted = join(DIR, n, 'opcua-pki', 'trusted', 'certs');
    mkdirSync(trusted, { recursive: true });
    copyFileSync(simCertificate, join(trusted, 'coolctl-sim.pem'));
  }

  const secretFile = join(DIR, 'cluster.secret');
  writeFileSync(secretFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  // The first admin, shown once below: the API refuses everything else without an identity.
  const admin = { name: 'admin', password: randomBytes(12).toString('base64url') };
  const adminFile = join(DIR, 'admin.yaml');
  writeFileSync(adminFile, stringify(admin), { mode: 0o600 });
  const config = join(DIR, 'controller.yaml');
  writeFileSync(
    config,
    `# Generated by npm run demo.\n${stringify({
      site,
      cluster: {
        etcd: etcd.clientUrls,
        prefix: '/coolctl/demo',
        leaseTtlS: 2,
        keepaliveIntervalMs: 300,
        safetyMarginMs: 400,
        etcdCallTimeoutMs: 500,
        rebalanceHoldMs: 3000,
        secretFile: 'cluster.secret',
        failsafe: true,
      },
      nodes: Object.fromEntries(
        NODES.map((n, i) => [n, { api: `127.0.0.1:${apiPort(i)}`, peer: `127.0.0.1:${peerPorts[i]}` }]),
      ),
      dataDir: join(DIR, '{node}'),
      sensors: { mqttUrl },
      control: { periodMs: 1000 },
      api: { bootstrapAdminFile: adminFile },
    })}`,
  );

  process.stdout.write('demo: starting three controllers…\n');
  for (const n of NODES) spawnLogged(n, ['src/cli.ts', 'run', '--config', config, '--node', n]);
  for (const n of NODES) await waitForLog(n, new RegExp(`coolctl: node ${n} running`), 60_000);
  notStopping();
  const tokenFile = join(DIR, 'admin.token');
  const signIn = await fetch(`http://127.0.0.1:${apiPort(0)}/api/v1/auth/sign-in`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-coolctl-request': 'demo' },
    body: JSON.stringify({ ...admin, as: 'token' }),
    signal: AbortSignal.timeout(10_000),
  });
  if (!signIn.ok)
    throw new Error(`demo: the admin could not sign in (${signIn.status}): ${await signIn.text()}`);
  writeFileSync(tokenFile, `${((await signIn.json()) as { token: string }).token}\n`, { mode: 0o600 });
  notStopping();

  // Beside another demo, `pkill -f -- "--node c1"` would kill both demos' c1: name the process.
  const c1Pid = procs.find((p) => p.name === 'c1')?.proc.pid;
  const killHint =
    FREE_PORTS || process.env.COOLCTL_DEMO_DIR ? `kill -9 ${c1Pid}` : 'pkill -9 -f -- "--node c1"';
  process.stdout.write(
    [
      '',
      'coolctl demo is running (Ctrl-C stops everything):',
      '',
      ...NODES.map((n, i) => `  dashboard ${n}   http://127.0.0.1:${apiPort(i)}/`),
      `  sign in as       ${admin.name} / ${admin.password}   (shown once; the API needs an identity)`,
      `  CLI token        ${tokenFile}   (export COOLCTL_TOKEN=$(cat ${tokenFile}))`,
      `  cluster          npm run coolctl -- status --api http://127.0.0.1:${apiPort(0)} --token-file ${tokenFile}`,
      `  switchover       npm run coolctl -- switchover zone-1 --to c2 --api http://127.0.0.1:${apiPort(0)} --token-file ${tokenFile}`,
      `  audit trail      npm run coolctl -- history --api http://127.0.0.1:${apiPort(0)} --token-file ${tokenFile}`,
      `  simulator        ${simUrl}/sim/state   (faults: POST ${simUrl}/sim/faults, see docs/sim-api.md)`,
      `  etcd             ${etcd.clientUrls.join(' ')}`,
      `  logs             ${DIR}/{sim,c1,c2,c3}.log`,
      '',
      `Try: kill -9 a controller (${killHint}) and watch its groups move; trip a unit:`,
      `  curl -s -XPOST ${simUrl}/sim/faults -H 'content-type: application/json' -d '{"fault":"ahu-trip","ahu":"AHU-01"}'`,
      '',
    ].join('\n'),
  );
}

main().catch(async (err: unknown) => {
  // A stop that began while starting finishes on its own path, with its own exit code.
  if (stopping) return;
  process.stderr.write(`demo: ${(err as Error).message}\n`);
  await stopAll(1);
});
