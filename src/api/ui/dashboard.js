// The operator dashboard's script: no framework, no build step, nothing from the internet. Every
// POLL_MS it reads this node's API (cluster, alarms, audit), each group's view and racks from the
// group's leader, the selected trend from that group's leader and the energy report from every
// member, then redraws. Operator actions go to the group's leader; alarm actions to this node (the
// alarms are the cluster's, docs/dashboard.md). Data is only ever put into the page as text
// (textContent, attributes), never as HTML. Every status shown in colour has its text or shape.
// An answer is used only when it is a 200 of the expected shape: a failed, malformed or hostile
// answer (a peer of another version, a proxy's error page) is named in the notices, and neither it
// nor a section that cannot be drawn stops the polling or the other sections.

const POLL_MS = 1500;
const FETCH_TIMEOUT_MS = 3000;
const ACTION_TIMEOUT_MS = 15000;
const WINDOW_MS = 10 * 60_000;
const DAY_MS = 24 * 3_600_000;
/** A unit whose last good write is older than this is "not driven". */
const STALE_WRITE_MS = 10_000;
/** The 24-hour trend and the energy report change by the minute: read them this often. */
const DAY_TREND_EVERY_MS = 60_000;
const ENERGY_EVERY_MS = 15_000;
/** Until the report holds a measured hour (a page opened as the nodes start), read it this often. */
const ENERGY_EMPTY_EVERY_MS = 2_000;
const SVG = 'http://www.w3.org/2000/svg';

const state = {
  node: null,
  ready: null,
  site: null,
  cluster: null,
  /** API base ('' = this node) → its /api/v1/site/live answer (or { error }). */
  live: new Map(),
  /** group → { view, from, error } */
  views: new Map(),
  /** API base → its last /api/v1/groups answer with a `rev` ({ rev, list }): what `since` merges into. */
  groupAnswers: new Map(),
  /**
   * API base ('' = this node) → its /api/v1/cluster answer as the page holds it ({ rev, body }),
   * what `since` merges into; or { refusedAtMs }: a member of an older version refused the query.
   */
  clusterAnswers: new Map(),
  /** group → { node, reason, atMs }: the newest time any member handed it on (relinquished). */
  handOns: new Map(),
  audit: [],
  /** Entries read since the page opened that no longer fit in `audit` (older ones). */
  auditDropped: 0,
  /** Who this page is signed in as ({user, role}); null: show the sign-in form. */
  me: null,
  auditSeq: 0,
  /**
   * Entries read while their action was still running (outcome pending), by seq: when the page
   * first saw each. The node completes an entry in place (same seq), so `since` alone would never
   * bring the answer: the page asks again from the oldest of these for AUDIT_PENDING_MS.
   */
  auditPending: new Map(),
  pollError: null,
  /** This node's audit trail could not be read (why); sections that could not be drawn (why). */
  auditError: null,
  renderErrors: [],
  /** The sign-out button was pressed but the session is still open (why). */
  signOutError: null,
  /** Counts sign-outs: a poll that began in an earlier session neither keeps nor shows what it read. */
  session: 0,
  /** The command form's bounds, from the API's schema (once). */
  commandRanges: null,
  /** The cluster's alarms: { list, error }; which ones to show: 'active' | 'all'. */
  alarms: { list: [], error: null },
  alarmFilter: 'active',
  /** The rack whose sensors are shown: { id, body, from, error }. */
  rack: null,
  /** Trends: what is shown ('group:ID' | 'unit:ID'), the range, the last answer and whence. */
  trend: { subject: null, range: 'recent', body: null, from: '', error: null, readAtMs: 0, key: '' },
  /** The energy report summed over the members: { hours, days, basis, members, missing } and when read. */
  energy: null,
  energyAtMs: 0,
  /** Member origins the browser refused to connect to: not in the policy this page was served with. */
  outsidePolicy: new Set(),
};

/**
 * Lookups by id, rebuilt when what they index is read again (the site once, the cluster every
 * poll): at 1 000 units and 5 000 racks a search of the lists per rack and unit per poll is
 * millions of steps (docs/dashboard.md, "At full size").
 */
const index = {
  groups: new Map(),
  airHandlers: new Map(),
  racks: new Map(),
  /** A group view → its units by id. */
  unitsOf: new WeakMap(),
};
const unitOf = (view, ahu) => {
  let m = index.unitsOf.get(view);
  if (!m) {
    m = new Map(view.units.map((u) => [u.ahu, u]));
    index.unitsOf.set(view, m);
  }
  return m.get(ahu);
};

const $ = (id) => document.getElementById(id);

// A part that scrolls (a table wider than its half of a 1366 px screen, the energy tables) takes the
// focus, so the arrow keys scroll it: there is nothing else in it to focus.
for (const e of document.querySelectorAll('.scrolls')) e.tabIndex = 0;

/**
 * Characters that change how the text around them is drawn, or are not drawn at all: controls,
 * direction embeddings, overrides and isolates, zero-width spaces and word joiners. A name, comment
 * or message from a config, etcd or a peer that holds one would be obeyed (the words after a
 * right-to-left override read backwards) or hide in plain sight; the page writes each as its code.
 * Tabs, line ends, soft hyphens, the joiners a script needs (U+200C, U+200D) and the direction
 * marks LRM/RLM, which override nothing, are left alone.
 */
const HIDDEN_CHARS = /(?![\t\n\u00ad\u200c-\u200f])[\p{Cc}\p{Cf}]/gu;
const shown = (s) =>
  String(s).replace(
    HIDDEN_CHARS,
    (c) => `‹U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')}›`,
  );
/** At most `max` characters of a free text for a table cell: the rest is said to be there. */
const clip = (s, max = 300) =>
  s.length > max ? `${s.slice(0, max)}… (${s.length - max} more characters)` : s;
/** Sets an element's text the one way the page does: hidden characters shown. */
const setText = (e, s) => {
  e.textContent = shown(s);
};

function el(tag, attrs = {}, ...children) {
  const e = tag.startsWith('svg:')
    ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === 'text') setText(e, v);
    // What is read aloud or shown on hover is text as well; every other attribute is data.
    else e.setAttribute(k, k === 'aria-label' || k === 'title' ? shown(v) : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(typeof c === 'string' ? shown(c) : c);
  return e;
}

// The session cookie goes to every member (credentials: include; the API's CORS allows only the
// cluster's own pages), and every state-changing request carries X-Coolctl-Request, which a
// cross-site form cannot send.
async function getJson(url) {
  const r = await fetch(url, {
    signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    cache: 'no-store',
    credentials: 'include',
  });
  const body = await r.json().catch(() => null);
  if (r.status === 401 && !/^https?:/.test(url)) signedOut();
  return { status: r.status, body };
}

/** An answer came, but not one the page can use (an error status, another shape). */
class BadAnswer extends Error {}

/** Why an answer cannot be used: its status and the API's own message, for the notices. */
const refusedText = (r) =>
  `answered ${r.status}${typeof r.body?.message === 'string' ? `: ${r.body.message}` : ''}`;
const isObject = (x) => typeof x === 'object' && x !== null && !Array.isArray(x);
/** A finite number, else null: a malformed answer shows "no data", never NaN or a wrong figure. */
const num = (x) => (typeof x === 'number' && Number.isFinite(x) ? x : null);

async function postJson(url, payload, timeoutMs = ACTION_TIMEOUT_MS, method = 'POST') {
  const r = await fetch(url, {
    method,
    credentials: 'include',
    headers: { 'content-type': 'application/json', 'x-coolctl-request': 'dashboard' },
    body: JSON.stringify(payload),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const body = await r.json().catch(() => null);
  return { status: r.status, body: isObject(body) ? body : {} };
}

// ---------------------------------------------------------------- signing in

function signedOut(message) {
  state.me = null;
  state.session++;
  forgetData();
  $('main').hidden = true;
  $('skip').hidden = true;
  $('sign-in-section').hidden = false;
  $('sign-out').hidden = true;
  $('whoami').textContent = '';
  if (message) $('sign-in-result').textContent = message;
}

function signedIn(me) {
  state.me = me;
  $('sign-in-section').hidden = true;
  $('main').hidden = false;
  $('skip').hidden = false;
  $('sign-out').hidden = false;
  setText($('whoami'), `${me.user} (${me.role})`);
}

$('sign-in-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const name = $('sign-in-name').value.trim();
  const r = await postJson('/api/v1/auth/sign-in', { name, password: $('sign-in-password').value }).catch(
    (err) => ({ status: 0, body: { message: err.message } }),
  );
  $('sign-in-password').value = '';
  if (r.status !== 200) {
    setText($('sign-in-result'), `not signed in: ${r.body.message ?? r.status}`);
    return;
  }
  signedIn({ user: r.body.user, role: r.body.role });
  poll();
});

/**
 * What the signed-in operator read goes with the session: the next person at a shared console
 * signs in to an empty page, not to the last one's alarms and audit trail hidden in it.
 */
function forgetData() {
  Object.assign(state, {
    cluster: null,
    ready: null,
    live: new Map(),
    views: new Map(),
    groupAnswers: new Map(),
    clusterAnswers: new Map(),
    handOns: new Map(),
    audit: [],
    auditDropped: 0,
    auditSeq: 0,
    auditPending: new Map(),
    auditError: null,
    alarms: { list: [], error: null },
    rack: null,
    energy: null,
    energyAtMs: 0,
    pollError: null,
  });
  Object.assign(state.trend, { body: null, error: null, readAtMs: 0, key: '' });
  for (const id of ['alarms', 'groups', 'units', 'audit', 'energy-days', 'energy-hours'])
    $(id).tBodies[0].replaceChildren();
  for (const id of ['notices', 'trends', 'energy-chart', 'rack-details']) $(id).replaceChildren();
  delete $('notices').dataset.sig;
  $('rack-status').textContent = '';
  for (const id of [
    'energy-summary',
    'energy-basis',
    'trend-source',
    'action-result',
    'alarm-result',
    'audit-note',
  ])
    $(id).textContent = '';
}

$('sign-out').addEventListener('click', async () => {
  const r = await postJson('/api/v1/auth/sign-out', {}).catch((err) => ({
    status: 0,
    body: { message: err.message },
  }));
  // 401: the session had ended already. Anything else: it is still open, and the operator must know.
  if (r.status !== 200 && r.status !== 401) {
    state.signOutError = `not signed out (${r.status ? `answered ${r.status}` : 'no answer'}${r.body.message ? `: ${r.body.message}` : ''}): the session is still open; try again`;
    renderNotices();
    return;
  }
  state.signOutError = null;
  signedOut('signed out');
});

/** A figure as shown: "–" when there is none, "out of range" for one no sensor or unit gives. */
const fmt = (x, digits = 1) =>
  typeof x !== 'number' || !Number.isFinite(x)
    ? '–'
    : Math.abs(x) >= 1e6
      ? 'out of range'
      : x.toFixed(digits);
const ago = (ms) =>
  num(ms) && ms > 0 ? `${Math.max(0, Math.round((Date.now() - ms) / 1000))} s ago` : 'never';
const agoIso = (iso) => {
  const ms = Date.parse(iso);
  if (!Number.isFinite(ms)) return '–';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 120
    ? `${s} s ago`
    : s < 7200
      ? `${Math.round(s / 60)} min ago`
      : `${Math.round(s / 3600)} h ago`;
};
const hhmm = (ms) => {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
};

/** The API base of the node that leads `group` ('' for this node), or null when nobody leads it. */
function leaderBase(group) {
  const g = index.groups.get(group);
  if (!g?.leader) return null;
  if (g.leader === state.node) return '';
  const m = state.cluster.members.find((x) => x.node === g.leader);
  if (!m) return null;
  try {
    const origin = new URL(m.apiUrl).origin;
    return origin === location.origin ? '' : origin;
  } catch {
    return null;
  }
}

/** Where a group's live figures are read: its leader, else this node. */
const sourceOf = (group) => leaderBase(group) ?? '';
const nodeAt = (base) =>
  base === ''
    ? state.node
    : (state.cluster?.members.find((m) => {
        try {
          return new URL(m.apiUrl).origin === base;
        } catch {
          return false;
        }
      })?.node ?? base);

// ---------------------------------------------------------------- polling

/**
 * The manual-command form's bounds: the device contract's ranges, as the API's own request schema
 * states them (the page keeps no copy). Null until the API answers (a failed fetch is tried at the
 * next poll); the form works without them, and the API refuses a value out of range with its reason.
 */
async function loadCommandRanges() {
  const doc = (await getJson('/openapi.json')).body;
  const props =
    doc?.paths?.['/api/v1/groups/{id}/commands']?.post?.requestBody?.content?.['application/json']?.schema
      ?.properties;
  // An API without the route is not asked again every poll: the form goes without bounds.
  if (!props) return {};
  for (const [input, key] of [
    ['cmd-fan', 'fanPct'],
    ['cmd-setpoint', 'supplySetpointC'],
  ]) {
    const p = props[key];
    if (typeof p?.minimum === 'number') $(input).min = String(p.minimum);
    if (typeof p?.maximum === 'number') $(input).max = String(p.maximum);
  }
  return props;
}

async function poll() {
  const session = state.session;
  try {
    if (!state.node) state.node = (await getJson('/healthz')).body?.node ?? null;
    if (!state.me) {
      // Asked once per page load (a session cookie may be there already); then the form decides.
      if (state.askedWhoAmI) return;
      state.askedWhoAmI = true;
      const me = await getJson('/api/v1/auth/me');
      if (me.status !== 200) return signedOut();
      signedIn(me.body);
    }
    if (!state.site) {
      const s = await getJson('/api/v1/site');
      state.site =
        s.status === 200 ? s.body : { missing: true, rooms: [], racks: [], airHandlers: [], groups: [] };
      index.airHandlers = new Map(state.site.airHandlers.map((a) => [a.id, a]));
      index.racks = new Map(state.site.racks.map((r) => [r.id, r]));
      drawFloor();
    }
    if (!state.commandRanges) state.commandRanges = await loadCommandRanges();
    const [ready, cluster, audit] = await Promise.all([
      getJson('/readyz'),
      readCluster(''),
      getJson(`/api/v1/audit?since=${auditSince()}`),
      pollAlarms(),
    ]);
    state.ready = ready.body?.ready === true;
    if (
      cluster.status !== 200 ||
      !Array.isArray(cluster.body?.groups) ||
      !Array.isArray(cluster.body?.members)
    )
      throw new BadAnswer(`its cluster view ${refusedText(cluster)}`);
    state.cluster = cluster.body;
    index.groups = new Map(state.cluster.groups.map((g) => [g.id, g]));
    state.auditError = audit.status === 200 ? null : `the audit trail ${refusedText(audit)}`;
    if (audit.status === 200) mergeAudit(audit.body);
    // One read of the group views per node that leads any: each leader answers for all its groups.
    const groupsAt = new Map();
    for (const g of state.cluster.groups) {
      const base = sourceOf(g.id);
      groupsAt.set(base, [...(groupsAt.get(base) ?? []), g.id]);
    }
    const bases = new Set(['', ...groupsAt.keys()]);
    await Promise.all([
      ...[...groupsAt].map(([base, groups]) => pollGroups(base, groups)),
      ...[...bases].map(pollLive),
      pollHandOns(),
      pollTrend(),
      pollEnergy(),
      state.rack ? pollRack(state.rack.id) : null,
    ]);
    state.pollError = null;
  } catch (err) {
    state.pollError =
      err instanceof BadAnswer
        ? `this node's API: ${err.message}`
        : `this node's API did not answer: ${err.message}`;
  }
  if (state.session !== session) {
    forgetData();
    return;
  }
  render();
}

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
async function pollGroups(base, groups) {
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
 * The views held from a member with the changes of its `since` answer: changed views replace theirs
 * whole; the others take their process state (when it changed) and each unit's last good write (ms
 * before the answer's atMs, in the order of the view's units). A view the answer leaves out of both,
 * or whose write list does not fit its units, is kept as it was and the next read is whole.
 */
function mergeGroupViews(held, changes) {
  const changed = new Map(changes.groups.filter(isObject).map((v) => [v.id, v]));
  const ps = isObject(changes.processStates) ? changes.processStates : {};
  const ago = isObject(changes.lastWriteOkAgoMs) ? changes.lastWriteOkAgoMs : {};
  const atMs = num(changes.atMs);
  let whole = true;
  const list = held.list.map((v) => {
    if (!isObject(v)) return v;
    if (changed.has(v.id)) return changed.get(v.id);
    const writes = Object.hasOwn(ago, v.id) ? ago[v.id] : null;
    if (
      !Array.isArray(writes) ||
      !Array.isArray(v.units) ||
      writes.length !== v.units.length ||
      atMs === null
    ) {
      whole = false;
      return v;
    }
    // A new object per view: lookups keyed by the view (unitOf) see the new figures.
    return {
      ...v,
      ...(Object.hasOwn(ps, v.id) ? { processState: ps[v.id] } : {}),
      units: v.units.map((u, i) => ({
        ...u,
        lastWriteOkMs: num(writes[i]) === null ? null : atMs - writes[i],
      })),
    };
  });
  // A view new to the page comes whole with a new revision (the set changed): nothing to add here.
  if (!whole) changes.rev = null;
  return list;
}

/**
 * Racks, sensor verdicts and unit links as the node at `base` sees them. The first read is whole;
 * after it the page sends back the answer's `rev` (`since`) and gets only what changed, which it
 * merges into what it holds (at full size ~2 % of the whole answer). A member that answers without
 * `rev` (an older version) is read whole every time; one that refuses `since` (rolled back to
 * such a version) is read again whole at once.
 */
async function pollLive(base) {
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

/** A live answer's changes put into the one the page holds: each entry replaced, none removed. */
function mergeLive(held, changes) {
  for (const section of ['racks', 'rackTrust', 'groups', 'units']) {
    if (!isObject(changes[section])) continue;
    if (!isObject(held[section])) held[section] = {};
    // A key a JSON object may hold but an assignment would not set as its own.
    for (const [id, v] of Object.entries(changes[section])) if (id !== '__proto__') held[section][id] = v;
  }
  for (const k of ['atMs', 'node', 'rackInletsKnown', 'rev']) held[k] = changes[k];
  return held;
}

/** A group's live figures from its leader (else this node); null when that node did not answer. */
function liveOf(group) {
  const l = state.live.get(sourceOf(group));
  return l && !l.error ? l : null;
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
async function readCluster(base) {
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
 * The cluster answer held with a change-only one put in: nothing changed (no lists) is the one held;
 * else changed members and groups replace theirs by id, new ones are added (members ordered by node
 * name, as the node orders them; groups after those held, as a node adds a reloaded one), and
 * removed ids go. Null when the answer is not of that shape.
 */
function mergeCluster(held, changes) {
  if (!('members' in changes) && !('groups' in changes)) return held;
  const removed = isObject(changes.removed) ? changes.removed : null;
  if (
    !Array.isArray(changes.members) ||
    !Array.isArray(changes.groups) ||
    !removed ||
    !Array.isArray(removed.members) ||
    !Array.isArray(removed.groups)
  )
    return null;
  const members = mergeById(held.members, changes.members, removed.members, 'node');
  members.sort((x, y) => (x.node < y.node ? -1 : x.node > y.node ? 1 : 0));
  return { ...held, members, groups: mergeById(held.groups, changes.groups, removed.groups, 'id') };
}

/**
 * A list held with a change-only answer's entries put in by `key`: a removed id goes, a changed
 * entry replaces its own where it stands, a new one (or one both removed and changed: it is in the
 * answer) is added at the end; entries that are not objects are kept as they are.
 */
function mergeById(held, changed, removed, key) {
  const byId = new Map(changed.filter(isObject).map((e) => [e[key], e]));
  const gone = new Set(removed);
  const out = held
    .filter((e) => !isObject(e) || !gone.has(e[key]))
    .map((e) => (isObject(e) ? (byId.get(e[key]) ?? e) : e));
  const kept = new Set(out.filter(isObject).map((e) => e[key]));
  for (const [id, e] of byId) if (!kept.has(id)) out.push(e);
  return out;
}

/**
 * Why groups moved: each member says only what it handed on itself (its own /api/v1/cluster), so
 * the page asks every member and keeps the newest per group. A member that does not answer is
 * skipped: its alarms show elsewhere.
 */
async function pollHandOns() {
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

/** What the group's handover cell says: its leader cannot drive it, or who handed it on lately and why. */
function handoverOf(g) {
  const problem = state.views.get(g.id)?.view?.problem ?? (g.state === 'leader' ? g.problem : null);
  if (problem) return { level: 'bad', text: `${g.leader} cannot drive it: ${problem}` };
  const op = state.views.get(g.id)?.view?.operatorProblem;
  if (op)
    return {
      level: 'bad',
      text: `stored operator state invalid (${op.problem}): ${op.keptLastValid ? 'the last valid one is in force' : 'group paused until it is fixed'}`,
    };
  const h = state.handOns.get(g.id);
  if (h && Date.now() - h.atMs < WINDOW_MS)
    return { level: 'warn', text: `handed on by ${h.node} ${ago(h.atMs)}: ${h.reason}` };
  return null;
}

/** Audit entries the page keeps and lists, the newest; it says how many older ones it read and left out. */
const AUDIT_ROWS_MAX = 200;

/**
 * How long the page keeps asking for the answer of an entry it read pending. An action's answer
 * comes within its request (seconds); one still pending after this lost its node or etcd mid-action
 * and stays "no outcome recorded" (a reload asks again).
 */
const AUDIT_PENDING_MS = 60_000;

/** The `since` of the next audit read: from the oldest entry still awaiting its answer, if any. */
function auditSince() {
  const now = Date.now();
  let since = state.auditSeq;
  for (const [seq, seenMs] of state.auditPending) {
    if (now - seenMs > AUDIT_PENDING_MS) state.auditPending.delete(seq);
    else since = Math.min(since, seq - 1);
  }
  return since;
}

function mergeAudit(body) {
  if (!Array.isArray(body?.entries) || typeof body.lastSeq !== 'number') return;
  if (body.lastSeq < state.auditSeq) {
    // The node restarted: its log starts again at 1.
    state.audit = [];
    state.auditSeq = 0;
    state.auditDropped = 0;
    state.auditPending.clear();
  }
  for (const e of body.entries) {
    if (!isObject(e) || typeof e.seq !== 'number') continue;
    if (e.seq > state.auditSeq) {
      state.audit.push(e);
      if (e.outcome === 'pending') state.auditPending.set(e.seq, Date.now());
    } else if (state.auditPending.has(e.seq) && e.outcome !== 'pending') {
      // Its answer came: the same entry, completed in place.
      const i = state.audit.findIndex((x) => x.seq === e.seq);
      if (i >= 0) state.audit[i] = e;
      state.auditPending.delete(e.seq);
    }
  }
  if (state.audit.length > AUDIT_ROWS_MAX) {
    state.auditDropped += state.audit.length - AUDIT_ROWS_MAX;
    state.audit.splice(0, state.audit.length - AUDIT_ROWS_MAX);
  }
  state.auditSeq = Math.max(state.auditSeq, body.lastSeq);
}

// ---------------------------------------------------------------- alarms

const SEVERITY_MARK = { critical: '✖', major: '◆', minor: '▲', warning: '●' };
const SEVERITY_RANK = { critical: 0, major: 1, minor: 2, warning: 3 };
const ALARM_STATES = ['raised', 'acknowledged', 'cleared'];
/**
 * Rows the alarm table lists at most, the worst and newest first; the rest are counted under them.
 * An alarm storm (a hall's every rack at once) must not turn each poll into thousands of rows.
 */
const ALARM_ROWS_MAX = 200;
/** A word the API sends that the page also puts in a class: a known one, else "unknown". */
const known = (word, words) => (words.includes(word) ? word : 'unknown');

/**
 * The cluster's alarms from this node (any node answers the same: they are kept in etcd). The first
 * read is whole; after it the page sends back the answer's `rev` (`since`, `changes=only`) and gets
 * only the alarms that changed and the ids that left the list, which it merges into what it holds
 * (at full size a few KiB instead of the whole list). A node that refuses `since` (rolled back to an
 * older version) is read again whole at once.
 */
async function pollAlarms() {
  const which = state.alarmFilter === 'all' ? 'all' : 'active';
  const held = state.alarms;
  const since = !held.error && held.which === which && typeof held.rev === 'string' ? held.rev : null;
  try {
    const path = `/api/v1/alarms?state=${which}`;
    let r = await getJson(since ? `${path}&since=${encodeURIComponent(since)}&changes=only` : path);
    if (since && r.status === 400) r = await getJson(path);
    const rev = typeof r.body?.rev === 'string' ? r.body.rev : null;
    const changes = r.status === 200 && since && r.body?.since === since;
    const list = !changes
      ? r.status === 200 && Array.isArray(r.body?.alarms)
        ? r.body.alarms
        : null
      : !('alarms' in r.body) && !('removed' in r.body)
        ? held.list
        : mergeAlarms(held.list, r.body);
    state.alarms = list
      ? { list, error: null, which, rev }
      : {
          list: [],
          error: `this node's alarm API answered ${r.status}${r.body?.message ? `: ${r.body.message}` : ''}`,
        };
  } catch (err) {
    state.alarms = { list: [], error: `this node's alarm API did not answer: ${err.message}` };
  }
}

/**
 * The alarms held with a change-only answer put in: changed ones replace theirs by id (new ones are
 * added), removed ids go, and the list is ordered as the node orders a whole one (newest first, ties
 * by id). Null when the answer is not of that shape (then it is named, and the next read is whole).
 */
function mergeAlarms(held, changes) {
  const changed = changes.alarms ?? [];
  const removed = changes.removed ?? [];
  if (!Array.isArray(changed) || !Array.isArray(removed) || !changed.every(isObject)) return null;
  const merged = mergeById(held, changed, removed, 'id');
  const raisedMs = new Map(merged.map((a) => [a, Date.parse(a.raisedAt) || 0]));
  return merged.sort((a, b) => raisedMs.get(b) - raisedMs.get(a) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

async function alarmAction(id, what, payload) {
  const p = $('alarm-result');
  p.className = 'muted';
  setText(p, `${what} ${id}: sending…`);
  try {
    const r = await postJson(`/api/v1/alarms/${encodeURIComponent(id)}/${what}`, payload);
    const ok = r.status >= 200 && r.status < 300;
    p.className = ok ? 'ok' : 'bad';
    setText(
      p,
      ok
        ? `${what} ${id}: done`
        : `${what} ${id}: refused (${r.status} ${r.body.error ?? ''}: ${r.body.message ?? ''})`,
    );
  } catch (err) {
    p.className = 'bad';
    setText(p, `${what} ${id}: this node did not answer (${err.message})`);
  }
  await pollAlarms();
  renderAlarms();
}

function alarmComment() {
  const c = $('alarm-comment').value.trim();
  return c ? { comment: c } : {};
}

function setAlarmFilter(f) {
  state.alarmFilter = f;
  $('alarms-active').setAttribute('aria-pressed', String(f === 'active'));
  $('alarms-all').setAttribute('aria-pressed', String(f === 'all'));
  pollAlarms().then(renderAlarms);
}
$('alarms-active').addEventListener('click', () => setAlarmFilter('active'));
$('alarms-all').addEventListener('click', () => setAlarmFilter('all'));

function raisedText(a) {
  return a.state === 'cleared' && a.clearedAt
    ? `${agoIso(a.raisedAt)}, cleared ${agoIso(a.clearedAt)}`
    : agoIso(a.raisedAt);
}

function renderAlarms() {
  const body = $('alarms').tBodies[0];
  const raisedMs = new Map(state.alarms.list.map((a) => [a, Date.parse(a.raisedAt) || 0]));
  const all = state.alarms.list
    .slice()
    .sort(
      (a, b) =>
        (a.state === 'cleared') - (b.state === 'cleared') ||
        (SEVERITY_RANK[a.severity] ?? 9) - (SEVERITY_RANK[b.severity] ?? 9) ||
        raisedMs.get(b) - raisedMs.get(a),
    );
  const list = all.slice(0, ALARM_ROWS_MAX);
  // Rows that did not change are kept as they are (only their "ago" is rewritten): a button under
  // the pointer or the keyboard focus must not be replaced by the next poll.
  const kept = new Map(
    [...body.querySelectorAll('tr[data-alarm]')].map((tr) => [tr.getAttribute('data-alarm'), tr]),
  );
  const rows = list.map((a) => {
    const shelved = a.shelvedUntil !== null && Date.parse(a.shelvedUntil) > Date.now();
    const sig = JSON.stringify([
      a.state,
      a.severity,
      a.message,
      a.ack,
      a.clearedAt,
      shelved && a.shelvedUntil,
    ]);
    const old = kept.get(a.id);
    if (old?.getAttribute('data-sig') === sig) {
      old.querySelector('td.raised').textContent = raisedText(a);
      return old;
    }
    // One button per cell (APG grid): the arrow keys reach each, and a cell that lost its button
    // (acknowledged) keeps its place, so the focus stays in the alarm's column when it is redrawn.
    const button = (cls, text) =>
      el('button', {
        type: 'button',
        class: cls,
        text,
        tabindex: -1,
        'aria-label': `${text.toLowerCase()} ${a.message}`,
      });
    const ackCell = el(
      'td',
      { class: 'alarm-actions' },
      a.state === 'raised' ? button('ack', 'Acknowledge') : null,
    );
    const shelveCell = el(
      'td',
      { class: 'alarm-actions' },
      a.state === 'cleared' ? null : shelved ? button('unshelve', 'Unshelve') : button('shelve', 'Shelve'),
    );
    const tr = el(
      'tr',
      {
        'data-alarm': a.id,
        'data-kind': a.kind,
        'data-state': a.state,
        'data-sig': sig,
        // Only known words become classes: a severity of "sr-only" must not hide its row.
        class: `${known(a.severity, Object.keys(SEVERITY_RANK))} ${known(a.state, ALARM_STATES)}${shelved ? ' shelved' : ''}`,
      },
      el('td', {
        class: `sev ${known(a.severity, Object.keys(SEVERITY_RANK))}`,
        text: `${SEVERITY_MARK[a.severity] ?? '?'} ${a.severity}`,
      }),
      el('td', {
        class: 'alarm-state',
        text: `${a.state === 'raised' ? 'unacknowledged' : a.state}${shelved ? `, shelved until ${hhmm(Date.parse(a.shelvedUntil))}` : ''}`,
      }),
      el('td', { class: 'raised', text: raisedText(a), title: a.raisedAt }),
      el('td', { text: [a.group, a.subject].filter(Boolean).join(' / ') || 'cluster' }),
      el('td', { class: 'alarm-message', text: clip(String(a.message), 1000) }),
      el('td', {
        class: 'alarm-ack',
        text: isObject(a.ack)
          ? `by ${a.ack.user} ${agoIso(a.ack.at)}${a.ack.comment ? `: “${clip(String(a.ack.comment))}”` : ''}`
          : '–',
      }),
      ackCell,
      shelveCell,
    );
    // A cell is the grid's stop itself only where it holds no button (the button is, then).
    for (const td of tr.cells) if (!td.querySelector('button')) td.tabIndex = -1;
    tr.querySelector('button.ack')?.addEventListener('click', () => alarmAction(a.id, 'ack', alarmComment()));
    tr.querySelector('button.shelve')?.addEventListener('click', () =>
      alarmAction(a.id, 'shelve', { durationS: Number($('alarm-shelve-for').value), ...alarmComment() }),
    );
    tr.querySelector('button.unshelve')?.addEventListener('click', () => alarmAction(a.id, 'unshelve', {}));
    return tr;
  });
  const more = all.length - list.length;
  const moreText = `${more} more alarms not listed (the ${list.length} above are the worst and newest)`;
  const moreRow = body.querySelector('tr.more');
  const same =
    rows.length > 0 &&
    rows.length === kept.size &&
    rows.every((tr, i) => body.rows[i] === tr) &&
    (more > 0 ? moreRow?.textContent === moreText : !moreRow);
  const hadFocus = body.contains(document.activeElement);
  if (!same)
    body.replaceChildren(
      ...(rows.length
        ? [
            ...rows,
            more > 0
              ? el(
                  'tr',
                  { class: 'more' },
                  el('td', { colspan: 8, class: 'warn', text: moreText, tabindex: -1 }),
                )
              : null,
          ].filter(Boolean)
        : [
            el(
              'tr',
              { class: 'none' },
              el('td', {
                colspan: 8,
                tabindex: -1,
                class: state.alarms.error ? 'bad' : 'ok',
                text:
                  state.alarms.error ??
                  (state.alarmFilter === 'all' ? 'no alarms kept' : '✔ no active alarms'),
              }),
            ),
          ]),
    );
  // A row rebuilt or moved while it held the focus (its button pressed, the alarm acknowledged or
  // cleared meanwhile) gives it back to the same alarm's cell, or to the row that took its place.
  placeAlarmStop(hadFocus && !body.contains(document.activeElement));
  const open = state.alarms.list.filter((a) => a.state === 'raised');
  const badge = $('alarm-count');
  badge.hidden = state.alarms.error !== null;
  const worst = open.reduce((w, a) => Math.min(w, SEVERITY_RANK[a.severity] ?? 9), 9);
  badge.className = `badge ${open.length === 0 ? 'ok' : worst <= 1 ? 'bad' : 'warn'}`;
  badge.textContent =
    open.length === 0
      ? '✔ no unacknowledged alarms'
      : `${open.length} unacknowledged alarm${open.length > 1 ? 's' : ''}`;
}

/**
 * The alarm table is a WAI-ARIA grid (APG "data grid"): the whole table is one Tab stop, so the
 * 200 rows' buttons do not stand between the keyboard and the rest of the page. The stop is one
 * cell, or the button in it (tabindex 0; every other cell and button -1); the arrow keys, Home/End
 * (a row's ends), Ctrl+Home/End (first/last row) and Page Up/Down (ten rows) move it. It is kept
 * by alarm id and column across redraws; an alarm gone from the list leaves it on the row that
 * took its place. `col` is the column asked for: a row of one cell ("no active alarms") does not
 * forget it.
 */
const alarmStop = { key: null, row: 0, col: 0 };
const ALARM_PAGE_ROWS = 10;

const rowKey = (tr) => tr.getAttribute('data-alarm') ?? `.${tr.className}`;
/** A cell's focusable: its button, else the cell. */
const stopIn = (td) => td.querySelector('button') ?? td;

/** The cell the stop is on now (row found by alarm, else by place; column clamped to the row). */
function alarmStopCell() {
  const rows = $('alarms').tBodies[0].rows;
  if (rows.length === 0) return null;
  const byKey = [...rows].find((tr) => rowKey(tr) === alarmStop.key);
  const tr = byKey ?? rows[Math.min(alarmStop.row, rows.length - 1)];
  return tr.cells[Math.min(alarmStop.col, tr.cells.length - 1)] ?? null;
}

/** Puts the grid's one Tab stop where `alarmStop` says, and the focus there when `focus`. */
function placeAlarmStop(focus) {
  const td = alarmStopCell();
  if (!td) return;
  const stop = stopIn(td);
  for (const e of $('alarms').tBodies[0].querySelectorAll('[tabindex="0"]')) if (e !== stop) e.tabIndex = -1;
  stop.tabIndex = 0;
  alarmStop.key = rowKey(td.parentElement);
  alarmStop.row = td.parentElement.sectionRowIndex;
  if (focus) stop.focus();
}

$('alarms').tBodies[0].addEventListener('keydown', (ev) => {
  const td = ev.target.closest('td');
  if (!td || ev.altKey || ev.metaKey) return;
  const rows = $('alarms').tBodies[0].rows;
  const r = td.parentElement.sectionRowIndex;
  const c = td.cellIndex;
  const last = rows.length - 1;
  const move = {
    ArrowDown: [Math.min(last, r + 1), alarmStop.col],
    ArrowUp: [Math.max(0, r - 1), alarmStop.col],
    ArrowRight: [r, c + 1],
    ArrowLeft: [r, Math.max(0, c - 1)],
    PageDown: [Math.min(last, r + ALARM_PAGE_ROWS), alarmStop.col],
    PageUp: [Math.max(0, r - ALARM_PAGE_ROWS), alarmStop.col],
    Home: ev.ctrlKey ? [0, 0] : [r, 0],
    End: ev.ctrlKey ? [last, Number.MAX_SAFE_INTEGER] : [r, Number.MAX_SAFE_INTEGER],
  }[ev.key];
  if (!move || (ev.ctrlKey && ev.key !== 'Home' && ev.key !== 'End')) return;
  ev.preventDefault();
  const [row, col] = move;
  alarmStop.key = rowKey(rows[row]);
  alarmStop.row = row;
  // Right past a row's last cell stays there (no wrap, as the APG grid).
  alarmStop.col = Math.min(col, rows[row].cells.length - 1);
  if (ev.key === 'ArrowUp' || ev.key === 'ArrowDown' || ev.key.startsWith('Page')) alarmStop.col = col;
  placeAlarmStop(true);
});

// A click (or any focus) on a cell or button makes it the stop: Tab out and back returns there.
$('alarms').tBodies[0].addEventListener('focusin', (ev) => {
  const td = ev.target.closest('td');
  if (!td) return;
  alarmStop.key = rowKey(td.parentElement);
  alarmStop.row = td.parentElement.sectionRowIndex;
  alarmStop.col = td.cellIndex;
  placeAlarmStop(false);
});

// Skip links move the focus to the section's heading: a screen reader reads where it landed, and
// the next Tab goes on from there (a fragment alone moves neither focus nor reading point for all).
$('skip').addEventListener('click', (ev) => {
  const a = ev.target.closest('a[href^="#"]');
  const section = a && document.getElementById(a.getAttribute('href').slice(1));
  const heading = section?.querySelector('h2');
  if (!heading) return;
  ev.preventDefault();
  heading.tabIndex = -1;
  heading.focus();
  section.scrollIntoView({ block: 'start' });
});

/** What only this browser knows: an API it could not read. These are no alarms (the cluster keeps those). */
function renderNotices() {
  const out = [];
  if (state.signOutError) out.push(state.signOutError);
  if (state.pollError) out.push(state.pollError);
  if (state.auditError) out.push(`this node's API: ${state.auditError}`);
  out.push(...(state.renderErrors ?? []));
  if (state.ready === false)
    out.push(`${state.node}: not ready (no live etcd lease): it cannot lead any group`);
  for (const g of state.cluster?.groups ?? []) {
    const v = state.views.get(g.id);
    if (g.leader && v?.error)
      out.push(`${g.id}: cannot read the group from its leader ${g.leader}: ${v.error}`);
  }
  for (const [base, l] of state.live) if (l.error) out.push(`live figures of ${nodeAt(base)}: ${l.error}`);
  const outside = [...state.outsidePolicy].filter(isMemberOrigin).map(nodeAt);
  const reload = outside.length
    ? `${outside.join(', ')} joined the cluster after this page was loaded, and the page may reach only the members it was loaded with: reload it`
    : null;
  // A live region: redrawn only when its words change, so a screen reader says each notice once.
  const sig = [reload, ...out].join('\n');
  if ($('notices').dataset.sig === sig) return;
  $('notices').dataset.sig = sig;
  $('notices').replaceChildren(
    ...(reload
      ? [
          el(
            'li',
            { class: 'bad', id: 'reload-needed' },
            `⚠ ${reload} `,
            el('button', { type: 'button', id: 'reload-page', text: 'Reload' }),
          ),
        ]
      : []),
    ...out.map((t) => el('li', { class: 'bad', text: `⚠ ${t}` })),
  );
}

$('notices').addEventListener('click', (ev) => {
  if (ev.target.id === 'reload-page') location.reload();
});

// The page's Content-Security-Policy lets it connect to this node and to the members the node knew
// when it served the page (src/api/dashboard.ts). The browser refuses a member that joined since (or
// moved its API) and says so here: the operator is told to reload rather than left with "Failed to
// fetch". A refused address that is no member's is no reason to reload, and is not shown.
document.addEventListener('securitypolicyviolation', (ev) => {
  if (ev.effectiveDirective !== 'connect-src') return;
  const origin = originOf(ev.blockedURI);
  if (!origin || origin === location.origin || !isMemberOrigin(origin) || state.outsidePolicy.has(origin))
    return;
  state.outsidePolicy.add(origin);
  renderNotices();
});

// ---------------------------------------------------------------- floor map

/**
 * The fixed inlet scale (ASHRAE A1): blue below 18 °C, green→yellow up to the recommended 27 °C,
 * orange up to the allowable 32 °C, red→dark red to 35 °C and above. The bands jump at 27 and 32
 * so a limit crossed shows as a change of colour, and each has its mark (RACK_MARK) beside it.
 */
const SCALE_LO_C = 18;
const SCALE_HI_C = 35;
const BANDS = [
  { from: 18, to: 27, c0: [67, 160, 71], c1: [253, 216, 53] },
  { from: 27, to: 32, c0: [251, 140, 0], c1: [230, 81, 0] },
  { from: 32, to: 35, c0: [211, 47, 47], c1: [127, 0, 0] },
];
const COLD = 'rgb(100, 181, 246)';
const NO_DATA = '#cfd8dc';

function inletColour(c) {
  if (typeof c !== 'number') return NO_DATA;
  if (c < SCALE_LO_C) return COLD;
  const b = BANDS.find((x) => c < x.to) ?? BANDS[BANDS.length - 1];
  const k = Math.min(1, (c - b.from) / (b.to - b.from));
  const ch = (i) => Math.round(b.c0[i] + k * (b.c1[i] - b.c0[i]));
  return `rgb(${ch(0)}, ${ch(1)}, ${ch(2)})`;
}

/** WCAG relative luminance of an `rgb(r, g, b)` or `#rrggbb` colour. */
function luminance(colour) {
  const hex = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(colour);
  const rgb = hex
    ? hex.slice(1).map((h) => Number.parseInt(h, 16))
    : (colour.match(/\d+/g) ?? []).map(Number);
  const lin = (v) => (v / 255 <= 0.04045 ? v / 255 / 12.92 : ((v / 255 + 0.055) / 1.055) ** 2.4);
  const [r, g, b] = rgb.map(lin);
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/**
 * White text where it reads better than black on `fill`: the scale runs from light yellow to dark
 * red, and a fixed text colour falls under 4.5:1 somewhere on it.
 */
const lightTextOn = (fill) => {
  const l = luminance(fill);
  return 1.05 / (l + 0.05) > (l + 0.05) / 0.05;
};

/**
 * An inlet as the page shows it (0.1 °C): its level and colour are judged on that, so a rack at
 * 27.04 °C reads "27.0" in range, never "27.0 ▲ above the 27 °C limit".
 */
const shownC = (c) => (typeof c === 'number' && Number.isFinite(c) ? Number(c.toFixed(1)) : c);

/** A rack's level against the scale, with the mark and words shown beside its colour. */
function inletLevel(raw) {
  const c = shownC(raw);
  if (typeof c !== 'number') return { level: 'none', mark: '?', words: 'no data' };
  if (c > 32) return { level: 'crit', mark: '✖', words: 'above the 32 °C allowable limit' };
  if (c > 27) return { level: 'warn', mark: '▲', words: 'above the 27 °C recommended limit' };
  if (c < 18) return { level: 'cold', mark: '▼', words: 'below the 18 °C recommended range' };
  return { level: 'ok', mark: '', words: 'in the recommended range' };
}

/**
 * A hottest good inlet in words, one way everywhere (rack panel, group table): "28.4 °C ▲ (above the
 * 27 °C recommended limit)", or "no data" alone — the level's words already say it, never twice.
 */
function inletWords(c) {
  const lv = inletLevel(c);
  if (lv.level === 'none') return lv.words;
  return `${fmt(c)} °C${lv.mark ? ` ${lv.mark}` : ''} (${lv.words})`;
}

/** Room placement: rooms side by side, 1 m apart; a room deeper than wide is turned a quarter so the page's width holds its length. */
function layout(site) {
  const rooms = new Map();
  let x = 0.5;
  let depth = 0;
  for (const r of site.rooms) {
    const turned = r.depthM > r.widthM;
    const w = turned ? r.depthM : r.widthM;
    const d = turned ? r.widthM : r.depthM;
    rooms.set(r.id, { ...r, x0: x, turned, w, d });
    x += w + 1;
    depth = Math.max(depth, d);
  }
  const at = (room, xM, yM) => {
    const r = rooms.get(room);
    if (!r) return [0, 0];
    return r.turned ? [r.x0 + yM, 0.9 + (r.widthM - xM)] : [r.x0 + xM, 0.9 + yM];
  };
  return { rooms, at, width: x - 0.5, height: depth + 1.3 };
}

/**
 * What the map draws of a rack and a unit (m, as drawn: a turned room's racks lie across). The site
 * gives only a position (a rack's centre, a unit's place, anywhere from wall to wall); the drawing
 * gives the footprint, so the drawing keeps the footprint inside the room (boxInRoom).
 */
const RACK_DRAWN_M = { long: 1, short: 0.56 };
const UNIT_DRAWN_M = { w: 2.4, h: 1 };
/**
 * How far a drawn box stays off its room's walls (m): half the focus frame's stroke (0.12, CSS)
 * and half the wall's (0.05), so a focused item against a wall is framed inside the room.
 */
const WALL_INSET_M = 0.1;

/**
 * Where a box of `size` is centred on one axis of a room spanning `from`…`to` (map coordinates),
 * for an item at `p`: where it is, except within a box's half-size of the room's inner limit
 * (`lo`, `hi`: the box touching the wall), where positions from the wall on are eased into that
 * band. So an item against a wall is drawn touching it from inside, and two items near one wall
 * stay apart in the order they stand (a plain clamp would stack them, and the arrow keys, which
 * go by drawn centres, would skip all but one).
 */
function centreInRoom(p, from, to, size, inset) {
  const lo = from + inset + size / 2;
  const hi = to - inset - size / 2;
  if (hi <= lo) return (from + to) / 2;
  const q = Math.min(to, Math.max(from, p));
  const band = Math.min(size / 2, (hi - lo) / 2);
  if (q < lo + band) return lo + (band * (q - from)) / (lo + band - from);
  if (q > hi - band) return hi - (band * (to - q)) / (to - hi + band);
  return q;
}

/**
 * A `w` × `h` box for an item at (px, py) inside `room` (centreInRoom on each axis): never across
 * a wall. A room smaller than the box gets the box shrunk to fit, marked `cramped` (its labels
 * then hidden).
 */
function boxInRoom(room, px, py, w, h) {
  const inset = Math.min(WALL_INSET_M, room.w / 4, room.d / 4);
  const fw = Math.min(w, room.w - 2 * inset);
  const fh = Math.min(h, room.d - 2 * inset);
  const cx = centreInRoom(px, room.x0, room.x0 + room.w, fw, inset);
  const cy = centreInRoom(py, 0.9, 0.9 + room.d, fh, inset);
  return { x: cx - fw / 2, y: cy - fh / 2, w: fw, h: fh, cx, cy, cramped: fw < w || fh < h };
}

/**
 * Label widths without a layout per label: each character's advance, measured once per drawing
 * for each kind of label (its font as the CSS sets it), summed. 6 000 labels measured one by one
 * would force the browser to lay the map out for each; a sum is arithmetic. A label wider than its
 * box is squeezed to the box (textLength), so no id, value, mark or state runs across a wall.
 */
const LABEL_KINDS = [
  ['rack', 'rack-id'],
  ['rack', 'rack-temp'],
  ['rack narrow', 'rack-temp'],
  ['ahu', 'ahu-id'],
  ['ahu', 'ahu-state'],
];
/** Every character a label can hold (ids: letters, digits, _ . -; values, marks and states). */
const LABEL_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-–?…,;:()/% ●▲▼✖◐▽○';
/** Kerning and hinting at small sizes move an advance by a few %: widths are taken this much larger. */
const LABEL_WIDTH_MARGIN = 1.06;
let labelAdvance = new Map();

function measureLabelChars(svg) {
  const probes = LABEL_KINDS.map(([gClass, tClass]) => {
    const t = el('svg:text', { class: tClass, text: LABEL_CHARS });
    const g = el('svg:g', { class: gClass, visibility: 'hidden', 'aria-hidden': 'true' }, t);
    svg.append(g);
    return { key: `${gClass}|${tClass}`, g, t };
  });
  labelAdvance = new Map();
  for (const { key, g, t } of probes) {
    const per = new Map();
    // Not laid out (the map hidden): no advances, and labelWidth takes the font size per character.
    if (t.getNumberOfChars() === LABEL_CHARS.length && t.getComputedTextLength() > 0)
      for (const [i, ch] of [...LABEL_CHARS].entries()) per.set(ch, t.getSubStringLength(i, 1));
    per.set('em', Number.parseFloat(getComputedStyle(t).fontSize) || 0.34);
    labelAdvance.set(key, per);
    g.remove();
  }
}

/** A label's width as drawn (m), never less than it is: an unknown character counts one em. */
function labelWidth(key, text) {
  const per = labelAdvance.get(key);
  if (!per) return 0;
  let w = 0;
  for (const ch of text.trim()) w += per.get(ch) ?? per.get('em');
  return w * LABEL_WIDTH_MARGIN;
}

/** Writes `text` into label `t` of kind `key`, squeezed to `roomM` when it is wider. */
function setLabel(t, key, raw, roomM) {
  const text = shown(raw);
  if (t.textContent !== text) t.textContent = text;
  if (labelWidth(key, text) > roomM) {
    t.setAttribute('textLength', String(Number(roomM.toFixed(3))));
    t.setAttribute('lengthAdjust', 'spacingAndGlyphs');
  } else if (t.hasAttribute('textLength')) {
    t.removeAttribute('textLength');
    t.removeAttribute('lengthAdjust');
  }
}
/** A label's room in its box (m): the box less a little on each side. */
const labelRoomM = (box) => Math.max(0, box.w - 0.08);

/**
 * The map's racks and units as drawn: element, id, group, centre (m, map coordinates) and what it
 * last showed (`sig`). A poll rewrites only the items whose figures changed: at 5 000 racks and
 * 1 000 units, rewriting all of them every 1.5 s kept the browser's main thread busy (and the
 * screen reader's tree churning) for nothing.
 */
const floorItems = { racks: [], ahus: [], geo: null };
/** A drawn rack's or unit's element → its entry in `floorItems` (for the map's one key handler). */
let itemOfG = new WeakMap();

function drawFloor() {
  const site = state.site;
  const host = $('floor');
  host.replaceChildren();
  floorItems.racks = [];
  floorItems.ahus = [];
  itemOfG = new WeakMap();
  if (site.missing) {
    host.append(el('p', { class: 'muted', text: 'This node was started without a site model.' }));
    return;
  }
  setText($('site-name'), site.name);
  const geo = layout(site);
  floorItems.geo = geo;
  const svg = el('svg:svg', {
    viewBox: `0 0 ${geo.width} ${geo.height}`,
    role: 'group',
    'aria-label': `floor map of ${site.name}: racks coloured by inlet temperature`,
    'aria-describedby': 'floor-keys',
  });
  for (const r of geo.rooms.values()) {
    svg.append(el('svg:rect', { class: 'room', x: r.x0, y: 0.9, width: r.w, height: r.d }));
    svg.append(
      el('svg:text', {
        class: 'room-name',
        x: r.x0 + 0.1,
        y: 0.7,
        text: `${r.name}${r.turned ? ' (turned a quarter: its length runs across)' : ''}`,
      }),
    );
  }
  measureLabelChars(svg);
  // The rules refuse an item in no room; were one drawn, it would stay inside the hall.
  const hall = { x0: 0.5, w: Math.max(0.1, geo.width - 1), d: geo.height - 1.3 };
  for (const k of site.racks) {
    const room = geo.rooms.get(k.room);
    const [px, py] = geo.at(k.room, k.xM, k.yM);
    const { long, short } = RACK_DRAWN_M;
    const box = boxInRoom(room ?? hall, px, py, room?.turned ? long : short, room?.turned ? short : long);
    const { cx, cy, w, h } = box;
    const g = el('svg:g', {
      // A rack drawn upright is narrow: its value goes in a smaller font.
      class: `${room?.turned ? 'rack' : 'rack narrow'}${box.cramped ? ' cramped' : ''}`,
      'data-id': k.id,
      'data-group': k.group ?? '',
      'data-level': 'none',
      // One Tab stop for the whole map (see placeMapStop): every item but the stop is -1.
      tabindex: -1,
      role: 'button',
      'aria-label': `${k.id}: no data`,
    });
    const id = el('svg:text', { class: 'rack-id', x: cx, y: cy - h / 2 + 0.17 });
    const temp = el('svg:text', { class: 'rack-temp', x: cx, y: cy + h / 2 - 0.08 });
    const tempKey = room?.turned ? 'rack|rack-temp' : 'rack narrow|rack-temp';
    setLabel(id, 'rack|rack-id', k.id, labelRoomM(box));
    setLabel(temp, tempKey, '?', labelRoomM(box));
    g.append(
      el('svg:rect', { class: 'rack-box', x: box.x, y: box.y, width: w, height: h, fill: NO_DATA }),
      id,
      temp,
      el('svg:title', { text: `${k.id}: no data` }),
    );
    // Its centre as drawn: the arrow keys go by what the operator sees.
    const rack = { kind: 'rack', g, id: k.id, group: k.group ?? '', x: cx, y: cy, sig: null, box, tempKey };
    floorItems.racks.push(rack);
    itemOfG.set(g, rack);
    g.addEventListener('click', () => selectRack(k.id));
    g.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        selectRack(k.id);
      }
    });
    svg.append(g);
  }
  for (const a of site.airHandlers) {
    const [px, py] = geo.at(a.room, a.xM, a.yM);
    const box = boxInRoom(geo.rooms.get(a.room) ?? hall, px, py, UNIT_DRAWN_M.w, UNIT_DRAWN_M.h);
    const { cx, cy } = box;
    const g = el('svg:g', {
      class: box.cramped ? 'ahu cramped' : 'ahu',
      'data-id': a.id,
      'data-group': a.group ?? '',
      tabindex: -1,
      role: 'button',
      'aria-label': `${a.id}: show its trend`,
    });
    const id = el('svg:text', { class: 'ahu-id', x: cx, y: cy - 0.1 });
    const stateText = el('svg:text', { class: 'ahu-state', x: cx, y: cy + 0.32 });
    setLabel(id, 'ahu|ahu-id', a.id, labelRoomM(box));
    setLabel(stateText, 'ahu|ahu-state', '…', labelRoomM(box));
    g.append(
      el('svg:rect', { class: 'ahu-box', x: box.x, y: box.y, width: box.w, height: box.h, fill: '#eceff1' }),
      id,
      stateText,
      el('svg:title', { text: `${a.id} (${a.protocol}, ${a.capacityKw} kW, ${a.group ?? 'no group'})` }),
    );
    const unit = { kind: 'ahu', g, id: a.id, group: a.group ?? '', x: cx, y: cy, sig: null, box };
    floorItems.ahus.push(unit);
    itemOfG.set(g, unit);
    const show = () => {
      setTrendSubject(`unit:${a.id}`);
      $('trends-section').scrollIntoView({ block: 'nearest' });
    };
    g.addEventListener('click', show);
    g.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        show();
      }
    });
    svg.append(g);
  }
  host.append(svg);
  fitRoomNames(svg, geo);
  drawLegend();
  applyFind();
}

/**
 * A room's name is drawn within its room: a long one (names are free text) is cut with "…" and
 * the whole name is its tooltip, instead of running across the rooms beside it.
 */
function fitRoomNames(svg, geo) {
  const names = svg.querySelectorAll('text.room-name');
  [...geo.rooms.values()].forEach((r, i) => {
    const t = names[i];
    const full = t?.textContent ?? '';
    const room = r.w - 0.2;
    // No layout yet (the map hidden): nothing to measure, and nothing is drawn over anything.
    if (!t || t.getComputedTextLength() <= room) return;
    let lo = 0;
    let hi = full.length;
    // Bounded: a binary search over the name's length, about 20 steps for a million characters.
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      t.textContent = `${full.slice(0, mid)}…`;
      if (t.getComputedTextLength() <= room) lo = mid;
      else hi = mid - 1;
    }
    t.textContent = `${full.slice(0, lo)}…`;
    t.append(el('svg:title', { text: full }));
  });
}

/** The colour scale as a labelled bar (fixed: it never rescales to the data) and the marks' meaning. */
function drawLegend() {
  const W = 420;
  const x = (c) => 10 + ((c - 16) / (SCALE_HI_C + 1 - 16)) * (W - 20);
  const bar = el('svg:svg', {
    viewBox: `0 0 ${W} 54`,
    class: 'scale',
    role: 'img',
    'aria-label':
      'inlet colour scale: below 18 °C blue, 18 to 27 °C green to yellow, 27 to 32 °C orange, above 32 °C red, grey no data',
  });
  for (let c = 16; c < SCALE_HI_C + 1; c += 0.25)
    bar.append(
      el('svg:rect', { x: x(c), y: 4, width: x(c + 0.25) - x(c) + 0.3, height: 14, fill: inletColour(c) }),
    );
  for (const c of [18, 21, 24, 27, 30, 32, 35]) {
    const limit = c === 27 || c === 32;
    bar.append(
      el('svg:line', {
        x1: x(c),
        x2: x(c),
        y1: 2,
        y2: limit ? 24 : 21,
        class: limit ? 'tick limit' : 'tick',
      }),
      el('svg:text', { x: x(c), y: 35, class: limit ? 'tick-label limit' : 'tick-label', text: `${c}` }),
    );
  }
  bar.append(el('svg:text', { x: x(27), y: 48, class: 'tick-note', text: 'recommended ▲' }));
  bar.append(el('svg:text', { x: x(32) + 28, y: 48, class: 'tick-note', text: 'allowable ✖' }));
  bar.append(el('svg:text', { x: W - 4, y: 35, class: 'tick-unit', text: '°C' }));
  $('floor-legend').replaceChildren(
    el('div', { class: 'legend-row' }, el('b', { text: 'Rack inlet (hottest good sensor), °C:' }), bar),
    el('div', {
      class: 'legend-row',
      text: 'Marks beside the value: ▲ above 27 °C · ✖ above 32 °C · ▼ below 18 °C · ? no trusted inlet reading (grey) · ◐ some inlet sensors untrusted.',
    }),
    el('div', {
      class: 'legend-row',
      text: 'Units: ● driven · ▲ fallback or link degraded · ✖ tripped, write error, link down or refusing reads · ▽ on local control · ○ not driven.',
    }),
    el('div', { id: 'floor-source', class: 'legend-row muted' }),
  );
}

function updateFloor() {
  if (!state.site || state.site.missing) return;
  const unknown = [];
  // Per group, once per poll: where its figures come from is the same for all its racks.
  const liveByGroup = new Map();
  const liveFor = (group) => {
    if (!liveByGroup.has(group)) liveByGroup.set(group, (group && liveOf(group)) || state.live.get(''));
    return liveByGroup.get(group);
  };
  for (const item of floorItems.racks) {
    const { g, id, group } = item;
    const live = liveFor(group);
    const known = live && !live.error && live.rackInletsKnown;
    if (!known && !unknown.includes(group)) unknown.push(group || 'no group');
    const c = known ? live.racks?.[id] : null;
    const trust = known ? live.rackTrust?.[id] : undefined;
    // What the rack shows: its value as shown (0.1 °C) and its trust. Nothing else changes it.
    const sig = `${typeof c === 'number' ? fmt(c) : '?'}|${trust?.goodInlets}|${trust?.inlets}`;
    if (item.sig === sig) continue;
    item.sig = sig;
    const lv = inletLevel(c);
    const partial = trust && trust.inlets > 0 && trust.goodInlets < trust.inlets && typeof c === 'number';
    const mark = `${lv.mark}${partial ? '◐' : ''}`;
    g.setAttribute('data-level', lv.level);
    g.classList.toggle('partial', !!partial);
    const fill = inletColour(shownC(c));
    g.querySelector('rect').setAttribute('fill', fill);
    const temp = g.querySelector('.rack-temp');
    // The leading space (not drawn) keeps id and value two words in the rack's text, as read
    // aloud and as its accessible name must contain it.
    setLabel(
      temp,
      item.tempKey,
      typeof c === 'number' ? ` ${fmt(c)}${mark ? ` ${mark}` : ''}` : '– ?',
      labelRoomM(item.box),
    );
    for (const t of g.querySelectorAll('text')) t.classList.toggle('light', lightTextOn(fill));
    const trustText = trust ? `; ${trust.goodInlets} of ${trust.inlets} inlet sensors good` : '';
    // Starts with what the rack shows (its id and value), so speech and sight name it alike.
    const label = `${id}${typeof c === 'number' ? `${temp.textContent}: inlet ${fmt(c)} °C, ${lv.words}` : ': no data'}${trustText}`;
    g.setAttribute('aria-label', `${label}. Enter shows its sensors.`);
    g.querySelector('title').textContent = label;
  }
  for (const item of floorItems.ahus) {
    const s = unitState(item.id);
    const sig = `${s.key}|${s.text}`;
    if (item.sig === sig) continue;
    item.sig = sig;
    const g = item.g;
    g.setAttribute('data-state', s.key);
    g.querySelector('rect').setAttribute('fill', s.fill);
    setLabel(g.querySelector('.ahu-state'), 'ahu|ahu-state', `${s.mark} ${s.text}`, labelRoomM(item.box));
    g.setAttribute('aria-label', `${item.id}: ${s.text}. Enter shows its trend.`);
  }
  const source = unknown.length
    ? `Rack inlets of ${unknown.join(', ')}: no data (the node read has no sensor view of them).`
    : 'Each group’s racks and units as its leader sees them (this node where a group has no leader).';
  if ($('floor-source').textContent !== source) $('floor-source').textContent = source;
}

// ---------------------------------------------------------------- finding one unit among many

/**
 * What the find box matches: null when it is empty. An item matches when its id contains the
 * words typed (any case), or its group is exactly them ("zone-1" is not "zone-12"); a group when
 * its id contains them or it holds a match.
 */
function findMatches() {
  const q = $('find').value.trim().toLowerCase();
  if (!q) return null;
  const hit = (item) => item.id.toLowerCase().includes(q) || item.group.toLowerCase() === q;
  const racks = new Set(floorItems.racks.filter(hit).map((i) => i.id));
  const ahus = new Set(floorItems.ahus.filter(hit).map((i) => i.id));
  const groups = new Set();
  for (const g of state.site?.groups ?? []) if (g.id.toLowerCase().includes(q)) groups.add(g.id);
  for (const i of [...floorItems.racks, ...floorItems.ahus])
    if (i.group && (racks.has(i.id) || ahus.has(i.id))) groups.add(i.group);
  return { q, racks, ahus, groups };
}

/** The matches of the find box as the page last applied them (null: everything shown). */
let found = null;

/**
 * Applies the find box: the map zooms to what matches (1 000 units and 5 000 racks on a 1366 px
 * screen are a few pixels each) and dims the rest, which Tab then skips; the groups and units
 * tables list only the matches. Run when the box changes, not every poll.
 */
function applyFind() {
  found = findMatches();
  const geo = floorItems.geo;
  const svg = $('floor').querySelector('svg');
  let box = null;
  for (const list of [floorItems.racks, floorItems.ahus])
    for (const item of list) {
      const on = !found || found.racks.has(item.id) || found.ahus.has(item.id);
      item.g.classList.toggle('unmatched', !on);
      if (!on || !found) continue;
      box = box
        ? [
            Math.min(box[0], item.x),
            Math.min(box[1], item.y),
            Math.max(box[2], item.x),
            Math.max(box[3], item.y),
          ]
        : [item.x, item.y, item.x, item.y];
    }
  if (svg && geo) {
    // Around the matches with a margin of 2 m, never smaller than 12 × 6 m (a rack stays a rack).
    const view = box
      ? (() => {
          const w = Math.max(12, box[2] - box[0] + 4);
          const h = Math.max(6, box[3] - box[1] + 4);
          return [(box[0] + box[2]) / 2 - w / 2, (box[1] + box[3]) / 2 - h / 2, w, h];
        })()
      : [0, 0, geo.width, geo.height];
    svg.setAttribute('viewBox', view.map((v) => Number(v.toFixed(2))).join(' '));
    // The matches fill the map: any zoom the operator set was of the view now replaced.
    setMapZoom(1);
  }
  // A dimmed stop would leave Tab on something the find box hid: the stop goes to the first match.
  placeMapStop(null, false);
  const status = !found
    ? ''
    : `${found.ahus.size} unit${found.ahus.size === 1 ? '' : 's'}, ${found.racks.size} rack${found.racks.size === 1 ? '' : 's'} in ${found.groups.size} group${found.groups.size === 1 ? '' : 's'} match “${found.q}”${found.ahus.size + found.racks.size ? '; Enter goes to the first on the map' : ''}`;
  setText($('find-status'), status);
  if (state.cluster) {
    renderGroups();
    renderUnits();
  }
}

$('find').addEventListener('input', applyFind);
$('find').addEventListener('keydown', (ev) => {
  if (ev.key !== 'Enter') return;
  ev.preventDefault();
  const first =
    floorItems.ahus.find((i) => found?.ahus.has(i.id)) ??
    floorItems.racks.find((i) => found?.racks.has(i.id));
  if (first) placeMapStop(first, true);
});

// ---------------------------------------------------------------- the map from the keyboard, zoom

/**
 * The map is one Tab stop (a roving tabindex, as the alarm grid): 5 000 racks and 1 000 units as
 * Tab stops of their own put 6 000 presses between the find box and the rest of the page. The stop
 * is one item (tabindex 0, every other -1), kept by kind and id: items are updated in place, so it
 * survives the redraw, and Tab back returns to the item last used. Items the find box dims are
 * never the stop and the arrow keys skip them, as Tab skipped them.
 */
const mapStop = { kind: 'rack', id: null };
const usableItem = (item) => !item.g.classList.contains('unmatched');
const mapItemList = () => [...floorItems.racks, ...floorItems.ahus];

/**
 * Makes `item` the map's stop (null: the one `mapStop` names, else the first usable item), and
 * gives it the focus when `focus`, scrolled into the zoomed map's view.
 */
function placeMapStop(item, focus) {
  const items = mapItemList();
  const named = item ?? items.find((i) => i.kind === mapStop.kind && i.id === mapStop.id);
  const stop = named && usableItem(named) ? named : items.find(usableItem);
  for (const e of $('floor').querySelectorAll('g[tabindex="0"]')) if (e !== stop?.g) e.tabIndex = -1;
  // Nothing matches the find box: no stop (Tab goes past the map), and the old one is remembered.
  if (!stop) return;
  stop.g.tabIndex = 0;
  mapStop.kind = stop.kind;
  mapStop.id = stop.id;
  if (focus) {
    keepInMapView(stop);
    stop.g.focus();
  }
}

/**
 * The usable item nearest to `from` in the arrow's direction, by the items' drawn centres: within
 * the 90° cone around it first (Right from a rack: the next rack of its row), else anywhere on
 * that side, so that every item can be reached; off-axis distance counts double.
 */
function mapNeighbour(from, dx, dy) {
  let best = null;
  let bestScore = Number.POSITIVE_INFINITY;
  for (const item of mapItemList()) {
    if (item === from || !usableItem(item)) continue;
    const along = (item.x - from.x) * dx + (item.y - from.y) * dy;
    if (along <= 1e-6) continue;
    const across = Math.abs((item.x - from.x) * dy - (item.y - from.y) * dx);
    // Outside the cone costs more than anything inside it.
    const score = along + 2 * across + (across > along ? 1e6 : 0);
    if (score < bestScore) {
      best = item;
      bestScore = score;
    }
  }
  return best;
}

/** Zoom levels of the map (× the whole view): at ×16 a rack of a 5 000-rack hall is ~55 px wide on a 1366 px screen. */
const MAP_ZOOMS = [1, 2, 4, 8, 16, 32];
/** The map's height at ×1, at most (px): the find box, map and legend fit a 768 px screen. */
const MAP_MAX_HEIGHT_PX = 640;
const mapZoom = { level: 1 };

/** Scrolls the zoomed map so `item` is in view (centred when it was not), as the arrow keys pan. */
function keepInMapView(item) {
  const host = $('floor');
  const view = host.getBoundingClientRect();
  const r = item.g.getBoundingClientRect();
  const left = r.left - view.left;
  const top = r.top - view.top;
  if (left < 0 || left + r.width > host.clientWidth)
    host.scrollLeft += left + r.width / 2 - host.clientWidth / 2;
  if (top < 0 || top + r.height > host.clientHeight)
    host.scrollTop += top + r.height / 2 - host.clientHeight / 2;
}

/** Sizes the map's drawing for the zoom level: ×1 fits the host (CSS), above it is drawn larger and the host scrolls. */
function sizeMap() {
  const host = $('floor');
  const svg = host.querySelector('svg');
  if (!svg) return;
  const level = mapZoom.level;
  host.classList.toggle('zoomed', level > 1);
  if (level === 1) {
    svg.style.width = '';
    svg.style.height = '';
    return;
  }
  const [, , w, h] = svg.getAttribute('viewBox').split(' ').map(Number);
  const fitPx = Math.min(host.clientWidth, (MAP_MAX_HEIGHT_PX * w) / h);
  svg.style.width = `${Math.round(fitPx * level)}px`;
  svg.style.height = `${Math.round((fitPx * level * h) / w)}px`;
}

/**
 * Sets the zoom level; the map's stop keeps its place on screen (centred if it was out of view),
 * so zooming from the keyboard never loses the focused item.
 */
function setMapZoom(level) {
  const next = Math.min(MAP_ZOOMS.at(-1), Math.max(1, level));
  const host = $('floor');
  const stop = mapItemList().find((i) => i.g.tabIndex === 0);
  let at = null;
  if (stop && next !== mapZoom.level) {
    const view = host.getBoundingClientRect();
    const r = stop.g.getBoundingClientRect();
    const x = r.left + r.width / 2 - view.left;
    const y = r.top + r.height / 2 - view.top;
    at = x >= 0 && x <= host.clientWidth && y >= 0 && y <= host.clientHeight ? [x, y] : null;
  }
  const changed = next !== mapZoom.level;
  mapZoom.level = next;
  sizeMap();
  if (changed && stop) {
    const view = host.getBoundingClientRect();
    const r = stop.g.getBoundingClientRect();
    const [x, y] = at ?? [host.clientWidth / 2, host.clientHeight / 2];
    host.scrollLeft += r.left + r.width / 2 - view.left - x;
    host.scrollTop += r.top + r.height / 2 - view.top - y;
  }
  // A status line: written only when it changes, so a screen reader says each zoom once.
  if ($('map-zoom-level').textContent !== `×${next}`) setText($('map-zoom-level'), `×${next}`);
  $('map-zoom-in').disabled = next >= MAP_ZOOMS.at(-1);
  $('map-zoom-out').disabled = next <= 1;
}

const zoomStep = (up) =>
  setMapZoom(
    up
      ? (MAP_ZOOMS.find((z) => z > mapZoom.level) ?? MAP_ZOOMS.at(-1))
      : (MAP_ZOOMS.findLast((z) => z < mapZoom.level) ?? 1),
  );

/** Back to the whole hall at ×1 (the find box's matches stay dimmed; typing in it zooms to them again). */
function fitMap() {
  const geo = floorItems.geo;
  const svg = $('floor').querySelector('svg');
  if (geo && svg) svg.setAttribute('viewBox', `0 0 ${geo.width} ${geo.height}`);
  setMapZoom(1);
}

$('map-zoom-in').addEventListener('click', () => zoomStep(true));
$('map-zoom-out').addEventListener('click', () => zoomStep(false));
$('map-fit').addEventListener('click', fitMap);
window.addEventListener('resize', () => {
  if (mapZoom.level > 1) sizeMap();
});

$('floor').addEventListener('keydown', (ev) => {
  const item = ev.target.closest && itemOfG.get(ev.target.closest('g.rack, g.ahu'));
  if (!item || ev.altKey || ev.ctrlKey || ev.metaKey) return;
  const step = { ArrowRight: [1, 0], ArrowLeft: [-1, 0], ArrowDown: [0, 1], ArrowUp: [0, -1] }[ev.key];
  if (step) {
    ev.preventDefault();
    const next = mapNeighbour(item, step[0], step[1]);
    if (next) placeMapStop(next, true);
  } else if (ev.key === 'Home' || ev.key === 'End') {
    ev.preventDefault();
    const usable = mapItemList().filter(usableItem);
    const next = ev.key === 'Home' ? usable[0] : usable.at(-1);
    if (next) placeMapStop(next, true);
  } else if (ev.key === '+' || ev.key === '=' || ev.key === '-' || ev.key === '_') {
    ev.preventDefault();
    zoomStep(ev.key === '+' || ev.key === '=');
    keepInMapView(item);
  }
});

// A click (or the find box's Enter, or the rack panel closing) focuses an item: it is the stop now.
$('floor').addEventListener('focusin', (ev) => {
  const item = itemOfG.get(ev.target);
  if (item && item.g.tabIndex !== 0) placeMapStop(item, false);
});

/** A unit's state as its group's leader holds it: what the map and the unit table show. */
function unitState(ahu) {
  const group = index.airHandlers.get(ahu)?.group;
  const g = index.groups.get(group);
  const pick = (key, text, mark, fill) => ({ key, text, mark, fill });
  if (!group || !g) return pick('none', 'in no group', '○', '#eceff1');
  if (!g.leader) return pick('not-driven', 'no leader', '○', '#eceff1');
  const v = state.views.get(group);
  if (!v?.view) return pick('unknown', 'unknown', '?', '#eceff1');
  if (!v.view.driving) return pick('not-driven', 'not driven', '○', '#eceff1');
  const u = unitOf(v.view, ahu);
  if (!u) return pick('not-driven', 'not driven', '○', '#eceff1');
  const link = liveOf(group)?.units?.[ahu]?.link;
  if (u.mode === 'tripped') return pick('tripped', 'tripped', '✖', '#ffcdd2');
  if (u.lastError) return pick('error', 'write error', '✖', '#ffcdd2');
  if (link === 'down') return pick('link-down', 'link down', '✖', '#ffcdd2');
  const refusal = liveOf(group)?.units?.[ahu]?.refusal;
  if (refusal) return pick('refusing', `refuses reads (exception ${refusal.code})`, '✖', '#ffcdd2');
  if (u.released || u.mode === 'local') return pick('local', 'local control', '▽', '#e1f5fe');
  if (u.mode === 'fallback') return pick('fallback', 'fallback', '▲', '#ffe0b2');
  if (!u.lastWriteOkMs || Date.now() - u.lastWriteOkMs > STALE_WRITE_MS)
    return pick('not-driven', 'not driven', '○', '#eceff1');
  if (link === 'degraded') return pick('link-degraded', 'link degraded', '▲', '#ffe0b2');
  return pick('driven', 'driven', '●', '#c8e6c9');
}

// ---------------------------------------------------------------- rack details

function selectRack(id) {
  state.rack = { id, body: null, from: null, error: null };
  // Said once when it opens: the panel itself redraws every poll and is no live region.
  $('rack-status').textContent = `Rack ${id} opened beside the map; Escape closes it.`;
  for (const g of document.querySelectorAll('#floor g.rack'))
    g.setAttribute('aria-pressed', String(g.getAttribute('data-id') === id));
  renderRack();
  pollRack(id).then(renderRack);
}

/** The rack's sensors from its group's leader (whose view control acts on), else this node. */
async function pollRack(id) {
  const group = index.racks.get(id)?.group;
  const from = group ? sourceOf(group) : '';
  try {
    const r = await getJson(`${from}/api/v1/site/racks/${encodeURIComponent(id)}`);
    if (state.rack?.id !== id) return;
    state.rack =
      r.status === 200
        ? { id, body: r.body, from, error: null }
        : { id, body: null, from, error: `HTTP ${r.status}: ${r.body?.message ?? ''}` };
  } catch (err) {
    if (state.rack?.id === id)
      state.rack = { id, body: null, from, error: `${nodeAt(from)} unreachable: ${err.message}` };
  }
}

function trustOf(good, of) {
  if (of === 0) return { mark: '?', text: 'no inlet sensors' };
  if (good === of) return { mark: '✔', text: `trusted: ${good} of ${of} inlet sensors good` };
  if (good === 0) return { mark: '✖', text: `not trusted: none of ${of} inlet sensors good` };
  return { mark: '◐', text: `partly trusted: ${good} of ${of} inlet sensors good` };
}

/** Closes the rack panel and gives the focus back to its rack. */
function closeRack() {
  const id = state.rack?.id;
  if (id === undefined) return;
  state.rack = null;
  $('rack-details').replaceChildren(
    el('p', { class: 'muted', text: 'Select a rack to see its sensors and their trust.' }),
  );
  for (const g of document.querySelectorAll('#floor g.rack[aria-pressed]')) g.removeAttribute('aria-pressed');
  $('rack-status').textContent = `Rack ${id} closed.`;
  document.querySelector(`#floor g.rack[data-id="${CSS.escape(id)}"]`)?.focus();
}
// Escape closes what a rack opened, from the map or the panel (not from a form field elsewhere).
for (const id of ['floor', 'rack-details'])
  $(id).addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && state.rack) {
      ev.preventDefault();
      closeRack();
    }
  });

function renderRack() {
  const host = $('rack-details');
  const r = state.rack;
  if (!r) return;
  const hadFocus = document.activeElement?.id === 'rack-close';
  const close = el('button', { type: 'button', id: 'rack-close', text: 'Close' });
  close.addEventListener('click', closeRack);
  const rack = state.site?.racks.find((x) => x.id === r.id);
  const head = el('h3', { text: `Rack ${r.id}${rack?.group ? ` (${rack.group})` : ''}` });
  if (!r.body) {
    host.replaceChildren(
      head,
      el('p', { class: r.error ? 'bad' : 'muted', text: r.error ?? 'reading…' }),
      close,
    );
    return;
  }
  const b = r.body;
  const trust = trustOf(b.goodInlets, b.inlets);
  const rows = b.sensors.map((s) => {
    const warnFlags = s.flags.length ? ` (${s.flags.join(', ')})` : '';
    const q =
      s.quality === 'good'
        ? { cls: 'ok', text: `✔ good${warnFlags}` }
        : s.quality === 'bad'
          ? { cls: 'bad', text: `✖ untrusted${warnFlags}` }
          : { cls: 'warn', text: '? unknown' };
    return el(
      'tr',
      { 'data-sensor': `${s.node}/${s.sensor}` },
      el('td', { text: `${s.node} / ${s.sensor}` }),
      el('td', { text: s.kind }),
      el('td', { class: 'num', text: s.value === null ? 'no reading' : `${fmt(s.value)} ${s.unit}` }),
      el('td', { class: 'num', text: s.ageS === null ? '–' : `${fmt(s.ageS, 0)} s` }),
      el('td', { class: q.cls, text: q.text }),
    );
  });
  host.replaceChildren(
    head,
    el('p', {
      class: 'rack-summary',
      text: `Hottest good inlet: ${inletWords(b.inletMaxC)}. ${trust.mark} ${trust.text}.`,
    }),
    el('p', {
      class: 'muted',
      text: `As ${b.node} sees it${rack?.group ? (r.from === '' && leaderBase(rack.group) === null ? ' (the group has no leader)' : `, the leader of ${rack.group}`) : ''}, ${ago(b.atMs)}.${b.sensorsKnown ? '' : ' That node has no sensor view: no readings.'}`,
    }),
    el(
      'table',
      { class: 'sensors' },
      el(
        'thead',
        {},
        el('tr', {}, ...['node / sensor', 'kind', 'value', 'age', 'trust'].map((t) => el('th', { text: t }))),
      ),
      el('tbody', {}, ...rows),
    ),
    close,
  );
  if (hadFocus) close.focus();
}

// ---------------------------------------------------------------- tables

/** Every unit of the site with what its group's leader holds for it. */
function unitRows() {
  const rows = new Map();
  for (const a of state.site?.airHandlers ?? []) rows.set(a.id, { ahu: a.id, group: a.group });
  for (const [group, v] of state.views) {
    if (!v.view?.driving) continue;
    const leader = index.groups.get(group)?.leader ?? null;
    for (const u of v.view.units) {
      const row = rows.get(u.ahu) ?? { ahu: u.ahu, group };
      Object.assign(row, {
        group,
        drivenBy: leader,
        held: u.held,
        lastWriteOkMs: u.lastWriteOkMs,
        error: u.lastError,
      });
      rows.set(u.ahu, row);
    }
  }
  return rows;
}

/** " — why" from a live group's `reasons` (strings only, at most three: a table cell). */
function reasonsText(reasons) {
  if (!Array.isArray(reasons)) return '';
  const words = reasons.filter((r) => typeof r === 'string' && r !== '').slice(0, 3);
  return words.length ? ` — ${words.join('; ')}` : '';
}

/** The operators' pause and overrides of a group, in words beside "driving" (its leader's view). */
function operatorText(op) {
  if (!isObject(op)) return '';
  const words = [];
  if (op.paused === true)
    words.push(`⏸ paused${typeof op.reason === 'string' && op.reason ? ` (${op.reason})` : ''}`);
  const units = isObject(op.overrides) ? Object.keys(op.overrides) : [];
  if (units.length) words.push(`override on ${units.slice(0, 4).join(', ')}${units.length > 4 ? ' …' : ''}`);
  return words.length ? ` — ${words.join('; ')}` : '';
}

/**
 * Brings a table body to `rows` ({key, cells: [{text, cls}]}) touching only what changed: a row
 * whose key is drawn already keeps its element, and only the cells whose text or class differ are
 * written; the rows are re-placed only when their order changed. `keyAttr` names the row's key.
 */
function syncRows(body, keyAttr, rows, tail = null) {
  const kept = new Map();
  for (const tr of body.rows) {
    const k = tr.getAttribute(keyAttr);
    if (k !== null) kept.set(k, tr);
  }
  const out = rows.map(({ key, cells }) => {
    let tr = kept.get(key);
    if (!tr || tr.cells.length !== cells.length) {
      tr = el('tr', { [keyAttr]: key }, ...cells.map(() => el('td')));
    }
    cells.forEach((c, i) => {
      const td = tr.cells[i];
      const text = shown(c.text);
      if (td.textContent !== text) td.textContent = text;
      const cls = c.cls ?? '';
      if ((td.getAttribute('class') ?? '') !== cls) {
        if (cls) td.setAttribute('class', cls);
        else td.removeAttribute('class');
      }
    });
    return tr;
  });
  if (tail) out.push(tail);
  const same = out.length === body.rows.length && out.every((tr, i) => body.rows[i] === tr);
  if (same) return;
  const oldTail = body.querySelector('tr.more');
  if (tail && oldTail && oldTail.textContent === tail.textContent && out.length === body.rows.length) {
    // Only the note changed its element: keep the drawn one.
    out[out.length - 1] = oldTail;
    if (out.every((tr, i) => body.rows[i] === tr)) return;
  }
  body.replaceChildren(...out);
}

function renderGroups() {
  const body = $('groups').tBodies[0];
  const groups = (state.cluster?.groups ?? []).filter((g) => !found || found.groups.has(g.id));
  syncRows(
    body,
    'data-group',
    groups.map((g) => {
      const v = state.views.get(g.id);
      const s = liveOf(g.id)?.groups?.[g.id];
      const h = handoverOf(g);
      const lv = inletLevel(s?.inletMaxC);
      return {
        key: g.id,
        cells: [
          { text: g.id },
          { cls: g.leader ? '' : 'bad', text: g.leader ?? '✖ none' },
          { text: g.epoch ?? '–' },
          { text: g.state },
          {
            cls: v?.view ? (v.view.driving ? '' : 'bad') : '',
            text: v?.view
              ? `${v.view.driving ? 'yes' : '✖ no'}${operatorText(v.view.operator)}`
              : (v?.error ?? '…'),
          },
          {
            cls: `handover ${h?.level ?? ''}`,
            text: h ? `${h.level === 'bad' ? '✖' : '▲'} ${h.text}` : '–',
          },
          {
            cls: s?.verdict === 'blind' ? 'bad' : s?.verdict === 'degraded' ? 'warn' : '',
            // Why it is not ok, in the node's words (the racks nobody watches, named): not colour only.
            text: s
              ? `${s.verdict === 'ok' ? '' : s.verdict === 'blind' ? '✖ ' : '◐ '}${s.verdict} (${num(s.coverage) === null ? '–' : Math.round(s.coverage * 100)} %)${reasonsText(s.reasons)}`
              : 'no data',
          },
          {
            cls: lv.level === 'crit' ? 'bad' : lv.level === 'warn' ? 'warn' : '',
            text: s?.inletMaxC == null ? 'no data' : `${fmt(s.inletMaxC)} °C${lv.mark ? ` ${lv.mark}` : ''}`,
          },
        ],
      };
    }),
  );
}

/**
 * Rows the air-handler table lists at most. A full site has 1 000 units: all of them in the page,
 * rewritten every poll, is what no one reads; the find box narrows the list, and past this bound
 * the units that need someone (not driven, in error, on fallback) come first.
 */
const UNIT_ROWS_MAX = 200;
const UNIT_STATE_RANK = {
  tripped: 0,
  error: 0,
  'link-down': 0,
  refusing: 0,
  unknown: 1,
  'not-driven': 1,
  fallback: 2,
  'link-degraded': 2,
  local: 3,
  none: 3,
  driven: 4,
};

function renderUnits() {
  const body = $('units').tBodies[0];
  let units = [...unitRows().values()]
    .filter((u) => !found || found.ahus.has(u.ahu))
    .map((u) => ({ u, s: unitState(u.ahu) }));
  const total = units.length;
  if (total > UNIT_ROWS_MAX)
    units = units
      .map((x, i) => ({ ...x, i }))
      .sort((a, b) => (UNIT_STATE_RANK[a.s.key] ?? 1) - (UNIT_STATE_RANK[b.s.key] ?? 1) || a.i - b.i)
      .slice(0, UNIT_ROWS_MAX);
  const more = total - units.length;
  syncRows(
    body,
    'data-ahu',
    units.map(({ u, s }) => {
      const live = u.group ? liveOf(u.group)?.units?.[u.ahu] : undefined;
      const link = live?.link;
      const refused = live?.refusal
        ? `, refuses every read: Modbus exception ${live.refusal.code} (${live.refusal.name})`
        : '';
      return {
        key: u.ahu,
        cells: [
          { text: u.ahu },
          { text: u.group ?? '–' },
          { cls: u.drivenBy ? '' : 'warn', text: u.drivenBy ?? 'nobody' },
          {
            cls: `unit-state ${s.key === 'driven' ? 'ok' : ['tripped', 'error', 'link-down', 'refusing'].includes(s.key) ? 'bad' : 'warn'}`,
            text: `${s.mark} ${s.text}`,
          },
          { cls: 'held-fan', text: fmt(u.held?.fanPct) },
          { cls: 'held-setpoint', text: fmt(u.held?.supplySetpointC) },
          { cls: u.error ? 'bad' : '', text: u.error ? `✖ error: ${u.error}` : ago(u.lastWriteOkMs) },
          {
            cls: refused ? 'bad' : link === 'up' ? 'ok' : link ? 'warn' : '',
            text: link
              ? `${refused ? '✖' : link === 'up' ? '●' : link === 'down' ? '✖' : '▲'} ${link}${refused}`
              : 'no data',
          },
        ],
      };
    }),
    more > 0
      ? el(
          'tr',
          { class: 'more' },
          el('td', {
            colspan: 8,
            class: 'warn',
            text: `${more} more units not listed (the ${units.length} above: those that need someone first); type in “find” above the map to list others`,
          }),
        )
      : null,
  );
}

function renderAudit() {
  const body = $('audit').tBodies[0];
  const total = state.audit.length + state.auditDropped;
  setText(
    $('audit-note'),
    state.auditDropped > 0
      ? `The newest ${state.audit.length} of ${total} entries read are listed; the trail in etcd keeps them all (GET /api/v1/audit).`
      : '',
  );
  body.replaceChildren(
    ...state.audit
      .slice()
      .reverse()
      .map((e) => {
        const when = num(e.atMs) === null ? '–' : new Date(e.atMs).toLocaleTimeString();
        if (e.kind === 'role')
          return el(
            'tr',
            { 'data-kind': 'role' },
            el('td', { text: e.seq }),
            el('td', { text: when }),
            el('td', { text: e.node }),
            el('td', {
              text: clip(`${e.group}: ${e.from} → ${e.to}${e.epoch ? ` (epoch ${e.epoch})` : ''}`),
            }),
            el('td', { text: clip(String(e.reason ?? '')) }),
          );
        if (e.kind === 'failed-sign-in')
          return el(
            'tr',
            { 'data-kind': 'failed-sign-in' },
            el('td', { text: e.seq }),
            el('td', { text: when }),
            el('td', { text: clip(`${e.name} @ ${e.clientIp} via ${e.node}`) }),
            el('td', { text: clip(`sign-in failed ×${e.count}: ${e.reason}`) }),
            el('td', { class: 'bad', text: 'refused' }),
          );
        const pending = e.outcome === 'pending';
        const status = pending ? null : num(e.status);
        const code = isObject(e.error) ? e.error.code : e.error;
        // Pending: read while its action ran (the page asks again for the answer), or never answered.
        const outcome = pending
          ? state.auditPending.has(e.seq)
            ? '… running'
            : `? no outcome recorded ${clip(String(code ?? ''), 80)}`
          : `${status ?? '?'}${code ? ` ${clip(String(code), 80)}` : ''}`;
        return el(
          'tr',
          { 'data-kind': 'operator', 'data-outcome': pending ? 'pending' : 'answered' },
          el('td', { text: e.seq }),
          el('td', { text: when }),
          el('td', { text: clip(`${e.user} (${e.role}) @ ${e.clientIp} via ${e.node}`) }),
          el('td', {
            text: clip(`${e.action} ${e.group ?? ''} ${e.params ? JSON.stringify(e.params) : ''}`),
          }),
          el('td', { class: status !== null && status < 300 ? 'ok' : 'bad', text: outcome }),
        );
      }),
  );
}

// ---------------------------------------------------------------- trends

function trendGroupOf(subject) {
  if (!subject) return null;
  const [kind, id] = [subject.slice(0, subject.indexOf(':')), subject.slice(subject.indexOf(':') + 1)];
  return kind === 'group' ? id : (index.airHandlers.get(id)?.group ?? null);
}

function setTrendSubject(subject) {
  if (state.trend.subject === subject) return;
  state.trend.subject = subject;
  $('trend-subject').value = subject;
  state.trend.body = null;
  state.trend.readAtMs = 0;
  pollTrend().then(renderTrends);
}

function setTrendRange(range) {
  state.trend.range = range;
  $('trend-recent').setAttribute('aria-pressed', String(range === 'recent'));
  $('trend-day').setAttribute('aria-pressed', String(range === 'day'));
  state.trend.body = null;
  state.trend.readAtMs = 0;
  pollTrend().then(renderTrends);
}
$('trend-recent').addEventListener('click', () => setTrendRange('recent'));
$('trend-day').addEventListener('click', () => setTrendRange('day'));
$('trend-subject').addEventListener('change', () => setTrendSubject($('trend-subject').value));

/** The chosen group's trends (and its units') from the group's leader: it reads the units, so it has their supply air. */
async function pollTrend() {
  const t = state.trend;
  if (!t.subject) {
    const first = state.site?.groups[0]?.id;
    if (!first) return;
    t.subject = `group:${first}`;
  }
  const group = trendGroupOf(t.subject);
  if (!group) return;
  const from = sourceOf(group);
  const key = `${from}|${group}|${t.range}`;
  if (t.range === 'day' && t.key === key && Date.now() - t.readAtMs < DAY_TREND_EVERY_MS) return;
  try {
    const r = await getJson(`${from}/api/v1/trends?range=${t.range}&group=${encodeURIComponent(group)}`);
    // The operator chose something else meanwhile: this answer is for a chart no longer shown.
    if (`${sourceOf(trendGroupOf(t.subject))}|${trendGroupOf(t.subject)}|${t.range}` !== key) return;
    if (r.status !== 200 || !Array.isArray(r.body?.groups) || !Array.isArray(r.body?.units))
      throw new Error(refusedText(r));
    Object.assign(t, { body: r.body, from, error: null, readAtMs: Date.now(), key });
  } catch (err) {
    Object.assign(t, { error: `trends from ${nodeAt(from)}: ${err.message}`, key });
  }
}

/** The widest temperature axis a trend draws, °C: beyond it a reading is no air a hall has. */
const TREND_LO_C = -40;
const TREND_HI_C = 120;

/** Round tick steps for an axis from lo to hi, about `n` of them. */
function ticks(lo, hi, n) {
  const raw = (hi - lo) / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 && out.length < 50; v += step)
    out.push(+v.toFixed(6));
  return out;
}

/**
 * One chart: labelled axes (values with their unit, local time), lines per series (gaps where no
 * data), a min–max band for 24-hour series, dashed reference lines (the inlet limits).
 */
function chart({ label, unit, x0, x1, xStep, yLo, yHi, series, refs = [] }) {
  const W = 640;
  const H = 220;
  const m = { l: 46, r: 12, t: 12, b: 30 };
  const px = (t) => m.l + ((t - x0) / (x1 - x0)) * (W - m.l - m.r);
  const py = (v) => m.t + (1 - (Math.min(yHi, Math.max(yLo, v)) - yLo) / (yHi - yLo)) * (H - m.t - m.b);
  const svg = el('svg:svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': label });
  for (const v of ticks(yLo, yHi, 5)) {
    svg.append(
      el('svg:line', { class: 'grid', x1: m.l, x2: W - m.r, y1: py(v), y2: py(v) }),
      el('svg:text', { class: 'y-label', x: m.l - 5, y: py(v) + 4, text: `${v}` }),
    );
  }
  svg.append(
    el('svg:text', {
      class: 'axis-title',
      x: 12,
      y: m.t + (H - m.t - m.b) / 2,
      transform: `rotate(-90 12 ${m.t + (H - m.t - m.b) / 2})`,
      text: unit,
    }),
  );
  for (let t = Math.ceil(x0 / xStep) * xStep; t <= x1; t += xStep) {
    // Whole steps of UTC time, labelled in the browser's local time.
    svg.append(
      el('svg:line', { class: 'grid', x1: px(t), x2: px(t), y1: m.t, y2: H - m.b }),
      el('svg:text', { class: 'x-label', x: px(t), y: H - m.b + 16, text: hhmm(t) }),
    );
  }
  svg.append(
    el('svg:line', { class: 'axis', x1: m.l, x2: m.l, y1: m.t, y2: H - m.b }),
    el('svg:line', { class: 'axis', x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }),
  );
  for (const r of refs) {
    if (r.v < yLo || r.v > yHi) continue;
    svg.append(
      el('svg:line', { class: 'ref', x1: m.l, x2: W - m.r, y1: py(r.v), y2: py(r.v) }),
      el('svg:text', { class: 'ref-label', x: W - m.r - 4, y: py(r.v) - 3, text: r.text }),
    );
  }
  for (const s of series) {
    if (s.lo && s.hi) {
      // The band: each run of steps with data is one closed polygon, max forward then min back.
      let run = [];
      const flush = () => {
        if (run.length > 1) {
          const pts = [
            ...run.map((i) => `${px(s.t[i])},${py(s.hi[i])}`),
            ...run.reverse().map((i) => `${px(s.t[i])},${py(s.lo[i])}`),
          ];
          svg.append(el('svg:polygon', { class: `band ${s.cls}`, points: pts.join(' ') }));
        }
        run = [];
      };
      for (let i = 0; i < s.t.length; i++) {
        if (num(s.t[i]) !== null && num(s.lo[i]) !== null && num(s.hi[i]) !== null) run.push(i);
        else flush();
      }
      flush();
    }
    let d = '';
    let pen = false;
    s.t.forEach((t, i) => {
      const v = s.v[i];
      if (num(v) === null || num(t) === null || t < x0) {
        pen = false;
        return;
      }
      d += `${pen ? 'L' : 'M'}${px(t).toFixed(1)},${py(v).toFixed(1)} `;
      pen = true;
    });
    svg.append(el('svg:path', { class: `line ${s.cls}`, d: d.trim(), 'data-series': s.name }));
    // A step with no neighbour draws no line: a dot shows it (a fresh unit's first 15 minutes).
    const has = (i) => num(s.v[i]) !== null && num(s.t[i]) !== null && s.t[i] >= x0;
    for (let i = 0; i < s.t.length; i++)
      if (has(i) && !has(i - 1) && !has(i + 1))
        svg.append(el('svg:circle', { class: `dot ${s.cls}`, cx: px(s.t[i]), cy: py(s.v[i]), r: 3 }));
  }
  return svg;
}

function lastOf(xs) {
  for (let i = xs.length - 1; i >= 0; i--) if (typeof xs[i] === 'number') return xs[i];
  return null;
}

function renderTrendChoices() {
  const opts = [];
  for (const g of state.site?.groups ?? []) {
    opts.push([`group:${g.id}`, `group ${g.id}`]);
    for (const a of g.airHandlers) opts.push([`unit:${a}`, `  unit ${a} (${g.id})`]);
  }
  setOptions($('trend-subject'), opts);
  if (state.trend.subject) $('trend-subject').value = state.trend.subject;
}

function renderTrends() {
  const t = state.trend;
  const host = $('trends');
  const body = t.body;
  if (!t.subject || !body) {
    host.replaceChildren(el('p', { class: t.error ? 'bad' : 'muted', text: t.error ?? 'reading…' }));
    return;
  }
  const day = t.range === 'day';
  const x1 = Date.now();
  const x0 = x1 - (day ? DAY_MS : WINDOW_MS);
  const xStep = day ? 3 * 3_600_000 : 2 * 60_000;
  const [kind, id] = t.subject.split(':');
  const g = body.groups[0];
  const u = kind === 'unit' ? body.units.find((x) => x.ahu === id) : null;
  if (!g || (kind === 'unit' && !u)) {
    host.replaceChildren(el('p', { class: 'muted', text: `no trend of ${id} at ${nodeAt(t.from)}` }));
    return;
  }
  const band = (s, k) => (day && s.min ? { lo: s.min[k], hi: s.max[k] } : {});
  const tempSeries = [
    {
      name: 'inletMaxC',
      cls: 'inlet',
      label: 'hottest inlet',
      t: g.t,
      v: g.inletMaxC,
      ...(kind === 'group' ? band(g, 'inletMaxC') : {}),
    },
  ];
  if (u)
    tempSeries.push(
      {
        name: 'supplyC',
        cls: 'supply',
        label: 'supply air (measured)',
        t: u.t,
        v: u.supplyC,
        ...band(u, 'supplyC'),
      },
      {
        name: 'supplySetpointC',
        cls: 'setpoint',
        label: 'supply setpoint (told)',
        t: u.t,
        v: u.supplySetpointC,
      },
    );
  const fan = u
    ? { name: 'fanPct', cls: 'fan', label: 'fan % (told)', t: u.t, v: u.fanPct, ...band(u, 'fanPct') }
    : {
        name: 'fanPct',
        cls: 'fan',
        label: 'mean fan % of its units (told)',
        t: g.t,
        v: g.fanPct,
        ...band(g, 'fanPct'),
      };
  // The axis takes in every plausible reading, no more: one absurd figure (a sensor's garbage, a
  // peer's bug) is drawn at the axis' edge instead of squashing the rest into a flat line.
  let yLo = 15;
  let yHi = 35;
  for (const s of tempSeries)
    for (const xs of [s.v, s.hi ?? [], s.lo ?? []])
      for (const v of xs)
        if (num(v) !== null) {
          yLo = Math.min(yLo, Math.max(TREND_LO_C, v));
          yHi = Math.max(yHi, Math.min(TREND_HI_C, v));
        }
  yLo = Math.floor(yLo / 5) * 5;
  yHi = Math.ceil(yHi / 5) * 5;
  const what = kind === 'unit' ? `unit ${id} (group ${g.group})` : `group ${id}`;
  const stepText = (ms) =>
    num(ms) === null || ms <= 0
      ? 'step not stated'
      : ms >= 60_000
        ? `${ms / 60_000}-min means, band min–max`
        : `every ${ms / 1000} s`;
  const key = (series) =>
    el(
      'ul',
      { class: 'chart-key' },
      ...series.map((s) =>
        el(
          'li',
          {},
          el('span', { class: `swatch ${s.cls}`, 'aria-hidden': 'true' }),
          `${s.label}: ${fmt(lastOf(s.v))}`,
        ),
      ),
    );
  host.replaceChildren(
    el(
      'figure',
      { class: 'trend', 'data-subject': t.subject, 'data-chart': 'temperature' },
      el('figcaption', { text: `${what}: temperature, °C — last ${day ? '24 h' : '10 min'}` }),
      chart({
        label: `${what} temperatures, °C, last ${day ? '24 hours' : '10 minutes'}`,
        unit: '°C',
        x0,
        x1,
        xStep,
        yLo,
        yHi,
        series: tempSeries,
        refs: [
          { v: 27, text: '27 °C recommended' },
          { v: 32, text: '32 °C allowable' },
        ],
      }),
      key(tempSeries),
    ),
    el(
      'figure',
      { class: 'trend', 'data-subject': t.subject, 'data-chart': 'fan' },
      el('figcaption', { text: `${what}: fan speed, % — last ${day ? '24 h' : '10 min'}` }),
      chart({
        label: `${what} fan speed, %, last ${day ? '24 hours' : '10 minutes'}`,
        unit: '%',
        x0,
        x1,
        xStep,
        yLo: 0,
        yHi: 100,
        series: [fan],
      }),
      key([fan]),
    ),
  );
  const kept = num(body.memoryBytes);
  setText(
    $('trend-source'),
    `from ${nodeAt(t.from)} (the group’s ${t.from === '' && leaderBase(g.group) === null ? 'node: no leader' : 'leader'}); group ${stepText(body.periodMs)}${u ? `, unit ${stepText(u.stepMs)}` : ''}${kept === null ? '' : `; ${(kept / 1024).toFixed(0)} KiB of trends kept there`}${t.error ? ` — last read failed: ${t.error}` : ''}`,
  );
}

// ---------------------------------------------------------------- energy

const FIGURES = ['fanKwh', 'estimatedFanKwh', 'baselineFanKwh', 'coolingKwh', 'unitSeconds'];
/**
 * An hour's or a day's kWh (or unit-seconds) as a member reports it, or null: energy is never
 * negative, and 1e9 is beyond any hall's day, so a figure outside that is a fault and not counted
 * (summed as given, it would draw a bar below the axis or overflow the sum to Infinity).
 */
const energyFigure = (x) => (num(x) !== null && x >= 0 && x < 1e9 ? x : null);

/** Every member's energy report, summed per hour and day: each integrated only the groups it drove. */
async function pollEnergy() {
  const measured = state.energy?.hours?.some((h) => h.unitSeconds > 0 && h.baselineFanKwh > 0) ?? false;
  if (Date.now() - state.energyAtMs < (measured ? ENERGY_EVERY_MS : ENERGY_EMPTY_EVERY_MS)) return;
  state.energyAtMs = Date.now();
  const members = state.cluster?.members ?? [];
  const bases = members.length
    ? members.map((m) => {
        try {
          const o = new URL(m.apiUrl).origin;
          return { node: m.node, base: o === location.origin ? '' : o };
        } catch {
          return { node: m.node, base: null };
        }
      })
    : [{ node: state.node, base: '' }];
  const answers = await Promise.all(
    bases.map(async ({ node, base }) => {
      if (base === null) return { node, body: null };
      try {
        const r = await getJson(`${base}/api/v1/energy`);
        return { node, body: r.status === 200 && isObject(r.body) ? r.body : null };
      } catch {
        return { node, body: null };
      }
    }),
  );
  /** Members that sent a figure that is no energy: the operator is told their sums are short. */
  const faulty = new Set();
  const sum = (key) => {
    const by = new Map();
    for (const a of answers)
      for (const b of Array.isArray(a.body?.[key]) ? a.body[key] : []) {
        if (num(b?.startMs) === null) continue;
        const cur =
          by.get(b.startMs) ?? Object.fromEntries([['startMs', b.startMs], ...FIGURES.map((f) => [f, 0])]);
        for (const f of FIGURES) {
          const v = energyFigure(b[f]);
          if (v === null && b[f] !== undefined) faulty.add(a.node);
          cur[f] += v ?? 0;
        }
        by.set(b.startMs, cur);
      }
    return [...by.values()].sort((x, y) => x.startMs - y.startMs);
  };
  state.energy = {
    hours: sum('hours'),
    days: sum('days'),
    basis: String(answers.find((a) => a.body)?.body.basis ?? ''),
    missing: answers.filter((a) => !a.body).map((a) => a.node),
    faulty: [...faulty],
  };
}

const saving = (b) => {
  const kwh = b.baselineFanKwh - b.fanKwh;
  return { kwh, pct: b.baselineFanKwh > 0 ? (kwh / b.baselineFanKwh) * 100 : null };
};
const kwh = (x) => x.toFixed(Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : Math.abs(x) >= 1 ? 2 : 3);

function energyRow(label, b) {
  const s = saving(b);
  return el(
    'tr',
    { 'data-start': b.startMs },
    el('td', { text: label }),
    el('td', {
      class: 'num',
      text: kwh(b.fanKwh),
      title:
        b.estimatedFanKwh > 0 ? `${kwh(b.estimatedFanKwh)} kWh of it estimated from fan speed` : undefined,
    }),
    el('td', { class: 'num', text: kwh(b.baselineFanKwh) }),
    el('td', { class: 'num', text: kwh(s.kwh) }),
    el('td', { class: 'num', text: s.pct === null ? '–' : `${s.pct.toFixed(0)} %` }),
    el('td', { class: 'num', text: kwh(b.coolingKwh) }),
  );
}

function renderEnergy() {
  const e = state.energy;
  if (!e) return;
  const utcDay = (ms) => new Date(ms).toISOString().slice(0, 10);
  const utcHour = (ms) => `${new Date(ms).toISOString().slice(11, 16)} UTC`;
  const today = e.days.find((d) => utcDay(d.startMs) === utcDay(Date.now()));
  const faultyText = e.faulty.length
    ? ` Not counted: figures from ${e.faulty.join(', ')} that are no energy (not a number, negative or beyond any hall).`
    : '';
  if (today) {
    const s = saving(today);
    $('energy-summary').textContent = shown(
      `Today (UTC, ${(today.unitSeconds / 3600).toFixed(1)} unit-hours measured): fans ${kwh(today.fanKwh)} kWh against ${kwh(today.baselineFanKwh)} kWh on local control — ${s.kwh >= 0 ? 'saving' : 'over by'} ${kwh(Math.abs(s.kwh))} kWh${s.pct === null ? '' : ` (${Math.abs(s.pct).toFixed(0)} %)`}; cooling delivered ${kwh(today.coolingKwh)} kWh.` +
        (e.missing.length ? ` Not counted: ${e.missing.join(', ')} did not answer.` : '') +
        faultyText,
    );
  } else
    setText(
      $('energy-summary'),
      `No energy measured yet today: a node counts the units of the groups it drives.${e.missing.length ? ` ${e.missing.join(', ')} did not answer.` : ''}${faultyText}`,
    );
  $('energy-days').tBodies[0].replaceChildren(
    ...e.days
      .slice()
      .reverse()
      .map((d) => energyRow(utcDay(d.startMs), d)),
  );
  $('energy-hours').tBodies[0].replaceChildren(
    ...e.hours
      .slice(-24)
      .reverse()
      .map((h) => energyRow(`${utcDay(h.startMs)} ${utcHour(h.startMs)}`, h)),
  );
  setText($('energy-basis'), e.basis);
  $('energy-chart').replaceChildren(energyChart(e.hours));
}

/** The last 24 hours: per hour, the fans' kWh beside the baseline's, on a labelled kWh axis. */
function energyChart(hours) {
  const W = 560;
  const H = 220;
  const m = { l: 50, r: 10, t: 12, b: 30 };
  const end = Math.floor(Date.now() / 3_600_000) * 3_600_000;
  const slots = Array.from({ length: 24 }, (_, i) => end - (23 - i) * 3_600_000);
  const by = new Map(hours.map((h) => [h.startMs, h]));
  const top = Math.max(0.01, ...hours.map((h) => Math.max(h.baselineFanKwh, h.fanKwh)));
  const yt = ticks(0, top, 4);
  const yHi = Math.max(top, yt[yt.length - 1] ?? top);
  const bw = (W - m.l - m.r) / 24;
  const py = (v) => m.t + (1 - v / yHi) * (H - m.t - m.b);
  const svg = el('svg:svg', {
    viewBox: `0 0 ${W} ${H}`,
    class: 'chart energy',
    role: 'img',
    'aria-label': 'fan energy per hour, kWh, against the local-control baseline, last 24 hours',
  });
  for (const v of yt)
    svg.append(
      el('svg:line', { class: 'grid', x1: m.l, x2: W - m.r, y1: py(v), y2: py(v) }),
      el('svg:text', { class: 'y-label', x: m.l - 5, y: py(v) + 4, text: kwh(v) }),
    );
  svg.append(
    el('svg:text', {
      class: 'axis-title',
      x: 12,
      y: H / 2,
      transform: `rotate(-90 12 ${H / 2})`,
      text: 'kWh per hour',
    }),
  );
  slots.forEach((s, i) => {
    const x = m.l + i * bw;
    const h = by.get(s);
    if (h) {
      svg.append(
        el('svg:rect', {
          class: 'bar baseline',
          x: x + 1,
          y: py(h.baselineFanKwh),
          width: bw / 2 - 1,
          height: py(0) - py(h.baselineFanKwh),
        }),
        el('svg:rect', {
          class: 'bar fan',
          x: x + bw / 2,
          y: py(h.fanKwh),
          width: bw / 2 - 1,
          height: py(0) - py(h.fanKwh),
        }),
      );
    }
    if (i % 3 === 0)
      svg.append(
        el('svg:text', {
          class: 'x-label',
          x: x + bw / 2,
          y: H - m.b + 16,
          text: new Date(s).toISOString().slice(11, 16),
        }),
      );
  });
  svg.append(
    el('svg:line', { class: 'axis', x1: m.l, x2: m.l, y1: m.t, y2: H - m.b }),
    el('svg:line', { class: 'axis', x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }),
  );
  return el(
    'figure',
    { class: 'energy-figure' },
    el('figcaption', { text: 'Fan energy per hour (UTC), last 24 h' }),
    svg,
    el(
      'ul',
      { class: 'chart-key' },
      el(
        'li',
        {},
        el('span', { class: 'swatch baseline', 'aria-hidden': 'true' }),
        'left bar: local-control baseline',
      ),
      el(
        'li',
        {},
        el('span', { class: 'swatch fan', 'aria-hidden': 'true' }),
        'right bar: fans under coolctl',
      ),
    ),
  );
}

// ---------------------------------------------------------------- operator actions

function setOptions(select, values) {
  const want = values.map(([v, label]) => `${v}\u0000${label}`).join('\u0001');
  if (select.dataset.options === want) return;
  const keep = select.value;
  select.replaceChildren(...values.map(([v, label]) => el('option', { value: v, text: label })));
  if (values.some(([v]) => v === keep)) select.value = keep;
  select.dataset.options = want;
}

function renderActionChoices() {
  const targets = [];
  for (const g of state.site?.groups ?? []) {
    targets.push([g.id, `${g.id} (all its units)`]);
    for (const a of g.airHandlers) targets.push([`${g.id}/${a}`, `${g.id} / ${a}`]);
  }
  setOptions($('cmd-target'), targets);
  setOptions(
    $('sw-group'),
    (state.cluster?.groups ?? []).map((g) => [g.id, g.id]),
  );
  setOptions(
    $('pause-group'),
    (state.cluster?.groups ?? []).map((g) => [g.id, g.id]),
  );
  setOptions(
    $('sw-to'),
    (state.cluster?.members ?? []).map((m) => [m.node, m.node]),
  );
}

function originOf(url) {
  try {
    return new URL(url).origin;
  } catch {
    return null;
  }
}

/** This page's node or a member of the cluster as this node lists them. */
const isMemberOrigin = (origin) =>
  origin === location.origin || (state.cluster?.members ?? []).some((m) => originOf(m.apiUrl) === origin);

/**
 * Sends an operator action to the group's leader (as this page knows it); if that node answers 409
 * it names the leader's API, and the action follows it (a few hops at most: leadership may move).
 */
async function sendToLeader(group, action, payload) {
  let base = leaderBase(group) ?? '';
  for (let hop = 0; ; hop++) {
    const r = await postJson(`${base}/api/v1/groups/${encodeURIComponent(group)}/${action}`, payload);
    const body = r.body;
    const details = Array.isArray(body.details) ? body.details.filter((d) => typeof d === 'string') : [];
    const next = /leader API: (\S+)/.exec(details.join('\n'))?.[1];
    // Followed only to a member's own API: the session cookie goes with the action, and a cookie is
    // sent to every port of its host, so an address a node names is no place to send it.
    const origin = next ? originOf(next) : null;
    if (r.status === 409 && origin && hop < 3 && isMemberOrigin(origin)) {
      const nextBase = origin === location.origin ? '' : origin;
      if (nextBase !== base) {
        base = nextBase;
        continue;
      }
    }
    return { status: r.status, body, via: base || location.origin };
  }
}

function showResult(ok, text) {
  const p = $('action-result');
  p.className = ok ? 'ok' : 'bad';
  setText(p, text);
}

async function act(what, group, action, payload) {
  showResult(true, `${what}: sending…`);
  try {
    const r = await sendToLeader(group, action, payload);
    const ok = r.status >= 200 && r.status < 300;
    showResult(
      ok,
      `${what}: ${ok ? 'done' : `refused (${r.status} ${r.body.error ?? ''}: ${r.body.message ?? ''})`} via ${r.via}`,
    );
  } catch (err) {
    const base = leaderBase(group);
    showResult(
      false,
      `${what}: the leader did not answer (${err.message})${base ? `; open its dashboard at ${base}/` : ''}`,
    );
  }
  poll();
}

$('cmd-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const [group, ahu] = $('cmd-target').value.split('/');
  const payload = {};
  if (ahu) payload.ahu = ahu;
  if ($('cmd-fan').value !== '') payload.fanPct = Number($('cmd-fan').value);
  if ($('cmd-setpoint').value !== '') payload.supplySetpointC = Number($('cmd-setpoint').value);
  if (!group || Object.keys(payload).length === (ahu ? 1 : 0)) {
    showResult(false, 'manual command: give a fan % or a supply setpoint');
    return;
  }
  act(`manual command for ${ahu ?? `every unit of ${group}`}`, group, 'commands', payload);
});

/**
 * A change to a group's operator state (pause, resume, an override removed): kept in etcd, so this
 * node takes it whoever leads the group.
 */
async function actHere(what, method, path, payload) {
  showResult(true, `${what}: sending…`);
  try {
    const r = await postJson(path, payload, ACTION_TIMEOUT_MS, method);
    const ok = r.status >= 200 && r.status < 300;
    showResult(
      ok,
      `${what}: ${ok ? 'done' : `refused (${r.status} ${r.body.error ?? ''}: ${r.body.message ?? ''})`}`,
    );
  } catch (err) {
    showResult(false, `${what}: this node did not answer (${err.message})`);
  }
  poll();
}

$('cmd-clear').addEventListener('click', () => {
  const [group, ahu] = $('cmd-target').value.split('/');
  if (!group || !ahu) {
    showResult(false, 'clear override: choose one unit under "for"');
    return;
  }
  const g = encodeURIComponent(group);
  actHere(
    `clear override of ${ahu}`,
    'DELETE',
    `/api/v1/groups/${g}/overrides/${encodeURIComponent(ahu)}`,
    {},
  );
});

$('pause-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const group = $('pause-group').value;
  const reason = $('pause-reason').value.trim();
  actHere(
    `pause of ${group}`,
    'POST',
    `/api/v1/groups/${encodeURIComponent(group)}/pause`,
    reason ? { reason } : {},
  );
});

$('resume-send').addEventListener('click', () => {
  const group = $('pause-group').value;
  actHere(`resume of ${group}`, 'POST', `/api/v1/groups/${encodeURIComponent(group)}/resume`, {});
});

$('sw-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const group = $('sw-group').value;
  const to = $('sw-to').value;
  act(`switchover of ${group} to ${to}`, group, 'switchover', { to });
});

// ---------------------------------------------------------------- main loop

function render() {
  setText($('node-name'), state.node ?? '?');
  const ready = $('ready');
  ready.textContent = state.ready ? '✔ ready' : '✖ not ready';
  ready.className = `badge ${state.ready ? 'ok' : 'bad'}`;
  $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
  // Each section on its own: one that cannot draw what it got says so, the others still draw.
  const failed = [];
  for (const [what, draw] of [
    ['alarms', renderAlarms],
    ['floor map', updateFloor],
    ['rack', () => state.rack && renderRack()],
    ['control groups', renderGroups],
    ['air handlers', renderUnits],
    ['operator actions', renderActionChoices],
    ['trend choices', renderTrendChoices],
    ['trends', renderTrends],
    ['energy', renderEnergy],
    ['audit trail', renderAudit],
  ])
    try {
      draw();
    } catch (err) {
      failed.push(`${what}: cannot show what was read (${err.message})`);
    }
  state.renderErrors = failed;
  renderNotices();
  document.body.dataset.polls = String(Number(document.body.dataset.polls ?? 0) + 1);
}

async function loop() {
  try {
    await poll();
  } finally {
    // Whatever the poll met, the next one comes: a page that stops polling shows old figures as now.
    setTimeout(loop, POLL_MS);
  }
}
loop();
