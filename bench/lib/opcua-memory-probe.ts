// Child of bench/opcua-memory.ts: one fresh process, run under the systemd unit's Node flags and
// jemalloc (plus --expose-gc), whose memory is measured with only what its row loads. Rows: `bare`
// loads nothing; `deps` what the daemon loads anyway (pino, prom-client, site schema, Modbus
// adapter); `import` adds opcua-device.ts (so node-opcua), no unit; `units` opens one OpcuaDevice per
// air handler in --ahus. After the opens and reads it idles 5 s (publish cycles: buffer allocation,
// GCs and CPU are taken over that window), runs 8 full GCs (V8 flushes bytecode unused for 6 of
// them, as a long-running daemon's heap does over time) and waits 2 s (jemalloc hands freed pages
// back after its dirty_decay_ms, 1 s) before reading memoryUsage() and /proc. The report goes to the
// parent over IPC. Args: --row bare|deps|import|units [--ahus FILE] [--pki DIR]

import { readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { PerformanceObserver } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { OpcuaAirHandler } from '../../src/config/site-schema.ts';
// Counts every module resolved from here on: ours are all imported dynamically, below.
import { loaded } from './loaded-modules.ts';

// Every Buffer made through Buffer.alloc/allocUnsafe/allocUnsafeSlow (which concat and node-opcua's
// chunk builders use) is counted: the allocation rate is what the 16 KB chunk size cut.
let allocatedBytes = 0;
for (const fn of ['alloc', 'allocUnsafe', 'allocUnsafeSlow'] as const) {
  const orig = Buffer[fn].bind(Buffer) as (...a: unknown[]) => Buffer;
  (Buffer as unknown as Record<string, unknown>)[fn] = (...a: unknown[]) => {
    const b = orig(...a);
    allocatedBytes += b.length;
    return b;
  };
}

export type ProbeRow = 'bare' | 'deps' | 'import' | 'units';

export interface ProbeReport {
  row: ProbeRow;
  devices: number;
  /** Failed open() or read() calls: the parent refuses figures when there is any. */
  errors: number;
  rssMb: number;
  heapUsedMb: number;
  arrayBuffersMb: number;
  /** /proc/self/smaps_rollup: anonymous memory, and the rest of RSS (file-backed: the binary's pages). */
  anonMb: number;
  fileMb: number;
  threads: number;
  children: number;
  /** Over the idle window; NaN for `bare`, which has none. */
  bufferAllocMbPerS: number;
  gcPerS: number;
  cpuPct: number;
  opcuaModules: number;
  modules: number;
  /** jemalloc is mapped (LD_PRELOAD found it): otherwise glibc's malloc ran and the figures differ. */
  jemalloc: boolean;
}

interface Device {
  open(): Promise<void>;
  read(): Promise<unknown>;
  close(): Promise<void>;
}

const IDLE_MS = 5_000;
const READS = 3;
const FULL_GCS = 8;
const DECAY_WAIT_MS = 2_000;
const CLOSE_DEADLINE_MS = 5_000;
const MB = 2 ** 20;

// A bench that dies leaves no probe behind.
process.on('disconnect', () => process.exit(1));

const { values } = parseArgs({
  options: { row: { type: 'string' }, ahus: { type: 'string' }, pki: { type: 'string' } },
  strict: true,
});
const row = values.row as ProbeRow;
if (!['bare', 'deps', 'import', 'units'].includes(row)) throw new Error(`unknown --row ${values.row}`);

const devices: Device[] = [];
let errors = 0;
const count = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (err: unknown) => {
      if (errors++ < 3) process.stderr.write(`opcua-memory-probe (${row}): ${(err as Error).message}\n`);
    },
  );
let window = { bufferAllocMbPerS: Number.NaN, gcPerS: Number.NaN, cpuPct: Number.NaN };

if (row !== 'bare') {
  // Dynamic imports only: the bare baseline must not pay for what these load.
  const { pino } = await import('pino');
  const { Registry } = await import('prom-client');
  const { DeviceMetrics } = await import('../../src/devices/metrics.ts');
  await import('../../src/config/site-schema.ts');
  await import('../../src/config/config-files.ts');
  await import('../../src/devices/resilience.ts');
  await import('../../src/devices/plausibility.ts');
  await import('../../src/devices/modbus/modbus-device.ts');
  const logger = pino({ level: 'error' }, pino.destination(2));
  const metrics = new DeviceMetrics(new Registry());
  if (row === 'import' || row === 'units') {
    const { OpcuaDevice, routeNodeOpcuaLogs } = await import('../../src/devices/opcua/opcua-device.ts');
    routeNodeOpcuaLogs(logger);
    if (row === 'units') {
      if (!values.ahus || !values.pki)
        throw new Error('--ahus FILE and --pki DIR are required with --row units');
      const ahus = JSON.parse(await readFile(values.ahus, 'utf8')) as OpcuaAirHandler[];
      for (const ahu of ahus)
        devices.push(
          new OpcuaDevice(ahu, { logger, metrics, pkiDir: values.pki, trustUnknownCertificates: true }),
        );
    }
  }
  // The first device opens alone: concurrent first connects on a fresh PKI folder race the creation
  // of the client key pair (bench/lib/device-io-rss.ts).
  if (devices[0]) await count(devices[0].open());
  await Promise.all(devices.slice(1).map((d) => count(d.open())));
  for (let r = 0; r < READS; r++) await Promise.all(devices.map((d) => count(d.read())));

  const allocated0 = allocatedBytes;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let gcs = 0;
  const gcObserver = new PerformanceObserver((list) => {
    gcs += list.getEntries().length;
  });
  gcObserver.observe({ entryTypes: ['gc'] });
  await new Promise((r) => setTimeout(r, IDLE_MS));
  gcObserver.disconnect();
  const cpu = process.cpuUsage(cpu0);
  const s = (performance.now() - t0) / 1000;
  window = {
    bufferAllocMbPerS: (allocatedBytes - allocated0) / MB / s,
    gcPerS: gcs / s,
    cpuPct: ((cpu.user + cpu.system) / 1e6 / s) * 100,
  };
  for (let r = 0; r < READS; r++) await Promise.all(devices.map((d) => count(d.read())));
}

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');
for (let i = 0; i < FULL_GCS; i++) {
  gc();
  await new Promise((r) => setTimeout(r, 100));
}
await new Promise((r) => setTimeout(r, DECAY_WAIT_MS));

const mem = process.memoryUsage();
const status = readFileSync('/proc/self/status', 'utf8');
const rollup = readFileSync('/proc/self/smaps_rollup', 'utf8');
const kb = (txt: string, key: string) =>
  Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(txt)?.[1] ?? Number.NaN);
const report: ProbeReport = {
  row,
  devices: devices.length,
  errors,
  rssMb: mem.rss / MB,
  heapUsedMb: mem.heapUsed / MB,
  arrayBuffersMb: mem.arrayBuffers / MB,
  anonMb: kb(rollup, 'Anonymous') / 1024,
  fileMb: (kb(rollup, 'Rss') - kb(rollup, 'Anonymous')) / 1024,
  threads: kb(status, 'Threads'),
  children: childCount(),
  ...window,
  opcuaModules: [...loaded].filter((u) => u.includes('/node-opcua')).length,
  modules: loaded.size,
  jemalloc: readFileSync('/proc/self/maps', 'utf8').includes('jemalloc'),
};
await new Promise<void>((resolve) => process.send!(report, () => resolve()));
await Promise.race([
  Promise.allSettled(devices.map((d) => d.close())),
  new Promise((r) => setTimeout(r, CLOSE_DEADLINE_MS).unref()),
]);
// node-opcua may keep a handle or two after close(); this child has said all it had to say.
process.exit(0);

/** Processes whose parent is this one (node-opcua-pki could have run openssl: it must not). */
function childCount(): number {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        // Field 4 of stat, after the command in parentheses, is the parent's pid.
        const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
        return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1] === String(process.pid);
      } catch {
        return false;
      }
    }).length;
}
