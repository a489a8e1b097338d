// Calls `onChange` once the content of a watched file has changed and its folder then stayed quiet
// for `settleMs` (editors and deploy tools write in several steps). The folders are watched, not
// the files: a rename over the file replaces its inode, and a Kubernetes ConfigMap swaps a `..data`
// symlink the file points through. So an event counts when it names the file, a `..` entry (the
// ConfigMap's own), or the entry the file's symlink leads through; a neighbour's writes (a log, a
// data dir beside the config) are no hint at all.
// A hint only leads to `onChange` when what the files read as (through symlinks; an unreadable or
// missing file reads as its error) differs from the last time: one change is one reload, and a touch
// is none. The files are compared by their stat first and read (off the event loop, bounded) only
// when that changed: a site of 1 000 units is megabytes, and reading it on every event in a busy
// folder cost the control loops their lag target. Bounded: one timer, one fs.watch per folder;
// close() stops it all. A writer that never leaves the folder quiet for `settleMs` (a tool saving in
// a loop, an editor's autosave, a sync agent) defers the look at most `maxDeferMs` after its first
// change: the files are then read as they are (a cut one is refused by the reload, the config kept).
import { createHash } from 'node:crypto';
import { type FSWatcher, lstatSync, readlinkSync, statSync, watch } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute } from 'node:path';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { readBoundedFile, SITE_FILE_MAX_BYTES } from '../config/config-files.ts';

interface WatchedDir {
  identity: string | undefined;
  watcher: FSWatcher | undefined;
}

/** A folder's device and inode, or undefined when there is none at that path. */
function dirIdentity(dir: string): string | undefined {
  try {
    const st = statSync(dir, { bigint: true });
    return st.isDirectory() ? `${st.dev}:${st.ino}` : undefined;
  } catch {
    return undefined;
  }
}

/** How long a quiet folder must stay quiet before the files are looked at: editors save in steps. */
export const CONFIG_SETTLE_MS = 500;
/**
 * The longest a change waits for the folder to settle: ten settle windows, so a save in a few steps
 * (well under a second) never meets it, yet an operator's edit under a writer that never stops is
 * applied within seconds, not never. A reload of a 1 000-unit site costs ~1 s of CPU, so one every
 * 5 s at most leaves the control loops their time.
 */
export const CONFIG_MAX_DEFER_MS = 5_000;

export interface ConfigWatcherOptions {
  /** See CONFIG_MAX_DEFER_MS. */
  maxDeferMs?: number;
  /** Where coolctl_config_unsettled_reloads_total is registered (the controller's). */
  registry?: Registry;
}

export class ConfigWatcher {
  /** Each watched folder: its watch, and which folder it is (device and inode; undefined: missing). */
  private readonly dirs = new Map<string, WatchedDir>();
  private readonly logger: Logger;
  private readonly files: string[];
  private readonly onChange: () => void;
  private readonly settleMs: number;
  private readonly maxDeferMs: number;
  private timer: NodeJS.Timeout | undefined;
  /** When (performance.now()) the first change not looked at yet came; undefined: none waits. */
  private firstUnseenAt: number | undefined;
  /** Whether the last look was forced by the bound: the writer has not let the folder settle since. */
  private unsettled = false;
  private readonly unsettledLooks: Counter | undefined;
  /** The files' stat and content fingerprints as last seen (undefined: not read yet). */
  private seenStat: string | undefined;
  private seenContent: string | undefined;
  private checking: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    files: string[],
    onChange: () => void,
    logger: Logger,
    settleMs = CONFIG_SETTLE_MS,
    opts: ConfigWatcherOptions = {},
  ) {
    this.files = [...new Set(files)];
    this.onChange = onChange;
    this.settleMs = settleMs;
    this.maxDeferMs = Math.max(settleMs, opts.maxDeferMs ?? CONFIG_MAX_DEFER_MS);
    this.unsettledLooks = opts.registry
      ? new Counter({
          name: 'coolctl_config_unsettled_reloads_total',
          help: `Looks at the config files forced while they were still being written: ${this.maxDeferMs / 1000} s after a change the folder never stayed quiet ${this.settleMs} ms`,
          registers: [opts.registry],
        })
      : undefined;
    // What the files are now, before the folders are watched: a change from here on is seen against it.
    this.checking = this.look().then((r) => {
      this.seenStat = r.stat;
      this.seenContent = r.content;
    });
    this.logger = logger;
    for (const dir of new Set(this.files.map((f) => dirname(f)))) this.watchDir(dir);
  }

  /** Watches `dir` as it is now (its identity kept, so that a folder replaced later is seen). */
  private watchDir(dir: string): void {
    const names = this.namesIn(dir);
    const watched: WatchedDir = { identity: dirIdentity(dir), watcher: undefined };
    this.dirs.set(dir, watched);
    if (watched.identity === undefined) return; // gone: settled() looks for it again
    try {
      const w = watch(dir, (_event, name) => {
        const n = name?.toString();
        if (n === undefined || names.has(n) || n.startsWith('..')) this.hint();
      });
      w.on('error', (err) => this.logger.warn({ err, dir }, 'config watch failed; SIGHUP still reloads'));
      watched.watcher = w;
    } catch (err) {
      this.logger.warn({ err, dir }, 'cannot watch the config folder; SIGHUP still reloads');
    }
  }

  /**
   * A watch follows the folder it was set on: one removed (its watch ends without a word) or
   * replaced by another of its name (`rm -rf /etc/coolctl; cp -r … /etc/coolctl`, a deploy tool's
   * rename) would leave the files unwatched for good. Each settle checks that every folder is the
   * one watched, and watches the new one; while a folder is missing it looks again every settle.
   */
  private rewatchReplaced(): void {
    let missing = false;
    for (const [dir, watched] of this.dirs) {
      const now = dirIdentity(dir);
      if (now !== undefined && now === watched.identity) continue;
      if (now === undefined && watched.identity === undefined) {
        missing = true;
        continue;
      }
      watched.watcher?.close();
      this.watchDir(dir);
      if (now === undefined) {
        missing = true;
        this.logger.warn({ dir }, 'the config folder is gone; watching for it to come back');
      } else this.logger.info({ dir }, 'the config folder was replaced; watching the new one');
    }
    if (missing && !this.closed) this.hint();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    for (const d of this.dirs.values()) d.watcher?.close();
  }

  /** The entries of `dir` whose events are about the watched files: their names, and their links' first step. */
  private namesIn(dir: string): Set<string> {
    const names = new Set<string>();
    for (const f of this.files) {
      if (dirname(f) !== dir) continue;
      names.add(basename(f));
      try {
        if (!lstatSync(f).isSymbolicLink()) continue;
        const target = readlinkSync(f);
        if (!isAbsolute(target)) names.add(target.split('/')[0]!);
      } catch {
        // Missing now: its name is enough; a link made later is seen by its name's event.
      }
    }
    return names;
  }

  /**
   * A change: look once the folder has been quiet for settleMs, but no later than maxDeferMs after
   * the first change not looked at yet, however the writes go on.
   */
  private hint(): void {
    const now = performance.now();
    this.firstUnseenAt ??= now;
    const boundInMs = this.firstUnseenAt + this.maxDeferMs - now;
    const forced = boundInMs < this.settleMs;
    clearTimeout(this.timer);
    this.timer = setTimeout(
      () => {
        this.firstUnseenAt = undefined;
        this.deferralEnded(forced);
        this.checking = this.checking.then(() => this.settled()).catch(() => {});
      },
      Math.max(0, Math.min(this.settleMs, boundInMs)),
    );
  }

  /** One line when a writer first holds a change past the bound, one when the folder settles again. */
  private deferralEnded(forced: boolean): void {
    if (forced) {
      this.unsettledLooks?.inc();
      if (!this.unsettled)
        this.logger.warn(
          { files: this.files, maxDeferMs: this.maxDeferMs, settleMs: this.settleMs },
          `the config files keep changing (never quiet for ${this.settleMs} ms): reading them as they are every ${this.maxDeferMs / 1000} s until the writes stop`,
        );
    } else if (this.unsettled) this.logger.info({ files: this.files }, 'the config files settled again');
    this.unsettled = forced;
  }

  private async settled(): Promise<void> {
    if (this.closed) return;
    this.rewatchReplaced();
    const statNow = await this.statPrint();
    if (statNow === this.seenStat) return;
    const { content } = await this.look();
    this.seenStat = statNow;
    if (this.closed || content === this.seenContent) return;
    this.seenContent = content;
    this.onChange();
  }

  private async look(): Promise<{ stat: string; content: string }> {
    const statNow = await this.statPrint();
    const hash = createHash('sha256');
    for (const f of this.files) {
      const r = await readBoundedFile(f, SITE_FILE_MAX_BYTES, 'config file');
      if (r.ok) hash.update(`${f}\0ok\0`).update(r.value);
      else hash.update(`${f}\0${r.code ?? r.message}\0`);
      hash.update('\0');
    }
    return { stat: statNow, content: hash.digest('hex') };
  }

  /** The files' identity and times through their links (or the error): what any write changes. */
  private async statPrint(): Promise<string> {
    const parts: string[] = [];
    for (const f of this.files) {
      try {
        const s = await stat(f, { bigint: true });
        parts.push(`${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`);
      } catch (err) {
        parts.push(`error ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
      }
    }
    return parts.join('|');
  }
}
