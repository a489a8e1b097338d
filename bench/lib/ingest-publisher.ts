// Child process of bench/ingest.ts: an embedded broker (the simulator's aedes) and a publisher in
// one process, so the measuring process only consumes. Commands over IPC:
//   {cmd: 'flood', count}        publish `count` reports as fast as the broker takes them
//   {cmd: 'paced', count, perS}  publish at a steady rate (latency phase)
// Each report carries `t`: the publish time on the shared monotonic clock (performance.timeOrigin + now()).
import mqtt from 'mqtt';
import { generateSite } from '../../firmware-sim/generate-site.ts';
import { startBroker } from '../../firmware-sim/mesh/broker.ts';
import { benchShape } from './ingest-site.ts';

const site = generateSite(benchShape);
const broker = await startBroker({ host: '127.0.0.1', port: 0 });
const pub = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
const seqs = new Map<string, number>();
let cursor = 0;

function next(): { topic: string; payload: string } {
  const n = site.sensorNodes[cursor++ % site.sensorNodes.length]!;
  const seq = (seqs.get(n.id) ?? 0) + 1;
  seqs.set(n.id, seq);
  const report = {
    node: n.id,
    rack: n.rack,
    gateway: n.gateway,
    seq,
    sampledAt: new Date().toISOString(),
    hops: n.hops,
    rssiDbm: -60,
    batteryPct: 98.5,
    retries: 0,
    t: performance.timeOrigin + performance.now(),
    readings: n.sensors.map((s) => ({
      sensor: s.id,
      kind: s.kind,
      value: s.kind === 'humidity' ? 45.2 : 21 + (seq % 10) * 0.07,
      unit: s.kind === 'humidity' ? '%RH' : 'Cel',
    })),
  };
  return { topic: `coolctl/sim/gateway/${n.gateway}/node/${n.id}/report`, payload: JSON.stringify(report) };
}

async function flood(count: number): Promise<void> {
  // Batches with a round trip between them keep the broker's queue to the consumer bounded.
  for (let sent = 0; sent < count; ) {
    const batch = Math.min(500, count - sent);
    for (let i = 0; i < batch; i++) {
      const m = next();
      pub.publish(m.topic, m.payload, { qos: 0 });
    }
    sent += batch;
    await pub.publishAsync('bench/sync', '', { qos: 1 });
  }
}

async function paced(count: number, perS: number): Promise<void> {
  const start = performance.now();
  for (let i = 0; i < count; i++) {
    const due = start + (i * 1000) / perS;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const m = next();
    pub.publish(m.topic, m.payload, { qos: 0 });
  }
  await pub.publishAsync('bench/sync', '', { qos: 1 });
}

process.on('message', async (msg: { cmd: string; count: number; perS?: number }) => {
  if (msg.cmd === 'flood') await flood(msg.count);
  else if (msg.cmd === 'paced') await paced(msg.count, msg.perS ?? 1000);
  else if (msg.cmd === 'stop') {
    await pub.endAsync(true);
    await broker.close();
    process.exit(0);
  }
  process.send!({ done: msg.cmd });
});
process.send!({ ready: broker.url });
