// A string kept for the life of the process, as one flat string. V8 builds a string made by
// concatenation (`${a}~${b}`) as a tree of cons strings, one heap object per join, and leaves it so
// until something flattens it; a key kept in a Map for hours is then 3–5 objects for every
// collection of the old generation to mark. A copy decoded from its UTF-8 bytes is always one.

/** `s` as a single flat string (same characters): for strings made once and kept. */
export function flatString(s: string): string {
  const copy = Buffer.from(s, 'utf8').toString('utf8');
  // A lone surrogate does not survive UTF-8: such a string is kept as it was.
  return copy === s ? copy : s;
}
