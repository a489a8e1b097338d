// One gateway floods (a node of it replays thousands of reports): the flood guard drops what is over
// the node's rate, every flooded report is counted as applied or `rate-limited`, one drop line is
// written, and the other gateway's nodes keep being applied round after round meanwhile. Through
// Debian's mosquitto, with the flood from a process of its own, as a gateway would send it.
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { MqttSource } from '../../src/sensors/mqtt-source.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { waitFor } from '../helpers.ts';
import { captureLogs } from '../support/log-lines.ts';
import { mosquittoWithPublisher } from './mosquitto.ts';

const site = generateSite(demoShape);
const mosquitto = mosquittoWithPublisher();
const FLOOD = 8000;
/** The flooding gateway: FLOOD reports of one node, 50 per 5 ms (~10 000/s), then exit. */
const FLOODER = `
import mqtt from 'mqtt';
const [url, nodeJson, total] = process.argv.slice(1);
const n = JSON.parse(nodeJson);
const c = await mqtt.connectAsync(url, { reconnectPeriod: 0 });
const topic = 'coolctl/sim/gateway/' + n.gateway + '/node/' + n.id + '/report';
for (let seq = 1; seq <= Number(total); seq++) {
  c.publish(topic, JSON.stringify({ node: n.id, gateway: n.gateway, seq,
    readings: n.sensors.map((s) => ({ sensor: s.id, kind: s.kind, value: 30 })) }));
  if (seq % 50 === 0) await new Promise((r) => setTimeout(r, 5));
}
await c.endAsync();
`;

describe('a flooding gateway', () => {
  it('is rate-limited and counted report by report, and never starves the other gateway', async () => {
    const logs = captureLogs();
    const store = new SensorStore(site, { logger: logs.logger });
    const source = new MqttSource(site, store, { url: mosquitto.broker().url, logger: logs.logger });
    source.start();
    try {
      await source.waitConnected(10_000);
      const flooded = site.sensorNodes.find((n) => n.gateway === 'gw-2')!;
      const others = site.sensorNodes.filter((n) => n.gateway === 'gw-1');
      const child = spawn(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          FLOODER,
          mosquitto.broker().url,
          JSON.stringify(flooded),
          String(FLOOD),
        ],
        { cwd: process.cwd(), stdio: 'ignore' },
      );
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      let flooderDone = false;
      void exited.then(() => {
        flooderDone = true;
      });
      const counted = () =>
        store.nodeHealth().find((h) => h.node === flooded.id)!.reports + store.counters.drops['rate-limited'];
      // The other gateway reports a round every 50 ms while the flood lasts; each round must land.
      let round = 0;
      const startedMs = performance.now();
      const deadline = performance.now() + 60_000;
      while ((!flooderDone || counted() < FLOOD) && performance.now() < deadline) {
        round++;
        for (const n of others)
          mosquitto.publisher().publish(
            `coolctl/sim/gateway/gw-1/node/${n.id}/report`,
            JSON.stringify({
              node: n.id,
              gateway: 'gw-1',
              seq: round,
              readings: n.sensors.map((s) => ({ sensor: s.id, kind: s.kind, value: 22 })),
            }),
          );
        await waitFor(
          `round ${round} of gw-1 applied`,
          () => others.every((n) => store.nodeLastSeq(n.id) === round),
          {
            timeoutMs: 5_000,
            intervalMs: 2,
          },
        );
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(await exited).toBe(0);
      await waitFor('every flooded report counted', () => counted() === FLOOD);
      // Well over the node's 50 reports/s (burst 100) is dropped; none is lost uncounted.
      expect(store.counters.drops['rate-limited']).toBeGreaterThan(FLOOD / 2);
      expect(round).toBeGreaterThan(3);
      // One drop line every 10 s at most, however many reports it stands for.
      expect(logs.parsed().filter((l) => l.reason === 'rate-limited').length).toBeLessThanOrEqual(
        1 + Math.floor((performance.now() - startedMs) / 10_000),
      );
      expect(source.counters.dropped['handler-error']).toBe(0);
    } finally {
      await source.stop();
    }
  }, 90_000);
});
