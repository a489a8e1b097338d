// `npm run bench -- opcua-memory [--runs 3]`: what a controller pays for OPC-UA units, under the
// service's Node flags and jemalloc (deploy/systemd/coolctl@.service, read by deployedDaemon()).
// Each row is a fresh process (bench/lib/opcua-memory-probe.ts): bare node; + the daemon's own
// dependencies; + opcua-device.ts imported; 1, 4 and 16 units connected (SignAndEncrypt) to unit
// servers in 4 other processes (bench/lib/opcua-memory-server.ts, at most 4 sessions each). The rows
// run interleaved, --runs times, after one warm-up (which makes the client key pair); figures are
// medians, beside bare node's, with the RSS spread over the runs. Every child is stopped at the end.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { OpcuaAirHandler } from '../src/config/site-schema.ts';
import { deployedDaemon } from '../test/support/deployed-daemon.ts';
import type { ProbeReport, ProbeRow } from './lib/opcua-memory-probe.ts';
import type { UnitServerReady } from './lib/opcua-memory-server.ts';
import { median } from './lib/stats.ts';

const here = dirname(fileURLToPath(import.meta.url));
const SERVERS = 4;
const SESSIONS_PER_SERVER = 4;
const UNIT_COUNTS = [1, 4, 16] as const;
const SERVER_START_MS = 60_000;
const PROBE_DEADLINE_MS = 60_000;
const STOP_DEADLINE_MS = 8_000;

interface Row {
  name: string;
  probe: ProbeRow;
  units: number;
}
const ROWS: Row[] = [
  { name: 'bare', probe: 'bare', units: 0 },
  { name: 'deps', probe: 'deps', units: 0 },
  { name: 'import', probe: 'import', units: 0 },
  ...UNIT_COUNTS.map((n) => ({ name: `units_${n}`, probe: 'units' as const, units: n })),
];

const MEMORY: [keyof ProbeReport, string][] = [
  ['rssMb', 'rss_mb'],
  ['heapUsedMb', 'heap_used_mb'],
  ['arrayBuffersMb', 'array_buffers_mb'],
  ['anonMb', 'anon_mb'],
  ['fileMb', 'file_mb'],
  ['threads', 'threads'],
  ['children', 'children'],
];
/** Taken over the idle window of a row with units (the other rows do next to nothing in it). */
const ACTIVITY: [keyof ProbeReport, string][] = [
  ['bufferAllocMbPerS', 'buffer_alloc_mb_per_s'],
  ['gcPerS', 'gc_per_s'],
  ['cpuPct', 'cpu_pct'],
];

const live = new Set<ChildProcess>();

export async function run(args: string[]): Promise<Record<string, number>> {
  const { values } = parseArgs({ args, options: { runs: { type: 'string', default: '3' } }, strict: true });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 9)
    throw new Error(`--runs must be 1…9, got ${values.runs}`);
  const say = (s: string) => process.stderr.write(`${s}\n`);
  const unit = deployedDaemon();
  say(
    `opcua-memory: probes run as ${Object.entries(unit.env)
      .map(([k, v]) => `${k}=${v} `)
      .join('')}node ${[...unit.nodeFlags, '--expose-gc'].join(' ')}`,
  );
  const dir = await mkdtemp(join(tmpdir(), 'coolctl-bench-opcua-memory-'));
  // A bench killed mid-run: the servers and probes see their IPC channel close and exit by themselves.
  const killAll = () => {
    for (const c of live) c.kill('SIGKILL');
  };
  process.once('exit', killAll);
  try {
    // Unit i is on server i % SERVERS: 4 units are one per server, 16 are 4 per server.
    const total = Math.max(...UNIT_COUNTS);
    if (total > SERVERS * SESSIONS_PER_SERVER) throw new Error('more units than the servers take');
    const servers: UnitServerReady[] = [];
    for (let s = 0; s < SERVERS; s++) {
      const ids = Array.from({ length: total }, (_, i) => i)
        .filter((i) => i % SERVERS === s)
        .map((i) => `ahu-${i + 1}`);
      servers.push(await startServer(join(dir, `server-${s}`), ids));
    }
    const ahus: OpcuaAirHandler[] = Array.from(
      { length: total },
      (_, i) => servers[i % SERVERS]!.ahus[Math.floor(i / SERVERS)]!,
    );
    const ahuFiles = new Map<number, string>();
    for (const n of UNIT_COUNTS) {
      const file = join(dir, `ahus-${n}.json`);
      await writeFile(file, JSON.stringify(ahus.slice(0, n)));
      ahuFiles.set(n, file);
    }
    const pki = join(dir, 'client-pki');
    const probeArgs = (row: Row) =>
      row.units > 0
        ? ['--row', row.probe, '--ahus', ahuFiles.get(row.units)!, '--pki', pki]
        : ['--row', row.probe];

    // The warm-up makes the client's key pair, which a gateway makes once, not at every start.
    const warm = await probe(unit, probeArgs(ROWS.find((r) => r.units === 1)!));
    if (warm.errors > 0) throw new Error(`warm-up: ${warm.errors} failed opens or reads`);
    const reports = new Map<string, ProbeReport[]>(ROWS.map((r) => [r.name, []]));
    for (let r = 0; r < runs; r++) {
      for (const row of ROWS) {
        const rep = await probe(unit, probeArgs(row));
        if (rep.errors > 0) throw new Error(`${row.name}, run ${r + 1}: ${rep.errors} failed opens or reads`);
        if (rep.devices !== row.units)
          throw new Error(`${row.name}: ${rep.devices} devices, not ${row.units}`);
        reports.get(row.name)!.push(rep);
        say(
          `run ${r + 1}/${runs} ${row.name.padEnd(8)} rss ${rep.rssMb.toFixed(1)} MB, heap ${rep.heapUsedMb.toFixed(1)} MB, ` +
            `buffers ${rep.arrayBuffersMb.toFixed(2)} MB, threads ${rep.threads}` +
            (row.units > 0
              ? `, ${rep.bufferAllocMbPerS.toFixed(2)} MB/s allocated, ${rep.gcPerS.toFixed(2)} GC/s, CPU ${rep.cpuPct.toFixed(1)} %`
              : ''),
        );
      }
    }
    return figures(reports, runs);
  } finally {
    await Promise.all([...live].map((c) => stop(c)));
    process.removeListener('exit', killAll);
    await rm(dir, { recursive: true, force: true });
  }
}

function figures(reports: Map<string, ProbeReport[]>, runs: number): Record<string, number> {
  const all = [...reports.values()].flat();
  const med = (row: string, key: keyof ProbeReport) => median(reports.get(row)!.map((r) => Number(r[key])));
  const out: Record<string, number> = {
    runs,
    units_max: Math.max(...UNIT_COUNTS),
    unit_servers: SERVERS,
    errors: all.reduce((a, r) => a + r.errors, 0),
    // 0: LD_PRELOAD did not find libjemalloc.so.2 and glibc's malloc ran, unlike on a gateway.
    jemalloc: all.every((r) => r.jemalloc) ? 1 : 0,
  };
  for (const row of ROWS) {
    const p = `${row.name}_`;
    for (const [key, name] of MEMORY) out[p + name] = round(med(row.name, key));
    const rss = reports.get(row.name)!.map((r) => r.rssMb);
    out[`${p}rss_mb_spread`] = round(Math.max(...rss) - Math.min(...rss));
    if (row.name !== 'bare') {
      // The baseline beside each row: what the row adds to bare node, and how many times its RSS.
      out[`${p}rss_mb_over_bare`] = round(out[`${p}rss_mb`]! - out.bare_rss_mb!);
      out[`${p}heap_used_mb_over_bare`] = round(out[`${p}heap_used_mb`]! - out.bare_heap_used_mb!);
      out[`${p}rss_x_bare`] = round(out[`${p}rss_mb`]! / out.bare_rss_mb!);
    }
    if (row.units > 0) for (const [key, name] of ACTIVITY) out[p + name] = round(med(row.name, key));
    out[`${p}opcua_modules`] = med(row.name, 'opcuaModules');
  }
  // What node-opcua's import costs over the daemon's own dependencies, and what one more unit costs.
  for (const m of ['rss_mb', 'heap_used_mb', 'anon_mb', 'file_mb'])
    out[`opcua_import_${m}`] = round(out[`import_${m}`]! - out[`deps_${m}`]!);
  const lo = Math.min(...UNIT_COUNTS);
  const hi = Math.max(...UNIT_COUNTS);
  for (const m of ['rss_mb', 'heap_used_mb', 'array_buffers_mb'])
    out[`per_unit_${m}`] = round((out[`units_${hi}_${m}`]! - out[`units_${lo}_${m}`]!) / (hi - lo));
  return out;
}

/** One unit server process; resolves with its units' configs once it listens. */
async function startServer(root: string, ids: string[]): Promise<UnitServerReady> {
  // node-opcua's warnings about the test address space (stdout) are dropped; errors reach stderr.
  const child = spawn(
    process.execPath,
    [join(here, 'lib/opcua-memory-server.ts'), '--root', root, '--units', ids.join(',')],
    { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] },
  );
  live.add(child);
  child.once('exit', () => live.delete(child));
  return message<UnitServerReady>(child, SERVER_START_MS, `unit server for ${ids.join(',')}`);
}

/** One probe process under the unit's flags and environment; resolves with its report. */
async function probe(unit: ReturnType<typeof deployedDaemon>, args: string[]): Promise<ProbeReport> {
  const child = spawn(
    process.execPath,
    [...unit.nodeFlags, '--expose-gc', join(here, 'lib/opcua-memory-probe.ts'), ...args],
    { stdio: ['ignore', 2, 'inherit', 'ipc'], env: { ...process.env, ...unit.env } },
  );
  live.add(child);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  exited.then(() => live.delete(child));
  const report = await message<ProbeReport>(child, PROBE_DEADLINE_MS, `probe ${args.join(' ')}`);
  // The next probe starts after this one is gone: one measured process at a time.
  await Promise.race([exited, new Promise((r) => setTimeout(r, STOP_DEADLINE_MS).unref())]);
  await stop(child);
  return report;
}

/** The child's first IPC message; throws if it exits first or takes longer than `timeoutMs`. */
function message<T>(child: ChildProcess, timeoutMs: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what}: nothing after ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('message', (m) => {
      clearTimeout(timer);
      resolve(m as T);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited ${code ?? signal} before it reported`));
    });
  });
}

/** SIGTERM, then SIGKILL after a deadline; resolves once the child is gone. */
async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_DEADLINE_MS);
  await exited;
  clearTimeout(timer);
}

function round(v: number): number {
  return Math.round(v * 1000) / 1000;
}
