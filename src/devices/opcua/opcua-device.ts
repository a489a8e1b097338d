// The OPC-UA air-handler adapter: one client + session + subscription per unit, behind DeviceIo.
// node-opcua never reconnects on its own here (maxRetry 0: its own retry loop is unbounded); our
// loop reconnects with backoff until close(). Invariants: every call has an outer deadline and
// settles on close(); a refused/fenced write is never retried; remote control is re-asserted only
// by a write with `reassert`. Load this module with `await import()` only: node-opcua costs ~30 MB.
import { EventEmitter } from 'node:events';
import { readdir, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { inspect } from 'node:util';
import { OPCUACertificateManager } from 'node-opcua-certificate-manager';
import {
  AttributeIds,
  CallRequest,
  CallResponse,
  type ClientMonitoredItemGroup,
  ClientSecureChannelLayer,
  type ClientSession,
  type ClientSubscription,
  DataChangeFilter,
  DataChangeTrigger,
  DataType,
  type DataValue,
  MessageSecurityMode,
  OPCUAClient,
  type ReadValueIdOptions,
  SecurityPolicy,
  type StatusCode,
  setErrorLogger,
  setWarningLogger,
  TimestampsToReturn,
  type UserIdentityInfo,
  UserTokenType,
  Variant,
} from 'node-opcua-client';
import { type Logger, pino } from 'pino';
import { readSecretLine } from '../../config/config-files.ts';
import {
  type FencingKind,
  maxApplyDelayMs,
  type OpcuaAirHandler,
  unitFencing,
} from '../../config/site-schema.ts';
import { DeviceError, type ErrorCode, ErrorCodes } from '../../errors.ts';
import { Backoff } from '../../util/async.ts';
import { RateLimitedLog } from '../../util/log-limit.ts';
import type { DeviceDeps } from '../device-deps.ts';
import type {
  AhuCommandSet,
  AhuModeName,
  AhuReadings,
  CallOptions,
  DeviceIo,
  LinkEvent,
  LinkState,
  Quality,
  RemoteLostEvent,
  WriteOptions,
} from '../device-io.ts';
import type { DeviceMetrics, DeviceOp } from '../metrics.ts';
import { AbsentPointsNotice, isScreenedPoint, type ScreenedPoint, screenReadings } from '../plausibility.ts';
import type { CompiledProfile } from '../profile/codec.ts';
import {
  defaultLinkRule,
  LinkMonitor,
  pause,
  RECONNECT_MAX_MS,
  retry,
  SerialQueue,
  withDeadline,
  writeBudgetMs,
} from '../resilience.ts';
import { COMM_STATUSES, statusError, statusIn, thrownError } from './call-status.ts';
import {
  nodeIdFor,
  OPCUA_MODE_NAMES,
  type OpcuaNodeMap,
  type OpcuaPointName,
  resolveNodeMap,
  WRITE_COMMAND_ARGS,
  WRITE_COMMAND_STATUS,
} from './node-map.ts';
import { OpcuaProfileNodes, type RawNodeRead, type ResolvedNode, readRawNodes } from './profile-nodes.ts';
import { variantNumber, variantScalar, variantShape } from './variant-value.ts';

/** Where the client keeps its certificate and its trust lists unless the daemon says otherwise. */
export const DEFAULT_CLIENT_PKI_DIR = resolve(process.cwd(), 'var/opcua-client-pki');

const PROTOCOL = 'opcua';
const DEFAULTS = { timeoutMs: 1_000, retries: 2, verifyWrites: true } as const;
/**
 * node-opcua raises every request's timeoutHint to at least this (5 s by default, a process-wide
 * static) before sending it: a WriteCommand's hint is the time left of the lease, often less, and
 * a server that honours a raised hint could apply the call after a successor's first write. Only
 * requests that set a hint of their own see the difference (the others use the client's
 * defaultTransactionTimeout, ≥ 10 s).
 */
ClientSecureChannelLayer.minTransactionTimeout = 1;
/** Connecting includes a secure-channel handshake (and, the very first time, making our key pair). */
const MIN_CONNECT_TIMEOUT_MS = 5_000;
const CLOSE_DEADLINE_MS = 2_000;
/** Reconnect: from 250 ms, doubling up to the devices' common ceiling (resilience.ts says why). */
const RECONNECT_BACKOFF = { baseMs: 250, maxMs: RECONNECT_MAX_MS } as const;
const CALL_BACKOFF = { baseMs: 50, maxMs: 500 } as const;
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
/** A unit that keeps sending values of the wrong type says so in the log once a minute per point. */
const REFUSED_VALUE_LOG_MS = 60_000;
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
const READ_POINTS = [
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
type ReadPoint = (typeof READ_POINTS)[number];

/** Read back after a write: what the unit must show if it took the command. */
const VERIFY_POINTS = ['epoch', 'heartbeat', 'mode', 'fanCmdPct', 'supplySetpointC'] as const;

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
interface Connection {
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

/**
 * node-opcua prints its warnings and errors as free text on stdout, which would break the daemon's
 * JSON log lines: whoever loads this module calls this once to route them into pino instead.
 */
export function routeNodeOpcuaLogs(logger: Logger): void {
  const log = logger.child({ component: 'node-opcua' });
  const text = (args: unknown[]) =>
    args
      .map((a) =>
        typeof a === 'string' ? a : inspect(a, { depth: 2, breakLength: Number.POSITIVE_INFINITY }),
      )
      .join(' ')
      .trim();
  setWarningLogger((...args: unknown[]) => log.warn(text(args)));
  setErrorLogger((...args: unknown[]) => log.error(text(args)));
}

type CertificateManagerKey = string;
const certificateManagers = new Map<CertificateManagerKey, OPCUACertificateManager>();

/**
 * One manager per PKI folder and trust setting, shared by the devices of a process: one key pair, one
 * lock. Safe although client.disconnect() calls the manager's dispose(): node-opcua counts references
 * (each client created takes one, each disconnect gives one back) and only disposes at zero, and a
 * disposed manager still checks certificates and signs (test/devices/opcua-shared-pki.test.ts).
 */
function certificateManagerFor(rootFolder: string, trustUnknown: boolean): OPCUACertificateManager {
  const key = `${rootFolder}\0${trustUnknown}`;
  let cm = certificateManagers.get(key);
  if (!cm) {
    cm = new OPCUACertificateManager({
      rootFolder,
      automaticallyAcceptUnknownCertificate: trustUnknown,
      // We rescan before every connect instead: no watcher handles left open, and a certificate the
      // operator has just moved into trusted/ counts on the very next attempt.
      disableFileWatchers: true,
    });
    certificateManagers.set(key, cm);
  }
  return cm;
}

const initialized = new WeakMap<OPCUACertificateManager, Promise<void>>();

/**
 * One initialize() per certificate manager, shared by every device: node-opcua-pki returns at once
 * to a second caller while the first is still creating the private key (cf. node-opcua#971), so a
 * fresh PKI folder would fail every device but one.
 */
function initializedOnce(cm: OPCUACertificateManager): Promise<void> {
  let p = initialized.get(cm);
  if (!p) {
    p = cm.initialize();
    p.catch(() => initialized.delete(cm)); // a failed initialization is tried again on the next connect
    initialized.set(cm, p);
  }
  return p;
}

export class OpcuaDevice extends EventEmitter implements DeviceIo {
  readonly id: string;
  readonly protocol = 'opcua' as const;

  private readonly ahu: OpcuaAirHandler;
  private readonly map: OpcuaNodeMap;
  /** A unit with a vendor profile: its nodes, decoding and commands; native units: undefined. */
  private readonly vendor: OpcuaProfileNodes | undefined;
  private readonly namespaceUri: string;
  readonly fencing: FencingKind;
  private readonly log: Logger;
  private readonly refusedLog: RateLimitedLog;
  private readonly metrics: DeviceMetrics | undefined;
  private readonly pkiDir: string;
  private readonly trustUnknown: boolean;
  private readonly clientName: string;
  private readonly timeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly retries: number;
  private readonly verifyWrites: boolean;
  private readonly maxApplyDelayMs: number;

  private readonly queue: SerialQueue;
  private readonly monitor: LinkMonitor;
  private readonly closeController = new AbortController();
  /** Rejecters of every call in flight, so close() settles them with DEVICE_CLOSED. */
  private readonly pending = new Set<(err: Error) => void>();
  private readonly attemptWaiters = new Set<{ ok: () => void; fail: (err: Error) => void }>();
  private readonly cache = new Map<ReadPoint, CachedValue>();
  private conn: Connection | undefined;
  private loop: Promise<void> | undefined;
  private kickBackoff: AbortController | undefined;
  private housekeeping: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  private lastConnectErrorCode: string | undefined;
  /** Counts and logs points read without a usable value (../plausibility.ts). */
  private readonly absentNotice: AbsentPointsNotice;

  private heartbeat: number;
  private lastWriteRemote = false;
  private lost = false;

  constructor(ahu: OpcuaAirHandler, deps: DeviceDeps = {}, profile?: CompiledProfile) {
    super();
    this.ahu = ahu;
    this.id = ahu.id;
    this.map = resolveNodeMap(ahu);
    this.vendor = profile?.opcua ? new OpcuaProfileNodes(profile, this.map.prefix) : undefined;
    this.namespaceUri = this.vendor?.namespaceUri ?? this.map.namespaceUri;
    this.fencing = unitFencing(ahu);
    this.log = (deps.logger ?? pino({ level: 'silent' })).child({
      component: 'opcua',
      device: ahu.id,
      protocol: PROTOCOL,
    });
    this.refusedLog = new RateLimitedLog(this.log, REFUSED_VALUE_LOG_MS);
    this.metrics = deps.metrics;
    this.absentNotice = new AbsentPointsNotice(() => this.log, deps.metrics?.meter(this.id, PROTOCOL));
    this.pkiDir = deps.pkiDir ?? DEFAULT_CLIENT_PKI_DIR;
    this.trustUnknown = deps.trustUnknownCertificates ?? false;
    this.clientName = deps.clientName ?? `coolctl-${ahu.id}`;
    this.timeoutMs = ahu.client?.timeoutMs ?? DEFAULTS.timeoutMs;
    this.connectTimeoutMs = Math.max(5 * this.timeoutMs, MIN_CONNECT_TIMEOUT_MS);
    this.retries = ahu.client?.retries ?? DEFAULTS.retries;
    this.verifyWrites = ahu.client?.verifyWrites ?? DEFAULTS.verifyWrites;
    this.maxApplyDelayMs = maxApplyDelayMs(ahu.client);
    this.queue = new SerialQueue(ahu.id);
    this.monitor = new LinkMonitor(defaultLinkRule, (from, to, reason) =>
      this.onLinkChange(from, to, reason),
    );
    // A random start, so a restarted controller does not repeat the heartbeat the unit last saw.
    this.heartbeat = Math.floor(Math.random() * 0xffff_ffff) >>> 0;
    this.metrics?.link(this.id, PROTOCOL, 'down');
    // An unsigned link lets anyone on the OT network read and forge this unit's traffic: allowed,
    // since many units offer nothing else, but said once at start (docs/security.md).
    if (securityModeOf(ahu.endpoint) === 'None')
      this.log.warn(
        { url: ahu.endpoint.url, securityMode: 'None' },
        'OPC-UA link without message security: traffic can be read and forged on the network (set endpoint.securityMode: SignAndEncrypt where the unit offers it)',
      );
  }

  get linkState(): LinkState {
    return this.monitor.state;
  }

  get remoteControlLost(): boolean {
    return this.lost;
  }

  get unitWatchdog(): DeviceIo['unitWatchdog'] {
    return this.vendor?.profile.watchdog.style;
  }

  /** Connects within the connect deadline; on failure rejects, and the background loop keeps trying. */
  async open(opts: CallOptions = {}): Promise<void> {
    if (this.closing) throw this.closedError();
    if (this.conn) return;
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
    await this.track(
      withDeadline(this.id, 'connect', this.connectTimeoutMs + HOUSEKEEPING_MS, opts.signal, () => attempt),
    );
  }

  read(opts: CallOptions = {}): Promise<AhuReadings> {
    return this.call('read', opts, async (signal, deadlineMs) => {
      const started = performance.now();
      try {
        const readings = await retry(
          () => this.attempt('read', () => this.readOnce(signal)),
          this.retryOpts(signal, deadlineMs),
        );
        this.observe('read', started);
        return readings;
      } catch (err) {
        this.observe('read', started, err);
        throw err;
      }
    });
  }

  writeCommand(cmd: AhuCommandSet, opts: WriteOptions = {}): Promise<void> {
    if (this.closing) return Promise.reject(this.closedError());
    if (this.vendor) return this.writeVendor(this.vendor, cmd, opts);
    const invalid = invalidCommand(cmd);
    if (invalid || (cmd.remoteEnable && this.lost && !opts.reassert)) {
      const err = invalid
        ? new DeviceError(ErrorCodes.DEVICE_REFUSED, this.id, `command not sent: ${invalid}`)
        : new DeviceError(
            ErrorCodes.DEVICE_REFUSED,
            this.id,
            'unit left remote control (fallback, link loss or operator); write with reassert to take it back',
          );
      this.metrics?.observe(this.id, PROTOCOL, 'write', 0, err.code);
      return Promise.reject(err);
    }
    const heartbeat = this.nextHeartbeat();
    return this.call('write', opts, async (signal, deadlineMs) => {
      const started = performance.now();
      try {
        // Retried only on errors that say the request may not have arrived or was dropped unapplied
        // (a timeout, ours or the unit's, and only while the deadline leaves room); a refusal is final.
        await retry(
          () => this.attempt('write', () => this.callWriteCommand(cmd, heartbeat, signal, deadlineMs, opts)),
          this.retryOpts(signal, deadlineMs),
        ).catch((err: unknown) => this.proveStaleEpoch(err, cmd.epoch, signal));
        this.observe('write', started);
      } catch (err) {
        this.observe('write', started, err);
        throw err;
      }
      this.lastWriteRemote = cmd.remoteEnable;
      if (this.verifyWrites) {
        const verifyStarted = performance.now();
        try {
          await retry(
            () => this.attempt('verify', () => this.verify(cmd, heartbeat, signal)),
            this.retryOpts(signal, deadlineMs),
          );
          this.observe('verify', verifyStarted);
        } catch (err) {
          this.observe('verify', verifyStarted, err);
          throw err;
        }
      } else {
        // Without a read-back the cached command points are of unknown age: make read() ask.
        for (const p of VERIFY_POINTS) this.cache.delete(p);
      }
      if (opts.reassert && cmd.remoteEnable && this.lost) {
        this.lost = false;
        this.log.info({ epoch: cmd.epoch }, 'remote control re-asserted');
      }
    });
  }

  /**
   * Commissioning (`coolctl profile read`): every node of the unit's profile read once, raw — a
   * native unit's through `profile` (coolctl-native's OPC-UA section, the same nodes as its map).
   */
  readProfileNodes(profile?: CompiledProfile, opts: CallOptions = {}): Promise<RawNodeRead[]> {
    return this.call('read', opts, async (signal) => {
      const conn = this.connected();
      const nodes = this.vendor
        ? (conn.vendorNodes ?? [])
        : profile?.opcua
          ? await abortable(
              new OpcuaProfileNodes(profile, this.map.prefix).resolve(conn.session, conn.nsIndex),
              signal,
            )
          : [];
      return abortable(readRawNodes(conn.session, nodes), signal);
    });
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      const err = this.closedError();
      for (const reject of this.pending) reject(err);
      this.pending.clear();
      for (const w of [...this.attemptWaiters]) w.fail(err);
      this.queue.close();
      this.closeController.abort(err);
      clearInterval(this.housekeeping);
      const conn = this.conn;
      this.conn = undefined;
      if (conn) await this.dispose(conn, 'closed');
      await within(this.loop, CLOSE_DEADLINE_MS);
      this.monitor.lost('closed');
    })();
    return this.closing;
  }

  // ---- calls ------------------------------------------------------------------------------------

  /** Outer deadline (including the wait in the queue), one request at a time, link bookkeeping. */
  private call<T>(
    op: 'read' | 'write',
    opts: CallOptions,
    fn: (signal: AbortSignal, deadlineMs: number) => Promise<T>,
  ) {
    if (this.closing) return Promise.reject(this.closedError());
    const deadlineMs = performance.now() + this.timeoutMs;
    const outer = opts.signal ? AbortSignal.any([opts.signal, this.closeController.signal]) : undefined;
    const run = withDeadline(this.id, op, this.timeoutMs, outer ?? this.closeController.signal, (signal) =>
      this.queue.run(async () => {
        if (signal.aborted) throw signal.reason;
        return fn(signal, deadlineMs);
      }),
    ).then(
      (result) => {
        this.monitor.success();
        return result;
      },
      (err: unknown) => {
        const e = this.asDeviceError(err, op);
        if (countsAsLinkFailure(e)) this.monitor.failure(e.message);
        else if (deviceAnswered(e)) this.monitor.success();
        throw e;
      },
    );
    return this.track(run);
  }

  /** One try of a request, its failure as a DeviceError so retry() can tell whether to try again. */
  private async attempt<T>(op: DeviceOp, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.asDeviceError(err, op);
    }
  }

  /** Retries inside the call's deadline; a backoff that would outlast it ends with the real error. */
  private retryOpts(signal: AbortSignal, deadlineMs: number) {
    return {
      attempts: this.retries + 1,
      backoff: new Backoff(CALL_BACKOFF.baseMs, CALL_BACKOFF.maxMs),
      signal,
      deadlineMs,
    };
  }

  private async readOnce(signal: AbortSignal): Promise<AhuReadings> {
    if (this.vendor) return this.readVendor(this.vendor, signal);
    const cached = this.freshCache();
    if (cached) return this.toReadings(cached);
    const conn = this.connected();
    const dvs = await abortable(conn.session.read(this.readIds(conn, READ_POINTS), 0), signal);
    const values = new Map<ReadPoint, DataValue>();
    READ_POINTS.forEach((p, i) => {
      const dv = dvs[i];
      if (dv) {
        values.set(p, dv);
        this.remember(p, dv);
      }
    });
    const readings = this.toReadings(values);
    this.observeMode(readings.mode);
    return readings;
  }

  /** A vendor unit: every point read from the server (a Bad value is absent, never 0). */
  private async readVendor(vendor: OpcuaProfileNodes, signal: AbortSignal): Promise<AhuReadings> {
    const conn = this.connected();
    const nodes = conn.vendorNodes ?? [];
    const dvs = await abortable(
      conn.session.read(nodes.map((n) => ({ nodeId: n.nodeId, attributeId: AttributeIds.Value }))),
      signal,
    );
    const values: Record<string, unknown> = {};
    nodes.forEach((n, i) => {
      const dv = dvs[i];
      if (!dv?.statusCode.isGood()) {
        values[n.name] = null;
        return;
      }
      const v = variantScalar(dv.value);
      // A Good status over a value of the wrong type or shape: absent, as a Bad one is, and said.
      if (v === undefined && dv.value.dataType !== DataType.Null) this.refusedValue(n.name, dv);
      values[n.name] = v ?? null;
    });
    const readings = vendor.readings(values, this.heartbeat);
    this.absentNotice.note(readings.absent);
    this.observeMode(readings.mode);
    return readings;
  }

  /**
   * A vendor unit's command: its method call (if the profile has one) and one Write of its
   * variables, each sent only while what is left of the command fits before the lease deadline;
   * under lease fencing never re-sent within the call (a request whose answer was lost may have
   * landed). No read-back: a vendor unit's variables may show the unit's own limits of a command.
   */
  private writeVendor(vendor: OpcuaProfileNodes, cmd: AhuCommandSet, opts: WriteOptions): Promise<void> {
    const invalid = invalidCommand(cmd);
    if (invalid || (cmd.remoteEnable && this.lost && !opts.reassert)) {
      const err = invalid
        ? new DeviceError(ErrorCodes.DEVICE_REFUSED, this.id, `command not sent: ${invalid}`)
        : new DeviceError(
            ErrorCodes.DEVICE_REFUSED,
            this.id,
            'unit left remote control (fallback, link loss or operator); write with reassert to take it back',
          );
      this.metrics?.observe(this.id, PROTOCOL, 'write', 0, err.code);
      return Promise.reject(err);
    }
    const heartbeat = this.nextHeartbeat();
    const what = `${this.fencing}-fenced write (epoch ${cmd.epoch})`;
    return this.call('write', opts, async (signal, deadlineMs) => {
      const started = performance.now();
      const once = async (): Promise<void> => {
        const conn = this.connected();
        let encoded: ReturnType<OpcuaProfileNodes['encode']>;
        try {
          encoded = vendor.encode(cmd, heartbeat, conn.vendorNodes ?? []);
        } catch (err) {
          // A command the profile cannot carry (a value beyond its variable's type): refused here,
          // nothing sent, and the link is not to blame.
          throw new DeviceError(ErrorCodes.BAD_REQUEST, this.id, `${what} not sent: ${errorMessage(err)}`, {
            cause: err,
          });
        }
        const { call, writes } = encoded;
        let left = (call ? 1 : 0) + (writes.length > 0 ? 1 : 0);
        if (call) {
          const budgetMs = writeBudgetMs(opts, this.id, what, left * this.maxApplyDelayMs);
          const request = new CallRequest({
            requestHeader: { timeoutHint: hintMs(budgetMs, deadlineMs) },
            methodsToCall: [
              {
                objectId: call.objectId.startsWith('ns=')
                  ? call.objectId
                  : nodeIdFor(conn.nsIndex, call.objectId),
                methodId: call.methodId.startsWith('ns=')
                  ? call.methodId
                  : nodeIdFor(conn.nsIndex, call.methodId),
                inputArguments: call.inputArguments.map(
                  (a) =>
                    new Variant({
                      dataType: typeof a.value === 'boolean' ? DataType.Boolean : DataType.Double,
                      value: a.value,
                    }),
                ),
              },
            ],
          });
          const result = (await abortable(transact(conn.session, request), signal)).results?.[0];
          if (!result?.statusCode.isGood())
            throw this.badStatus(`${what}: method ${call.methodId}`, result?.statusCode);
          left--;
        }
        if (writes.length > 0) {
          writeBudgetMs(opts, this.id, what, left * this.maxApplyDelayMs);
          const statuses = await abortable(
            conn.session.write(
              writes.map((w) => ({
                nodeId: w.nodeId,
                attributeId: AttributeIds.Value,
                value: { value: w.value },
              })),
            ),
            signal,
          );
          const bad = statuses.findIndex((st) => !st.isGood());
          if (bad >= 0) throw this.badStatus(`${what}: write of ${writes[bad]!.point}`, statuses[bad]);
        }
      };
      try {
        if (this.fencing === 'lease') await this.attempt('write', once);
        else await retry(() => this.attempt('write', once), this.retryOpts(signal, deadlineMs));
        this.observe('write', started);
      } catch (err) {
        this.observe('write', started, err);
        throw err;
      }
      this.lastWriteRemote = cmd.remoteEnable;
      if (opts.reassert && cmd.remoteEnable && this.lost) {
        this.lost = false;
        this.log.info({ epoch: cmd.epoch }, 'remote control re-asserted');
      }
    });
  }

  private async callWriteCommand(
    cmd: AhuCommandSet,
    heartbeat: number,
    signal: AbortSignal,
    deadlineMs: number,
    opts: WriteOptions,
  ): Promise<void> {
    const conn = this.connected();
    const budgetMs = writeBudgetMs(opts, this.id, `fenced write (epoch ${cmd.epoch})`, this.maxApplyDelayMs);
    const values = [cmd.epoch, heartbeat, cmd.remoteEnable, cmd.fanPct, cmd.supplySetpointC];
    // timeoutHint: a server may cancel a request whose hint has passed (OPC-UA Part 4, RequestHeader),
    // as the simulator does; with what is left of the lease as the hint, a call that waited too long
    // in the unit is dropped there instead of landing after a successor's write.
    const request = new CallRequest({
      requestHeader: { timeoutHint: hintMs(budgetMs, deadlineMs) },
      methodsToCall: [
        {
          objectId: nodeIdFor(conn.nsIndex, this.map.objectNodeId),
          methodId: nodeIdFor(conn.nsIndex, this.map.writeCommandMethod),
          inputArguments: WRITE_COMMAND_ARGS.map(
            (a, i) => new Variant({ dataType: DataType[a.dataType], value: values[i] }),
          ),
        },
      ],
    });
    const result = (await abortable(transact(conn.session, request), signal)).results?.[0];
    if (!result) throw this.badStatus('WriteCommand', undefined);
    const status = result.statusCode;
    if (status.isGood()) return;
    // BadInvalidState is only a claim of a stale epoch (writeCommand proves it, proveStaleEpoch);
    // any other refusal is final. BadTimeout (the call outlived its hint) is DEVICE_TIMEOUT.
    throw statusError(this.id, 'WriteCommand', status.name, { retryable: false });
  }

  /**
   * WriteCommand answered BadInvalidState: our stale-epoch status, but a generic one that units and
   * gateways send for many reasons. Only the unit's epoch, read back above ours, proves a newer
   * leader (DEVICE_FENCED, carrying that epoch); anything else is an ordinary refusal the caller may
   * try again. Always throws: the write failed either way.
   */
  private async proveStaleEpoch(err: unknown, epoch: number, signal: AbortSignal): Promise<never> {
    if (!(err instanceof DeviceError) || err.deviceCode !== WRITE_COMMAND_STATUS.staleEpoch) throw err;
    const claim = `write with epoch ${epoch} refused with ${WRITE_COMMAND_STATUS.staleEpoch} (stale epoch)`;
    let unitEpoch: number;
    try {
      const conn = this.connected();
      const [dv] = await abortable(conn.session.read(this.readIds(conn, ['epoch']), 0), signal);
      if (!dv?.statusCode.isGood()) throw this.badStatus('read of epoch', dv?.statusCode);
      unitEpoch = variantNumber(dv.value) ?? Number.NaN;
      if (!Number.isFinite(unitEpoch)) throw new Error(`epoch reads ${variantShape(dv.value)}`);
    } catch (readErr) {
      throw new DeviceError(
        ErrorCodes.DEVICE_BAD_STATUS,
        this.id,
        `${claim}, not proven: the unit's epoch could not be read back (${errorMessage(readErr)})`,
        { cause: err, retryable: true, deviceCode: WRITE_COMMAND_STATUS.staleEpoch },
      );
    }
    if (unitEpoch > epoch) {
      throw new DeviceError(
        ErrorCodes.DEVICE_FENCED,
        this.id,
        `${claim}: the unit holds epoch ${unitEpoch}, above ours: a newer leader drives it`,
        { cause: err, retryable: false, deviceCode: WRITE_COMMAND_STATUS.staleEpoch, unitEpoch },
      );
    }
    throw new DeviceError(
      ErrorCodes.DEVICE_BAD_STATUS,
      this.id,
      `${claim}, not proven: the unit holds epoch ${unitEpoch}, not above ours`,
      { cause: err, retryable: true, deviceCode: WRITE_COMMAND_STATUS.staleEpoch },
    );
  }

  private async verify(cmd: AhuCommandSet, heartbeat: number, signal: AbortSignal): Promise<void> {
    const conn = this.connected();
    const dvs = await abortable(conn.session.read(this.readIds(conn, VERIFY_POINTS), 0), signal);
    const got = {} as Record<(typeof VERIFY_POINTS)[number], number>;
    VERIFY_POINTS.forEach((p, i) => {
      const dv = dvs[i]?.statusCode.isGood() ? dvs[i] : undefined;
      if (!dv) throw this.badStatus(`read-back of ${p}`, dvs[i]?.statusCode);
      this.remember(p, dv);
      const v = variantNumber(dv.value);
      if (v === undefined || !Number.isFinite(v)) throw this.garbage(`read-back of ${p}`, dv);
      got[p] = v;
    });
    const mode = modeName(got.mode);
    if (got.epoch > cmd.epoch) {
      throw new DeviceError(
        ErrorCodes.DEVICE_FENCED,
        this.id,
        `read-back shows epoch ${got.epoch} above ours (${cmd.epoch}): a newer leader wrote; stop driving it`,
        { retryable: false, unitEpoch: got.epoch },
      );
    }
    const problems: string[] = [];
    if (got.epoch !== cmd.epoch) problems.push(`epoch ${got.epoch} ≠ ${cmd.epoch}`);
    if (got.heartbeat !== heartbeat) problems.push(`heartbeat ${got.heartbeat} ≠ ${heartbeat}`);
    // A tripped unit stores the command but runs nothing: that is the unit's state (read() shows it,
    // as the Modbus read-back of the command block does), not a failed write.
    if (mode === 'tripped') {
      // epoch and heartbeat above are all a tripped unit can confirm
    } else if (cmd.remoteEnable) {
      if (mode !== 'remote') problems.push(`mode ${mode} ≠ remote`);
      if (!near(got.fanCmdPct, cmd.fanPct)) problems.push(`fan command ${got.fanCmdPct} ≠ ${cmd.fanPct} %`);
      if (!near(got.supplySetpointC, cmd.supplySetpointC))
        problems.push(`setpoint ${got.supplySetpointC} ≠ ${cmd.supplySetpointC} °C`);
    } else if (mode !== 'local') {
      problems.push(`mode ${mode} ≠ local`);
    }
    if (problems.length > 0) {
      throw new DeviceError(
        ErrorCodes.DEVICE_VERIFY_MISMATCH,
        this.id,
        `write accepted but read-back differs: ${problems.join(', ')}`,
        { retryable: false },
      );
    }
  }

  // ---- readings and the subscription cache ------------------------------------------------------

  /** The cached values if each is Good, the set is complete and the subscription published recently. */
  private freshCache(): Map<ReadPoint, DataValue> | undefined {
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
  private remember(point: ReadPoint, dv: DataValue): boolean {
    const sourceMs = dv.sourceTimestamp?.getTime() ?? Date.now();
    const prev = this.cache.get(point);
    const freshMs = CACHE_FRESH_INTERVALS * (this.conn?.publishingIntervalMs ?? PUBLISHING_INTERVAL_MS);
    if (prev && sourceMs < prev.sourceMs && performance.now() - prev.receivedMs < freshMs) return false;
    this.cache.set(point, { dv, sourceMs, receivedMs: performance.now() });
    if (point === 'mode' && dv.statusCode.isGood())
      this.observeMode(modeName(variantNumber(dv.value) ?? Number.NaN));
    return true;
  }

  private toReadings(values: Map<ReadPoint, DataValue>): AhuReadings {
    let quality: Quality = 'good';
    let sourceTimeMs = Number.POSITIVE_INFINITY;
    const num = {} as Record<ReadPoint, number>;
    // A Bad measurement (BadSensorFailure: a broken probe) is that point absent, as a no-data word
    // is on Modbus; the rest of the unit's readings stand. Mode, alarms, epoch and heartbeat have
    // no stand-in: without them the read fails (typed; the link stays up, countsAsLinkFailure).
    let noData: Set<ScreenedPoint> | undefined;
    for (const p of READ_POINTS) {
      const dv = values.get(p);
      if (dv?.statusCode.isBad() && isScreenedPoint(p)) {
        noData ??= new Set();
        noData.add(p);
        num[p] = Number.NaN;
        continue;
      }
      if (!dv || dv.statusCode.isBad()) throw this.badStatus(`read of ${p}`, dv?.statusCode);
      if (!dv.statusCode.isGood()) quality = 'uncertain';
      const v = variantNumber(dv.value);
      if (v === undefined || !Number.isFinite(v)) throw this.garbage(p, dv);
      num[p] = v;
      // The oldest sample of the set: the readings are true "as of" that time.
      sourceTimeMs = Math.min(sourceTimeMs, dv.sourceTimestamp?.getTime() ?? Date.now());
    }
    // A measurement outside what the quantity can be (a Double has room for 3276.7 °C or 1e300 kW):
    // a fault code or a broken probe, absent (NaN) as on Modbus and profile units, never a good reading.
    const readings = screenReadings(
      {
        mode: modeName(num.mode),
        fanPct: num.fanPct,
        supplySetpointC: num.supplySetpointC,
        supplyC: num.supplyC,
        returnC: num.returnC,
        cwValvePct: num.cwValvePct,
        alarms: num.alarms,
        epoch: num.epoch,
        heartbeat: num.heartbeat,
        fanKw: num.fanKw,
        coolingKw: num.coolingKw,
        quality,
        sourceTimeMs,
      },
      noData,
    );
    const absent = readings.absent;
    this.absentNotice.note(absent, () => ({
      sent: Object.fromEntries(
        (absent ?? []).map((p) => [p, variantShape(values.get(p as ReadPoint)?.value)]),
      ),
    }));
    return readings;
  }

  /** The unit is no longer on our remote control although our last write asked for it. */
  private observeMode(mode: AhuModeName): void {
    if (this.lost || !this.lastWriteRemote) return;
    if (mode === 'fallback' || mode === 'local') this.setLost(`unit is in ${mode} mode`);
  }

  private setLost(reason: string): void {
    if (this.lost) return;
    this.lost = true;
    this.log.warn({ reason }, 'remote control lost; the next remote write needs reassert');
    const event: RemoteLostEvent = { device: this.id, reason };
    this.emit('remote-lost', event);
  }

  // ---- connection -------------------------------------------------------------------------------

  private async connectionLoop(): Promise<void> {
    const backoff = new Backoff(RECONNECT_BACKOFF.baseMs, RECONNECT_BACKOFF.maxMs);
    const closed = this.closeController.signal;
    while (!closed.aborted) {
      let conn: Connection;
      const started = performance.now();
      try {
        conn = await withDeadline(this.id, 'connect', this.connectTimeoutMs, closed, (signal) =>
          this.connectOnce(signal),
        );
      } catch (err) {
        if (closed.aborted) break;
        const e = err instanceof DeviceError ? err : this.toDeviceError(err, 'connect');
        this.observe('connect', started, e);
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
      this.observe('connect', started);
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

  private connected(): Connection {
    const conn = this.conn;
    if (!conn) {
      throw new DeviceError(ErrorCodes.DEVICE_UNREACHABLE, this.id, 'not connected (reconnecting)', {
        retryable: true,
      });
    }
    return conn;
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

  private onLinkChange(from: LinkState, to: LinkState, reason: string): void {
    const event: LinkEvent = { device: this.id, from, to, reason };
    this.log.info(event, 'link state changed');
    this.metrics?.link(this.id, PROTOCOL, to);
    this.emit('link', event);
    if (to === 'down' && this.lastWriteRemote) this.setLost(`link down: ${reason}`);
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

  /** Any failure of a call as a DeviceError; our own deadline and abort reasons keep their meaning. */
  private asDeviceError(err: unknown, op: string): DeviceError {
    if (err instanceof DeviceError) return err;
    if (err instanceof DOMException && err.name === 'TimeoutError') {
      return new DeviceError(
        ErrorCodes.DEVICE_TIMEOUT,
        this.id,
        `${op}: no answer within ${this.timeoutMs} ms`,
        {
          retryable: true,
        },
      );
    }
    if (err instanceof DOMException && err.name === 'AbortError') {
      return new DeviceError(ErrorCodes.DEVICE_ABORTED, this.id, `${op}: aborted by caller`, { cause: err });
    }
    return this.toDeviceError(err, op);
  }

  /** A failure node-opcua threw (a ServiceFault, its own request timeout, a lost channel). */
  private toDeviceError(err: unknown, op: string): DeviceError {
    return thrownError(this.id, op, err);
  }

  /** A Bad status the unit answered: a timeout status is DEVICE_TIMEOUT, like our own deadline. */
  private badStatus(what: string, status: StatusCode | undefined): DeviceError {
    return statusError(this.id, what, status?.name ?? 'BadNoData');
  }

  /** A Good value that is no number (wrong type, array, Null, NaN): DEVICE_GARBAGE, and a log line. */
  private garbage(what: string, dv: DataValue): DeviceError {
    this.refusedValue(what, dv);
    return new DeviceError(
      ErrorCodes.DEVICE_GARBAGE,
      this.id,
      `${what} is not a number (the unit sent ${variantShape(dv.value)})`,
      { retryable: false },
    );
  }

  private refusedValue(point: string, dv: DataValue): void {
    this.refusedLog.warn(
      point,
      { point, sent: variantShape(dv.value) },
      'unit sent a value that is not a number; not used',
    );
  }

  private closedError(): DeviceError {
    return new DeviceError(ErrorCodes.DEVICE_CLOSED, this.id, 'device closed');
  }

  // ---- small helpers ----------------------------------------------------------------------------

  private readIds(
    conn: Pick<Connection, 'nsIndex'>,
    points: readonly OpcuaPointName[],
  ): ReadValueIdOptions[] {
    return points.map((p) => ({
      nodeId: nodeIdFor(conn.nsIndex, this.map.nodes[p]),
      attributeId: AttributeIds.Value,
    }));
  }

  private nextHeartbeat(): number {
    this.heartbeat = (this.heartbeat + 1) >>> 0;
    const seen = this.cache.get('heartbeat')?.dv.value.value;
    // Never repeat the unit's last heartbeat: in fallback it would be refused as a stray repeat.
    if (seen === this.heartbeat) this.heartbeat = (this.heartbeat + 1) >>> 0;
    return this.heartbeat;
  }

  private observe(op: DeviceOp, startedMs: number, err?: unknown): void {
    const code: ErrorCode | undefined = err ? this.asDeviceError(err, op).code : undefined;
    this.metrics?.observe(this.id, PROTOCOL, op, (performance.now() - startedMs) / 1000, code);
  }

  /** Hands out `p`, and lets close() settle it with DEVICE_CLOSED if it is still pending then. */
  private track<T>(p: Promise<T>): Promise<T> {
    return new Promise<T>((resolveCall, rejectCall) => {
      this.pending.add(rejectCall);
      p.then(resolveCall, rejectCall).finally(() => this.pending.delete(rejectCall));
    });
  }
}

/** Failures that say the path to the unit is in trouble (as opposed to the unit saying no). */
function countsAsLinkFailure(e: DeviceError): boolean {
  switch (e.code) {
    case ErrorCodes.DEVICE_TIMEOUT:
    case ErrorCodes.DEVICE_UNREACHABLE:
    case ErrorCodes.DEVICE_GARBAGE:
      return true;
    case ErrorCodes.DEVICE_BAD_STATUS:
      // A status that says the unit or its path does not answer; any other (BadSensorFailure on a
      // point, BadNodeIdUnknown, BadUserAccessDenied) came from a unit that answers: the link is up,
      // as with a Modbus exception, and one failed probe never takes remote control away.
      return COMM_STATUSES.has(String(e.deviceCode));
    default:
      return false;
  }
}

/** The unit answered (refused, fenced, mismatched): the link itself is fine. */
function deviceAnswered(e: DeviceError): boolean {
  return (
    e.code === ErrorCodes.DEVICE_FENCED ||
    e.code === ErrorCodes.DEVICE_VERIFY_MISMATCH ||
    e.code === ErrorCodes.DEVICE_BAD_STATUS
  );
}

function invalidCommand(cmd: AhuCommandSet): string | undefined {
  if (!Number.isSafeInteger(cmd.epoch) || cmd.epoch < 0) return `epoch ${cmd.epoch} is not an integer ≥ 0`;
  if (!Number.isFinite(cmd.fanPct)) return `fanPct ${cmd.fanPct} is not a number`;
  if (!Number.isFinite(cmd.supplySetpointC)) return `supplySetpointC ${cmd.supplySetpointC} is not a number`;
  if (typeof cmd.remoteEnable !== 'boolean') return 'remoteEnable is not a boolean';
  return undefined;
}

function modeName(code: number): AhuModeName {
  return OPCUA_MODE_NAMES[code] ?? 'unknown';
}

function near(a: number, b: number): boolean {
  return Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b));
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * A call's timeoutHint: what is left of the lease or of the call's own deadline, whichever ends
 * first — a retry goes out with less than client.timeoutMs left, and a unit that honoured a longer
 * hint could apply it after we gave up and reported DEVICE_TIMEOUT.
 */
function hintMs(leaseBudgetMs: number, callDeadlineMs: number): number {
  return Math.max(1, Math.floor(Math.min(leaseBudgetMs, callDeadlineMs - performance.now())));
}

/**
 * One request as built, header included (session.call() makes its own CallRequest, whose hint the
 * caller cannot set). A service fault rejects, as with session.call().
 */
function transact(session: ClientSession, request: CallRequest): Promise<CallResponse> {
  const s = session as unknown as {
    performMessageTransaction(req: CallRequest, cb: (err: Error | null, res?: unknown) => void): void;
  };
  return new Promise((ok, fail) => {
    s.performMessageTransaction(request, (err, res) => {
      if (err) fail(err);
      else if (res instanceof CallResponse) ok(res);
      else fail(new Error(`CallRequest answered with ${String((res as object)?.constructor?.name)}`));
    });
  });
}

/** Races a node-opcua promise (which takes no signal) against `signal`. */
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((ok, fail) => {
    const onAbort = () => fail(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(ok, fail).finally(() => signal.removeEventListener('abort', onAbort));
  });
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

async function newestFile(folder: string): Promise<string | undefined> {
  try {
    const names = (await readdir(folder)).filter((n) => n.endsWith('.pem') || n.endsWith('.der'));
    const withTimes = await Promise.all(
      names.map(async (n) => ({
        path: resolve(folder, n),
        mtimeMs: (await stat(resolve(folder, n))).mtimeMs,
      })),
    );
    withTimes.sort((a, b) => b.mtimeMs - a.mtimeMs);
    return withTimes[0]?.path;
  } catch {
    return undefined;
  }
}
