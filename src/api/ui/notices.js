// The notices: what only this browser knows (an API it could not read, a section it could not
// draw, a member outside the page's CSP). They are no alarms (the cluster keeps those), and the
// list is a live region rewritten only when its words change.
import { $, el } from './dom.js';
import { isMemberOrigin, nodeAt, originOf } from './members.js';
import { state } from './state.js';

/** What only this browser knows: an API it could not read. These are no alarms (the cluster keeps those). */
export function renderNotices() {
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
