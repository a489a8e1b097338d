// The peer channel: this node's own port (never the etcd session), TLS with a pre-shared key
// derived from the cluster secret, one outgoing link to every member and one incoming from each.
// A peer proves it knows the secret in the TLS handshake (TLS 1.2 PSK, AES-256-GCM), then says who
// it is in a HELLO that must match its TLS identity and our cluster. Anything else — a plain TCP
// client, a wrong key, a bad HELLO, a malformed frame — is refused, counted and logged (rate-limited).
// Outgoing links reconnect with backoff; a link with no frame for idleTimeoutMs is dead.
// At most MAX_UNPROVEN_PEER_CONNECTIONS incoming connections are not yet past HELLO (silent, or
// stalled in the handshake): a newer one closes the oldest (`crowded-out`), so a flood of them
// holds a bounded number of descriptors and a real peer, which gets past HELLO in milliseconds,
// still gets in (../util/connection-slots.ts). A link past HELLO is never displaced, idle or not:
// only unproven connections are bounded here, a linked peer proved the cluster key, and its PINGs
// keep it from ever idling; taking its slot would only cost a redial and a resync.
// With per-pair keys (`peerKeys`: this node's key with each peer, pairKey()), a PSK identity is
// bound to one node: the key for identity X is the one only X and we hold, so a member presenting
// another member's name fails the handshake. The shared secret alone cannot bind: every node has it.
import { createHmac } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { Backoff } from '../util/async.ts';
import { ConnectionSlots, tcpSocketOf } from '../util/connection-slots.ts';
import { RateLimitedLog } from '../util/log-limit.ts';
import { agreedWireVersion, parseWireRange, VERSION, WIRE, type WireRange } from '../version.ts';
import { type Frame, FrameError, FrameType } from './frames.ts';
import { LinkError, PeerConnection, type PeerConnectionOptions } from './peer-connection.ts';
import { isNodeName } from './rows.ts';

const CIPHERS = 'PSK-AES256-GCM-SHA384';

/**
 * Incoming connections not yet past HELLO at once. A cluster of 9 has 8 peers dialling, each once
 * at a time: the rest is room for reconnects. Each held one is a descriptor and a TLS context the
 * whole process shares (etcd, devices, the API), and until HELLO anyone can open one.
 */
export const MAX_UNPROVEN_PEER_CONNECTIONS = 64;

/**
 * The key nodes `a` and `b` share on the peer channel, from a master secret that stays with the
 * operator (scripts/peer-keys.ts writes each node its own keys): a node holds only the keys of
 * its own pairs, so it cannot answer to another node's name.
 */
export function pairKey(master: Buffer, cluster: string, a: string, b: string): Buffer {
  const [x, y] = a < b ? [a, b] : [b, a];
  return createHmac('sha256', master).update(`coolctl peer pair v1 ${cluster} ${x} ${y}`).digest();
}

/** Why a connection or frame on the peer channel is refused (coolctl_cache_rejects_total{reason}). */
export const REJECT_REASONS = [
  'auth',
  'hello',
  'malformed',
  'too-large',
  'stale',
  'not-leader',
  'too-many-groups',
  'oversized-row',
  'unknown-group',
  'assembly-full',
  'backlog',
  'internal',
  'crowded-out',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

export interface PeerChannelOptions extends PeerConnectionOptions {
  node: string;
  /** The cluster's key prefix: peers of another cluster are refused even with the same secret. */
  cluster: string;
  /** The shared cluster secret: every node derives the same PSK. Ignored when `peerKeys` is set. */
  secret?: Buffer | undefined;
  /** This node's key with each peer (pairKey), by peer name: a PSK identity bound to its node. */
  peerKeys?: ReadonlyMap<string, Buffer> | undefined;
  listen: { host: string; port: number };
  /** Bound on TCP connect + TLS handshake + HELLO. */
  connectTimeoutMs: number;
  logger: Logger;
  onReject?: (reason: RejectReason) => void;
  /** Wire versions this node speaks (default: this release's, WIRE). */
  wire?: WireRange | undefined;
}

export interface PeerStatus {
  node: string;
  url: string;
  /** Our outgoing link is up (handshake done). */
  up: boolean;
  sinceMs: number;
  lastError: string | null;
  /** The wire version agreed with this peer on the link (null while it is down). */
  wire: number | null;
  /** The peer's release, as its HELLO said (null while the link is down). */
  release: string | null;
}

interface Link {
  node: string;
  url: string;
  host: string;
  port: number;
  conn: PeerConnection | null;
  socket: TLSSocket | null;
  timer: NodeJS.Timeout | undefined;
  backoff: Backoff;
  sinceMs: number;
  lastError: string | null;
  removed: boolean;
  wire: number | null;
  release: string | null;
}

/** Events: 'up' (PeerConnection, outgoing), 'down' (node), 'frame' (PeerConnection, Frame), 'incoming' (PeerConnection). */
export class PeerChannel extends EventEmitter {
  private readonly opts: PeerChannelOptions;
  private readonly log: Logger;
  private readonly warn: RateLimitedLog;
  private readonly psk: Buffer | undefined;
  private readonly links = new Map<string, Link>();
  private readonly incoming = new Set<PeerConnection>();
  /** The TCP connections of incoming links past HELLO: the ones a flood never displaces. */
  private readonly pastHello = new WeakSet<object>();
  private server: Server | undefined;
  private stopped = false;
  private boundPort = 0;

  constructor(opts: PeerChannelOptions) {
    super();
    this.opts = opts;
    this.log = opts.logger;
    this.warn = new RateLimitedLog(opts.logger, 10_000);
    if (!opts.secret && !opts.peerKeys)
      throw new Error('peer channel: a cluster secret or peer keys are needed');
    this.psk =
      opts.peerKeys || !opts.secret
        ? undefined
        : createHmac('sha256', opts.secret).update(`coolctl peer channel v1 ${opts.cluster}`).digest();
  }

  /** The key a link with `peer` uses: its pair key, or the cluster PSK. */
  private keyFor(peer: string): Buffer | null {
    if (this.opts.peerKeys) return this.opts.peerKeys.get(peer) ?? null;
    return this.psk ?? null;
  }

  get port(): number {
    return this.boundPort;
  }

  async start(): Promise<void> {
    const server = createServer({
      ciphers: CIPHERS,
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.2',
      pskIdentityHint: 'coolctl',
      pskCallback: (socket: TLSSocket, identity: string) => {
        if (!isNodeName(identity) || identity === this.opts.node) return null;
        const key = this.keyFor(identity);
        if (!key) return null;
        identities.set(socket, identity);
        return key;
      },
      handshakeTimeout: this.opts.connectTimeoutMs,
    });
    const identities = new WeakMap<TLSSocket, string>();
    const slots = new ConnectionSlots(
      { maxOpen: Infinity, maxUnproven: MAX_UNPROVEN_PEER_CONNECTIONS, maxPerAddress: Infinity },
      (tcp) => ({ proven: this.pastHello.has(tcp) }),
    );
    /** Closed for a newer connection: counted as that, not again as a failed handshake. */
    const crowdedOut = new WeakSet<Socket>();
    // The TCP connection, before TLS: a handshake that stalls holds a slot like a HELLO that does.
    server.on('connection', (tcp: Socket) => {
      const o = slots.admit(tcp);
      for (const e of o.admitted ? o.evicted : []) {
        crowdedOut.add(e.socket);
        this.reject(
          'crowded-out',
          { remote: e.address },
          `peer connection closed: not past HELLO while ${MAX_UNPROVEN_PEER_CONNECTIONS} newer ones were waiting`,
        );
      }
    });
    server.on('secureConnection', (socket: TLSSocket) => this.accept(socket, identities.get(socket)));
    server.on('tlsClientError', (err: Error, socket: TLSSocket) => {
      if (crowdedOut.has(tcpSocketOf(socket))) return;
      this.reject(
        'auth',
        { remote: socket.remoteAddress, err: err.message },
        'peer refused: TLS handshake failed (wrong cluster secret, or not a coolctl peer)',
      );
      socket.destroy();
    });
    server.on('error', (err) => this.log.error({ err }, 'peer channel server error'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.listen.port, this.opts.listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    const a = server.address();
    this.boundPort = typeof a === 'object' && a ? a.port : 0;
    this.log.info({ listen: `${this.opts.listen.host}:${this.boundPort}` }, 'peer channel listening');
  }

  /** The peers to keep a link to (members other than us, with a peer URL `tcp://host:port`). */
  setPeers(peers: { node: string; peerUrl?: string | undefined }[]): void {
    if (this.stopped) return;
    const want = new Map<string, string>();
    for (const p of peers) if (p.node !== this.opts.node && p.peerUrl) want.set(p.node, p.peerUrl);
    for (const [node, link] of this.links) {
      if (want.get(node) !== link.url) this.removeLink(link);
    }
    for (const [node, url] of want) {
      if (this.links.has(node)) continue;
      const u = new URL(url);
      const link: Link = {
        node,
        url,
        host: u.hostname.replace(/^\[|\]$/g, ''),
        port: Number(u.port),
        conn: null,
        socket: null,
        timer: undefined,
        backoff: new Backoff(100, 2000),
        sinceMs: Date.now(),
        lastError: null,
        removed: false,
        wire: null,
        release: null,
      };
      this.links.set(node, link);
      this.dial(link);
    }
  }

  /** Outgoing links that are up, by node. */
  upLinks(): PeerConnection[] {
    const out: PeerConnection[] = [];
    for (const l of this.links.values()) if (l.conn?.isOpen) out.push(l.conn);
    return out;
  }

  link(node: string): PeerConnection | null {
    const c = this.links.get(node)?.conn;
    return c?.isOpen ? c : null;
  }

  peers(): PeerStatus[] {
    return [...this.links.values()].map((l) => ({
      node: l.node,
      url: l.url,
      up: !!l.conn?.isOpen,
      sinceMs: l.sinceMs,
      lastError: l.lastError,
      wire: l.conn?.isOpen ? l.wire : null,
      release: l.conn?.isOpen ? l.release : null,
    }));
  }

  /** Counts and logs a refused frame or connection; the caller closes what must be closed. */
  reject(reason: RejectReason, fields: Record<string, unknown>, msg: string): void {
    this.opts.onReject?.(reason);
    this.warn.warn(reason, { reason, ...fields }, msg);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const l of this.links.values()) this.removeLink(l);
    for (const c of this.incoming) c.close(null);
    this.incoming.clear();
    const server = this.server;
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  // --- incoming ---------------------------------------------------------------------------------

  private accept(socket: TLSSocket, identity: string | undefined): void {
    if (this.stopped || !identity) {
      socket.destroy();
      return;
    }
    const conn = new PeerConnection(socket, identity, 'in', this.opts);
    let helloDone = false;
    const helloTimer = setTimeout(() => {
      this.reject('hello', { peer: identity }, 'peer refused: no HELLO in time');
      conn.close(new Error('no HELLO'));
    }, this.opts.connectTimeoutMs);
    conn.on('close', (err: Error | null) => {
      clearTimeout(helloTimer);
      this.incoming.delete(conn);
      this.noteClose(conn, err);
    });
    conn.on('frame', (f: Frame) => {
      if (helloDone) {
        this.emit('frame', conn, f);
        return;
      }
      const hello = this.checkHello(f, identity);
      if (typeof hello === 'string') {
        this.reject('hello', { peer: identity, problem: hello }, 'peer refused: bad HELLO');
        conn.close(new Error(hello));
        return;
      }
      conn.wireVersion = hello.wire;
      helloDone = true;
      clearTimeout(helloTimer);
      this.pastHello.add(tcpSocketOf(socket));
      conn.send(FrameType.HELLO, this.hello());
      this.incoming.add(conn);
      this.emit('incoming', conn);
    });
  }

  // --- outgoing ---------------------------------------------------------------------------------

  private dial(link: Link): void {
    if (this.stopped || link.removed) return;
    const key = this.keyFor(link.node);
    if (!key) {
      this.retry(link, new Error(`no peer key for ${link.node} in this node's key file`));
      return;
    }
    const socket = connect({
      host: link.host,
      port: link.port,
      ciphers: CIPHERS,
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.2',
      pskCallback: () => ({ psk: key, identity: this.opts.node }),
      checkServerIdentity: () => undefined,
    });
    link.socket = socket;
    const fail = (err: Error): void => {
      clearTimeout(deadline);
      socket.destroy();
      if (link.socket === socket) link.socket = null;
      this.retry(link, err);
    };
    const deadline = setTimeout(
      () => fail(new Error(`no handshake within ${this.opts.connectTimeoutMs} ms`)),
      this.opts.connectTimeoutMs,
    );
    socket.once('error', fail);
    socket.once('secureConnect', () => {
      socket.off('error', fail);
      const conn = new PeerConnection(socket, link.node, 'out', this.opts);
      let helloDone = false;
      conn.on('close', (err: Error | null) => {
        clearTimeout(deadline);
        if (link.conn === conn) link.conn = null;
        if (helloDone) {
          link.sinceMs = Date.now();
          this.emit('down', link.node);
        }
        this.noteClose(conn, err);
        this.retry(link, err ?? new Error('closed by peer'));
      });
      conn.on('frame', (f: Frame) => {
        if (helloDone) {
          this.emit('frame', conn, f);
          return;
        }
        const hello = this.checkHello(f, link.node);
        if (typeof hello === 'string') {
          this.reject('hello', { peer: link.node, problem: hello }, 'peer refused: bad HELLO');
          conn.close(new Error(hello));
          return;
        }
        conn.wireVersion = hello.wire;
        helloDone = true;
        clearTimeout(deadline);
        link.conn = conn;
        link.wire = hello.wire;
        link.release = hello.release;
        link.backoff.reset();
        link.sinceMs = Date.now();
        const fields = { peer: link.node, wire: hello.wire, release: hello.release };
        if (link.lastError) this.log.info(fields, 'peer link up again');
        else this.log.info(fields, 'peer link up');
        link.lastError = null;
        this.emit('up', conn);
      });
      conn.send(FrameType.HELLO, this.hello());
    });
  }

  private retry(link: Link, err: Error): void {
    if (this.stopped || link.removed || link.timer) return;
    const msg = err.message;
    if (link.lastError !== msg) this.log.warn({ peer: link.node, err: msg }, 'peer link down; reconnecting');
    link.lastError = msg;
    link.timer = setTimeout(() => {
      link.timer = undefined;
      this.dial(link);
    }, link.backoff.next());
  }

  private removeLink(link: Link): void {
    link.removed = true;
    clearTimeout(link.timer);
    link.conn?.close(null);
    link.socket?.destroy();
    this.links.delete(link.node);
  }

  private noteClose(conn: PeerConnection, err: Error | null): void {
    if (err instanceof FrameError) {
      this.reject(err.reason, { peer: conn.node, err: err.message }, 'peer frame refused; link closed');
    } else if (err instanceof LinkError && err.reason === 'backlog') {
      this.reject(
        'backlog',
        { peer: conn.node, err: err.message },
        'peer link closed: the peer does not read what we owe it (a stuck or hostile peer); it reconnects',
      );
    } else if (err instanceof LinkError) {
      // Our bug, not the peer's: the stack says where (the peer reconnects and catches up).
      this.reject(
        'internal',
        { peer: conn.node, err: err.cause instanceof Error ? err.cause : err.message, problem: err.message },
        'peer link closed: handling its frame failed on this node',
      );
    }
  }

  /** `v`/`min`: the wire versions we speak; `release`: for the operator's eyes (status, logs). */
  private hello(): object {
    const wire = this.opts.wire ?? WIRE;
    return {
      v: wire.version,
      min: wire.oldest,
      release: VERSION,
      node: this.opts.node,
      cluster: this.opts.cluster,
    };
  }

  /** The link's agreed wire version and the peer's release, or why the HELLO is refused. */
  private checkHello(f: Frame, expected: string): { wire: number; release: string | null } | string {
    if (f.type !== FrameType.HELLO) return `expected HELLO, got frame type ${f.type}`;
    const h = f.header;
    const ours = this.opts.wire ?? WIRE;
    const theirs = parseWireRange(h.v, h.min);
    const release = typeof h.release === 'string' ? h.release.slice(0, 64) : null;
    if (!theirs) return `wire version ${String(h.v)} (oldest ${String(h.min)}) is not a version range`;
    const wire = agreedWireVersion(ours, theirs);
    if (wire === null)
      return `no wire version in common: the peer (release ${release ?? 'unknown'}) speaks ${theirs.oldest}..${theirs.version}, this node ${ours.oldest}..${ours.version}; upgrade one release step at a time (docs/upgrade.md)`;
    if (h.cluster !== this.opts.cluster) return `cluster ${String(h.cluster)}, want ${this.opts.cluster}`;
    if (h.node !== expected) return `says it is ${String(h.node)}, authenticated as ${expected}`;
    if (h.node === this.opts.node) return 'a peer with our own node name';
    return { wire, release };
  }
}
