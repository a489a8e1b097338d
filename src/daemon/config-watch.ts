// Calls `onChange` once a watched file has changed and then stayed quiet for `settleMs` (editors
// write in several steps; a rename-over-write replaces the inode, so the folder is watched, not the
// file). Bounded: one timer, one fs.watch per folder; close() stops it all.
import { type FSWatcher, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';

export class ConfigWatcher {
  private readonly watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(files: string[], onChange: () => void, logger: Logger, settleMs = 500) {
    const byDir = new Map<string, Set<string>>();
    for (const f of files) {
      const names = byDir.get(dirname(f)) ?? new Set<string>();
      names.add(basename(f));
      byDir.set(dirname(f), names);
    }
    for (const [dir, names] of byDir) {
      try {
        const w = watch(dir, (_event, name) => {
          if (!name || !names.has(name.toString())) return;
          clearTimeout(this.timer);
          this.timer = setTimeout(onChange, settleMs);
        });
        w.on('error', (err) => logger.warn({ err, dir }, 'config watch failed; SIGHUP still reloads'));
        this.watchers.push(w);
      } catch (err) {
        logger.warn({ err, dir }, 'cannot watch the config folder; SIGHUP still reloads');
      }
    }
  }

  close(): void {
    clearTimeout(this.timer);
    for (const w of this.watchers) w.close();
  }
}
