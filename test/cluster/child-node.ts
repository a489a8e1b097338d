// Spawns test/cluster/fixtures/node-process.ts (one EtcdLeadership per process) and collects the JSON
// lines it prints, so tests can SIGKILL or SIGSTOP a real leader and see what it was allowed to do.
import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EtcdLeadershipOptions } from '../../src/cluster/etcd/etcd-leadership.ts';
import { waitFor } from '../helpers.ts';

const FIXTURE = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'node-process.ts');

export interface ChildLine {
  ev: 'ready' | 'role' | 'fence';
  t: number;
  group?: string;
  epoch?: number | null;
  from?: string;
  to?: string;
}

export class ChildNode {
  readonly lines: ChildLine[] = [];
  readonly proc: ChildProcess;
  private stderr = '';

  constructor(opts: Omit<EtcdLeadershipOptions, 'logger' | 'registry' | 'now'>) {
    // The etcd TLS material goes as Buffer JSON; the fixture revives it (reviveBytes).
    this.proc = spawn(process.execPath, [FIXTURE, JSON.stringify(opts)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let buf = '';
    this.proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          this.lines.push(JSON.parse(line) as ChildLine);
        } catch {
          // not ours
        }
      }
    });
    this.proc.stderr!.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
  }

  async ready(timeoutMs = 10_000): Promise<void> {
    await waitFor(
      `child ready${this.stderr ? `: ${this.stderr}` : ''}`,
      () => {
        if (this.proc.exitCode !== null)
          throw new Error(`child exited ${this.proc.exitCode}: ${this.stderr}`);
        return this.lines.some((l) => l.ev === 'ready');
      },
      { timeoutMs },
    );
  }

  /** Groups the child may write right now, per its last fence line. */
  writable(): Map<string, number> {
    const m = new Map<string, number>();
    for (const l of this.lines) {
      if (l.ev !== 'fence' || !l.group) continue;
      if (l.epoch === null || l.epoch === undefined) m.delete(l.group);
      else m.set(l.group, l.epoch);
    }
    return m;
  }

  signal(sig: NodeJS.Signals): void {
    this.proc.kill(sig);
  }

  async kill(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGCONT');
    this.proc.kill('SIGKILL');
    await new Promise((r) => this.proc.once('exit', r));
  }
}
