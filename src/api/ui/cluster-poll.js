// Reads of the cluster from this node and the members: the cluster view, each group's view from
// its leader, the live figures per node and why groups moved. Each read lands in `state`; one that
// fails is kept as an error for its section, never thrown, so the others still draw.
import { getJson, isObject, refusedText } from './api.js';
import { nodeAt, sourceOf } from './members.js';
import { mergeCluster, mergeGroupViews, mergeLive } from './merge-answers.js';
import { state } from './state.js';

/** A group's view (driving, units and their held commands) from its leader, else from this node. */
async function pollGroup(group) {
  const from = sourceOf(group);
  try {
    const r = await getJson(`${from}/api/v1/groups/${encodeURIComponent(group)}`);
    const ok = r.status === 200 && Array.isArray(r.body?.units);
    state.views.set(group, { view: ok ? r.body : null, from, error: ok ? null : refusedText(r) });
  } catch (err) {
    state.views.set(group, { view: null, from, error: `${from || 'this node'} unreachable: ${err.message}` });
  }
}

/**
 * The views of `groups` from the node at `base`, which leads them (or this node, for groups without
 * a leader): one request for all of them. The first read is whole; after it the page sends back the
 * answer's `rev` (`since`) and gets only the views that changed, plus each unit's last good write
 * in a compact form (every unit writes each period: at full size ~1/20 of the whole answer). A
 * member that answers without `rev` is read whole every time, one that refuses `since` whole at
 * once, and one of an older version still (404: no such route) is asked group by group.
 */
export async function pollGroups(base, groups) {
  const held = state.groupAnswers.get(base);
  const since = held?.rev ?? null;
  try {
    const path = `${base}/api/v1/groups`;
    let r = await getJson(since ? `${path}?since=${encodeURIComponent(since)}` : path);
    if (since && r.status === 400) r = await getJson(path);
    if (r.status === 404) {
      state.groupAnswers.delete(base);
      await Promise.all(groups.map(pollGroup));
      return;
    }
    let list = r.status === 200 && Array.isArray(r.body?.groups) ? r.body.groups : null;
    if (list && since && r.body.since === since) list = mergeGroupViews(held, r.body);
    if (list && typeof r.body.rev === 'string') state.groupAnswers.set(base, { rev: r.body.rev, list });
    else state.groupAnswers.delete(base);
    const byId = new Map((list ?? []).filter(isObject).map((v) => [v.id, v]));
    for (const group of groups) {
      const view = byId.get(group);
      const ok = Array.isArray(view?.units);
      state.views.set(group, {
        view: ok ? view : null,
        from: base,
        error: ok ? null : list ? `${nodeAt(base)} does not list it` : refusedText(r),
      });
    }
  } catch (err) {
    state.groupAnswers.delete(base);
    for (const group of groups)
      state.views.set(group, {
        view: null,
        from: base,
        error: `${base || 'this node'} unreachable: ${err.message}`,
      });
  }
}

/**
 * Racks, sensor verdicts and unit links as the node at `base` sees them. The first read is whole;
 * after it the page sends back the answer's `rev` (`since`) and gets only what changed, which it
 * merges into what it holds (at full size ~2 % of the whole answer). A member that answers without
 * `rev` (an older version) is read whole every time; one that refuses `since` (rolled back to
 * such a version) is read again whole at once.
 */
export async function pollLive(base) {
  const held = state.live.get(base);
  const since = held && !held.error && typeof held.rev === 'string' ? held.rev : null;
  try {
    const path = `${base}/api/v1/site/live`;
    let r = await getJson(since ? `${path}?since=${encodeURIComponent(since)}` : path);
    if (since && r.status === 400) r = await getJson(path);
    const ok = r.status === 200 && isObject(r.body) && !('error' in r.body);
    if (!ok) state.live.set(base, { error: refusedText(r) });
    else if (since && r.body.since === since) state.live.set(base, mergeLive(held, r.body));
    else state.live.set(base, r.body);
  } catch (err) {
    state.live.set(base, { error: `${base || 'this node'} unreachable: ${err.message}` });
  }
}

/** How long the page reads a member that refused the change-only query (an older version) whole. */
const CLUSTER_PLAIN_RETRY_MS = 60_000;

/**
 * The cluster as the node at `base` sees it, as `GET /api/v1/cluster` answers it whole ({ status,
 * body }). The page reads it from this node and from every member (for the handover column) each
 * refresh: the first read asks for the `rev` (`changes=only`), the next ones send it back (`since`)
 * and get nothing while unchanged, else only the members and groups that changed and the ids that
 * left, which it merges into what it holds. A member that refuses the query (an older version) is
 * read whole at once, and whole for a minute; one that answers without `rev` is read whole.
 */
export async function readCluster(base) {
  const path = `${base}/api/v1/cluster`;
  const held = state.clusterAnswers.get(base);
  if (held?.refusedAtMs !== undefined && Date.now() - held.refusedAtMs < CLUSTER_PLAIN_RETRY_MS)
    return getJson(path);
  const since = typeof held?.rev === 'string' ? held.rev : null;
  state.clusterAnswers.delete(base);
  let r = await getJson(
    since ? `${path}?since=${encodeURIComponent(since)}&changes=only` : `${path}?changes=only`,
  );
  if (r.status === 400) {
    state.clusterAnswers.set(base, { refusedAtMs: Date.now() });
    return getJson(path);
  }
  if (r.status !== 200 || !isObject(r.body)) return r;
  let body = since && r.body.since === since ? mergeCluster(held.body, r.body) : r.body;
  if (!body) {
    // A change-only answer the page cannot put in: read whole.
    r = await getJson(`${path}?changes=only`);
    if (r.status !== 200 || !isObject(r.body)) return r;
    body = r.body;
  }
  if (typeof r.body.rev === 'string' && Array.isArray(body.members) && Array.isArray(body.groups))
    state.clusterAnswers.set(base, { rev: r.body.rev, body });
  return { status: r.status, body };
}

/**
 * Why groups moved: each member says only what it handed on itself (its own /api/v1/cluster), so
 * the page asks every member and keeps the newest per group. A member that does not answer is
 * skipped: its alarms show elsewhere.
 */
export async function pollHandOns() {
  const views = [{ node: state.node, body: state.cluster }];
  await Promise.all(
    (state.cluster?.members ?? [])
      .filter((m) => m.node !== state.node)
      .map(async (m) => {
        try {
          const r = await readCluster(new URL(m.apiUrl).origin);
          if (r.status === 200) views.push({ node: m.node, body: r.body });
        } catch {
          // unreachable member: nothing to add
        }
      }),
  );
  const next = new Map();
  for (const { node, body } of views)
    for (const g of body?.groups ?? []) {
      const r = g.relinquished;
      if (!r?.reason || !(r.atMs > (next.get(g.id)?.atMs ?? 0))) continue;
      next.set(g.id, { node, reason: r.reason, atMs: r.atMs });
    }
  state.handOns = next;
}
