// Orders strings by UTF-16 code unit, as `Array.prototype.sort` does by default: the same order on
// every node whatever its locale. `localeCompare` loads ICU's collation data on its first call,
// ~2.4 MB of the daemon's RSS (docs/scale.md), for names that are identifiers.
export function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
