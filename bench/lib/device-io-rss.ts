// Child of bench/device-io.ts: a fresh process whose resident memory is measured with nothing else in
// it. Modes: `idle` imports nothing of ours and opens nothing (the baseline); `raw` opens one bare
// modbus-serial client per Modbus AHU (what the connections cost without our wrapper); `modbus` opens
// one ModbusDevice per Modbus AHU; `opcua` does the same plus one OpcuaDevice per OPC-UA AHU.
// Each device is opened and reads a few times, then (run with --expose-gc) the heap is collected, and
// after 2 s (jemalloc, which the parent runs this under as the service does, hands freed pages back
// after its dirty_decay_ms, 1 s) RSS is sent to the parent over IPC. A resolve hook records every module loaded after start-up, so
// "node-opcua never loaded" in `modbus` mode is checked, not assumed: ESM has no require.cache.
// Args: --mode idle|raw|modbus|opcua [--ahus FILE (JSON array of air handlers)] [--pki DIR] [--reads 3]

import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
// Counts every module resolved from here on: ours are all imported dynamically, below.
import { loaded } from './loaded-modules.ts';

const OPEN_BATCH = 100;
const CLOSE_DEADLINE_MS = 10_000;
/** Longer than the unit's MALLOC_CONF dirty_decay_ms (1 s): freed pages are back with the OS. */
const DECAY_WAIT_MS = 2_000;

export interface RssReport {
  mode: string;
  rssMb: number;
  heapUsedMb: number;
  devices: number;
  opcuaDevices: number;
  /** Failed open() or read() calls; must be 0 for the figure to mean anything. */
  errors: number;
  /** Loaded module URLs whose path contains node-opcua. */
  opcuaModules: number;
  modules: number;
  /** jemalloc is mapped (LD_PRELOAD found it): otherwise glibc's malloc ran and the figure differs. */
  jemalloc: boolean;
}

const { values } = parseArgs({
  options: {
    mode: { type: 'string', default: 'idle' },
    ahus: { type: 'string' },
    pki: { type: 'string' },
    reads: { type: 'string', default: '3' },
  },
});
const mode = values.mode;
if (mode !== 'idle' && mode !== 'raw' && mode !== 'modbus' && mode !== 'opcua')
  throw new Error(`unknown --mode ${mode}`);

interface Device {
  open(): Promise<void>;
  read(): Promise<unknown>;
  close(): Promise<void>;
}

const devices: Device[] = [];
/** Everything to close once RSS is taken: the devices, or the raw clients. */
const closers: (() => Promise<unknown>)[] = [];
let opcuaDevices = 0;
let rawClients = 0;
let errors = 0;
const count = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (err: unknown) => {
      // A few are worth seeing; the parent refuses the figure when there is any.
      if (errors++ < 3) process.stderr.write(`device-io-rss (${mode}): ${(err as Error).message}\n`);
    },
  );
if (mode === 'raw') {
  if (!values.ahus) throw new Error('--ahus FILE is required');
  const ahus = JSON.parse(await readFile(values.ahus, 'utf8')) as {
    protocol: string;
    endpoint: { host: string; port: number; unitId: number };
  }[];
  const { default: modbusSerial } = await import('modbus-serial');
  const ModbusRTU = modbusSerial.default;
  const clients = ahus.filter((a) => a.protocol === 'modbus-tcp').map((a) => ({ a, c: new ModbusRTU() }));
  for (let i = 0; i < clients.length; i += OPEN_BATCH) {
    await Promise.all(
      clients.slice(i, i + OPEN_BATCH).map(({ a, c }) =>
        count(
          c.connectTCP(a.endpoint.host, { port: a.endpoint.port }).then(() => {
            c.setID(a.endpoint.unitId);
            c.setTimeout(1_000);
          }),
        ),
      ),
    );
  }
  // The default status block (docs/modbus-register-map.md), as ModbusDevice reads it.
  for (let r = 0; r < Number(values.reads); r++)
    await Promise.all(clients.map(({ c }) => count(c.readHoldingRegisters(100, 16))));
  for (const { c } of clients) closers.push(() => new Promise<void>((resolve) => c.close(() => resolve())));
  rawClients = clients.length;
} else if (mode !== 'idle') {
  if (!values.ahus) throw new Error('--ahus FILE is required');
  const ahus = JSON.parse(await readFile(values.ahus, 'utf8')) as { protocol: string }[];
  // Dynamic imports only: the idle baseline must not pay for what these load.
  const { pino } = await import('pino');
  const { Registry } = await import('prom-client');
  const { DeviceMetrics } = await import('../../src/devices/metrics.ts');
  const { ModbusDevice } = await import('../../src/devices/modbus/modbus-device.ts');
  type ModbusAhu = ConstructorParameters<typeof ModbusDevice>[0];
  // What the daemon gives every device: a logger and one metrics registry for all of them.
  const logger = pino({ level: 'error' }, pino.destination(2));
  const metrics = new DeviceMetrics(new Registry());
  for (const ahu of ahus) {
    if (ahu.protocol === 'modbus-tcp') devices.push(new ModbusDevice(ahu as ModbusAhu, { logger, metrics }));
  }
  if (mode === 'opcua') {
    // Only this mode loads node-opcua, the way the daemon does: on demand, for a site that has units.
    const { OpcuaDevice, routeNodeOpcuaLogs } = await import('../../src/devices/opcua/opcua-device.ts');
    type OpcuaAhu = ConstructorParameters<typeof OpcuaDevice>[0];
    routeNodeOpcuaLogs(logger);
    if (!values.pki) throw new Error('--pki DIR is required with --mode opcua');
    for (const ahu of ahus) {
      if (ahu.protocol !== 'opcua') continue;
      devices.push(
        new OpcuaDevice(ahu as OpcuaAhu, {
          logger,
          metrics,
          pkiDir: values.pki,
          trustUnknownCertificates: true,
        }),
      );
      opcuaDevices++;
    }
  }
  // The first OPC-UA device opens alone: on a fresh PKI folder, concurrent first connects race the
  // creation of the client key pair (node-opcua-pki's initialize() returns at once to a second caller
  // while the first is still creating the key) and fail with "Cannot find private key".
  const firstOpcua = devices.at(-opcuaDevices);
  if (opcuaDevices > 0 && firstOpcua) await count(firstOpcua.open());
  const rest = devices.filter((d) => opcuaDevices === 0 || d !== firstOpcua);
  for (let i = 0; i < rest.length; i += OPEN_BATCH)
    await Promise.all(rest.slice(i, i + OPEN_BATCH).map((d) => count(d.open())));
  for (let r = 0; r < Number(values.reads); r++) await Promise.all(devices.map((d) => count(d.read())));
  for (const d of devices) closers.push(() => d.close());
}

const gc = (globalThis as { gc?: () => void }).gc;
for (let i = 0; i < 3 && gc; i++) {
  gc();
  await new Promise((r) => setTimeout(r, 100));
}
await new Promise((r) => setTimeout(r, DECAY_WAIT_MS));
const mem = process.memoryUsage();
const report: RssReport = {
  mode,
  rssMb: mem.rss / 2 ** 20,
  heapUsedMb: mem.heapUsed / 2 ** 20,
  devices: devices.length + rawClients,
  opcuaDevices,
  errors,
  opcuaModules: [...loaded].filter((u) => u.includes('/node-opcua')).length,
  modules: loaded.size,
  jemalloc: readFileSync('/proc/self/maps', 'utf8').includes('jemalloc'),
};
await new Promise<void>((resolve) => process.send!(report, () => resolve()));
await Promise.race([
  Promise.allSettled(closers.map((close) => close())),
  new Promise((r) => setTimeout(r, CLOSE_DEADLINE_MS).unref()),
]);
// node-opcua may keep a handle or two after close(); this child has said all it had to say.
process.exit(0);
