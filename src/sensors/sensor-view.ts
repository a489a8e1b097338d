// What the store's readers see (control, alarms, /metrics, the API): a sensor's snapshot, a node's
// mesh health, and per control group the view control may trust and the figures of one walk.
// Control depends on SensorView, never on MQTT, Modbus or the store's columns; all here is read-only.
import type { SensorKindName } from '../config/site-schema.ts';
import type { Verdict, VerdictHoldMemory, VerdictRecovery } from './verdict.ts';

export type SourceName = 'mqtt' | 'modbus';

/** A flag that makes a reading untrusted (`bad`) or only worth a look (`warn`). */
export type SensorFlag =
  | 'stale'
  | 'stuck'
  | 'out-of-range'
  | 'spike'
  | 'noisy'
  | 'gateway-offline'
  | 'low-battery'
  | 'weak-link'
  | 'lossy';

export interface SensorSnapshot {
  node: string;
  sensor: string;
  kind: SensorKindName;
  rack: string;
  value: number | null;
  source: SourceName | null;
  /** Wall ms when the gateway got the reading (MQTT: arrival; Modbus: poll time − age), for people. */
  receivedAtMs: number | null;
  /** How long ago that was, on the monotonic clock: what staleness is judged by. */
  ageMs: number | null;
  flags: SensorFlag[];
  quality: 'good' | 'bad';
}

export interface NodeHealth {
  node: string;
  gateway: string;
  hops: number | null;
  rssiDbm: number | null;
  batteryPct: number | null;
  lastSeq: number;
  reports: number;
  duplicates: number;
  outOfOrder: number;
  /** Times the node started its seq count again (rebooted) and the store followed it. */
  restarts: number;
  /** Share of reports missing (seq gaps), recent-weighted, %. */
  lossPct: number;
  flags: SensorFlag[];
}

export interface GroupSensorView {
  group: string;
  verdict: Verdict;
  /** Hottest and mean good rack-inlet reading, °C; null when there is none. */
  inletMaxC: number | null;
  inletMeanC: number | null;
  hottestRack: string | null;
  humidityPct: number | null;
  /** Highest dew point among nodes with a good inlet and humidity reading, °C. */
  dewPointC: number | null;
  /** Good inlet sensors / configured inlet sensors, 0…1. */
  coverage: number;
  goodInletSensors: number;
  configuredInletSensors: number;
  /** Racks of the group without a single good inlet reading: any one makes the verdict at most `degraded`. */
  uncoveredRacks: string[];
  /**
   * Why the verdict is not `ok`, for people (the uncovered racks named, capped); empty when it is.
   * The store always sets it; a view made by hand (a test's) may leave it out.
   */
  reasons?: readonly string[];
  /**
   * Set while the group keeps a worse verdict than its sensors give now, because the better one has
   * not held `sensing.verdictRecoveryS` yet (src/sensors/verdict.ts, VerdictHold); null otherwise.
   * A view made by hand may leave it out.
   */
  recovery?: VerdictRecovery | null;
  /** Wall ms of the view, for people. */
  atMs: number;
}

/** Control depends on this, never on MQTT or Modbus. */
export interface SensorView {
  view(groupId: string): GroupSensorView;
  /** Per rack of the group that has inlet sensors: its hottest good inlet and its inlet sensors' trust. */
  rackInletStats?(groupId: string): RackInletStats[];
  /**
   * The group's figures taken less than `maxAgeMs` ago (the control loop takes them every period),
   * else taken now. For readers that run beside control (alarms, /metrics, the dashboard).
   */
  figures?(groupId: string, maxAgeMs: number): GroupFigures;
  /**
   * The group's verdict-hold memory for its process state, as of now (null: never judged here).
   * With `resumeVerdictHold`, what lets a new leader go on with a flap its predecessor saw.
   */
  verdictHold?(groupId: string): VerdictHoldMemory | null;
  /**
   * A new term: takes `memory` from the group's row, written `rowAgeMs` ago (0: age unknown, taken
   * as of now), unless this node's own memory of the group is fresher (SensorStore.resumeVerdictHold).
   */
  resumeVerdictHold?(groupId: string, memory: VerdictHoldMemory, rowAgeMs: number): 'resumed' | 'kept';
}

/**
 * A group's sensor figures at one instant, all from one walk of its sensors: the view control acts
 * on, and per rack what the alarm rules, /metrics and the floor map read. Shared: the control loop's
 * walk each period is what the others read (SensorStore.figures), not a walk of their own each.
 * Read-only for everyone.
 */
export interface GroupFigures {
  /** Monotonic ms the figures were taken at. */
  atMs: number;
  view: GroupSensorView;
  /** Racks of the group with inlet sensors, in the store's order. */
  inletRacks: readonly string[];
  /** Per inlet rack: hottest good inlet reading, °C (NaN: none is good). */
  rackInletMaxC: Float64Array;
  /** Per inlet rack: its good inlet sensors, and its configured inlet sensors. */
  rackGoodInlets: Uint32Array;
  rackInlets: Uint32Array;
  /** Racks with a %RH sensor, in the store's order. */
  dewRacks: readonly string[];
  /** Per dew rack: highest dew point of its nodes with a good inlet and a good %RH, °C (NaN: none). */
  rackDewPointC: Float64Array;
}

/**
 * How old figures a reader beside control (alarms, /metrics, the dashboard) takes: what the
 * group's loop took in its last period (1 s by default), with a quarter period for its jitter.
 */
export const SHARED_FIGURES_MAX_AGE_MS = 1250;

/** One rack's inlet as /metrics says it (rackInletStats). */
export interface RackInletStats {
  rack: string;
  /** Hottest good inlet reading, °C; null when none is good. */
  inletMaxC: number | null;
  /** Good inlet sensors of the rack / its configured inlet sensors. */
  goodInlets: number;
  inlets: number;
}
