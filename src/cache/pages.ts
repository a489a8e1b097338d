// Splits the lists peer frames carry — a SYNC's digest and groups, a SYNC_DONE's rows, a FS_PING's
// groups — into pages that each fit one frame header. These lists grow with the cache (10 000
// groups of up to 128 characters is ~1.7 MB of JSON) and a header may not pass 64 KiB, so one frame
// per list would stop working, or worse, at a few thousand groups.
// A page also leaves room for the answer to it: a release from before paging (wire version 1)
// answers a SYNC with one SYNC_DONE listing every row it sends, so a SYNC page lists no more groups
// than a SYNC_DONE can name under the same budget.
import { MAX_HEADER_BYTES } from './frames.ts';

/** Bytes of JSON one page's list may take: the rest of the header (id, flags) fits in what is left. */
export const PAGE_BYTES = MAX_HEADER_BYTES - 16 * 1024;

/** The most a version's two numbers (safe integers, 16 digits each) and their separators take. */
const VERSION_JSON_BYTES = 16 + 1 + 16;

/**
 * Cuts `items` into pages whose costs add up to at most `budget` each (an item costing more than
 * the budget gets a page of its own: callers' items are bounded well below it).
 */
export function paginate<T>(items: Iterable<T>, cost: (item: T) => number, budget = PAGE_BYTES): T[][] {
  const pages: T[][] = [];
  let page: T[] = [];
  let used = 0;
  for (const item of items) {
    const c = cost(item);
    if (page.length > 0 && used + c > budget) {
      pages.push(page);
      page = [];
      used = 0;
    }
    page.push(item);
    used += c;
  }
  if (page.length > 0) pages.push(page);
  return pages;
}

/** `"group":[epoch,seq],` — one digest entry. Group names are ASCII (rows.ts GROUP_RE). */
export function digestEntryBytes(group: string, epoch: number, seq: number): number {
  return group.length + 2 + 5 + String(epoch).length + String(seq).length;
}

/** `["group",epoch,seq],` at its longest: one SYNC_DONE entry whatever version the answerer holds. */
export function rowRefMaxBytes(group: string): number {
  return group.length + 2 + 4 + VERSION_JSON_BYTES;
}

/** `["group",epoch,seq],` — one SYNC_DONE entry. */
export function rowRefBytes(ref: readonly [string, number, number]): number {
  return ref[0].length + 2 + 5 + String(ref[1]).length + String(ref[2]).length;
}

/**
 * One group of a SYNC that names its groups (`groups` + digest entry when held), or of the answer
 * to it, whichever is longer: a page under the budget keeps both the request and any answer to it
 * under the header limit.
 */
export function syncGroupBytes(group: string, held: readonly [number, number] | undefined): number {
  const request = group.length + 3 + (held ? digestEntryBytes(group, held[0], held[1]) : 0);
  return Math.max(request, rowRefMaxBytes(group));
}

/** `{"group":"…","epoch":N},` — one group of a FS_PING. */
export function failsafeGroupBytes(g: { group: string; epoch: number }): number {
  return g.group.length + 2 + 20 + String(g.epoch).length;
}
