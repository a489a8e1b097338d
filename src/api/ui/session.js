// Signing in and out. What an operator read goes with the session: signing out (or a 401 from
// this node) empties the page, and a poll that began in an earlier session neither keeps nor
// shows what it read. A sign-out that did not close the session is named in the notices.

import { postJson, whenUnauthorized } from './api.js';
import { $, setText } from './dom.js';
import { renderNotices } from './notices.js';
import { refresh, sessionData, state } from './state.js';

whenUnauthorized(() => signedOut());

export function signedOut(message) {
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

export function signedIn(me) {
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
  refresh.now();
});

/**
 * What the signed-in operator read goes with the session: the next person at a shared console
 * signs in to an empty page, not to the last one's alarms and audit trail hidden in it.
 */
export function forgetData() {
  Object.assign(state, sessionData());
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
