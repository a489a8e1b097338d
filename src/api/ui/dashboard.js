// The operator dashboard's script: no framework, no build step, nothing from the internet. Every
// POLL_MS it reads this node's API (cluster, live overlay, trends, audit) and each group's view from
// the group's leader, then redraws. Operator actions go to the group's leader (docs/dashboard.md).
// Data is only ever put into the page as text (textContent, attributes), never as HTML.

const POLL_MS = 1500;
const FETCH_TIMEOUT_MS = 3000;
const ACTION_TIMEOUT_MS = 15000;
const WINDOW_MS = 10 * 60_000;
/** A unit whose last good write is older than this is "not driven". */
const STALE_WRITE_MS = 10_000;
const SVG = 'http://www.w3.org/2000/svg';

const state = {
  node: null,
  ready: null,
  site: null,
  cluster: null,
  live: null,
  /** group → { view, from, error } */
  views: new Map(),
  /** group → { node, reason, atMs }: the newest time any member handed it on (relinquished). */
  handOns: new Map(),
  /** group → { t: [], fanPct: [], inletMaxC: [] } */
  trends: new Map(),
  trendsSince: 0,
  audit: [],
  /** Who this page is signed in as ({user, role}); null: show the sign-in form. */
  me: null,
  auditSeq: 0,
  pollError: null,
  /** The command form's bounds, from the API's schema (once). */
  commandRanges: null,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const e = tag.startsWith('svg:')
    ? document.createElementNS(SVG, tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === 'text') e.textContent = String(v);
    else e.setAttribute(k, String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
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

async function postJson(url, payload, timeoutMs = ACTION_TIMEOUT_MS) {
  const r = await fetch(url, {
    method: 'POST',
    credentials: 'include',
    headers: { 'content-type': 'application/json', 'x-coolctl-request': 'dashboard' },
    body: JSON.stringify(payload),
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: r.status, body: await r.json().catch(() => ({})) };
}

// ---------------------------------------------------------------- signing in

function signedOut(message) {
  state.me = null;
  $('main').hidden = true;
  $('sign-in-section').hidden = false;
  $('sign-out').hidden = true;
  $('whoami').textContent = '';
  if (message) $('sign-in-result').textContent = message;
}

function signedIn(me) {
  state.me = me;
  $('sign-in-section').hidden = true;
  $('main').hidden = false;
  $('sign-out').hidden = false;
  $('whoami').textContent = `${me.user} (${me.role})`;
}

$('sign-in-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const name = $('sign-in-name').value.trim();
  const r = await postJson('/api/v1/auth/sign-in', { name, password: $('sign-in-password').value }).catch(
    (err) => ({ status: 0, body: { message: err.message } }),
  );
  $('sign-in-password').value = '';
  if (r.status !== 200) {
    $('sign-in-result').textContent = `not signed in: ${r.body.message ?? r.status}`;
    return;
  }
  signedIn({ user: r.body.user, role: r.body.role });
  poll();
});

$('sign-out').addEventListener('click', async () => {
  await postJson('/api/v1/auth/sign-out', {}).catch(() => null);
  signedOut('signed out');
});

const fmt = (x, digits = 1) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(digits) : '–');
const ago = (ms) => (ms ? `${Math.max(0, Math.round((Date.now() - ms) / 1000))} s ago` : 'never');

/** The API base of the node that leads `group` ('' for this node), or null when nobody leads it. */
function leaderBase(group) {
  const g = state.cluster?.groups.find((x) => x.id === group);
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
      drawFloor();
    }
    if (!state.commandRanges) state.commandRanges = await loadCommandRanges();
    const [ready, cluster, live, trends, audit] = await Promise.all([
      getJson('/readyz'),
      getJson('/api/v1/cluster'),
      getJson('/api/v1/site/live'),
      getJson(`/api/v1/trends?sinceMs=${state.trendsSince}`),
      getJson(`/api/v1/audit?since=${state.auditSeq}`),
    ]);
    state.ready = ready.body?.ready === true;
    state.cluster = cluster.body;
    state.live = live.body;
    mergeTrends(trends.body);
    mergeAudit(audit.body);
    await Promise.all([...state.cluster.groups.map((g) => pollGroup(g.id)), pollHandOns()]);
    state.pollError = null;
  } catch (err) {
    state.pollError = `this node's API did not answer: ${err.message}`;
  }
  render();
}

/** A group's view (driving, units and their held commands) from its leader, else from this node. */
async function pollGroup(group) {
  const base = leaderBase(group);
  const from = base === null ? '' : base;
  try {
    const r = await getJson(`${from}/api/v1/groups/${encodeURIComponent(group)}`);
    state.views.set(group, { view: r.body, from, error: r.status === 200 ? null : `HTTP ${r.status}` });
  } catch (err) {
    state.views.set(group, { view: null, from, error: `${from || 'this node'} unreachable: ${err.message}` });
  }
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
          const r = await getJson(`${new URL(m.apiUrl).origin}/api/v1/cluster`);
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

function mergeTrends(body) {
  if (!body) return;
  const cutoff = Date.now() - WINDOW_MS;
  for (const s of body.groups) {
    const cur = state.trends.get(s.group) ?? { t: [], fanPct: [], inletMaxC: [] };
    const last = cur.t.at(-1) ?? 0;
    s.t.forEach((t, i) => {
      if (t <= last) return; // an overlapping poll already has it
      cur.t.push(t);
      cur.fanPct.push(s.fanPct[i]);
      cur.inletMaxC.push(s.inletMaxC[i]);
    });
    const drop = cur.t.findIndex((t) => t >= cutoff);
    if (drop > 0) for (const k of ['t', 'fanPct', 'inletMaxC']) cur[k].splice(0, drop);
    state.trends.set(s.group, cur);
    if (s.t.length) state.trendsSince = Math.max(state.trendsSince, s.t[s.t.length - 1]);
  }
}

function mergeAudit(body) {
  if (!body) return;
  if (body.lastSeq < state.auditSeq) {
    // The node restarted: its log starts again at 1.
    state.audit = [];
    state.auditSeq = 0;
  }
  state.audit.push(...body.entries.filter((e) => e.seq > state.auditSeq));
  if (state.audit.length > 200) state.audit.splice(0, state.audit.length - 200);
  state.auditSeq = Math.max(state.auditSeq, body.lastSeq);
}

// ---------------------------------------------------------------- alarms

/** Alarms derived from what the page sees; each { level: 'critical' | 'warning', text }. */
function deriveAlarms() {
  const out = [];
  const now = Date.now();
  if (state.pollError) out.push({ level: 'critical', text: state.pollError });
  if (state.ready === false)
    out.push({
      level: 'critical',
      text: `${state.node}: not ready (no live etcd lease): it cannot lead any group`,
    });
  for (const g of state.cluster?.groups ?? []) {
    if (!g.leader) {
      out.push({ level: 'critical', text: `${g.id}: no leader: its units run on local control` });
      continue;
    }
    const v = state.views.get(g.id);
    if (v?.error) {
      out.push({
        level: 'warning',
        text: `${g.id}: cannot read the group from its leader ${g.leader}: ${v.error}`,
      });
      continue;
    }
    const handover = handoverOf(g);
    if (handover)
      out.push({
        level: handover.level === 'bad' ? 'critical' : 'warning',
        text: `${g.id}: ${handover.text}`,
      });
    if (v?.view && !v.view.driving)
      out.push({ level: 'critical', text: `${g.id}: its leader ${g.leader} does not drive its units` });
    for (const u of v?.view?.driving ? v.view.units : []) {
      if (u.lastError) out.push({ level: 'critical', text: `${u.ahu}: write failed: ${u.lastError}` });
      else if (!u.lastWriteOkMs || now - u.lastWriteOkMs > STALE_WRITE_MS)
        out.push({
          level: 'critical',
          text: `${u.ahu}: not driven (last good write ${ago(u.lastWriteOkMs)})`,
        });
    }
    const sensors = state.live?.groups?.[g.id];
    if (sensors?.verdict === 'blind') out.push({ level: 'critical', text: `${g.id}: sensors blind` });
    else if (sensors?.verdict === 'degraded')
      out.push({ level: 'warning', text: `${g.id}: sensors degraded` });
    if (sensors?.inletMaxC > 32)
      out.push({ level: 'critical', text: `${g.id}: inlet ${fmt(sensors.inletMaxC)} °C above 32 °C` });
    else if (sensors?.inletMaxC > 27)
      out.push({ level: 'warning', text: `${g.id}: inlet ${fmt(sensors.inletMaxC)} °C above 27 °C` });
  }
  for (const [ahu, u] of Object.entries(state.live?.units ?? {}))
    if (u.link !== 'up') out.push({ level: 'warning', text: `${ahu}: link ${u.link} from ${state.node}` });
  return out;
}

// ---------------------------------------------------------------- floor map

/** Rack fill by inlet °C against the ASHRAE A1 envelope; grey: no data. */
function inletColour(c) {
  if (typeof c !== 'number') return '#cfd8dc';
  if (c > 32) return '#c62828';
  if (c > 27) return '#ef6c00';
  if (c < 18) return '#64b5f6';
  const k = (c - 18) / 9; // 18 °C green → 27 °C yellow
  return `rgb(${Math.round(102 + k * 151)}, ${Math.round(187 - k * 5)}, ${Math.round(106 - k * 80)})`;
}

/** Rooms side by side, 1 m apart; coordinates in metres. */
function drawFloor() {
  const site = state.site;
  const host = $('floor');
  host.replaceChildren();
  if (site.missing) {
    host.append(el('p', { class: 'muted', text: 'This node was started without a site model.' }));
    return;
  }
  $('site-name').textContent = site.name;
  const offset = new Map();
  let x = 0.5;
  let depth = 0;
  for (const r of site.rooms) {
    offset.set(r.id, x);
    x += r.widthM + 1;
    depth = Math.max(depth, r.depthM);
  }
  const svg = el('svg:svg', {
    viewBox: `0 0 ${x - 0.5} ${depth + 1}`,
    role: 'img',
    'aria-label': 'floor map',
  });
  for (const r of site.rooms) {
    svg.append(
      el('svg:rect', { class: 'room', x: offset.get(r.id), y: 0.5, width: r.widthM, height: r.depthM }),
    );
    svg.append(el('svg:text', { x: offset.get(r.id) + 0.1, y: 0.9, text: r.name }));
  }
  for (const k of site.racks) {
    const g = el('svg:g', { class: 'rack-g' });
    const rect = el('svg:rect', {
      class: 'rack',
      'data-id': k.id,
      x: offset.get(k.room) + k.xM - 0.28,
      y: 0.5 + k.yM - 0.5,
      width: 0.56,
      height: 1,
      fill: inletColour(null),
    });
    rect.append(el('svg:title', { text: `${k.id} (${k.row}, ${k.group ?? 'no group'}): no data` }));
    g.append(
      rect,
      el('svg:text', {
        class: 'rack-label',
        x: offset.get(k.room) + k.xM - 0.25,
        y: 0.5 + k.yM + 0.06,
        text: k.id,
      }),
    );
    svg.append(g);
  }
  for (const a of site.airHandlers) {
    const rect = el('svg:rect', {
      class: 'ahu',
      'data-id': a.id,
      x: offset.get(a.room) + a.xM - 0.9,
      y: 0.5 + a.yM - 0.45,
      width: 1.8,
      height: 0.9,
      fill: '#e3f2fd',
    });
    rect.append(
      el('svg:title', { text: `${a.id} (${a.protocol}, ${a.capacityKw} kW, ${a.group ?? 'no group'})` }),
    );
    svg.append(
      rect,
      el('svg:text', { x: offset.get(a.room) + a.xM - 0.8, y: 0.5 + a.yM + 0.12, text: a.id }),
    );
  }
  host.append(svg);
}

function updateFloor() {
  const live = state.live;
  if (!live || !state.site || state.site.missing) return;
  for (const rect of document.querySelectorAll('#floor rect.rack')) {
    const id = rect.getAttribute('data-id');
    const c = live.racks?.[id];
    rect.setAttribute('fill', inletColour(c));
    rect.querySelector('title').textContent =
      `${id}: ${typeof c === 'number' ? `inlet ${fmt(c)} °C` : 'no data'}`;
  }
  const units = unitRows();
  for (const rect of document.querySelectorAll('#floor rect.ahu')) {
    const u = units.get(rect.getAttribute('data-id'));
    rect.setAttribute('fill', !u?.drivenBy ? '#eceff1' : u.error ? '#ffcdd2' : '#c8e6c9');
  }
  $('floor-legend').textContent = live.rackInletsKnown
    ? 'Racks by inlet: blue < 18 °C, green–yellow 18–27 °C, orange > 27 °C, red > 32 °C, grey no data. Units: green driven, red write error, grey not driven.'
    : 'Rack inlets: no data (this node has no sensor view of them). Units: green driven, red write error, grey not driven.';
}

// ---------------------------------------------------------------- tables

/** Every unit of the site with what its group's leader holds for it. */
function unitRows() {
  const rows = new Map();
  for (const a of state.site?.airHandlers ?? []) rows.set(a.id, { ahu: a.id, group: a.group });
  for (const [group, v] of state.views) {
    if (!v.view?.driving) continue;
    const leader = state.cluster?.groups.find((g) => g.id === group)?.leader ?? null;
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

function renderGroups() {
  const body = $('groups').tBodies[0];
  body.replaceChildren(
    ...(state.cluster?.groups ?? []).map((g) => {
      const v = state.views.get(g.id);
      const s = state.live?.groups?.[g.id];
      return el(
        'tr',
        { 'data-group': g.id },
        el('td', { text: g.id }),
        el('td', { class: g.leader ? '' : 'bad', text: g.leader ?? 'none' }),
        el('td', { text: g.epoch ?? '–' }),
        el('td', { text: g.state }),
        el('td', { text: v?.view ? (v.view.driving ? 'yes' : 'no') : (v?.error ?? '…') }),
        el('td', {
          class: `handover ${handoverOf(g)?.level ?? ''}`,
          text: handoverOf(g)?.text ?? '–',
        }),
        el('td', { text: s ? `${s.verdict} (${Math.round(s.coverage * 100)} %)` : 'no data' }),
        el('td', { text: s?.inletMaxC == null ? 'no data' : `${fmt(s.inletMaxC)} °C` }),
      );
    }),
  );
}

function renderUnits() {
  const body = $('units').tBodies[0];
  const links = state.live?.units ?? {};
  body.replaceChildren(
    ...[...unitRows().values()].map((u) =>
      el(
        'tr',
        { 'data-ahu': u.ahu },
        el('td', { text: u.ahu }),
        el('td', { text: u.group ?? '–' }),
        el('td', { class: u.drivenBy ? '' : 'warn', text: u.drivenBy ?? 'nobody' }),
        el('td', { class: 'held-fan', text: fmt(u.held?.fanPct) }),
        el('td', { class: 'held-setpoint', text: fmt(u.held?.supplySetpointC) }),
        el('td', { class: u.error ? 'bad' : '', text: u.error ? `error: ${u.error}` : ago(u.lastWriteOkMs) }),
        el('td', {
          class: links[u.ahu]?.link === 'up' ? 'ok' : 'warn',
          text: links[u.ahu]?.link ?? 'no data',
        }),
      ),
    ),
  );
}

function renderAudit() {
  const body = $('audit').tBodies[0];
  body.replaceChildren(
    ...state.audit
      .slice()
      .reverse()
      .map((e) => {
        const when = new Date(e.atMs).toLocaleTimeString();
        if (e.kind === 'role')
          return el(
            'tr',
            { 'data-kind': 'role' },
            el('td', { text: e.seq }),
            el('td', { text: when }),
            el('td', { text: e.node }),
            el('td', { text: `${e.group}: ${e.from} → ${e.to}${e.epoch ? ` (epoch ${e.epoch})` : ''}` }),
            el('td', { text: e.reason }),
          );
        return el(
          'tr',
          { 'data-kind': 'operator' },
          el('td', { text: e.seq }),
          el('td', { text: when }),
          el('td', { text: `${e.user} (${e.role}) @ ${e.clientIp} via ${e.node}` }),
          el('td', { text: `${e.action} ${e.group ?? ''} ${e.params ? JSON.stringify(e.params) : ''}` }),
          el('td', {
            class: e.status < 300 ? 'ok' : 'bad',
            text: e.error ? `${e.status} ${e.error.code}` : `${e.status}`,
          }),
        );
      }),
  );
}

function renderAlarms() {
  const alarms = deriveAlarms();
  $('alarms').replaceChildren(
    ...(alarms.length
      ? alarms.map((a) => el('li', { class: a.level, text: a.text }))
      : [el('li', { class: 'none', text: 'no alarms' })]),
  );
}

// ---------------------------------------------------------------- trends

function path(ts, ys, x0, lo, hi) {
  let d = '';
  let pen = false;
  for (let i = 0; i < ts.length; i++) {
    const y = ys[i];
    if (typeof y !== 'number') {
      pen = false;
      continue;
    }
    const px = ((ts[i] - x0) / WINDOW_MS) * 320;
    const py = 85 - ((Math.min(hi, Math.max(lo, y)) - lo) / (hi - lo)) * 80;
    d += `${pen ? 'L' : 'M'}${px.toFixed(1)},${py.toFixed(1)} `;
    pen = true;
  }
  return d.trim();
}

function renderTrends() {
  const x0 = Date.now() - WINDOW_MS;
  $('trends').replaceChildren(
    ...[...state.trends].map(([group, s]) => {
      const lastFan = s.fanPct.findLast((v) => typeof v === 'number');
      const lastInlet = s.inletMaxC.findLast((v) => typeof v === 'number');
      const svg = el(
        'svg:svg',
        { viewBox: '0 0 320 90', role: 'img', 'aria-label': `${group} trend` },
        el('svg:path', { class: 'fan', d: path(s.t, s.fanPct, x0, 0, 100) }),
        el('svg:path', { class: 'inlet', d: path(s.t, s.inletMaxC, x0, 15, 35) }),
      );
      return el(
        'div',
        { class: 'trend', 'data-group': group },
        el('div', {
          text: `${group}: fan ${fmt(lastFan)} %, inlet ${lastInlet === undefined ? 'no data' : `${fmt(lastInlet)} °C`}`,
        }),
        svg,
      );
    }),
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
    $('sw-to'),
    (state.cluster?.members ?? []).map((m) => [m.node, m.node]),
  );
}

/**
 * Sends an operator action to the group's leader (as this page knows it); if that node answers 409
 * it names the leader's API, and the action follows it (a few hops at most: leadership may move).
 */
async function sendToLeader(group, action, payload) {
  let base = leaderBase(group) ?? '';
  for (let hop = 0; ; hop++) {
    const r = await postJson(`${base}/api/v1/groups/${encodeURIComponent(group)}/${action}`, payload);
    const body = r.body;
    const next = /leader API: (\S+)/.exec((body.details ?? []).join('\n'))?.[1];
    if (r.status === 409 && next && hop < 3) {
      const origin = new URL(next).origin;
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
  p.textContent = text;
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

$('sw-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const group = $('sw-group').value;
  const to = $('sw-to').value;
  act(`switchover of ${group} to ${to}`, group, 'switchover', { to });
});

// ---------------------------------------------------------------- main loop

function render() {
  $('node-name').textContent = state.node ?? '?';
  const ready = $('ready');
  ready.textContent = state.ready ? 'ready' : 'not ready';
  ready.className = `badge ${state.ready ? 'ok' : 'bad'}`;
  $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
  renderAlarms();
  updateFloor();
  renderGroups();
  renderUnits();
  renderActionChoices();
  renderTrends();
  renderAudit();
  document.body.dataset.polls = String(Number(document.body.dataset.polls ?? 0) + 1);
}

async function loop() {
  await poll();
  setTimeout(loop, POLL_MS);
}
loop();
