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
  /**
   * Entries come and go between takes (alarms are raised, cleared and dropped): a new entry is a
   * change, a gone one is answered by id (`goneSince`) while it is among the newest `rememberGoneMax`
   * gone; a reader older than a forgotten one gets the full answer. Without it, a changed set of
   * entries starts a new instance.
   */
  comeAndGo?: { rememberGoneMax: number };
}

export class AnswerChanges<F extends Record<S, Record<string, unknown>>, S extends string> {
  private instance = newRevisionInstance();
  private seq = 0;
  private readonly entries = new Map<S, Map<string, { sig: string; seq: number }>>();
  /** Per section, the ids gone from it and the seq they went at (oldest first); comeAndGo only. */
  private readonly gone = new Map<S, Map<string, number>>();
  /** A reader whose revision is older than this seq may have missed a gone entry no longer remembered. */
  private forgottenGoneSeq = 0;
  private take: Take<F> | null = null;
  private taking: Promise<Take<F>> | null = null;
  /** Counts expire(): a take begun before it may hold figures older than what expired it. */
  private generation = 0;
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
    if (this.taking) return this.taking;
    const generation = this.generation;
    const taking: Promise<Take<F>> = (async () => {
      const startedAtMs = this.now();
      const figures = await build();
      // Expired while this take was read: its readers wait for one begun after that.
      if (generation !== this.generation) return this.current(build);
      const next: Take<F> = { seq: this.record(figures), startedAtMs, figures };
      this.take = next;
      return next;
    })().finally(() => {
      if (this.taking === taking) this.taking = null;
    });
    this.taking = taking;
    return taking;
  }

  /** The next reader gets a new take (an action changed what the answer holds), not one begun before. */
  expire(): void {
    this.generation++;
    this.take = null;
    this.taking = null;
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
    const seq = this.sinceSeq(take, since);
    if (seq === null) return null;
    const out = {} as Record<S, Record<string, unknown>>;
    for (const section of this.opts.sections) {
      const all = take.figures[section];
      const changed: Record<string, unknown> = {};
      for (const [id, e] of this.entries.get(section) ?? []) if (e.seq > seq) changed[id] = all[id];
      out[section] = changed;
    }
    return out;
  }

  /** The ids gone from `section` after `since` (comeAndGo); call when changedSince() is not null. */
  goneSince(take: Take<F>, since: string | undefined, section: S): string[] {
    const seq = this.sinceSeq(take, since);
    if (seq === null) return [];
    const out: string[] = [];
    for (const [id, goneSeq] of this.gone.get(section) ?? []) if (goneSeq > seq) out.push(id);
    return out;
  }

  /** The SEQ of `since` when it is a revision of this instance the changes can be told from, else null. */
  private sinceSeq(take: Take<F>, since: string | undefined): number | null {
    if (since === undefined) return null;
    const dot = since.indexOf('.');
    const seq = Number(since.slice(dot + 1));
    if (since.slice(0, dot) !== this.instance || !Number.isInteger(seq) || seq > take.seq) return null;
    return seq < this.forgottenGoneSeq ? null : seq;
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
          this.gone.get(section)?.delete(id);
        } else {
          seen++;
          if (e.sig !== sig) {
            e.sig = sig;
            e.seq = seq;
          }
        }
      }
      if (seen !== known.size) {
        // An entry went (a reload): only a full answer can say so, unless gone ids are remembered.
        sameEntries = false;
        for (const id of [...known.keys()])
          if (!(id in now)) {
            known.delete(id);
            if (this.opts.comeAndGo) this.rememberGone(section, id, seq);
          }
      }
    }
    // New entries can be merged into a reader's copy, but an older revision would miss their first
    // figures if nothing changes them again: every reader of a changed set starts from a full answer.
    if (!sameEntries && seq > 1 && !this.opts.comeAndGo) this.instance = newRevisionInstance();
    return seq;
  }

  private rememberGone(section: S, id: string, seq: number): void {
    let gone = this.gone.get(section);
    if (!gone) {
      gone = new Map();
      this.gone.set(section, gone);
    }
    gone.set(id, seq);
    // Oldest first (a Map keeps insertion order): the forgotten ones bound the revisions still told.
    for (const [oldId, oldSeq] of gone) {
      if (gone.size <= (this.opts.comeAndGo?.rememberGoneMax ?? 0)) break;
      gone.delete(oldId);
      this.forgottenGoneSeq = Math.max(this.forgottenGoneSeq, oldSeq);
    }
  }
}
