// What a rolling upgrade decides from: one snapshot of the cluster read through every member's API
// (each node knows only whether *it* leads and drives a group, so every member is asked), and a
// pure check of that snapshot with one reason per problem. A node that does not answer is a
// problem unless the step expects it to be down.
import type { ApiClient } from '../client/api-request.ts';
import { apiOrigin } from '../util/api-origin.ts';
import { withoutCredentials } from '../util/url-credentials.ts';

export interface GroupState {
  id: string;
  leader: string | null;
  epoch: number | null;
  /** This node's role in the group: follower, candidate, leader, fenced or resigned. */
  state: string;
  driving: boolean;
  problem?: string | null;
}

export interface PeerView {
  node: string;
  up: boolean;
  wire: number | null;
  release: string | null;
}

export interface MemberView {
  node: string;
  apiUrl: string;
  /** null: the node did not answer (why in `error`). */
  ready: boolean | null;
  groups: GroupState[];
  /** Its peer links (null: it runs no state cache, or did not answer). */
  peers: PeerView[] | null;
  error: string | null;
}

export interface ClusterSnapshot {
  atMs: number;
  /** Members as the first node that answered lists them (etcd's member keys). */
  members: { node: string; apiUrl: string }[];
  views: Map<string, MemberView>;
}

/** Reads the cluster through a client of the API (the CLI's: --api, token, CA). */
export class ClusterReader {
  private readonly api: ApiClient;
  private readonly timeoutMs: number;
  /** API addresses learnt from member lists: asked in turn when the first one is down. */
  private readonly known: string[] = [];

  /** `urls`: the API addresses to ask first (none: the client's own address). */
  constructor(api: ApiClient, urls: readonly string[] = [], timeoutMs = 2000) {
    this.api = api;
    this.timeoutMs = timeoutMs;
    for (const u of urls) this.known.push(u.replace(/\/+$/, ''));
  }

  private async get<T>(url: string): Promise<{ status: number; body: T }> {
    return this.api.request<T>('GET', url, undefined, this.timeoutMs);
  }

  async snapshot(): Promise<ClusterSnapshot> {
    const entries = this.known.length > 0 ? this.known : [null];
    let members: { node: string; apiUrl: string }[] | null = null;
    /** Members whose record names no origin (src/util/api-origin.ts): listed, never dialled. */
    const refused = new Map<string, string>();
    const errors: string[] = [];
    for (const base of entries) {
      try {
        const r = await this.get<{ members?: unknown[] }>(
          base ? `${base}/api/v1/cluster` : '/api/v1/cluster',
        );
        if (r.status !== 200 || !Array.isArray(r.body?.members)) throw new Error(`answered ${r.status}`);
        members = r.body.members.map((m, i) => {
          const rec = (typeof m === 'object' && m !== null ? m : {}) as { node?: unknown; apiUrl?: unknown };
          const node = typeof rec.node === 'string' ? rec.node : `(member ${i + 1} without a name)`;
          const api = apiOrigin(rec.apiUrl);
          if ('origin' in api) return { node, apiUrl: api.origin };
          refused.set(node, api.why);
          return { node, apiUrl: withoutCredentials(String(rec.apiUrl)) };
        });
        break;
      } catch (err) {
        errors.push(`${base ?? 'the API'}: ${(err as Error).message}`);
      }
    }
    if (!members) throw new Error(`no node answered: ${errors.join('; ')}`);
    for (const m of members)
      if (!refused.has(m.node) && !this.known.includes(m.apiUrl)) this.known.push(m.apiUrl);
    const views = new Map<string, MemberView>();
    await Promise.all(
      members.map(async (m) => {
        const why = refused.get(m.node);
        const view =
          why === undefined
            ? await this.member(m.node, m.apiUrl)
            : {
                ...emptyView(m.node, m.apiUrl),
                error: `not asked: the API address of its member record ${why}`,
              };
        views.set(m.node, view);
      }),
    );
    return { atMs: Date.now(), members, views };
  }

  /** One node's own view; any node, member or not (a node just started is not one yet). */
  async member(node: string, apiUrl: string): Promise<MemberView> {
    const view = emptyView(node, apiUrl);
    try {
      const [ready, cluster, cache] = await Promise.all([
        this.get<{ ready?: boolean }>(`${apiUrl}/readyz`),
        this.get<{ node?: string; groups?: GroupState[] }>(`${apiUrl}/api/v1/cluster`),
        this.get<{ enabled?: boolean; peers?: PeerView[] }>(`${apiUrl}/api/v1/cache`),
      ]);
      if (cluster.status !== 200) throw new Error(`/api/v1/cluster answered ${cluster.status}`);
      if (cluster.body.node !== node) throw new Error(`${apiUrl} is node ${cluster.body.node}, not ${node}`);
      view.ready = ready.status === 200 && ready.body.ready === true;
      view.groups = cluster.body.groups ?? [];
      view.peers = cache.status === 200 && cache.body.enabled ? (cache.body.peers ?? []) : null;
    } catch (err) {
      view.error = (err as Error).message;
    }
    return view;
  }

  /** The release a node says it runs (its API document's version). */
  async release(apiUrl: string): Promise<string | null> {
    const r = await this.get<{ info?: { version?: unknown } }>(`${apiUrl}/openapi.json`);
    return r.status === 200 && typeof r.body.info?.version === 'string' ? r.body.info.version : null;
  }
}

function emptyView(node: string, apiUrl: string): MemberView {
  return { node, apiUrl, ready: null, groups: [], peers: null, error: null };
}

/** Per group, the node that leads it (from the leader's own view), or null. */
export function leaders(
  s: ClusterSnapshot,
): Map<string, { node: string; epoch: number | null; driving: boolean }> {
  const out = new Map<string, { node: string; epoch: number | null; driving: boolean }>();
  for (const v of s.views.values())
    for (const g of v.groups)
      if (g.state === 'leader' && !out.has(g.id))
        out.set(g.id, { node: v.node, epoch: g.epoch, driving: g.driving });
  return out;
}

/** Every group id any node reports. */
export function groupIds(s: ClusterSnapshot): string[] {
  const ids = new Set<string>();
  for (const v of s.views.values()) for (const g of v.groups) ids.add(g.id);
  return [...ids].sort();
}

/**
 * Why the cluster is not fit for the next step, one reason per problem (empty: fit). Fit means:
 * every node of `nodes` but `down` is a member, answers and is ready; every group of `groups` has
 * exactly one leader, which drives it and is not `down`.
 */
export function clusterProblems(
  s: ClusterSnapshot,
  { nodes, groups, down }: { nodes: readonly string[]; groups: readonly string[]; down?: string },
): string[] {
  const problems: string[] = [];
  for (const n of nodes) {
    if (n === down) continue;
    const v = s.views.get(n);
    if (!v) problems.push(`${n} is not a member of the cluster`);
    else if (v.error !== null) problems.push(`${n} does not answer: ${v.error}`);
    else if (!v.ready) problems.push(`${n} is not ready (no live etcd lease)`);
  }
  for (const g of groups) {
    const claims = [...s.views.values()].filter((v) =>
      v.groups.some((x) => x.id === g && x.state === 'leader'),
    );
    if (claims.length === 0) {
      problems.push(`${g} has no leader`);
      continue;
    }
    if (claims.length > 1) problems.push(`${g} is claimed by ${claims.map((c) => c.node).join(' and ')}`);
    const leader = claims[0]!;
    const state = leader.groups.find((x) => x.id === g)!;
    if (leader.node === down) problems.push(`${g} is still led by ${down}`);
    else if (!state.driving)
      problems.push(
        `${g} is led by ${leader.node} but not driven${state.problem ? ` (${state.problem})` : ''}`,
      );
  }
  return problems;
}
