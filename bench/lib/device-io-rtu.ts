// One shared RS-485 line at a given baud, driven as the controller drives its units: N ModbusDevices
// on one serial path (so one RtuLine), each in a closed loop of what a control period asks of a
// unit — read the status block, write the fenced command, read it back. The other end is the
// simulator's multi-drop line (firmware-sim/ahu/rtu-line.ts) over a socat pty pair, with line time
// simulated at the baud: a pty carries bytes at once, the simulated line holds each frame for its
// characters and the 3.5-character silence after it. Beside the measured rate, the line's
// theoretical maximum from frame sizes alone: 11 bits per character (start, 8 data, parity, stop),
// request and answer bytes, 3.5 characters of silence after each frame.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ModbusAhuPdu, newPduCounters } from '../../firmware-sim/ahu/modbus-pdu.ts';
import { ModbusRtuLineServer } from '../../firmware-sim/ahu/modbus-rtu-server.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import type { ModbusAirHandler, ModbusRtuAirHandler } from '../../src/config/site-schema.ts';
import type { AhuCommandSet } from '../../src/devices/device-io.ts';
import { ModbusDevice } from '../../src/devices/modbus/modbus-device.ts';
import { COMMAND_BLOCK_LEN, resolvePointMap, STATUS_BLOCK_LEN } from '../../src/devices/modbus/point-map.ts';
import { type BAUD_RATES, RTU_BITS_PER_CHAR } from '../../src/devices/modbus/rtu-frame.ts';
import { rtuLineOn } from '../../src/devices/modbus/rtu-line.ts';
import { delay, until } from './stats.ts';

export interface RtuLineBenchOptions {
  /** A Modbus TCP unit of the generated site, used as the template of each RTU unit. */
  template: ModbusAirHandler;
  units: number;
  baudRate: (typeof BAUD_RATES)[number];
  warmupS: number;
  seconds: number;
  log: (line: string) => void;
}

export interface RtuLineBenchResult {
  unitsPerS: number;
  theoreticalUnitsPerS: number;
  /** Transactions one unit's cycle takes, and characters on the wire with silences. */
  txPerCycle: number;
  charsPerCycle: number;
  errors: number;
  lineTimeouts: number;
  strayFrames: number;
}

const FRAME_OVERHEAD = 1 + 2; // slave address + CRC
const GAP_CHARS = 3.5;

/**
 * Characters one control cycle puts on the wire: FC3 of the status block, FC16 of the command
 * block, FC3 of the command block (the read-back), each request and answer followed by 3.5
 * characters of silence.
 */
export function cycleFrames(): { requestBytes: number; answerBytes: number }[] {
  const read = (n: number) => ({ requestBytes: FRAME_OVERHEAD + 5, answerBytes: FRAME_OVERHEAD + 2 + 2 * n });
  const write = (n: number) => ({
    requestBytes: FRAME_OVERHEAD + 6 + 2 * n,
    answerBytes: FRAME_OVERHEAD + 5,
  });
  return [read(STATUS_BLOCK_LEN), write(COMMAND_BLOCK_LEN), read(COMMAND_BLOCK_LEN)];
}

export function theoreticalUnitsPerS(baudRate: number): { unitsPerS: number; chars: number; tx: number } {
  const frames = cycleFrames();
  const chars = frames.reduce((n, f) => n + f.requestBytes + f.answerBytes + 2 * GAP_CHARS, 0);
  return { unitsPerS: baudRate / (RTU_BITS_PER_CHAR * chars), chars, tx: frames.length };
}

const COMMAND: AhuCommandSet = { epoch: 1, remoteEnable: true, fanPct: 80, supplySetpointC: 19 };
const MAX_CYCLES_PER_UNIT = 100_000;

export async function rtuLineBench(o: RtuLineBenchOptions): Promise<RtuLineBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), 'coolctl-bench-rtu-'));
  const controllerEnd = join(dir, 'controller');
  const deviceEnd = join(dir, 'device');
  const logger = pino({ level: 'error' }, pino.destination(2));
  let socat: ChildProcess | undefined;
  let server: ModbusRtuLineServer | undefined;
  const devices: ModbusDevice[] = [];
  try {
    socat = spawn(
      'socat',
      ['-d', '-d', `pty,raw,echo=0,link=${controllerEnd}`, `pty,raw,echo=0,link=${deviceEnd}`],
      { stdio: 'ignore' },
    );
    socat.on('error', () => undefined);
    await until('a socat pty pair (apt-get install socat)', 10_000, () =>
      existsSync(controllerEnd) && existsSync(deviceEnd) ? true : undefined,
    );
    server = new ModbusRtuLineServer({ path: deviceEnd, baudRate: o.baudRate, parity: 'even', logger });
    const journal = new Journal(() => 0);
    const pm = resolvePointMap(undefined);
    const configs: ModbusRtuAirHandler[] = [];
    for (let i = 1; i <= o.units; i++) {
      const config: ModbusRtuAirHandler = {
        ...o.template,
        id: `AHU-RTU-${i}`,
        protocol: 'modbus-rtu',
        endpoint: {
          path: controllerEnd,
          simPath: deviceEnd,
          unitId: i,
          baudRate: o.baudRate,
          parity: 'even',
        },
        // Room for every other unit's turn ahead of a request in the line's queue.
        client: { timeoutMs: 5_000 },
      };
      const unit = new SimAirHandler(config, journal);
      server.addUnit(i, new ModbusAhuPdu(unit, pm, newPduCounters(), logger));
      configs.push(config);
    }
    await server.start();
    for (const c of configs) devices.push(new ModbusDevice(c, { logger }));
    for (const d of devices) await d.open();
    const line = rtuLineOn(controllerEnd);
    if (!line) throw new Error('the RTU devices did not open a shared line');
    if (line.allUnitCounters().size !== o.units) throw new Error('not every unit asked on the one line');

    let cycles = 0;
    let errors = 0;
    let counting = false;
    let firstError = '';
    const t0 = performance.now();
    const windowStart = t0 + o.warmupS * 1000;
    const end = windowStart + o.seconds * 1000;
    const loops = devices.map(async (d) => {
      for (let i = 0; i < MAX_CYCLES_PER_UNIT && performance.now() < end; i++) {
        const inWindow = counting;
        try {
          await d.read();
          await d.writeCommand(COMMAND);
          if (inWindow && counting) cycles++;
        } catch (err) {
          if (inWindow && counting && errors++ === 0) firstError = (err as Error).message;
        }
      }
    });
    await delay(windowStart - performance.now());
    const timeoutsBefore = sumTimeouts(line.allUnitCounters());
    counting = true;
    const w0 = performance.now();
    await delay(end - performance.now());
    counting = false;
    const wallS = (performance.now() - w0) / 1000;
    await Promise.all(loops);
    const theory = theoreticalUnitsPerS(o.baudRate);
    const result: RtuLineBenchResult = {
      unitsPerS: cycles / wallS,
      theoreticalUnitsPerS: theory.unitsPerS,
      txPerCycle: theory.tx,
      charsPerCycle: theory.chars,
      errors,
      lineTimeouts: sumTimeouts(line.allUnitCounters()) - timeoutsBefore,
      strayFrames: line.counters.strayFrames,
    };
    o.log(
      `RTU line, ${o.units} units at ${o.baudRate} baud: ${result.unitsPerS.toFixed(2)} units/s ` +
        `(read + fenced write + read-back each), theoretical ${theory.unitsPerS.toFixed(2)} ` +
        `(${theory.chars} characters of ${RTU_BITS_PER_CHAR} bits a cycle), ${errors} errors` +
        (errors > 0 ? ` (first: ${firstError})` : ''),
    );
    return result;
  } finally {
    await Promise.all(devices.map((d) => d.close()));
    await server?.stop();
    if (socat && socat.exitCode === null) socat.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

function sumTimeouts(counters: Map<number, { timeouts: number }>): number {
  let n = 0;
  for (const c of counters.values()) n += c.timeouts;
  return n;
}
