// A TCP proxy on 127.0.0.1 that can cut a link the way a real partition does: in `blackhole` mode
// every socket stays open but nothing is forwarded either way, and new connections are accepted
// and never answered — no RST, no FIN, no error, just silence. `heal` resumes forwarding on the
// held connections (as TCP retransmission would) and connects the ones accepted meanwhile.
// Chaos tests put one proxy between each controller and each etcd member, one in front of each etcd
// member's peer port, and one in front of each Modbus TCP unit, where `impair` makes the link slow
// (every chunk held `delayMs`, order kept) or lossy (a chunk dropped whole with `dropPct` chance)
// and `resetAll` ends every connection with a TCP RST.
import { type AddressInfo, createServer, type Server, Socket } from 'node:net';

export type ProxyMode = 'pass' | 'blackhole';

export interface BlackholeProxyOptions {
  /** Where to forward: host and port of the real service. */
  target: { host: string; port: number };
  /** Listen port on 127.0.0.1; 0 (default) picks a free one. */
  port?: number;
  /** Start cut (default `pass`). */
  mode?: ProxyMode;
  /** Rewrites bytes from the client before they go upstream (tests and baselines only). */
  clientToUpstream?: (chunk: Buffer) => Buffer;
  /** How long `heal` may wait for an upstream connection (default 2000 ms). */
  connectTimeoutMs?: number;
}

export interface ProxyStats {
  accepted: number;
  open: number;
  bytesUp: number;
  bytesDown: number;
  /** Bytes held back while cut (delivered on heal, dropped if a side went away). */
  heldBytes: number;
  /** Chunks thrown away by a lossy impairment. */
  droppedChunks: number;
  /** Connections ended with a TCP RST by `resetAll`. */
  resets: number;
}

export interface Impairment {
  /** Every chunk, either way, is delivered this much later (order kept). */
  delayMs?: number;
  /** Chance (0–100) that a chunk, either way, is dropped whole. */
  dropPct?: number;
  /** Random source for the drops (seeded runs replay); default Math.random. */
  rnd?: () => number;
}

interface Link {
  client: Socket;
  upstream: Socket | null;
  /** Data received while cut, per direction, in order. */
  heldUp: Buffer[];
  heldDown: Buffer[];
  clientEnded: boolean;
  /** When the last delayed chunk is due, per direction: a later chunk never overtakes it. */
  dueUpMs: number;
  dueDownMs: number;
  upstreamEnded: boolean;
  closed: boolean;
}

export class BlackholeProxy {
  private readonly opts: BlackholeProxyOptions;
  private readonly server: Server;
  private readonly links = new Set<Link>();
  private currentMode: ProxyMode;
  private listenPort = 0;
  private impairment: Impairment | null = null;
  readonly stats: ProxyStats = {
    accepted: 0,
    open: 0,
    bytesUp: 0,
    bytesDown: 0,
    heldBytes: 0,
    droppedChunks: 0,
    resets: 0,
  };

  private constructor(opts: BlackholeProxyOptions) {
    this.opts = opts;
    this.currentMode = opts.mode ?? 'pass';
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: false }, (s) => this.accept(s));
  }

  static async start(opts: BlackholeProxyOptions): Promise<BlackholeProxy> {
    const p = new BlackholeProxy(opts);
    await new Promise<void>((resolve, reject) => {
      p.server.once('error', reject);
      p.server.listen(opts.port ?? 0, '127.0.0.1', () => {
        p.server.off('error', reject);
        resolve();
      });
    });
    p.listenPort = (p.server.address() as AddressInfo).port;
    return p;
  }

  get port(): number {
    return this.listenPort;
  }

  /** `127.0.0.1:PORT`, for clients. */
  get address(): string {
    return `127.0.0.1:${this.listenPort}`;
  }

  get mode(): ProxyMode {
    return this.currentMode;
  }

  /** Stops forwarding on every connection and stops answering new ones; closes nothing. */
  blackhole(): void {
    this.currentMode = 'blackhole';
  }

  /** Forwards again: held bytes are delivered in order, held connections get their upstream. */
  heal(): void {
    if (this.currentMode === 'pass') return;
    this.currentMode = 'pass';
    for (const link of this.links) this.resume(link);
  }

  /** Makes the link slow and/or lossy until `unimpair` (a cut still holds everything). */
  impair(i: Impairment): void {
    this.impairment = i;
  }

  unimpair(): void {
    this.impairment = null;
  }

  /** Ends every open connection with a TCP RST on both sides (a middlebox or peer reset). */
  resetAll(): number {
    let n = 0;
    for (const link of [...this.links]) {
      if (link.closed) continue;
      link.closed = true;
      this.stats.open--;
      this.links.delete(link);
      link.client.resetAndDestroy();
      link.upstream?.resetAndDestroy();
      n++;
    }
    this.stats.resets += n;
    return n;
  }

  /**
   * Sends a chunk on through the impairment: dropped, delayed (never ahead of an earlier one), or
   * at once. `write` is called only while the target socket is still writable.
   */
  private deliver(link: Link, dir: 'up' | 'down', chunk: Buffer, to: Socket): void {
    const i = this.impairment;
    if (i?.dropPct && (i.rnd ?? Math.random)() * 100 < i.dropPct) {
      this.stats.droppedChunks++;
      return;
    }
    if (dir === 'up') this.stats.bytesUp += chunk.length;
    else this.stats.bytesDown += chunk.length;
    const now = performance.now();
    const prevDue = dir === 'up' ? link.dueUpMs : link.dueDownMs;
    const due = Math.max(now + (i?.delayMs ?? 0), prevDue);
    if (due <= now) {
      to.write(chunk);
      return;
    }
    if (dir === 'up') link.dueUpMs = due;
    else link.dueDownMs = due;
    setTimeout(() => {
      if (!link.closed && !to.destroyed) to.write(chunk);
    }, due - now).unref();
  }

  /** Closes the listener and destroys every connection (both sides). Idempotent. */
  async close(): Promise<void> {
    for (const link of this.links) this.destroy(link);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    this.stats.accepted++;
    this.stats.open++;
    const link: Link = {
      client,
      upstream: null,
      heldUp: [],
      heldDown: [],
      clientEnded: false,
      dueUpMs: 0,
      dueDownMs: 0,
      upstreamEnded: false,
      closed: false,
    };
    this.links.add(link);
    client.setNoDelay(true);
    client.on('data', (chunk: Buffer) => {
      const data = this.opts.clientToUpstream ? this.opts.clientToUpstream(chunk) : chunk;
      if (this.currentMode === 'pass' && link.upstream && link.upstream.readyState === 'open') {
        this.deliver(link, 'up', data, link.upstream);
      } else {
        this.stats.heldBytes += data.length;
        link.heldUp.push(data);
      }
    });
    client.on('end', () => {
      link.clientEnded = true;
      if (this.currentMode === 'pass' && link.upstream?.readyState === 'open') link.upstream.end();
    });
    // A client giving up on a cut link must not tell the server anything: the server sees nothing
    // until the link heals (then the dead connection is closed, as a real timeout eventually would).
    client.on('close', () => {
      if (this.currentMode === 'pass') this.destroy(link);
    });
    client.on('error', () => {});
    if (this.currentMode === 'pass') this.connectUpstream(link);
  }

  private connectUpstream(link: Link): void {
    if (link.upstream || link.closed) return;
    const up = new Socket({ allowHalfOpen: true });
    link.upstream = up;
    up.setNoDelay(true);
    const timer = setTimeout(
      () => up.destroy(new Error('upstream connect timeout')),
      this.opts.connectTimeoutMs ?? 2000,
    );
    up.once('connect', () => {
      clearTimeout(timer);
      if (this.currentMode === 'pass') this.flush(link);
    });
    up.on('data', (chunk: Buffer) => {
      if (this.currentMode === 'pass' && !link.client.destroyed) {
        this.deliver(link, 'down', chunk, link.client);
      } else {
        this.stats.heldBytes += chunk.length;
        link.heldDown.push(chunk);
      }
    });
    up.on('end', () => {
      link.upstreamEnded = true;
      if (this.currentMode === 'pass' && !link.client.destroyed) link.client.end();
    });
    up.on('close', () => {
      clearTimeout(timer);
      if (this.currentMode === 'pass') this.destroy(link);
    });
    up.on('error', () => {});
    up.connect(this.opts.target.port, this.opts.target.host);
  }

  private resume(link: Link): void {
    if (link.closed) return;
    if (link.client.destroyed) {
      this.destroy(link);
      return;
    }
    if (!link.upstream) {
      this.connectUpstream(link);
      return;
    }
    if (link.upstream.destroyed) {
      this.destroy(link);
      return;
    }
    if (link.upstream.readyState === 'open') this.flush(link);
  }

  private flush(link: Link): void {
    const up = link.upstream;
    if (!up || link.closed) return;
    for (const b of link.heldUp.splice(0)) {
      this.stats.bytesUp += b.length;
      up.write(b);
    }
    for (const b of link.heldDown.splice(0)) {
      this.stats.bytesDown += b.length;
      link.client.write(b);
    }
    if (link.clientEnded) up.end();
    if (link.upstreamEnded) link.client.end();
  }

  private destroy(link: Link): void {
    if (link.closed) return;
    link.closed = true;
    this.stats.open--;
    this.links.delete(link);
    link.client.destroy();
    link.upstream?.destroy();
  }
}
