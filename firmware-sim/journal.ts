// The write journal: every device write attempt, accepted or refused, in order, with a sequence
// number. It is how tests prove that two controllers never drove one air handler at once.
// Bounded: the oldest entries are dropped past `capacity`, and `since` says if a reader missed some.

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

export class Journal {
  private entries: JournalEntry[] = [];
  private nextSeq = 1;
  private readonly simNowMs: () => number;
  private readonly capacity: number;

  constructor(simNowMs: () => number, capacity = 200_000) {
    this.simNowMs = simNowMs;
    this.capacity = capacity;
  }

  record(e: JournalEntryInput): JournalEntry {
    const entry: JournalEntry = { seq: this.nextSeq++, t: this.simNowMs(), wallMs: Date.now(), ...e };
    this.entries.push(entry);
    if (this.entries.length > this.capacity) this.entries.splice(0, this.entries.length - this.capacity);
    return entry;
  }

  /** Entries with seq > since, at most `limit`; `truncated` is true when entries after `since` were dropped. */
  since(since: number, limit = 10_000): { entries: JournalEntry[]; nextSeq: number; truncated: boolean } {
    const first = this.entries[0]?.seq ?? this.nextSeq;
    const truncated = since + 1 < first;
    // seqs are dense, so the start index is computed, not searched
    const start = Math.max(0, since + 1 - first);
    const entries = this.entries.slice(start, start + limit);
    return { entries, nextSeq: this.nextSeq, truncated };
  }

  get lastSeq(): number {
    return this.nextSeq - 1;
  }
}
