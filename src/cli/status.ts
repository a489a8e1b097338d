// `coolctl status`: the cluster at a glance — members with the config each runs, and per control
// group its leader, epoch, mode, pause, overrides, sensor verdict and whether it is driven — and
// warnings an operator must see: members running different configs, a group without a leader, a
// group led but not driven. The member list and leaders come from the node asked; each group's
// mode, driving and sensors from its leader (only the leader drives), the pause and overrides
// from the same answer (they are kept in etcd, so every node has them). A leader that does not answer
// is asked once, not once per group it leads: a node down costs one deadline, not minutes. An
// answer of the wrong shape (another service on the port, a proxy's page) is said as such, never a
// crash; a field of the wrong type in a group's answer shows as unknown.

import { shownUrl, wrongAnswer } from '../client/api-request.ts';
import type { OperatorState, UnitOverride } from '../cluster/operator-state.ts';
import { nameRacks } from '../sensors/verdict.ts';
import { apiOrigin } from '../util/api-origin.ts';
import { isRecord } from '../util/is-record.ts';
import { printable } from '../util/printable.ts';
import { withoutCredentials } from '../util/url-credentials.ts';
import { type ApiOptions, apiBase, apiCall, apiRequest } from './api-client.ts';
import { formatTable } from './cli-config.ts';

export interface StatusMember {
  node: string;
  apiUrl: string;
  startedAtMs: number;
  /** Fingerprint of its controller config and site file; null from a node that publishes none. */
  configHash: string | null;
}

export interface StatusGroup {
  id: string;
  leader: string | null;
  epoch: number | null;
  /** The control mode its leader runs (normal, degraded, blind, …); null when not driven or not known. */
  mode: string | null;
  paused: boolean;
  pauseReason: string | null;
  overrides: Record<string, UnitOverride>;
  /** The leader's sensor verdict for the group (ok, degraded, blind); null when not known. */
  sensors: string | null;
  /** Racks of the group with no good inlet sensor, as its leader sees them (each one: at most degraded). */
  uncoveredRacks: string[];
  /**
   * Set while the group keeps a worse verdict than its sensors give now, until the better one has
   * held `needS` (sensing.verdictRecoveryS): for how long it has, as its leader sees it.
   */
  recovery: { heldS: number; needS: number } | null;
  /** Whether its leader drives it; null when the leader could not be asked. */
  driven: boolean | null;
  /** Why its leader does not drive it, or why it could not be asked. */
  problem: string | null;
  /** The node whose answer this row shows. */
  from: string | null;
}

export interface StatusReport {
  node: string;
  members: StatusMember[];
  groups: StatusGroup[];
  warnings: string[];
}

export interface ClusterAnswer {
  node: string;
  members: {
    node: string;
    apiUrl: string;
    /** Where to ask the member, or why it is not asked (src/util/api-origin.ts: an origin only). */
    api: { origin: string } | { why: string };
    startedAtMs?: number;
    configHash?: string;
  }[];
  groups: { id: string; leader: string | null; epoch: number | null }[];
}

interface GroupAnswer {
  id: string;
  leader: string | null;
  epoch: number | null;
  driving: boolean;
  mode: string | null;
  problem?: string | null;
  operator: OperatorState | null;
  sensors: {
    verdict?: string;
    uncoveredRacks?: string[];
    recovery?: { heldS: number; needS: number };
  } | null;
}

/** The warnings of a report: different configs, members without a hash, groups without a leader or undriven. */
export function statusWarnings(members: StatusMember[], groups: StatusGroup[]): string[] {
  const out: string[] = [];
  const byHash = new Map<string, string[]>();
  for (const m of members) {
    if (m.configHash === null) continue;
    byHash.set(m.configHash, [...(byHash.get(m.configHash) ?? []), m.node]);
  }
  if (byHash.size > 1)
    out.push(
      `nodes run different configs: ${[...byHash].map(([h, nodes]) => `${h} on ${nodes.join(', ')}`).join('; ')} — copy the same controller config and site file to every node, then systemctl reload coolctl@NODE`,
    );
  const unknown = members.filter((m) => m.configHash === null).map((m) => m.node);
  if (unknown.length > 0 && members.length > 1)
    out.push(
      `${unknown.join(', ')} publish(es) no config hash (an older coolctl): their configs are not compared`,
    );
  for (const g of groups) {
    if (g.leader === null) out.push(`${g.id} has no leader`);
    else if (g.driven === false)
      out.push(`${g.id} is led by ${g.leader} but not driven: ${g.problem ?? 'no reason given'}`);
    else if (g.driven === null) out.push(`${g.id}: its leader ${g.leader} could not be asked (${g.problem})`);
    if (g.paused)
      out.push(
        `${g.id} is paused${g.pauseReason ? ` (${g.pauseReason})` : ''}: its units run on local control`,
      );
  }
  return out;
}

/** The members and leaders as the node at `o.api` sees them, checked (clusterAnswer). */
export async function readCluster(o: ApiOptions): Promise<ClusterAnswer> {
  return clusterAnswer(o, await apiCall<unknown>(o, 'GET', '/api/v1/cluster'));
}

/** Asks the cluster: the members and leaders from `o.api`, each group's state from its leader. */
export async function gatherStatus(o: ApiOptions, concurrency = 8): Promise<StatusReport> {
  const c = await readCluster(o);
  const members: StatusMember[] = c.members.map((m) => ({
    node: m.node,
    // A report is for printing: an address in it never holds a user name or password.
    apiUrl: withoutCredentials(m.apiUrl),
    startedAtMs: m.startedAtMs ?? 0,
    configHash: m.configHash ?? null,
  }));
  // Asked at the origin its member record names; a record that names none is not dialled (an
  // operator's token would go with the request).
  const urls = new Map(c.members.map((m) => [m.node, m.api]));
  const down = new Map<string, string>();
  const groups: StatusGroup[] = new Array(c.groups.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < c.groups.length; i = next++)
      groups[i] = await groupStatus(o, c, c.groups[i]!, urls, down);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, c.groups.length) }, worker));
  return { node: c.node, members, groups, warnings: statusWarnings(members, groups) };
}

async function groupStatus(
  o: ApiOptions,
  c: ClusterAnswer,
  g: ClusterAnswer['groups'][number],
  urls: Map<string, ClusterAnswer['members'][number]['api']>,
  /** Address → why it did not answer: it is not asked again. */
  down: Map<string, string>,
): Promise<StatusGroup> {
  const path = `/api/v1/groups/${encodeURIComponent(g.id)}`;
  const leaderApi = g.leader ? urls.get(g.leader) : undefined;
  const leaderUrl = leaderApi && 'origin' in leaderApi ? leaderApi.origin : undefined;
  let answer: GroupAnswer | undefined;
  let from: string | null = null;
  let problem: string | null = null;
  const ask = async (base: string, url: string): Promise<{ status: number; body: unknown }> => {
    const known = down.get(base);
    if (known !== undefined) throw new Error(`not asked again, as it failed for another group: ${known}`);
    try {
      return await apiRequest<unknown>(o, 'GET', url, undefined, 5_000);
    } catch (err) {
      down.set(base, (err as Error).message);
      throw err;
    }
  };
  if (leaderUrl) {
    try {
      const r = await ask(leaderUrl, `${leaderUrl}${path}`);
      if (r.status === 200) {
        answer = groupAnswer(r.body);
        from = g.leader;
      } else problem = `it answered ${r.status}`;
    } catch (err) {
      problem = (err as Error).message;
    }
  } else if (leaderApi && 'why' in leaderApi)
    problem = `not asked: the API address of ${g.leader}'s member record ${leaderApi.why}`;
  else if (g.leader) problem = `no member record for ${g.leader}`;
  if (!answer) {
    // The pause and overrides are in etcd: the node asked has them even when the leader is away.
    try {
      const r = await ask(apiBase(o), path);
      if (r.status === 200) {
        answer = groupAnswer(r.body);
        from = c.node;
      } else problem ??= `${c.node} answered ${r.status}`;
    } catch (err) {
      problem ??= (err as Error).message;
    }
  }
  const fromLeader = from !== null && from === g.leader;
  return {
    id: g.id,
    leader: g.leader,
    epoch: g.epoch,
    mode: fromLeader ? (answer?.mode ?? null) : null,
    paused: answer?.operator?.paused ?? false,
    pauseReason: answer?.operator?.paused ? (answer.operator.reason ?? null) : null,
    overrides: answer?.operator?.overrides ?? {},
    sensors: fromLeader ? (answer?.sensors?.verdict ?? null) : null,
    uncoveredRacks: fromLeader ? (answer?.sensors?.uncoveredRacks ?? []) : [],
    recovery: fromLeader ? (answer?.sensors?.recovery ?? null) : null,
    driven: fromLeader ? (answer?.driving ?? false) : g.leader === null ? false : null,
    problem: fromLeader ? (answer?.problem ?? null) : problem,
    from,
  };
}

const text = (v: unknown): string | null => (typeof v === 'string' ? v : null);

/**
 * The cluster answer, checked before a field of it is used: members and groups lists of records
 * with string names. Anything else is not a coolctl API (exit 1, naming the address).
 */
function clusterAnswer(o: ApiOptions, body: unknown): ClusterAnswer {
  const wrong = (what: string) => wrongAnswer(`${apiBase(o)}/api/v1/cluster`, what);
  if (!isRecord(body)) throw wrong('no JSON object');
  if (!Array.isArray(body.members)) throw wrong('no members list');
  if (!Array.isArray(body.groups)) throw wrong('no groups list');
  const members = body.members.map((m, i) => {
    if (!isRecord(m) || typeof m.node !== 'string' || typeof m.apiUrl !== 'string')
      throw wrong(`member ${i + 1} has no node and apiUrl`);
    return {
      node: m.node,
      apiUrl: m.apiUrl,
      api: apiOrigin(m.apiUrl),
      ...(typeof m.startedAtMs === 'number' ? { startedAtMs: m.startedAtMs } : {}),
      ...(typeof m.configHash === 'string' ? { configHash: m.configHash } : {}),
    };
  });
  const groups = body.groups.map((g, i) => {
    if (!isRecord(g) || typeof g.id !== 'string') throw wrong(`group ${i + 1} has no id`);
    return {
      id: g.id,
      leader: text(g.leader),
      epoch: typeof g.epoch === 'number' && Number.isFinite(g.epoch) ? g.epoch : null,
    };
  });
  return { node: text(body.node) ?? '(the node asked)', members, groups };
}

/** A group's answer with each field of the wrong type taken as not known. */
function groupAnswer(body: unknown): GroupAnswer {
  const b = isRecord(body) ? body : {};
  const op = isRecord(b.operator) ? b.operator : null;
  const overrides = Object.fromEntries(
    Object.entries(isRecord(op?.overrides) ? op.overrides : {})
      .filter((e): e is [string, Record<string, unknown>] => isRecord(e[1]))
      .map(([id, ov]) => [
        id,
        {
          ...(ov.toLocal === true ? { toLocal: true } : {}),
          ...(typeof ov.fanPct === 'number' ? { fanPct: ov.fanPct } : {}),
          ...(typeof ov.supplySetpointC === 'number' ? { supplySetpointC: ov.supplySetpointC } : {}),
        } as UnitOverride,
      ]),
  );
  return {
    id: text(b.id) ?? '',
    leader: text(b.leader),
    epoch: typeof b.epoch === 'number' ? b.epoch : null,
    driving: b.driving === true,
    mode: text(b.mode),
    problem: text(b.problem),
    operator: op
      ? ({ ...op, paused: op.paused === true, reason: text(op.reason), overrides } as OperatorState)
      : null,
    sensors: isRecord(b.sensors)
      ? {
          ...(text(b.sensors.verdict) ? { verdict: text(b.sensors.verdict)! } : {}),
          ...(Array.isArray(b.sensors.uncoveredRacks)
            ? { uncoveredRacks: b.sensors.uncoveredRacks.filter((r): r is string => typeof r === 'string') }
            : {}),
          ...(isRecord(b.sensors.recovery) &&
          Number.isFinite(b.sensors.recovery.heldS) &&
          Number.isFinite(b.sensors.recovery.needS)
            ? {
                recovery: {
                  heldS: b.sensors.recovery.heldS as number,
                  needS: b.sensors.recovery.needS as number,
                },
              }
            : {}),
        }
      : null,
  };
}

function overrideText(id: string, ov: UnitOverride): string {
  const parts = [
    ov.toLocal ? 'local' : '',
    ov.fanPct !== undefined ? `fan ${ov.fanPct}%` : '',
    ov.supplySetpointC !== undefined ? `sp ${ov.supplySetpointC}°C` : '',
  ].filter(Boolean);
  return `${id} ${parts.join(' ')}`;
}

/**
 * The racks nobody watches are what someone must go and look at: named beside a degraded verdict
 * (blind already says that little or nothing is seen). A verdict kept while a better one proves
 * itself says so, or an operator who fixed the rack would read it as not fixed.
 */
function sensorsCell(g: StatusGroup): string | null {
  if (g.sensors === 'degraded' && g.uncoveredRacks.length > 0)
    return `${g.sensors} (${nameRacks(g.uncoveredRacks)})`;
  if (g.sensors !== null && g.recovery)
    return `${g.sensors} (recovering: ${Math.floor(g.recovery.heldS)} s of ${g.recovery.needS} s)`;
  return g.sensors;
}

const yesNo = (b: boolean | null): string => (b === null ? '?' : b ? 'yes' : 'no');

/**
 * The table `coolctl status` prints. Every string in it came from the cluster (names, addresses, an
 * operator's pause reason, a leader's problem): the cells are escaped by formatTable, the warnings
 * here, and an address never shows a user name or password.
 */
export function formatStatus(r: StatusReport): string {
  const members = formatTable(
    ['member', 'api', 'config'],
    r.members.map((m) => [m.node, shownUrl(m.apiUrl), m.configHash ?? '(none)']),
  );
  const groups = formatTable(
    ['group', 'leader', 'epoch', 'mode', 'paused', 'sensors', 'driven', 'overrides'],
    r.groups.map((g) => [
      g.id,
      g.leader,
      g.epoch,
      g.mode,
      g.paused ? 'yes' : 'no',
      sensorsCell(g),
      yesNo(g.driven),
      Object.entries(g.overrides)
        .map(([id, ov]) => overrideText(id, ov))
        .join(', ') || '-',
    ]),
  );
  const warnings = r.warnings.length
    ? `\n\nwarnings:\n${r.warnings.map((w) => `  ! ${printable(w)}`).join('\n')}`
    : '';
  return `${members}\n\n${groups}${warnings}`;
}
