// Drives one control group's air handlers while — and only while — this node leads the group:
// every period each unit gets a fenced write (epoch + fresh heartbeat + commands) that keeps it
// under remote control. Until the control loop fills in real decisions it holds each unit's
// commands (an operator may set them); the group's process state — those commands — is written to
// the state cache every period, so a new leader warm-starts from it: its first command continues
// the last one, even if the units fell back to local control during the failover.
// Invariants: every write carries the epoch of the leadership it was decided under, and the
// lease guard (`leadership.fence`) is checked synchronously right before the bytes go out;
// a unit refusing our epoch (or a newer row in the cache) stops us driving until leadership moves on.
import type { Logger } from 'pino';
import type { ProcessStateStore } from '../cache/state-cache.ts';
import type { Leadership, RoleChange } from '../cluster/leadership.ts';
import type { ControlGroup } from '../config/site-schema.ts';
import type { AhuCommandSet, DeviceIo } from '../devices/device-io.ts';
import { DeviceError, ErrorCodes } from '../errors.ts';

export interface GroupDriverOptions {
  periodMs: number;
  logger: Logger;
  /** Where process state goes (broadcast to peers) and comes back from on a warm start. */
  store?: ProcessStateStore;
  /** How long a new leader waits for its peers' rows when its own cache has none. */
  pullTimeoutMs?: number;
}

export interface HeldCommand {
  fanPct: number;
  supplySetpointC: number;
}

/** The group's process state as it travels in the state cache (one row per group). */
export interface GroupProcessState {
  v: 1;
  commands: Record<string, HeldCommand>;
}

/** How the current term started: from a cached row (warm) or from reading the units (cold). */
export interface StartInfo {
  epoch: number;
  source: 'cache' | 'peers' | 'cold';
  row: { epoch: number; seq: number; writer: string } | null;
}

export interface UnitDriveState {
  ahu: string;
  held: { fanPct: number; supplySetpointC: number } | null;
  lastWriteOkMs: number | null;
  lastError: string | null;
}

export class GroupDriver {
  readonly group: string;
  readonly counters = { writes: 0, writeErrors: 0, notLeader: 0, fenced: 0 };
  private readonly ahus: string[];
  private readonly devices: Map<string, DeviceIo>;
  private readonly leadership: Leadership;
  private readonly opts: GroupDriverOptions;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  /** Monotonic ms of the last period (the loop's liveness, for the systemd watchdog). */
  lastTickAtMs = performance.now();
  private drivingEpoch: number | null = null;
  /** An epoch a unit refused as stale: we never write with it (or below) again. */
  private refusedEpoch = 0;
  private readonly held = new Map<string, HeldCommand>();
  /** Resolves when the current term's warm start (cache, pull) is done; writes wait for it. */
  private resumed: Promise<void> = Promise.resolve();
  private resuming = false;
  private started: StartInfo | null = null;
  private readonly inFlight = new Set<string>();
  /** Units read since this term began. */
  private readonly reread = new Set<string>();
  private readonly state = new Map<string, UnitDriveState>();

  constructor(
    group: ControlGroup,
    devices: Map<string, DeviceIo>,
    leadership: Leadership,
    opts: GroupDriverOptions,
  ) {
    this.group = group.id;
    this.ahus = group.airHandlers;
    this.devices = devices;
    this.leadership = leadership;
    this.opts = opts;
    this.log = opts.logger.child({ group: group.id });
    for (const ahu of this.ahus)
      this.state.set(ahu, { ahu, held: null, lastWriteOkMs: null, lastError: null });
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), this.opts.periodMs);
    // A new leader writes at once, not at its next tick: handover time is etcd's, not our period's.
    this.leadership.on('role', this.onRole);
    this.tick();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.leadership.off('role', this.onRole);
  }

  private readonly onRole = (c: RoleChange): void => {
    if (c.group === this.group && c.to === 'leader' && this.timer) this.tick();
  };

  /** Commands and link of each unit, for the API. */
  units(): UnitDriveState[] {
    return [...this.state.values()].map((s) => ({ ...s, held: this.held.get(s.ahu) ?? null }));
  }

  get driving(): boolean {
    return this.drivingEpoch !== null;
  }

  /** How this node's current (or last) term began. */
  get startInfo(): StartInfo | null {
    return this.started;
  }

  /**
   * An operator's manual command for one unit (or every unit of the group): held from now on and
   * carried in the process state, so it survives a failover. Only the driving leader takes it.
   */
  setCommand(cmd: Partial<HeldCommand>, ahu?: string): HeldCommand[] {
    if (this.drivingEpoch === null || this.resuming)
      throw new DeviceError(ErrorCodes.NOT_LEADER, this.group, 'this node is not driving the group');
    const targets = ahu ? [ahu] : this.ahus;
    const out: HeldCommand[] = [];
    for (const a of targets) {
      const cur = this.held.get(a);
      if (!cur) continue; // not read yet: its first read decides, then it can be set
      const next = { ...cur, ...cmd };
      this.held.set(a, next);
      out.push(next);
    }
    this.log.info({ ahu: ahu ?? 'all', cmd, units: out.length }, 'operator command held');
    this.writeRow(this.drivingEpoch);
    return out;
  }

  /** One period: re-check leadership, then one fenced write per unit (a unit still busy is skipped). */
  tick(): void {
    this.lastTickAtMs = performance.now();
    const fence = this.leadership.fence(this.group);
    if (!fence || fence.epoch <= this.refusedEpoch) {
      if (this.drivingEpoch !== null) {
        this.log.info({ epoch: this.drivingEpoch }, 'stopped driving the group: not its leader any more');
        this.drivingEpoch = null;
      }
      return;
    }
    if (this.drivingEpoch !== fence.epoch) {
      // A new term: commands come from the freshest process state (cache, else peers), else from
      // the units themselves — never from this node's memory of an older term.
      this.held.clear();
      this.reread.clear();
      this.drivingEpoch = fence.epoch;
      this.resuming = true;
      this.resumed = this.warmStart(fence.epoch).finally(() => {
        this.resuming = false;
      });
    }
    if (!this.resuming) this.writeRow(fence.epoch);
    for (const ahu of this.ahus) {
      if (this.inFlight.has(ahu)) continue;
      const device = this.devices.get(ahu);
      if (!device) continue;
      this.inFlight.add(ahu);
      this.drive(ahu, device, fence.epoch).finally(() => this.inFlight.delete(ahu));
    }
  }

  /** Resumes from the freshest row: this node's cache, else a pull from peers, else cold. */
  private async warmStart(epoch: number): Promise<void> {
    const store = this.opts.store;
    let source: StartInfo['source'] = 'cold';
    let row = store?.get(this.group);
    if (store && row) source = 'cache';
    else if (store) {
      await store.pull([this.group], this.opts.pullTimeoutMs ?? 500).catch(() => {});
      row = store.get(this.group);
      if (row) source = 'peers';
    }
    if (this.drivingEpoch !== epoch) return;
    let state: GroupProcessState | null = null;
    if (row && row.epoch < epoch) {
      try {
        const v = JSON.parse(row.body.toString('utf8')) as GroupProcessState;
        if (v?.v === 1 && v.commands && typeof v.commands === 'object') state = v;
      } catch {
        state = null;
      }
    }
    if (!state) source = 'cold';
    for (const ahu of this.ahus) {
      const c = state?.commands[ahu];
      if (isHeldCommand(c)) this.held.set(ahu, { fanPct: c.fanPct, supplySetpointC: c.supplySetpointC });
    }
    const info: StartInfo = {
      epoch,
      source,
      row: row && state ? { epoch: row.epoch, seq: row.seq, writer: row.writer } : null,
    };
    this.started = info;
    this.log.info(
      { ...info, units: this.ahus.length, fromState: this.held.size },
      source === 'cold'
        ? 'driving the group: cold start (no process state)'
        : 'driving the group: warm start',
    );
  }

  /** Writes the group's process state (broadcast to every peer); a newer row means we are stale. */
  private writeRow(epoch: number): void {
    const store = this.opts.store;
    if (!store || this.held.size === 0) return;
    const commands: Record<string, HeldCommand> = {};
    for (const [ahu, c] of this.held) commands[ahu] = c;
    const state: GroupProcessState = { v: 1, commands };
    if (store.write(this.group, epoch, state) === null) {
      this.refusedEpoch = Math.max(this.refusedEpoch, epoch);
      this.log.warn(
        { epoch },
        'the state cache holds a newer epoch: another leader drives this group; stepping back',
      );
    }
  }

  private async drive(ahu: string, device: DeviceIo, epoch: number): Promise<void> {
    const st = this.state.get(ahu)!;
    try {
      await this.resumed;
      if (this.drivingEpoch !== epoch) return;
      let held = this.held.get(ahu);
      if (!held || !this.reread.has(ahu)) {
        // Every term re-reads each unit once (link and values); a unit the cached state does not
        // cover starts from what it does now (cold).
        const r = await device.read();
        this.reread.add(ahu);
        held ??= { fanPct: clamp(r.fanPct, 0, 100), supplySetpointC: r.supplySetpointC };
        if (!this.held.has(ahu)) this.held.set(ahu, held);
        held = this.held.get(ahu)!;
      }
      const cmd: AhuCommandSet = { epoch, remoteEnable: true, ...held };
      // reassert: this node has just proven it leads (the fence below is checked at the send), so
      // taking a unit back from fallback is the deliberate act of the group's leader.
      await device.writeCommand(cmd, {
        reassert: true,
        mayWrite: () => this.leadership.fence(this.group)?.epoch === epoch,
      });
      this.counters.writes++;
      st.lastWriteOkMs = Date.now();
      if (st.lastError) this.log.info({ ahu }, 'unit writes succeed again');
      st.lastError = null;
    } catch (err) {
      const e = err instanceof DeviceError ? err : undefined;
      if (e?.code === ErrorCodes.NOT_LEADER) {
        this.counters.notLeader++;
        return;
      }
      if (e?.code === ErrorCodes.DEVICE_FENCED) {
        this.counters.fenced++;
        this.refusedEpoch = Math.max(this.refusedEpoch, epoch);
        this.log.warn(
          { ahu, epoch },
          'a unit holds a newer epoch: another leader drives this group; stepping back',
        );
        return;
      }
      this.counters.writeErrors++;
      const msg = (err as Error).message;
      if (st.lastError !== msg) this.log.warn({ ahu, err: msg }, 'unit write failed');
      st.lastError = msg;
    }
  }
}

function isHeldCommand(x: unknown): x is HeldCommand {
  const c = x as HeldCommand;
  return (
    !!c &&
    typeof c.fanPct === 'number' &&
    Number.isFinite(c.fanPct) &&
    c.fanPct >= 0 &&
    c.fanPct <= 100 &&
    typeof c.supplySetpointC === 'number' &&
    Number.isFinite(c.supplySetpointC)
  );
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}
