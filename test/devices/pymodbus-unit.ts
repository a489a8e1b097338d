// Drives test/fixtures/pymodbus-unit.py: a Modbus TCP register store served by Debian's pymodbus
// 3.0, set and read by the test over stdin/stdout (one JSON object a line). Loopback only; every
// answer awaited with a deadline; the process ends when the test closes its stdin or kills it.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../src/util/async.ts';
import { canConnect, waitFor } from '../helpers.ts';

const SCRIPT = fileURLToPath(new URL('../fixtures/pymodbus-unit.py', import.meta.url));
const SYSTEM_PYTHON = '/usr/bin/python3';
const ANSWER_DEADLINE_MS = 5_000;

export type Table = 'coil' | 'discrete' | 'input' | 'holding';

export class PymodbusUnit {
  readonly port: number;
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly waiting: ((line: string) => void)[] = [];

  private constructor(port: number) {
    this.port = port;
    this.proc = spawn(SYSTEM_PYTHON, [SCRIPT, String(port)], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.on('error', () => undefined);
    this.proc.stderr.resume();
    createInterface({ input: this.proc.stdout }).on('line', (line) => this.waiting.shift()?.(line));
  }

  static async start(port?: number): Promise<PymodbusUnit> {
    const unit = new PymodbusUnit(port ?? (await freePort('127.0.0.1')));
    await waitFor('pymodbus listening', () => canConnect(unit.port), { timeoutMs: 20_000, intervalMs: 100 });
    return unit;
  }

  set(table: Table, address: number, values: number[]): Promise<unknown> {
    return this.ask({ op: 'set', table, address, values });
  }

  async get(table: Table, address: number, count = 1): Promise<number[]> {
    return ((await this.ask({ op: 'get', table, address, count })) as { values: number[] }).values;
  }

  /** Until true, reads of addresses the test never set answer exception 02 (data not ready). */
  ready(value: boolean): Promise<unknown> {
    return this.ask({ op: 'ready', value });
  }

  /** Every write that reached the store: [function code, address, count]. */
  async writes(): Promise<[number, number, number][]> {
    return ((await this.ask({ op: 'writes' })) as { writes: [number, number, number][] }).writes;
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.proc.once('exit', () => resolve()));
    this.proc.kill('SIGKILL');
    await exited;
  }

  private ask(cmd: object): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiting.indexOf(onLine);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(
          new Error(`pymodbus unit did not answer ${JSON.stringify(cmd)} within ${ANSWER_DEADLINE_MS} ms`),
        );
      }, ANSWER_DEADLINE_MS);
      const onLine = (line: string): void => {
        clearTimeout(timer);
        const answer = JSON.parse(line) as { error?: string };
        if (answer.error) reject(new Error(`pymodbus unit: ${answer.error}`));
        else resolve(answer);
      };
      this.waiting.push(onLine);
      this.proc.stdin.write(`${JSON.stringify(cmd)}\n`);
    });
  }
}

/** A signed 16-bit value as the register word pymodbus stores. */
export const word = (v: number): number => v & 0xffff;
