// A socket read carries up to 64 KB of reports, and mqtt.js works through a read's packets in one
// event-loop task. The ingest lets the event loop turn once a batch has taken its slice
// (MQTT_INGEST_SLICE_MS by default), so a burst of reports never holds up the control loops'
// timers; none is lost on the way. How long a read's reports take depends on the CPU (a 64 KB read
// can be done inside the default slice on a quick one), so the test runs a slice of 20 µs: every
// read of more than a few reports must be cut, on any machine.
// Through a real broker in its own process (Debian's mosquitto): the test blocks its own event
// loop while the broker forwards a burst, so the burst lands in the client's socket at once.
import { describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { MQTT_INGEST_SLICE_MS, MqttSource } from '../../src/sensors/mqtt-source.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { mosquittoWithPublisher } from './mosquitto.ts';

const site = generateSite(demoShape);
const BURST = 1200;
const SLICE_MS = 0.02;

const mosquitto = mosquittoWithPublisher();

describe('MQTT ingest of a burst', () => {
  it('lets the event loop turn within a read, and ingests every report of the burst', async () => {
    const store = new SensorStore(site, { logger: quietLogger });
    const gateway = mosquitto.publisher();
    const source = new MqttSource(site, store, {
      url: mosquitto.broker().url,
      logger: quietLogger,
      ingestSliceMs: SLICE_MS,
    });
    source.start();
    try {
      await source.waitConnected(10_000);
      const nodes = site.sensorNodes;
      for (let i = 0; i < BURST; i++) {
        const n = nodes[i % nodes.length]!;
        gateway.publish(
          `coolctl/sim/gateway/${n.gateway}/node/${n.id}/report`,
          JSON.stringify({
            node: n.id,
            gateway: n.gateway,
            seq: Math.floor(i / nodes.length) + 1,
            readings: n.sensors.map((s) => ({ sensor: s.id, kind: s.kind, value: 21.5 })),
          }),
        );
      }
      // The publishes are written; while this loop is blocked the broker forwards them into our
      // client's socket, so they arrive as a few reads of up to 64 KB each.
      const t0 = performance.now();
      while (performance.now() - t0 < 600) {
        // blocked on purpose
      }
      // What a timer of the control loops would see: how far the ingest had got at each turn.
      const seen: number[] = [];
      const deadline = Date.now() + 20_000;
      await new Promise<void>((resolve) => {
        const probe = () => {
          seen.push(source.counters.messages);
          if (source.counters.messages >= BURST || Date.now() > deadline) resolve();
          else setImmediate(probe);
        };
        setImmediate(probe);
      });
      await waitFor('every report of the burst', () => source.counters.messages >= BURST, {
        timeoutMs: 20_000,
      });
      expect(source.counters.messages).toBe(BURST);
      expect(source.counters.dropped['handler-error']).toBe(0);
      expect(store.counters.readings.mqtt).toBe(
        Array.from({ length: BURST }, (_, i) => nodes[i % nodes.length]!.sensors.length).reduce(
          (a, b) => a + b,
        ),
      );
      // The turns came between the reports of a read, not only between reads: a slice ran out and
      // the rest waited for the next turn, and the timers saw the burst half-read many times.
      expect(source.counters.ingestYields).toBeGreaterThanOrEqual(10);
      const partial = new Set(seen.filter((v) => v > 0 && v < BURST));
      expect(partial.size).toBeGreaterThanOrEqual(10);
      expect(MQTT_INGEST_SLICE_MS).toBeLessThanOrEqual(5);
    } finally {
      await source.stop();
    }
  });
});
