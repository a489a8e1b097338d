// An air handler over Modbus TCP or RTU, behind DeviceIo: one connection, one request at a time,
// each call inside its outer deadline (`client.timeoutMs`), status read as one 16-register block,
// the fenced command written as one 8-register FC16 and read back. Over TCP `ModbusTcpClient`
// (./modbus-tcp.ts) speaks the wire, over RTU the unit's share of its serial line (./rtu-line.ts,
// one line per path); this file keeps both honest: it never waits without a deadline, a
// connection that timed out or answered garbage is destroyed (a late answer must never pair with a
// later request), and every call in flight settles on close().
// Remote control is re-asserted only on purpose: once the unit is seen out of remote control
// (watchdog fallback, local, link down while we drove it), `remoteControlLost` stays true and a
// remote-enable write is refused with COOLCTL_E_DEVICE_REFUSED until one is sent with `reassert`.
import { EventEmitter } from 'node:events';
import { type Socket, connect as tcpConnect } from 'node:net';
import { type Logger, pino } from 'pino';
import {
  DEFAULT_DEVICE_TIMEOUT_MS,
  type FencingKind,
  type ModbusAirHandler,
  type ModbusRtuAirHandler,
  maxApplyDelayMs,
  unitFencing,
} from '../../config/site-schema.ts';
import { DeviceError, type ErrorCode, ErrorCodes } from '../../errors.ts';
import { Backoff, settlesWithin } from '../../util/async.ts';
import { LogLimiter } from '../../util/log-limit.ts';
import type { DeviceDeps } from '../device-deps.ts';
import type {
  AhuCommandSet,
  AhuReadings,
  CallOptions,
  DeviceIo,
  DeviceRefusal,
  LinkEvent,
  LinkState,
  RemoteLostEvent,
  WriteOptions,
} from '../device-io.ts';
import type { DeviceMeter, DeviceOp } from '../metrics.ts';
import { AbsentPointsNotice, screenReadings } from '../plausibility.ts';
import {
  CallLane,
  defaultLinkRule,
  LaneCall,
  LinkMonitor,
  pause,
  RECONNECT_MAX_MS,
  retryAfter,
  writeBudgetMs,
} from '../resilience.ts';
import { ModbusFrameError, ModbusTcpClient, STRAY_TEXT, type StrayKind } from './modbus-tcp.ts';
import {
  COMMAND_BLOCK_LEN,
  decodeStatus,
  encodeCommand,
  MODBUS_EXCEPTION,
  type ModbusPointMap,
  type ModbusStatus,
  resolvePointMap,
  STALE_EPOCH_EXCEPTION,
  STATUS_BLOCK_LEN,
} from './point-map.ts';
import { openRtuUnit, type RtuUnitClient } from './rtu-line.ts';

/**
 * Every Modbus TCP socket reads into this one buffer (net's `onread`). By default each read gets
 * its own 64 KB allocation, shrunk to the few bytes received; the Buffers that outlive a young
 * collection pin those remains in the malloc heap until the next full GC. ModbusTcpClient parses
 * (or copies) what it receives at once, so one buffer serves every socket of the thread.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/**
 * A socket's `onread` and its lasting 'error' listener live as long as the socket, so they are made
 * here, outside `connectSocket`: a closure made there shares that call's scope, and kept the call
 * that happened to connect (its caller's signal, its settled promise, an error and its stack) alive
 * for the life of the connection, ~1 KB a unit.
 */
function readInto(receive: (chunk: Buffer) => void) {
  return {
    buffer: READ_BUFFER,
    callback: (n: number, buf: Uint8Array): boolean => {
      receive((buf as Buffer).subarray(0, n));
      return true;
    },
  };
}
const ignoreError = (): undefined => undefined;

/** What a request needs of a connection: ModbusTcpClient (TCP) or modbus-serial (RTU); same names. */
export interface RegisterClient {
  readHoldingRegisters(address: number, count: number): Promise<{ data: number[] }>;
  readInputRegisters(address: number, count: number): Promise<{ data: number[] }>;
  readCoils(address: number, count: number): Promise<{ data: boolean[] }>;
  readDiscreteInputs(address: number, count: number): Promise<{ data: boolean[] }>;
  writeRegisters(address: number, words: number[]): Promise<unknown>;
  writeRegister(address: number, word: number): Promise<unknown>;
  writeCoil(address: number, on: boolean): Promise<unknown>;
  writeCoils(address: number, bits: boolean[]): Promise<unknown>;
}

export const DEFAULT_TIMEOUT_MS = DEFAULT_DEVICE_TIMEOUT_MS;
export const DEFAULT_RETRIES = 2;
/** Background reconnect: first try after ~100 ms, then doubling up to RECONNECT_MAX_MS (resilience.ts). */
const RECONNECT_BASE_MS = 100;
/** Between tries of one call; the call's deadline bounds them anyway. */
const RETRY_BASE_MS = 20;
const RETRY_MAX_MS = 200;
/** How often the link rule looks at the time since the last success. */
const LINK_EVALUATE_MS = 1_000;
const CLOSE_DEADLINE_MS = 1_000;

/** Exceptions that say the device is busy or a gateway could not reach it: trying again can help. */
const RETRYABLE_EXCEPTIONS: ReadonlySet<number> = new Set([
  0x05, // acknowledge: still working on it
  0x06, // server device busy
  MODBUS_EXCEPTION.gatewayTargetFailedToRespond,
  0x0a, // gateway path unavailable
]);
/** Exceptions that refuse the request itself; the device answered, so the link is fine. */
const REQUEST_EXCEPTIONS: ReadonlySet<number> = new Set([
  MODBUS_EXCEPTION.illegalFunction,
  MODBUS_EXCEPTION.illegalDataAddress,
  MODBUS_EXCEPTION.illegalDataValue,
  STALE_EPOCH_EXCEPTION,
]);
const EXCEPTION_NAMES: Record<number, string> = {
  1: 'illegal function',
  2: 'illegal data address',
  3: 'illegal data value',
  4: 'server device failure',
  5: 'acknowledge',
  6: 'server device busy',
  10: 'gateway path unavailable',
  11: 'gateway target device failed to respond',
  13: 'stale epoch',
};
/** modbus-serial's words for an answer it could not parse. */
const GARBAGE_MESSAGE = /CRC error|Data length error|Unexpected data error/i;
const UNREACHABLE_ERRNO: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENOENT',
  'EACCES',
  'EBUSY',
  'EIO',
]);

/** One open transport and the requests in flight on it; thrown away whole when it turns suspect. */
interface Connection {
  readonly client: RegisterClient;
  /** TCP: the socket ModbusTcpClient speaks on. RTU: the unit's share of its serial line. */
  readonly socket: Socket | undefined;
  readonly rtu: RtuUnitClient | undefined;
  /**
   * Rejects each request in flight (modbus-serial never settles them when the line goes). An
   * array, not a Set: a request is added and removed thousands of times a second, and a Set
   * reallocates its table as it grows from and shrinks to empty.
   */
  readonly inFlight: ((err: DeviceError) => void)[];
  /** Anything answered on it (for the unit-id hint when nothing ever does). */
  answered: boolean;
  dead: boolean;
  /** The peer sent bytes nobody asked for while a request was in flight: not used for another. */
  tainted: boolean;
}

/** One call: its deadline and end (LaneCall), and which operation metrics charge its outcome to. */
export class CallContext extends LaneCall {
  op: DeviceOp;
  /** Start of the phase metrics charge next (0: from the body's start, or the call's if it never ran). */
  phaseStartMs = 0;

  constructor(op: DeviceOp, what: string, outer: AbortSignal | undefined) {
    super(what, outer);
    this.op = op;
  }
}

export class ModbusDevice extends EventEmitter implements DeviceIo {
  readonly id: string;
  readonly protocol: 'modbus-tcp' | 'modbus-rtu';
  protected readonly ahu: ModbusAirHandler | ModbusRtuAirHandler;
  private readonly pm: ModbusPointMap;
  protected readonly timeoutMs: number;
  protected readonly retries: number;
  protected readonly verifyWrites: boolean;
  /** No frame carries a deadline: the unit's stated worst case is what keeps a write inside the term. */
  protected readonly maxApplyDelayMs: number;
  /** epoch: the unit refuses stale epochs; lease: timing alone (one request per write, never retried). */
  readonly fencing: FencingKind;
  private readonly parentLog: Logger;
  private ownLog: Logger | undefined;
  protected readonly meter: DeviceMeter | undefined;
  private readonly lane: CallLane;
  private readonly link: LinkMonitor;
  private readonly retryBackoff = new Backoff(RETRY_BASE_MS, RETRY_MAX_MS);
  private readonly reconnectBackoff = new Backoff(RECONNECT_BASE_MS, RECONNECT_MAX_MS);
  private readonly closeCtl = new AbortController();
  private readonly evaluateTimer: NodeJS.Timeout;
  private conn: Connection | undefined;
  /** The last connection, dead or alive: says whether anything ever answered on it. */
  private lastConn: Connection | undefined;
  private reconnecting = false;
  private closing: Promise<void> | undefined;
  /** Transports opened so far: a subclass sees a reconnect as this moving. */
  protected connections = 0;
  /** Whether the last write this unit tried fit its lease window; logged when it changes. */
  private leaseWindowOpen = true;
  /** Writes not sent because the unit's worst case no longer fit before the lease deadline. */
  leaseWindowSkips = 0;
  /** Times the unit sent bytes no request asked for (each cost its connection). */
  strayFrames = 0;
  /** Made at the first stray (most units never send one). */
  private strayLog: LogLimiter | undefined;
  /** Set while every read since the last good one was refused with a request exception (link up). */
  private refused: DeviceRefusal | null = null;
  /** Counts and logs points read without a usable value; made at the first (most units never have one). */
  private absentNotice: AbsentPointsNotice | undefined;
  /** Our heartbeat counter: the last value we sent. */
  private lastHeartbeat: number | undefined;
  /** The heartbeat the unit last accepted, as far as we know (status reads, accepted writes). */
  private unitHeartbeat: number | undefined;
  /** Our last accepted write asked for remote control. */
  protected drivingRemote = false;
  protected lost = false;

  constructor(ahu: ModbusAirHandler | ModbusRtuAirHandler, deps: DeviceDeps = {}) {
    super();
    this.id = ahu.id;
    this.protocol = ahu.protocol;
    this.ahu = ahu;
    this.pm = resolvePointMap(ahu.pointMap);
    this.timeoutMs = ahu.client?.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.retries = ahu.client?.retries ?? DEFAULT_RETRIES;
    this.verifyWrites = ahu.client?.verifyWrites ?? true;
    this.maxApplyDelayMs = maxApplyDelayMs(ahu.client);
    this.fencing = unitFencing(ahu);
    this.parentLog = deps.logger ?? pino({ level: 'silent' });
    this.meter = deps.metrics?.meter(ahu.id, ahu.protocol);
    this.lane = new CallLane(ahu.id, this.timeoutMs, (call, err, failed) =>
      this.callEnded(call as CallContext, err, failed),
    );
    this.link = new LinkMonitor(defaultLinkRule, (from, to, reason) => this.onLinkChange(from, to, reason));
    this.meter?.link(this.link.state);
    this.evaluateTimer = setInterval(() => this.link.evaluate(), LINK_EVALUATE_MS);
    this.evaluateTimer.unref();
  }

  get linkState(): LinkState {
    return this.link.state;
  }

  get remoteControlLost(): boolean {
    return this.lost;
  }

  /** The unit answers but refuses every read (a register map or profile that does not fit it); else null. */
  get refusal(): DeviceRefusal | null {
    return this.refused;
  }

  /**
   * The unit's logger, made on its first line: most units never log after start-up, and a pino
   * child is ~600 bytes (1 000 units: 0.6 MB for loggers that stay silent).
   */
  protected get log(): Logger {
    this.ownLog ??= this.parentLog.child({ component: 'modbus', device: this.id, endpoint: this.endpoint });
    return this.ownLog;
  }

  /** `host:port/unit` or `path/unit`, for messages. */
  get endpoint(): string {
    const e = this.ahu.endpoint;
    return 'host' in e ? `${e.host}:${e.port}/${e.unitId}` : `${e.path}/${e.unitId}`;
  }

  async open(opts: CallOptions = {}): Promise<void> {
    await this.read(opts);
  }

  read(opts: CallOptions = {}): Promise<AhuReadings> {
    return this.call('read', 'read status block', opts, this.readBody);
  }

  private readonly readBody = (ctx: CallContext): Promise<AhuReadings> =>
    this.request(ctx, 'read status block', this.readStatusBlock, true).then(this.statusReadings);

  private readonly statusReadings = (res: { data: unknown }): AhuReadings => {
    const r = toReadings(this.onStatusBlock(res));
    this.noteAbsent(r.absent);
    return r;
  };

  /**
   * One read's points without a usable value (a no-data word, a figure outside what the point can
   * be): counted per point, logged at most once a minute per unit. The unit answered: the link and
   * remote control stay as they are.
   */
  protected noteAbsent(absent: readonly string[] | undefined, fields?: () => Record<string, unknown>): void {
    if (!absent?.length && !this.absentNotice) return;
    this.absentNotice ??= new AbsentPointsNotice(() => this.log, this.meter);
    this.absentNotice.note(absent, fields);
  }

  writeCommand(cmd: AhuCommandSet, opts: WriteOptions = {}): Promise<void> {
    const what = `fenced write (epoch ${cmd.epoch})`;
    if (cmd.remoteEnable && this.lost && !opts.reassert) {
      // Never a side effect: taking the unit back is the caller's decision, made with fresh facts.
      const err = new DeviceError(
        ErrorCodes.DEVICE_REFUSED,
        this.id,
        `${what}: the unit left remote control; re-check leadership, re-read the unit, then write with reassert: true`,
      );
      this.meter?.observe('write', 0, err.code);
      return Promise.reject(err);
    }
    try {
      encodeCommand({ ...cmd, heartbeat: 0 }, this.pm);
    } catch (err) {
      const e = new DeviceError(ErrorCodes.BAD_REQUEST, this.id, `${what}: ${(err as Error).message}`, {
        cause: err,
      });
      this.meter?.observe('write', 0, e.code);
      return Promise.reject(e);
    }
    return this.call('write', what, opts, async (ctx) => {
      // The heartbeat must differ from the one the unit holds, or a unit in fallback refuses it:
      // learn it first when we never saw it, and always before re-asserting (another writer may
      // have moved it while we were away).
      if (this.unitHeartbeat === undefined || opts.reassert) await this.readStatus(ctx);
      let words: number[] = [];
      const attempt = async () => {
        const heartbeat = this.nextHeartbeat();
        words = encodeCommand({ ...cmd, heartbeat }, this.pm);
        await this.request(ctx, 'write command block', (c) => {
          // Checked at the send, after any connect or backoff: once on the wire, only the unit's own
          // bound (it applies or drops the request within maxApplyDelayMs) keeps it inside the term.
          this.checkWriteWindow(opts, what, this.maxApplyDelayMs);
          return c.writeRegisters(this.pm.commandBlock, words);
        });
        this.unitHeartbeat = heartbeat;
      };
      // Lease fencing: a unit that checks nothing gets one request per write; a try that timed out
      // may still land, so it is not followed by another (the next period writes afresh).
      await (this.fencing === 'lease' ? attempt() : this.withRetries(ctx, attempt)).catch((err: unknown) =>
        this.proveStaleEpoch(ctx, err, cmd.epoch, what),
      );
      this.drivingRemote = cmd.remoteEnable;
      if (this.lost && cmd.remoteEnable) {
        this.lost = false;
        this.log.info({ epoch: cmd.epoch }, 'remote control re-asserted');
      }
      if (!this.verifyWrites) return;
      this.observePhase(ctx);
      ctx.op = 'verify';
      const back = await this.request(ctx, 'read back command block', this.readCommandBlock, true);
      const got = this.registers(back.data, COMMAND_BLOCK_LEN, 'read back command block');
      if (got.some((w, i) => w !== words[i])) {
        throw new DeviceError(
          ErrorCodes.DEVICE_VERIFY_MISMATCH,
          this.id,
          `${what}: the command block reads back [${got.join(',')}], not the [${words.join(',')}] written ` +
            '(another writer, or a unit that ignores writes)',
        );
      }
    });
  }

  /**
   * `writeBudgetMs` at the send, in the same tick: throws COOLCTL_E_NOT_LEADER and nothing goes out
   * unless `worstCaseMs` (the unit's bound, for every request still to send) fits before the lease
   * deadline. A closed window is counted, and logged once per change, not per write.
   */
  protected checkWriteWindow(opts: WriteOptions, what: string, worstCaseMs: number): void {
    try {
      writeBudgetMs(opts, this.id, what, worstCaseMs);
    } catch (err) {
      this.leaseWindowSkips++;
      if (this.leaseWindowOpen) {
        this.leaseWindowOpen = false;
        this.log.warn(
          { fencing: this.fencing, worstCaseMs, reason: (err as Error).message },
          'writes held: the unit’s worst case does not fit before the lease deadline',
        );
      }
      throw err;
    }
    if (!this.leaseWindowOpen) {
      this.leaseWindowOpen = true;
      this.log.info(
        { fencing: this.fencing, skipped: this.leaseWindowSkips },
        'writes resumed inside the lease',
      );
    }
  }

  /**
   * A write answered 0x0D: our stale-epoch code, but vendor-range exceptions mean other things to
   * other firmware and gateways. Only the unit's own epoch, read back above ours, proves a newer
   * leader (DEVICE_FENCED, carrying that epoch); anything else is an ordinary refusal the caller
   * may try again. Always throws: the write failed either way.
   */
  private async proveStaleEpoch(ctx: CallContext, err: unknown, epoch: number, what: string): Promise<never> {
    if (!(err instanceof DeviceError) || err.deviceCode !== STALE_EPOCH_EXCEPTION) throw err;
    const claim = `${what}: refused with exception 0x0D (stale epoch)`;
    let unitEpoch: number;
    try {
      unitEpoch = (await this.readStatus(ctx)).epoch;
    } catch (readErr) {
      throw new DeviceError(
        ErrorCodes.DEVICE_EXCEPTION,
        this.id,
        `${claim}, not proven: the unit's epoch could not be read back (${(readErr as Error).message})`,
        { cause: err, retryable: true, deviceCode: STALE_EPOCH_EXCEPTION },
      );
    }
    if (unitEpoch > epoch) {
      throw new DeviceError(
        ErrorCodes.DEVICE_FENCED,
        this.id,
        `${claim}: the unit holds epoch ${unitEpoch}, above ours (${epoch}): a newer leader drives it`,
        { cause: err, retryable: false, deviceCode: STALE_EPOCH_EXCEPTION, unitEpoch },
      );
    }
    throw new DeviceError(
      ErrorCodes.DEVICE_EXCEPTION,
      this.id,
      `${claim}, not proven: the unit holds epoch ${unitEpoch}, not above ours (${epoch})`,
      { cause: err, retryable: true, deviceCode: STALE_EPOCH_EXCEPTION },
    );
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = new DeviceError(ErrorCodes.DEVICE_CLOSED, this.id, 'device closed');
      this.closeCtl.abort(closed);
      clearInterval(this.evaluateTimer);
      this.lane.close(closed);
      const conn = this.conn;
      if (conn) await this.drop(conn, 'device closed', closed);
      this.link.lost('adapter closed');
    })();
    return this.closing;
  }

  // ---- calls ----

  /** Runs one call in the lane under its outer deadline; `callEnded` observes it and feeds the link rule. */
  protected call<T>(
    op: DeviceOp,
    what: string,
    opts: CallOptions,
    body: (ctx: CallContext) => Promise<T>,
  ): Promise<T> {
    return this.lane.run(new CallContext(op, what, opts.signal), body);
  }

  /** Every call once, as it settles: metrics, link state, and the typed error its caller gets. */
  private callEnded(ctx: CallContext, err: unknown, failed: boolean): DeviceError | undefined {
    if (!failed) {
      this.observePhase(ctx);
      if (ctx.op === 'read') this.noteRefusal(undefined);
      this.link.success();
      return undefined;
    }
    const e = this.asDeviceError(err, ctx.what);
    this.observePhase(ctx, e.code);
    if (ctx.op === 'read' && isRequestException(e)) this.noteRefusal(e);
    this.noteFailure(e);
    return e;
  }

  /**
   * A read refused with a request exception (`e`), or one that gave a reading (undefined). Such a
   * refusal keeps the link up — the unit answers — yet gives control nothing, so it is a state of its
   * own: logged once as it starts (with what to check) and as it ends, on /metrics, and in `refusal`
   * for the status and the comm-loss alarm.
   */
  private noteRefusal(e: DeviceError | undefined): void {
    const was = this.refused;
    if (!e) {
      if (!was) return;
      this.refused = null;
      this.meter?.refusal(false);
      this.log.info({ refusedSinceMs: was.sinceMs }, 'the unit answers reads again');
      return;
    }
    const code = e.deviceCode as number;
    if (was?.code === code) return;
    const name = EXCEPTION_NAMES[code] ?? 'unknown exception';
    this.refused = { code, name, sinceMs: was?.sinceMs ?? Date.now() };
    this.meter?.refusal(true);
    this.log.warn(
      { modbusCode: code, exception: name, err: e.message },
      `the unit answers but refuses every read (exception ${code}, ${name}): the link is up and no reading is good; ` +
        'check the unit id and its pointMap or profile against the unit',
    );
  }

  protected observePhase(ctx: CallContext, errorCode?: string): void {
    const now = performance.now();
    const fromMs = ctx.phaseStartMs || ctx.bodyStartMs || ctx.startMs;
    this.meter?.observe(ctx.op, (now - fromMs) / 1000, errorCode);
    ctx.phaseStartMs = now;
  }

  /** `fn` with bounded retries; the first try stays off the retry machinery (the common case). */
  protected async withRetries<T>(ctx: CallContext, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      return retryAfter(err, fn, this.retryOptions(ctx));
    }
  }

  private retryOptions(ctx: CallContext) {
    return {
      attempts: this.retries + 1,
      backoff: this.retryBackoff,
      signal: ctx.signal,
      deadlineMs: ctx.deadlineMs,
    };
  }

  private readonly readStatusBlock = (c: RegisterClient) =>
    c.readHoldingRegisters(this.pm.statusBlock, STATUS_BLOCK_LEN);

  private readonly readCommandBlock = (c: RegisterClient) =>
    c.readHoldingRegisters(this.pm.commandBlock, COMMAND_BLOCK_LEN);

  private readStatus(ctx: CallContext): Promise<ModbusStatus> {
    return this.request(ctx, 'read status block', this.readStatusBlock, true).then(this.onStatusBlock);
  }

  private readonly onStatusBlock = (res: { data: unknown }): ModbusStatus => {
    const status = decodeStatus(this.registers(res.data, STATUS_BLOCK_LEN, 'read status block'), this.pm);
    this.unitHeartbeat = status.heartbeat;
    if (this.drivingRemote && (status.mode === 'fallback' || status.mode === 'local')) {
      this.markRemoteLost(`the unit reports mode ${status.mode}`);
    }
    return status;
  };

  protected registers(data: unknown, n: number, what: string): number[] {
    if (!Array.isArray(data) || data.length !== n || !data.every((w) => Number.isInteger(w))) {
      throw new DeviceError(
        ErrorCodes.DEVICE_GARBAGE,
        this.id,
        `${what}: expected ${n} registers, got ${Array.isArray(data) ? data.length : typeof data}`,
        { retryable: true },
      );
    }
    return data as number[];
  }

  /** Next heartbeat: our counter + 1, wrapping at 65536, never the value the unit already holds. */
  private nextHeartbeat(): number {
    let hb = ((this.lastHeartbeat ?? this.unitHeartbeat ?? 0) + 1) % 0x10000;
    if (hb === this.unitHeartbeat) hb = (hb + 1) % 0x10000;
    this.lastHeartbeat = hb;
    return hb;
  }

  // ---- the wire ----

  /**
   * One request on the current connection (opened if needed), bounded by the call's deadline. With
   * `retry` (reads, and read-backs), a retryable failure is tried again as the call allows; the
   * first try makes no promise or closure for that.
   */
  protected request<T>(
    ctx: CallContext,
    what: string,
    fn: (client: RegisterClient) => Promise<T>,
    retry = false,
  ): Promise<T> {
    const conn = this.conn;
    if (conn && !conn.dead) {
      if (!conn.tainted) return this.transact(conn, ctx, what, fn, retry);
      void this.drop(conn, 'the unit sent bytes no request asked for');
    }
    return this.connect(ctx).then(
      (c) => this.transact(c, ctx, what, fn, retry),
      (err: unknown) => (retry ? this.retryRequest(err, ctx, what, fn) : Promise.reject(err)),
    );
  }

  /** The tries after a failed first one: bounded, with backoff, within the call's deadline. */
  private retryRequest<T>(
    err: unknown,
    ctx: CallContext,
    what: string,
    fn: (client: RegisterClient) => Promise<T>,
  ): Promise<T> {
    return retryAfter(err, () => this.request(ctx, what, fn), this.retryOptions(ctx));
  }

  private transact<T>(
    conn: Connection,
    ctx: CallContext,
    what: string,
    fn: (client: RegisterClient) => Promise<T>,
    retry: boolean,
  ): Promise<T> {
    const remainingMs = ctx.deadlineMs - performance.now();
    if (ctx.abandoned || remainingMs <= 0) return Promise.reject(this.abandonedError(ctx, what));
    if (conn.dead) {
      return Promise.reject(this.error(ErrorCodes.DEVICE_UNREACHABLE, `${what}: connection lost`, true));
    }
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const finish = (): boolean => {
        if (settled) return false;
        settled = true;
        removeItem(conn.inFlight, onLost);
        if (ctx.onAbandon === onAbandon) ctx.onAbandon = undefined;
        return true;
      };
      const onLost = (err: DeviceError): void => {
        if (!finish()) return;
        if (retry && err.retryable && !ctx.abandoned) resolve(this.retryRequest(err, ctx, what, fn));
        else reject(err);
      };
      const onAbandon = (): void => {
        if (!finish()) return;
        reject(this.abandonedError(ctx, what));
        // The request may still be answered; on this stream that answer would pair with the next one.
        void this.drop(conn, `${what} abandoned before its answer`);
      };
      conn.inFlight.push(onLost);
      // The lane calls this at the deadline, the caller's abort or close: no listener per request.
      ctx.onAbandon = onAbandon;
      // RTU: the line's deadline for this request too, so it holds the line no longer than the call.
      conn.rtu?.setTimeout(Math.max(1, Math.ceil(remainingMs)));
      let pending: Promise<T>;
      try {
        pending = fn(conn.client);
      } catch (err) {
        pending = Promise.reject(err);
      }
      pending.then(
        (value) => {
          conn.answered = true;
          if (finish()) resolve(value);
        },
        (err: unknown) => {
          const e = this.classify(err, what);
          if (e.code === ErrorCodes.DEVICE_EXCEPTION || e.code === ErrorCodes.DEVICE_FENCED)
            conn.answered = true;
          if (typeof e.deviceCode === 'number' && e.code === ErrorCodes.DEVICE_EXCEPTION)
            this.meter?.exception(e.deviceCode);
          if (!finish()) return;
          if (
            e.code === ErrorCodes.DEVICE_TIMEOUT ||
            e.code === ErrorCodes.DEVICE_GARBAGE ||
            e.code === ErrorCodes.DEVICE_UNREACHABLE
          ) {
            void this.drop(conn, `${what}: ${e.code}`);
          }
          if (retry && e.retryable) resolve(this.retryRequest(e, ctx, what, fn));
          else reject(e);
        },
      );
    });
  }

  /** Opens a fresh transport within the call's deadline. */
  private async connect(ctx: CallContext): Promise<Connection> {
    const startMs = performance.now();
    try {
      const conn = await this.openTransport(ctx);
      this.meter?.observe('connect', (performance.now() - startMs) / 1000);
      return conn;
    } catch (err) {
      const e = this.asDeviceError(err, 'connect');
      this.meter?.observe('connect', (performance.now() - startMs) / 1000, e.code);
      throw e;
    }
  }

  private async openTransport(ctx: CallContext): Promise<Connection> {
    const remainingMs = ctx.deadlineMs - performance.now();
    if (ctx.abandoned || remainingMs <= 0) throw this.abandonedError(ctx, 'connect');
    let conn: Connection;
    const e = this.ahu.endpoint;
    if ('host' in e) {
      const client = new ModbusTcpClient(e.unitId, (bytes, kind) => this.onStray(conn, bytes, kind));
      const socket = await this.connectSocket(e.host, e.port, ctx, remainingMs, (chunk) =>
        client.receive(chunk),
      );
      client.attach(socket);
      conn = { client, socket, rtu: undefined, inFlight: [], answered: false, dead: false, tainted: false };
    } else {
      // Units naming one serial path share its line (./rtu-line.ts): one request at a time on it.
      const opening = openRtuUnit(e, e.unitId, { logger: this.parentLog });
      const client = await this.bounded(opening, ctx, remainingMs, 'open serial line', () => {
        void opening.then((c) => c.close());
      });
      conn = {
        client,
        socket: undefined,
        rtu: client,
        inFlight: [],
        answered: false,
        dead: false,
        tainted: false,
      };
    }
    const onClose = (): void => {
      if (conn.dead) return;
      // With nothing in flight nothing failed yet: a fencing gateway closes a connection a node
      // that leads no group of the unit holds and sends nothing on (its idle timeout). The
      // reconnect's read decides whether the link is well.
      if (conn.inFlight.length === 0) {
        this.log.debug('connection closed by the device while idle; reconnecting');
        void this.drop(conn, 'connection closed by the device while idle');
        return;
      }
      this.link.failure('connection closed by the device');
      void this.drop(conn, 'connection closed by the device');
    };
    if (conn.socket) conn.socket.once('close', onClose);
    else conn.rtu?.on('close', onClose);
    if (this.closeCtl.signal.aborted) {
      await this.drop(conn, 'device closed');
      throw this.closeCtl.signal.reason;
    }
    this.conn = conn;
    this.lastConn = conn;
    this.connections++;
    return conn;
  }

  private connectSocket(
    host: string,
    port: number,
    ctx: CallContext,
    timeoutMs: number,
    receive: (chunk: Buffer) => void,
  ): Promise<Socket> {
    return new Promise<Socket>((resolve, reject) => {
      const socket = tcpConnect({
        host,
        port,
        onread: readInto(receive),
      });
      const timer = setTimeout(
        () => fail(this.error(ErrorCodes.DEVICE_TIMEOUT, this.timeoutText('connect'), true)),
        timeoutMs,
      );
      const onAbort = (): void => fail(this.abandonedError(ctx, 'connect'));
      const done = (): void => {
        clearTimeout(timer);
        ctx.signal.removeEventListener('abort', onAbort);
        socket.off('error', onError);
      };
      const fail = (err: unknown): void => {
        done();
        socket.destroy();
        reject(err);
      };
      const onError = (err: Error): void => fail(err);
      socket.once('error', onError);
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      socket.once('connect', () => {
        done();
        // Later errors arrive as 'close' (and fail the requests in flight); never as a throw.
        socket.on('error', ignoreError);
        socket.setNoDelay(true);
        // A half-open socket shows up while idle too, not only at the next request's deadline.
        socket.setKeepAlive(true, 5_000);
        resolve(socket);
      });
    });
  }

  /** Waits for `p` within the deadline; if it loses, `cleanup` runs when it finally settles. */
  private bounded<T>(
    p: Promise<T>,
    ctx: CallContext,
    timeoutMs: number,
    what: string,
    cleanup: () => void,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let lost = false;
      const timer = setTimeout(
        () => settle(this.error(ErrorCodes.DEVICE_TIMEOUT, this.timeoutText(what), true)),
        timeoutMs,
      );
      const onAbort = (): void => settle(this.abandonedError(ctx, what));
      const settle = (err: unknown): void => {
        if (lost) return;
        lost = true;
        clearTimeout(timer);
        ctx.signal.removeEventListener('abort', onAbort);
        reject(err);
      };
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      p.then(
        (v) => {
          if (lost) return cleanup();
          lost = true;
          clearTimeout(timer);
          ctx.signal.removeEventListener('abort', onAbort);
          resolve(v);
        },
        (err: unknown) => settle(err),
      );
    });
  }

  /**
   * Throws a connection away: everything in flight on it rejects (with `err`, else UNREACHABLE),
   * the transport is destroyed, and the background reconnect takes over.
   */
  private async drop(conn: Connection, reason: string, err?: DeviceError): Promise<void> {
    if (conn.dead) return;
    conn.dead = true;
    if (this.conn === conn) this.conn = undefined;
    const failure = err ?? this.error(ErrorCodes.DEVICE_UNREACHABLE, `connection dropped: ${reason}`, true);
    for (const reject of conn.inFlight.splice(0)) reject(failure);
    if (conn.socket) conn.socket.destroy();
    else if (conn.rtu) await settlesWithin(closeQuietly(conn.rtu), CLOSE_DEADLINE_MS);
    this.scheduleReconnect();
  }

  /**
   * The unit sent bytes no request asked for: counted and logged, never paired with a request. The
   * stream is no longer trusted to pair answers with requests (the next stray could carry the tid of
   * the next request), so the connection goes: at once when idle, else before its next request, so
   * the answer just accepted is not failed after the fact. Not a link failure: the reconnect's read
   * decides the link.
   */
  private onStray(conn: Connection | undefined, bytes: number, kind: StrayKind): void {
    // Before the connection is set up nothing was asked: the first request's answer decides.
    if (!conn || conn.dead || conn.tainted) return;
    this.strayFrames++;
    this.meter?.stray();
    const why = STRAY_TEXT[kind];
    // A unit that glues bytes to every answer would write a line per request: one every 10 s.
    this.strayLog ??= new LogLimiter(() => performance.now(), 10_000);
    const notLogged = this.strayLog.admit(kind);
    if (notLogged >= 0)
      this.log.warn(
        { bytes, why, strayFrames: this.strayFrames, notLogged },
        'unsolicited bytes from the unit; connection dropped',
      );
    if (conn.inFlight.length === 0) void this.drop(conn, `unsolicited bytes from the unit (${why})`);
    else conn.tainted = true;
  }

  /** Reconnects in the background with backoff until the link is up again; stops on close. */
  private scheduleReconnect(): void {
    if (this.reconnecting || this.closeCtl.signal.aborted) return;
    this.reconnecting = true;
    void (async () => {
      this.reconnectBackoff.reset();
      try {
        while (!this.closeCtl.signal.aborted) {
          await pause(this.reconnectBackoff.next(), this.closeCtl.signal);
          if (this.conn && this.link.state === 'up') return;
          try {
            await this.read();
            return;
          } catch {
            // Counted and logged by the call itself; try again after the next backoff.
          }
        }
      } catch {
        // pause() rejects when the device closes: the loop simply ends.
      } finally {
        this.reconnecting = false;
      }
    })();
  }

  // ---- link and remote control ----

  private noteFailure(e: DeviceError): void {
    switch (e.code) {
      case ErrorCodes.DEVICE_UNREACHABLE:
        this.link.lost(e.message);
        this.scheduleReconnect();
        return;
      case ErrorCodes.DEVICE_TIMEOUT:
      case ErrorCodes.DEVICE_GARBAGE:
        this.link.failure(e.message);
        this.scheduleReconnect();
        return;
      case ErrorCodes.DEVICE_EXCEPTION:
        // The device answered; whether the link is well depends on what it said.
        if (typeof e.deviceCode === 'number' && REQUEST_EXCEPTIONS.has(e.deviceCode)) this.link.success();
        else this.link.failure(e.message);
        return;
      case ErrorCodes.DEVICE_FENCED:
      case ErrorCodes.DEVICE_VERIFY_MISMATCH:
        this.link.success();
        return;
      default:
        // Closed, aborted by the caller, refused before the wire: nothing about the link.
        return;
    }
  }

  private onLinkChange(from: LinkState, to: LinkState, reason: string): void {
    const fields = { from, to, reason };
    if (to === 'up') this.log.info(fields, 'link up');
    else this.log.warn(fields, `link ${to}`);
    this.meter?.link(to);
    // Down: the unit no longer answers at all; the link says why, not a refusal from before.
    if (to === 'down' && this.refused) {
      this.refused = null;
      this.meter?.refusal(false);
    }
    const event: LinkEvent = { device: this.id, from, to, reason };
    this.emit('link', event);
    if (to === 'down' && this.drivingRemote && !this.closeCtl.signal.aborted) {
      this.markRemoteLost(`link down while we drove the unit: ${reason}`);
    }
  }

  protected markRemoteLost(reason: string): void {
    if (this.lost) return;
    this.lost = true;
    this.log.warn({ reason }, 'remote control lost; a write must re-assert it deliberately');
    const event: RemoteLostEvent = { device: this.id, reason };
    this.emit('remote-lost', event);
  }

  // ---- errors ----

  /** What modbus-serial or the socket said, as a typed error. */
  private classify(err: unknown, what: string): DeviceError {
    if (err instanceof DeviceError) return err;
    const x = err as {
      modbusCode?: unknown;
      name?: unknown;
      errno?: unknown;
      code?: unknown;
      message?: unknown;
    };
    if (typeof x?.modbusCode === 'number') {
      const code = x.modbusCode;
      const name = EXCEPTION_NAMES[code] ?? 'unknown exception';
      // 0x0D is only a claim of a stale epoch (a write's caller proves it, proveStaleEpoch): never
      // retried within the call, and never DEVICE_FENCED on its own.
      return new DeviceError(
        ErrorCodes.DEVICE_EXCEPTION,
        this.id,
        `${what}: the device answered exception ${code} (${name})`,
        { cause: err, retryable: RETRYABLE_EXCEPTIONS.has(code), deviceCode: code },
      );
    }
    const message = typeof x?.message === 'string' ? x.message : String(err);
    if (x?.name === 'TransactionTimedOutError' || x?.errno === 'ETIMEDOUT') {
      return this.error(ErrorCodes.DEVICE_TIMEOUT, this.timeoutText(what), true, err);
    }
    if (err instanceof ModbusFrameError || GARBAGE_MESSAGE.test(message) || err instanceof RangeError) {
      return this.error(
        ErrorCodes.DEVICE_GARBAGE,
        `${what}: the answer is not a valid Modbus frame (${message})`,
        true,
        err,
      );
    }
    if (x?.name === 'PortNotOpenError') {
      return this.error(ErrorCodes.DEVICE_UNREACHABLE, `${what}: connection not open`, true, err);
    }
    const errno = typeof x?.code === 'string' ? x.code : typeof x?.errno === 'string' ? x.errno : undefined;
    if (errno && UNREACHABLE_ERRNO.has(errno)) {
      return this.error(ErrorCodes.DEVICE_UNREACHABLE, `${what}: ${errno} (${this.endpoint})`, true, err);
    }
    return this.error(ErrorCodes.DEVICE_UNREACHABLE, `${what}: ${message}`, true, err);
  }

  /** Any error a call ends with, typed; a deadline's timeout gets our wording (with the unit-id hint). */
  private asDeviceError(err: unknown, what: string): DeviceError {
    if (err instanceof DeviceError) {
      // close() aborts every call with its DEVICE_CLOSED error as the reason.
      if (err.code === ErrorCodes.DEVICE_ABORTED && err.cause === this.closeCtl.signal.reason)
        return this.closeCtl.signal.reason as DeviceError;
      if (err.code === ErrorCodes.DEVICE_TIMEOUT)
        return this.error(ErrorCodes.DEVICE_TIMEOUT, this.timeoutText(what), true, err.cause);
      return err;
    }
    if (err instanceof DOMException && err.name === 'TimeoutError') {
      return this.error(ErrorCodes.DEVICE_TIMEOUT, this.timeoutText(what), true, err);
    }
    return this.classify(err, what);
  }

  private abandonedError(ctx: CallContext, what: string): DeviceError {
    if (this.closeCtl.signal.aborted) return this.closeCtl.signal.reason as DeviceError;
    if (ctx.outer?.aborted) {
      return new DeviceError(ErrorCodes.DEVICE_ABORTED, this.id, `${what}: aborted by caller`, {
        cause: ctx.outer.reason,
      });
    }
    return this.error(ErrorCodes.DEVICE_TIMEOUT, this.timeoutText(what), true);
  }

  private timeoutText(what: string): string {
    const base = `${what}: no answer within ${this.timeoutMs} ms from ${this.endpoint}`;
    const c = this.lastConn;
    if (c && !c.answered && what !== 'connect') {
      return `${base}; the line is open but nothing ever answered unit id ${this.ahu.endpoint.unitId}: check endpoint.unitId`;
    }
    return base;
  }

  private error(code: ErrorCode, message: string, retryable: boolean, cause?: unknown): DeviceError {
    return new DeviceError(code, this.id, message, { retryable, cause });
  }
}

/** An exception that refuses the request itself (the unit answered; the link is fine). */
function isRequestException(e: DeviceError): boolean {
  return (
    e.code === ErrorCodes.DEVICE_EXCEPTION &&
    typeof e.deviceCode === 'number' &&
    REQUEST_EXCEPTIONS.has(e.deviceCode)
  );
}

/** A status block as readings; a no-data word or an implausible figure is absent (NaN), never good. */
function toReadings(status: ModbusStatus): AhuReadings {
  const r: AhuReadings = {
    mode: status.mode,
    fanPct: status.fanPct,
    supplySetpointC: status.supplySetpointC,
    supplyC: status.supplyC,
    returnC: status.returnC,
    cwValvePct: status.cwValvePct,
    alarms: status.alarms,
    epoch: status.epoch,
    heartbeat: status.heartbeat,
    fanKw: status.fanKw,
    coolingKw: status.coolingKw,
    quality: 'good',
    sourceTimeMs: Date.now(),
  };
  return screenReadings(r, status.noData);
}

/** Removes `item` from `list` without keeping order (and without allocating). */
function removeItem<T>(list: T[], item: T): void {
  const i = list.indexOf(item);
  if (i < 0) return;
  list[i] = list[list.length - 1]!;
  list.pop();
}

function closeQuietly(client: RtuUnitClient): Promise<void> {
  return new Promise<void>((resolve) => {
    try {
      client.close(() => resolve());
    } catch {
      resolve();
    }
  });
}
