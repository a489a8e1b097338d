// Calls `onChange` once the content of a watched file has changed and its folder then stayed quiet
// for `settleMs` (editors and deploy tools write in several steps). The folders are watched, not
// the files, and any entry in them counts as a hint: a rename over the file replaces its inode, and
// a Kubernetes ConfigMap swaps a `..data` symlink the file points through, under another name.
// A hint only leads to `onChange` when what the files read as (through symlinks; an unreadable or
// missing file reads as its error) differs from the last time: one change is one reload, and a
// touch or a neighbour's write is none. Bounded: one timer, one fs.watch per folder; close() stops it all.
import { createHash } from 'node:crypto';
import { type FSWatcher, readFileSync, watch } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';

export class ConfigWatcher {
  private readonly watchers: FSWatcher[] = [];
  private readonly files: string[];
  private readonly onChange: () => void;
  private readonly settleMs: number;
  private timer: NodeJS.Timeout | undefined;
  private seen: string;
  private closed = false;

  constructor(files: string[], onChange: () => void, logger: Logger, settleMs = 500) {
    this.files = [...new Set(files)];
    this.onChange = onChange;
    this.settleMs = settleMs;
    // Read now, before the folders are watched: a change from here on is seen against this.
    this.seen = this.fingerprint();
    for (const dir of new Set(this.files.map((f) => dirname(f)))) {
      try {
        const w = watch(dir, () => this.hint());
        w.on('error', (err) => logger.warn({ err, dir }, 'config watch failed; SIGHUP still reloads'));
        this.watchers.push(w);
      } catch (err) {
        logger.warn({ err, dir }, 'cannot watch the config folder; SIGHUP still reloads');
      }
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    for (const w of this.watchers) w.close();
  }

  private hint(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.settled(), this.settleMs);
  }

  private settled(): void {
    if (this.closed) return;
    const now = this.fingerprint();
    if (now === this.seen) return;
    this.seen = now;
    this.onChange();
  }

  /** What the files read as now: their contents' hash, or the error reading each. */
  private fingerprint(): string {
    const hash = createHash('sha256');
    for (const f of this.files) {
      try {
        hash.update(`${f}\0ok\0`).update(readFileSync(f));
      } catch (err) {
        hash.update(`${f}\0${(err as NodeJS.ErrnoException).code ?? 'error'}\0`);
      }
      hash.update('\0');
    }
    return hash.digest('hex');
  }
}
