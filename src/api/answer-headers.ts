// The headers every answer of the API carries, whoever makes it: a route, a refusal, the error
// handler, the router's own errors, and the raw answer to a request node could not read. An answer
// is data (JSON, Prometheus text), never a page: nothing may frame it, run in it, cache it, sniff it
// as another type, or learn from a Referer where it came from. The dashboard's page and assets
// replace the policy and the cache rule with their own (./dashboard.ts).

/** For JSON and text answers: nothing loads, nothing frames (the page sets its own). */
export const DATA_POLICY = "default-src 'none'; frame-ancestors 'none'";

export const ANSWER_HEADERS: Readonly<Record<string, string>> = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'content-security-policy': DATA_POLICY,
  // CSP frame-ancestors is the rule; browsers that predate it read this one.
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};

/** The same headers as lines of a raw HTTP answer (each ending in CRLF), for a socket fastify never saw. */
export const RAW_ANSWER_HEADERS = Object.entries(ANSWER_HEADERS)
  .map(([k, v]) => `${k}: ${v}\r\n`)
  .join('');
