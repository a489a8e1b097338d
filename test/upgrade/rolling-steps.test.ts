// The rolling upgrade's decisions against a modelled cluster (three nodes, three groups, each group
// led by an up node) whose nodes start from real release stores (each node's root with `current` and
// `previous`, switched by the real SystemdNodeControl, or by `coolctl release` through command
// templates): what an operator sees when the cluster is not fit before a node's turn, when the node
// list names a node twice, when a node lacks the release, and when a node does not come back on the
// new release (a failed start, a deadline, an abort) — it is put back as it was, `previous` included.
// Every snapshot the upgrade reads is also checked: no group is ever left without a driving leader by
// a step the upgrade took. The real processes' walk is test/upgrade/rolling-upgrade.test.ts.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InputRefusedError } from '../../src/errors.ts';
import type { ClusterReader, ClusterSnapshot, MemberView } from '../../src/upgrade/cluster-view.ts';
import {
  fillCommand,
  type NodeControl,
  type SystemdControlOptions,
  SystemdNodeControl,
} from '../../src/upgrade/node-control.ts';
import { ReleaseStore } from '../../src/upgrade/releases.ts';
import { rollingUpgrade, UpgradeFailedError } from '../../src/upgrade/rolling.ts';
import { REPO_ROOT } from '../support/repo.ts';

const NODES = ['c1', 'c2', 'c3'];
const GROUPS = ['g1', 'g2', 'g3'];
/** What each node ran before OLD: its `previous` when the upgrade begins. */
const BEFORE = '0.9.0';
const OLD = '1.0.0';
const NEW = '1.1.0';
const WIRE = { version: 1, oldest: 1 };

let tmp: string;
let trees: string[];
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'coolctl-rolling-steps-'));
  trees = await Promise.all([BEFORE, OLD, NEW].map((v) => tree(join(tmp, 'trees', v), v)));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A minimal release tree (what the store reads: the CLI entry and the version module). */
async function tree(dir: string, version: string): Promise<string> {
  await mkdir(join(dir, 'src'), { recursive: true });
  await writeFile(join(dir, 'src/cli.ts'), '');
  await writeFile(
    join(dir, 'src/version.ts'),
    `export const VERSION = '${version}';\nexport const WIRE = Object.freeze({ version: 1, oldest: 1 });\n`,
  );
  return dir;
}

let roots = 0;

/** Nodes that run, what each runs (what its `current` named when it started), and who leads each group. */
class Model {
  readonly up = new Set(NODES);
  readonly running = new Map(NODES.map((n) => [n, OLD]));
  /** A node started on one of these comes up but never ready (a release that fails its health check). */
  readonly unhealthy = new Set<string>();
  /** A node started on one of these exits at once (a release that cannot start on this host). */
  readonly cannotStart = new Set<string>();
  /** Told after each start (the node and the release it started on). */
  onStart: (node: string, version: string) => void = () => {};
  readonly calls: string[] = [];
  /** Groups without a driving leader in any snapshot read while no node was stopped on purpose. */
  readonly undriven: string[] = [];
  private readonly leader = new Map(GROUPS.map((g, i) => [g, NODES[i]!]));
  readonly control: NodeControl;

  /**
   * Every node's root holds BEFORE, OLD and NEW, `current` → OLD and `previous` → BEFORE; `control`
   * gives the SystemdNodeControl's commands for the roots (default: it switches them itself).
   */
  static async create(control: (root: string) => SystemdControlOptions = () => ({})): Promise<Model> {
    const root = join(tmp, `roots-${++roots}`);
    for (const n of NODES) {
      const store = new ReleaseStore(join(root, n));
      for (const t of trees) await store.install(t);
      await store.activate(BEFORE);
      await store.activate(OLD);
    }
    return new Model(root, control(root));
  }

  readonly root: string;

  private constructor(root: string, o: SystemdControlOptions) {
    this.root = root;
    const releases = new SystemdNodeControl({ root: join(root, '{node}'), ...o });
    this.control = {
      hasRelease: (node, version, signal) => releases.hasRelease(node, version, signal),
      activate: async (node, version, previous, signal) => {
        this.calls.push(`activate ${node} ${version}`);
        await releases.activate(node, version, previous, signal);
      },
      // As systemctl run by the real control: an aborted signal fails the command.
      stop: async (node, signal) => {
        signal.throwIfAborted();
        this.calls.push(`stop ${node}`);
        this.up.delete(node);
        this.rebalance();
      },
      start: async (node, signal) => {
        signal.throwIfAborted();
        this.calls.push(`start ${node}`);
        const version = (await this.store(node).linked('current'))!;
        if (this.cannotStart.has(version)) throw new Error(`${node} exited 3 on start`);
        this.up.add(node);
        this.running.set(node, version);
        this.rebalance();
        this.onStart(node, version);
      },
    };
  }

  store(node: string): ReleaseStore {
    return new ReleaseStore(join(this.root, node));
  }

  async links(node: string): Promise<[string | null, string | null]> {
    return [await this.store(node).linked('current'), await this.store(node).linked('previous')];
  }

  private healthy(n: string): boolean {
    return this.up.has(n) && !this.unhealthy.has(this.running.get(n)!);
  }

  /** A group goes back to its own node once it is healthy; one whose leader went away, to the first healthy node. */
  private rebalance(): void {
    GROUPS.forEach((g, i) => {
      if (this.healthy(NODES[i]!)) this.leader.set(g, NODES[i]!);
    });
    for (const g of GROUPS)
      if (!this.healthy(this.leader.get(g)!)) {
        const next = NODES.find((n) => this.healthy(n));
        if (next) this.leader.set(g, next);
      }
  }

  readonly reader = {
    snapshot: async (): Promise<ClusterSnapshot> => {
      this.rebalance();
      const views = new Map<string, MemberView>();
      for (const n of NODES) {
        if (!this.up.has(n)) continue;
        views.set(n, {
          node: n,
          apiUrl: `http://${n}`,
          ready: this.healthy(n),
          groups: GROUPS.map((g) => {
            const leads = this.leader.get(g) === n && this.healthy(n);
            return {
              id: g,
              leader: this.leader.get(g)!,
              epoch: 1,
              state: leads ? 'leader' : 'follower',
              driving: leads,
            };
          }),
          peers: null,
          error: null,
        });
      }
      for (const g of GROUPS) if (!this.healthy(this.leader.get(g)!)) this.undriven.push(g);
      return { atMs: Date.now(), members: NODES.map((n) => ({ node: n, apiUrl: `http://${n}` })), views };
    },
    release: async (apiUrl: string): Promise<string | null> => {
      const n = apiUrl.replace('http://', '');
      return this.up.has(n) ? this.running.get(n)! : null;
    },
  };
}

function upgrade(
  m: Model,
  o: { nodes?: string[]; onStep?: () => void; signal?: AbortSignal; rejoinTimeoutMs?: number } = {},
) {
  return rollingUpgrade({
    reader: m.reader as unknown as ClusterReader,
    control: m.control,
    to: { version: NEW, wire: WIRE },
    wireOf: async () => WIRE,
    logger: pino({ level: 'silent' }),
    handoverTimeoutMs: 1000,
    rejoinTimeoutMs: 300,
    pollMs: 10,
    ...o,
  });
}

async function failure(p: Promise<unknown>): Promise<UpgradeFailedError & { code: string }> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  if (!err) throw new Error('the upgrade went through');
  return err as UpgradeFailedError & { code: string };
}

/** c1 went to NEW, failed there, and is back exactly as it was; c2 and c3 were never touched. */
async function expectPutBack(m: Model): Promise<void> {
  expect(m.calls).toEqual([
    'stop c1',
    `activate c1 ${NEW}`,
    'start c1',
    'stop c1',
    `activate c1 ${OLD}`,
    'start c1',
  ]);
  expect([...m.running.values()]).toEqual([OLD, OLD, OLD]);
  expect([...m.up].sort()).toEqual(NODES);
  // `current` on the release it ran, `previous` where it was: a bare rollback goes where it went before.
  for (const n of NODES) expect(await m.links(n), n).toEqual([OLD, BEFORE]);
}

describe('rolling upgrade, step by step', () => {
  it('leaves a node running when the cluster is not fit before its turn, and says so', async () => {
    const m = await Model.create();
    // c3 fails on its own once c1's step is done: c2's turn finds a member that is not ready.
    const onStep = () => {
      m.unhealthy.add('crashed');
      m.running.set('c3', 'crashed');
    };
    const err = await failure(upgrade(m, { onStep }));
    expect(err).toBeInstanceOf(UpgradeFailedError);
    expect(err.code).toBe('COOLCTL_E_UPGRADE_FAILED');
    expect(err.node).toBe('c2');
    expect(err.message).toMatch(
      /^c2 was left running 1\.0\.0, untouched: the cluster fit before the step: not within 300 ms \(c3 is not ready/,
    );
    expect(err.rolledBack).toBe(true);
    // c2 kept driving: it was never stopped or re-pointed
    expect(m.calls).toEqual(['stop c1', `activate c1 ${NEW}`, 'start c1']);
    expect(m.up.has('c2')).toBe(true);
    expect(await m.links('c2')).toEqual([OLD, BEFORE]);
    expect(err.report.steps.map((s) => s.node)).toEqual(['c1']);
  });

  it('refuses a node list that names a node twice, touching nothing', async () => {
    const m = await Model.create();
    const err = await failure(upgrade(m, { nodes: ['c1', 'c2', 'c1'] }));
    expect(err.code).toBe('COOLCTL_E_UPGRADE_REFUSED');
    expect(err.message).toMatch(/c1: named more than once in the node list/);
    expect(m.calls).toEqual([]);
  });

  it('refuses up front, stopping no node, when any node it would stop lacks the release or holds it damaged', async () => {
    const m = await Model.create();
    await rm(join(m.root, 'c2/releases', NEW), { recursive: true });
    await rm(join(m.root, 'c3/releases', NEW, 'src/cli.ts'));
    const err = await failure(upgrade(m));
    expect(err).toBeInstanceOf(InputRefusedError);
    expect(err.code).toBe('COOLCTL_E_UPGRADE_REFUSED');
    // One error naming every node that lacks it, and why; c1 (which has it) was not stopped either.
    expect(err.message).toMatch(
      /^upgrade to 1\.1\.0 refused: not installed and intact on c2, c3, so no node was stopped: c2: release 1\.1\.0 is not installed under .*\/c2\/releases; c3: release 1\.1\.0 under .*\/c3\/releases is damaged: .*is not a coolctl release/,
    );
    expect(m.calls).toEqual([]);
    for (const n of NODES) expect(await m.links(n), n).toEqual([OLD, BEFORE]);
    // A node already on the target is not stopped, so it need not have it: only the nodes it touches count.
    const n = await Model.create();
    await rm(join(n.root, 'c1/releases', NEW), { recursive: true });
    await expect(upgrade(n, { nodes: ['c2', 'c3'] })).resolves.toMatchObject({ to: NEW });
  });

  it('stops at a node that fails its health check on the new release, puts it back as it was, and says why', async () => {
    const m = await Model.create();
    m.unhealthy.add(NEW);
    const err = await failure(upgrade(m));
    expect(err.code).toBe('COOLCTL_E_UPGRADE_FAILED');
    expect(err.node).toBe('c1');
    expect(err.message).toMatch(
      /^c1 on 1\.1\.0: ready and a member again: not within 300 ms \(c1 is not ready\); rolled back to 1\.0\.0$/,
    );
    expect(err.rolledBack).toBe(true);
    await expectPutBack(m);
  });

  it('puts back a node whose new release cannot start, previous as it was', async () => {
    const m = await Model.create();
    m.cannotStart.add(NEW);
    const err = await failure(upgrade(m));
    expect(err.message).toMatch(/^c1 on 1\.1\.0: c1 exited 3 on start; rolled back to 1\.0\.0$/);
    expect(err.rolledBack).toBe(true);
    await expectPutBack(m);
  });

  it('puts back the node it was working on when the upgrade is aborted mid-step', async () => {
    const m = await Model.create();
    m.unhealthy.add(NEW);
    const abort = new AbortController();
    // The operator gives up while c1 is on the new release and not ready yet.
    m.onStart = (_node, version) => {
      if (version === NEW) abort.abort();
    };
    const err = await failure(upgrade(m, { signal: abort.signal }));
    expect(err.node).toBe('c1');
    expect(err.rolledBack).toBe(true);
    expect(err.message).toMatch(/; rolled back to 1\.0\.0$/);
    await expectPutBack(m);
  });

  it('never leaves previous naming the release the node failed on, even when previous named it before', async () => {
    // An earlier rollback from NEW left previous → NEW; trying NEW again fails on c1.
    const m = await Model.create();
    for (const n of NODES) await m.store(n).activate(OLD, { previous: NEW });
    m.unhealthy.add(NEW);
    await failure(upgrade(m));
    expect(await m.links('c1')).toEqual([OLD, null]);
    expect(await m.links('c2')).toEqual([OLD, NEW]);
  });

  it('moves every node when the cluster stays fit, every group driven in every snapshot', async () => {
    const m = await Model.create();
    const report = await upgrade(m);
    expect(report.steps.map((s) => [s.node, s.from, s.to])).toEqual(NODES.map((n) => [n, OLD, NEW]));
    expect([...m.running.values()]).toEqual([NEW, NEW, NEW]);
    for (const n of NODES) expect(await m.links(n), n).toEqual([NEW, OLD]);
    expect(m.undriven).toEqual([]);
  });
});

describe('rolling upgrade through command templates (coolctl release on each node’s host)', () => {
  const cli = `'${process.execPath}' '${join(REPO_ROOT, 'src/cli.ts')}' release`;
  const templates = (root: string): SystemdControlOptions => ({
    root: '/nowhere/{node}',
    showCommand: `${cli} show {version} --root '${root}/{node}' --output json`,
    activateCommand: `${cli} activate {version} --previous {previous} --root '${root}/{node}'`,
  });

  it('checks every node, and puts a failed node back as it was, through the commands', async () => {
    const t = await Model.create(templates);
    t.unhealthy.add(NEW);
    // The put-back's commands (a process each) run within the rejoin deadline: room for a slow host.
    const err = await failure(upgrade(t, { rejoinTimeoutMs: 5000 }));
    expect(err.rolledBack).toBe(true);
    await expectPutBack(t);

    await rm(join(t.root, 'c3/releases', NEW), { recursive: true });
    const refused = await failure(upgrade(t, { rejoinTimeoutMs: 5000 }));
    expect(refused.code).toBe('COOLCTL_E_UPGRADE_REFUSED');
    expect(refused.message).toMatch(
      /not installed and intact on c3, so no node was stopped: c3: `.* release show 1\.1\.0 .*` failed: coolctl: release 1\.1\.0 is not installed/,
    );
  }, 60_000);

  it('refuses commands that could not check a node or put its previous back', () => {
    const t = templates('/r');
    expect(
      () =>
        new SystemdNodeControl({
          activateCommand: 'ssh {node} coolctl release activate {version}',
          showCommand: t.showCommand!,
        }),
    ).toThrow(/does not pass \{previous\}/);
    expect(() => new SystemdNodeControl({ activateCommand: t.activateCommand! })).toThrow(
      /needs a show command beside it/,
    );
    expect(() => new SystemdNodeControl({ showCommand: t.showCommand! })).toThrow(
      /needs an activate command/,
    );
    expect(
      fillCommand('x {version} --previous {previous}', { node: 'a', version: '1.0.0', previous: null }),
    ).toBe('x 1.0.0 --previous none');
  });
});
