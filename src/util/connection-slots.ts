// The slots of one listening socket, so that clients that never speak, speak once and then sit
// idle, or only send what is refused, cannot keep out those who need a slot now: at most `maxOpen`
// connections, at most `maxUnproven` of them not yet proven (an HTTP request the server accepted,
// a peer's HELLO, an MBAP frame), at most `maxPerAddress` from one remote address. A newcomer over a
// bound takes the slot of the oldest unproven connection under that bound; failing that (at the
// open and per-address bounds, where the listener sets `displaceIdleAfterMs`), the slot of the
// proven connection idle longest — nothing in flight, no byte received for at least that long; only
// when neither exists is the newcomer turned away. A listener that knows identities marks a
// connection proven by requests without one (public routes) `anonymous`: at the open and
// per-address bounds it gives way, oldest first, busy or not, after the unproven and before any
// other. A busy proven connection is never displaced. Under the address share a host displaces
// only its own.
import type { Socket } from 'node:net';

export interface SlotBounds {
  /** Connections open at once, proven or not. */
  maxOpen: number;
  /** Connections open at once that have not proven themselves yet. */
  maxUnproven: number;
  /** Connections one remote address holds at once. */
  maxPerAddress: number;
  /**
   * A proven connection idle (nothing in flight, no byte received) at least this long gives its slot
   * to a newcomer at the open or per-address bound, after every unproven one. Absent: never.
   */
  displaceIdleAfterMs?: number;
}

/**
 * A connection as its listener sees it, asked only when a bound is reached: whether it has proven
 * itself, and how long it has been idle (nothing in flight, no byte received; absent while busy).
 */
export interface ConnectionState {
  proven: boolean;
  idleMs?: number;
  /** Unproven, yet it sent this many whole requests, each refused: for the caller's log line. */
  refusedRequests?: number;
  /** Proven by requests that carried no identity only: gives way before any other proven one. */
  anonymous?: boolean;
}

/**
 * A connection closed for a newcomer: `idleMs` set when it was proven and idle that long,
 * `refusedRequests` when it was unproven though it had sent requests (each refused).
 */
export interface Displaced {
  socket: Socket;
  address: string;
  bound: SlotBound;
  idleMs?: number;
  refusedRequests?: number;
  /** Set when it was proven by requests without an identity only (ConnectionState.anonymous). */
  anonymous?: boolean;
}

/** Which bound a connection was closed or turned away at. */
export type SlotBound = 'open' | 'unproven' | 'per-address';

export type SlotOutcome = { admitted: true; evicted: Displaced[] } | { admitted: false; bound: SlotBound };

/**
 * The TCP connection under a socket: a TLS server's sockets wrap the one its 'connection' event
 * gave (node keeps it as `_parent`), a plain one is it.
 */
export function tcpSocketOf(socket: Socket): Socket {
  return (socket as Socket & { _parent?: Socket | null })._parent ?? socket;
}

export class ConnectionSlots {
  /** Open connections and their remote address, oldest first (a Map keeps insertion order). */
  private readonly open = new Map<Socket, string>();
  private readonly perAddress = new Map<string, number>();
  private readonly bounds: SlotBounds;
  /** Asked only when a bound is reached. */
  private readonly state: (socket: Socket) => ConnectionState;

  constructor(bounds: SlotBounds, state: (socket: Socket) => ConnectionState) {
    this.bounds = bounds;
    this.state = state;
  }

  get size(): number {
    return this.open.size;
  }

  /** The connections holding a slot, oldest first. */
  sockets(): IterableIterator<Socket> {
    return this.open.keys();
  }

  /**
   * Gives a new connection a slot, closing the connections it displaces (returned, for the
   * caller's counter and log), or closes it. Call it from the server's 'connection' event.
   */
  admit(socket: Socket): SlotOutcome {
    const address = socket.remoteAddress ?? '';
    const evicted: Displaced[] = [];
    const evict = (bound: SlotBound, from?: string): boolean => {
      // At the unproven bound only an unproven connection frees what is short.
      const victim = this.victim(from, bound !== 'unproven');
      if (!victim) return false;
      evicted.push({ address: this.open.get(victim.socket) ?? '', bound, ...victim });
      this.release(victim.socket);
      victim.socket.destroy();
      return true;
    };
    const turnAway = (bound: SlotBound): SlotOutcome => {
      socket.destroy();
      return { admitted: false, bound };
    };
    if ((this.perAddress.get(address) ?? 0) >= this.bounds.maxPerAddress && !evict('per-address', address))
      return turnAway('per-address');
    // Counting unproven connections takes a walk: only when there could be too many.
    if (this.open.size >= this.bounds.maxUnproven && this.unprovenCount() >= this.bounds.maxUnproven)
      evict('unproven');
    if (this.open.size >= this.bounds.maxOpen && !evict('open')) return turnAway('open');
    this.open.set(socket, address);
    this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1);
    socket.once('close', () => this.release(socket));
    return { admitted: true, evicted };
  }

  /** Gives back the connection's slot (it is closing); false when it held none. Also done on 'close'. */
  release(socket: Socket): boolean {
    const address = this.open.get(socket);
    if (address === undefined) return false;
    this.open.delete(socket);
    const left = (this.perAddress.get(address) ?? 1) - 1;
    if (left > 0) this.perAddress.set(address, left);
    else this.perAddress.delete(address);
    return true;
  }

  /**
   * The connection a newcomer displaces (from `address` only, when given): the oldest unproven one;
   * else, when `othersToo`, the oldest anonymous one, else the proven one idle longest, if at least
   * displaceIdleAfterMs.
   */
  private victim(
    address: string | undefined,
    othersToo: boolean,
  ): { socket: Socket; idleMs?: number; refusedRequests?: number; anonymous?: boolean } | undefined {
    const idleAfterMs = othersToo ? (this.bounds.displaceIdleAfterMs ?? Infinity) : Infinity;
    let idlest: { socket: Socket; idleMs: number } | undefined;
    let anonymous: { socket: Socket; anonymous: true } | undefined;
    for (const [socket, a] of this.open) {
      if (address !== undefined && a !== address) continue;
      const st = this.state(socket);
      if (!st.proven)
        return st.refusedRequests ? { socket, refusedRequests: st.refusedRequests } : { socket };
      if (othersToo && st.anonymous) {
        anonymous ??= { socket, anonymous: true };
        continue;
      }
      const idleMs = st.idleMs;
      if (idleMs !== undefined && idleMs >= idleAfterMs && idleMs > (idlest?.idleMs ?? -1))
        idlest = { socket, idleMs };
    }
    return anonymous ?? idlest;
  }

  private unprovenCount(): number {
    let n = 0;
    for (const s of this.open.keys()) if (!this.state(s).proven) n++;
    return n;
  }
}
