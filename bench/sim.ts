// How large a hall does one 2-core machine simulate in real time? Runs the simulator as its own
// process on generated sites of growing size while this process plays the controllers (every
// AHU polled and written over Modbus TCP at 1 Hz) and an MQTT subscriber counts the mesh's
// reports. Per size: sim CPU and RSS (from /proc), sim-time pace (1.0 = keeping up), event-loop
// lag, Modbus transactions/s and MQTT messages/s. The smallest site is the baseline every
// figure is compared with, measured in the same run. Args: [--sizes 10,100,250,500,1000] [--seconds 15]
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import modbusSerial from 'modbus-serial';
import mqtt from 'mqtt';
import { stringify } from 'yaml';
import { demoShape, generateSite } from '../firmware-sim/generate-site.ts';
import { encodeCommand, resolvePointMap } from '../src/devices/modbus/point-map.ts';
import { simArgs } from '../test/support/repo.ts';
import { delay, until } from './lib/stats.ts';

// modbus-serial is CommonJS; its type declarations expose the client class as `.default`.
const ModbusRTU = modbusSerial.default;

interface SizeResult {
  ahus: number;
  nodes: number;
  cpuPct: number;
  rssMb: number;
  pace: number;
  lagP99Ms: number;
  modbusTxPerS: number;
  modbusErrors: number;
  mqttMsgsPerS: number;
}

export async function run(argv: string[]): Promise<Record<string, number>> {
  const { values } = parseArgs({
    args: argv,
    options: { sizes: { type: 'string' }, seconds: { type: 'string' } },
  });
  const sizes = (values.sizes ?? '10,100,250,500,1000').split(',').map(Number);
  const seconds = Number(values.seconds ?? 15);
  const results: SizeResult[] = [];
  for (const ahus of sizes) {
    const r = await measure(ahus, ahus * 10, seconds);
    results.push(r);
    process.stdout.write(
      `${ahus} AHUs / ${r.nodes} nodes: cpu ${r.cpuPct.toFixed(1)} %, rss ${r.rssMb.toFixed(0)} MB, pace ${r.pace.toFixed(3)}, ` +
        `lag p99 ${r.lagP99Ms.toFixed(1)} ms, modbus ${r.modbusTxPerS.toFixed(0)} tx/s (${r.modbusErrors} errors), mqtt ${r.mqttMsgsPerS.toFixed(0)} msg/s\n`,
    );
  }
  const base = results[0]!;
  // "real time" = sim clock keeps pace within 2 %, event loop p99 under 100 ms, every poll answered
  const ok = results.filter((r) => r.pace >= 0.98 && r.lagP99Ms < 100 && r.modbusErrors === 0);
  const best = ok.at(-1);
  const figures: Record<string, number> = {
    max_ahus_real_time: best?.ahus ?? 0,
    max_sensor_nodes_real_time: best?.nodes ?? 0,
    baseline_ahus: base.ahus,
    baseline_cpu_pct: base.cpuPct,
    baseline_rss_mb: base.rssMb,
  };
  for (const r of results.slice(1)) {
    const k = `ahus_${r.ahus}`;
    figures[`${k}_cpu_pct`] = r.cpuPct;
    figures[`${k}_cpu_ratio_vs_baseline`] = r.cpuPct / Math.max(0.1, base.cpuPct);
    figures[`${k}_rss_mb`] = r.rssMb;
    figures[`${k}_rss_ratio_vs_baseline`] = r.rssMb / base.rssMb;
    figures[`${k}_pace`] = r.pace;
    figures[`${k}_event_loop_lag_p99_ms`] = r.lagP99Ms;
    figures[`${k}_modbus_tx_per_s`] = r.modbusTxPerS;
    figures[`${k}_mqtt_msgs_per_s`] = r.mqttMsgsPerS;
  }
  return figures;
}

async function measure(ahus: number, nodes: number, seconds: number): Promise<SizeResult> {
  const site = generateSite({
    ...demoShape,
    id: `bench-${ahus}`,
    airHandlers: ahus,
    sensorNodes: nodes,
    controlGroups: Math.max(1, Math.round(ahus / 10)),
    racksPerAirHandler: 5,
    opcuaShare: 0, // OPC-UA has its own cost; this measures the Modbus + mesh hall
    modbusBasePort: 0,
  });
  const file = join(tmpdir(), `coolctl-bench-site-${ahus}.yaml`);
  await writeFile(file, stringify(site, { lineWidth: 0 }));
  const child = spawn(process.execPath, simArgs(file, { logLevel: 'error' }), {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const clients: InstanceType<typeof ModbusRTU>[] = [];
  let sub: mqtt.MqttClient | undefined;
  try {
    const apiUrl = await until('the simulator to start', 180_000, () => {
      if (child.exitCode !== null) throw new Error(`simulator exited ${child.exitCode}`);
      return /sim API\s+(http:\/\/[\d.]+:\d+)/.exec(out)?.[1];
    });
    const state = (await (await fetch(`${apiUrl}/sim/state`)).json()) as {
      mqttBrokerUrl: string;
      ahus: { endpoint: string }[];
    };
    const ports = state.ahus.map((a) => Number(/:(\d+)\//.exec(a.endpoint)![1]));
    for (const port of ports) {
      const c = new ModbusRTU();
      await c.connectTCP('127.0.0.1', { port });
      c.setID(1);
      c.setTimeout(2000);
      clients.push(c);
    }
    let mqttMsgs = 0;
    sub = mqtt.connect(state.mqttBrokerUrl, { reconnectPeriod: 0 });
    await new Promise<void>((resolve, reject) => {
      sub!.once('connect', () => resolve());
      sub!.once('error', reject);
    });
    sub.on('message', () => {
      mqttMsgs++;
    });
    await sub.subscribeAsync('#');

    // Play the controllers: each AHU polled (status block) and written (fenced command) at 1 Hz,
    // spread over the second. Bounded: stops after `seconds + 2` s.
    const pm = resolvePointMap(undefined);
    let tx = 0;
    let errors = 0;
    let stop = false;
    const loops = clients.map(async (c, i) => {
      await delay((i / clients.length) * 1000);
      let hb = 0;
      while (!stop) {
        const t0 = performance.now();
        try {
          await c.readHoldingRegisters(pm.statusBlock, 16);
          hb = (hb + 1) & 0xffff;
          await c.writeRegisters(
            pm.commandBlock,
            encodeCommand(
              { epoch: 1, heartbeat: hb, remoteEnable: true, fanPct: 80, supplySetpointC: 19 },
              pm,
            ),
          );
          tx += 2;
        } catch {
          errors++;
        }
        await delay(Math.max(0, 1000 - (performance.now() - t0)));
      }
    });
    await delay(2000); // warm-up: connections, first polls
    const s0 = await sample(child.pid!, apiUrl);
    const tx0 = tx;
    const m0 = mqttMsgs;
    const e0 = errors;
    await delay(seconds * 1000);
    const s1 = await sample(child.pid!, apiUrl);
    const wallS = (s1.wallMs - s0.wallMs) / 1000;
    stop = true;
    await Promise.all(loops);
    return {
      ahus,
      nodes,
      cpuPct: ((s1.cpuTicks - s0.cpuTicks) / CLK_TCK / wallS) * 100,
      rssMb: s1.rssMb,
      pace: (s1.simTimeS - s0.simTimeS) / wallS,
      lagP99Ms: s1.lagP99Ms,
      modbusTxPerS: (tx - tx0) / wallS,
      modbusErrors: errors - e0,
      mqttMsgsPerS: (mqttMsgs - m0) / wallS,
    };
  } finally {
    for (const c of clients) c.close(() => {});
    sub?.end(true);
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await Promise.race([exited, delay(10_000).then(() => child.kill('SIGKILL'))]);
  }
}

const CLK_TCK = 100; // Linux USER_HZ

async function sample(pid: number, apiUrl: string) {
  const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  const state = (await (await fetch(`${apiUrl}/sim/state`)).json()) as {
    simTimeS: number;
    process: { eventLoopLagP99Ms: number };
  };
  return {
    wallMs: performance.now(),
    // fields 14 and 15 of /proc/PID/stat (utime, stime); index 11/12 after the ") " split
    cpuTicks: Number(stat[11]) + Number(stat[12]),
    rssMb: rssKb / 1024,
    simTimeS: state.simTimeS,
    lagP99Ms: state.process.eventLoopLagP99Ms,
  };
}
