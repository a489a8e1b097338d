// The one interface control code uses to talk to an air handler, whatever the protocol.
// Engineering units only (°C, %, kW). Every call takes a deadline; nothing awaits forever, and
// every pending call settles when the device is closed. Implementations: ./modbus, ./opcua.
import type { EventEmitter } from 'node:events';
import type { AhuModeName, AhuProtocol, UnitSetpoints } from '../unit-contract.ts';

export type { AhuModeName };

export type LinkState = 'up' | 'degraded' | 'down';

/** Quality of a reading, as a controller must treat it. */
export type Quality = 'good' | 'uncertain' | 'bad';

export interface AhuReadings {
  mode: AhuModeName;
  fanPct: number;
  supplySetpointC: number;
  supplyC: number;
  returnC: number;
  cwValvePct: number;
  alarms: number;
  /** Highest epoch the unit has accepted. */
  epoch: number;
  heartbeat: number;
  fanKw: number;
  coolingKw: number;
  quality: Quality;
  /** When the device (OPC-UA source timestamp) or we (Modbus, time of the reply) saw the values, ms since Unix epoch. */
  sourceTimeMs: number;
  /** Profile units: the alarms that are on, by the profile's names (`alarms` is a bit per name). */
  alarmNames?: string[];
  /**
   * Points read without a usable value — a no-data code, or a figure outside what the point can be
   * (./plausibility.ts) — whatever the protocol: their value here is NaN, never 0, and quality is
   * not `good`. Undefined when every point is usable.
   */
  absent?: string[];
  /**
   * Profile units: the unit's own BMS watchdog. `none`: nothing on the unit notices a silent
   * controller — the controller is the only guard.
   */
  unitWatchdog?: 'toggle' | 'timeout-register' | 'countdown' | 'validity' | 'none';
}

/** What control asks the unit to do; the epoch fences it, the heartbeat is the adapter's business. */
export interface AhuCommandSet extends UnitSetpoints {
  epoch: number;
  remoteEnable: boolean;
}

export interface CallOptions {
  /** Aborts the call; the call also has the adapter's own outer deadline. */
  signal?: AbortSignal;
}

export interface WriteOptions extends CallOptions {
  /**
   * Take the unit back under remote control after it fell back to local (watchdog, link loss,
   * operator). Without it such a write is refused with COOLCTL_E_DEVICE_REFUSED: re-asserting
   * control is a decision of the caller, never a side effect of a reconnect.
   */
  reassert?: boolean;
  /**
   * The lease guard: checked synchronously right before each attempt goes on the wire (after any
   * queueing, connecting or retry backoff). false → COOLCTL_E_NOT_LEADER and nothing is sent.
   */
  mayWrite?: () => boolean;
  /**
   * Until when (`performance.now()` ms) a write of this caller may land on the unit: the lease
   * guard's deadline (`Fence.untilMs`), or null when it may not write at all. Read right before each
   * attempt goes on the wire (a keepalive acknowledged meanwhile moves it later). An attempt is sent
   * only if the unit's worst case fits — now + `client.maxApplyDelayMs` ≤ deadline — else the write
   * fails with COOLCTL_E_NOT_LEADER and nothing is sent; OPC-UA also sends what is left as the
   * request's timeoutHint, and gives up on the answer then (docs/leadership.md, "Writes end inside
   * the term").
   */
  deadlineMs?: () => number | null;
}

export interface LinkEvent {
  device: string;
  from: LinkState;
  to: LinkState;
  reason: string;
}

/**
 * A unit whose link is up (it answers) but that refuses every read with a Modbus exception — a
 * register map or profile that does not fit the unit (02 illegal data address). No reading is
 * good, so control sees the unit as lost although the link is fine.
 */
export interface DeviceRefusal {
  /** The Modbus exception code of the last refused read. */
  code: number;
  /** Its name (`illegal data address`). */
  name: string;
  /** Since when every read was refused (ms since Unix epoch). */
  sinceMs: number;
}

/** Payload of 'remote-lost': the unit was seen out of remote control after we had driven it. */
export interface RemoteLostEvent {
  device: string;
  reason: string;
}

/**
 * Events: 'link' (LinkEvent) on every link state change; 'remote-lost' (RemoteLostEvent) when
 * `remoteControlLost` becomes true.
 */
export interface DeviceIo extends Pick<EventEmitter, 'on' | 'off' | 'once'> {
  readonly id: string;
  readonly protocol: AhuProtocol;
  readonly linkState: LinkState;
  /** Modbus: set while the unit answers every read with an exception (link up, no reading); else null. */
  readonly refusal?: DeviceRefusal | null;
  /** Connects (bounded); resolves when up, or rejects with a DeviceError — the adapter keeps reconnecting in the background. */
  open(opts?: CallOptions): Promise<void>;
  read(opts?: CallOptions): Promise<AhuReadings>;
  /**
   * Writes epoch + heartbeat + commands in one atomic request, then reads back and verifies.
   * Rejects with DeviceError code COOLCTL_E_DEVICE_FENCED when the unit holds a higher epoch:
   * the caller must stop driving this unit (demote).
   */
  writeCommand(cmd: AhuCommandSet, opts?: WriteOptions): Promise<void>;
  /** True after the unit left remote control (fallback, link loss) until a write with `reassert` succeeds. */
  readonly remoteControlLost: boolean;
  /** What keeps a deposed leader's writes off the unit (docs/leadership.md, "Fencing per unit"). */
  readonly fencing?: 'epoch' | 'lease' | 'gateway';
  /** The unit's own BMS watchdog style, when its profile says; `none`: the controller is its only guard. */
  readonly unitWatchdog?: 'toggle' | 'timeout-register' | 'countdown' | 'validity' | 'none';
  close(): Promise<void>;
}
