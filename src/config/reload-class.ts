// Which controller settings a reload applies and which need a restart: the schema says, per setting
// (as zigbee2mqtt's `requiresRestart`). A schema node carries `reload: 'live'` or
// `reload: 'restart'` (with `reloadHint`, what to do), and that covers everything under it. A
// setting with no class on itself or a parent would be ignored by a reload without a word, so a
// reload treats it as restart-only, and test/daemon/reload-classification.test.ts walks the schema
// and fails on it.
import type { TSchema } from '@sinclair/typebox';

/** `live`: a reload applies it while control runs. `restart`: read at start only; a reload that changes it is refused. */
export type ReloadClass = 'live' | 'restart';

export interface ReloadOptions {
  reload: ReloadClass;
  /** What a change does (live) or what to do to apply it (restart): shown with a refused reload. */
  reloadHint?: string;
}

/** Schema options: a reload applies this setting (and everything under it). */
export const live = (hint?: string): ReloadOptions => ({
  reload: 'live',
  ...(hint !== undefined ? { reloadHint: hint } : {}),
});

/** Schema options: read at start only; `hint` says why, or what else applies without a restart. */
export const restartOnly = (hint: string): ReloadOptions => ({ reload: 'restart', reloadHint: hint });

export interface ClassifiedSetting {
  /** JSON pointer into the config file; `*` stands for any key of a map (`/nodes/*`). */
  path: string;
  reload: ReloadClass | undefined;
  hint: string | undefined;
}

/**
 * Every setting of `schema` with its class: a node that carries a class stands for its whole
 * subtree; objects and maps are walked into; anything else (a scalar, a list, a free object) is one
 * setting. Union members are walked at the same path.
 */
export function classifySettings(schema: TSchema, path = ''): ClassifiedSetting[] {
  const s = schema as TSchema & {
    reload?: ReloadClass;
    reloadHint?: string;
    properties?: Record<string, TSchema>;
    patternProperties?: Record<string, TSchema>;
    anyOf?: TSchema[];
  };
  if (s.reload !== undefined) return [{ path: path || '/', reload: s.reload, hint: s.reloadHint }];
  if (s.anyOf) {
    const seen = new Map<string, ClassifiedSetting>();
    for (const m of s.anyOf)
      for (const c of classifySettings(m, path)) if (!seen.has(c.path) || !c.reload) seen.set(c.path, c);
    return [...seen.values()];
  }
  const children = [
    ...Object.entries(s.properties ?? {}).map(([k, v]) => [`${path}/${k}`, v] as const),
    ...Object.values(s.patternProperties ?? {}).map((v) => [`${path}/*`, v] as const),
  ];
  if (children.length === 0) return [{ path: path || '/', reload: undefined, hint: undefined }];
  return children.flatMap(([p, v]) => classifySettings(v, p));
}

/**
 * The settings under `pattern` whose values differ between two config documents, as concrete
 * paths down to the leaves that changed (`/cluster/leaseTtlS`, `/nodes/n2`): objects are compared
 * key by key, lists and scalars whole.
 */
export function changedPaths(a: unknown, b: unknown, pattern: string): string[] {
  const segments = pattern === '/' ? [] : pattern.split('/').slice(1);
  const out: string[] = [];
  const walk = (x: unknown, y: unknown, at: string, rest: string[]): void => {
    if (rest.length === 0) {
      diffLeaves(x, y, at, out);
      return;
    }
    const [head, ...tail] = rest as [string, ...string[]];
    const keys = head === '*' ? unionKeys(x, y) : [head];
    for (const k of keys) walk(child(x, k), child(y, k), `${at}/${k}`, tail);
  };
  walk(a, b, '', segments);
  return out;
}

function isMap(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x) && !ArrayBuffer.isView(x);
}

function child(x: unknown, k: string): unknown {
  return isMap(x) ? x[k] : undefined;
}

function unionKeys(x: unknown, y: unknown): string[] {
  return [...new Set([...Object.keys(isMap(x) ? x : {}), ...Object.keys(isMap(y) ? y : {})])];
}

function diffLeaves(x: unknown, y: unknown, at: string, out: string[]): void {
  if (isMap(x) && isMap(y)) {
    for (const k of unionKeys(x, y)) diffLeaves(x[k], y[k], `${at}/${k}`, out);
    return;
  }
  if (JSON.stringify(x) !== JSON.stringify(y)) out.push(at || '/');
}
