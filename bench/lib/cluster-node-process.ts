// The bench's handle on one controller node process (bench/lib/cluster-node.ts): spawned with this
// Node, driven by request/reply over IPC with a deadline per request; role changes arrive as events.
// kill() is kill -9; stop() asks for a graceful stop (lease revoked) and SIGKILLs after a deadline.
// A node runs with the systemd unit's Node flags and environment (jemalloc), so its RSS is what a
// gateway would see. A bench that exits kills every node it spawned.
import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deployedDaemon } from '../../test/support/deployed-daemon.ts';
import type {
  NodeMessage,
  NodeRequest,
  NodeStartArgs,
  NodeStats,
  RoleEvent,
} from './cluster-node-protocol.ts';

const here = dirname(fileURLToPath(import.meta.url));
const live = new Set<ChildProcess>();
let exitHook = false;

type Request = NodeRequest extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

export class NodeProcess {
  readonly name: string;
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private exited = false;

  constructor(name: string, onRoles: (node: string, roles: RoleEvent[]) => void) {
    this.name = name;
    const unit = deployedDaemon();
    this.child = spawn(process.execPath, [...unit.nodeFlags, join(here, 'cluster-node.ts')], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, ...unit.env },
    });
    live.add(this.child);
    if (!exitHook) {
      exitHook = true;
      process.once('exit', () => {
        for (const c of live) c.kill('SIGKILL');
      });
    }
    this.child.on('message', (m: NodeMessage) => {
      if ('roles' in m) return onRoles(m.node, m.roles);
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(`node ${this.name}: ${m.error}`));
    });
    this.child.once('exit', (code, signal) => {
      this.exited = true;
      live.delete(this.child);
      for (const p of this.pending.values()) p.reject(new Error(`node ${name} exited (${code ?? signal})`));
      this.pending.clear();
    });
  }

  get alive(): boolean {
    return !this.exited;
  }

  start(args: NodeStartArgs, timeoutMs: number): Promise<{ peerPort: number }> {
    return this.call({ cmd: 'start', args }, timeoutMs);
  }

  /** Hot reload of the node's groups (EtcdLeadership.setGroups). */
  setGroups(groups: string[]): Promise<void> {
    return this.call({ cmd: 'groups', groups }, 10_000);
  }

  stats(reset = false): Promise<NodeStats> {
    return this.call({ cmd: 'stats', reset }, 10_000);
  }

  private call<T>(req: Request, timeoutMs: number): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`node ${this.name} has exited`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`node ${this.name}: no reply to ${req.cmd} within ${timeoutMs} ms`));
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

  /** kill -9; resolves once the process is gone (bounded). */
  async kill(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.kill('SIGKILL');
    await Promise.race([gone, new Promise((r) => setTimeout(r, 5_000))]);
  }

  /** Graceful stop (the node resigns and revokes its lease); SIGKILL after `timeoutMs`. Never throws. */
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
    if (!this.exited) await Promise.race([gone, new Promise((r) => setTimeout(r, 3_000))]);
  }
}
