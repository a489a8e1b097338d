// A short fingerprint of what a node runs: its controller config and its site file, as parsed
// (comments, key order and layout do not count), so `coolctl status` can warn when the members of a
// cluster run different configs. Each node publishes it in its member record (docs/cli.md).
import { createHash } from 'node:crypto';
// The loaders' own reading: bounded in size, and a value whose aliases hold themselves or expand
// past the file's size is refused before anything walks it (a file may have been swapped since it
// was loaded).
import { loadYamlData } from './config-check.ts';
import { readBoundedFile, SITE_FILE_MAX_BYTES, utf8Text } from './config-files.ts';

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
      const bytes = await readBoundedFile(f, SITE_FILE_MAX_BYTES, 'config file');
      if (!bytes.ok) return { unreadable: bytes.message };
      const text = utf8Text(bytes.value, f);
      if (!text.ok) return { unreadable: text.message };
      return canonical(loadYamlData(text.value, f));
    } catch (err) {
      return { unreadable: (err as Error).message };
    }
  };
  const [controller, site] = await Promise.all([read(controllerFile), read(siteFile)]);
  return createHash('sha256').update(JSON.stringify({ controller, site })).digest('hex').slice(0, 12);
}
