// The write journal: every device write attempt, accepted or refused, in order, with a sequence
// number. It is how tests prove that two controllers never drove one air handler at once.
// Bounded: a ring of `capacity` entries, so a write costs O(1) however full it is; once full, each
// new entry overwrites the oldest, and `since` says if a reader asked for entries no longer kept.
// Seqs are dense (1, 2, 3, …), so the entry for a seq is found by arithmetic, never by search.

export interface JournalEntryInput {
  ahu: string;
  protocol: string;
  client: string;
  epoch: number;
  values: Record<string, number | boolean>;
  accepted: boolean;
  reason: string | null;
}

export interface JournalEntry extends JournalEntryInput {
  seq: number;
  /** Sim time, ms since sim start. */
  t: number;
  /** Wall time, ms since the Unix epoch. */
  wallMs: number;
}

export const DEFAULT_JOURNAL_CAPACITY = 200_000;

export class Journal {
  /** Slot of seq s: (s - 1) % capacity. Grows to `capacity`, then is overwritten in place. */
  private readonly ring: JournalEntry[] = [];
  private nextSeq = 1;
  private readonly simNowMs: () => number;
  readonly capacity: number;

  constructor(simNowMs: () => number, capacity = DEFAULT_JOURNAL_CAPACITY) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`journal capacity must be a positive integer, got ${capacity}`);
    }
    this.simNowMs = simNowMs;
    this.capacity = capacity;
  }

  record(e: JournalEntryInput): JournalEntry {
    const entry: JournalEntry = { seq: this.nextSeq++, t: this.simNowMs(), wallMs: Date.now(), ...e };
    const slot = (entry.seq - 1) % this.capacity;
    if (slot === this.ring.length) this.ring.push(entry);
    else this.ring[slot] = entry;
    return entry;
  }

  /** The oldest seq still kept; `nextSeq` when the journal is empty. */
  get firstSeq(): number {
    return this.nextSeq - this.ring.length;
  }

  /**
   * Entries with seq > since, oldest first, at most `limit`. `truncated` is true when some entries
   * after `since` are no longer kept (the answer then starts at the oldest one kept). A `since` at
   * or past the last seq answers no entries and `truncated: false`.
   */
  since(since: number, limit = 10_000): { entries: JournalEntry[]; nextSeq: number; truncated: boolean } {
    const first = this.firstSeq;
    const truncated = since + 1 < first;
    const from = Math.max(first, since + 1);
    const to = Math.min(this.nextSeq, from + Math.max(0, limit));
    const entries: JournalEntry[] = [];
    for (let seq = from; seq < to; seq++) entries.push(this.ring[(seq - 1) % this.capacity]!);
    return { entries, nextSeq: this.nextSeq, truncated };
  }

  get lastSeq(): number {
    return this.nextSeq - 1;
  }
}
