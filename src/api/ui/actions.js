// Operator actions: manual commands and switchover go to the group's leader (following a 409 to a
// member's API only), pause/resume/overrides to this node (kept in etcd). Each result is shown as
// text, and the page polls at once after it.

import { ACTION_TIMEOUT_MS, getJson, postJson } from './api.js';
import { $, setOptions, setText } from './dom.js';
import { isMemberOrigin, leaderBase, originOf } from './members.js';
import { refresh, state } from './state.js';

/**
 * The manual-command form's bounds: the device contract's ranges, as the API's own request schema
 * states them (the page keeps no copy). Null until the API answers (a failed fetch is tried at the
 * next poll); the form works without them, and the API refuses a value out of range with its reason.
 */
export async function loadCommandRanges() {
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

export function renderActionChoices() {
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
  refresh.now();
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
  refresh.now();
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
