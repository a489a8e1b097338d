// One take of a route's answer per period for every reader, and what changed since a reader's last
// take (`?since=REV`, ./answer-revision.ts). Each take gets a revision `INSTANCE.SEQ`; every entry of
// every tracked section remembers the SEQ its signature last changed at, so an answer `since` a
// revision of this instance holds only the entries changed after it, exact for any older revision of
// the same instance. A new instance (this process, or a different set of entries) makes every older
// revision unknown: those readers get the full answer. Used by site/live and the group views.
import { newRevisionInstance } from './answer-revision.ts';

export interface Take<F> {
  seq: number;
  /** Monotonic ms the take began. */
  startedAtMs: number;
  figures: F;
  /** The full answer's JSON, made at the first reader that needs it and shared by the rest. */
  fullJson?: string;
}

export interface AnswerChangesOptions<S extends string> {
  sections: readonly S[];
  /** What counts as a change of an entry: equal signatures are the same entry to a reader. */
  signature: (section: S, entry: unknown) => string;
  /** How long one take serves every reader (the control loops take figures once a period). */
  maxAgeMs: number;
  now?: () => number;
}

export class AnswerChanges<F extends Record<S, Record<string, unknown>>, S extends string> {
  private instance = newRevisionInstance();
  private seq = 0;
  private readonly entries = new Map<S, Map<string, { sig: string; seq: number }>>();
  private take: Take<F> | null = null;
  private taking: Promise<Take<F>> | null = null;
  private readonly opts: AnswerChangesOptions<S>;
  private readonly now: () => number;

  constructor(opts: AnswerChangesOptions<S>) {
    this.opts = opts;
    this.now = opts.now ?? (() => performance.now());
  }

  /** The newest take younger than maxAgeMs, else a new one from `build` (one at a time, shared). */
  async current(build: () => Promise<F>): Promise<Take<F>> {
    const t = this.take;
    if (t && this.now() - t.startedAtMs < this.opts.maxAgeMs) return t;
    this.taking ??= (async () => {
      const startedAtMs = this.now();
      const figures = await build();
      const next: Take<F> = { seq: this.record(figures), startedAtMs, figures };
      this.take = next;
      return next;
    })().finally(() => {
      this.taking = null;
    });
    return this.taking;
  }

  /** The revision of `take`: what a reader echoes as `since` next time. */
  revision(take: Take<F>): string {
    return `${this.instance}.${take.seq}`;
  }

  /**
   * The entries of each section changed after `since` when it is a revision of this instance not
   * newer than `take`, else null (the reader needs the full answer).
   */
  changedSince(take: Take<F>, since: string | undefined): Record<S, Record<string, unknown>> | null {
    if (since === undefined) return null;
    const dot = since.indexOf('.');
    const seq = Number(since.slice(dot + 1));
    if (since.slice(0, dot) !== this.instance || !Number.isInteger(seq) || seq > take.seq) return null;
    const out = {} as Record<S, Record<string, unknown>>;
    for (const section of this.opts.sections) {
      const all = take.figures[section];
      const changed: Record<string, unknown> = {};
      for (const [id, e] of this.entries.get(section) ?? []) if (e.seq > seq) changed[id] = all[id];
      out[section] = changed;
    }
    return out;
  }

  /** The full answer's JSON of `take`, made once by `make`. */
  fullJson(take: Take<F>, make: (take: Take<F>) => unknown): string {
    take.fullJson ??= JSON.stringify(make(take));
    return take.fullJson;
  }

  /** Marks the entries that changed since the last take; a different set of entries starts a new instance. */
  private record(f: F): number {
    const seq = ++this.seq;
    const { sections, signature } = this.opts;
    let sameEntries = this.entries.size === sections.length;
    for (const section of sections) {
      const now = f[section];
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
    // New entries can be merged into a reader's copy, but an older revision would miss their first
    // figures if nothing changes them again: every reader of a changed set starts from a full answer.
    if (!sameEntries && seq > 1) this.instance = newRevisionInstance();
    return seq;
  }
}
