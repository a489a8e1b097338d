// An air handler that speaks its own Modbus map, driven through its device profile
// (config/profiles/NAME.yaml, compiled by src/devices/profile/codec.ts): status read with the
// profile's read plan and decoded there (no-data is absent — NaN here, never 0), commands encoded
// there (function codes, inverted flags, command bits, writeTogether) and sent one request at a
// time in the profile's order. The connection, deadlines, retries, link state and reconnect are
// ModbusDevice's; this file only knows what to read and write.
// Fencing (docs/leadership.md, "Fencing per unit"): lease — each request is sent only while what is
// left of the command still fits before the lease deadline, never sent twice within a call;
// gateway — each request travels inside one FC16 to the fencing gateway with the epoch
// (gateway-fencing.ts); epoch — the profile's own epoch point, as the native map does.
// The unit's own BMS watchdog is kept as its profile says: a heartbeat that changes with every
// write, the timeout register written at start and after every reconnect, a countdown or validity
// timer rewritten within its refresh period; `none` leaves the controller as the only guard, and
// the readings say so.
// A command point the unit keeps (fan speed, setpoint) is not written again while the status read
// of this connection shows the unit holding the very words we would send, within one leadership
// term we already wrote in full: a unit that keeps what was written needs no rewrite, and each
// request saved is one less in a lease unit's window. What a watchdog needs still goes out: a
// heartbeat or epoch travels every time, a timer when due, and a unit whose watchdog any write
// refreshes gets a full command at least once per refresh period.
import type { ModbusAirHandler, ModbusRtuAirHandler } from '../../config/site-schema.ts';
import { DeviceError, ErrorCodes } from '../../errors.ts';
import type { DeviceDeps } from '../device-deps.ts';
import type { AhuCommandSet, AhuReadings, CallOptions, WriteOptions } from '../device-io.ts';
import { isPlausible, type ScreenedPoint } from '../plausibility.ts';
import type { CompiledProfile, ReadRequest, ReadResult, WriteRequest } from '../profile/codec.ts';
import { type DecodedStatus, type ProfileCommand, ProfileValueError } from '../profile/values.ts';
import { decodeEpochBlock, encodeFencedWrite, GATEWAY_FENCE, writeAddress } from './gateway-fencing.ts';
import { type CallContext, ModbusDevice, type RegisterClient } from './modbus-device.ts';
import { MODBUS_EXCEPTION, STALE_EPOCH_EXCEPTION } from './point-map.ts';

/** Where the fencing gateway keeps a unit's epoch block and write window, unless the site says. */
export const DEFAULT_FENCE_BASE = GATEWAY_FENCE.defaultBase;

export class ProfileModbusDevice extends ModbusDevice {
  readonly profile: CompiledProfile;
  /** What a status read covers: every status point, and a readable command with no feedback point. */
  private readonly statusNames: string[];
  /** The read plan in force: the profile's, with blocks that timed out split in two. */
  private plan: ReadRequest[];
  /** Blocks (by table:address) that have answered once: exception 02 from them is a fault, not "not ready". */
  private readonly readyBlocks = new Set<string>();
  /** The profile's alarm names, in a fixed order: bit i of `AhuReadings.alarms` is alarm i. */
  private readonly alarmOrder: string[];
  /** Our heartbeat counter: the last value we sent. */
  private heartbeat: number | undefined;
  /** The heartbeat the unit reports it holds (profiles with a heartbeat feedback point). */
  private heldHeartbeat: number | undefined;
  /** `connections` when run / remote enable were last written, and the remote enable written. */
  private statesWrittenOn = -1;
  private remoteEnableWritten: boolean | undefined;
  /** `connections` when the timeout register was last written: a reconnect writes it again. */
  private timeoutWrittenOn = -1;
  /** When (performance.now) a countdown or validity timer was last refreshed. */
  private timerRefreshedMs = Number.NEGATIVE_INFINITY;
  private readonly fenceBase: number;
  /** The blocks of the last complete status read, on connection `seenOn`; a write voids them. */
  private seen: ReadResult[] = [];
  private seenOn = -1;
  /** The epoch and connection of the last command written in full: the term may skip held points. */
  private fullEpoch: number | undefined;
  private fullOn = -1;
  /** When (performance.now) the last write request went out, for watchdogs any write refreshes. */
  private lastWriteMs = Number.NEGATIVE_INFINITY;

  constructor(ahu: ModbusAirHandler | ModbusRtuAirHandler, profile: CompiledProfile, deps: DeviceDeps = {}) {
    super(ahu, deps);
    this.profile = profile;
    const pts = profile.points;
    this.statusNames = [...pts.values()]
      .filter((p) => p.readable && p.write === undefined)
      .map((p) => p.name);
    // A unit without a feedback point shows the command in force in the command register itself.
    for (const [command, feedback] of [
      ['supplySetpointC', 'supplySetpointFeedbackC'],
      ['fanPct', 'fanFeedbackPct'],
    ] as const) {
      if (pts.get(command)?.readable && !pts.has(feedback)) this.statusNames.push(command);
    }
    this.plan = profile.planReads(this.statusNames);
    this.alarmOrder = alarmNames(profile);
    this.fenceBase = ahu.fenceBase ?? DEFAULT_FENCE_BASE;
  }

  /** The unit's own watchdog style; `none`: nothing on the unit notices a silent controller. */
  get unitWatchdog(): CompiledProfile['watchdog']['style'] {
    return this.profile.watchdog.style;
  }

  override read(opts: CallOptions = {}): Promise<AhuReadings> {
    return this.call('read', `read ${this.profile.name} points`, opts, (ctx) =>
      this.readProfileStatus(ctx).then((s) => this.readings(s)),
    );
  }

  /** Every readable point of the profile once, decoded (for commissioning: `coolctl profile read`). */
  readAll(opts: CallOptions = {}): Promise<{ status: DecodedStatus; results: ReadResult[] }> {
    const names = [...this.profile.points.values()].filter((p) => p.readable).map((p) => p.name);
    const plan = this.profile.planReads(names);
    return this.call('read', `read every ${this.profile.name} point`, opts, async (ctx) => {
      const results: ReadResult[] = [];
      for (const r of plan) results.push(await this.readBlock(ctx, r));
      return { status: this.profile.decodeReads(results), results };
    });
  }

  private async readProfileStatus(ctx: CallContext): Promise<DecodedStatus> {
    const results: ReadResult[] = [];
    // A read that fails half way confirms nothing.
    this.seenOn = -1;
    for (const r of this.plan) results.push(await this.readBlock(ctx, r));
    this.seen = results;
    this.seenOn = this.connections;
    const status = this.profile.decodeReads(results);
    if (status.heartbeatFeedback !== undefined) this.heldHeartbeat = status.heartbeatFeedback;
    if (this.drivingRemote && (status.mode === 'fallback' || status.mode === 'local')) {
      this.markRemoteLost(`the unit reports mode ${status.mode}`);
    }
    return status;
  }

  private async readBlock(ctx: CallContext, r: ReadRequest): Promise<ReadResult> {
    const what = `read ${r.table} ${r.address}+${r.count}`;
    const key = `${r.table}:${r.address}`;
    try {
      const res = await this.request(ctx, what, (c) => this.readRequest(c, r, key, what), true);
      this.readyBlocks.add(key);
      const values = res.data;
      if (!Array.isArray(values) || values.length < r.count) {
        throw new DeviceError(
          ErrorCodes.DEVICE_GARBAGE,
          this.id,
          `${what}: expected ${r.count} values, got ${Array.isArray(values) ? values.length : typeof values}`,
          { retryable: true },
        );
      }
      return { request: r, values: values.slice(0, r.count) };
    } catch (err) {
      // A large block can take seconds on some units (a gateway polling its serial side): read it
      // in two halves from now on, down to one point per request.
      if (err instanceof DeviceError && err.code === ErrorCodes.DEVICE_TIMEOUT) this.shrink(r);
      throw err;
    }
  }

  private readRequest(
    c: RegisterClient,
    r: ReadRequest,
    key: string,
    what: string,
  ): Promise<{ data: readonly (number | boolean)[] }> {
    const p =
      r.fc === 1
        ? c.readCoils(r.address, r.count)
        : r.fc === 2
          ? c.readDiscreteInputs(r.address, r.count)
          : r.fc === 3
            ? c.readHoldingRegisters(r.address, r.count)
            : c.readInputRegisters(r.address, r.count);
    return p.catch((err: unknown) => {
      // Exception 02 from a block that never answered: the unit (or its gateway) has no data for
      // it yet — still starting, or learning the point. Tried again, and the link stays up.
      if (
        (err as { modbusCode?: unknown }).modbusCode === MODBUS_EXCEPTION.illegalDataAddress &&
        !this.readyBlocks.has(key)
      ) {
        throw new DeviceError(
          ErrorCodes.DEVICE_EXCEPTION,
          this.id,
          `${what}: not ready yet (exception 02 before the block ever answered)`,
          { cause: err, retryable: true, deviceCode: MODBUS_EXCEPTION.illegalDataAddress },
        );
      }
      throw err;
    });
  }

  private shrink(r: ReadRequest): void {
    const inside = [...this.profile.points.values()]
      .filter(
        (p) =>
          this.statusNames.includes(p.name) &&
          p.table === r.table &&
          p.address >= r.address &&
          p.address + p.length <= r.address + r.count,
      )
      .sort((a, b) => a.address - b.address);
    if (inside.length < 2) return;
    const half = Math.ceil(inside.length / 2);
    const split = [
      ...this.profile.planReads(inside.slice(0, half).map((p) => p.name)),
      ...this.profile.planReads(inside.slice(half).map((p) => p.name)),
    ];
    const i = this.plan.indexOf(r);
    if (i < 0) return;
    this.plan = [...this.plan.slice(0, i), ...split, ...this.plan.slice(i + 1)];
    this.log.warn(
      {
        table: r.table,
        address: r.address,
        count: r.count,
        blocks: split.map((b) => `${b.address}+${b.count}`),
      },
      'read block timed out; reading it in smaller blocks from now on',
    );
  }

  private readings(s: DecodedStatus): AhuReadings {
    const r = profileReadings(s, this.alarmOrder, this.profile.watchdog.style, this.heartbeat ?? 0);
    this.noteAbsent(r.absent, () => ({ profile: this.profile.name }));
    return r;
  }

  override writeCommand(cmd: AhuCommandSet, opts: WriteOptions = {}): Promise<void> {
    const what = `${this.fencing}-fenced write (epoch ${cmd.epoch})`;
    if (cmd.remoteEnable && this.lost && !opts.reassert) {
      const err = new DeviceError(
        ErrorCodes.DEVICE_REFUSED,
        this.id,
        `${what}: the unit left remote control; re-check leadership, re-read the unit, then write with reassert: true`,
      );
      this.meter?.observe('write', 0, err.code);
      return Promise.reject(err);
    }
    let requests: WriteRequest[];
    try {
      requests = this.encode(cmd, 1, opts.reassert === true);
    } catch (err) {
      const e = new DeviceError(ErrorCodes.BAD_REQUEST, this.id, `${what}: ${(err as Error).message}`, {
        cause: err,
      });
      this.meter?.observe('write', 0, e.code);
      return Promise.reject(e);
    }
    return this.call('write', what, opts, async (ctx) => {
      if (
        opts.reassert ||
        (this.heldHeartbeat === undefined && this.profile.points.has('heartbeatFeedback'))
      ) {
        await this.readProfileStatus(ctx);
      }
      this.heartbeat = this.nextProfileHeartbeat();
      // Encoded again here: a reconnect since the check above changes what must go out.
      const encoded = this.encode(cmd, this.heartbeat, opts.reassert === true);
      requests = this.withoutHeld(encoded, cmd.epoch, opts.reassert === true);
      // Nothing to send still answers as a write would: a leader outside its lease is told so.
      if (requests.length === 0) this.checkWriteWindow(opts, what, this.maxApplyDelayMs);
      const full = requests.length === encoded.length;
      let connection = -1;
      try {
        for (let k = 0; k < requests.length; k++) {
          // What the unit held before a write says nothing of what it holds after: the next status
          // read tells.
          this.seenOn = -1;
          this.lastWriteMs = performance.now();
          await this.send(ctx, requests[k]!, requests.length - k, cmd.epoch, opts, what);
          // The connection the first request went out on (the call may have had to open one).
          if (k === 0) connection = this.connections;
        }
      } catch (err) {
        this.fullEpoch = undefined;
        throw err;
      }
      this.noteWritten(requests, cmd, connection);
      this.drivingRemote = cmd.remoteEnable;
      if (this.lost && cmd.remoteEnable) {
        this.lost = false;
        this.log.info({ epoch: cmd.epoch }, 'remote control re-asserted');
      }
      if (this.verifyWrites) {
        this.observePhase(ctx);
        ctx.op = 'verify';
        try {
          await this.verify(ctx, requests, what);
        } catch (err) {
          this.fullEpoch = undefined;
          throw err;
        }
      }
      if (full && connection === this.connections) {
        this.fullEpoch = cmd.epoch;
        this.fullOn = connection;
      }
    });
  }

  /**
   * `requests` less those that only repeat what the unit holds: every point of the request is one
   * the unit keeps (fan speed, setpoint), and the last status read on this connection shows its
   * words. Nothing is left out on a new connection, in a new term (cmd.epoch not yet written in
   * full), on reassert, or when the unit's watchdog is refreshed by any write and one is due.
   */
  private withoutHeld(requests: WriteRequest[], epoch: number, reassert: boolean): WriteRequest[] {
    if (
      reassert ||
      this.fullEpoch !== epoch ||
      this.fullOn !== this.connections ||
      this.seenOn !== this.connections ||
      this.anyWriteRefreshDue()
    ) {
      return requests;
    }
    return requests.filter((w) => !(w.points.every((n) => HELD_POINTS.has(n)) && this.holds(w)));
  }

  /** Whether the last status read shows the unit holding every word `w` would write. */
  private holds(w: WriteRequest): boolean {
    for (const { request: r, values } of this.seen) {
      if (r.table !== w.table || w.address < r.address || w.address + w.values.length > r.address + r.count) {
        continue;
      }
      const at = w.address - r.address;
      return w.values.every((v, i) => Number(values[at + i]) === v);
    }
    return false;
  }

  /** Whether the unit's watchdog, refreshed by any write (timeout register, validity), needs one now. */
  private anyWriteRefreshDue(): boolean {
    const wd = this.profile.watchdog;
    if (wd.style !== 'timeout-register' && wd.style !== 'validity') return false;
    const refreshMs = (wd.refreshS ?? (wd.timeoutS ?? 0) / 3) * 1000;
    return performance.now() - this.lastWriteMs >= refreshMs;
  }

  /**
   * Our counter + 1 (from what the unit holds when we never wrote), never the value the unit
   * holds: a unit that watches a counter may refuse an unchanged one. A bool point takes it mod 2.
   */
  private nextProfileHeartbeat(): number {
    let hb = ((this.heartbeat ?? this.heldHeartbeat ?? 0) + 1) % 0x10000;
    if (hb === this.heldHeartbeat) hb = (hb + 1) % 0x10000;
    return hb;
  }

  /**
   * The profile's command for `cmd`: only the points it has, its watchdog points as its style asks.
   * State points (run, remote enable) go out when they change and once per connection, and the
   * watchdog timer when it is due, not every period: on a unit without FC16 each is a request of
   * its own, and a lease unit's window counts every request. A profile that writes one of them
   * together with a per-period point (a fan speed with its countdown) gets it every time.
   */
  private encode(cmd: AhuCommandSet, heartbeat: number, reassert: boolean): WriteRequest[] {
    const states = reassert || this.statesWrittenOn !== this.connections;
    return encodeProfileCommand(this.profile, cmd, heartbeat, {
      remoteEnable: states || this.remoteEnableWritten !== cmd.remoteEnable,
      run: states,
      timer: this.timerDue(),
    });
  }

  /** Whether the unit's watchdog timer must be (re)written with this command. */
  private timerDue(): boolean {
    const wd = this.profile.watchdog;
    switch (wd.style) {
      case 'timeout-register':
        // The period is a setting: written once per connection (a unit may reset it when it restarts).
        return this.timeoutWrittenOn !== this.connections;
      case 'countdown':
      case 'validity': {
        const refreshMs = (wd.refreshS ?? (wd.timeoutS ?? 0) / 3) * 1000;
        return performance.now() - this.timerRefreshedMs >= refreshMs;
      }
      default:
        return false;
    }
  }

  /** What a whole command that went out on connection `connection` leaves for the next one to skip. */
  private noteWritten(requests: WriteRequest[], cmd: AhuCommandSet, connection: number): void {
    const wrote = (n: string) => requests.some((r) => (r.points as string[]).includes(n));
    if (connection !== this.connections) return; // reconnected meanwhile: the next write sends it all
    if (wrote('remoteEnable') || wrote('run')) this.statesWrittenOn = connection;
    if (wrote('remoteEnable')) this.remoteEnableWritten = cmd.remoteEnable;
    if (wrote('watchdogTimerS')) {
      this.timeoutWrittenOn = connection;
      this.timerRefreshedMs = performance.now();
    }
  }

  /** One write request on the wire, fenced as the unit's kind says; `left` counts it and those after it. */
  private async send(
    ctx: CallContext,
    w: WriteRequest,
    left: number,
    epoch: number,
    opts: WriteOptions,
    what: string,
  ): Promise<void> {
    const label = `write ${w.points.join('+')} (FC${w.fc} ${w.table} ${w.address})`;
    if (this.fencing === 'lease') {
      // One request, never re-sent within the call; sent only if it and those after it still land
      // inside the lease.
      await this.request(ctx, label, (c) => {
        this.checkWriteWindow(opts, what, left * this.maxApplyDelayMs);
        return writeRequest(c, w);
      });
      return;
    }
    if (this.fencing === 'gateway') {
      const words = encodeFencedWrite({ epoch, fc: w.fc, address: w.address, values: w.values });
      await this.withRetries(ctx, () =>
        this.request(ctx, `${label} through the fencing gateway`, (c) => {
          this.checkWriteWindow(opts, what, this.maxApplyDelayMs);
          return c.writeRegisters(writeAddress(this.fenceBase), words);
        }),
      ).catch((err: unknown) => this.proveGatewayStale(ctx, err, epoch, what));
      return;
    }
    await this.withRetries(ctx, () =>
      this.request(ctx, label, (c) => {
        this.checkWriteWindow(opts, what, this.maxApplyDelayMs);
        return writeRequest(c, w);
      }),
    );
  }

  /** A refusal by the fencing gateway is a newer leader only if its epoch block says so. */
  private async proveGatewayStale(
    ctx: CallContext,
    err: unknown,
    epoch: number,
    what: string,
  ): Promise<never> {
    if (!(err instanceof DeviceError) || err.deviceCode !== STALE_EPOCH_EXCEPTION) throw err;
    let held: bigint;
    try {
      const res = await this.request(
        ctx,
        'read the fencing gateway epoch block',
        (c) => c.readHoldingRegisters(this.fenceBase, GATEWAY_FENCE.epochBlockLen),
        true,
      );
      held = decodeEpochBlock(res.data).epoch;
    } catch (readErr) {
      throw new DeviceError(
        ErrorCodes.DEVICE_EXCEPTION,
        this.id,
        `${what}: refused as stale by the fencing gateway, not proven: its epoch block could not be read (${(readErr as Error).message})`,
        { cause: err, retryable: true, deviceCode: STALE_EPOCH_EXCEPTION },
      );
    }
    if (held > BigInt(epoch)) {
      throw new DeviceError(
        ErrorCodes.DEVICE_FENCED,
        this.id,
        `${what}: the fencing gateway holds epoch ${held} for this unit, above ours (${epoch}): a newer leader drives it`,
        { cause: err, retryable: false, deviceCode: STALE_EPOCH_EXCEPTION, unitEpoch: Number(held) },
      );
    }
    throw new DeviceError(
      ErrorCodes.DEVICE_EXCEPTION,
      this.id,
      `${what}: refused as stale by the fencing gateway, not proven: it holds epoch ${held}, not above ours (${epoch})`,
      { cause: err, retryable: true, deviceCode: STALE_EPOCH_EXCEPTION },
    );
  }

  /** Reads back what was written where the unit lets it be read (command bits cannot be). */
  private async verify(ctx: CallContext, requests: WriteRequest[], what: string): Promise<void> {
    for (const w of requests) {
      if (!w.points.every((n) => this.profile.points.get(n)?.readable)) continue;
      const r: ReadRequest =
        w.table === 'coil'
          ? { fc: 1, table: 'coil', address: w.address, count: w.values.length }
          : { fc: 3, table: 'holding', address: w.address, count: w.values.length };
      const back = await this.request(
        ctx,
        `read back ${w.points.join('+')}`,
        (c) => this.readRequest(c, r, `${r.table}:${r.address}`, 'read back'),
        true,
      );
      const got = back.data.map((v) => (typeof v === 'boolean' ? Number(v) : v));
      if (got.length < w.values.length || got.some((v, i) => v !== w.values[i])) {
        throw new DeviceError(
          ErrorCodes.DEVICE_VERIFY_MISMATCH,
          this.id,
          `${what}: ${w.points.join('+')} reads back [${got.join(',')}], not the [${w.values.join(',')}] written ` +
            '(another writer, or a unit that ignores or limits writes)',
        );
      }
    }
  }
}

/** Command points a unit keeps once written, whatever its watchdog: repeating them changes nothing. */
const HELD_POINTS: ReadonlySet<string> = new Set(['fanPct', 'supplySetpointC']);

/** The request a WriteRequest names, by its function code. */
function writeRequest(c: RegisterClient, w: WriteRequest): Promise<unknown> {
  switch (w.fc) {
    case 5:
      return c.writeCoil(w.address, w.values[0] === 1);
    case 6:
      return c.writeRegister(w.address, w.values[0]!);
    case 15:
      return c.writeCoils(
        w.address,
        w.values.map((v) => v === 1),
      );
    case 16:
      return c.writeRegisters(w.address, w.values);
  }
}

/**
 * Every alarm name the profile can report, sorted: what its alarm points decode to with every bit
 * set and with every bit clear (an inverted alarm is on at 0), so no name is missed.
 */
function alarmNames(profile: CompiledProfile): string[] {
  const alarmPoints = [...profile.points.values()].filter((p) => p.kind === 'alarm' && p.readable);
  const names = new Set<string>();
  for (const fill of [0, 0xffff]) {
    const results: ReadResult[] = alarmPoints.map((p) => ({
      request: {
        fc: p.table === 'coil' ? 1 : p.table === 'discrete' ? 2 : p.table === 'input' ? 4 : 3,
        table: p.table,
        address: p.address,
        count: p.length,
      },
      values: Array.from({ length: p.length }, () =>
        p.table === 'coil' || p.table === 'discrete' ? fill & 1 : fill,
      ),
    }));
    for (const n of profile.decodeReads(results).alarms) names.add(n);
  }
  return [...names].sort();
}

/** Which of the points that are not written every period go out with this command. */
export interface DuePoints {
  remoteEnable: boolean;
  run: boolean;
  timer: boolean;
}

/**
 * The requests of one command to a profile unit: fan speed, setpoint, epoch and heartbeat every
 * time; remote enable, run and the watchdog timer when `due` says so — or every time when the
 * profile writes them together with a per-period point.
 */
export function encodeProfileCommand(
  profile: CompiledProfile,
  cmd: AhuCommandSet,
  heartbeat: number,
  due: DuePoints,
): WriteRequest[] {
  const can = profile.commandPoints;
  const wd = profile.watchdog;
  const every: ProfileCommand = {};
  if (can.has('epoch')) every.epoch = cmd.epoch;
  if (can.has('fanPct')) every.fanPct = cmd.fanPct;
  if (can.has('supplySetpointC')) every.supplySetpointC = cmd.supplySetpointC;
  if (can.has('heartbeat') && wd.style !== 'none') every.heartbeat = heartbeat;
  const all: ProfileCommand = { ...every };
  if (can.has('remoteEnable')) all.remoteEnable = cmd.remoteEnable;
  // Handing a unit back to local control never stops it: run is asserted, never cleared.
  if (can.has('run')) all.run = true;
  if (can.has('watchdogTimerS') && wd.timeoutS !== undefined) all.watchdogTimerS = wd.timeoutS;
  const lean: ProfileCommand = { ...every };
  if (due.remoteEnable && all.remoteEnable !== undefined) lean.remoteEnable = all.remoteEnable;
  if (due.run && all.run !== undefined) lean.run = true;
  if (due.timer && all.watchdogTimerS !== undefined) lean.watchdogTimerS = all.watchdogTimerS;
  try {
    return profile.encodeCommand(lean);
  } catch (err) {
    if (!(err instanceof ProfileValueError)) throw err;
    return profile.encodeCommand(all);
  }
}

/**
 * Requests a command to this profile's unit takes: `perPeriod` in steady state, `first` on a
 * fresh connection (state points and the watchdog timer too). The lease timing rule counts them.
 */
export function commandRequestCounts(profile: CompiledProfile): { perPeriod: number; first: number } {
  const sample: AhuCommandSet = { epoch: 1, remoteEnable: true, fanPct: 50, supplySetpointC: 20 };
  return {
    perPeriod: encodeProfileCommand(profile, sample, 1, { remoteEnable: false, run: false, timer: false })
      .length,
    first: encodeProfileCommand(profile, sample, 1, { remoteEnable: true, run: true, timer: true }).length,
  };
}

/**
 * A profile unit's decoded status as readings, whatever its protocol: no-data is NaN (listed in
 * `absent`, quality uncertain), never 0; the feedback point where there is one, else the command
 * in force; alarms by name, `alarms` one bit per name of `alarmOrder`.
 */
export function profileReadings(
  s: DecodedStatus,
  alarmOrder: readonly string[],
  watchdog: CompiledProfile['watchdog']['style'],
  heartbeat: number,
): AhuReadings {
  let alarms = 0;
  for (const a of s.alarms) {
    const i = alarmOrder.indexOf(a);
    if (i >= 0 && i < 31) alarms |= 1 << i;
  }
  const absent = [...s.absent];
  // A figure outside what the quantity can be is a fault code the profile does not name (0x7FFF
  // read as 3276.7 °C, 0xFFFF as 6553.5 %), a word order the profile has wrong, or a broken probe:
  // absent like a no-data value, never a reading handed on as good.
  // `point` is the profile's (a feedback point, say), `reading` the readings' it fills.
  const plausible = (point: keyof DecodedStatus, reading: ScreenedPoint = point as ScreenedPoint): number => {
    const v = s[point] as number | undefined;
    if (v === undefined) return Number.NaN;
    if (isPlausible(reading, v)) return v;
    absent.push(point);
    return Number.NaN;
  };
  const fanPoint = s.fanFeedbackPct !== undefined ? 'fanFeedbackPct' : 'fanPct';
  const setpointPoint =
    s.supplySetpointFeedbackC !== undefined ? 'supplySetpointFeedbackC' : 'supplySetpointC';
  return {
    mode: s.mode ?? 'unknown',
    fanPct: plausible(fanPoint, 'fanPct'),
    supplySetpointC: plausible(setpointPoint, 'supplySetpointC'),
    supplyC: plausible('supplyC'),
    returnC: plausible('returnC'),
    cwValvePct: plausible('cwValvePct'),
    alarms,
    alarmNames: s.alarms,
    absent,
    unitWatchdog: watchdog,
    // A unit that holds no epoch has accepted none.
    epoch: s.epochFeedback ?? s.epoch ?? 0,
    heartbeat: s.heartbeatFeedback ?? heartbeat,
    fanKw: plausible('fanKw'),
    coolingKw: plausible('coolingKw'),
    quality: absent.length > 0 ? 'uncertain' : 'good',
    sourceTimeMs: Date.now(),
  };
}
