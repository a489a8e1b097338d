// Test harness for leadership against a real etcd cluster: builds EtcdLeadership nodes with test
// timing, and a FenceMonitor that samples every in-process node's fence() at one instant, every
// few ms, and records any group that two nodes could write at once (must never happen).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { EtcdLeadership, type EtcdLeadershipOptions } from '../../src/cluster/etcd/etcd-leadership.ts';
import type { RoleChange } from '../../src/cluster/leadership.ts';
import { quietLogger } from '../helpers.ts';
import { type EtcdClientSettings, type EtcdCluster, startEtcdCluster } from '../support/etcd-cluster.ts';

export const TEST_TIMING = {
  leaseTtlS: 2,
  keepaliveIntervalMs: 300,
  safetyMarginMs: 400,
  etcdCallTimeoutMs: 500,
  rebalanceHoldMs: 800,
} as const;

export async function tmpDir(name: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `coolctl-${name}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * One real etcd cluster and one tmp dir per test file, started before its tests and always removed
 * after; plain or secured as the suite's mode says (test/support/links.ts).
 */
export function useEtcdFixture(name: string): {
  etcd: EtcdCluster;
  root: { dir: string; cleanup: () => Promise<void> };
} {
  const fx = {} as { etcd: EtcdCluster; root: { dir: string; cleanup: () => Promise<void> } };
  beforeAll(async () => {
    fx.root = await tmpDir(name);
    fx.etcd = await startEtcdCluster();
  });
  afterAll(async () => {
    await fx.etcd?.stop();
    await fx.root?.cleanup();
  });
  return fx;
}

export interface RecordedChange extends RoleChange {
  node: string;
  /** performance.now() when observed. */
  atMs: number;
}

export function makeNode(
  node: string,
  /** `etcd`: the cluster's `clientOptions()` (its URLs, or proxies in front of them, and its TLS and user). */
  base: { etcd: EtcdClientSettings; prefix: string; groups: string[]; dataRoot: string },
  overrides: Partial<EtcdLeadershipOptions> = {},
  changes?: RecordedChange[],
): EtcdLeadership {
  const l = new EtcdLeadership({
    node,
    apiUrl: `http://${node}.test`,
    groups: base.groups,
    etcd: base.etcd,
    prefix: base.prefix,
    dataDir: join(base.dataRoot, node),
    logger: quietLogger,
    ...TEST_TIMING,
    ...overrides,
  });
  if (changes) l.on('role', (c: RoleChange) => changes.push({ ...c, node, atMs: performance.now() }));
  return l;
}

/** Who may write each group right now, per fence(): at most one node, ever. */
export class FenceMonitor {
  readonly violations: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly nodes: () => EtcdLeadership[];
  private readonly groups: string[];

  constructor(groups: string[], nodes: () => EtcdLeadership[]) {
    this.groups = groups;
    this.nodes = nodes;
  }

  start(everyMs = 5): void {
    this.timer = setInterval(() => this.sample(), everyMs);
  }

  sample(): void {
    const nodes = this.nodes();
    for (const g of this.groups) {
      const writers = nodes.filter((n) => n.fence(g) !== null).map((n) => n.node);
      if (writers.length > 1)
        this.violations.push(`${g}: ${writers.join(' and ')} at ${performance.now().toFixed(0)}`);
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** group → node that may write it (fence non-null), over the given nodes. */
export function writers(nodes: EtcdLeadership[], groups: string[]): Map<string, string | null> {
  const m = new Map<string, string | null>();
  for (const g of groups) m.set(g, nodes.find((n) => n.fence(g) !== null)?.node ?? null);
  return m;
}

export function counts(w: Map<string, string | null>): Map<string, number> {
  const c = new Map<string, number>();
  for (const n of w.values()) if (n) c.set(n, (c.get(n) ?? 0) + 1);
  return c;
}

/** Every group has a writer, and the writers are spread evenly over `expected` nodes (difference ≤ 1). */
export function balanced(w: Map<string, string | null>, expected: string[]): boolean {
  if ([...w.values()].some((n) => n === null || !expected.includes(n))) return false;
  const c = counts(w);
  const per = expected.map((n) => c.get(n) ?? 0);
  return Math.max(...per) - Math.min(...per) <= 1;
}
