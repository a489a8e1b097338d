// An address as it may be shown or logged: without the user name or password it may carry.
// Used wherever an address that came from outside (a member record, an option) is printed or logged.

/**
 * An address without a user name or password in it. Only an address with an `@` can hold one; if
 * stripping its user info does not leave it without `@`, or it does not parse, it is not shown at
 * all (what is before an `@` may be a password).
 */
export function withoutCredentials(text: string): string {
  if (!text.includes('@')) return text;
  try {
    const u = new URL(text);
    u.username = '';
    u.password = '';
    const href = u.href.replace(/\/$/, text.endsWith('/') ? '/' : '');
    if (!href.includes('@')) return href;
  } catch {}
  return '(an address that holds "@", not shown)';
}
