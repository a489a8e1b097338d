// One gateway per epoch state file and per serial line. Two gateways sharing a state file each write
// their own snapshot over the other's, so a restart forgets epochs the other accepted; two on one
// RS-485 line each fence alone, so a deposed leader writes through the one that never saw the new
// epoch. The serial port's own TIOCEXCL lock does not stop root, hence this one.
// Each resource is held as a Linux abstract Unix socket named after its inode (every path, link or
// bind mount to it gives one name): the kernel frees the name when the holder ends, kill -9
// included, so no stale lock outlives a crash and none needs taking over. A second gateway that
// connects to the name learns who holds it, for its error message.
import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { basename, dirname } from 'node:path';
import { CoolctlError, type ErrorCode, ErrorCodes } from '../errors.ts';
import { settlesWithin } from '../util/async.ts';

/** How long a refused gateway waits for the holder to say who it is; the message names it or not. */
const ASK_HOLDER_MS = 500;
const CLOSE_DEADLINE_MS = 1_000;

export interface Holder {
  gateway: string;
  pid: number;
}

export class ExclusiveClaims {
  private readonly servers: Server[] = [];
  private readonly self: Holder;

  constructor(gateway: string) {
    this.self = { gateway, pid: process.pid };
  }

  /**
   * The epoch state file, named by its directory's inode and its own name (it may not exist yet);
   * a missing directory is left to the store's open, which says so. Throws
   * COOLCTL_E_DATA_DIR_IN_USE naming the gateway that holds it.
   */
  async stateFile(file: string): Promise<void> {
    const d = await stat(dirname(file)).catch(() => undefined);
    if (!d) return;
    await this.claim(
      `state:${d.dev}:${d.ino}/${basename(file)}`,
      ErrorCodes.DATA_DIR_IN_USE,
      (h) =>
        `the epoch state file ${file} is in use by ${describe(h)}: give each gateway its own stateFile (the systemd unit's /var/lib/coolctl-gateway/NAME)`,
    );
  }

  /**
   * A serial line, named by its device number; a path that does not exist is left to the line's
   * open, which says so. Throws COOLCTL_E_STARTUP naming the gateway that holds it.
   */
  async serialLine(path: string, line: string): Promise<void> {
    const s = await stat(path).catch(() => undefined);
    if (!s) return;
    const id = s.isCharacterDevice() ? `rdev:${s.rdev}` : `ino:${s.dev}:${s.ino}`;
    await this.claim(
      `serial:${id}`,
      ErrorCodes.STARTUP,
      (h) =>
        `the serial line ${path} (line ${line}) is driven by ${describe(h)}: one gateway per RS-485 line, with every unit of that line in its config`,
    );
  }

  /** Frees every claim; bounded, idempotent. */
  async release(): Promise<void> {
    const servers = this.servers.splice(0);
    await Promise.all(
      servers.map((s) => settlesWithin(new Promise<void>((r) => s.close(() => r())), CLOSE_DEADLINE_MS)),
    );
  }

  private async claim(
    key: string,
    code: ErrorCode,
    message: (h: Holder | undefined) => string,
  ): Promise<void> {
    const name = abstractName(key);
    const hello = `${JSON.stringify(this.self)}\n`;
    const server = createServer((socket) => {
      socket.on('error', () => undefined);
      socket.end(hello);
    });
    const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      server.once('error', resolve);
      server.listen(name, () => {
        server.off('error', resolve);
        resolve(undefined);
      });
    });
    if (!err) {
      // Held for the process' life; it must not keep a stopped gateway running.
      server.unref();
      this.servers.push(server);
      return;
    }
    if (err.code !== 'EADDRINUSE') {
      throw new CoolctlError(ErrorCodes.STARTUP, `cannot claim ${key} for this gateway: ${err.message}`, {
        cause: err,
      });
    }
    throw new CoolctlError(code, message(await askHolder(name)));
  }
}

/** Linux abstract socket names are at most 107 bytes: a digest of the key, under our prefix. */
function abstractName(key: string): string {
  return `\0coolctl-gateway/${createHash('sha256').update(key).digest('hex').slice(0, 40)}`;
}

function askHolder(name: string): Promise<Holder | undefined> {
  return new Promise((resolve) => {
    let text = '';
    const socket = connect(name);
    const done = (h: Holder | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(h);
    };
    const timer = setTimeout(() => done(undefined), ASK_HOLDER_MS);
    socket.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.length > 1_000) done(undefined);
    });
    socket.on('error', () => done(undefined));
    socket.on('end', () => {
      try {
        const h = JSON.parse(text) as Partial<Holder>;
        done(typeof h.gateway === 'string' && Number.isInteger(h.pid) ? (h as Holder) : undefined);
      } catch {
        done(undefined);
      }
    });
  });
}

function describe(h: Holder | undefined): string {
  return h ? `gateway ${h.gateway} (pid ${h.pid})` : 'another gateway';
}
