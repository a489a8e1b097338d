// The cluster's members as this node lists them: where a group's figures are read (its leader,
// else this node), which node an API base is, and whether an origin is a member's (the only
// places the page sends the session cookie to).
import { index, state } from './state.js';

/** The API base of the node that leads `group` ('' for this node), or null when nobody leads it. */
export function leaderBase(group) {
  const g = index.groups.get(group);
  if (!g?.leader) return null;
  if (g.leader === state.node) return '';
  const m = state.cluster.members.find((x) => x.node === g.leader);
  if (!m) return null;
  try {
    const origin = new URL(m.apiUrl).origin;
    return origin === location.origin ? '' : origin;
  } catch {
    return null;
  }
}

/** Where a group's live figures are read: its leader, else this node. */
export const sourceOf = (group) => leaderBase(group) ?? '';

export const nodeAt = (base) =>
  base === ''
    ? state.node
    : (state.cluster?.members.find((m) => {
        try {
          return new URL(m.apiUrl).origin === base;
        } catch {
          return false;
        }
      })?.node ?? base);

/** A group's live figures from its leader (else this node); null when that node did not answer. */
export function liveOf(group) {
  const l = state.live.get(sourceOf(group));
  return l && !l.error ? l : null;
}

export function originOf(url) {
  try {
    return new URL(url).origin;
  } catch {
    return null;
  }
}

/** This page's node or a member of the cluster as this node lists them. */
export const isMemberOrigin = (origin) =>
  origin === location.origin || (state.cluster?.members ?? []).some((m) => originOf(m.apiUrl) === origin);
