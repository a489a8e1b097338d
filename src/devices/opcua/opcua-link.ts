// One OPC-UA unit's link: a client, secure channel, session and subscription, rebuilt whole by a
// reconnect loop with backoff until close() (node-opcua's own retry is off, maxRetry 0: it is
// unbounded). Invariants: every connect attempt has a deadline and leaves no session behind when it
// fails; a subscribed value counts as a reading only while the subscription keeps publishing it.
import {
  AttributeIds,
  type ClientMonitoredItemGroup,
  type ClientSession,
  type ClientSubscription,
  DataChangeFilter,
  DataChangeTrigger,
  type DataValue,
  MessageSecurityMode,
  OPCUAClient,
  type ReadValueIdOptions,
  SecurityPolicy,
  type StatusCode,
  TimestampsToReturn,
  type UserIdentityInfo,
  UserTokenType,
} from 'node-opcua-client';
import type { Logger } from 'pino';
import { readSecretLine } from '../../config/config-files.ts';
import type { OpcuaAirHandler } from '../../config/site-schema.ts';
import { DeviceError, ErrorCodes } from '../../errors.ts';
import { Backoff } from '../../util/async.ts';
import type { DeviceDeps } from '../device-deps.ts';
import type { LinkState } from '../device-io.ts';
import type { DeviceMetrics } from '../metrics.ts';
import { defaultLinkRule, LinkMonitor, pause, RECONNECT_MAX_MS, withDeadline } from '../resilience.ts';
import { statusIn, thrownError } from './call-status.ts';
import { certificateManagerFor, DEFAULT_CLIENT_PKI_DIR, initializedOnce, newestFile } from './client-pki.ts';
import { nodeIdFor, type OpcuaNodeMap, type OpcuaPointName } from './node-map.ts';
import type { OpcuaProfileNodes, ResolvedNode } from './profile-nodes.ts';

export const PROTOCOL = 'opcua';
/** Connecting includes a secure-channel handshake (and, the very first time, making our key pair). */
const MIN_CONNECT_TIMEOUT_MS = 5_000;
const CLOSE_DEADLINE_MS = 2_000;
/** Reconnect: from 250 ms, doubling up to the devices' common ceiling (resilience.ts says why). */
const RECONNECT_BACKOFF = { baseMs: 250, maxMs: RECONNECT_MAX_MS } as const;
/** Publishing and sampling; a publish (data or keep-alive) arrives at least every 2 intervals. */
const PUBLISHING_INTERVAL_MS = 250;
const MAX_KEEP_ALIVE_COUNT = 2;
const LIFETIME_COUNT = 60;
/**
 * Every sample is published (trigger StatusValueTimestamp), so a healthy server refreshes each cached
 * value once per interval; a value older than this many intervals means sampling stalled: ask.
 */
const CACHE_FRESH_INTERVALS = 3;
/** No publish for this many keep-alive periods: the connection is dead even if TCP says otherwise. */
const SILENT_KEEPALIVES_BEFORE_LOST = 4;
const HOUSEKEEPING_MS = 500;
/**
 * The largest message we take from a unit. Ours are small (a Read of a profile's points, endpoints
 * with their certificates: kilobytes); node-opcua's own ceiling is 64 MB per message, which lets one
 * broken or hostile server that sends a huge string every publishing interval exhaust a gateway.
 */
const MAX_MESSAGE_BYTES = 1024 * 1024;
/**
 * The chunk size we offer in our Hello. node-opcua allocates a whole chunk of the negotiated size
 * for every message it sends, however small, and holds it while the request is pending (five
 * publish requests per session): with its default (640 KB; its server clamps to 512 KB) each unit
 * churned 1 MB of buffers a second. Our largest message is about 3 KB (answers that carry the
 * server certificate; OpenSecureChannel, which must fit one chunk, is 1.7 KB with our 2048-bit
 * certificate), so 16 KB holds each in one chunk with room for a chain of larger certificates; an
 * answer up to MAX_MESSAGE_BYTES comes in several. The same size both ways: node-opcua crosses the
 * two (it sends chunks of the server's send size and accepts those of its receive size).
 */
export const OPCUA_CHUNK_BYTES = 16 * 1024;
/**
 * The session timeout we ask for. A unit's server keeps a session this long after its client
 * vanished (kill -9, a lost link, a reconnect that could not close the old session), and servers
 * allow few sessions (node-opcua: 10; embedded controllers often 2–5): with the usual 60 s, three
 * controller restarts in a minute fill a small server and it refuses the new sessions
 * (BadTooManySessions). The publish loop touches the session every keep-alive period
 * (PUBLISHING_INTERVAL_MS × MAX_KEEP_ALIVE_COUNT = 0.5 s), so 10 s is 20 periods of slack.
 */
export const OPCUA_SESSION_TIMEOUT_MS = 10_000;

/** The points read() returns, in the order of the Read request and of the monitored items. */
export const READ_POINTS = [
  'mode',
  'fanPct',
  'fanCmdPct',
  'supplySetpointC',
  'supplyC',
  'returnC',
  'cwValvePct',
  'alarms',
  'epoch',
  'heartbeat',
  'fanKw',
  'coolingKw',
] as const satisfies readonly OpcuaPointName[];
export type ReadPoint = (typeof READ_POINTS)[number];

interface CachedValue {
  dv: DataValue;
  sourceMs: number;
  /** When we got it (monotonic clock): freshness never depends on the device's wall clock. */
  receivedMs: number;
}

/**
 * Message security unless the site says otherwise: None is allowed (many units offer nothing
 * else) but only where the config names it, and then warned about at start (docs/security.md).
 */
export function securityModeOf(endpoint: OpcuaAirHandler['endpoint']): 'None' | 'Sign' | 'SignAndEncrypt' {
  return endpoint.securityMode ?? 'SignAndEncrypt';
}

/** One live connection: a client, its session, its subscription. Replaced whole on reconnect. */
export interface Connection {
  client: OPCUAClient;
  session: ClientSession;
  subscription: ClientSubscription;
  group: ClientMonitoredItemGroup;
  nsIndex: number;
  /** A vendor-profile unit: its points as this session addresses them. */
  vendorNodes: ResolvedNode[] | undefined;
  /** Resolves once, when the connection is lost for any reason (never rejects). */
  lost: Promise<string>;
  markLost: (reason: string) => void;
  lastPublishMs: number;
  keepAlivePeriodMs: number;
  publishingIntervalMs: number;
  disposed: boolean;
}

/** What a link needs from the device it serves. */
export interface OpcuaLinkOptions {
  ahu: OpcuaAirHandler;
  map: OpcuaNodeMap;
  /** A unit with a vendor profile: its nodes are resolved on every connect; native units: undefined. */
  vendor: OpcuaProfileNodes | undefined;
  deps: DeviceDeps;
  /** The device's logger: the link's lines carry the same component and device. */
  log: Logger;
  timeoutMs: number;
  /** Aborted by the device's close(): ends the reconnect loop and the attempt in progress. */
  closed: AbortSignal;
  onLinkChange: (from: LinkState, to: LinkState, reason: string) => void;
  /** A Good sample of the unit's mode (subscription or read): the device watches remote control. */
  onModeSample: (dv: DataValue) => void;
}

export class OpcuaLink {
  /** Link state: fed by the reconnect loop and the publish keep-alive here, and by every call. */
  readonly monitor: LinkMonitor;
  private readonly id: string;
  private readonly ahu: OpcuaAirHandler;
  private readonly map: OpcuaNodeMap;
  private readonly vendor: OpcuaProfileNodes | undefined;
  private readonly namespaceUri: string;
  private readonly log: Logger;
  private readonly metrics: DeviceMetrics | undefined;
  private readonly pkiDir: string;
  private readonly trustUnknown: boolean;
  private readonly clientName: string;
  private readonly timeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly closed: AbortSignal;
  private readonly onModeSample: (dv: DataValue) => void;
  private readonly attemptWaiters = new Set<{ ok: () => void; fail: (err: Error) => void }>();
  private readonly cache = new Map<ReadPoint, CachedValue>();
  private conn: Connection | undefined;
  private loop: Promise<void> | undefined;
  private kickBackoff: AbortController | undefined;
  private housekeeping: NodeJS.Timeout | undefined;
  private lastConnectErrorCode: string | undefined;

  constructor(o: OpcuaLinkOptions) {
    const { ahu, deps } = o;
    this.ahu = ahu;
    this.id = ahu.id;
    this.map = o.map;
    this.vendor = o.vendor;
    this.namespaceUri = this.vendor?.namespaceUri ?? this.map.namespaceUri;
    this.log = o.log;
    this.metrics = deps.metrics;
    this.pkiDir = deps.pkiDir ?? DEFAULT_CLIENT_PKI_DIR;
    this.trustUnknown = deps.trustUnknownCertificates ?? false;
    this.clientName = deps.clientName ?? `coolctl-${ahu.id}`;
    this.timeoutMs = o.timeoutMs;
    this.connectTimeoutMs = Math.max(5 * this.timeoutMs, MIN_CONNECT_TIMEOUT_MS);
    this.closed = o.closed;
    this.onModeSample = o.onModeSample;
    this.monitor = new LinkMonitor(defaultLinkRule, o.onLinkChange);
    this.metrics?.link(this.id, PROTOCOL, 'down');
    // An unsigned link lets anyone on the OT network read and forge this unit's traffic: allowed,
    // since many units offer nothing else, but said once at start (docs/security.md).
    if (securityModeOf(ahu.endpoint) === 'None')
      this.log.warn(
        { url: ahu.endpoint.url, securityMode: 'None' },
        'OPC-UA link without message security: traffic can be read and forged on the network (set endpoint.securityMode: SignAndEncrypt where the unit offers it)',
      );
  }

  get connection(): Connection | undefined {
    return this.conn;
  }

  /**
   * The next connect attempt's outcome, within the connect deadline: starts the reconnect loop if
   * need be and cuts its backoff short.
   */
  openAttempt(signal: AbortSignal | undefined): Promise<void> {
    const attempt = new Promise<void>((ok, fail) => {
      const waiter = {
        ok: () => {
          this.attemptWaiters.delete(waiter);
          ok();
        },
        fail: (err: Error) => {
          this.attemptWaiters.delete(waiter);
          fail(err);
        },
      };
      this.attemptWaiters.add(waiter);
    });
    attempt.catch(() => {}); // settled through the race below; never an unhandled rejection
    this.housekeeping ??= setInterval(() => this.houseKeep(), HOUSEKEEPING_MS).unref();
    this.loop ??= this.connectionLoop();
    this.kickBackoff?.abort(); // an explicit open() tries now, not after the current backoff
    return withDeadline(this.id, 'connect', this.connectTimeoutMs + HOUSEKEEPING_MS, signal, () => attempt);
  }

  /** The device is closing: the attempts anyone awaits fail with its error. */
  failAttempts(err: Error): void {
    for (const w of [...this.attemptWaiters]) w.fail(err);
  }

  /** After the device's close signal: tears the connection down and waits (bounded) for the loop. */
  async close(): Promise<void> {
    clearInterval(this.housekeeping);
    const conn = this.conn;
    this.conn = undefined;
    if (conn) await this.dispose(conn, 'closed');
    await within(this.loop, CLOSE_DEADLINE_MS);
    this.monitor.lost('closed');
  }

  connected(): Connection {
    const conn = this.conn;
    if (!conn) {
      throw new DeviceError(ErrorCodes.DEVICE_UNREACHABLE, this.id, 'not connected (reconnecting)', {
        retryable: true,
      });
    }
    return conn;
  }

  readIds(conn: Pick<Connection, 'nsIndex'>, points: readonly OpcuaPointName[]): ReadValueIdOptions[] {
    return points.map((p) => ({
      nodeId: nodeIdFor(conn.nsIndex, this.map.nodes[p]),
      attributeId: AttributeIds.Value,
    }));
  }

  // ---- the subscription cache -------------------------------------------------------------------

  /** The cached values if each is Good, the set is complete and the subscription published recently. */
  freshCache(): Map<ReadPoint, DataValue> | undefined {
    const conn = this.conn;
    if (!conn || this.cache.size < READ_POINTS.length) return undefined;
    const oldestMs = performance.now() - CACHE_FRESH_INTERVALS * conn.publishingIntervalMs;
    const values = new Map<ReadPoint, DataValue>();
    for (const p of READ_POINTS) {
      const c = this.cache.get(p);
      if (!c?.dv.statusCode.isGood() || c.receivedMs < oldestMs) return undefined;
      values.set(p, c.dv);
    }
    return values;
  }

  /**
   * Newest sample wins: a notification sampled before our last read-back cannot undo what it showed.
   * Only while the cached value is fresh, though: the order comes from the unit's clock, and a clock
   * that steps back (NTP, an RTC reset) would otherwise pin the cache — and hide a fallback — until
   * it caught up again.
   */
  remember(point: ReadPoint, dv: DataValue): boolean {
    const sourceMs = dv.sourceTimestamp?.getTime() ?? Date.now();
    const prev = this.cache.get(point);
    const freshMs = CACHE_FRESH_INTERVALS * (this.conn?.publishingIntervalMs ?? PUBLISHING_INTERVAL_MS);
    if (prev && sourceMs < prev.sourceMs && performance.now() - prev.receivedMs < freshMs) return false;
    this.cache.set(point, { dv, sourceMs, receivedMs: performance.now() });
    if (point === 'mode' && dv.statusCode.isGood()) this.onModeSample(dv);
    return true;
  }

  /** The cached value of `point`, however old. */
  cached(point: ReadPoint): DataValue | undefined {
    return this.cache.get(point)?.dv;
  }

  /** Drops what the cache holds for `points`: a read then asks the unit. */
  forget(points: readonly ReadPoint[]): void {
    for (const p of points) this.cache.delete(p);
  }

  // ---- connection -------------------------------------------------------------------------------

  private async connectionLoop(): Promise<void> {
    const backoff = new Backoff(RECONNECT_BACKOFF.baseMs, RECONNECT_BACKOFF.maxMs);
    const closed = this.closed;
    while (!closed.aborted) {
      let conn: Connection;
      const started = performance.now();
      try {
        conn = await withDeadline(this.id, 'connect', this.connectTimeoutMs, closed, (signal) =>
          this.connectOnce(signal),
        );
      } catch (err) {
        if (closed.aborted) break;
        const e = err instanceof DeviceError ? err : thrownError(this.id, 'connect', err);
        this.observeConnect(started, e);
        if (e.code !== this.lastConnectErrorCode) this.log.warn({ err: e }, 'opcua connect failed');
        else this.log.debug({ code: e.code }, 'opcua connect failed again');
        this.lastConnectErrorCode = e.code;
        this.monitor.lost(e.message); // no session, no link: down, not degraded
        for (const w of [...this.attemptWaiters]) w.fail(e);
        this.kickBackoff = new AbortController();
        await pause(backoff.next(), AbortSignal.any([closed, this.kickBackoff.signal])).catch(
          () => undefined,
        );
        continue;
      }
      if (closed.aborted) {
        await this.dispose(conn, 'closed');
        break;
      }
      this.observeConnect(started);
      this.lastConnectErrorCode = undefined;
      backoff.reset();
      this.conn = conn;
      this.monitor.success();
      for (const w of [...this.attemptWaiters]) w.ok();
      const reason = await conn.lost;
      if (this.conn === conn) this.conn = undefined;
      if (closed.aborted) break;
      this.cache.clear();
      this.monitor.lost(reason);
      await this.dispose(conn, reason);
    }
  }

  private async connectOnce(signal: AbortSignal): Promise<Connection> {
    const identity = await this.identity();
    const cm = certificateManagerFor(this.pkiDir, this.trustUnknown);
    await initializedOnce(cm);
    await cm.reloadCertificates();
    signal.throwIfAborted();
    const mode = securityModeOf(this.ahu.endpoint);
    const policy = mode === 'None' ? 'None' : (this.ahu.endpoint.securityPolicy ?? 'Basic256Sha256');
    const client = OPCUAClient.create({
      applicationName: 'coolctl',
      clientName: this.clientName,
      endpointMustExist: false,
      // 0: node-opcua's own reconnection retries forever; ours is bounded per attempt and cancellable.
      connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 1_000 },
      securityMode: MessageSecurityMode[mode],
      securityPolicy: SecurityPolicy[policy],
      clientCertificateManager: cm,
      keepSessionAlive: false, // the subscription's keep-alive is the liveness signal
      requestedSessionTimeout: OPCUA_SESSION_TIMEOUT_MS,
      transportTimeout: this.connectTimeoutMs,
      transportSettings: {
        maxMessageSize: MAX_MESSAGE_BYTES,
        receiveBufferSize: OPCUA_CHUNK_BYTES,
        sendBufferSize: OPCUA_CHUNK_BYTES,
      },
      defaultTransactionTimeout: Math.max(10 * this.timeoutMs, 10_000),
    });
    // One release per attempt, whoever asks first (the deadline, or a step that failed): it closes
    // the session once there is one, so a unit that fails after the session (its namespace missing,
    // a subscription refused) does not keep a slot on the server for every retry.
    let session: ClientSession | undefined;
    let released: Promise<void> | undefined;
    const release = () => {
      released ??= disposeClient(client, session);
      return released;
    };
    const abandon = () => void release();
    signal.addEventListener('abort', abandon, { once: true });
    try {
      await client.connect(this.ahu.endpoint.url);
      signal.throwIfAborted();
      session = await client.createSession(identity);
      signal.throwIfAborted();
      const namespaces = await session.readNamespaceArray();
      const nsIndex = namespaces.indexOf(this.namespaceUri);
      if (nsIndex < 0) {
        throw new DeviceError(
          ErrorCodes.DEVICE_BAD_STATUS,
          this.id,
          `namespace ${this.namespaceUri} is not on the server (has: ${namespaces.join(', ')}); check ${this.vendor ? "the profile's opcua.namespaceUri" : 'pointMap.namespaceUri'}`,
          { deviceCode: 'BadNodeIdUnknown' },
        );
      }
      signal.throwIfAborted();
      const vendorNodes = this.vendor ? await this.vendor.resolve(session, nsIndex) : undefined;
      signal.throwIfAborted();
      const conn = await this.subscribe(client, session, nsIndex, vendorNodes);
      signal.removeEventListener('abort', abandon);
      if (signal.aborted) {
        // The deadline passed while the last step finished: `abandon` has released the client and
        // its session already, and nobody will use this connection.
        conn.disposed = true;
        signal.throwIfAborted();
      }
      return conn;
    } catch (err) {
      signal.removeEventListener('abort', abandon);
      const e = await this.connectError(err);
      void release();
      throw e;
    }
  }

  private async subscribe(
    client: OPCUAClient,
    session: ClientSession,
    nsIndex: number,
    vendorNodes?: ResolvedNode[],
  ): Promise<Connection> {
    const subscription = await session.createSubscription2({
      requestedPublishingInterval: PUBLISHING_INTERVAL_MS,
      requestedMaxKeepAliveCount: MAX_KEEP_ALIVE_COUNT,
      requestedLifetimeCount: LIFETIME_COUNT,
      maxNotificationsPerPublish: 0,
      publishingEnabled: true,
      priority: 10,
    });
    const group = await subscription.monitorItems(
      vendorNodes
        ? vendorNodes.map((n) => ({ nodeId: n.nodeId, attributeId: AttributeIds.Value }))
        : this.readIds({ nsIndex }, READ_POINTS),
      {
        samplingInterval: PUBLISHING_INTERVAL_MS,
        queueSize: 1,
        discardOldest: true,
        // Every sample, not only changes: a value's age then says whether the server still samples it.
        filter: new DataChangeFilter({ trigger: DataChangeTrigger.StatusValueTimestamp }),
      },
      TimestampsToReturn.Both,
    );
    let markLost: (reason: string) => void = () => {};
    const lost = new Promise<string>((resolveLost) => {
      markLost = resolveLost;
    });
    const publishingIntervalMs = subscription.publishingInterval || PUBLISHING_INTERVAL_MS;
    const conn: Connection = {
      client,
      session,
      subscription,
      group,
      nsIndex,
      vendorNodes,
      lost,
      markLost: (reason) => {
        if (!conn.disposed) markLost(reason);
      },
      lastPublishMs: performance.now(),
      keepAlivePeriodMs: publishingIntervalMs * (subscription.maxKeepAliveCount || MAX_KEEP_ALIVE_COUNT),
      publishingIntervalMs,
      disposed: false,
    };
    const published = () => {
      conn.lastPublishMs = performance.now();
      if (this.conn === conn && this.monitor.consecutiveFailures === 0) this.monitor.success();
    };
    subscription.on('keepalive', published);
    subscription.on('received_notifications', published);
    subscription.on('terminated', () => conn.markLost('subscription terminated'));
    subscription.on('status_changed', (status: StatusCode) => {
      if (status.isBad()) conn.markLost(`subscription ${status.name}`);
    });
    subscription.on('internal_error', (err: Error) => this.log.warn({ err }, 'opcua subscription error'));
    subscription.on('error', (err: Error) => this.log.warn({ err }, 'opcua subscription error'));
    session.on('session_closed', (status: StatusCode) => conn.markLost(`session closed (${status.name})`));
    session.on('keepalive_failure', () => conn.markLost('session keep-alive failed'));
    client.on('connection_lost', () => conn.markLost('connection lost'));
    client.on('close', () => conn.markLost('connection closed'));
    group.on('changed', (_item: unknown, dv: DataValue, index: number) => {
      // A vendor unit's subscription only proves the session alive: its reads always ask the server.
      if (vendorNodes) return;
      const point = READ_POINTS[index];
      if (point) this.remember(point, dv);
    });
    group.on('err', (message: string) => this.log.warn({ message }, 'opcua monitored items error'));

    return conn;
  }

  /** Bounded teardown: node-opcua's close and disconnect can wait on a dead peer for a long time. */
  private async dispose(conn: Connection, reason: string): Promise<void> {
    if (conn.disposed) return;
    conn.markLost(reason); // before `disposed`, which silences it: the loop waiting on `lost` moves on
    conn.disposed = true;
    await disposeClient(conn.client, conn.session);
  }

  private async identity(): Promise<UserIdentityInfo> {
    const { username, passwordFile } = this.ahu.endpoint;
    if (!username) return { type: UserTokenType.Anonymous };
    if (!passwordFile) {
      throw new DeviceError(
        ErrorCodes.DEVICE_AUTH,
        this.id,
        'endpoint.username is set but endpoint.passwordFile is not; put the password in a file and name it there',
      );
    }
    // Read again on every connect (a rotated password counts), by the rules config validation
    // applied at start: a file that has since become readable by others, grown or emptied is refused.
    const r = await readSecretLine(passwordFile);
    if (!r.ok) {
      throw new DeviceError(
        ErrorCodes.DEVICE_AUTH,
        this.id,
        `endpoint.passwordFile: ${r.message}; ${r.allowed}`,
        r.code ? { deviceCode: r.code } : {},
      );
    }
    return { type: UserTokenType.UserName, userName: username, password: r.value };
  }

  private houseKeep(): void {
    const conn = this.conn;
    if (
      conn &&
      performance.now() - conn.lastPublishMs > SILENT_KEEPALIVES_BEFORE_LOST * conn.keepAlivePeriodMs
    )
      conn.markLost('no publish or keep-alive from the server');
    this.monitor.evaluate();
  }

  // ---- errors -----------------------------------------------------------------------------------

  private async connectError(err: unknown): Promise<DeviceError> {
    if (err instanceof DeviceError) return err;
    const message = errorMessage(err);
    if (/BadCertificateUntrusted|certificate verification failed/i.test(message)) {
      const cm = certificateManagerFor(this.pkiDir, this.trustUnknown);
      const file = await newestFile(cm.rejectedFolder);
      const what = file
        ? `move ${file} to ${cm.trustedFolder}/`
        : `copy the server certificate into ${cm.trustedFolder}/`;
      return new DeviceError(
        ErrorCodes.DEVICE_UNTRUSTED,
        this.id,
        `server certificate of ${this.ahu.endpoint.url} is not trusted; if it is the right server, ${what} (retried automatically)`,
        { cause: err },
      );
    }
    if (/BadUserAccessDenied|BadIdentityToken|BadUserSignatureInvalid/i.test(message)) {
      return new DeviceError(
        ErrorCodes.DEVICE_AUTH,
        this.id,
        `server refused user ${this.ahu.endpoint.username ?? '(anonymous)'}: ${statusIn(message) ?? message}`,
        { cause: err, deviceCode: statusIn(message) ?? 'BadUserAccessDenied' },
      );
    }
    if (/BadTooManySessions/i.test(message)) {
      return new DeviceError(
        ErrorCodes.DEVICE_UNREACHABLE,
        this.id,
        `server at ${this.ahu.endpoint.url} refuses another session (BadTooManySessions): sessions of ` +
          `clients that vanished expire after their timeout (ours ${OPCUA_SESSION_TIMEOUT_MS / 1000} s); ` +
          'if this lasts, the server allows fewer sessions than controllers × units on it (retried automatically)',
        { cause: err, retryable: true, deviceCode: 'BadTooManySessions' },
      );
    }
    if (/cannot find (an )?endpoint|BadSecurityPolicyRejected|BadSecurityModeRejected/i.test(message)) {
      return new DeviceError(
        ErrorCodes.DEVICE_REFUSED,
        this.id,
        `server offers no endpoint for securityMode ${securityModeOf(this.ahu.endpoint)}: ${message}`,
        { cause: err },
      );
    }
    return new DeviceError(
      ErrorCodes.DEVICE_UNREACHABLE,
      this.id,
      `cannot connect to ${this.ahu.endpoint.url}: ${message}`,
      { cause: err, retryable: true },
    );
  }

  private observeConnect(startedMs: number, err?: DeviceError): void {
    this.metrics?.observe(this.id, PROTOCOL, 'connect', (performance.now() - startedMs) / 1000, err?.code);
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function disposeClient(client: OPCUAClient, session: ClientSession | undefined): Promise<void> {
  const work = (async () => {
    if (session) await session.close(true).catch(() => undefined);
    await client.disconnect().catch(() => undefined);
  })();
  await within(work, CLOSE_DEADLINE_MS);
}

/** Waits for `p` at most `ms` (never rejects), and leaves no timer behind. */
async function within(p: Promise<unknown> | undefined, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    p?.catch(() => undefined),
    new Promise<void>((done) => {
      timer = setTimeout(done, ms);
    }),
  ]);
  clearTimeout(timer);
}
