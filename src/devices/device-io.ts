// The one interface control code uses to talk to an air handler, whatever the protocol.
// Engineering units only (°C, %, kW). Every call takes a deadline; nothing awaits forever, and
// every pending call settles when the device is closed. Implementations: ./modbus, ./opcua.
import type { EventEmitter } from 'node:events';

export type LinkState = 'up' | 'degraded' | 'down';
export type AhuModeName = 'local' | 'remote' | 'fallback' | 'tripped' | 'unknown';

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
}

/** What control asks the unit to do; the epoch fences it, the heartbeat is the adapter's business. */
export interface AhuCommandSet {
  epoch: number;
  remoteEnable: boolean;
  fanPct: number;
  supplySetpointC: number;
}

export interface CallOptions {
  /** Aborts the call; the call also has the adapter's own outer deadline. */
  signal?: AbortSignal;
}

export interface LinkEvent {
  device: string;
  from: LinkState;
  to: LinkState;
  reason: string;
}

export interface DeviceIo extends Pick<EventEmitter, 'on' | 'off' | 'once'> {
  readonly id: string;
  readonly protocol: 'modbus-tcp' | 'modbus-rtu' | 'opcua';
  readonly linkState: LinkState;
  /** Connects (bounded); resolves when up, or rejects with a DeviceError — the adapter keeps reconnecting in the background. */
  open(opts?: CallOptions): Promise<void>;
  read(opts?: CallOptions): Promise<AhuReadings>;
  /**
   * Writes epoch + heartbeat + commands in one atomic request, then reads back and verifies.
   * Rejects with DeviceError code COOLCTL_E_DEVICE_FENCED when the unit holds a higher epoch:
   * the caller must stop driving this unit (demote).
   */
  writeCommand(cmd: AhuCommandSet, opts?: CallOptions): Promise<void>;
  close(): Promise<void>;
}
