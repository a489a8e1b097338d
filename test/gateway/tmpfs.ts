// A small tmpfs the tests fill, or remount read-only, to run out of disk from outside: the real
// ENOSPC and EROFS a full or failing data partition gives, on a mount of its own under the test's
// temp dir (never a system mount). Needs root, as the test machines run; unmount() is idempotent
// and lazy, so it also works while a process the test started still holds a file there.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Tmpfs {
  dir: string;
  /** Writes one file until the mount is full (ENOSPC), then gives back `leaveKiB`; free() removes it. */
  fill(leaveKiB?: number): void;
  free(): void;
  readOnly(ro: boolean): void;
  unmount(): void;
}

export function mountTmpfs(dir: string, sizeKiB = 64): Tmpfs {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKiB}k,mode=700`, 'tmpfs', dir]);
  let mounted = true;
  const filler = join(dir, '.filler');
  return {
    dir,
    fill: (leaveKiB = 0) => {
      // 4 KiB at a time (tmpfs pages): bounded by the mount's size.
      const page = Buffer.alloc(4096);
      for (let i = 0; i <= sizeKiB / 4; i++) {
        try {
          writeFileSync(filler, page, { flag: 'a' });
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
          if (leaveKiB > 0) truncateSync(filler, Math.max(0, statSync(filler).size - leaveKiB * 1024));
          return;
        }
      }
      throw new Error(`tmpfs ${dir} did not fill up`);
    },
    free: () => rmSync(filler, { force: true }),
    readOnly: (ro) => {
      execFileSync('mount', ['-o', `remount,${ro ? 'ro' : 'rw'}`, dir]);
    },
    unmount: () => {
      if (!mounted) return;
      mounted = false;
      execFileSync('umount', ['-l', dir]);
    },
  };
}
