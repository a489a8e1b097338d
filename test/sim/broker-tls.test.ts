// The simulator's embedded MQTT broker secured: a TLS listener (certificates made here with openssl)
// and one required user whose password comes from a file. The simulated gateways log in and publish;
// Debian's mosquitto_sub with the CA and password receives their reports, and so does the
// controller's own MQTT source configured with mqtts:// + username + passwordFile + caFile. Wrong or
// missing credentials are refused with CONNACK 4, counted and logged without the password; a
// plain-MQTT client at the TLS port gets no session and is counted too.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { buildSimApi } from '../../firmware-sim/api.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { loadBrokerSecurity } from '../../firmware-sim/mesh/broker.ts';
import { Simulation } from '../../firmware-sim/simulation.ts';
import { makeCa, makeLeaf, type TestCa, type TestLeaf } from '../../scripts/lib/throwaway-pki.ts';
import { loadControllerConfig } from '../../src/config/controller-config.ts';
import { CoolctlError, ErrorCodes } from '../../src/errors.ts';
import { MqttSource } from '../../src/sensors/mqtt-source.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { quietLogger, waitFor } from '../helpers.ts';

// Modbus units only and a small mesh: the broker is what is under test, not node-opcua.
const site = generateSite({ ...demoShape, airHandlers: 2, opcuaShare: 0, sensorNodes: 8, controlGroups: 1 });
const USER = 'hall';
const PASSWORD = randomBytes(18).toString('base64url');

let dir: string;
let ca: TestCa;
let caPem: Buffer;
let leaf: TestLeaf;
let passwordFile: string;
let sim: Simulation;
let api: ReturnType<typeof buildSimApi>;
let port: number;
const logLines: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coolctl-sim-broker-tls-'));
  ca = await makeCa(dir, 'sim-mqtt-ca');
  leaf = await makeLeaf(ca, 'sim-mqtt-broker', { usage: ['serverAuth'] });
  caPem = await readFile(ca.caFile);
  passwordFile = join(dir, 'mqtt-password');
  await writeFile(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
  const logger = pino(
    { level: 'debug' },
    {
      write: (s: string) => {
        logLines.push(s);
      },
    },
  );
  sim = new Simulation({
    site,
    seed: 3,
    ephemeralPorts: true,
    // A report every 0.5 wall seconds (10 sim s at 20×).
    timeScale: 20,
    logger,
    mqttSecurity: {
      certFile: leaf.certFile,
      keyFile: leaf.keyFile,
      caFile: ca.caFile,
      username: USER,
      passwordFile,
    },
  });
  await sim.start();
  api = buildSimApi(sim, quietLogger);
  await api.ready();
  port = Number(new URL(sim.brokerUrl).port);
}, 60_000);

afterAll(async () => {
  await api?.close();
  await sim?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** The parts of `GET /sim/state` these tests read. */
interface SimStateView {
  mqttBrokerUrl: string;
  mqttBroker: { tls: boolean; username: string | null; authRefused: number; tlsRefused: number };
  gateways: { id: string; online: boolean }[];
  mesh: { published: number };
}

async function simState(): Promise<SimStateView> {
  const res = await api.inject({ method: 'GET', url: '/sim/state' });
  expect(res.statusCode).toBe(200);
  return res.json();
}

type Outcome = 'connected' | 'closed' | (Error & { code?: unknown });

/**
 * One connection attempt, no retries: resolves `connected`, the client's error (a refused CONNACK
 * carries its return code as `code`), or `closed` when the broker cut the link first.
 */
function attempt(url: string, opts: mqtt.IClientOptions): Promise<Outcome> {
  const client = mqtt.connect(url, { ...opts, reconnectPeriod: 0, connectTimeout: 5000 });
  return new Promise((done) => {
    const finish = (outcome: Outcome): void => {
      client.removeAllListeners();
      client.on('error', () => {});
      client.end(true);
      done(outcome);
    };
    client.once('connect', () => finish('connected'));
    client.once('error', (err) => finish(err));
    client.once('close', () => finish('closed'));
  });
}

/**
 * mosquitto_sub against the sim's broker, its `option value` pairs (password included) in an options file
 * (`$XDG_CONFIG_HOME/mosquitto_sub`) so the password is not on a command line. Resolves with the
 * exit code and output; the `-W` timeout and the execFile deadline bound it.
 */
async function mosquittoSub(
  options: string[],
  extra: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const conf = await mkdtemp(join(dir, 'sub-'));
  const lines = options.map((o, i) => (i % 2 === 0 ? o : ` ${o}\n`)).join('');
  await writeFile(join(conf, 'mosquitto_sub'), lines, { mode: 0o600 });
  return new Promise((done) => {
    execFile(
      '/usr/bin/mosquitto_sub',
      ['-h', '127.0.0.1', '-p', String(port), ...extra],
      { env: { ...process.env, XDG_CONFIG_HOME: conf }, timeout: 30_000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        done({ code, stdout: stdout.toString(), stderr: stderr.toString() });
      },
    );
  });
}

describe('the simulator’s broker with TLS and a password', () => {
  it('announces mqtts:// without credentials; its gateways log in and publish', async () => {
    expect(sim.brokerUrl).toMatch(/^mqtts:\/\/127\.0\.0\.1:\d+$/);
    const state = await waitFor('every MQTT gateway online and reports published', async () => {
      const s = await simState();
      return s.gateways.every((g: { online: boolean }) => g.online) && s.mesh.published > 0 ? s : undefined;
    });
    expect(state.mqttBrokerUrl).toBe(sim.brokerUrl);
    expect(state.mqttBroker).toMatchObject({ tls: true, username: USER });
    expect(JSON.stringify(state)).not.toContain(PASSWORD);
  });

  it('mosquitto_sub with the CA and the password receives the gateways’ reports', async () => {
    const out = await mosquittoSub(
      ['-u', USER, '-P', PASSWORD, '--cafile', ca.caFile],
      ['-t', `${site.gateways[0]!.topicPrefix}/gateway/+/node/+/report`, '-v', '-C', '3', '-W', '20'],
    );
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const lines = out.stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    for (const line of lines) {
      const [topic, ...payload] = line.split(' ');
      expect(topic).toMatch(/\/gateway\/[^/]+\/node\/[^/]+\/report$/);
      expect(JSON.parse(payload.join(' ')).readings.length).toBeGreaterThan(0);
    }
  });

  it('refuses a wrong password and an anonymous client with CONNACK 4, counted and logged without the password', async () => {
    const before = (await simState()).mqttBroker.authRefused;
    const wrong = `${PASSWORD}-old`;
    const sub = await mosquittoSub(
      ['-u', USER, '-P', wrong, '--cafile', ca.caFile],
      ['-t', '#', '-C', '1', '-W', '10'],
    );
    expect(sub.code).not.toBe(0);
    expect(sub.stderr.toLowerCase()).toContain('bad user name or password');

    for (const creds of [{ username: USER, password: wrong }, {}]) {
      const outcome = await attempt(sim.brokerUrl, { ...creds, ca: caPem });
      expect(outcome).toBeInstanceOf(Error);
      expect((outcome as Error & { code?: unknown }).code).toBe(4);
    }
    const after = (await simState()).mqttBroker.authRefused;
    expect(after - before).toBe(3);
    // The count is shared memory; the log lines come from the broker's thread as messages.
    const refusals = await waitFor('three refusals logged', () => {
      const r = logLines.filter((l) => l.includes('bad username or password') && l.includes('refused'));
      return r.length >= 3 ? r : null;
    });
    expect(refusals.some((l) => l.includes('"reason":"anonymous"'))).toBe(true);
    expect(logLines.join('')).not.toContain(PASSWORD);
  });

  it('gives a plain-MQTT client at the TLS port no session, and counts it', async () => {
    const before = (await simState()).mqttBroker.tlsRefused;
    const outcome = await attempt(`mqtt://127.0.0.1:${port}`, { username: USER, password: PASSWORD });
    expect(outcome).not.toBe('connected');
    await waitFor(
      'the refused handshake counted',
      async () => (await simState()).mqttBroker.tlsRefused > before,
    );
    expect(logLines.some((l) => l.includes('MQTT connection refused: no TLS handshake'))).toBe(true);
  });

  it('the controller’s MQTT source, configured with mqtts:// + username + passwordFile + caFile, ingests the reports', async () => {
    const file = join(dir, 'controller.yaml');
    await writeFile(
      file,
      stringify({
        site: resolve('config/demo-site.yaml'),
        cluster: { etcd: ['http://127.0.0.1:2379'] },
        nodes: { n1: { api: '127.0.0.1:8080' } },
        sensors: { mqtt: { url: sim.brokerUrl, username: USER, passwordFile, caFile: ca.caFile } },
      }),
    );
    const config = await loadControllerConfig(file, 'n1');
    expect(config.mqtt).toBeDefined();
    const store = new SensorStore(site, {});
    const source = new MqttSource(site, store, { ...config.mqtt!, logger: quietLogger });
    try {
      source.start();
      await source.waitConnected(10_000);
      const node = site.sensorNodes[0]!;
      await waitFor(
        `a reading of ${node.id} from the simulated mesh`,
        () => store.sensor(node.id, 'inlet-top')?.value !== undefined,
        { timeoutMs: 15_000 },
      );
      expect(source.counters.authRefused).toBe(0);
    } finally {
      await source.stop();
    }
  });

  it('keeps TLS and the password across a broker restart; the gateways log in again', async () => {
    const published = (await simState()).mesh.published;
    const res = await api.inject({
      method: 'POST',
      url: '/sim/faults',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ fault: 'broker-restart', downMs: 200 }),
    });
    expect(res.statusCode).toBeLessThan(300);
    await waitFor(
      'reports published again after the restart',
      async () => {
        const s = await simState();
        return s.gateways.every((g: { online: boolean }) => g.online) && s.mesh.published > published + 4;
      },
      { timeoutMs: 20_000 },
    );
    expect(sim.brokerUrl).toMatch(/^mqtts:\/\//);
    const sub = await mosquittoSub(
      ['-u', USER, '-P', PASSWORD, '--cafile', ca.caFile],
      ['-t', `${site.gateways[0]!.topicPrefix}/gateway/+/node/+/report`, '-C', '1', '-W', '20'],
    );
    expect(sub.code).toBe(0);
  });
});

describe('broker security settings', () => {
  it('refuses half-given pairs and unreadable files, naming paths and never the password', async () => {
    const refused = async (files: Parameters<typeof loadBrokerSecurity>[0]) => {
      const err = await loadBrokerSecurity(files).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CoolctlError);
      expect((err as CoolctlError).code).toBe(ErrorCodes.STARTUP);
      expect((err as CoolctlError).message).not.toContain(PASSWORD);
      return (err as CoolctlError).message;
    };
    expect(await refused({ certFile: leaf.certFile })).toContain('certificate and key go together');
    expect(await refused({ username: USER })).toContain('username and password file go together');
    expect(await refused({ username: USER, passwordFile: join(dir, 'missing') })).toContain(
      `${join(dir, 'missing')} cannot be read (ENOENT)`,
    );
    const empty = join(dir, 'empty-password');
    await writeFile(empty, '\n', { mode: 0o600 });
    expect(await refused({ username: USER, passwordFile: empty })).toContain('is empty');
    const ok = await loadBrokerSecurity({ username: USER, passwordFile });
    expect(ok.auth).toEqual({ username: USER, password: PASSWORD });
    expect(ok.tls).toBeUndefined();
  });

  it('a simulation whose broker files cannot be read does not start, nor any of its devices', async () => {
    const bad = new Simulation({
      site,
      ephemeralPorts: true,
      logger: quietLogger,
      mqttSecurity: { certFile: join(dir, 'nope.crt'), keyFile: leaf.keyFile },
    });
    const err = await bad.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CoolctlError);
    expect((err as CoolctlError).message).toContain('nope.crt cannot be read');
    // The files are read before any device listens: no unit got an endpoint.
    expect(bad.ahuStates().every((a) => a.endpoint === '')).toBe(true);
    await bad.stop();

    const external = new Simulation({
      site,
      ephemeralPorts: true,
      logger: quietLogger,
      mqttUrl: 'mqtts://127.0.0.1:1',
      mqttSecurity: { certFile: leaf.certFile, keyFile: leaf.keyFile },
    });
    const refused = await external.start().catch((e: unknown) => e);
    expect((refused as CoolctlError).message).toContain('are for the embedded broker');
    await external.stop();
  });
});
