// coolctl's own points: the names a device profile maps a unit's registers or nodes to, and what
// each one means. One owner for the vocabulary: the schema, the loader's rules, the codec and the
// docs (docs/device-profiles.md) all read it from here; modes are the device contract's.
import { AHU_MODES, type AhuMode } from '../../unit-contract.ts';

/** What a point carries once decoded. */
export type PointKind = 'temperatureC' | 'percent' | 'kilowatt' | 'seconds' | 'counter' | 'boolean' | 'mode';

export interface PointDef {
  kind: PointKind;
  /** Written by the controller (a command); every other point is read only. */
  command: boolean;
  meaning: string;
}

/** Every point name a profile may use, besides alarm points (any name with `alarm` or `alarmBits`). */
export const POINTS = {
  // Commands: what the controller writes.
  epoch: {
    kind: 'counter',
    command: true,
    meaning: 'fencing epoch, written in the same request as the commands',
  },
  heartbeat: {
    kind: 'counter',
    command: true,
    meaning: 'toggle/counter the unit watches; a bool point alternates 0/1, a register counts',
  },
  remoteEnable: {
    kind: 'boolean',
    command: true,
    meaning: 'true: the unit follows remote commands; false: hand back to its local control',
  },
  run: { kind: 'boolean', command: true, meaning: 'unit run (true) or stop (false)' },
  fanPct: { kind: 'percent', command: true, meaning: 'fan speed command, %' },
  supplySetpointC: { kind: 'temperatureC', command: true, meaning: 'supply-air setpoint command, °C' },
  watchdogTimerS: {
    kind: 'seconds',
    command: true,
    meaning: "the unit's BMS timer (timeout period, countdown or validity), seconds",
  },
  // Status: what the controller reads.
  supplyC: { kind: 'temperatureC', command: false, meaning: 'supply-air temperature, °C' },
  returnC: { kind: 'temperatureC', command: false, meaning: 'return-air temperature, °C' },
  supplySetpointFeedbackC: {
    kind: 'temperatureC',
    command: false,
    meaning: 'supply setpoint in force (remote command or local setpoint), °C',
  },
  localSetpointC: { kind: 'temperatureC', command: false, meaning: 'setpoint on local control, °C' },
  fanFeedbackPct: { kind: 'percent', command: false, meaning: 'fan speed now, %' },
  cwValvePct: { kind: 'percent', command: false, meaning: 'chilled-water valve position, %' },
  fanKw: { kind: 'kilowatt', command: false, meaning: 'fan electrical power, kW' },
  coolingKw: { kind: 'kilowatt', command: false, meaning: 'cooling delivered, kW' },
  mode: {
    kind: 'mode',
    command: false,
    meaning: "operating mode; `enum` maps the unit's codes to coolctl modes",
  },
  runFeedback: { kind: 'boolean', command: false, meaning: 'the unit is running' },
  epochFeedback: { kind: 'counter', command: false, meaning: 'highest epoch the unit has accepted' },
  heartbeatFeedback: { kind: 'counter', command: false, meaning: 'last heartbeat the unit accepted' },
  watchdogS: {
    kind: 'seconds',
    command: false,
    meaning: "the unit's own watchdog period as it reports it, s",
  },
} as const satisfies Record<string, PointDef>;

export type PointName = keyof typeof POINTS;
export type CommandPointName = {
  [K in PointName]: (typeof POINTS)[K]['command'] extends true ? K : never;
}[PointName];
export type StatusPointName = Exclude<PointName, CommandPointName>;

export const POINT_NAMES = Object.keys(POINTS) as PointName[];
export const COMMAND_POINT_NAMES = POINT_NAMES.filter((n) => POINTS[n].command) as CommandPointName[];

/** The modes a unit's `mode` codes map to: the device contract's (`unknown` is any other code). */
export const PROFILE_MODES = AHU_MODES;
export type ProfileMode = AhuMode;

export function isPointName(name: string): name is PointName {
  return Object.hasOwn(POINTS, name);
}
