// A rolling upgrade of a running hall, on real processes (3-member etcd, the simulator's Modbus TCP
// and OPC-UA units, 3 controllers), between two builds: A is this repository, B the same source
// stating release 0.1.1-test and wire {version 2, oldest 1}. Each node has its own release root
// (releases/VERSION, `current`), as a gateway has /opt/coolctl; the hall starts a node from its
// `current`. Upgraded A→B node by node, then rolled back B→A the same way. Held to: no unit ever
// leaves remote control (the simulator's unit modes, sampled, and no unit unwritten for a watchdog
// period in the journal), no group without an accepted write for longer than one control period
// plus a stated margin, the journal's safety and liveness invariants, every node reporting the
// release it should, mixed A↔B links agreed at wire 1 and B↔B at 2. Before that, two refusals that
// touch nothing: a release with no wire version in common, and a release that cannot start (its
// node is put back on A, its `previous` as it was, and the cluster is fit again).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from '../../src/cli/api-client.ts';
import { CoolctlError } from '../../src/errors.ts';
import { ClusterReader } from '../../src/upgrade/cluster-view.ts';
import { type NodeControl, SystemdNodeControl } from '../../src/upgrade/node-control.ts';
import { ReleaseStore } from '../../src/upgrade/releases.ts';
import {
  type NodeStep,
  type RollingReport,
  rollingUpgrade,
  UpgradeFailedError,
} from '../../src/upgrade/rolling.ts';
import { VERSION, WIRE } from '../../src/version.ts';
import { Hall, settle } from '../support/hall.ts';
import type { JournalEntry } from '../support/journal-invariants.ts';
import { makeBuild } from './builds.ts';

const NODES = ['c1', 'c2', 'c3'];
const B = { version: '0.1.1-test', wire: { version: 2, oldest: 1 } };
/**
 * Beyond one control period (200 ms) a group may go without an accepted write: a graceful handover
 * (≤ 0.2 s, docs/leadership.md) lands anywhere in the old leader's period, and on this 2-core
 * machine a freshly started node's first ticks run late while it loads and compiles.
 */
const GAP_MARGIN_MS = 400;
/** How often the simulator's unit modes are sampled: a fallback lasts far longer (a watchdog period). */
const MODE_SAMPLE_MS = 200;

let tmp: string;
let hall: Hall | undefined;
let failed = false;
const stores = new Map<string, ReleaseStore>();
let reader: ClusterReader;
const logLines: string[] = [];
const logger = pino(
  { level: 'info' },
  {
    write: (s: string) => {
      logLines.push(s);
    },
  },
);

function h(): Hall {
  if (!hall) throw new Error('the hall did not start');
  return hall;
}

/** Each node's releases as on a gateway (the store under its root, here tmp/nodes/NODE); its process the hall's. */
let systemd: SystemdNodeControl;
const control: NodeControl = {
  hasRelease: (node, version, signal) => systemd.hasRelease(node, version, signal),
  activate: (node, version, previous, signal) => systemd.activate(node, version, previous, signal),
  async stop(node) {
    if (h().running(node)) await h().kill(node, 'SIGTERM');
  },
  async start(node) {
    await h().start(node);
  },
};

const wireOf = async (version: string) =>
  (
    await stores
      .get('c1')!
      .get(version)
      .catch(() => null)
  )?.manifest.wire ?? null;

/** Samples the simulator's unit modes; every sample where a unit was not under remote control. */
function watchModes(): { stop: () => Promise<string[]> } {
  const seen: string[] = [];
  let running = true;
  const done = (async () => {
    for (let i = 0; running && i < 10_000; i++) {
      const state = await fetch(`${h().simUrl}/sim/state`, { signal: AbortSignal.timeout(2000) })
        .then((r) => r.json() as Promise<{ ahus: { id: string; mode: string }[] }>)
        .catch(() => null);
      for (const a of state?.ahus ?? [])
        if (a.mode !== 'remote') seen.push(`${new Date().toISOString()} ${a.id} ${a.mode}`);
      await new Promise((r) => setTimeout(r, MODE_SAMPLE_MS));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
      return seen;
    },
  };
}

interface Gap {
  maxGapMs: number;
  atMs: number;
}

/** The hall's units, each to its group. */
function unitGroups(): Map<string, string> {
  return new Map(Object.entries(h().groups).flatMap(([g, ahus]) => ahus.map((a) => [a, g] as const)));
}

/** Longest stretch in [fromMs, toMs] without an accepted write, per key (group or unit). */
function longestGaps(
  entries: readonly JournalEntry[],
  keyOf: (e: JournalEntry) => string | null,
  keys: string[],
  fromMs: number,
  toMs: number,
) {
  const out: Record<string, Gap> = {};
  for (const k of keys) out[k] = { maxGapMs: 0, atMs: fromMs };
  const last = new Map(keys.map((k) => [k, fromMs]));
  const accepted = entries
    .filter((e) => e.accepted && e.wallMs >= fromMs && e.wallMs <= toMs)
    .sort((a, b) => a.wallMs - b.wallMs);
  const note = (k: string, atMs: number) => {
    const gap = atMs - last.get(k)!;
    if (gap > out[k]!.maxGapMs) out[k] = { maxGapMs: gap, atMs: last.get(k)! };
    last.set(k, atMs);
  };
  for (const e of accepted) {
    const k = keyOf(e);
    if (k !== null && last.has(k)) note(k, e.wallMs);
  }
  for (const k of keys) note(k, toMs);
  return out;
}

/** Runs one rolling step with the hall watched: unit modes sampled, write gaps from the journal. */
async function watched(to: { version: string; wire: { version: number; oldest: number } }) {
  const seq = await h().lastSeq();
  const modes = watchModes();
  const fromMs = Date.now();
  const steps: NodeStep[] = [];
  let report: RollingReport;
  let notRemote: string[];
  try {
    report = await rollingUpgrade({
      reader,
      control,
      to,
      wireOf,
      nodes: NODES,
      logger,
      handoverTimeoutMs: 5000,
      rejoinTimeoutMs: 60_000,
      pollMs: 100,
      onStep: (s) => steps.push(s),
    });
  } finally {
    // Stopped whether the upgrade threw or not: the sampler must not outlive the step.
    notRemote = await modes.stop();
  }
  const toMs = Date.now();
  const entries = (await h().journal(seq)).entries;
  const groupOf = unitGroups();
  const groupGaps = longestGaps(
    entries,
    (e) => groupOf.get(e.ahu) ?? null,
    Object.keys(h().groups),
    fromMs,
    toMs,
  );
  const units = [...groupOf.keys()];
  const unitGaps = longestGaps(entries, (e) => e.ahu, units, fromMs, toMs);
  return { report, steps, notRemote, groupGaps, unitGaps, fromMs, toMs };
}

function describeRun(name: string, r: Awaited<ReturnType<typeof watched>>): string {
  const steps = r.report.steps
    .map(
      (s) =>
        `${s.node} ${s.from}→${s.to}: handover ${s.handoverMs} ms (stop ${s.stopMs} ms), ready ${s.readyMs} ms, leads again ${s.rejoinMs} ms [${s.ledAfter.join(',')}], links ${s.links.map((l) => `${l.from}@w${l.wire}`).join(' ')}`,
    )
    .join('\n  ');
  const gaps = Object.entries(r.groupGaps)
    .map(([g, x]) => `${g} ${x.maxGapMs} ms`)
    .join(', ');
  const worstUnit = Object.entries(r.unitGaps).sort((a, b) => b[1].maxGapMs - a[1].maxGapMs)[0]!;
  return `${name}: ${r.report.steps.length} nodes in ${r.report.totalMs} ms\n  ${steps}\n  longest write gap per group: ${gaps}; worst unit ${worstUnit[0]} ${worstUnit[1].maxGapMs} ms\n`;
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'coolctl-upgrade-'));
  systemd = new SystemdNodeControl({ root: join(tmp, 'nodes', '{node}') });
  const a = await makeBuild(join(tmp, 'build-a'));
  const b = await makeBuild(join(tmp, 'build-b'), B);
  for (const n of NODES) {
    const store = new ReleaseStore(join(tmp, 'nodes', n));
    await store.install(a);
    await store.install(b);
    await store.activate(VERSION);
    stores.set(n, store);
  }
  hall = await Hall.start({
    name: 'upgrade',
    opcuaShare: 1 / 3,
    controllerDir: (n) => join(tmp, 'nodes', n, 'current'),
  });
  const tokenFile = join(tmp, 'token');
  await writeFile(tokenFile, `${h().apiAdmin!.token}\n`, { mode: 0o600 });
  reader = new ClusterReader(
    apiClient({ tokenFile }),
    NODES.map((n) => h().apiUrl(n)),
  );
}, 180_000);

afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail') failed = true;
});

afterAll(async () => {
  if (hall) {
    if (failed) process.stderr.write(`${await hall.logTails()}\nupgrade log:\n${logLines.join('')}`);
    await hall.stopAll({ keepDir: failed });
  }
  if (!failed && tmp) await rm(tmp, { recursive: true, force: true });
}, 60_000);

describe('rolling upgrade of a 3-node hall', () => {
  it('installs each build with its wire range and runs every node from `current`', async () => {
    const releases = await stores.get('c1')!.list();
    expect(releases.map((r) => [r.version, r.manifest.wire, r.current])).toEqual([
      [VERSION, { ...WIRE }, true],
      [B.version, B.wire, false],
    ]);
    for (const n of NODES) expect(await reader.release(h().apiUrl(n))).toBe(VERSION);
  });

  it('refuses a release with no wire version in common, touching nothing', async () => {
    const c = await makeBuild(join(tmp, 'build-c'), {
      version: '0.3.0-test',
      wire: { version: 3, oldest: 3 },
    });
    for (const n of NODES) await stores.get(n)!.install(c);
    const before = await h().waitForLeaders();
    const err = await rollingUpgrade({
      reader,
      control,
      to: { version: '0.3.0-test', wire: { version: 3, oldest: 3 } },
      wireOf,
      logger,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CoolctlError);
    expect((err as CoolctlError).code).toBe('COOLCTL_E_UPGRADE_REFUSED');
    expect((err as Error).message).toMatch(
      /c1 runs 0\.1\.0 \(wire 1\.\.1\), 0\.3\.0-test speaks 3\.\.3: no version in common/,
    );
    for (const n of NODES) expect(await stores.get(n)!.linked('current')).toBe(VERSION);
    const after = (await h().leaders()).leaders;
    for (const [g, l] of before) expect(after.get(g)).toEqual(l);
  }, 30_000);

  it('a release that cannot start: the node goes back to A and the cluster is fit again', async () => {
    const broken = await makeBuild(join(tmp, 'build-broken'), { version: '0.1.2-broken', brokenStart: true });
    for (const n of NODES) await stores.get(n)!.install(broken);
    const seq = await h().lastSeq();
    const fromMs = Date.now();
    const err = await rollingUpgrade({
      reader,
      control,
      to: { version: '0.1.2-broken', wire: { ...WIRE } },
      wireOf,
      nodes: NODES,
      logger,
      handoverTimeoutMs: 5000,
      rejoinTimeoutMs: 60_000,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpgradeFailedError);
    const f = err as UpgradeFailedError;
    expect(f.node).toBe('c1');
    expect(f.rolledBack).toBe(true);
    expect(f.message).toMatch(/c1 exited 3 on start/);
    expect(f.report.steps).toEqual([]);
    // Back as it was: on A, and `previous` (none before) not the release it failed on.
    expect(await stores.get('c1')!.linked('current')).toBe(VERSION);
    expect(await stores.get('c1')!.linked('previous')).toBeNull();
    expect(await reader.release(h().apiUrl('c1'))).toBe(VERSION);
    for (const n of ['c2', 'c3']) expect(h().running(n)).toBe(true);
    const entries = (await h().journal(seq)).entries;
    const groupOf = unitGroups();
    const gaps = longestGaps(
      entries,
      (e) => groupOf.get(e.ahu) ?? null,
      Object.keys(h().groups),
      fromMs,
      Date.now(),
    );
    process.stdout.write(`broken release: longest write gap per group ${JSON.stringify(gaps)}\n`);
    for (const [g, x] of Object.entries(gaps))
      expect(x.maxGapMs, g).toBeLessThan(h().timing.periodMs + GAP_MARGIN_MS);
    // The next test starts from an even placement: c1 takes its share back after the rebalance hold.
    await settle(h(), { even: true, timeoutMs: h().timing.rebalanceHoldMs + 30_000 });
  }, 120_000);

  for (const [name, to, wireFromOld] of [
    ['upgrade A→B', B, 1],
    ['rollback B→A', { version: VERSION, wire: { ...WIRE } }, 1],
  ] as const) {
    it(`${name}: every group driven throughout, the invariants hold, every node on the target`, async () => {
      const r = await watched(to);
      process.stdout.write(describeRun(name, r));
      expect(r.report.steps.map((s) => [s.node, s.to, s.skipped])).toEqual(
        NODES.map((n) => [n, to.version, false]),
      );
      expect(r.notRemote).toEqual([]);
      for (const [g, x] of Object.entries(r.groupGaps))
        expect(x.maxGapMs, `${g}: longest stretch without an accepted write`).toBeLessThan(
          h().timing.periodMs + GAP_MARGIN_MS,
        );
      for (const [u, x] of Object.entries(r.unitGaps))
        expect(x.maxGapMs, u).toBeLessThan(h().watchdogS * 1000);
      // The links as each node came back: from a node still on the old release at the wire both
      // speak (1), from one already on the target at the target's own (B↔B 2, A↔A 1).
      for (const [i, s] of r.steps.entries()) {
        expect(s.ledAfter.length, `${s.node} leads again`).toBeGreaterThan(0);
        for (const l of s.links) {
          const peerUpgraded = NODES.indexOf(l.from) < i;
          expect(l.release, `${l.from} → ${s.node}`).toBe(to.version);
          expect(l.wire, `${l.from} → ${s.node}`).toBe(peerUpgraded ? to.wire.version : wireFromOld);
        }
        expect(s.links.map((l) => l.from).sort()).toEqual(NODES.filter((n) => n !== s.node));
      }
      for (const n of NODES) {
        expect(await reader.release(h().apiUrl(n))).toBe(to.version);
        expect(await stores.get(n)!.linked('current')).toBe(to.version);
      }
      const report = await h().check();
      expect(report.violations.map((v) => v.message)).toEqual([]);
    }, 150_000);
  }
});
