// A short fingerprint of what a node runs: its controller config and its site file, as parsed
// (comments, key order and layout do not count), so `coolctl status` can warn when the members of a
// cluster run different configs. Each node publishes it in its member record (docs/cli.md).
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
// js-yaml, as the site loader: plain values straight from the text. `yaml`'s document model costs
// hundreds of MB on a 1 000-unit site (docs/scale.md).
import { CORE_SCHEMA, load as loadYaml } from 'js-yaml';

/** Plain data with every object's keys sorted: one text per meaning. */
function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object')
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
    );
  return v;
}

/** sha256 of the two parsed files, first 12 hex digits; an unreadable file counts as its error. */
export async function configHash(controllerFile: string, siteFile: string): Promise<string> {
  const read = async (f: string): Promise<unknown> => {
    try {
      return canonical(loadYaml(await readFile(f, 'utf8'), { schema: CORE_SCHEMA }));
    } catch (err) {
      return { unreadable: (err as Error).message };
    }
  };
  const [controller, site] = await Promise.all([read(controllerFile), read(siteFile)]);
  return createHash('sha256').update(JSON.stringify({ controller, site })).digest('hex').slice(0, 12);
}
