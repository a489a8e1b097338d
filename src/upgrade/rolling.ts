// A rolling upgrade (or rollback): one node at a time, so every group always has a leader that
// drives it. Before anything: the cluster is fit (every member ready, every group led and driven)
// and the target release speaks a wire version with every release the nodes run, and every node it
// will stop has the target installed and intact (docs/upgrade.md); else nothing is touched.
// Per node: stop it gracefully (its groups move to the others at once), point it at the target,
// start it, and wait until it is ready, a member again, leads a group again (if it led any), its
// peers' links to it are up on the new release and every group is driven — then the next node.
// A node that fails its step (a start that fails, a deadline, the caller's abort) is put back as it
// was: started on the release it ran, `current` and `previous` as they were (never a `previous`
// naming the release it failed on), and the upgrade stops there with the reason. Every wait polls
// with a deadline; one log line per step.
import type { Logger } from 'pino';
import { CoolctlError, ErrorCodes, InputRefusedError } from '../errors.ts';
import { agreedWireVersion, type WireRange } from '../version.ts';
import {
  type ClusterReader,
  type ClusterSnapshot,
  clusterProblems,
  groupIds,
  leaders,
  type PeerView,
} from './cluster-view.ts';
import type { NodeControl, ReleaseLinks } from './node-control.ts';

/** How long asking a node's host whether it has the release may take (an ssh that hangs). */
const CHECK_TIMEOUT_MS = 30_000;

export interface RollingOptions {
  reader: ClusterReader;
  control: NodeControl;
  /** The release every node goes to, with the wire range its manifest states. */
  to: { version: string; wire: WireRange };
  /** The wire range of an installed release, by version (null: not known here). */
  wireOf: (version: string) => Promise<WireRange | null>;
  /** Nodes in the order to take them (default: every member, by name). */
  nodes?: string[];
  logger: Logger;
  /** Stop → every group led and driven by another node (default 10 s). */
  handoverTimeoutMs?: number;
  /** Start → ready, a member, leading again, every group driven (default 120 s: covers the rebalance hold). */
  rejoinTimeoutMs?: number;
  pollMs?: number;
  signal?: AbortSignal;
  /** Told after each node (for progress output). */
  onStep?: (step: NodeStep) => void;
}

export interface NodeStep {
  node: string;
  from: string;
  to: string;
  /** Already on the target: left alone. */
  skipped: boolean;
  /** Groups it led before it was stopped, and once it was back. */
  ledBefore: string[];
  ledAfter: string[];
  /** From the stop command: until every group was led and driven by another node. */
  handoverMs: number;
  /** From the stop command: until it returned (the process had exited). */
  stopMs: number;
  /** From the start command: until the node was ready and a member. */
  readyMs: number;
  /** From the start command: until it led a group again (if it led any) and every group was driven. */
  rejoinMs: number;
  totalMs: number;
  /** The other nodes' links to it once it was back: the agreed wire version and the release it said. */
  links: { from: string; wire: number | null; release: string | null }[];
}

export interface RollingReport {
  to: string;
  steps: NodeStep[];
  totalMs: number;
}

/** A step that failed: the node it failed on, why, and whether it is back on its old release. */
export class UpgradeFailedError extends CoolctlError {
  readonly report: RollingReport;
  readonly node: string;
  readonly rolledBack: boolean;
  constructor(
    message: string,
    o: { report: RollingReport; node: string; rolledBack: boolean; cause?: unknown },
  ) {
    super(ErrorCodes.UPGRADE_FAILED, message, { cause: o.cause });
    this.report = o.report;
    this.node = o.node;
    this.rolledBack = o.rolledBack;
  }
}

class Deadline extends Error {}

/**
 * Polls `probe` until it returns a value (not undefined) or `timeoutMs` passes; the error names
 * what was awaited and the last reason `probe` gave.
 */
async function until<T>(
  what: string,
  timeoutMs: number,
  pollMs: number,
  signal: AbortSignal | undefined,
  probe: () => Promise<{ value: T } | { waiting: string }>,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last = 'not asked yet';
  for (let i = 0; ; i++) {
    signal?.throwIfAborted();
    try {
      const r = await probe();
      if ('value' in r) return r.value;
      last = r.waiting;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() >= end || i > 100_000) throw new Deadline(`${what}: not within ${timeoutMs} ms (${last})`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

function ledBy(s: ClusterSnapshot, node: string): string[] {
  return [...leaders(s)]
    .filter(([, l]) => l.node === node)
    .map(([g]) => g)
    .sort();
}

/** The other members' links to `node`, as they report them. */
function linksTo(
  s: ClusterSnapshot,
  node: string,
): { from: string; peer: PeerView | null; known: boolean }[] {
  return [...s.views.values()]
    .filter((v) => v.node !== node && v.error === null)
    .map((v) => ({
      from: v.node,
      peer: v.peers?.find((p) => p.node === node) ?? null,
      known: v.peers !== null,
    }));
}

export async function rollingUpgrade(o: RollingOptions): Promise<RollingReport> {
  const started = Date.now();
  const poll = o.pollMs ?? 100;
  const handoverTimeoutMs = o.handoverTimeoutMs ?? 10_000;
  const rejoinTimeoutMs = o.rejoinTimeoutMs ?? 120_000;
  const log = o.logger.child({ component: 'upgrade', to: o.to.version });
  const report: RollingReport = { to: o.to.version, steps: [], totalMs: 0 };
  const signal = o.signal ?? new AbortController().signal;

  // `byInput`: refused for what it was given (the node list, a release some node lacks), not for
  // the state of the cluster.
  const refuse = (reasons: string[], byInput = false) => {
    log.warn({ reasons }, 'upgrade refused');
    const message = `upgrade to ${o.to.version} refused: ${reasons.join('; ')}`;
    return new (byInput ? InputRefusedError : CoolctlError)(ErrorCodes.UPGRADE_REFUSED, message);
  };
  const first = await o.reader.snapshot().catch((err: unknown) => {
    throw refuse([`cannot read the cluster: ${(err as Error).message}`]);
  });
  const members = first.members.map((m) => m.node).sort();
  const nodes = o.nodes ?? members;
  const groups = groupIds(first);
  const unknown = nodes.filter((n) => !members.includes(n));
  if (unknown.length > 0)
    throw refuse([`${unknown.join(', ')}: not a member (members: ${members.join(', ')})`], true);
  // A node named twice would be stopped again after its step, and "rolled back" to what it left.
  const twice = [...new Set(nodes.filter((n, i) => nodes.indexOf(n) !== i))];
  if (twice.length > 0) throw refuse([`${twice.join(', ')}: named more than once in the node list`], true);
  const problems = clusterProblems(first, { nodes: members, groups });
  if (groups.length === 0) problems.push('no node reports a control group');
  if (problems.length > 0) throw refuse(problems);

  // What each node runs, and whether the target speaks a wire version with each of them.
  const apiOf = new Map(first.members.map((m) => [m.node, m.apiUrl]));
  const running = new Map<string, string>();
  const reasons: string[] = [];
  for (const n of members) {
    const release = await o.reader.release(apiOf.get(n)!).catch(() => null);
    if (!release) {
      reasons.push(`${n} does not say which release it runs`);
      continue;
    }
    running.set(n, release);
    const wire = await o.wireOf(release);
    if (!wire) reasons.push(`${n} runs ${release}, which is not installed here: its wire range is unknown`);
    else if (agreedWireVersion(wire, o.to.wire) === null)
      reasons.push(
        `${n} runs ${release} (wire ${wire.oldest}..${wire.version}), ${o.to.version} speaks ${o.to.wire.oldest}..${o.to.wire.version}: no version in common; upgrade one release step at a time`,
      );
  }
  if (reasons.length > 0) throw refuse(reasons);

  // Every node that will be stopped has the target where it starts from, or none is stopped: found
  // missing at its turn, the node would already be down, its groups moved.
  const touched = nodes.filter((n) => running.get(n) !== o.to.version);
  const checks = await Promise.all(
    touched.map((n) =>
      o.control
        .hasRelease(n, o.to.version, AbortSignal.any([signal, AbortSignal.timeout(CHECK_TIMEOUT_MS)]))
        .then(
          (c) => (c.installed ? null : { node: n, reason: c.reason, input: true }),
          (err: unknown) => ({ node: n, reason: (err as Error).message, input: false }),
        ),
    ),
  );
  const lacking = checks.filter((c) => c !== null);
  if (lacking.length > 0)
    throw refuse(
      [
        `not installed and intact on ${lacking.map((c) => c.node).join(', ')}, so no node was stopped: ${lacking.map((c) => `${c.node}: ${c.reason}`).join('; ')}`,
      ],
      lacking.every((c) => c.input),
    );
  log.info(
    { nodes, groups: groups.length, running: Object.fromEntries(running) },
    'upgrade: cluster fit, starting',
  );

  for (const node of nodes) {
    const from = running.get(node)!;
    const step: NodeStep = {
      node,
      from,
      to: o.to.version,
      skipped: false,
      ledBefore: [],
      ledAfter: [],
      handoverMs: 0,
      stopMs: 0,
      readyMs: 0,
      rejoinMs: 0,
      totalMs: 0,
      links: [],
    };
    const t0 = Date.now();
    if (from === o.to.version) {
      step.skipped = true;
      report.steps.push(step);
      log.info({ node }, 'upgrade: node already runs the target release, left alone');
      o.onStep?.(step);
      continue;
    }
    let before: ClusterSnapshot;
    let links: ReleaseLinks;
    try {
      before = await until<ClusterSnapshot>(
        'the cluster fit before the step',
        rejoinTimeoutMs,
        poll,
        signal,
        async () => {
          const s = await o.reader.snapshot();
          const p = clusterProblems(s, { nodes: members, groups });
          return p.length === 0 ? { value: s } : { waiting: p.join('; ') };
        },
      );
      // Read again just before it is stopped: the links to put back if the step fails are the ones
      // it has now, and the release may have gone since the check above.
      const check = await o.control.hasRelease(
        node,
        o.to.version,
        AbortSignal.any([signal, AbortSignal.timeout(CHECK_TIMEOUT_MS)]),
      );
      if (!check.installed) throw new Error(`it no longer has ${o.to.version}: ${check.reason}`);
      links = check.links;
    } catch (err) {
      // Nothing was done to the node: stopping it now would take a driver from a cluster that is
      // already short of one, or stop it for a release it cannot start on. It keeps running what it ran.
      log.error({ node, err: (err as Error).message }, 'upgrade: node left running, untouched');
      throw new UpgradeFailedError(`${node} was left running ${from}, untouched: ${(err as Error).message}`, {
        report,
        node,
        rolledBack: true,
        cause: err,
      });
    }
    try {
      step.ledBefore = ledBy(before, node);
      log.info({ node, from, leads: step.ledBefore }, 'upgrade: stopping node (its groups move now)');
      const stopStarted = Date.now();
      const watch = new AbortController();
      const stopped = o.control.stop(node, signal).then(() => {
        step.stopMs = Date.now() - stopStarted;
      });
      // Watched while the stop runs: the handover happens before the process has exited.
      const handover = until<number>(
        'its groups led and driven by the others',
        handoverTimeoutMs,
        poll,
        AbortSignal.any([signal, watch.signal]),
        async () => {
          const s = await o.reader.snapshot();
          const p = clusterProblems(s, { nodes: members, groups, down: node });
          return p.length === 0 ? { value: Date.now() - stopStarted } : { waiting: p.join('; ') };
        },
      );
      try {
        step.handoverMs = (await Promise.all([handover, stopped]))[0];
      } finally {
        watch.abort();
      }
      log.info(
        { node, handoverMs: step.handoverMs, stopMs: step.stopMs },
        'upgrade: node stopped, its groups driven by the others',
      );
    } catch (err) {
      // Nothing was switched yet: the node is started again on what it ran.
      const rolledBack = await restore(o, node, from, links, members, groups, log);
      const back = rolledBack ? `started again on ${from}` : `starting it again on ${from} failed too`;
      throw new UpgradeFailedError(`${node}: ${(err as Error).message}; ${back}`, {
        report,
        node,
        rolledBack,
        cause: err,
      });
    }
    try {
      // What `activate` alone would do: `previous` → what `current` was.
      const previous = links.current === o.to.version ? links.previous : (links.current ?? links.previous);
      await o.control.activate(node, o.to.version, previous, signal);
      const startStarted = Date.now();
      await o.control.start(node, signal);
      log.info({ node, to: o.to.version }, 'upgrade: node started on the new release');
      const apiUrl = apiOf.get(node)!;
      step.readyMs = await until<number>(
        'ready and a member again',
        rejoinTimeoutMs,
        poll,
        signal,
        async () => {
          const s = await o.reader.snapshot();
          const v = s.views.get(node);
          if (!v) return { waiting: `${node} is not a member yet` };
          if (v.error !== null) return { waiting: v.error };
          return v.ready ? { value: Date.now() - startStarted } : { waiting: `${node} is not ready` };
        },
      );
      const release = await o.reader.release(apiUrl);
      if (release !== o.to.version)
        throw new Error(`it says it runs ${release ?? 'no release'}, not ${o.to.version}`);
      const back = await until<ClusterSnapshot>(
        'leading again, every group driven, links up',
        rejoinTimeoutMs,
        poll,
        signal,
        async () => {
          const s = await o.reader.snapshot();
          const p = clusterProblems(s, { nodes: members, groups });
          if (p.length > 0) return { waiting: p.join('; ') };
          if (step.ledBefore.length > 0 && ledBy(s, node).length === 0)
            return { waiting: `${node} leads no group yet` };
          const links = linksTo(s, node);
          const down = links.filter((l) => l.known && !(l.peer?.up && l.peer.release === o.to.version));
          if (down.length > 0)
            return {
              waiting: `no link from ${down.map((l) => l.from).join(', ')} to ${node} on ${o.to.version} yet`,
            };
          return { value: s };
        },
      );
      step.rejoinMs = Date.now() - startStarted;
      step.ledAfter = ledBy(back, node);
      step.links = linksTo(back, node).map((l) => ({
        from: l.from,
        wire: l.peer?.wire ?? null,
        release: l.peer?.release ?? null,
      }));
      step.totalMs = Date.now() - t0;
      report.steps.push(step);
      log.info(
        { node, readyMs: step.readyMs, rejoinMs: step.rejoinMs, leads: step.ledAfter, links: step.links },
        'upgrade: node back on the new release and leading',
      );
      o.onStep?.(step);
    } catch (err) {
      log.error({ node, err: (err as Error).message }, 'upgrade: node did not come back; rolling it back');
      const rolledBack = await restore(o, node, from, links, members, groups, log);
      throw new UpgradeFailedError(
        `${node} on ${o.to.version}: ${(err as Error).message}; ${rolledBack ? `rolled back to ${from}` : `rolling back to ${from} failed too`}`,
        { report, node, rolledBack, cause: err },
      );
    }
  }
  report.totalMs = Date.now() - started;
  log.info({ totalMs: report.totalMs, nodes: report.steps.length }, 'upgrade: done');
  return report;
}

/**
 * Puts a node back as it was before its step: `current` on `version` (the release it ran), `previous`
 * where it pointed (or none, if that is the release it just failed on), started, and waits until the
 * cluster is fit; false when it is not. Under its own deadline, not the caller's signal: an aborted
 * upgrade must not leave the node it was working on stopped or pointing at the target.
 */
async function restore(
  o: RollingOptions,
  node: string,
  version: string,
  links: ReleaseLinks,
  members: string[],
  groups: string[],
  log: Logger,
): Promise<boolean> {
  const rejoinTimeoutMs = o.rejoinTimeoutMs ?? 120_000;
  const steps = AbortSignal.timeout(rejoinTimeoutMs);
  const previous = links.previous === o.to.version ? null : links.previous;
  try {
    await o.control.stop(node, steps).catch(() => {});
    await o.control.activate(node, version, previous, steps);
    await o.control.start(node, steps);
    await until(
      'the cluster fit after the rollback',
      rejoinTimeoutMs,
      o.pollMs ?? 100,
      undefined,
      async () => {
        const p = clusterProblems(await o.reader.snapshot(), { nodes: members, groups });
        return p.length === 0 ? { value: true } : { waiting: p.join('; ') };
      },
    );
    log.warn({ node, version, previous }, 'upgrade: node rolled back and the cluster is fit');
    return true;
  } catch (err) {
    log.error({ node, version, err: (err as Error).message }, 'upgrade: rolling the node back failed');
    return false;
  }
}
