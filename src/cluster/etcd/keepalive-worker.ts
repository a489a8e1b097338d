// The keepalive worker: this node's lease lives here, on a thread with its own event loop and its
// own connections to etcd (one per member: etcd-members.ts, speaking lease-wire.ts), so a long
// synchronous stretch on the main loop (a huge message parsed, a GC storm) cannot delay the
// keepalives and let the guard deadline pass.
// It grants the lease, sends one keepalive every keepaliveIntervalMs (each with a deadline, on the
// member that answered last, and on to the next member at once when it fails or is slow), and
// moves the deadline of the LeaseGuard it shares with the main thread. It also watches the main thread's
// heartbeat: a main loop stuck longer than stallBoundMs cannot drive its groups, so the worker
// invalidates the guard and revokes the lease — a hung process must not hold groups ("never
// none"). Every outcome reaches the main thread as a message (etcd-session.ts); nothing here
// throws past its own loop.
// The lease-id file only lets a restart revoke this run's lease at once instead of waiting out its
// TTL; safety never rests on it. So a data dir that is full or read-only costs that speed-up, never
// the lease: the lease is used anyway, the write is tried again, one line says so and one its end,
// and every attempt reaches the main thread ('lease-file') for the metrics an alert reads.
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Backoff, waitUnlessAborted } from '../../util/async.ts';
import { ClusterError, ClusterErrorCodes, isClusterError } from '../errors.ts';
import { type KeepaliveToken, LeaseGuard, sharedClockMs } from '../lease-guard.ts';
import type { EtcdSecurity } from './etcd-client.ts';
import { EtcdMembers, memberName } from './etcd-members.ts';
import { EtcdLeaseWire, leaseHex } from './lease-wire.ts';

export interface KeepaliveWorkerData {
  shared: SharedArrayBuffer;
  hosts: string[];
  /** TLS and user, as the main thread's client has them. */
  security: EtcdSecurity;
  ttlS: number;
  keepaliveIntervalMs: number;
  safetyMarginMs: number;
  callTimeoutMs: number;
  /** <dataDir>/lease-id.<node>: revoked at start (a previous run's), written on each grant. */
  leaseFile: string;
  /** A main-thread heartbeat older than this gives the lease up. */
  stallBoundMs: number;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Worker → main thread. */
export type WorkerMessage =
  | { t: 'lease'; id: string; hex: string; moved: boolean }
  | { t: 'ack'; seconds: number; moved: boolean }
  /** A keepalive attempt failed on `member` (host:port) and went on to the next member. */
  | { t: 'keepalive-failed'; member: string }
  | { t: 'lost'; hex: string; reason: string }
  /** A write of the lease-id file: done, or failed (`code`: the errno). */
  | { t: 'lease-file'; ok: boolean; code?: string }
  | { t: 'log'; level: LogLevel; fields: Record<string, unknown>; msg: string }
  | { t: 'stopped' };

/** Main thread → worker. */
export type MainMessage = { t: 'stop' };

/**
 * A keepalive with no answer after this share of its deadline goes to the next member as well: a hung
 * member must not eat into the lease (sending it twice only extends the lease).
 */
const KEEPALIVE_HEDGE_SHARE = 0.25;
/** Keepalives allowed in flight at once: enough to ride over one slow member, bounded under a blackhole. */
const MAX_KEEPALIVES_IN_FLIGHT = 3;
const REGRANT_BACKOFF_MS = { first: 100, max: 2_000 };
/** A lease-id file that could not be written is tried again at most this often. */
const LEASE_FILE_RETRY_MS = 1_000;

interface Lease {
  id: string;
  hex: string;
}

class KeepaliveLoop {
  private readonly d: KeepaliveWorkerData;
  private readonly guard: LeaseGuard;
  /** Calls go to the member that answered last, and on to the next at once when it fails. */
  private readonly members: EtcdMembers<EtcdLeaseWire>;
  private readonly send: (m: WorkerMessage) => void;
  private readonly stopping = new AbortController();
  private current: Lease | null = null;
  private timer: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private granting = false;
  private stopped = false;
  /** The lease the lease-id file names, as far as this run wrote it. */
  private persistedId: string | null = null;
  /** The write of the lease-id file in progress: one at a time, so an older id never lands last. */
  private leaseFileWrite: Promise<void> | null = null;
  private leaseFileTriedMs = 0;
  /** The error code of the failing lease-id writes (one line per streak and per new code). */
  private leaseFileError: string | null = null;

  constructor(d: KeepaliveWorkerData, send: (m: WorkerMessage) => void) {
    this.d = d;
    this.send = send;
    this.guard = new LeaseGuard({ ttlMs: d.ttlS * 1000, marginMs: d.safetyMarginMs, shared: d.shared });
    this.members = new EtcdMembers(d.hosts, (endpoint) => new EtcdLeaseWire({ ...d.security, endpoint }));
  }

  async start(): Promise<void> {
    await this.revokePrevious();
    this.scheduleTick();
    await this.grantWithRetry();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.stopping.abort(new ClusterError(ClusterErrorCodes.ABORTED, 'session stopped'));
    clearTimeout(this.timer);
    this.guard.invalidate('session stopped');
    const lease = this.current;
    this.current = null;
    if (lease) {
      try {
        await this.revoke(lease.id, undefined);
        this.log('info', { lease: lease.hex }, 'lease revoked');
        // A read-only data dir keeps the file: the next start revokes a lease that is gone, harmlessly.
        await this.leaseFileWrite;
        await rm(this.d.leaseFile, { force: true }).catch(() => {});
      } catch (err) {
        // The keys expire with the TTL anyway; the next start revokes it from the file.
        this.log(
          'warn',
          { err: errFields(err), lease: lease.hex },
          'lease revoke failed at stop; it expires with its TTL',
        );
      }
    }
    this.members.close();
  }

  private log(level: LogLevel, fields: Record<string, unknown>, msg: string): void {
    this.send({ t: 'log', level, fields, msg });
  }

  private async revokePrevious(): Promise<void> {
    let previous: string;
    try {
      previous = (await readFile(this.d.leaseFile, 'utf8')).trim();
    } catch {
      return; // first start, or a clean stop
    }
    if (!/^\d+$/.test(previous)) {
      this.log('warn', { file: this.d.leaseFile }, 'ignoring unreadable previous lease id');
      return;
    }
    try {
      await this.revoke(previous, this.stopping.signal);
      this.log('info', { lease: leaseHex(previous) }, 'revoked the lease of a previous run');
    } catch (err) {
      // Bounded and best effort: if etcd cannot be reached now, that lease expires with its TTL.
      this.log(
        'warn',
        { err: errFields(err), lease: leaseHex(previous) },
        'could not revoke the previous lease',
      );
    }
  }

  private async revoke(id: string, signal: AbortSignal | undefined): Promise<void> {
    try {
      await this.members.call((member) => member.revoke(id, this.d.callTimeoutMs, signal));
    } catch (err) {
      if (isClusterError(err, ClusterErrorCodes.LEASE_LOST)) return; // already gone
      throw err;
    }
  }

  /** Grants a lease, retrying with backoff; waits while the main loop is stalled. */
  private async grantWithRetry(): Promise<void> {
    if (this.granting) return;
    this.granting = true;
    const backoff = new Backoff(REGRANT_BACKOFF_MS.first, REGRANT_BACKOFF_MS.max);
    // One warning per streak (and per new cause), not one per attempt: etcd may be away for minutes.
    let failed = 0;
    let lastCause: unknown;
    try {
      while (!this.stopped && !this.current) {
        if (this.mainStalledMs() === null) {
          try {
            await this.grant(failed);
            return;
          } catch (err) {
            if (this.stopped) return;
            failed++;
            const cause = errFields(err).code ?? errFields(err).message;
            this.log(
              failed === 1 || cause !== lastCause ? 'warn' : 'debug',
              { err: errFields(err), attempt: failed },
              'lease grant failed',
            );
            lastCause = cause;
          }
        }
        await waitUnlessAborted(backoff.next(), this.stopping.signal);
      }
    } finally {
      this.granting = false;
    }
  }

  /** `failedBefore`: the attempts of this streak that failed, for the line that ends it. */
  private async grant(failedBefore: number): Promise<void> {
    // The grant's own send time is the first proof: etcd starts the TTL when it applies the grant.
    let token!: KeepaliveToken;
    const res = await this.members.call((member) => {
      token = this.guard.keepaliveSent();
      return member.grant(this.d.ttlS, this.d.callTimeoutMs, this.stopping.signal);
    });
    if (res.ttlS > this.d.ttlS) {
      // etcd raised the TTL to its minimum: failover will take longer than configured. The guard
      // keeps using the smaller, asked-for TTL, which is only more conservative.
      this.log('warn', { askedS: this.d.ttlS, grantedS: res.ttlS }, 'etcd raised the lease TTL');
    }
    const lease = { id: res.id, hex: leaseHex(res.id) };
    if (this.stopped) {
      await this.revoke(lease.id, undefined).catch(() => {});
      throw new ClusterError(ClusterErrorCodes.ABORTED, 'session stopped during lease grant');
    }
    // Persisted before it is used where the disk allows, so that a crash after this point leaves
    // the restart an id to revoke.
    await this.persistLeaseId(lease);
    this.current = lease;
    const moved = this.guard.keepaliveAcked(token);
    this.log(
      'info',
      { lease: lease.hex, ttlS: this.d.ttlS, ...(failedBefore > 0 ? { failedAttempts: failedBefore } : {}) },
      'lease granted',
    );
    this.send({ t: 'lease', id: lease.id, hex: lease.hex, moved });
  }

  /** Writes `lease`'s id to the lease-id file (temp file, rename); never throws. */
  private async persistLeaseId(lease: Lease): Promise<void> {
    while (this.leaseFileWrite) await this.leaseFileWrite;
    // A retry that waited behind a newer lease's write must not put the older id back.
    if (this.current !== null && this.current !== lease) return;
    this.leaseFileTriedMs = performance.now();
    this.leaseFileWrite = this.writeLeaseFile(lease);
    await this.leaseFileWrite;
    this.leaseFileWrite = null;
  }

  private async writeLeaseFile(lease: Lease): Promise<void> {
    const tmp = `${this.d.leaseFile}.tmp`;
    try {
      await writeFile(tmp, `${lease.id}\n`);
      await rename(tmp, this.d.leaseFile);
    } catch (err) {
      // A half-written temp file would hold the last free blocks of a full disk.
      await rm(tmp, { force: true }).catch(() => {});
      const e = errFields(err);
      const code = String(e.code ?? e.message);
      if (code !== this.leaseFileError) {
        this.log(
          'error',
          { err: e, file: this.d.leaseFile, lease: lease.hex },
          'cannot write the lease id file; the lease is used anyway, and a restart after a crash waits out its TTL instead of revoking it (free space in the data dir)',
        );
      }
      this.leaseFileError = code;
      this.send({ t: 'lease-file', ok: false, code });
      return;
    }
    this.persistedId = lease.id;
    // Said on every success (one per grant), so a replaced worker's first write clears the gauge too.
    this.send({ t: 'lease-file', ok: true });
    if (this.leaseFileError !== null) {
      this.leaseFileError = null;
      this.log('info', { file: this.d.leaseFile, lease: lease.hex }, 'lease id file written again');
    }
  }

  /** Ms the main loop has been silent, when that is past the stall bound; else null. */
  private mainStalledMs(): number | null {
    const since = this.guard.sinceBeatMs();
    return since > this.d.stallBoundMs ? since : null;
  }

  private scheduleTick(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.scheduleTick();
      this.tick();
    }, this.d.keepaliveIntervalMs);
  }

  private tick(): void {
    const lease = this.current;
    if (!lease) return;
    const stalledMs = this.mainStalledMs();
    if (stalledMs !== null) {
      this.giveUpForStall(lease, stalledMs);
      return;
    }
    if (
      this.persistedId !== lease.id &&
      !this.leaseFileWrite &&
      performance.now() - this.leaseFileTriedMs >= LEASE_FILE_RETRY_MS
    )
      void this.persistLeaseId(lease);
    if (this.inFlight >= MAX_KEEPALIVES_IN_FLIGHT) return;
    this.inFlight++;
    this.keepaliveOnce(lease)
      .then(({ ttlS, token }) => {
        if (this.current !== lease) return; // answer for a lease we already gave up
        if (ttlS <= 0) {
          this.onLost(lease, 'etcd says the lease expired (keepalive TTL 0)');
          return;
        }
        this.onAck(token);
      })
      .catch((err: unknown) => {
        if (this.current !== lease) return;
        if (isClusterError(err, ClusterErrorCodes.LEASE_LOST)) {
          this.onLost(lease, 'etcd says the lease is not found');
          return;
        }
        // Every member failed this once: the guard keeps counting down; the next tick tries again.
        this.log('debug', { err: errFields(err) }, 'keepalive failed on every member');
      })
      .finally(() => {
        this.inFlight--;
      });
  }

  /**
   * One keepalive on its own short stream, with a deadline, on the member that answered last and,
   * if that one fails or has not answered within a quarter of the deadline, on the next ones too
   * (not a tick later). Resolves with etcd's TTL for the lease and the send time of the attempt
   * that was answered: that is what moves the deadline.
   */
  private keepaliveOnce(lease: Lease): Promise<{ ttlS: number; token: KeepaliveToken }> {
    return this.members.callHedged(
      (member) => {
        // Each attempt's own send time: the one answered is what moves the deadline.
        const token = this.guard.keepaliveSent();
        return member
          .keepAlive(lease.id, this.d.callTimeoutMs, this.stopping.signal)
          .then((ttlS) => ({ ttlS, token }));
      },
      Math.max(1, Math.round(this.d.callTimeoutMs * KEEPALIVE_HEDGE_SHARE)),
      (endpoint, err) => {
        const member = memberName(endpoint);
        this.log('debug', { member, err: errFields(err) }, 'keepalive failed; trying the next member');
        this.send({ t: 'keepalive-failed', member });
      },
    );
  }

  private onAck(token: KeepaliveToken): void {
    const moved = this.guard.keepaliveAcked(token);
    this.send({ t: 'ack', seconds: (sharedClockMs() - token.sentAtMs) / 1000, moved });
  }

  private giveUpForStall(lease: Lease, stalledMs: number): void {
    const reason = `main event loop stalled for ${Math.round(stalledMs)} ms (bound ${this.d.stallBoundMs} ms): a hung process must not hold groups it cannot drive`;
    this.onLost(lease, reason);
    // Revoked, not left to expire: the next candidates lead at once instead of a TTL later.
    this.revoke(lease.id, this.stopping.signal).then(
      () => this.log('info', { lease: lease.hex }, 'revoked the lease given up for a stalled main loop'),
      (err: unknown) =>
        this.log(
          'warn',
          { err: errFields(err), lease: lease.hex },
          'revoking the lease given up for a stall failed; it expires with its TTL',
        ),
    );
  }

  private onLost(lease: Lease, reason: string): void {
    // Invalidate first: the main thread finds mayAct() false before the message reaches it.
    this.guard.invalidate(reason);
    this.current = null;
    this.log('warn', { lease: lease.hex, reason }, 'lease lost');
    this.send({ t: 'lost', hex: lease.hex, reason });
    void this.grantWithRetry();
  }
}

/** What pino's err serializer would keep of an error, as plain data a message can carry. */
export function errFields(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { message: String(err) };
  const code = (err as { code?: unknown }).code;
  return { type: err.name, message: err.message, ...(code === undefined ? {} : { code }) };
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  const loop = new KeepaliveLoop(workerData as KeepaliveWorkerData, (m) => port.postMessage(m));
  port.on('message', (m: MainMessage) => {
    if (m.t !== 'stop') return;
    void loop
      .stop()
      .catch(() => {})
      .finally(() => {
        port.postMessage({ t: 'stopped' } satisfies WorkerMessage);
        port.close(); // nothing else keeps this thread alive: it exits
      });
  });
  loop.start().catch((err: unknown) => {
    port.postMessage({
      t: 'log',
      level: 'error',
      fields: { err: errFields(err) },
      msg: 'keepalive worker start failed',
    } satisfies WorkerMessage);
  });
}
