// vitest's global setup: a wrong COOLCTL_TEST_LINKS stops the run before any test file starts,
// once, with what to set — not only in the files that start real links (links.ts).
import { parseTestLinks, TEST_LINKS_VARIABLE } from './links.ts';

export default function setup(): void {
  parseTestLinks(process.env[TEST_LINKS_VARIABLE]);
}
