// The OPC-UA air handler as a DeviceIo: reads, fenced writes, their read-back and the stale-epoch
// proof, over one OpcuaLink. Invariants: every call has an outer deadline and settles on close(); a
// refused/fenced write is never retried; remote control is re-asserted only by a `reassert` write.
// Load this module with `await import()` only: node-opcua costs ~30 MB.
import { EventEmitter } from 'node:events';
import { inspect } from 'node:util';
import {
  AttributeIds,
  CallRequest,
  ClientSecureChannelLayer,
  DataType,
  type DataValue,
  type StatusCode,
  setErrorLogger,
  setWarningLogger,
  Variant,
} from 'node-opcua-client';
import { type Logger, pino } from 'pino';
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
import { retry, SerialQueue, withDeadline, writeBudgetMs } from '../resilience.ts';
import { statusError, thrownError } from './call-status.ts';
import {
  nodeIdFor,
  type OpcuaNodeMap,
  resolveNodeMap,
  WRITE_COMMAND_ARGS,
  WRITE_COMMAND_STATUS,
} from './node-map.ts';
import { errorMessage, OpcuaLink, PROTOCOL, READ_POINTS, type ReadPoint } from './opcua-link.ts';
import { abortable, countsAsLinkFailure, deviceAnswered, hintMs, transact } from './opcua-request.ts';
import { OpcuaProfileNodes, type RawNodeRead, readRawNodes } from './profile-nodes.ts';
import { variantNumber, variantScalar, variantShape } from './variant-value.ts';
import {
  checkReadBack,
  invalidCommand,
  modeName,
  staleEpochUnread,
  staleEpochVerdict,
  VERIFY_POINTS,
  type VerifyPoint,
} from './write-proof.ts';

const DEFAULTS = { timeoutMs: 1_000, retries: 2, verifyWrites: true } as const;
/**
 * node-opcua raises every request's timeoutHint to at least this (5 s by default, a process-wide
 * static) before sending it: a WriteCommand's hint is the time left of the lease, often less, and
 * a server that honours a raised hint could apply the call after a successor's first write. Only
 * requests that set a hint of their own see the difference (the others use the client's
 * defaultTransactionTimeout, ≥ 10 s).
 */
ClientSecureChannelLayer.minTransactionTimeout = 1;
const CALL_BACKOFF = { baseMs: 50, maxMs: 500 } as const;
/** A unit that keeps sending values of the wrong type says so in the log once a minute per point. */
const REFUSED_VALUE_LOG_MS = 60_000;

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

export class OpcuaDevice extends EventEmitter implements DeviceIo {
  readonly id: string;
  readonly protocol = 'opcua' as const;

  private readonly map: OpcuaNodeMap;
  /** A unit with a vendor profile: its nodes, decoding and commands; native units: undefined. */
  private readonly vendor: OpcuaProfileNodes | undefined;
  readonly fencing: FencingKind;
  private readonly log: Logger;
  private readonly refusedLog: RateLimitedLog;
  private readonly metrics: DeviceMetrics | undefined;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly verifyWrites: boolean;
  private readonly maxApplyDelayMs: number;

  private readonly queue: SerialQueue;
  /** The unit's connection, reconnect loop and subscription cache. */
  private readonly link: OpcuaLink;
  private readonly closeController = new AbortController();
  /** Rejecters of every call in flight, so close() settles them with DEVICE_CLOSED. */
  private readonly pending = new Set<(err: Error) => void>();
  private closing: Promise<void> | undefined;
  /** Counts and logs points read without a usable value (../plausibility.ts). */
  private readonly absentNotice: AbsentPointsNotice;

  private heartbeat: number;
  private lastWriteRemote = false;
  private lost = false;

  constructor(ahu: OpcuaAirHandler, deps: DeviceDeps = {}, profile?: CompiledProfile) {
    super();
    this.id = ahu.id;
    this.map = resolveNodeMap(ahu);
    this.vendor = profile?.opcua ? new OpcuaProfileNodes(profile, this.map.prefix) : undefined;
    this.fencing = unitFencing(ahu);
    this.log = (deps.logger ?? pino({ level: 'silent' })).child({
      component: 'opcua',
      device: ahu.id,
      protocol: PROTOCOL,
    });
    this.refusedLog = new RateLimitedLog(this.log, REFUSED_VALUE_LOG_MS);
    this.metrics = deps.metrics;
    this.absentNotice = new AbsentPointsNotice(() => this.log, deps.metrics?.meter(this.id, PROTOCOL));
    this.timeoutMs = ahu.client?.timeoutMs ?? DEFAULTS.timeoutMs;
    this.retries = ahu.client?.retries ?? DEFAULTS.retries;
    this.verifyWrites = ahu.client?.verifyWrites ?? DEFAULTS.verifyWrites;
    this.maxApplyDelayMs = maxApplyDelayMs(ahu.client);
    this.queue = new SerialQueue(ahu.id);
    this.link = new OpcuaLink({
      ahu,
      map: this.map,
      vendor: this.vendor,
      deps,
      log: this.log,
      timeoutMs: this.timeoutMs,
      closed: this.closeController.signal,
      onLinkChange: (from, to, reason) => this.onLinkChange(from, to, reason),
      onModeSample: (dv) => this.observeMode(modeName(variantNumber(dv.value) ?? Number.NaN)),
    });
    // A random start, so a restarted controller does not repeat the heartbeat the unit last saw.
    this.heartbeat = Math.floor(Math.random() * 0xffff_ffff) >>> 0;
  }

  get linkState(): LinkState {
    return this.link.monitor.state;
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
    if (this.link.connection) return;
    await this.track(this.link.openAttempt(opts.signal));
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
        this.link.forget(VERIFY_POINTS);
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
      const conn = this.link.connected();
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
      this.link.failAttempts(err);
      this.queue.close();
      this.closeController.abort(err);
      await this.link.close();
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
        this.link.monitor.success();
        return result;
      },
      (err: unknown) => {
        const e = this.asDeviceError(err, op);
        if (countsAsLinkFailure(e)) this.link.monitor.failure(e.message);
        else if (deviceAnswered(e)) this.link.monitor.success();
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
    const cached = this.link.freshCache();
    if (cached) return this.toReadings(cached);
    const conn = this.link.connected();
    const dvs = await abortable(conn.session.read(this.link.readIds(conn, READ_POINTS), 0), signal);
    const values = new Map<ReadPoint, DataValue>();
    READ_POINTS.forEach((p, i) => {
      const dv = dvs[i];
      if (dv) {
        values.set(p, dv);
        this.link.remember(p, dv);
      }
    });
    const readings = this.toReadings(values);
    this.observeMode(readings.mode);
    return readings;
  }

  /** A vendor unit: every point read from the server (a Bad value is absent, never 0). */
  private async readVendor(vendor: OpcuaProfileNodes, signal: AbortSignal): Promise<AhuReadings> {
    const conn = this.link.connected();
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
        const conn = this.link.connected();
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
    const conn = this.link.connected();
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
    let unitEpoch: number;
    try {
      const conn = this.link.connected();
      const [dv] = await abortable(conn.session.read(this.link.readIds(conn, ['epoch']), 0), signal);
      if (!dv?.statusCode.isGood()) throw this.badStatus('read of epoch', dv?.statusCode);
      unitEpoch = variantNumber(dv.value) ?? Number.NaN;
      if (!Number.isFinite(unitEpoch)) throw new Error(`epoch reads ${variantShape(dv.value)}`);
    } catch (readErr) {
      throw staleEpochUnread(this.id, err, epoch, errorMessage(readErr));
    }
    throw staleEpochVerdict(this.id, err, epoch, unitEpoch);
  }

  private async verify(cmd: AhuCommandSet, heartbeat: number, signal: AbortSignal): Promise<void> {
    const conn = this.link.connected();
    const dvs = await abortable(conn.session.read(this.link.readIds(conn, VERIFY_POINTS), 0), signal);
    const got = {} as Record<VerifyPoint, number>;
    VERIFY_POINTS.forEach((p, i) => {
      const dv = dvs[i]?.statusCode.isGood() ? dvs[i] : undefined;
      if (!dv) throw this.badStatus(`read-back of ${p}`, dvs[i]?.statusCode);
      this.link.remember(p, dv);
      const v = variantNumber(dv.value);
      if (v === undefined || !Number.isFinite(v)) throw this.garbage(`read-back of ${p}`, dv);
      got[p] = v;
    });
    checkReadBack(this.id, cmd, heartbeat, got);
  }

  // ---- readings ---------------------------------------------------------------------------------

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

  private onLinkChange(from: LinkState, to: LinkState, reason: string): void {
    const event: LinkEvent = { device: this.id, from, to, reason };
    this.log.info(event, 'link state changed');
    this.metrics?.link(this.id, PROTOCOL, to);
    this.emit('link', event);
    if (to === 'down' && this.lastWriteRemote) this.setLost(`link down: ${reason}`);
  }

  // ---- errors -----------------------------------------------------------------------------------

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

  private nextHeartbeat(): number {
    this.heartbeat = (this.heartbeat + 1) >>> 0;
    const seen = this.link.cached('heartbeat')?.value.value;
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
