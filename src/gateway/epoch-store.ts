// The highest epoch the gateway accepted per unit id, kept across restarts: a gateway that forgot
// would let a deposed leader's write through until the current leader wrote again. A raise is on
// disk (temp file, fsync, rename, fsync of the directory) before the write it guards is forwarded;
// raises run one after another, each snapshot holding every raise before it. A write that fails
// (a full or read-only disk, no file descriptor left) leaves the file as it was and no temp file
// behind; the raise stays in memory and is written by the next write or flush().
// Invariant: the epoch of a unit never goes down, in memory or on disk. A file that cannot be read
// or parsed stops the gateway at start (COOLCTL_E_STARTUP): guessing would reopen the fence.
import { constants } from 'node:fs';
import { access, open, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { CoolctlError, ErrorCodes } from '../errors.ts';
import { isRecord } from '../util/is-record.ts';

const FORMAT_VERSION = 1;
/** Epochs are u64 on the wire (gateway-fencing.ts); a larger one could never be written again. */
const U64_MAX = (1n << 64n) - 1n;

interface StateFileV1 {
  version: 1;
  /** Unit id → highest epoch, as a decimal string (u64 does not fit a JSON number). */
  units: Record<string, string>;
}

export class EpochStore {
  readonly file: string;
  private readonly epochs = new Map<number, bigint>();
  /** What the file is known to hold: a raise that failed to reach it is written again by the next write. */
  private readonly durable = new Map<number, bigint>();
  private chain: Promise<void> = Promise.resolve();
  private writes = 0;

  private constructor(file: string) {
    this.file = file;
  }

  /** Reads the state file; a missing one is a first start (empty). `found` says which. */
  static async open(file: string): Promise<{ store: EpochStore; found: boolean }> {
    const store = new EpochStore(file);
    // Found at start, not at the first write of a new leader (which would then be refused).
    try {
      await access(dirname(file), constants.W_OK);
    } catch (err) {
      throw new CoolctlError(
        ErrorCodes.STARTUP,
        `the directory of the epoch state file ${file} is missing or not writable: ${(err as Error).message} ` +
          '(check stateFile; the systemd unit creates /var/lib/coolctl-gateway/NAME)',
        { cause: err },
      );
    }
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { store, found: false };
      throw new CoolctlError(
        ErrorCodes.STARTUP,
        `cannot read the epoch state file ${file}: ${(err as Error).message} (check stateFile and its permissions)`,
        {
          cause: err,
        },
      );
    }
    const problem = (why: string) =>
      new CoolctlError(
        ErrorCodes.STARTUP,
        `the epoch state file ${file} is not valid (${why}); the gateway will not guess the epochs it accepted. ` +
          'Restore it, or remove it knowing that until each unit’s leader writes again a deposed leader could write once',
      );
    // Our writes replace the file whole (rename), so an empty one was emptied by something else.
    if (text.trim() === '') throw problem('the file is empty');
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw problem((err as Error).message);
    }
    const d = doc as Partial<StateFileV1>;
    if (typeof d?.version === 'number' && d.version > FORMAT_VERSION) {
      throw problem(
        `format version ${d.version} was written by a newer coolctl; this one reads ${FORMAT_VERSION}: run the newer version`,
      );
    }
    if (d?.version !== FORMAT_VERSION || !isRecord(d.units)) {
      throw problem(`expected {"version":${FORMAT_VERSION},"units":{…}}`);
    }
    for (const [k, v] of Object.entries(d.units)) {
      // Canonical ids only: "3" and "03" would be one unit, and the later of the two would win.
      const id = /^[1-9]\d{0,2}$/.test(k) ? Number(k) : 0;
      const epoch = typeof v === 'string' && /^\d{1,20}$/.test(v) ? BigInt(v) : -1n;
      if (id < 1 || id > 247 || epoch < 0n || epoch > U64_MAX) {
        throw problem(
          `unit ${JSON.stringify(k)}: ${JSON.stringify(v)} is not a unit id (1..247) with a u64 epoch`,
        );
      }
      store.epochs.set(id, epoch);
      store.durable.set(id, epoch);
    }
    return { store, found: true };
  }

  highest(unitId: number): bigint {
    return this.epochs.get(unitId) ?? 0n;
  }

  /** The highest epoch the state file holds for a unit: what a restart would start from. */
  persisted(unitId: number): bigint {
    return this.durable.get(unitId) ?? 0n;
  }

  /** Whether some raise is only in memory (its file write failed). */
  get behind(): boolean {
    for (const [id, e] of this.epochs) if (this.persisted(id) < e) return true;
    return false;
  }

  /** Every unit's highest epoch (for metrics and logs). */
  entries(): [number, bigint][] {
    return [...this.epochs.entries()];
  }

  /** How many times the file was written (tests and metrics). */
  get fileWrites(): number {
    return this.writes;
  }

  /**
   * Raises a unit's epoch (if `epoch` is higher) and resolves once `epoch` is on disk — at once when
   * it already is. The memory is raised first, so a write with an older epoch is refused even while
   * the file is written, or when writing failed; a failed write is tried again by the next call.
   */
  ensure(unitId: number, epoch: bigint): Promise<void> {
    if (epoch > this.highest(unitId)) this.epochs.set(unitId, epoch);
    const onDisk = () => (this.durable.get(unitId) ?? 0n) >= epoch;
    if (onDisk()) return Promise.resolve();
    const done = this.chain.then(() => (onDisk() ? undefined : this.writeFile()));
    this.chain = done.catch(() => undefined);
    return done;
  }

  /** Writes the raises only in memory, if any; rejects as ensure() does. */
  flush(): Promise<void> {
    const done = this.chain.then(() => (this.behind ? this.writeFile() : undefined));
    this.chain = done.catch(() => undefined);
    return done;
  }

  private async writeFile(): Promise<void> {
    const tmp = join(dirname(this.file), `.${basename(this.file)}.tmp`);
    try {
      await this.replaceFile(tmp);
    } catch (err) {
      // A half-written temp file would hold the last free blocks of a full disk.
      await rm(tmp, { force: true }).catch(() => undefined);
      throw err;
    }
  }

  private async replaceFile(tmp: string): Promise<void> {
    const snapshot = [...this.epochs.entries()].sort((a, b) => a[0] - b[0]);
    const units: Record<string, string> = {};
    for (const [id, e] of snapshot) units[String(id)] = e.toString();
    const body = `${JSON.stringify({ version: FORMAT_VERSION, units } satisfies StateFileV1)}\n`;
    const dir = dirname(this.file);
    // One writer per file (the chain above), so one temp name is enough.
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(body);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.file);
    // The rename is durable only once the directory entry is.
    const dh = await open(dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
    this.writes++;
    for (const [id, e] of snapshot) this.durable.set(id, e);
  }
}
