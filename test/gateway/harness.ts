// What the gateway tests start: `coolctl gateway` as a child process (stdout parsed for its ports and
// its pino lines), a socat pty pair for the RS-485 line, the simulator's multi-drop RTU line with
// native units on it, and Modbus TCP clients — the controller's own MBAP client and a raw one that
// can send anything. Everything is bounded and stopped by `stopAll()`.
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ModbusAhuPdu, newPduCounters } from '../../firmware-sim/ahu/modbus-pdu.ts';
import { ModbusRtuLineServer } from '../../firmware-sim/ahu/modbus-rtu-server.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import type { Journal } from '../../firmware-sim/journal.ts';
import type { ModbusAirHandler, ModbusRtuAirHandler } from '../../src/config/site-schema.ts';
import { ModbusTcpClient } from '../../src/devices/modbus/modbus-tcp.ts';
import { resolvePointMap } from '../../src/devices/modbus/point-map.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { type PtyPair, ptyPair as sharedPtyPair } from '../support/pty-pair.ts';

const stoppers: (() => Promise<void> | void)[] = [];

export async function stopAll(): Promise<void> {
  for (const s of stoppers.splice(0).reverse()) await s();
}

/** A pty pair (test/support/pty-pair.ts): the gateway opens `master`, the simulated line `device`; stopped by stopAll(). */
export async function ptyPair(dir: string, name: string): Promise<PtyPair> {
  const pair = await sharedPtyPair(dir, name);
  stoppers.push(() => pair.kill());
  return pair;
}

const site = generateSite(demoShape);
const baseAhu = site.airHandlers.find((a): a is ModbusAirHandler => a.protocol === 'modbus-tcp')!;

/** Native simulated units on one RS-485 line, at the given slave addresses. */
export async function simLine(
  device: string,
  journal: Journal,
  unitIds: number[],
): Promise<{ server: ModbusRtuLineServer; units: Map<number, SimAirHandler> }> {
  const server = new ModbusRtuLineServer({ path: device, logger: quietLogger });
  const units = new Map<number, SimAirHandler>();
  for (const unitId of unitIds) {
    const config: ModbusRtuAirHandler = {
      ...baseAhu,
      id: `AHU-RTU-${unitId}`,
      protocol: 'modbus-rtu',
      endpoint: { path: '/dev/null', simPath: device, unitId },
      client: { timeoutMs: 1_000 },
    };
    const unit = new SimAirHandler(config, journal);
    units.set(unitId, unit);
    server.addUnit(unitId, new ModbusAhuPdu(unit, resolvePointMap(), newPduCounters(), quietLogger));
  }
  await server.start();
  stoppers.push(() => server.stop());
  return { server, units };
}

export interface GatewayProcess {
  proc: ChildProcess;
  modbusPort: number;
  httpUrl: string;
  /** Parsed pino lines so far. */
  logs(): Record<string, unknown>[];
  stderr(): string;
  /** SIGTERM; resolves with the exit code and how long the exit took. */
  stop(): Promise<{ code: number | null; ms: number }>;
}

export function writeConfig(dir: string, name: string, cfg: object): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, stringify(cfg));
  return file;
}

/**
 * The gateway as a child process; resolves once it printed its ports. `via: 'cli'` is the user's
 * `coolctl gateway --config FILE`; the default is the systemd unit's entry (src/gateway/main.ts),
 * the same code without loading the controller (a start in ~1.5 s instead of ~4.5 s here).
 */
export async function startGateway(config: string, via: 'cli' | 'main' = 'main'): Promise<GatewayProcess> {
  const args = via === 'cli' ? ['src/cli.ts', 'gateway'] : ['src/gateway/main.ts'];
  const proc = spawn(process.execPath, [...args, '--config', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  stoppers.push(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  const m = await waitFor(
    'the gateway to print its ports',
    () => {
      if (proc.exitCode !== null) throw new Error(`gateway exited ${proc.exitCode}: ${err}`);
      return /coolctl gateway \S+: modbus [\d.]+:(\d+), http (\S+)/.exec(out);
    },
    { timeoutMs: 20_000, intervalMs: 50 },
  );
  const logs = () =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return {
    proc,
    modbusPort: Number(m[1]),
    httpUrl: m[2]!,
    logs,
    stderr: () => err,
    stop: async () => {
      const t0 = performance.now();
      const exited = new Promise<number | null>((r) => {
        if (proc.exitCode !== null) r(proc.exitCode);
        else proc.once('exit', (code) => r(code));
      });
      proc.kill('SIGTERM');
      const code = await Promise.race([exited, new Promise<null>((r) => setTimeout(() => r(null), 10_000))]);
      return { code, ms: performance.now() - t0 };
    },
  };
}

/** The controller's own Modbus TCP client on a fresh connection to the gateway. */
export async function controllerClient(port: number, unitId: number): Promise<ModbusTcpClient> {
  const socket = await connected(port);
  const client = new ModbusTcpClient(unitId);
  socket.on('data', (chunk: Buffer) => client.receive(chunk));
  socket.on('error', () => undefined);
  client.attach(socket);
  stoppers.push(() => client.destroy());
  return client;
}

function connected(port: number, localAddress?: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, ...(localAddress ? { localAddress } : {}) });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

export interface RawConnection {
  socket: Socket;
  /** Whether it has closed (the gateway closed it, or the test did). */
  closed(): boolean;
}

/**
 * A connection that sends only what the test writes, from `localAddress` (any 127.x.y.z on Linux:
 * another host, as the gateway sees it); destroyed by stopAll().
 */
export async function rawConnection(port: number, localAddress?: string): Promise<RawConnection> {
  const socket = await connected(port, localAddress);
  socket.on('error', () => undefined);
  let closed = false;
  socket.once('close', () => {
    closed = true;
  });
  stoppers.push(() => {
    socket.destroy();
  });
  return { socket, closed: () => closed };
}

/**
 * Sends raw bytes on a fresh connection and returns what came back before `timeoutMs` or the close:
 * the answer PDU of the first MBAP frame, or 'closed' when the gateway closed without answering.
 */
export async function rawRequest(
  port: number,
  bytes: Buffer,
  timeoutMs = 3_000,
): Promise<Buffer | 'closed' | 'silent'> {
  const s = await connected(port);
  s.on('error', () => undefined);
  return new Promise((resolve) => {
    let rx = Buffer.alloc(0);
    const done = (v: Buffer | 'closed' | 'silent') => {
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done('silent'), timeoutMs);
    s.on('data', (d: Buffer) => {
      rx = Buffer.concat([rx, d]);
      if (rx.length >= 7 && rx.length >= 6 + rx.readUInt16BE(4))
        done(Buffer.from(rx.subarray(7, 6 + rx.readUInt16BE(4))));
    });
    s.once('close', () => done('closed'));
    s.write(bytes);
  });
}

/** Sends `frames` at once on one connection; resolves with the answer PDUs by transaction id. */
export function pipelined(
  port: number,
  frames: Buffer[],
  timeoutMs = 10_000,
): Promise<Map<number, number[]>> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    const got = new Map<number, number[]>();
    let rx = Buffer.alloc(0);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`only ${got.size} of ${frames.length} answers in ${timeoutMs} ms`));
    }, timeoutMs);
    s.on('data', (d: Buffer) => {
      rx = Buffer.concat([rx, d]);
      while (rx.length >= 7 && rx.length >= 6 + rx.readUInt16BE(4)) {
        const end = 6 + rx.readUInt16BE(4);
        got.set(rx.readUInt16BE(0), [...rx.subarray(7, end)]);
        rx = rx.subarray(end);
      }
      if (got.size === frames.length) {
        clearTimeout(timer);
        s.destroy();
        resolve(got);
      }
    });
    s.on('error', reject);
    s.write(Buffer.concat(frames));
  });
}

/** An MBAP frame around `pdu`. */
export function mbap(unitId: number, pdu: number[] | Buffer, tid = 1): Buffer {
  const p = Buffer.from(pdu);
  const f = Buffer.alloc(7 + p.length);
  f.writeUInt16BE(tid, 0);
  f.writeUInt16BE(0, 2);
  f.writeUInt16BE(p.length + 1, 4);
  f[6] = unitId;
  p.copy(f, 7);
  return f;
}

/** The value of one Prometheus sample (0 when absent). */
export async function metric(
  httpUrl: string,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const text = await (await fetch(`${httpUrl}/metrics`, { signal: AbortSignal.timeout(3_000) })).text();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
      return Number(line.split(' ').pop());
  }
  return 0;
}

/**
 * A unit behind the gateway that checks nothing: it echoes every write, answers every read with
 * zeros, and records in `reached` (when given) what reached it: MBAP unit id and request PDU.
 */
export function dumbUnit(reached?: { unitId: number; pdu: number[] }[]): Promise<Server> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.once('close', () => sockets.delete(s));
    let rx = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      rx = Buffer.concat([rx, d]);
      while (rx.length >= 7 && rx.length >= 6 + rx.readUInt16BE(4)) {
        const end = 6 + rx.readUInt16BE(4);
        const tid = rx.readUInt16BE(0);
        const unitId = rx[6]!;
        const pdu = Buffer.from(rx.subarray(7, end));
        rx = rx.subarray(end);
        reached?.push({ unitId, pdu: [...pdu] });
        const fc = pdu[0]!;
        const answer =
          fc <= 4
            ? Buffer.concat([
                Buffer.from([fc, fc <= 2 ? Math.ceil(pdu.readUInt16BE(3) / 8) : 2 * pdu.readUInt16BE(3)]),
                Buffer.alloc(fc <= 2 ? Math.ceil(pdu.readUInt16BE(3) / 8) : 2 * pdu.readUInt16BE(3)),
              ])
            : pdu.subarray(0, 5);
        s.write(mbap(unitId, answer, tid));
      }
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve(server));
    const close = server.close.bind(server);
    server.close = (cb) => {
      for (const s of sockets) s.destroy();
      return close(cb);
    };
  });
}
