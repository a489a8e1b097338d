// What operators did through this node, and how this node's leadership changed: a bounded ring in
// memory (oldest entries drop first, and the count of dropped ones is kept), so the dashboard and
// `GET /api/v1/audit` can show it. Entries are never edited; `seq` increases by one per entry.
// It is not a durable record: every entry is also logged (journald keeps the logs).

export interface OperatorAction {
  kind: 'operator';
  /** What was asked: the route's last segment, e.g. `switchover`, `commands`. */
  action: string;
  method: string;
  /** The request's path, e.g. /api/v1/groups/zone-1/commands */
  path: string;
  group: string | null;
  /** The request body as received (null when it was not JSON or too big to keep). */
  params: unknown;
  /** The TCP peer that sent it. */
  clientIp: string;
  /** Who the client says is operating (header x-coolctl-operator); a claim, not an authentication. */
  operator: string | null;
  /** The HTTP status this node answered, and the stable error code when it refused. */
  status: number;
  error: { code: string; message: string } | null;
}

export interface RoleTransition {
  kind: 'role';
  group: string;
  from: string;
  to: string;
  epoch: number | null;
  reason: string;
}

export type AuditEntry = (OperatorAction | RoleTransition) & { seq: number; atMs: number };
type AuditRecord = OperatorAction | RoleTransition;

/** A request body bigger than this (as JSON) is not kept; operator actions are a few fields. */
export const MAX_PARAMS_CHARS = 2048;

export class AuditLog {
  readonly capacity: number;
  private readonly ring: (AuditEntry | undefined)[];
  private next = 1;
  private readonly now: () => number;

  constructor(capacity = 1000, opts: { now?: () => number } = {}) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be an integer ≥ 1');
    this.capacity = capacity;
    this.ring = new Array(capacity);
    this.now = opts.now ?? Date.now;
  }

  record<T extends AuditRecord>(entry: T): T & { seq: number; atMs: number } {
    const e = { ...entry, seq: this.next, atMs: this.now() };
    if (e.kind === 'operator') (e as OperatorAction).params = keepable((e as OperatorAction).params);
    this.ring[(this.next - 1) % this.capacity] = e;
    this.next++;
    return e;
  }

  /** Entries with seq > `since`, oldest first; at most `limit` of them (the newest). */
  list({ since = 0, limit = this.capacity }: { since?: number; limit?: number } = {}): AuditEntry[] {
    const last = this.next - 1;
    const first = Math.max(since + 1, last - this.capacity + 1, last - limit + 1, 1);
    const out: AuditEntry[] = [];
    for (let seq = first; seq <= last; seq++) out.push(this.ring[(seq - 1) % this.capacity]!);
    return out;
  }

  /** The seq of the newest entry (0: none yet). */
  get lastSeq(): number {
    return this.next - 1;
  }

  /** Entries dropped to stay within capacity. */
  get dropped(): number {
    return Math.max(0, this.next - 1 - this.capacity);
  }
}

function keepable(params: unknown): unknown {
  if (params === undefined || params === null) return null;
  try {
    const json = JSON.stringify(params);
    return json !== undefined && json.length <= MAX_PARAMS_CHARS ? JSON.parse(json) : null;
  } catch {
    return null;
  }
}
