// The slots of one listening socket, so that a client that never speaks cannot keep out those who
// do: at most `maxOpen` connections, at most `maxUnproven` of them not yet proven (an HTTP request
// delivered, a peer's HELLO), at most `maxPerAddress` from one remote address. A newcomer over a
// bound takes the slot of the oldest unproven connection under that bound, which is closed; only
// when all of those have proven themselves is the newcomer turned away. A proven connection (a
// dashboard's keep-alive, a peer's link) is never displaced, and a silent one holds its slot only
// until someone needs it. Under the address share a host displaces only its own connections.
import type { Socket } from 'node:net';

export interface SlotBounds {
  /** Connections open at once, proven or not. */
  maxOpen: number;
  /** Connections open at once that have not proven themselves yet. */
  maxUnproven: number;
  /** Connections one remote address holds at once. */
  maxPerAddress: number;
}

/** Which bound a connection was closed or turned away at. */
export type SlotBound = 'open' | 'unproven' | 'per-address';

export type SlotOutcome =
  | { admitted: true; evicted: { socket: Socket; address: string; bound: SlotBound }[] }
  | { admitted: false; bound: SlotBound };

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
  /** Asked only when a bound is reached: whether the connection has proven itself. */
  private readonly proven: (socket: Socket) => boolean;

  constructor(bounds: SlotBounds, proven: (socket: Socket) => boolean) {
    this.bounds = bounds;
    this.proven = proven;
  }

  get size(): number {
    return this.open.size;
  }

  /**
   * Gives a new connection a slot, closing the connections it displaces (returned, for the
   * caller's counter and log), or closes it. Call it from the server's 'connection' event.
   */
  admit(socket: Socket): SlotOutcome {
    const address = socket.remoteAddress ?? '';
    const evicted: { socket: Socket; address: string; bound: SlotBound }[] = [];
    const evict = (bound: SlotBound, from?: string): boolean => {
      const victim = this.oldestUnproven(from);
      if (!victim) return false;
      evicted.push({ socket: victim, address: this.open.get(victim) ?? '', bound });
      this.release(victim);
      victim.destroy();
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

  private release(socket: Socket): void {
    const address = this.open.get(socket);
    if (address === undefined) return;
    this.open.delete(socket);
    const left = (this.perAddress.get(address) ?? 1) - 1;
    if (left > 0) this.perAddress.set(address, left);
    else this.perAddress.delete(address);
  }

  private oldestUnproven(address?: string): Socket | undefined {
    for (const [s, a] of this.open) if ((address === undefined || a === address) && !this.proven(s)) return s;
    return undefined;
  }

  private unprovenCount(): number {
    let n = 0;
    for (const s of this.open.keys()) if (!this.proven(s)) n++;
    return n;
  }
}
