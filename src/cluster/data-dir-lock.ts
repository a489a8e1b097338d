// DataDirLock: one live process per data dir. The lease-id file and the OPC-UA PKI live there; two
// nodes sharing one would revoke each other's live lease at start. The lock is a file published
// whole (written aside, then linked to its name, which fails if the name exists) holding {node, pid,
// bootId, startTicks}. A holder is alive only if the boot is the same and
// /proc/<pid> is the same process (its start time): a pid reused after a crash or a reboot is stale,
// and a stale lock is taken over (logged). Takeovers are serialised by a second such file, so two
// processes finding the same stale lock cannot both take it; it names its holder the same way and is
// stale by the same test. No clock decides staleness: judged by its age (now − mtime), a wall-clock
// step let a starter a day ahead delete a live takeover file (two takeovers at once), and one set
// back wait out a dead starter's for as long as the step.
// A data dir that is full or read-only fails the acquire with COOLCTL_E_STARTUP naming the file and
// the errno, and leaves no half-written lock behind.
import { randomBytes } from 'node:crypto';
import { link, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { CoolctlError, ErrorCodes } from '../errors.ts';
import { pidExists } from '../util/pid.ts';
import { ClusterError, ClusterErrorCodes } from './errors.ts';

export interface LockHolder {
  node: string;
  pid: number;
  /** /proc/sys/kernel/random/boot_id: a lock from before a reboot is stale whatever its pid. */
  bootId: string | null;
  /** Field 22 of /proc/<pid>/stat (clock ticks after boot): tells a reused pid from the holder. */
  startTicks: string | null;
}

const LOCK_FILE = 'coolctl.lock';
/** Between tries to take a takeover file another starter holds. */
const TAKEOVER_WAIT_MS = 20;
const MAX_ATTEMPTS = 5;

export class DataDirLock {
  readonly path: string;
  private readonly takeoverPath: string;
  private readonly node: string;
  private readonly log: Logger;
  private mine: string | null = null;

  constructor(dataDir: string, node: string, logger: Logger) {
    this.path = join(dataDir, LOCK_FILE);
    this.takeoverPath = `${this.path}.takeover`;
    this.node = node;
    this.log = logger;
  }

  /** Takes the lock, or throws DATA_DIR_IN_USE naming the live holder. Bounded: a few file operations. */
  async acquire(): Promise<void> {
    if (this.mine) return;
    const content = `${JSON.stringify(await selfHolder(this.node))}\n`;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (await createExclusive(this.path, content)) {
        this.mine = content;
        return;
      }
      const seen = await readFile(this.path, 'utf8').catch(() => null);
      if (seen === null) continue; // removed between our create and read: try again
      const holder = parseHolder(seen);
      if (holder && (await isAlive(holder))) {
        throw new ClusterError(
          ClusterErrorCodes.DATA_DIR_IN_USE,
          `data dir ${this.path.slice(0, -LOCK_FILE.length - 1)} is in use by node ${holder.node} (pid ${holder.pid}, lock ${this.path}); give each node its own dataDir (e.g. dataDir: /var/lib/coolctl/{node})`,
        );
      }
      await this.takeOver(seen, holder);
    }
    throw new ClusterError(
      ClusterErrorCodes.DATA_DIR_IN_USE,
      `could not take ${this.path} in ${MAX_ATTEMPTS} attempts: another process keeps creating it`,
    );
  }

  /** Removes the lock if it is still ours. */
  async release(): Promise<void> {
    const mine = this.mine;
    this.mine = null;
    if (!mine) return;
    const seen = await readFile(this.path, 'utf8').catch(() => null);
    if (seen === mine) await unlink(this.path).catch(() => {});
  }

  private async takeOver(stale: string, holder: LockHolder | null): Promise<void> {
    if (!(await createExclusive(this.takeoverPath, `${JSON.stringify(await selfHolder(this.node))}\n`))) {
      const seen = await readFile(this.takeoverPath, 'utf8').catch(() => null);
      if (seen === null) return; // its holder finished: try again
      const starter = parseHolder(seen);
      // Published whole (createExclusive): one that does not parse is damaged, not being written.
      const dead = starter ? !(await isAlive(starter)) : true;
      if (dead) {
        // Only if it is still the one judged: a live starter may have replaced it meanwhile.
        if ((await readFile(this.takeoverPath, 'utf8').catch(() => null)) === seen)
          await unlink(this.takeoverPath).catch(() => {});
      } else await new Promise((r) => setTimeout(r, TAKEOVER_WAIT_MS)); // another starter is taking over now
      return;
    }
    try {
      // Only a takeover holder unlinks a lock it did not create, so the file cannot change under us.
      const again = await readFile(this.path, 'utf8').catch(() => null);
      if (again !== stale) return;
      await unlink(this.path);
      this.log.warn(
        { lock: this.path, staleNode: holder?.node ?? null, stalePid: holder?.pid ?? null },
        holder
          ? 'took over the data dir lock of a process that is gone'
          : 'replaced an unreadable data dir lock',
      );
    } finally {
      await unlink(this.takeoverPath).catch(() => {});
    }
  }
}

/**
 * Creates `path` holding `content`, or returns false when it exists. The content is written to a
 * file of our own first and published with link(2), which fails if the name exists: nobody ever
 * reads the lock (or a takeover file) empty or half written, so one that does not parse is damaged,
 * never another starter's in the middle of its write.
 */
async function createExclusive(path: string, content: string): Promise<boolean> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, content, { flag: 'wx', mode: 0o644 });
  } catch (err) {
    // A half-written file on a full disk would hold its last free blocks.
    await unlink(tmp).catch(() => {});
    throw unwritable(path, err);
  }
  try {
    await link(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw unwritable(path, err);
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

function unwritable(path: string, err: unknown): CoolctlError {
  const e = err as NodeJS.ErrnoException;
  return new CoolctlError(
    ErrorCodes.STARTUP,
    `cannot write the data dir lock ${path}: ${e.code ?? e.message} (the data dir must be writable, with free space)`,
    { cause: err },
  );
}

function parseHolder(text: string): LockHolder | null {
  try {
    const o = JSON.parse(text) as Partial<LockHolder>;
    if (typeof o.node !== 'string' || !Number.isInteger(o.pid) || (o.pid as number) <= 0) return null;
    return {
      node: o.node,
      pid: o.pid as number,
      bootId: typeof o.bootId === 'string' ? o.bootId : null,
      startTicks: typeof o.startTicks === 'string' ? o.startTicks : null,
    };
  } catch {
    return null; // a half-written lock of a process that died while writing it
  }
}

async function selfHolder(node: string): Promise<LockHolder> {
  return { node, pid: process.pid, bootId: await bootId(), startTicks: await startTicks(process.pid) };
}

async function bootId(): Promise<string | null> {
  return readFile('/proc/sys/kernel/random/boot_id', 'utf8').then(
    (s) => s.trim(),
    () => null,
  );
}

/** /proc/<pid>/stat field 22; null where there is no /proc (the pid check alone then decides). */
async function startTicks(pid: number): Promise<string | null> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (stat === null) return null;
  // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19] ?? null;
}

async function isAlive(h: LockHolder): Promise<boolean> {
  const boot = await bootId();
  if (boot && h.bootId && boot !== h.bootId) return false;
  if (!pidExists(h.pid)) return false;
  if (h.startTicks === null) return true;
  const now = await startTicks(h.pid);
  return now === null || now === h.startTicks;
}
