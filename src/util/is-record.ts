// Whether a parsed JSON value is an object with named fields (not null, not an array): the first
// check every reader of untrusted JSON makes before it looks at a field.
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
