// The writer's handle on one peer process (bench/lib/cache-peer.ts): spawned with this Node
// (process.execPath), driven by request/reply over IPC, every request with a deadline. stop() asks
// it to close and exit, and SIGKILLs it when it does not; a writer that exits kills what is left.
import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PeerReply, PeerRequest } from './cache-peer-protocol.ts';

const here = dirname(fileURLToPath(import.meta.url));
const live = new Set<ChildProcess>();
let exitHook = false;

type Request = PeerRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

export class PeerProcess {
  readonly name: string;
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private exited = false;

  private constructor(name: string) {
    this.name = name;
    this.child = spawn(process.execPath, [join(here, 'cache-peer.ts')], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    live.add(this.child);
    if (!exitHook) {
      exitHook = true;
      process.once('exit', () => {
        for (const c of live) c.kill('SIGKILL');
      });
    }
    this.child.on('message', (r: PeerReply) => {
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      if (r.ok) p.resolve(r.result);
      else p.reject(new Error(`peer ${this.name}: ${r.error}`));
    });
    this.child.once('exit', (code, signal) => {
      this.exited = true;
      live.delete(this.child);
      for (const p of this.pending.values()) p.reject(new Error(`peer ${name} exited (${code ?? signal})`));
      this.pending.clear();
    });
  }

  static spawn(name: string): PeerProcess {
    return new PeerProcess(name);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  call<T>(req: Request, timeoutMs = 10_000): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`peer ${this.name} has exited`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`peer ${this.name}: no reply to ${req.cmd} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.child.send({ ...req, id });
    });
  }

  /** Asks the peer to close its links and exit; SIGKILL after `timeoutMs`. Never throws. */
  async stop(timeoutMs = 5_000): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.call({ cmd: 'stop' }, timeoutMs).catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((r) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        r();
      }, timeoutMs);
    });
    await Promise.race([gone, killed]);
    clearTimeout(timer);
    if (!this.exited) await gone;
  }
}
