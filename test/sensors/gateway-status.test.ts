// A gateway's status against its reports, over a real broker (the simulator's embedded aedes): a
// retained offline status, of unknown age, never keeps a gateway whose reports arrive "offline"; a
// live offline status counts at once until the next report; a reconnect brings the retained status
// back, and only reports after it outweigh it.
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { type BrokerHandle, startBroker } from '../../firmware-sim/mesh/broker.ts';
import { MqttSource } from '../../src/sensors/mqtt-source.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const site = generateSite(demoShape);
const GW = 'gw-1';
const gwGroups = site.controlGroups.filter((g) =>
  g.sensorNodes.every((n) => site.sensorNodes.find((x) => x.id === n)?.gateway === GW),
);
const gwNodes = site.sensorNodes.filter((n) => n.gateway === GW);
const statusTopic = `coolctl/sim/gateway/${GW}/status`;

let broker: BrokerHandle;
let gateway: mqtt.MqttClient;
let seq = 0;
const sources: MqttSource[] = [];

beforeAll(async () => {
  broker = await startBroker({ host: '127.0.0.1', port: 0, logger: quietLogger });
  gateway = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
});

afterEach(async () => {
  await Promise.all(sources.splice(0).map((s) => s.stop()));
});

afterAll(async () => {
  await gateway?.endAsync(true);
  await broker?.close();
});

async function status(online: boolean, reason: string): Promise<void> {
  await gateway.publishAsync(statusTopic, JSON.stringify({ online, gateway: GW, reason }), {
    qos: 1,
    retain: true,
  });
}

/** One report from every node behind the gateway, as the gateway publishes them. */
async function reportRound(): Promise<void> {
  seq++;
  await Promise.all(
    gwNodes.map((n) =>
      gateway.publishAsync(
        `coolctl/sim/gateway/${GW}/node/${n.id}/report`,
        JSON.stringify({
          node: n.id,
          gateway: GW,
          seq,
          readings: n.sensors.map((s) => ({
            sensor: s.id,
            kind: s.kind,
            value: s.kind === 'humidity' ? 45 : 22 + (seq % 7) * 0.03,
          })),
        }),
      ),
    ),
  );
}

async function controller(): Promise<{ store: SensorStore; source: MqttSource }> {
  const store = new SensorStore(site, { logger: quietLogger });
  const source = new MqttSource(site, store, { url: broker.url, logger: quietLogger });
  sources.push(source);
  source.start();
  await source.waitConnected(10_000);
  return { store, source };
}

const online = (store: SensorStore) => store.gatewayStates().find((g) => g.id === GW)!.online;
const groupsOk = (store: SensorStore) => gwGroups.every((g) => store.view(g.id).verdict === 'ok');
const groupsBlind = (store: SensorStore) => gwGroups.every((g) => store.view(g.id).verdict === 'blind');

describe('gateway status and fresher reports over a real broker', () => {
  it('a retained offline status does not blind the groups of a gateway whose reports keep arriving', async () => {
    expect(gwGroups.length).toBeGreaterThan(0);
    await status(false, 'connection-lost'); // retained, from a gateway long since back
    const { store, source } = await controller();
    await waitFor('the retained status delivered', () => source.counters.statusMessages >= 1);
    await reportRound();
    await waitFor('the groups behind the gateway ok', () => groupsOk(store));
    expect(online(store)).toBe(true);
    await reportRound();
    await waitFor(
      'the next round applied',
      () => store.nodeHealth().find((n) => n.node === gwNodes[0]!.id)?.lastSeq === seq,
    );
    expect(groupsOk(store)).toBe(true);
  });

  it('a live offline status counts at once; the next report brings the gateway back', async () => {
    await status(true, 'connected');
    const { store } = await controller();
    await reportRound();
    await waitFor('ok', () => groupsOk(store));
    await status(false, 'connection-lost');
    await waitFor('offline at once, the groups blind', () => !online(store) && groupsBlind(store));
    await reportRound();
    await waitFor('online again, the groups ok', () => online(store) && groupsOk(store));
  });

  it('after a reconnect, the retained offline status counts until a report arrives after it', async () => {
    await status(true, 'connected');
    const { store, source } = await controller();
    await reportRound();
    await waitFor('ok', () => groupsOk(store));
    // offline (retained on the broker), then a report: online, with the offline status still retained
    await status(false, 'connection-lost');
    await waitFor('offline', () => !online(store));
    await reportRound();
    await waitFor('online', () => online(store));
    // the controller's connection drops and comes back: the retained offline status arrives again,
    // and the reports heard before the reconnect do not outweigh it
    const connects = source.counters.connects;
    (source as unknown as { client: mqtt.MqttClient }).client.stream.destroy();
    await waitFor('reconnected', () => source.counters.connects > connects && source.connected, {
      timeoutMs: 10_000,
    });
    await waitFor('the retained offline status counted', () => !online(store) && groupsBlind(store));
    await reportRound();
    await waitFor('a report after it: online, groups ok', () => online(store) && groupsOk(store));
  });
});
