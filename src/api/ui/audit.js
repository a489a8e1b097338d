// The audit trail as this node keeps it: read by `since`, the newest AUDIT_ROWS_MAX kept, entries
// read while their action ran asked for again until answered. Entries are shown as text, clipped.

import { isObject, num } from './api.js';
import { $, clip, el, setText } from './dom.js';
import { state } from './state.js';

/** Audit entries the page keeps and lists, the newest; it says how many older ones it read and left out. */
const AUDIT_ROWS_MAX = 200;

/**
 * How long the page keeps asking for the answer of an entry it read pending. An action's answer
 * comes within its request (seconds); one still pending after this lost its node or etcd mid-action
 * and stays "no outcome recorded" (a reload asks again).
 */
const AUDIT_PENDING_MS = 60_000;

/** The `since` of the next audit read: from the oldest entry still awaiting its answer, if any. */
export function auditSince() {
  const now = Date.now();
  let since = state.auditSeq;
  for (const [seq, seenMs] of state.auditPending) {
    if (now - seenMs > AUDIT_PENDING_MS) state.auditPending.delete(seq);
    else since = Math.min(since, seq - 1);
  }
  return since;
}

export function mergeAudit(body) {
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

export function renderAudit() {
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
