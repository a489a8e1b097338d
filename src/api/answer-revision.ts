// The revision a page echoes back (`?since=REV`) to be sent only what changed: INSTANCE.SEQ, where
// INSTANCE names this process's series of answers (a restart, or a reload that changes what an
// answer lists, starts a new one: an older revision is then unknown and answered whole) and SEQ
// numbers the answers within it. One grammar for every route that offers it (live figures, alarms).
import { randomBytes } from 'node:crypto';

/** What a route's `since` query accepts (8 hex digits, a dot, a decimal of at most 15 digits). */
export const ANSWER_REVISION_PATTERN = '^[0-9a-f]{8}\\.[0-9]{1,15}$';

/** A new INSTANCE part: random, so two processes (or two series) never share a revision. */
export function newRevisionInstance(): string {
  return randomBytes(4).toString('hex');
}
