// Drives one control group's air handlers while — and only while — this node leads the group:
// every period each unit gets a fenced write (epoch + fresh heartbeat + commands) that keeps it
// under remote control. Until the control loop fills in real decisions it holds each unit's
// commands as it found them when this node took the lead, so a handover changes nothing.
// Invariants: every write carries the epoch of the leadership it was decided under, and the
// lease guard (`leadership.fence`) is checked synchronously right before the bytes go out;
// a unit refusing our epoch stops us driving it until leadership moves on.
import type { Logger } from 'pino';
import type { Leadership, RoleChange } from '../cluster/leadership.ts';
import type { ControlGroup } from '../config/site-schema.ts';
import type { AhuCommandSet, DeviceIo } from '../devices/device-io.ts';
import { DeviceError, ErrorCodes } from '../errors.ts';

export interface GroupDriverOptions {
  periodMs: number;
  logger: Logger;
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
  private drivingEpoch: number | null = null;
  /** An epoch a unit refused as stale: we never write with it (or below) again. */
  private refusedEpoch = 0;
  private readonly held = new Map<string, { fanPct: number; supplySetpointC: number }>();
  private readonly inFlight = new Set<string>();
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

  /** One period: re-check leadership, then one fenced write per unit (a unit still busy is skipped). */
  tick(): void {
    const fence = this.leadership.fence(this.group);
    if (!fence || fence.epoch <= this.refusedEpoch) {
      if (this.drivingEpoch !== null) {
        this.log.info({ epoch: this.drivingEpoch }, 'stopped driving the group: not its leader any more');
        this.drivingEpoch = null;
      }
      return;
    }
    if (this.drivingEpoch !== fence.epoch) {
      // A new term: commands are learnt afresh from the units, never carried over from an old term.
      this.held.clear();
      this.drivingEpoch = fence.epoch;
      this.log.info({ epoch: fence.epoch, units: this.ahus.length }, 'driving the group');
    }
    for (const ahu of this.ahus) {
      if (this.inFlight.has(ahu)) continue;
      const device = this.devices.get(ahu);
      if (!device) continue;
      this.inFlight.add(ahu);
      this.drive(ahu, device, fence.epoch).finally(() => this.inFlight.delete(ahu));
    }
  }

  private async drive(ahu: string, device: DeviceIo, epoch: number): Promise<void> {
    const st = this.state.get(ahu)!;
    try {
      let held = this.held.get(ahu);
      if (!held) {
        const r = await device.read();
        held = { fanPct: clamp(r.fanPct, 0, 100), supplySetpointC: r.supplySetpointC };
        this.held.set(ahu, held);
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

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}
