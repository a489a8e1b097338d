// What the page holds between polls, in one place every section imports: the answers read, the
// lookups by id built from them, and the map's drawn items. Sections change it; only the entry
// module's poll replaces it wholesale, and signing out empties it (session.js).

/** The recent window: the trends' last 10 minutes, and how long a hand-on is shown beside its group. */
export const WINDOW_MS = 10 * 60_000;

/**
 * What the signed-in operator read: made anew when the page opens and when the session ends
 * (session.js's forgetData), so the next person at a shared console starts from an empty page.
 */
export const sessionData = () => ({
  ready: null,
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
  auditSeq: 0,
  /**
   * Entries read while their action was still running (outcome pending), by seq: when the page
   * first saw each. The node completes an entry in place (same seq), so `since` alone would never
   * bring the answer: the page asks again from the oldest of these for AUDIT_PENDING_MS.
   */
  auditPending: new Map(),
  pollError: null,
  /** This node's audit trail could not be read (why). */
  auditError: null,
  /** The cluster's alarms: { list, error }. */
  alarms: { list: [], error: null },
  /** The rack whose sensors are shown: { id, body, from, error }. */
  rack: null,
  /** The energy report summed over the members: { hours, days, basis, members, missing } and when read. */
  energy: null,
  energyAtMs: 0,
});

export const state = {
  node: null,
  site: null,
  /** Who this page is signed in as ({user, role}); null: show the sign-in form. */
  me: null,
  /** Sections that could not be drawn (why). */
  renderErrors: [],
  /** The sign-out button was pressed but the session is still open (why). */
  signOutError: null,
  /** Counts sign-outs: a poll that began in an earlier session neither keeps nor shows what it read. */
  session: 0,
  /** The command form's bounds, from the API's schema (once). */
  commandRanges: null,
  /** Which alarms to show: 'active' | 'all'. */
  alarmFilter: 'active',
  /** Trends: what is shown ('group:ID' | 'unit:ID'), the range, the last answer and whence. */
  trend: { subject: null, range: 'recent', body: null, from: '', error: null, readAtMs: 0, key: '' },
  /** Member origins the browser refused to connect to: not in the policy this page was served with. */
  outsidePolicy: new Set(),
  ...sessionData(),
};

/**
 * Lookups by id, rebuilt when what they index is read again (the site once, the cluster every
 * poll): at 1 000 units and 5 000 racks a search of the lists per rack and unit per poll is
 * millions of steps (docs/dashboard.md, "At full size").
 */
export const index = {
  groups: new Map(),
  airHandlers: new Map(),
  racks: new Map(),
  /** A group view → its units by id. */
  unitsOf: new WeakMap(),
};

export const unitOf = (view, ahu) => {
  let m = index.unitsOf.get(view);
  if (!m) {
    m = new Map(view.units.map((u) => [u.ahu, u]));
    index.unitsOf.set(view, m);
  }
  return m.get(ahu);
};

/**
 * The map's racks and units as drawn: element, id, group, centre (m, map coordinates) and what it
 * last showed (`sig`). A poll rewrites only the items whose figures changed: at 5 000 racks and
 * 1 000 units, rewriting all of them every 1.5 s kept the browser's main thread busy (and the
 * screen reader's tree churning) for nothing.
 */
export const floorItems = {
  racks: [],
  ahus: [],
  geo: null,
  /** A drawn rack's or unit's element → its entry in `floorItems` (for the map's one key handler). */
  ofElement: new WeakMap(),
  /** The matches of the find box as the page last applied them (null: everything shown). */
  found: null,
};

/**
 * The next poll at once, wired in by the entry module (dashboard.js): signing in and the operator
 * actions ask for it without importing the loop, so no module imports the one that imports it.
 */
export const refresh = { now: () => {} };
