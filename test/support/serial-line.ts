// One Modbus RTU serial line of the chaos hall, out of real ptys: the simulator's RTU unit opens the
// device end, the line's one master (a TCP→RTU gateway) the master end. The bytes between them pass
// through a proxy in the test process, so the line itself can be made slow, lossy (frames lost
// whole or cut), noisy (request bytes flipped: the unit sees a bad CRC) or broken, as a bad RS-485
// cable would be, without touching either end:
//
//   master end (pty) ⇄ socat ⇄ TCP ⇄ BlackholeProxy ⇄ TCP ⇄ socat ⇄ device end (pty)
//
// Either end may close and reopen (a simulator restart): the ptys stay. stop() is bounded.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BlackholeProxy, type Impairment } from '../../scripts/lib/blackhole-proxy.ts';
import { waitFor } from '../helpers.ts';
import { freePort } from './etcd-cluster.ts';

export interface SerialLineStats {
  /** Chunks of the byte stream thrown away by a lossy or broken line. */
  droppedChunks: number;
  /** Request chunks (master → device) with a byte flipped by noise. */
  noisyChunks: number;
  bytesToDevice: number;
  bytesToMaster: number;
}

const STOP_DEADLINE_MS = 2000;

export class SerialLine {
  /** What the line's master (the gateway) opens. */
  readonly masterPath: string;
  /** What the simulator's RTU unit opens (`endpoint.simPath`). */
  readonly devicePath: string;
  private readonly procs: ChildProcess[];
  private readonly proxy: BlackholeProxy;
  private noisePct = 0;
  private noisy = 0;
  private rnd: () => number = Math.random;
  private stopping: Promise<void> | undefined;

  private constructor(a: {
    masterPath: string;
    devicePath: string;
    procs: ChildProcess[];
    proxy: BlackholeProxy;
  }) {
    this.masterPath = a.masterPath;
    this.devicePath = a.devicePath;
    this.procs = a.procs;
    this.proxy = a.proxy;
  }

  /**
   * Makes the line `name` in `dir` (`<name>-master`, `<name>-device`, socat logs beside them);
   * rejects, with socat's log, when it cannot (socat missing: `apt-get install socat`).
   */
  static async start({
    dir,
    name,
    timeoutMs = 10_000,
  }: {
    dir: string;
    name: string;
    timeoutMs?: number;
  }): Promise<SerialLine> {
    const masterPath = join(dir, `${name}-master`);
    const devicePath = join(dir, `${name}-device`);
    const procs: ChildProcess[] = [];
    let proxy: BlackholeProxy | undefined;
    const logOf = (side: string) => join(dir, `${name}-socat-${side}.log`);
    const socat = (side: string, a: string, b: string): ChildProcess => {
      const fd = openSync(logOf(side), 'a');
      try {
        const p = spawn('socat', ['-d', '-d', a, b], { stdio: ['ignore', fd, fd] });
        p.on('error', () => undefined); // a missing socat fails the waits below with its log
        procs.push(p);
        return p;
      } finally {
        closeSync(fd);
      }
    };
    try {
      const devicePort = await freePort();
      const deviceSide = socat(
        'device',
        `TCP-LISTEN:${devicePort},bind=127.0.0.1,reuseaddr`,
        `pty,raw,echo=0,link=${devicePath}`,
      );
      // One accept only: probing the port would use it up, so socat's own log says when it listens.
      await waitFor(
        `socat to listen for the device end of ${name} (apt-get install socat)`,
        async () => {
          if (deviceSide.exitCode !== null)
            throw new Error(
              `socat exited ${deviceSide.exitCode}: ${await readFile(logOf('device'), 'utf8').catch(() => '')}`,
            );
          return (await readFile(logOf('device'), 'utf8').catch(() => '')).includes('listening on');
        },
        { timeoutMs, intervalMs: 20 },
      );
      // Requests pass the line's noise on their way to the unit; the line exists only once the
      // proxy does, so the proxy calls it through this slot.
      const requests: { noise: (chunk: Buffer) => Buffer } = { noise: (chunk) => chunk };
      proxy = await BlackholeProxy.start({
        target: { host: '127.0.0.1', port: devicePort },
        clientToUpstream: (chunk) => requests.noise(chunk),
      });
      const line = new SerialLine({ masterPath, devicePath, procs, proxy });
      requests.noise = (chunk) => line.noise(chunk);
      socat('master', `pty,raw,echo=0,link=${masterPath}`, `TCP:127.0.0.1:${proxy.port}`);
      await waitFor(
        `both ends of serial line ${name}`,
        async () => {
          for (const [side, p] of [
            ['device', procs[0]!],
            ['master', procs[1]!],
          ] as const)
            if (p.exitCode !== null)
              throw new Error(
                `socat (${side}) exited ${p.exitCode}: ${await readFile(logOf(side), 'utf8').catch(() => '')}`,
              );
          return existsSync(masterPath) && existsSync(devicePath);
        },
        { timeoutMs, intervalMs: 20 },
      );
      return line;
    } catch (err) {
      for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
      await proxy?.close();
      throw err;
    }
  }

  /** Makes the line slow (`delayMs` per chunk, order kept) and/or lossy (`dropPct` of chunks, either way). */
  impair(i: Impairment): void {
    this.proxy.impair(i);
  }

  /** A broken line (a cable pulled): nothing gets through either way, and nothing is held for later. */
  break(): void {
    this.proxy.impair({ dropPct: 100 });
  }

  /** Flips one byte in `pct` % of the request chunks (master → device): the unit sees a bad CRC. */
  setNoise(pct: number, rnd: () => number = Math.random): void {
    this.noisePct = pct;
    this.rnd = rnd;
  }

  /** Back to a clean line. */
  mend(): void {
    this.proxy.unimpair();
    this.noisePct = 0;
  }

  get stats(): SerialLineStats {
    return {
      droppedChunks: this.proxy.stats.droppedChunks,
      noisyChunks: this.noisy,
      bytesToDevice: this.proxy.stats.bytesUp,
      bytesToMaster: this.proxy.stats.bytesDown,
    };
  }

  private noise(chunk: Buffer): Buffer {
    if (this.noisePct <= 0 || chunk.length === 0 || this.rnd() * 100 >= this.noisePct) return chunk;
    const out = Buffer.from(chunk);
    const i = Math.floor(this.rnd() * out.length);
    out[i] = (out[i] ?? 0) ^ 0x10;
    this.noisy++;
    return out;
  }

  /** Ends both socats and the proxy: SIGTERM, SIGKILL after 2 s. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const live = this.procs.filter((p) => p.exitCode === null && p.signalCode === null);
      const exited = live.map((p) => new Promise((r) => p.once('exit', r)));
      for (const p of live) p.kill('SIGTERM');
      await Promise.race([Promise.all(exited), new Promise((r) => setTimeout(r, STOP_DEADLINE_MS))]);
      for (const p of live) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
      await this.proxy.close();
    })();
    return this.stopping;
  }
}
