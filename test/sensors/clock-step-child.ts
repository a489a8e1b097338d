// The child process of clock-step.test.ts: sensor ingest as the daemon runs it (SensorStore and
// MqttSource on their own default clocks), under libfaketime, whose wall clock the parent steps.
// Answers `state` over IPC with what the store believes of one sensor; `stop` ends it.
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { MqttSource } from '../../src/sensors/mqtt-source.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';

const [url, nodeId, timeScale] = process.argv.slice(2);
if (!url || !nodeId || !process.send)
  throw new Error('usage: clock-step-child.ts MQTT_URL NODE TIME_SCALE (forked)');
const send = process.send.bind(process);
const site = generateSite(demoShape);
const store = new SensorStore(site, { timeScale: Number(timeScale) });
const source = new MqttSource(site, store, { url });
source.start();
await source.waitConnected(10_000);
process.on('message', (m: unknown) => {
  if (m === 'state') {
    send({
      wallNowMs: Date.now(),
      sensor: store.sensor(nodeId, 'inlet-top'),
      rateLimited: store.counters.drops['rate-limited'],
      readings: store.counters.readings.mqtt,
    });
  } else if (m === 'stop') {
    void source.stop().then(() => process.exit(0));
  }
});
send('ready');
