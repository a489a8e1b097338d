// The floor map's live figures (`GET /api/v1/site/live`) taken once per control period for every
// page that reads them, and what changed since a page's last read. Each take gets a revision
// `INSTANCE.SEQ`; every rack, group and unit entry remembers the SEQ it last changed at (a rack: its
// value as the map shows it, to 0.1 °C, or its trust), so an answer `since` a revision of this
// instance holds only the entries changed after it, and it stays exact for any older revision of
// the same instance. A new instance (this process, or a different set of entries after a reload)
// makes every older revision unknown: those readers get the full answer.
import { newRevisionInstance } from './answer-revision.ts';

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

interface Take {
  seq: number;
  /** Monotonic ms the take began. */
  startedAtMs: number;
  figures: LiveFigures;
  /** The full answer's JSON, made at the first reader that needs it and shared by the rest. */
  fullJson?: string;
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

export class LiveChanges {
  private instance = newRevisionInstance();
  private seq = 0;
  private readonly entries = new Map<LiveSection, Map<string, { sig: string; seq: number }>>();
  private take: Take | null = null;
  private taking: Promise<Take> | null = null;
  private readonly maxAgeMs: number;
  private readonly now: () => number;

  /** `maxAgeMs`: how long one take serves every reader (the control loops take figures once a period). */
  constructor(maxAgeMs: number, now: () => number = () => performance.now()) {
    this.maxAgeMs = maxAgeMs;
    this.now = now;
  }

  /** The newest take younger than maxAgeMs, else a new one from `build` (one at a time, shared). */
  async current(build: () => Promise<LiveFigures>): Promise<Take> {
    const t = this.take;
    if (t && this.now() - t.startedAtMs < this.maxAgeMs) return t;
    this.taking ??= (async () => {
      const startedAtMs = this.now();
      const figures = await build();
      const next: Take = { seq: this.record(figures), startedAtMs, figures };
      this.take = next;
      return next;
    })().finally(() => {
      this.taking = null;
    });
    return this.taking;
  }

  /** The revision of `take`: what a reader echoes as `since` next time. */
  revision(take: Take): string {
    return `${this.instance}.${take.seq}`;
  }

  /**
   * The answer to a reader that last read `since`: the entries changed after it when it is a
   * revision of this instance not newer than `take`, else null (the reader needs the full answer).
   */
  changedSince(take: Take, since: string | undefined): Partial<LiveFigures> | null {
    if (since === undefined) return null;
    const dot = since.indexOf('.');
    const seq = Number(since.slice(dot + 1));
    if (since.slice(0, dot) !== this.instance || !Number.isInteger(seq) || seq > take.seq) return null;
    const out: Partial<LiveFigures> = {};
    for (const section of LIVE_SECTIONS) {
      const all = take.figures[section] as Record<string, unknown>;
      const changed: Record<string, unknown> = {};
      for (const [id, e] of this.entries.get(section) ?? []) if (e.seq > seq) changed[id] = all[id];
      (out as Record<string, unknown>)[section] = changed;
    }
    return out;
  }

  /** The full answer's JSON of `take`, made once. */
  fullJson(take: Take): string {
    take.fullJson ??= JSON.stringify({ ...take.figures, rev: this.revision(take), since: null });
    return take.fullJson;
  }

  /** Marks the entries that changed since the last take; a different set of entries starts a new instance. */
  private record(f: LiveFigures): number {
    const seq = ++this.seq;
    let sameEntries = this.entries.size === LIVE_SECTIONS.length;
    for (const section of LIVE_SECTIONS) {
      const now = f[section] as Record<string, unknown>;
      let known = this.entries.get(section);
      if (!known) {
        known = new Map();
        this.entries.set(section, known);
      }
      let seen = 0;
      for (const id in now) {
        const sig = signature(section, now[id]);
        const e = known.get(id);
        if (!e) {
          sameEntries = false;
          known.set(id, { sig, seq });
        } else {
          seen++;
          if (e.sig !== sig) {
            e.sig = sig;
            e.seq = seq;
          }
        }
      }
      if (seen !== known.size) {
        // An entry went (a reload): only a full answer can say so.
        sameEntries = false;
        for (const id of [...known.keys()]) if (!(id in now)) known.delete(id);
      }
    }
    // New entries can be merged into a page's copy, but an older revision would miss their first
    // figures if nothing changes them again: every reader of a changed set starts from a full answer.
    if (!sameEntries && seq > 1) this.instance = newRevisionInstance();
    return seq;
  }
}
