// The version the CLI, the API and the logs report, and the wire versions this release speaks; one
// place, and cheap to import.
//
// Wire compatibility (docs/upgrade.md): a release speaks every wire version from `oldest` to
// `version`. Two nodes talk at the highest version both speak; a node ignores fields it does not
// know in peer frames and etcd values. A new version may add fields and frame types (sent only to
// peers that agreed to it); dropping or changing one raises `oldest`, and a rolling upgrade refuses
// a step whose new release no longer speaks the running one's version.
export const VERSION = '0.1.0';

export interface WireRange {
  /** Newest wire version this release speaks (and writes when every peer speaks it). */
  version: number;
  /** Oldest wire version this release still reads and speaks. */
  oldest: number;
}

export const WIRE: WireRange = Object.freeze({ version: 1, oldest: 1 });

/** The highest wire version both ranges speak, or null when they have none in common. */
export function agreedWireVersion(a: WireRange, b: WireRange): number | null {
  const v = Math.min(a.version, b.version);
  return v >= Math.max(a.oldest, b.oldest) ? v : null;
}

/** A wire range as a peer or an etcd value states it, or null when it states none we can use. */
export function parseWireRange(version: unknown, oldest: unknown): WireRange | null {
  if (!Number.isSafeInteger(version) || (version as number) < 1) return null;
  // Releases before `oldest` existed sent only `v`: they speak that version alone.
  const o = oldest === undefined ? version : oldest;
  if (!Number.isSafeInteger(o) || (o as number) < 1 || (o as number) > (version as number)) return null;
  return { version: version as number, oldest: o as number };
}
