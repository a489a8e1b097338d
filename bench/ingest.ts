// Sensor ingest throughput and latency over real MQTT. A child process runs the broker and a
// publisher (bench/lib/ingest-publisher.ts); this process consumes, once with our full path
// (MqttSource → validation → SensorStore) and once with a bare `mqtt` client that only parses and
// discards the same messages — the baseline — alternating, so both see the same machine weather.
// Throughput is readings per CPU-second of this process (what one core sustains; the broker's
// speed does not cap it); latency is publish → applied, at a steady rate below saturation.
// Args: [--messages 60000] [--rounds 5] [--latency-messages 20000] [--rate 4000]
import { fork } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { generateSite } from '../firmware-sim/generate-site.ts';
import { MqttSource } from '../src/sensors/mqtt-source.ts';
import { SensorStore } from '../src/sensors/sensor-store.ts';
import { benchShape } from './lib/ingest-site.ts';
import { median, percentile, until } from './lib/stats.ts';

const here = dirname(fileURLToPath(import.meta.url));
const REPORT_TOPIC = 'coolctl/sim/gateway/+/node/+/report';

interface Consumer {
  readings(): number;
  messages(): number;
  /** Latency samples (ms) of messages seen while `sampling` is on. */
  latencies: number[];
  sampling: boolean;
  close(): Promise<void>;
}

export async function run(argv: string[]): Promise<Record<string, number>> {
  const { values } = parseArgs({
    args: argv,
    options: {
      messages: { type: 'string', default: '60000' },
      rounds: { type: 'string', default: '5' },
      'latency-messages': { type: 'string', default: '20000' },
      rate: { type: 'string', default: '4000' },
    },
  });
  const messages = Number(values.messages);
  const rounds = Number(values.rounds);
  const site = generateSite(benchShape);
  const child = fork(join(here, 'lib/ingest-publisher.ts'), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const replies: { ready?: string; done?: string }[] = [];
  const waiters: ((m: { ready?: string; done?: string }) => void)[] = [];
  child.on('message', (m: { ready?: string; done?: string }) => {
    const w = waiters.shift();
    if (w) w(m);
    else replies.push(m);
  });
  const reply = () =>
    new Promise<{ ready?: string; done?: string }>((r) =>
      replies.length ? r(replies.shift()!) : waiters.push(r),
    );
  const url = (await reply()).ready!;
  const command = async (cmd: object) => {
    child.send(cmd);
    await reply();
  };

  const ours: number[] = [];
  const base: number[] = [];
  try {
    // Round 0 warms the JIT of both paths and is not counted; the order alternates after it.
    for (let round = 0; round <= rounds; round++) {
      const order = round % 2 === 0 ? (['baseline', 'ours'] as const) : (['ours', 'baseline'] as const);
      for (const kind of order) {
        const c = kind === 'ours' ? await ourConsumer(url, site) : await bareConsumer(url);
        const r0 = c.readings();
        const m0 = c.messages();
        const cpu0 = process.cpuUsage();
        await command({ cmd: 'flood', count: messages });
        await until('the consumer', 60_000, () => (c.messages() - m0 >= messages ? true : undefined), 5);
        const cpu = process.cpuUsage(cpu0);
        const cpuS = (cpu.user + cpu.system) / 1e6;
        const perS = (c.readings() - r0) / cpuS;
        if (round > 0) (kind === 'ours' ? ours : base).push(perS);
        process.stdout.write(
          `round ${round}${round === 0 ? ' (warm-up)' : ''} ${kind.padEnd(8)} ${Math.round(perS)} readings per CPU-second\n`,
        );
        await c.close();
      }
    }
    const lat: Record<string, number[]> = {};
    for (const kind of ['baseline', 'ours'] as const) {
      const c = kind === 'ours' ? await ourConsumer(url, site) : await bareConsumer(url);
      c.sampling = true;
      const m0 = c.messages();
      const n = Number(values['latency-messages']);
      await command({ cmd: 'paced', count: n, perS: Number(values.rate) });
      await until('the consumer', 60_000, () => (c.messages() - m0 >= n ? true : undefined), 5);
      lat[kind] = c.latencies;
      await c.close();
    }
    const readingsPerS = median(ours);
    const baselinePerS = median(base);
    return {
      readings_per_s: Math.round(readingsPerS),
      baseline_readings_per_s: Math.round(baselinePerS),
      ingest_vs_baseline: readingsPerS / baselinePerS,
      readings_per_s_min: Math.round(Math.min(...ours)),
      baseline_readings_per_s_min: Math.round(Math.min(...base)),
      p50_ingest_latency_ms: percentile(lat.ours!, 50),
      p99_ingest_latency_ms: percentile(lat.ours!, 99),
      baseline_p50_latency_ms: percentile(lat.baseline!, 50),
      baseline_p99_latency_ms: percentile(lat.baseline!, 99),
      messages_per_round: messages,
      rounds,
      latency_rate_msgs_per_s: Number(values.rate),
    };
  } finally {
    child.send({ cmd: 'stop' });
    await new Promise((r) => {
      const t = setTimeout(() => {
        child.kill('SIGKILL');
        r(undefined);
      }, 5000);
      child.once('exit', () => {
        clearTimeout(t);
        r(undefined);
      });
    });
  }
}

/** The baseline: a bare mqtt client that parses each report and throws it away. */
async function bareConsumer(url: string): Promise<Consumer> {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0 });
  let msgs = 0;
  let readings = 0;
  const c: Consumer = {
    latencies: [],
    sampling: false,
    readings: () => readings,
    messages: () => msgs,
    close: () => client.endAsync(true),
  };
  client.on('message', (_topic, payload) => {
    const body = JSON.parse(payload.toString('utf8')) as { readings: unknown[]; t: number };
    readings += body.readings.length;
    msgs++;
    if (c.sampling) c.latencies.push(performance.timeOrigin + performance.now() - body.t);
  });
  await client.subscribeAsync(REPORT_TOPIC, { qos: 1 });
  return c;
}

/** Ours: the daemon's path, MqttSource → parseReport → SensorStore, with its Prometheus metrics. */
async function ourConsumer(url: string, site: ReturnType<typeof generateSite>): Promise<Consumer> {
  const store = new SensorStore(site, { logger: pino({ level: 'silent' }), registry: new Registry() });
  const source = new MqttSource(site, store, { url });
  let msgs = 0;
  const c: Consumer = {
    latencies: [],
    sampling: false,
    readings: () => store.counters.readings.mqtt,
    messages: () => msgs,
    close: () => source.stop(),
  };
  // Counted after the store has applied the report: wraps the one entry point the source calls
  // (with its parameters spelled out: a rest array and spread call would charge the measuring to ours).
  const ingest = store.ingestPayload.bind(store);
  store.ingestPayload = (payload, source, topicGateway, topicNode) => {
    const r = ingest(payload, source, topicGateway, topicNode);
    msgs++;
    if (c.sampling && msgs % 10 === 0) {
      const t = (JSON.parse(payload.toString()) as { t: number }).t;
      c.latencies.push(performance.timeOrigin + performance.now() - t);
    }
    return r;
  };
  source.start();
  await source.waitConnected(10_000);
  return c;
}
