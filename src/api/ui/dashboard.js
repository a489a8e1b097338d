// The operator dashboard's script (entry module): no framework, no build step, nothing from the
// internet. Every POLL_MS it reads this node's API (cluster, alarms, audit), each group's view and
// racks from the group's leader, the selected trend from that group's leader and the energy report
// from every member, then redraws. Operator actions go to the group's leader; alarm actions to this
// node (the alarms are the cluster's, docs/dashboard.md). Data is only ever put into the page as text
// (textContent, attributes), never as HTML. Every status shown in colour has its text or shape.
// An answer is used only when it is a 200 of the expected shape: a failed, malformed or hostile
// answer (a peer of another version, a proxy's error page) is named in the notices, and neither it
// nor a section that cannot be drawn stops the polling or the other sections.
// Each concern is a module beside this one (docs/dashboard.md, "The page's script"); this one
// wires them: it reads, then draws every section on its own, and schedules the next poll.

import { loadCommandRanges, renderActionChoices } from './actions.js';
import { pollAlarms, renderAlarms } from './alarms.js';
import { BadAnswer, getJson, refusedText } from './api.js';
import { auditSince, mergeAudit, renderAudit } from './audit.js';
import { pollGroups, pollHandOns, pollLive, readCluster } from './cluster-poll.js';
import { $, setText } from './dom.js';
import { pollEnergy, renderEnergy } from './energy.js';
import { drawFloor, updateFloor } from './floor-map.js';
import { sourceOf } from './members.js';
import { renderNotices } from './notices.js';
import { pollRack, renderRack } from './rack.js';
import { forgetData, signedIn, signedOut } from './session.js';
import { index, refresh, state } from './state.js';
import { renderGroups, renderUnits } from './tables.js';
import { pollTrend, renderTrendChoices, renderTrends } from './trends.js';

const POLL_MS = 1500;

// A part that scrolls (a table wider than its half of a 1366 px screen, the energy tables) takes the
// focus, so the arrow keys scroll it: there is nothing else in it to focus.
for (const e of document.querySelectorAll('.scrolls')) e.tabIndex = 0;

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

refresh.now = poll;

async function loop() {
  try {
    await poll();
  } finally {
    // Whatever the poll met, the next one comes: a page that stops polling shows old figures as now.
    setTimeout(loop, POLL_MS);
  }
}

loop();
