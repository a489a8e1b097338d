// Debian's `promtool` (package prometheus; deploy/dev/prepare.sh test installs it) as the judge of
// what /metrics writes.
import { execFile } from 'node:child_process';

/** `promtool check metrics` on `text`: its exit code and what it said. */
export function promtoolCheck(text: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile('promtool', ['check', 'metrics'], { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT')
        reject(new Error('promtool not found: run deploy/dev/prepare.sh test (Debian package prometheus)'));
      else resolve({ code: typeof err?.code === 'number' ? err.code : 0, out: `${stdout}${stderr}` });
    });
    child.stdin!.end(text);
  });
}
