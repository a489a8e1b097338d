// A node's API address as a member advertises it and clients follow it: an origin (scheme, host,
// port) and nothing else. One rule for every apiUrl that comes from outside the process — a member
// record in etcd, a cluster answer the CLI reads — since each is dialled with an operator's token,
// trusted as a CORS origin and written into the dashboard's CSP.

/** Longest apiUrl accepted (a scheme, a host name of at most 253 characters, a port). */
export const API_URL_MAX_CHARS = 512;

/**
 * An origin as every consumer can read it: a host of letters, digits, dots and hyphens (no `*`, `%`,
 * `_`) or a bracketed IPv6 address, and a port. The URL parser lets `;`, `,` and quotes into a host
 * (`http://a;script-src`), which a CSP header would read as the end of a directive.
 */
const ORIGIN =
  /^https?:\/\/(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?$/;

/** The origin an API URL names (lower-cased, no trailing slash), or why it names none. */
export function apiOrigin(apiUrl: unknown): { origin: string } | { why: string } {
  if (typeof apiUrl !== 'string' || apiUrl.length > API_URL_MAX_CHARS)
    return { why: `not a URL of at most ${API_URL_MAX_CHARS} characters` };
  if (!/^[\x21-\x7e]+$/.test(apiUrl) || /[;,'"]/.test(apiUrl))
    return { why: 'holds a space, a quote, `;`, `,`, a control or a non-ASCII character' };
  let u: URL;
  try {
    u = new URL(apiUrl);
  } catch {
    return { why: 'not a URL' };
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return { why: 'not an http(s) URL' };
  if (u.username !== '' || u.password !== '') return { why: 'carries credentials' };
  if (u.pathname !== '/' || u.search !== '' || u.hash !== '' || /[?#]/.test(apiUrl))
    return { why: 'has a path, query or fragment: an API URL is an origin' };
  if (u.port === '0') return { why: 'names port 0' };
  if (!ORIGIN.test(u.origin))
    return { why: 'its host is not a DNS name, an IPv4 or a bracketed IPv6 address' };
  return { origin: u.origin };
}
