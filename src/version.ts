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

/** The field of a JSON value in etcd that says which wire version its writer wrote. */
export const WIRE_FIELD = 'wv';

/**
 * A JSON value for etcd, stamped with the wire version this release writes (`wv`). The stamp is
 * set last, so a value read from a newer release and written back says who wrote it now.
 */
export function wireJson(value: object): string {
  return JSON.stringify({ ...value, [WIRE_FIELD]: WIRE.version });
}

export type WireValue =
  | { ok: true; version: number; value: Record<string, unknown> }
  | { ok: false; problem: string; tooOld: boolean };

/**
 * A JSON object read from etcd, without its stamp, or what is wrong with it. A value with no stamp
 * was written before values carried one: wire version 1. A newer stamp is read (its extra fields
 * are the reader's to ignore); one below `range.oldest` is refused (`tooOld`): its writer spoke a
 * version this release no longer reads, so its fields may mean what they no longer mean.
 */
export function parseWireJson(text: string, range: WireRange = WIRE): WireValue {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { ok: false, problem: 'not JSON', tooOld: false };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    return { ok: false, problem: 'not a JSON object', tooOld: false };
  const { [WIRE_FIELD]: stamp, ...value } = parsed as Record<string, unknown>;
  const version = stamp === undefined ? 1 : stamp;
  if (!Number.isSafeInteger(version) || (version as number) < 1)
    return {
      ok: false,
      problem: `"${WIRE_FIELD}" ${JSON.stringify(stamp)} is not a wire version`,
      tooOld: false,
    };
  if ((version as number) < range.oldest)
    return {
      ok: false,
      problem: `written at wire version ${version}${stamp === undefined ? ' (no "wv": a release before values carried one)' : ''}; release ${VERSION} reads wire versions ${range.oldest}..${range.version} (rewrite it, or upgrade one release step at a time: docs/upgrade.md)`,
      tooOld: true,
    };
  return { ok: true, version: version as number, value };
}
