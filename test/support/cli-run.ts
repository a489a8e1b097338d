// `coolctl …` run as a separate process, as an engineer runs it: its exit code and both streams,
// killed (and the test failed with what it printed) if it outlives its deadline.
import { spawn } from 'node:child_process';

export interface CliRun {
  code: number | null;
  out: string;
  err: string;
}

export function runCoolctl(
  args: readonly string[],
  { deadlineMs = 30_000 }: { deadlineMs?: number } = {},
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['src/cli.ts', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    proc.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`coolctl ${args.join(' ')} did not end within ${deadlineMs} ms: ${out}${err}`));
    }, deadlineMs);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}
