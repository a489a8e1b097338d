// The sensor link secured: Debian's mosquitto with a TLS listener (certificates made with openssl)
// and a password file. The controller's MQTT client, given the broker's CA and a user with its
// password (read from a file by the config), ingests reports over mqtts://; a wrong password is
// refused, counted and logged once, without the password; the config check refuses credentials
// written into the URL, and its message does not repeat them.
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import mqtt from 'mqtt';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { loadControllerConfig } from '../../src/config/controller-config.ts';
import { daemonLogger } from '../../src/daemon/logger.ts';
import { ConfigError } from '../../src/errors.ts';
import { MqttSource } from '../../src/sensors/mqtt-source.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { waitFor } from '../helpers.ts';
import { type Mosquitto, startMosquitto } from './mosquitto.ts';

const site = generateSite(demoShape);
const node = site.sensorNodes[0]!;
const reportTopic = `coolctl/sim/gateway/${node.gateway}/node/${node.id}/report`;
const PASSWORD = randomBytes(18).toString('base64url');
const GATEWAY_PASSWORD = randomBytes(18).toString('base64url');

let broker: Mosquitto;
let dir: string;
let ca: Buffer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coolctl-mqtt-tls-'));
  broker = await startMosquitto({ secure: { users: { coolctl: PASSWORD, gateway: GATEWAY_PASSWORD } } });
  ca = await readFile(broker.caFile!);
}, 60_000);

afterAll(async () => {
  await broker?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** A controller config whose sensors section is `sensors`, next to a password file. */
async function configWith(sensors: unknown): Promise<string> {
  await writeFile(join(dir, 'mqtt-password'), `${PASSWORD}\n`, { mode: 0o600 });
  const file = join(dir, 'controller.yaml');
  await writeFile(
    file,
    stringify({
      site: resolve('config/demo-site.yaml'),
      cluster: { etcd: ['http://127.0.0.1:2379'] },
      nodes: { n1: { api: '127.0.0.1:8080' } },
      sensors,
    }),
  );
  return file;
}

describe('MQTT over TLS with a password', () => {
  it('reads the password from its file; refuses credentials in the URL without repeating them', async () => {
    const ok = await loadControllerConfig(
      await configWith({
        mqtt: { url: broker.url, username: 'coolctl', passwordFile: 'mqtt-password', caFile: broker.caFile },
      }),
      'n1',
    );
    expect(ok.mqtt?.password).toBe(PASSWORD);
    expect(ok.mqtt?.tls?.ca?.equals(ca)).toBe(true);

    for (const sensors of [
      { mqttUrl: `mqtts://coolctl:${PASSWORD}@127.0.0.1:${broker.port}` },
      { mqtt: { url: `mqtts://coolctl:${PASSWORD}@127.0.0.1:${broker.port}` } },
    ]) {
      const err = await loadControllerConfig(await configWith(sensors), 'n1').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).message).toContain('credentials in the broker URL');
      expect((err as ConfigError).message).not.toContain(PASSWORD);
    }
    const plain = await loadControllerConfig(
      await configWith({ mqtt: { url: `mqtt://127.0.0.1:${broker.port}`, caFile: broker.caFile } }),
      'n1',
    ).catch((e: unknown) => e);
    expect((plain as ConfigError).message).toContain('TLS files are set but the URL is mqtt://');
  });

  it('ingests reports over mqtts:// as its user', async () => {
    const store = new SensorStore(site, {});
    const source = new MqttSource(site, store, {
      url: broker.url,
      username: 'coolctl',
      password: PASSWORD,
      tls: { ca },
    });
    const gateway = await mqtt.connectAsync(broker.url, {
      username: 'gateway',
      password: GATEWAY_PASSWORD,
      ca,
      reconnectPeriod: 0,
    });
    try {
      source.start();
      await source.waitConnected(10_000);
      let seq = 0;
      await waitFor('a reading ingested over TLS', async () => {
        seq++;
        await gateway.publishAsync(
          reportTopic,
          JSON.stringify({
            node: node.id,
            gateway: node.gateway,
            seq,
            readings: [{ sensor: 'inlet-top', kind: 'inlet-top', value: 23.5 }],
          }),
        );
        return store.sensor(node.id, 'inlet-top')?.value === 23.5;
      });
      expect(source.counters.authRefused).toBe(0);
    } finally {
      await gateway.endAsync(true);
      await source.stop();
    }
  });

  it('a wrong password is refused, counted, and logged once without the password', async () => {
    const wrong = `${PASSWORD}-old`;
    // The daemon's redaction (src/cli.ts), so a slip would show here as it would in the journal.
    const lines: string[] = [];
    const logger = daemonLogger(
      { level: 'debug' },
      {},
      {
        write: (s: string) => {
          lines.push(s);
        },
      },
      false,
    );
    const registry = new Registry();
    const store = new SensorStore(site, {});
    const source = new MqttSource(site, store, {
      url: broker.url,
      username: 'coolctl',
      password: wrong,
      tls: { ca },
      logger,
      registry,
    });
    try {
      source.start();
      await waitFor('two refused attempts', () => source.counters.authRefused >= 2, { timeoutMs: 15_000 });
      expect(source.connected).toBe(false);
      expect(await registry.getSingleMetricAsString('coolctl_sensor_mqtt_auth_refused_total')).toMatch(
        /coolctl_sensor_mqtt_auth_refused_total [2-9]/,
      );
      const refusals = lines.filter((l) => l.includes('refused our credentials'));
      expect(refusals).toHaveLength(1);
      expect(refusals[0]).toContain('"username":"coolctl"');
      expect(lines.join('')).not.toContain(wrong);
      expect(broker.log()).not.toContain(wrong);
    } finally {
      await source.stop();
    }
  });
});
