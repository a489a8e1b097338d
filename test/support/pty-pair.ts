// A socat pty pair standing in for an RS-485 line: the Modbus master (a controller's line, the
// fencing gateway, an RTU master in a test) opens `master`, the simulated units open `device`.
// socat ends the pair when either side closes its end, so a test that reopens a line needs a new one.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../helpers.ts';

export interface PtyPair {
  master: string;
  device: string;
  /** Unplugs the line: socat exits and both ends go away. */
  kill(): Promise<void>;
  /** kill(), and the pair's own temporary directory removed (when it made one). */
  close(): Promise<void>;
}

/** A pty pair linked at `dir`/`name`-master and -device; without `dir`, in a fresh temporary one. */
export async function ptyPair(dir?: string, name = 'line'): Promise<PtyPair> {
  const own = dir === undefined ? mkdtempSync(join(tmpdir(), 'coolctl-pty-')) : undefined;
  const at = dir ?? own!;
  const master = join(at, `${name}-master`);
  const device = join(at, `${name}-device`);
  const socat = spawn(
    'socat',
    ['-d', '-d', `pty,raw,echo=0,link=${master}`, `pty,raw,echo=0,link=${device}`],
    {
      stdio: 'ignore',
    },
  );
  socat.on('error', () => undefined); // a missing socat fails the wait below, with what to install
  const kill = async (): Promise<void> => {
    if (socat.exitCode !== null || socat.signalCode !== null) return;
    const exited = new Promise((r) => socat.once('exit', r));
    socat.kill('SIGTERM');
    await exited;
  };
  const close = async (): Promise<void> => {
    await kill();
    if (own) rmSync(own, { recursive: true, force: true });
  };
  try {
    await waitFor('socat pty pair (apt-get install socat)', () => existsSync(master) && existsSync(device));
  } catch (err) {
    await close();
    throw err;
  }
  return { master, device, kill, close };
}
