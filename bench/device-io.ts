// Air-handler I/O: what our ModbusDevice costs next to the bare modbus-serial client it wraps, and
// whether one process drives a 1 000-AHU hall at 1 Hz. The simulator runs in its own child process
// (only 127.0.0.1, ephemeral ports); this process plays the controller, its devices built as the
// daemon builds them (a logger and one metrics registry). Side by side in one run, ours and the
// baseline (raw modbus-serial doing the same requests) alternating where the machine's weather matters:
//  - one connection, sequential status reads: tx/s, CPU and per-call latency; the overhead ratio is
//    the median of per-round ours/baseline ratios, each pair measured back to back;
//  - 500 devices reading concurrently in closed loops: total tx/s and CPU per transaction, and the
//    medians of per-round ours/baseline ratios of both, each pair measured back to back;
//  - the baseline's reads decode the status block as ours do (what a controller on the bare client
//    must do too), so the ratios charge the wrapper only;
//  - 1 000 devices each read + fenced write (with read-back) once per second: CPU % of one core of
//    this process, writes/s, errors, event-loop lag (GC pauses are logged beside it);
//  - RSS of fresh child processes (bench/lib/device-io-rss.ts), each under the systemd unit's Node
//    flags and allocator (jemalloc; deployedDaemon() reads them from the unit), as the service pays
//    it: idle, 1 000 raw modbus-serial clients, 1 000 ModbusDevices (node-opcua checked not
//    loaded), and those plus a few OpcuaDevices;
//  - vendor profiles: 1 000 more units in the same simulator serving a vendor-style profile
//    (`--profile`), driven at 1 Hz as the native ones are (read + command), each through the
//    adapter the daemon would build for it (createDevice); native and vendor windows alternate,
//    and the ratio is the median of per-round vendor/native CPU. Wire requests are counted on the
//    MBAP client, so CPU per request separates the codec's cost from the map's shape (a map that
//    needs more requests per period costs more, whatever the code);
//  - one shared RS-485 line at 19 200 baud (bench/lib/device-io-rtu.ts): units per second, each a
//    control cycle, against the line's theoretical maximum from frame sizes.
// Every loop is bounded in count and time; the simulator is killed at the end whatever happens.
// Args: [--ahus 1000] [--opcua 4] [--rounds 7] [--round-ms 1500] [--concurrent 500]
//       [--concurrent-rounds 5] [--concurrent-ms 3000] [--seconds 20] [--warmup-seconds 3]
//       [--profile tenths-f-int32-msw-no-watchdog] [--vendor-rounds 3] [--vendor-seconds 10]
//       [--rtu-units 8] [--rtu-baud 19200] [--rtu-seconds 20]
//       [--phases one,many,hz,vendor,rtu,rss]
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { monitorEventLoopDelay, PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import modbusSerial from 'modbus-serial';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { stringify } from 'yaml';
import { demoShape, generateSite } from '../firmware-sim/generate-site.ts';
import type { AirHandler, ModbusAirHandler, OpcuaAirHandler } from '../src/config/site-schema.ts';
import { createDevice } from '../src/devices/create-device.ts';
import type { AhuCommandSet, DeviceIo } from '../src/devices/device-io.ts';
import { DeviceMetrics } from '../src/devices/metrics.ts';
import { ModbusDevice } from '../src/devices/modbus/modbus-device.ts';
import { ModbusTcpClient } from '../src/devices/modbus/modbus-tcp.ts';
import {
  COMMAND_BLOCK_LEN,
  decodeStatus,
  encodeCommand,
  resolvePointMap,
  STATUS_BLOCK_LEN,
  STATUS_OFFSET,
} from '../src/devices/modbus/point-map.ts';
import { BAUD_RATES } from '../src/devices/modbus/rtu-frame.ts';
import { type DaemonCommand, deployedDaemon } from '../test/support/deployed-daemon.ts';
import { simArgs } from '../test/support/repo.ts';
import type { RssReport } from './lib/device-io-rss.ts';
import { rtuLineBench } from './lib/device-io-rtu.ts';
import { delay, median, percentile, until } from './lib/stats.ts';

// modbus-serial is CommonJS; its type declarations expose the client class as `.default`.
const ModbusRTU = modbusSerial.default;
type RawClient = InstanceType<typeof ModbusRTU>;

const here = dirname(fileURLToPath(import.meta.url));
const TIMEOUT_MS = 1_000; // the adapters' default outer deadline; the raw client gets the same
const MAX_CALLS_PER_ROUND = 100_000;
/**
 * Each round first runs this long unmeasured: a deadline timer (modbus-serial's per request, ours
 * per connection) may fire up to TIMEOUT_MS after a call, so the previous round's leftovers land here, not on the next kind's
 * figures, and each kind is measured in its own steady state.
 */
const SETTLE_MS = TIMEOUT_MS + 200;
/** What the `kind` of a 'gc' performance entry means. */
const GC_KINDS: Record<number, string> = {
  [perfConstants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [perfConstants.NODE_PERFORMANCE_GC_MINOR_MARK_SWEEP]: 'minor mark-sweep',
  [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak callbacks',
};
const OPEN_BATCH = 100;
const SIM_START_TIMEOUT_MS = 180_000;
const CHILD_TIMEOUT_MS = 120_000;
/** What the 1 Hz loop asks of every unit; epoch 1 throughout (the sim accepts equal epochs). */
const COMMAND: AhuCommandSet = { epoch: 1, remoteEnable: true, fanPct: 80, supplySetpointC: 19 };

interface Sim {
  apiUrl: string;
  child: ChildProcess;
}

export async function run(argv: string[]): Promise<Record<string, number>> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ahus: { type: 'string', default: '1000' },
      opcua: { type: 'string', default: '4' },
      rounds: { type: 'string', default: '7' },
      'round-ms': { type: 'string', default: '1500' },
      concurrent: { type: 'string', default: '500' },
      'concurrent-rounds': { type: 'string', default: '5' },
      'concurrent-ms': { type: 'string', default: '3000' },
      seconds: { type: 'string', default: '20' },
      'warmup-seconds': { type: 'string', default: '3' },
      profile: { type: 'string', default: 'tenths-f-int32-msw-no-watchdog' },
      'vendor-rounds': { type: 'string', default: '3' },
      'vendor-seconds': { type: 'string', default: '10' },
      'rtu-units': { type: 'string', default: '8' },
      'rtu-baud': { type: 'string', default: '19200' },
      'rtu-seconds': { type: 'string', default: '20' },
      phases: { type: 'string', default: 'one,many,hz,vendor,rtu,rss' },
    },
  });
  const modbusCount = Number(values.ahus);
  const opcuaCount = Number(values.opcua);
  const concurrent = Math.min(Number(values.concurrent), modbusCount);
  const phases = new Set(values.phases.split(','));
  // The vendor phase needs as many units again, serving the profile, in the same simulator.
  const vendorCount = phases.has('vendor') ? modbusCount : 0;
  const tmp = await mkdtemp(join(tmpdir(), 'coolctl-bench-device-io-'));
  let sim: Sim | undefined;
  try {
    const site = generateSite({
      ...demoShape,
      id: 'bench-device-io',
      airHandlers: modbusCount + vendorCount + opcuaCount,
      opcuaShare: opcuaCount / (modbusCount + vendorCount + opcuaCount),
      sensorNodes: 0, // the mesh has its own bench; here the sim only serves the units
      gateways: 1,
      controlGroups: Math.max(1, Math.round((modbusCount + vendorCount + opcuaCount) / 10)),
      racksPerAirHandler: 1,
      modbusBasePort: 0,
      opcuaPort: 0,
    });
    // The Modbus TCP units after the first `modbusCount` serve the vendor profile.
    let tcpSeen = 0;
    site.airHandlers = site.airHandlers.map((a) =>
      a.protocol === 'modbus-tcp' && tcpSeen++ >= modbusCount ? { ...a, profile: values.profile } : a,
    );
    const siteFile = join(tmp, 'site.yaml');
    await writeFile(siteFile, stringify(site, { lineWidth: 0 }));
    const startedMs = performance.now();
    sim = await startSim(siteFile);
    const ahus = await liveEndpoints(sim.apiUrl, site.airHandlers);
    const isVendor = (a: AirHandler) => (a as { profile?: string }).profile !== undefined;
    const modbus = ahus.filter((a): a is ModbusAirHandler => a.protocol === 'modbus-tcp' && !isVendor(a));
    const vendor = ahus.filter((a): a is ModbusAirHandler => a.protocol === 'modbus-tcp' && isVendor(a));
    const opcua = ahus.filter((a): a is OpcuaAirHandler => a.protocol === 'opcua');
    if (modbus.length !== modbusCount || vendor.length !== vendorCount || opcua.length !== opcuaCount) {
      throw new Error(
        `generated site has ${modbus.length} native Modbus, ${vendor.length} vendor-profile and ${opcua.length} OPC-UA units, ` +
          `wanted ${modbusCount}, ${vendorCount} and ${opcuaCount}`,
      );
    }
    log(
      `simulator up with ${modbus.length} Modbus + ${vendor.length} ${values.profile} + ${opcua.length} OPC-UA AHUs ` +
        `in ${seconds(startedMs)} s`,
    );

    const figures: Record<string, number> = { modbus_ahus: modbusCount };
    if (phases.has('one')) {
      const one = await oneConnection(modbus[0]!, Number(values.rounds), Number(values['round-ms']));
      Object.assign(figures, {
        modbus_tx_per_s_one_conn: Math.round(one.ours.txPerS),
        baseline_modbus_tx_per_s_one_conn: Math.round(one.base.txPerS),
        wrapper_overhead_ratio: one.ratio,
        modbus_p50_ms: one.ours.p50Ms,
        modbus_p99_ms: one.ours.p99Ms,
        baseline_modbus_p50_ms: one.base.p50Ms,
        baseline_modbus_p99_ms: one.base.p99Ms,
        modbus_cpu_us_per_tx_one_conn: one.ours.cpuUsPerTx,
        baseline_modbus_cpu_us_per_tx_one_conn: one.base.cpuUsPerTx,
        rounds_one_conn: Number(values.rounds),
      });
    }
    if (phases.has('many')) {
      const many = await concurrentLoops(
        modbus.slice(0, concurrent),
        Number(values['concurrent-rounds']),
        Number(values['concurrent-ms']),
      );
      Object.assign(figures, {
        modbus_tx_per_s_500_devices: Math.round(many.ours.txPerS),
        baseline_modbus_tx_per_s_500_conns: Math.round(many.base.txPerS),
        wrapper_overhead_ratio_500_devices: many.ratio,
        wrapper_cpu_per_tx_ratio_500_devices: many.cpuRatio,
        rounds_500_devices: Number(values['concurrent-rounds']),
        modbus_cpu_us_per_tx_500_devices: many.ours.cpuUsPerTx,
        baseline_modbus_cpu_us_per_tx_500_conns: many.base.cpuUsPerTx,
        errors_500_devices: many.ours.errors,
        baseline_errors_500_conns: many.base.errors,
        concurrent_devices: concurrent,
      });
    }
    if (phases.has('hz')) {
      const hz = await oneHertz(modbus, Number(values['warmup-seconds']), Number(values.seconds));
      Object.assign(figures, {
        cpu_pct_1000_ahus_1hz: hz.ours.cpuPct,
        baseline_cpu_pct_1000_ahus_1hz: hz.base.cpuPct,
        writes_per_s_1000_ahus: hz.ours.writesPerS,
        baseline_writes_per_s_1000_ahus: hz.base.writesPerS,
        errors_1000_ahus_1hz: hz.ours.errors,
        baseline_errors_1000_ahus_1hz: hz.base.errors,
        event_loop_lag_p99_ms_1000_ahus_1hz: hz.ours.lagP99Ms,
        baseline_event_loop_lag_p99_ms_1000_ahus_1hz: hz.base.lagP99Ms,
        gc_pause_max_ms_1000_ahus_1hz: hz.ours.gcMaxMs,
        baseline_gc_pause_max_ms_1000_ahus_1hz: hz.base.gcMaxMs,
        seconds_1hz: Number(values.seconds),
      });
    }
    if (phases.has('vendor')) {
      const v = await vendorVsNative(
        modbus,
        vendor,
        Number(values['vendor-rounds']),
        Number(values['warmup-seconds']),
        Number(values['vendor-seconds']),
      );
      Object.assign(figures, {
        vendor_profile_cpu_pct_1000_ahus_1hz: v.vendor.cpuPct,
        native_cpu_pct_1000_ahus_1hz_paired: v.native.cpuPct,
        vendor_profile_cpu_ratio: v.ratio,
        vendor_profile_requests_per_unit_s: v.vendor.requestsPerUnitS,
        native_requests_per_unit_s: v.native.requestsPerUnitS,
        vendor_profile_cpu_us_per_request: v.vendor.cpuUsPerRequest,
        native_cpu_us_per_request_1hz: v.native.cpuUsPerRequest,
        vendor_profile_cpu_per_request_ratio: v.perRequestRatio,
        vendor_profile_cycles_per_s: v.vendor.cyclesPerS,
        native_cycles_per_s_paired: v.native.cyclesPerS,
        vendor_profile_errors_1000_ahus_1hz: v.vendor.errors,
        native_errors_1000_ahus_1hz_paired: v.native.errors,
        vendor_rounds: Number(values['vendor-rounds']),
        vendor_seconds_per_round: Number(values['vendor-seconds']),
      });
    }
    if (phases.has('rtu')) {
      const r = await rtuLineBench({
        template: modbus[0]!,
        units: Number(values['rtu-units']),
        baudRate: baudRateOf(values['rtu-baud']),
        warmupS: Number(values['warmup-seconds']),
        seconds: Number(values['rtu-seconds']),
        log,
      });
      Object.assign(figures, {
        rtu_line_units_per_s: r.unitsPerS,
        rtu_line_theoretical_units_per_s: r.theoreticalUnitsPerS,
        rtu_line_ratio: r.unitsPerS / r.theoreticalUnitsPerS,
        rtu_line_chars_per_cycle: r.charsPerCycle,
        rtu_line_units: Number(values['rtu-units']),
        rtu_line_baud: Number(values['rtu-baud']),
        rtu_line_errors: r.errors,
        rtu_line_deadline_expiries: r.lineTimeouts,
      });
    }
    if (phases.has('rss')) {
      const ahusFile = join(tmp, 'ahus.json');
      await writeFile(ahusFile, JSON.stringify([...modbus, ...opcua]));
      // Ours and the baselines alike, so the differences are what the service pays.
      const unit = deployedDaemon();
      log(
        `RSS children run as ${Object.entries(unit.env)
          .map(([k, v]) => `${k}=${v} `)
          .join('')}node ${[...unit.nodeFlags, '--expose-gc'].join(' ')}`,
      );
      const idle = await rssChild(unit, 'idle', ahusFile, tmp);
      const raw = await rssChild(unit, 'raw', ahusFile, tmp);
      const modbusOnly = await rssChild(unit, 'modbus', ahusFile, tmp);
      const withOpcua = await rssChild(unit, 'opcua', ahusFile, tmp);
      for (const r of [raw, modbusOnly, withOpcua]) {
        if (r.errors > 0) throw new Error(`RSS child (${r.mode}): ${r.errors} open/read calls failed`);
      }
      if (modbusOnly.opcuaModules > 0) {
        throw new Error(`RSS child (modbus): ${modbusOnly.opcuaModules} node-opcua modules were loaded`);
      }
      Object.assign(figures, {
        rss_mb_modbus_only: modbusOnly.rssMb,
        rss_mb_with_opcua: withOpcua.rssMb,
        baseline_rss_mb_idle: idle.rssMb,
        baseline_rss_mb_raw_modbus_serial: raw.rssMb,
        heap_used_mb_modbus_only: modbusOnly.heapUsedMb,
        heap_used_mb_with_opcua: withOpcua.heapUsedMb,
        baseline_heap_used_mb_raw_modbus_serial: raw.heapUsedMb,
        opcua_devices_in_rss_with_opcua: withOpcua.opcuaDevices,
        opcua_modules_loaded_modbus_only: modbusOnly.opcuaModules,
        opcua_modules_loaded_with_opcua: withOpcua.opcuaModules,
        // 0: LD_PRELOAD did not find libjemalloc.so.2 and glibc's malloc ran, unlike on a gateway.
        rss_jemalloc: [idle, raw, modbusOnly, withOpcua].every((r) => r.jemalloc) ? 1 : 0,
      });
    }
    log(`whole run ${seconds(startedMs)} s`);
    return figures;
  } finally {
    if (sim) await stopSim(sim);
    await rm(tmp, { recursive: true, force: true });
  }
}

// ---- one connection, sequential ----

interface SequentialResult {
  txPerS: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerTx: number;
}

/**
 * Sequential status reads on one connection, ours and raw alternating; round 0 warms the JIT and
 * is not counted. tx/s and CPU per tx are medians over rounds; latency pools every measured call;
 * the ratio is the median of each round's ours/baseline, the two measured back to back.
 */
async function oneConnection(
  ahu: ModbusAirHandler,
  rounds: number,
  roundMs: number,
): Promise<{ ours: SequentialResult; base: SequentialResult; ratio: number }> {
  const pm = resolvePointMap(ahu.pointMap);
  const device = new ModbusDevice(ahu, daemonDeps());
  const raw = await rawClient(ahu);
  const calls = {
    ours: () => device.read(),
    base: () => rawRead(raw, pm),
  };
  const perS = { ours: [] as number[], base: [] as number[] };
  const cpu = { ours: [] as number[], base: [] as number[] };
  const lat = { ours: [] as Float64Array[], base: [] as Float64Array[] };
  const ratios: number[] = [];
  try {
    await device.open();
    for (let round = 0; round <= rounds; round++) {
      const order = round % 2 === 0 ? (['base', 'ours'] as const) : (['ours', 'base'] as const);
      for (const kind of order) {
        const r = await sequential(calls[kind], roundMs);
        log(
          `one connection, round ${round}${round === 0 ? ' (warm-up)' : ''} ${kind === 'ours' ? 'ours    ' : 'baseline'} ` +
            `${Math.round(r.txPerS)} tx/s, ${r.cpuUsPerTx.toFixed(1)} µs CPU/tx`,
        );
        if (round === 0) continue;
        perS[kind].push(r.txPerS);
        cpu[kind].push(r.cpuUsPerTx);
        lat[kind].push(r.latenciesMs);
      }
      if (round > 0) ratios.push(perS.ours.at(-1)! / perS.base.at(-1)!);
    }
  } finally {
    await device.close();
    await closeRaw(raw);
  }
  const result = (kind: 'ours' | 'base'): SequentialResult => {
    const all = concat(lat[kind]);
    return {
      txPerS: median(perS[kind]),
      p50Ms: percentile(all, 50),
      p99Ms: percentile(all, 99),
      cpuUsPerTx: median(cpu[kind]),
    };
  };
  return { ours: result('ours'), base: result('base'), ratio: median(ratios) };
}

/**
 * Calls `call` back to back: first SETTLE_MS unmeasured, then `measureMs` (or MAX_CALLS_PER_ROUND
 * calls) measured. Any failure ends the bench: on a healthy simulator there is none.
 */
async function sequential(call: () => Promise<unknown>, measureMs: number) {
  const settleEnd = performance.now() + SETTLE_MS;
  for (let i = 0; i < MAX_CALLS_PER_ROUND && performance.now() < settleEnd; i++) await call();
  const latencies = new Float64Array(MAX_CALLS_PER_ROUND);
  let n = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + measureMs;
  while (n < MAX_CALLS_PER_ROUND) {
    const s = performance.now();
    await call();
    const e = performance.now();
    latencies[n++] = e - s;
    if (e >= end) break;
  }
  const wallS = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(cpu0);
  return { txPerS: n / wallS, cpuUsPerTx: (c.user + c.system) / n, latenciesMs: latencies.subarray(0, n) };
}

// ---- many devices, concurrent closed loops ----

interface ConcurrentResult {
  txPerS: number;
  cpuUsPerTx: number;
  errors: number;
}

/** N devices (and N raw clients), each in a closed read loop; rounds alternate; medians. */
async function concurrentLoops(
  ahus: ModbusAirHandler[],
  rounds: number,
  roundMs: number,
): Promise<{ ours: ConcurrentResult; base: ConcurrentResult; ratio: number; cpuRatio: number }> {
  const deps = daemonDeps();
  const devices = ahus.map((a) => new ModbusDevice(a, deps));
  const raws: RawClient[] = [];
  const pm = resolvePointMap(undefined);
  const out = {
    ours: { perS: [] as number[], cpu: [] as number[], errors: 0 },
    base: { perS: [] as number[], cpu: [] as number[], errors: 0 },
  };
  try {
    await inBatches(devices, (d) => d.open());
    await inBatches(ahus, async (a) => {
      raws.push(await rawClient(a));
    });
    const loops = {
      ours: devices.map((d) => () => d.read()),
      base: raws.map((c) => () => rawRead(c, pm)),
    };
    // Round 0 warms up; then ours/baseline alternate, each pair back to back.
    for (let round = 0; round <= rounds; round++) {
      const order = round % 2 === 0 ? (['base', 'ours'] as const) : (['ours', 'base'] as const);
      for (const kind of order) {
        const r = await closedLoops(loops[kind], round === 0 ? 1000 : roundMs);
        if (round > 0) {
          out[kind].perS.push(r.txPerS);
          out[kind].cpu.push(r.cpuUsPerTx);
          out[kind].errors += r.errors;
        }
        log(
          `${ahus.length} concurrent, round ${round}${round === 0 ? ' (warm-up)' : ''} ${kind === 'ours' ? 'ours    ' : 'baseline'} ` +
            `${Math.round(r.txPerS)} tx/s, ${r.cpuUsPerTx.toFixed(1)} µs CPU/tx, ${r.errors} errors` +
            (r.errors > 0 ? ` (first: ${r.firstError})` : ''),
        );
      }
    }
  } finally {
    await Promise.all(devices.map((d) => d.close()));
    await Promise.all(raws.map(closeRaw));
  }
  const result = (kind: 'ours' | 'base'): ConcurrentResult => ({
    txPerS: median(out[kind].perS),
    cpuUsPerTx: median(out[kind].cpu),
    errors: out[kind].errors,
  });
  // The machine's weather moves both kinds of a round together: compare within rounds.
  const ratios = out.ours.perS.map((v, i) => v / out.base.perS[i]!);
  const cpuRatios = out.ours.cpu.map((v, i) => v / out.base.cpu[i]!);
  return { ours: result('ours'), base: result('base'), ratio: median(ratios), cpuRatio: median(cpuRatios) };
}

/** Every call in its own closed loop: SETTLE_MS unmeasured, then `measureMs` measured; failures counted. */
async function closedLoops(calls: (() => Promise<unknown>)[], measureMs: number) {
  let tx = 0;
  let errors = 0;
  let measuring = false;
  let firstError = '';
  const t0 = performance.now();
  const end = t0 + SETTLE_MS + measureMs;
  const loops = calls.map(async (call) => {
    for (let i = 0; i < MAX_CALLS_PER_ROUND && performance.now() < end; i++) {
      try {
        await call();
        if (measuring) tx++;
      } catch (err) {
        if (measuring && errors++ === 0) firstError = (err as Error).message;
      }
    }
  });
  await delay(t0 + SETTLE_MS - performance.now());
  measuring = true;
  const cpu0 = process.cpuUsage();
  const m0 = performance.now();
  await delay(end - performance.now());
  measuring = false;
  const c = process.cpuUsage(cpu0);
  const wallS = (performance.now() - m0) / 1000;
  await Promise.all(loops);
  return { txPerS: tx / wallS, cpuUsPerTx: (c.user + c.system) / Math.max(1, tx), errors, firstError };
}

// ---- 1 000 units at 1 Hz ----

interface PacedResult {
  cpuPct: number;
  writesPerS: number;
  errors: number;
  lagP99Ms: number;
  gcMaxMs: number;
  /** Errors by code and GC pauses by kind, for the log. */
  details: string[];
}

/**
 * Every unit read and written (fenced, verified by read-back) once per second, the units spread
 * evenly over the second: ours (ModbusDevice), then the same requests from raw clients.
 */
async function oneHertz(
  ahus: ModbusAirHandler[],
  warmupS: number,
  windowS: number,
): Promise<{ ours: PacedResult; base: PacedResult }> {
  const deps = daemonDeps();
  const devices = ahus.map((a) => new ModbusDevice(a, deps));
  let ours: PacedResult;
  try {
    await inBatches(devices, (d) => d.open());
    ours = await paced(
      devices.map((d) => async () => {
        await d.read();
        // As the control loop does: a unit seen out of remote control (after a link lost under
        // load) is taken back deliberately, so one timeout is one error, not a refusal every second.
        await d.writeCommand(COMMAND, d.remoteControlLost ? { reassert: true } : {});
      }),
      warmupS,
      windowS,
    );
  } finally {
    await Promise.all(devices.map((d) => d.close()));
  }
  log(
    `${ahus.length} AHUs at 1 Hz, ours:     ${ours.cpuPct.toFixed(1)} % CPU, ${ours.writesPerS.toFixed(0)} writes/s, ` +
      `${ours.errors} errors, lag p99 ${ours.lagP99Ms.toFixed(1)} ms`,
  );
  for (const line of ours.details) log(line);
  const raws: RawClient[] = [];
  let base: PacedResult;
  try {
    await inBatches(ahus, async (a) => {
      raws.push(await rawClient(a));
    });
    const pm = resolvePointMap(undefined);
    base = await paced(
      raws.map((c) => async () => {
        const status = await c.readHoldingRegisters(pm.statusBlock, STATUS_BLOCK_LEN);
        const heartbeat = ((status.data[STATUS_OFFSET.heartbeat] ?? 0) + 1) & 0xffff;
        const words = encodeCommand({ ...COMMAND, heartbeat }, pm);
        await c.writeRegisters(pm.commandBlock, words);
        const back = await c.readHoldingRegisters(pm.commandBlock, COMMAND_BLOCK_LEN);
        if (back.data.some((w, i) => w !== words[i])) throw new Error('read-back mismatch');
      }),
      warmupS,
      windowS,
    );
  } finally {
    await Promise.all(raws.map(closeRaw));
  }
  log(
    `${ahus.length} AHUs at 1 Hz, baseline: ${base.cpuPct.toFixed(1)} % CPU, ${base.writesPerS.toFixed(0)} writes/s, ` +
      `${base.errors} errors, lag p99 ${base.lagP99Ms.toFixed(1)} ms`,
  );
  for (const line of base.details) log(line);
  return { ours, base };
}

/**
 * Runs each `tick` once per second (unit i at i/N of the second) for `warmupS + windowS` seconds;
 * CPU of this process, writes and errors are counted over the window only.
 */
async function paced(
  ticks: (() => Promise<void>)[],
  warmupS: number,
  windowS: number,
  window: { start(): void; stop(): void } = { start: () => undefined, stop: () => undefined },
): Promise<PacedResult> {
  let writes = 0;
  let errors = 0;
  const kinds = new Map<string, { count: number; example: string }>();
  let counting = false;
  const t0 = performance.now() + 100;
  const windowStart = t0 + warmupS * 1000;
  const windowEnd = windowStart + windowS * 1000;
  const loops = ticks.map(async (tick, i) => {
    // A tick is due every second from its slot; one that overran starts at once, never in a burst.
    for (let due = t0 + (i / ticks.length) * 1000; due < windowEnd; due += 1000) {
      const now = performance.now();
      if (due > now) await delay(due - now);
      else due = now;
      const inWindow = counting;
      try {
        await tick();
        if (inWindow && counting) writes++;
      } catch (err) {
        if (inWindow && counting) {
          errors++;
          const code = (err as { code?: string }).code ?? (err as Error).name;
          const seen = kinds.get(code);
          if (seen) seen.count++;
          else kinds.set(code, { count: 1, example: (err as Error).message });
        }
      }
    }
  });
  await delay(windowStart - performance.now());
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  const gcPauses: number[] = [];
  const gcKinds = new Map<string, { n: number; ms: number; maxMs: number }>();
  const gcWatch = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gcPauses.push(e.duration);
      const kind = GC_KINDS[(e as { detail?: { kind?: number } }).detail?.kind ?? 0] ?? 'other';
      const k = gcKinds.get(kind) ?? { n: 0, ms: 0, maxMs: 0 };
      k.n++;
      k.ms += e.duration;
      k.maxMs = Math.max(k.maxMs, e.duration);
      gcKinds.set(kind, k);
    }
  });
  gcWatch.observe({ entryTypes: ['gc'] });
  counting = true;
  window.start();
  const cpu0 = process.cpuUsage();
  const w0 = performance.now();
  await delay(windowEnd - performance.now());
  const c = process.cpuUsage(cpu0);
  const wallS = (performance.now() - w0) / 1000;
  window.stop();
  counting = false;
  lag.disable();
  gcWatch.disconnect();
  await Promise.all(loops);
  const details = [...kinds].map(([code, k]) => `  ${k.count} × ${code}, e.g. ${k.example}`);
  details.push(
    `  GC in the window: ${gcPauses.length} pauses, ${gcPauses.reduce((a, b) => a + b, 0).toFixed(0)} ms in all, ` +
      `longest ${Math.max(0, ...gcPauses).toFixed(1)} ms (` +
      [...gcKinds]
        .map(([kind, k]) => `${kind} ${k.n}× ${k.ms.toFixed(0)} ms, max ${k.maxMs.toFixed(0)}`)
        .join('; ') +
      ')',
  );
  return {
    cpuPct: ((c.user + c.system) / 1e6 / wallS) * 100,
    writesPerS: writes / wallS,
    errors,
    lagP99Ms: lag.percentile(99) / 1e6,
    gcMaxMs: Math.max(0, ...gcPauses),
    details,
  };
}

// ---- vendor profiles against native, at 1 Hz ----

interface VendorRound {
  cpuPct: number;
  cyclesPerS: number;
  requestsPerUnitS: number;
  cpuUsPerRequest: number;
  errors: number;
}

/** Wire requests sent by every MBAP client of this process (bench instrumentation, both kinds alike). */
let wireRequests = 0;
function countWireRequests(): void {
  const proto = ModbusTcpClient.prototype as unknown as { send: (...args: unknown[]) => unknown };
  const send = proto.send;
  proto.send = function (this: unknown, ...args: unknown[]) {
    wireRequests++;
    return send.apply(this, args);
  };
}

/**
 * Native (ModbusDevice) and vendor-profile units (what createDevice builds for them), both sets open
 * throughout, each driven at 1 Hz (read + command) in alternating windows; a round is one window of
 * each, back to back, and the ratio is the median of the rounds' vendor/native CPU.
 */
async function vendorVsNative(
  native: ModbusAirHandler[],
  vendor: ModbusAirHandler[],
  rounds: number,
  warmupS: number,
  windowS: number,
): Promise<{ native: VendorRound; vendor: VendorRound; ratio: number; perRequestRatio: number }> {
  countWireRequests();
  const deps = daemonDeps();
  const sets: Record<'native' | 'vendor', DeviceIo[]> = {
    native: native.map((a) => new ModbusDevice(a, deps)),
    vendor: await Promise.all(vendor.map((a) => createDevice(a, deps))),
  };
  const out: Record<'native' | 'vendor', VendorRound[]> = { native: [], vendor: [] };
  try {
    // A vendor unit may answer "not ready" for a while after power-up: opening waits it out.
    for (const kind of ['native', 'vendor'] as const) {
      await inBatches(sets[kind], async (d) => {
        for (let i = 0; ; i++) {
          try {
            return await d.open();
          } catch (err) {
            if (i >= 20) throw err;
            await delay(250);
          }
        }
      });
    }
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? (['native', 'vendor'] as const) : (['vendor', 'native'] as const);
      for (const kind of order) {
        const units = sets[kind];
        let requests = 0;
        const r = await paced(
          units.map((d) => async () => {
            await d.read();
            // A set left idle for a window falls back to local control on its own watchdog; the
            // control loop re-asserts deliberately, and so does this (in the warm-up, not counted).
            await d.writeCommand(COMMAND, d.remoteControlLost ? { reassert: true } : {});
          }),
          warmupS,
          windowS,
          {
            start: () => {
              requests = wireRequests;
            },
            stop: () => {
              requests = wireRequests - requests;
            },
          },
        );
        const cpuUs = (r.cpuPct / 100) * windowS * 1e6;
        const v: VendorRound = {
          cpuPct: r.cpuPct,
          cyclesPerS: r.writesPerS,
          requestsPerUnitS: requests / windowS / units.length,
          cpuUsPerRequest: cpuUs / Math.max(1, requests),
          errors: r.errors,
        };
        out[kind].push(v);
        log(
          `vendor vs native, round ${round} ${kind.padEnd(6)}: ${v.cpuPct.toFixed(1)} % CPU, ` +
            `${v.cyclesPerS.toFixed(0)} cycles/s, ${v.requestsPerUnitS.toFixed(2)} requests per unit-second, ` +
            `${v.cpuUsPerRequest.toFixed(1)} µs CPU per request, ${v.errors} errors`,
        );
        for (const line of r.details) log(line);
      }
    }
  } finally {
    await Promise.all([...sets.native, ...sets.vendor].map((d) => d.close()));
  }
  const summary = (kind: 'native' | 'vendor'): VendorRound => ({
    cpuPct: median(out[kind].map((r) => r.cpuPct)),
    cyclesPerS: median(out[kind].map((r) => r.cyclesPerS)),
    requestsPerUnitS: median(out[kind].map((r) => r.requestsPerUnitS)),
    cpuUsPerRequest: median(out[kind].map((r) => r.cpuUsPerRequest)),
    errors: out[kind].reduce((n, r) => n + r.errors, 0),
  });
  return {
    native: summary('native'),
    vendor: summary('vendor'),
    ratio: median(out.vendor.map((v, i) => v.cpuPct / out.native[i]!.cpuPct)),
    perRequestRatio: median(out.vendor.map((v, i) => v.cpuUsPerRequest / out.native[i]!.cpuUsPerRequest)),
  };
}

// ---- RSS children ----

/** One measured child under the unit's Node flags and environment (`unit`), plus --expose-gc. */
function rssChild(
  unit: DaemonCommand,
  mode: 'idle' | 'raw' | 'modbus' | 'opcua',
  ahusFile: string,
  tmp: string,
): Promise<RssReport> {
  const child = fork(
    join(here, 'lib/device-io-rss.ts'),
    ['--mode', mode, '--ahus', ahusFile, '--pki', join(tmp, 'opcua-client-pki')],
    {
      execArgv: [...unit.nodeFlags, '--expose-gc'],
      env: { ...process.env, ...unit.env },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  );
  return new Promise<RssReport>((resolve, reject) => {
    let report: RssReport | undefined;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`RSS child (${mode}) did not finish within ${CHILD_TIMEOUT_MS} ms`));
    }, CHILD_TIMEOUT_MS);
    child.on('message', (m: RssReport) => {
      report = m;
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (report) {
        log(
          `RSS ${mode.padEnd(6)}: ${report.rssMb.toFixed(1)} MB (heap ${report.heapUsedMb.toFixed(1)} MB), ` +
            `${report.devices} devices (${report.opcuaDevices} OPC-UA), ${report.modules} modules loaded, ` +
            `${report.opcuaModules} of them node-opcua, ${report.jemalloc ? 'jemalloc' : 'glibc malloc'}`,
        );
        resolve(report);
      } else reject(new Error(`RSS child (${mode}) exited (${code ?? signal}) without a report`));
    });
  });
}

// ---- the simulator ----

async function startSim(siteFile: string): Promise<Sim> {
  const child = spawn(
    process.execPath,
    simArgs(siteFile, { logLevel: 'error', extra: ['--host', '127.0.0.1'] }),
    { cwd: join(here, '..'), stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  let ready = false;
  // Keep draining stdout after start-up, or a full pipe would block the simulator.
  child.stdout!.on('data', (d: Buffer) => {
    if (!ready) out += d.toString();
  });
  const sim: Sim = { apiUrl: '', child };
  try {
    sim.apiUrl = await until('the simulator to start', SIM_START_TIMEOUT_MS, () => {
      if (child.exitCode !== null) throw new Error(`simulator exited ${child.exitCode}`);
      return /sim API\s+(http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1];
    });
  } catch (err) {
    await stopSim(sim);
    throw err;
  }
  ready = true;
  out = '';
  return sim;
}

async function stopSim(sim: Sim): Promise<void> {
  const { child } = sim;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    exited,
    new Promise<void>((r) => {
      timer = setTimeout(() => {
        child.kill('SIGKILL');
        r();
      }, 10_000);
    }),
  ]);
  clearTimeout(timer);
}

/** The site file says port 0 everywhere; the running simulator says where each unit listens. */
async function liveEndpoints(apiUrl: string, ahus: AirHandler[]): Promise<AirHandler[]> {
  const res = await fetch(`${apiUrl}/sim/state`, { signal: AbortSignal.timeout(30_000) });
  const state = (await res.json()) as {
    ahus: { id: string; endpoint: string }[];
  };
  const live = new Map(state.ahus.map((a) => [a.id, a.endpoint]));
  return ahus.map((a) => {
    const endpoint = live.get(a.id);
    if (!endpoint) throw new Error(`the simulator does not list ${a.id}`);
    const u = new URL(endpoint.replace(/^[a-z.-]+:/, 'http:'));
    if (u.hostname !== '127.0.0.1') throw new Error(`${a.id} listens on ${endpoint}, not on 127.0.0.1`);
    if (a.protocol === 'modbus-tcp') {
      return { ...a, endpoint: { ...a.endpoint, host: u.hostname, port: Number(u.port) } };
    }
    if (a.protocol === 'opcua') return { ...a, endpoint: { ...a.endpoint, url: endpoint } };
    return a;
  });
}

// ---- helpers ----

/** What the daemon gives every device: a logger and one metrics registry for all of them. */
function daemonDeps() {
  return {
    logger: pino({ level: 'error' }, pino.destination(2)),
    metrics: new DeviceMetrics(new Registry()),
  };
}

async function rawClient(ahu: ModbusAirHandler): Promise<RawClient> {
  const c = new ModbusRTU();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      c.connectTCP(ahu.endpoint.host, { port: ahu.endpoint.port }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${ahu.id}: raw connect timed out`)), 5 * TIMEOUT_MS);
      }),
    ]);
  } catch (err) {
    c.close(() => {});
    throw err;
  } finally {
    clearTimeout(timer);
  }
  c.setID(ahu.endpoint.unitId);
  c.setTimeout(TIMEOUT_MS);
  return c;
}

function closeRaw(c: RawClient): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, 2_000);
    c.close(() => {
      clearTimeout(t);
      resolve();
    });
  });
}

/**
 * The baseline's read: the same FC3 of the status block, decoded into the same engineering units
 * (what any controller on the bare client must do too), so that the ratio charges our wrapper only.
 */
async function rawRead(c: RawClient, pm: ReturnType<typeof resolvePointMap>) {
  const res = await c.readHoldingRegisters(pm.statusBlock, STATUS_BLOCK_LEN);
  return decodeStatus(res.data, pm);
}

/** Opens (or anything async) at most OPEN_BATCH at a time: a thousand connects at once is a SYN flood. */
async function inBatches<T>(items: T[], fn: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += OPEN_BATCH)
    await Promise.all(items.slice(i, i + OPEN_BATCH).map(fn));
}

function concat(parts: Float64Array[]): Float64Array {
  const all = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    all.set(p, off);
    off += p.length;
  }
  return all;
}

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

function seconds(sinceMs: number): string {
  return ((performance.now() - sinceMs) / 1000).toFixed(1);
}

/** --rtu-baud as a rate the site schema takes (a standard one), or a clear refusal. */
function baudRateOf(text: string | undefined): (typeof BAUD_RATES)[number] {
  const rate = BAUD_RATES.find((b) => String(b) === text);
  if (rate === undefined) throw new Error(`--rtu-baud ${text}: one of ${BAUD_RATES.join(', ')}`);
  return rate;
}
