// The floor map's live figures (`GET /api/v1/site/live`) taken once per control period for every
// page that reads them, and what changed since a page's last read (./answer-changes.ts). A rack
// changes when its value as the map shows it (to 0.1 °C) or its trust does; any other entry with any
// field.
import { AnswerChanges, type Take } from './answer-changes.ts';

export type LiveSection = 'racks' | 'rackTrust' | 'groups' | 'units';
export const LIVE_SECTIONS: readonly LiveSection[] = ['racks', 'rackTrust', 'groups', 'units'];

/** One take of the live figures, as the full answer holds them. */
export interface LiveFigures {
  atMs: number;
  node: string;
  rackInletsKnown: boolean;
  racks: Record<string, number | null>;
  rackTrust: Record<string, { goodInlets: number; inlets: number }>;
  groups: Record<string, unknown>;
  units: Record<string, unknown>;
}

/** What changes a rack's look on the map; entries of the other sections change with any field. */
function signature(section: LiveSection, v: unknown): string {
  if (section === 'racks') return typeof v === 'number' && Number.isFinite(v) ? v.toFixed(1) : 'null';
  if (section === 'rackTrust') {
    const t = v as { goodInlets: number; inlets: number };
    return `${t.goodInlets}/${t.inlets}`;
  }
  return JSON.stringify(v);
}

export class LiveChanges extends AnswerChanges<LiveFigures, LiveSection> {
  /** `maxAgeMs`: how long one take serves every reader (the control loops take figures once a period). */
  constructor(maxAgeMs: number, now?: () => number) {
    super({ sections: LIVE_SECTIONS, signature, maxAgeMs, ...(now ? { now } : {}) });
  }

  /** The full answer's JSON of `take`, made once. */
  liveJson(take: Take<LiveFigures>): string {
    return this.fullJson(take, (t) => ({ ...t.figures, rev: this.revision(t), since: null }));
  }
}
