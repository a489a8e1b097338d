// Change-only answers (`since`) put into what the page holds: pure functions of the held answer
// and the changes. Each gives null (or asks for a whole read) when the answer is not of the
// expected shape, so a malformed change never leaves the page holding a wrong list.
import { isObject, num } from './api.js';

/**
 * The views held from a member with the changes of its `since` answer: changed views replace theirs
 * whole; the others take their process state (when it changed) and each unit's last good write (ms
 * before the answer's atMs, in the order of the view's units). A view the answer leaves out of both,
 * or whose write list does not fit its units, is kept as it was and the next read is whole.
 */
export function mergeGroupViews(held, changes) {
  const changed = new Map(changes.groups.filter(isObject).map((v) => [v.id, v]));
  const ps = isObject(changes.processStates) ? changes.processStates : {};
  const ago = isObject(changes.lastWriteOkAgoMs) ? changes.lastWriteOkAgoMs : {};
  const atMs = num(changes.atMs);
  let whole = true;
  const list = held.list.map((v) => {
    if (!isObject(v)) return v;
    if (changed.has(v.id)) return changed.get(v.id);
    const writes = Object.hasOwn(ago, v.id) ? ago[v.id] : null;
    if (
      !Array.isArray(writes) ||
      !Array.isArray(v.units) ||
      writes.length !== v.units.length ||
      atMs === null
    ) {
      whole = false;
      return v;
    }
    // A new object per view: lookups keyed by the view (unitOf) see the new figures.
    return {
      ...v,
      ...(Object.hasOwn(ps, v.id) ? { processState: ps[v.id] } : {}),
      units: v.units.map((u, i) => ({
        ...u,
        lastWriteOkMs: num(writes[i]) === null ? null : atMs - writes[i],
      })),
    };
  });
  // A view new to the page comes whole with a new revision (the set changed): nothing to add here.
  if (!whole) changes.rev = null;
  return list;
}

/** A live answer's changes put into the one the page holds: each entry replaced, none removed. */
export function mergeLive(held, changes) {
  for (const section of ['racks', 'rackTrust', 'groups', 'units']) {
    if (!isObject(changes[section])) continue;
    if (!isObject(held[section])) held[section] = {};
    // A key a JSON object may hold but an assignment would not set as its own.
    for (const [id, v] of Object.entries(changes[section])) if (id !== '__proto__') held[section][id] = v;
  }
  for (const k of ['atMs', 'node', 'rackInletsKnown', 'rev']) held[k] = changes[k];
  return held;
}

/**
 * The cluster answer held with a change-only one put in: nothing changed (no lists) is the one held;
 * else changed members and groups replace theirs by id, new ones are added (members ordered by node
 * name, as the node orders them; groups after those held, as a node adds a reloaded one), and
 * removed ids go. Null when the answer is not of that shape.
 */
export function mergeCluster(held, changes) {
  if (!('members' in changes) && !('groups' in changes)) return held;
  const removed = isObject(changes.removed) ? changes.removed : null;
  if (
    !Array.isArray(changes.members) ||
    !Array.isArray(changes.groups) ||
    !removed ||
    !Array.isArray(removed.members) ||
    !Array.isArray(removed.groups)
  )
    return null;
  const members = mergeById(held.members, changes.members, removed.members, 'node');
  members.sort((x, y) => (x.node < y.node ? -1 : x.node > y.node ? 1 : 0));
  return { ...held, members, groups: mergeById(held.groups, changes.groups, removed.groups, 'id') };
}

/**
 * A list held with a change-only answer's entries put in by `key`: a removed id goes, a changed
 * entry replaces its own where it stands, a new one (or one both removed and changed: it is in the
 * answer) is added at the end; entries that are not objects are kept as they are.
 */
function mergeById(held, changed, removed, key) {
  const byId = new Map(changed.filter(isObject).map((e) => [e[key], e]));
  const gone = new Set(removed);
  const out = held
    .filter((e) => !isObject(e) || !gone.has(e[key]))
    .map((e) => (isObject(e) ? (byId.get(e[key]) ?? e) : e));
  const kept = new Set(out.filter(isObject).map((e) => e[key]));
  for (const [id, e] of byId) if (!kept.has(id)) out.push(e);
  return out;
}

/**
 * The alarms held with a change-only answer put in: changed ones replace theirs by id (new ones are
 * added), removed ids go, and the list is ordered as the node orders a whole one (newest first, ties
 * by id). Null when the answer is not of that shape (then it is named, and the next read is whole).
 */
export function mergeAlarms(held, changes) {
  const changed = changes.alarms ?? [];
  const removed = changes.removed ?? [];
  if (!Array.isArray(changed) || !Array.isArray(removed) || !changed.every(isObject)) return null;
  const merged = mergeById(held, changed, removed, 'id');
  const raisedMs = new Map(merged.map((a) => [a, Date.parse(a.raisedAt) || 0]));
  return merged.sort((a, b) => raisedMs.get(b) - raisedMs.get(a) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
