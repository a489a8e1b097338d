// Reading and writing the API: every request has a deadline, carries the session cookie to any
// member, and a state-changing one carries X-Coolctl-Request. An answer is used only when it is a
// 200 of the expected shape; `refusedText`, `isObject` and `num` say why one is not.

const FETCH_TIMEOUT_MS = 3000;

export const ACTION_TIMEOUT_MS = 15000;

/** What a 401 from this node does: signing out, which session.js registers (it imports this module). */
const unauthorized = { handler: () => {} };
export const whenUnauthorized = (handler) => {
  unauthorized.handler = handler;
};

// The session cookie goes to every member (credentials: include; the API's CORS allows only the
// cluster's own pages), and every state-changing request carries X-Coolctl-Request, which a
// cross-site form cannot send.

export async function getJson(url) {
  const r = await fetch(url, {
    signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    cache: 'no-store',
    credentials: 'include',
  });
  const body = await r.json().catch(() => null);
  if (r.status === 401 && !/^https?:/.test(url)) unauthorized.handler();
  return { status: r.status, body };
}

/** An answer came, but not one the page can use (an error status, another shape). */
export class BadAnswer extends Error {}

/** Why an answer cannot be used: its status and the API's own message, for the notices. */
export const refusedText = (r) =>
  `answered ${r.status}${typeof r.body?.message === 'string' ? `: ${r.body.message}` : ''}`;

export const isObject = (x) => typeof x === 'object' && x !== null && !Array.isArray(x);

/** A finite number, else null: a malformed answer shows "no data", never NaN or a wrong figure. */
export const num = (x) => (typeof x === 'number' && Number.isFinite(x) ? x : null);

export async function postJson(url, payload, timeoutMs = ACTION_TIMEOUT_MS, method = 'POST') {
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
