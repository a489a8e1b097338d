// The suite's link switch (test/support/links.ts, `COOLCTL_TEST_LINKS`) cannot degrade silently:
// runs in both modes and checks from outside what the mode promises. Secure: the etcd cluster the
// harness starts refuses a plain client, a certificate without a user, and its own user outside
// the role's prefix; the simulator's broker is mqtts:// and refuses an anonymous client and plain
// MQTT. Plain: the same parts answer a plain, anonymous client (so plain really is the default).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type IClientOptions } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Simulation } from '../../firmware-sim/simulation.ts';
import { createEtcdClient } from '../../src/cluster/etcd/etcd-client.ts';
import { quietLogger } from '../helpers.ts';
import { type EtcdCluster, etcdctl, startEtcdCluster, TEST_ROLE_PREFIX } from '../support/etcd-cluster.ts';
import { parseTestLinks, secureLinks, TEST_LINKS } from '../support/links.ts';
import { type SimBrokerSecurity, simBrokerFiles, simBrokerForLinks } from '../support/sim-broker.ts';

const KEY = '/coolctl-test/links/probe';

let dir: string;
let etcd: EtcdCluster;
let broker: SimBrokerSecurity | undefined;
let sim: Simulation;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coolctl-test-links-'));
  etcd = await startEtcdCluster({ size: 1 });
  broker = await simBrokerForLinks(dir);
  sim = new Simulation({
    // Modbus units only and a small mesh: the broker is what is under test.
    site: generateSite({ ...demoShape, airHandlers: 2, opcuaShare: 0, sensorNodes: 4, controlGroups: 1 }),
    seed: 1,
    ephemeralPorts: true,
    logger: quietLogger,
    ...(broker ? { mqttSecurity: simBrokerFiles(broker) } : {}),
  });
  await sim.start();
}, 60_000);

afterAll(async () => {
  await sim?.stop();
  await etcd?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** An etcd get with a deadline: 'ok', or the error's message. */
async function get(opts: Parameters<typeof createEtcdClient>[0], key = KEY): Promise<string> {
  const client = createEtcdClient(opts);
  try {
    await client.get(key).string();
    return 'ok';
  } catch (err) {
    return (err as Error).message;
  } finally {
    client.close();
  }
}

/** Whether a client gets an MQTT session: 'connected', or what refused it (bounded by 5 s). */
function mqttSession(url: string, opts: IClientOptions = {}): Promise<string> {
  return new Promise((resolve) => {
    const client = connect(url, { connectTimeout: 4000, reconnectPeriod: 0, ...opts });
    const done = (outcome: string) => {
      clearTimeout(timer);
      client.removeAllListeners();
      client.on('error', () => {});
      client.end(true);
      resolve(outcome);
    };
    const timer = setTimeout(() => done('no CONNACK within 5 s'), 5000);
    client.once('connect', () => done('connected'));
    client.once('error', (err) => done(`error: ${err.message}`));
    client.once('close', () => done('closed'));
  });
}

describe(`the suite's links (COOLCTL_TEST_LINKS=${TEST_LINKS})`, () => {
  it('takes plain or secure, and nothing else', () => {
    expect(parseTestLinks(undefined)).toBe('plain');
    expect(parseTestLinks('plain')).toBe('plain');
    expect(parseTestLinks('secure')).toBe('secure');
    expect(() => parseTestLinks('tls')).toThrow(/COOLCTL_TEST_LINKS="tls": expected "plain".*or "secure"/);
  });

  it('etcd: the cluster and its clients are what the mode says', async () => {
    const opts = etcd.clientOptions();
    // The cluster's own settings reach it, under the role's prefix.
    expect(await get({ ...opts, callTimeoutMs: 3000 })).toBe('ok');
    const config = etcd.clientConfig();
    if (!secureLinks()) {
      expect(config).toEqual({ hosts: etcd.endpoints.map((e) => `http://${e}`) });
      expect(etcd.security).toBeUndefined();
      await expect(etcdctl(etcd.endpoints, ['get', KEY])).resolves.toBeDefined();
      return;
    }
    expect(config.hosts.every((h) => h.startsWith('https://'))).toBe(true);
    expect(config.tls?.certFile).toBeDefined();
    expect(config.auth?.username).toBe(etcd.security?.username);
    // A plain client at a TLS member: no handshake, no answer.
    const plain = await get({ hosts: etcd.endpoints.map((e) => `http://${e}`), callTimeoutMs: 1500 });
    expect(plain).not.toBe('ok');
    await expect(etcdctl(etcd.endpoints, ['get', KEY])).rejects.toThrow();
    // TLS with the client certificate but no user: the certificate proves the machine, not who.
    const anonymous = await get({ hosts: opts.hosts, tls: opts.tls, callTimeoutMs: 3000 });
    expect(anonymous).toMatch(/user name is empty|permission denied|authentication/i);
    await expect(etcd.ctl(['get', KEY])).rejects.toThrow(/user name is empty|permission denied/i);
    // A wrong password, and the right user outside the role's prefix.
    const wrong = await get({
      ...opts,
      auth: { username: opts.auth!.username, password: 'wrong' },
      callTimeoutMs: 3000,
    });
    expect(wrong).toMatch(/authentication failed/i);
    expect(await get({ ...opts, callTimeoutMs: 3000 }, '/outside-the-role')).toMatch(/permission denied/i);
    expect(etcd.security?.prefix).toBe(TEST_ROLE_PREFIX);
  });

  it('the simulator broker: anonymous MQTT only in plain mode', async () => {
    const url = sim.brokerUrl;
    const port = new URL(url).port;
    if (!broker) {
      expect(url).toMatch(/^mqtt:\/\//);
      expect(await mqttSession(url)).toBe('connected');
      return;
    }
    expect(url).toMatch(/^mqtts:\/\//);
    const ca = [await readFile(broker.caFile)];
    // Anonymous over TLS (the CA trusted): refused at CONNACK.
    expect(await mqttSession(url, { ca })).toMatch(/^error: .*(Not authorized|Bad username or password)/i);
    expect(await mqttSession(url, { ca, username: broker.username, password: 'wrong' })).toMatch(/^error: /);
    // Plain MQTT at the TLS port: no session.
    expect(await mqttSession(`mqtt://127.0.0.1:${port}`)).not.toBe('connected');
    expect(await mqttSession(url, { ca, username: broker.username, password: broker.password })).toBe(
      'connected',
    );
  });
});
