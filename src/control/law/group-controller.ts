// The control law of one group, as a pure synchronous step: sensor view + units + overrides +
// previous state → one command per unit, the next state, the mode and why. The caller (the group
// driver) owns time, I/O, leadership and storage; nothing here awaits, logs or keeps a reference.
// Invariants: every command has passed `enforceSafety`; the state is a small JSON object, and a
// step from a resumed state (or from the units' own commands) continues the last command without a
// bump (the integral is back-calculated from it); an overridden, released or unavailable unit never
// winds the loop up.
import type { Site } from '../../config/site-schema.ts';
import { type ControlTuning, type ControlTuningInput, resolveTuning } from '../../config/tuning-schema.ts';
import type { GroupSensorView } from '../../sensors/sensor-store.ts';
import { AIR_TEMP_RANGE_C, FAN_RANGE_PCT, inRange, SUPPLY_SETPOINT_RANGE_C } from '../../unit-contract.ts';
import { slewOffsets, targetOffsets } from './allocation.ts';
import {
  groupRacks,
  INFLUENCE_LENGTH_M,
  type InfluenceMatrix,
  type InfluenceRecords,
  influenceFromGeometry,
  influenceFromRecords,
} from './influence.ts';
import { clamp, piStep, trackIntegral } from './pi.ts';
import {
  type Command,
  emptyInletHistory,
  enforceSafety,
  fanFloorPct,
  type InletHistory,
  inletRateHold,
  isInletHistory,
  recordInlet,
  SAFETY,
  type SafetyLimits,
} from './safety.ts';
import { resetSetpoint } from './setpoint-reset.ts';

export type UnitCommand = Command;
/** A saturated group asks for help once its hottest inlet is within this of its target, K. */
const HELP_MARGIN_K = 0.3;
/** A neighbour's help rising this much in one step is an event (a unit down), not a drift, K. */
const HELP_STEP_K = 0.5;
/** The most a learner's dither may move one unit's supply setpoint from the group's, K. */
export const MAX_DITHER_K = 1;
/** How a reason saying that this period's commands were clipped by the safety layer begins. */
export const SAFETY_LIMITED = 'safety limited ';
export const CONTROL_MODES = ['normal', 'degraded', 'blind', 'paused'] as const;
export type ControlMode = (typeof CONTROL_MODES)[number];
/** available: reads and writes work and it runs; tripped: it reports a trip; lost: no link. */
export type UnitStatus = 'available' | 'tripped' | 'lost';

/** What of the sensor view the law uses (a full `GroupSensorView` fits). */
export type ControlView = Pick<GroupSensorView, 'verdict' | 'inletMaxC' | 'hottestRack' | 'dewPointC'>;

export interface UnitInput {
  id: string;
  status: UnitStatus;
  /** Last values read from the unit (what it runs now), if any. */
  read: UnitCommand | null;
  /**
   * The unit's measured return and supply air, °C, when it reports them: their difference across
   * the running units is the load the coils see, which moves with IT heat at once, before the rack
   * inlets do (`coilLoad` feed-forward).
   */
  air?: { returnC: number; supplyC: number } | null;
}

/** An operator's manual command for one unit; stored by the driver (etcd), applied every step. */
export interface UnitOverride {
  fanPct?: number;
  supplySetpointC?: number;
  /** Hand the unit to its local control: no command is sent, the driver releases it. */
  toLocal?: boolean;
}

export interface GroupControlInputs {
  view: ControlView;
  units: readonly UnitInput[];
  /** Seconds since the previous step (the loop period); clamped to (0, 5] for rates and integration. */
  dtS: number;
  overrides?: Readonly<Record<string, UnitOverride>>;
  /** Maintenance pause: no commands, every unit released to local control. */
  paused?: boolean;
  /**
   * The largest call for air among neighbouring groups (`neighbourGroups`) that this group answers
   * (`answeredHelpK` of their broadcast `state.helpK`): a neighbour that runs out of fan asks this
   * group for air. 0 if none.
   */
  neighbourHelpK?: number;
  /** Influence for allocation this step (the learner's blend with the prior); absent: `cfg.influence`. */
  influence?: InfluenceMatrix;
  /**
   * The influence learner's perturbation of supply setpoints, K per unit (`ditherGate` decides
   * when): added to the group's setpoint for that unit in normal mode, never while an inlet is at
   * alarm or on a manual setpoint, kept inside the reset's range; the safety layer ramps and clips
   * it as any command.
   */
  ditherK?: Readonly<Record<string, number>>;
}

/** What does not change between steps: built from the site and tuning at (re)load. */
export interface GroupControlConfig {
  group: string;
  ahus: readonly string[];
  tuning: ControlTuning;
  influence: InfluenceMatrix;
  /** Each unit's local fallback (fan %, setpoint): where blind mode sends the setpoints. */
  local: Readonly<Record<string, UnitCommand>>;
  /** Dew point assumed when the view has none (the site's supply-air dew point). */
  dewPointFallbackC: number;
}

/** The group's process state: JSON, small, enough for a new leader to continue without a bump. */
export interface GroupControlState {
  v: 1;
  /** Group fan demand of the PI, % (units run at demand + offset). */
  demandPct: number;
  integralPct: number;
  /** Group supply-air setpoint chosen by the reset, °C. */
  setpointC: number;
  offsets: Record<string, number>;
  /**
   * Last command that left the law per unit, before its rounding onto the units' grid (or where a
   * released unit was seen): the rate limits count from it.
   */
  last: Record<string, UnitCommand>;
  resetClockS: number;
  /** Units running at the last step (for the lost-unit feedforward). */
  running: number;
  mode: ControlMode;
  /** Back-calculate integral, demand and offsets from `last` at the next step. */
  track: boolean;
  /**
   * How much this group needs its neighbours' air, K (0 = none): grows from 0 as its demand rises
   * from `fanHighPct` to `maxPct`, and with its inlet error. Neighbours control to it.
   */
  helpK: number;
  /**
   * The part of `helpK` asked because units are down (absent in older rows): neighbours answer it
   * whatever their own demand (`answeredHelpK`).
   */
  helpDownK?: number;
  /** `neighbourHelpK` at the last step, to see it jump (absent in older rows: 0). */
  helpInK?: number;
  /** The hottest inlet over the last hour, for the ASHRAE rate-of-change hold (absent in older rows). */
  inletHist?: InletHistory;
  /** The running units' mean return − supply air, filtered (`coilLoad`), K; absent until seen. */
  coilRiseK?: number;
}

export interface GroupControlOutput {
  /** Commands to write now, per unit under remote control. */
  commands: Record<string, UnitCommand>;
  /** Units to hand to local control (paused group, or an operator's to-local). */
  release: string[];
  state: GroupControlState;
  mode: ControlMode;
  /** Short, stable phrases on why this step differs from plain PI (for logs and the API). */
  reasons: string[];
}

export interface GroupControlConfigOptions {
  tuning?: ControlTuningInput;
  /** The group's `influence` from the site config; absent, from geometry. */
  influence?: InfluenceRecords;
}

export function groupControlConfig(
  site: Site,
  groupId: string,
  opts: GroupControlConfigOptions = {},
): GroupControlConfig {
  const group = site.controlGroups.find((g) => g.id === groupId);
  if (!group) throw new RangeError(`unknown control group "${groupId}"`);
  const local: Record<string, UnitCommand> = {};
  for (const id of group.airHandlers) {
    const a = site.airHandlers.find((x) => x.id === id);
    local[id] = { fanPct: a?.localFanPct ?? 100, supplySetpointC: a?.localSetpointC ?? 18 };
  }
  return {
    group: groupId,
    ahus: [...group.airHandlers],
    tuning: resolveTuning(opts.tuning),
    influence: opts.influence
      ? influenceFromRecords(opts.influence)
      : influenceFromGeometry(site, group.airHandlers, INFLUENCE_LENGTH_M, groupRacks(site, groupId)),
    local,
    dewPointFallbackC: site.site.supplyAirDewPointC ?? 10,
  };
}

/**
 * A state that resumes from the last commands alone (the driver's `{v:1, commands}` row, or the
 * units' read-back): the first step back-calculates everything else from them.
 */
export function resumeState(commands: Readonly<Record<string, UnitCommand>>): GroupControlState {
  const last: Record<string, UnitCommand> = {};
  for (const [k, c] of Object.entries(commands)) {
    const cmd = commandOf(c);
    if (cmd) last[k] = cmd;
  }
  const cs = Object.values(last);
  return {
    v: 1,
    demandPct: mean(cs.map((c) => c.fanPct)) ?? 100,
    integralPct: 0,
    setpointC: mean(cs.map((c) => c.supplySetpointC)) ?? 18,
    offsets: {},
    last,
    resetClockS: 0,
    running: 0,
    mode: 'normal',
    track: true,
    helpK: 0,
  };
}

/**
 * A state from the cache is used only if it has this shape and its values lie where the law keeps
 * them (a peer's row may be damaged or of another build); anything else starts from the units.
 */
export function isGroupControlState(x: unknown): x is GroupControlState {
  const s = x as GroupControlState;
  const atLeast0 = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v >= 0;
  return (
    !!s &&
    s.v === 1 &&
    [s.demandPct, s.integralPct, s.setpointC, s.resetClockS, s.running, s.helpK].every(Number.isFinite) &&
    inRange(s.demandPct, FAN_RANGE_PCT) &&
    inRange(s.setpointC, SUPPLY_SETPOINT_RANGE_C) &&
    [s.resetClockS, s.running, s.helpK].every(atLeast0) &&
    CONTROL_MODES.includes(s.mode) &&
    typeof s.track === 'boolean' &&
    typeof s.last === 'object' &&
    s.last !== null &&
    typeof s.offsets === 'object' &&
    s.offsets !== null &&
    Object.values(s.last).every(
      (c) => inRange(c?.fanPct, FAN_RANGE_PCT) && inRange(c?.supplySetpointC, SUPPLY_SETPOINT_RANGE_C),
    ) &&
    Object.values(s.offsets).every((o) => Number.isFinite(o) && Math.abs(o) <= FAN_RANGE_PCT.max) &&
    (s.helpInK === undefined || atLeast0(s.helpInK)) &&
    (s.helpDownK === undefined || atLeast0(s.helpDownK)) &&
    (s.coilRiseK === undefined || Number.isFinite(s.coilRiseK)) &&
    (s.inletHist === undefined || isInletHistory(s.inletHist))
  );
}

/** One decision. `state` null: a cold start from what the units run now. */
export function stepGroup(
  cfg: GroupControlConfig,
  inp: GroupControlInputs,
  prev: GroupControlState | null,
): GroupControlOutput {
  const t = cfg.tuning;
  const dt = clamp(Number.isFinite(inp.dtS) ? inp.dtS : 0, 0, 5);
  const reasons: string[] = [];
  const units = new Map(inp.units.map((u) => [u.id, u]));
  // An inlet that is not air (NaN, ±Infinity, a probe's fault code) is no reading: the group is blind.
  const inlet = inRange(inp.view.inletMaxC ?? Number.NaN, AIR_TEMP_RANGE_C) ? inp.view.inletMaxC : null;
  const s: GroupControlState = prev
    ? { ...prev, offsets: { ...prev.offsets }, last: { ...prev.last } }
    : resumeState(readCommands(cfg, units));
  for (const a of cfg.ahus) s.last[a] ??= readOf(units.get(a)) ?? cfg.local[a]!;
  for (const k of Object.keys(s.last)) if (!cfg.ahus.includes(k)) delete s.last[k];
  if (s.mode === 'paused' && !inp.paused) {
    // Back from a pause: the units ran on local control; continue from what they run now.
    for (const a of cfg.ahus) s.last[a] = readOf(units.get(a)) ?? cfg.local[a]!;
    s.track = true;
  }

  if (inp.paused) {
    // Units run on local control; remember where they are so that resuming starts from there.
    for (const a of cfg.ahus) s.last[a] = readOf(units.get(a)) ?? cfg.local[a]!;
    s.track = true;
    s.mode = 'paused';
    // The inlet history goes on (ASHRAE's windows are wall time): a resume judges the rate of
    // change on what the inlets did meanwhile, not on what they did before the pause.
    const inletC = inlet;
    s.inletHist = recordInlet(s.inletHist ?? emptyInletHistory(), inletC, dt);
    const pausedReasons = ['group paused'];
    // Nobody in the cluster acts on a paused group: the operator must hear that its inlets are hot
    // (a stable phrase: the driver logs a line when the reasons change).
    if (inletC !== null && inletC >= t.alarmInletC)
      pausedReasons.push(
        'inlet at alarm while paused: the units run on their local control; resume the group to let the controller act',
      );
    return { commands: {}, release: [...cfg.ahus], state: s, mode: 'paused', reasons: pausedReasons };
  }

  // Roles of the units this step.
  const release: string[] = [];
  const auto: string[] = [];
  let running = 0;
  for (const a of cfg.ahus) {
    const u = units.get(a);
    const ov = inp.overrides?.[a];
    const available = u?.status === 'available';
    if (available) running++;
    if (ov?.toLocal) {
      release.push(a);
      reasons.push(`${a} on local control by operator`);
      continue;
    }
    if (!available) reasons.push(`${a} ${u?.status ?? 'lost'}: others compensate`);
    else if (ov?.fanPct !== undefined) reasons.push(`${a} manual fan ${ov.fanPct} %`);
    else auto.push(a);
  }

  const verdict = inlet === null ? 'blind' : inp.view.verdict;
  const mode: ControlMode = verdict === 'blind' ? 'blind' : verdict === 'degraded' ? 'degraded' : 'normal';
  if (mode !== 'normal')
    reasons.push(
      mode === 'blind' ? 'sensors blind: safe fans, local setpoints' : 'sensors degraded: conservative',
    );
  const target = t.inletTargetC + (mode === 'degraded' ? t.degraded.targetOffsetC : 0);
  const ownErrorK = inlet === null ? 0 : inlet - target;
  // A neighbour short of air counts as heat here: this group's fans rise until the neighbour's
  // demand is back under its high mark (its help is continuous in its demand, so no limit cycle).
  const helpIn = Number.isFinite(inp.neighbourHelpK) ? clamp(inp.neighbourHelpK!, 0, 10) : 0;
  const errorK = helpIn > 0 && helpIn > ownErrorK && mode !== 'blind' ? helpIn : ownErrorK;
  if (errorK > ownErrorK) reasons.push(`helping a neighbour short of air (${helpIn.toFixed(1)} K)`);
  const hot = inlet !== null && inlet >= t.alarmInletC;
  s.inletHist = recordInlet(s.inletHist ?? emptyInletHistory(), inlet, dt);
  const moved = inletRateHold(s.inletHist, inlet, t.inletRate);
  // Cooling is held only while the inlet is at or under target: heat is answered first.
  const rateHold = { ...moved, cooling: moved.cooling && errorK <= 0 };
  // Stable phrases (the driver logs a line when the reasons change), no figures.
  if (rateHold.warming) reasons.push('inlet rising near the ASHRAE rate limit: nothing warms');
  if (rateHold.cooling) reasons.push('inlet falling near the ASHRAE rate limit: nothing cools');
  if (hot) reasons.push(`inlet ${inlet.toFixed(1)} °C at alarm: nothing slows or warms`);

  const prevRunning = s.running;
  const tracked = s.track;
  if (s.track || (s.mode === 'blind') !== (mode === 'blind')) {
    // Resume (or leave/enter blind) from what the units were last told: demand is their mean,
    // offsets their spread, the integral whatever makes P + I equal that demand now.
    const base = auto.length > 0 ? auto : cfg.ahus;
    const d = mean(base.map((a) => s.last[a]!.fanPct)) ?? s.demandPct;
    if (s.track) {
      s.setpointC = mean(base.map((a) => s.last[a]!.supplySetpointC)) ?? s.setpointC;
      for (const a of base) s.offsets[a] = s.last[a]!.fanPct - d;
      s.running = running;
    }
    s.demandPct = d;
    s.integralPct = trackIntegral(d, errorK, t.fan.kpPctPerK);
    s.track = false;
  }

  // A unit lost or tripped: the others take over its airflow at once (then PI trims).
  if (running > 0 && running < s.running && mode !== 'blind') {
    // Demand jumps (the safety layer still ramps each unit's command at its up-rate).
    feedForward(s, (s.demandPct * s.running) / running, t.fan.maxPct);
    reasons.push(`units running ${s.running} → ${running}: demand feed-forward`);
  }
  s.running = running;
  // A neighbour's help that jumps is a unit down next door: its racks lose that air now, long
  // before their inlets (or this group's return air) show it. Answer with airflow at once.
  const helpStep = helpIn - (s.helpInK ?? 0);
  if (helpStep >= HELP_STEP_K && mode !== 'blind' && t.help.feedForwardPctPerK > 0) {
    feedForward(s, s.demandPct + t.help.feedForwardPctPerK * helpStep, t.fan.maxPct);
    reasons.push('neighbour lost air: demand feed-forward');
  }
  s.helpInK = helpIn;
  // More IT heat shows in the return air at once and in the racks' inlets only after their mixing
  // lag (and the next sensor report): a jump of the coils' air temperature rise over its filtered
  // value is answered with that share more airflow now (airflow ∝ heat at a given rise); the PI
  // trims after. Only a rise: a fall is left to the PI, which slows fans at its own gentle rate.
  const coilK = coilRise(units);
  const unitsChanged = running !== prevRunning;
  if (coilK === null || mode === 'blind') {
    // Nothing to compare with: keep the filter where it was.
  } else if (s.coilRiseK === undefined || !(s.coilRiseK > 0.5) || unitsChanged || tracked) {
    // A unit that stopped or started moves every other unit's rise: that is the running-units
    // feed-forward's event, not a load step; start the filter again from here.
    s.coilRiseK = coilK;
  } else {
    const rise = coilK / s.coilRiseK - 1;
    const gain = t.coilLoad.feedForwardGain;
    if (gain > 0 && rise > t.coilLoad.riseFraction) {
      feedForward(s, s.demandPct * (1 + gain * rise), t.fan.maxPct);
      s.coilRiseK = coilK;
      reasons.push('coil load rose: demand feed-forward');
    } else {
      s.coilRiseK += (coilK - s.coilRiseK) * Math.min(1, dt / t.coilLoad.filterS);
    }
  }

  const floorPct = mode === 'degraded' ? t.degraded.minFanPct : t.fan.minPct;
  let demand: number;
  if (mode === 'blind') {
    demand = clamp(
      t.blindFanPct,
      s.demandPct - t.fan.rampDownPctPerS * dt,
      s.demandPct + t.fan.rampUpPctPerS * dt,
    );
    s.integralPct = trackIntegral(demand, errorK, t.fan.kpPctPerK);
  } else {
    const r = piStep(errorK, dt, s.demandPct, s.integralPct, {
      kp: t.fan.kpPctPerK,
      ki: t.fan.kiPctPerKS,
      loPct: floorPct,
      hiPct: t.fan.maxPct,
      upPctPerS: t.fan.rampUpPctPerS,
      downPctPerS: t.fan.rampDownPctPerS,
    });
    demand = r.outputPct;
    s.integralPct = r.integralPct;
  }
  if (rateHold.warming && demand < s.demandPct && mode !== 'blind') {
    // The commands are held; so is the demand, or it would wind down behind them.
    demand = s.demandPct;
    s.integralPct = trackIntegral(demand, errorK, t.fan.kpPctPerK);
  }
  s.demandPct = demand;

  // A dew point that is not a number is none; one so high that no setpoint clears it asks for the
  // warmest the units take (the group's setpoint stays inside their range).
  const dewC = Number.isFinite(inp.view.dewPointC) ? inp.view.dewPointC! : cfg.dewPointFallbackC;
  const floorC = clamp(dewC + t.setpoint.dewPointMarginC, SAFETY.setpointMinC, SAFETY.setpointMaxC);
  if (mode !== 'blind') {
    const r = resetSetpoint(
      s.setpointC,
      s.resetClockS,
      dt,
      {
        demandPct: demand,
        errorK: ownErrorK,
        fanMaxPct: t.fan.maxPct,
        mayRaise: mode === 'normal' && !hot && errorK === ownErrorK && !rateHold.warming,
        lowC: Math.max(t.setpoint.minC, floorC),
        highC: Math.min(t.setpoint.maxC, SAFETY.setpointMaxC),
      },
      t.setpoint,
    );
    if (r.action)
      reasons.push(
        r.action === 'respond' ? 'fans saturated: setpoint lowered' : 'fans idle: setpoint raised',
      );
    s.setpointC = r.setpointC;
    s.resetClockS = r.clockS;
  } else {
    s.resetClockS = 0;
  }

  // Offsets fade out as demand nears either end of the fan range: at full demand every unit runs full.
  const room =
    Math.min(t.fan.maxPct - demand, demand - t.fan.minPct) / Math.max(1, t.allocation.maxOffsetPct);
  const alloc = { ...t.allocation, maxOffsetPct: t.allocation.maxOffsetPct * clamp(room, 0, 1) };
  const target0 =
    mode === 'blind'
      ? zeros(auto)
      : targetOffsets(auto, inp.influence ?? cfg.influence, inp.view.hottestRack, demand, alloc);
  const slewed = slewOffsets(s.offsets, target0, t.allocation.slewPctPerS * dt);
  s.offsets = slewed;

  const lim: SafetyLimits = {
    fanMinPct: t.hardMinFanPct,
    setpointFloorC: floorC,
    fanUpPctPerS: t.fan.rampUpPctPerS,
    fanDownPctPerS: t.fan.rampDownPctPerS,
    setpointRateCPerS: t.setpoint.rateCPerS,
  };
  const commands: Record<string, UnitCommand> = {};
  const clippedUnits: string[] = [];
  for (const a of cfg.ahus) {
    if (release.includes(a)) {
      s.last[a] = readOf(units.get(a)) ?? cfg.local[a]!;
      continue;
    }
    const ov = inp.overrides?.[a];
    const groupSp = mode === 'blind' ? cfg.local[a]!.supplySetpointC : s.setpointC;
    const d = mode === 'normal' && !hot ? (inp.ditherK?.[a] ?? 0) : 0;
    const dither = Number.isFinite(d) ? clamp(d, -MAX_DITHER_K, MAX_DITHER_K) : 0;
    const law: UnitCommand = {
      fanPct: clamp(demand + (slewed[a] ?? 0), Math.min(demand, floorPct), t.fan.maxPct),
      supplySetpointC:
        dither === 0
          ? groupSp
          : clamp(
              groupSp + dither,
              // Never colder than the law's preferred minimum (rack bottoms under 18 °C), unless it is already.
              Math.min(groupSp, Math.max(t.setpoint.preferredMinC, floorC)),
              Math.max(groupSp, Math.min(t.setpoint.maxC, SAFETY.setpointMaxC)),
            ),
    };
    const manual = ov?.fanPct !== undefined || ov?.supplySetpointC !== undefined;
    const wanted: UnitCommand = {
      fanPct: ov?.fanPct ?? law.fanPct,
      supplySetpointC: ov?.supplySetpointC ?? law.supplySetpointC,
    };
    // An override is the operator's change: no rate limit, no cooling hold. But it may not warm a
    // room whose inlet is at alarm or rising near the ASHRAE rate limit: then it cools at least as
    // much as the law would, and no less than the last command (an override may always cool more).
    const holdWarming = manual && (hot || rateHold.warming);
    if (holdWarming) {
      wanted.fanPct = Math.max(wanted.fanPct, law.fanPct);
      wanted.supplySetpointC = Math.min(wanted.supplySetpointC, law.supplySetpointC);
    }
    const res = enforceSafety(
      wanted,
      s.last[a]!,
      { ...lim, fanMinPct: fanFloorPct(t, a) },
      manual
        ? {
            dtS: dt,
            hot,
            rateLimit: false,
            ...(rateHold.warming ? { inletRate: { ...rateHold, cooling: false } } : {}),
          }
        : { dtS: dt, hot, rateLimit: true, inletRate: rateHold },
    );
    const held =
      (ov?.fanPct !== undefined && wanted.fanPct > ov.fanPct) ||
      (ov?.supplySetpointC !== undefined && wanted.supplySetpointC < ov.supplySetpointC) ||
      res.clipped.some((c) => c === 'hot-hold' || c === 'rate-hold');
    if (holdWarming && held)
      reasons.push(
        `${a} override held: ${hot ? 'inlet at alarm' : 'inlet rising near the ASHRAE rate limit'}, it may cool but not warm`,
      );
    if (res.clipped.some((c) => c !== 'fan-rate' && c !== 'setpoint-rate')) clippedUnits.push(a);
    commands[a] = res.command;
    // Unrounded: a ramp slower than the grid per step still moves (SafetyResult.exact).
    s.last[a] = res.exact;
  }
  if (clippedUnits.length > 0) reasons.push(`${SAFETY_LIMITED}${clippedUnits.join(', ')}`);
  s.mode = mode;
  const over = (demand - t.help.startPct) / Math.max(1, t.fan.maxPct - t.help.startPct);
  // A unit down is a call for help at once, before the inlets show it.
  const down = cfg.ahus.length > 0 ? (cfg.ahus.length - running) / cfg.ahus.length : 0;
  const downK = mode === 'blind' ? 0 : round2(down * t.help.lostUnitK);
  s.helpK =
    mode === 'blind'
      ? 0
      : Math.max(round2(clamp(over, 0, 1) * Math.max(0, ownErrorK + HELP_MARGIN_K)), downK);
  s.helpDownK = downK;
  return { commands, release, state: s, mode, reasons };
}

/**
 * A feed-forward: the demand goes to `toPct` (at most `maxPct`) at once, and the integral with it,
 * so the PI continues from there instead of winding back to where it was.
 */
function feedForward(s: GroupControlState, toPct: number, maxPct: number): void {
  const boosted = Math.min(maxPct, toPct);
  s.integralPct += boosted - s.demandPct;
  s.demandPct = boosted;
}

/** No coil in a hall warms its air by more than this; a larger return − supply is a broken probe, K. */
const COIL_RISE_MAX_K = 25;

/**
 * The mean return − supply air of the available units that report both as air (in
 * `AIR_TEMP_RANGE_C`, a rise ≤ `COIL_RISE_MAX_K`), K; null if none does. A probe that reads
 * nonsense is left out, so it can neither feed forward nor drag the filter away.
 */
function coilRise(units: ReadonlyMap<string, UnitInput>): number | null {
  let sum = 0;
  let n = 0;
  for (const u of units.values()) {
    if (u.status !== 'available' || !u.air) continue;
    const { returnC, supplyC } = u.air;
    if (!inRange(returnC, AIR_TEMP_RANGE_C) || !inRange(supplyC, AIR_TEMP_RANGE_C)) continue;
    const k = returnC - supplyC;
    if (k > COIL_RISE_MAX_K) continue;
    sum += Math.max(0, k);
    n++;
  }
  return n > 0 ? sum / n : null;
}

function readCommands(cfg: GroupControlConfig, units: Map<string, UnitInput>): Record<string, UnitCommand> {
  const out: Record<string, UnitCommand> = {};
  for (const a of cfg.ahus) out[a] = readOf(units.get(a)) ?? cfg.local[a]!;
  return out;
}

/** What a unit reports it runs, as a command it could have been told; null when it says no number. */
function readOf(u: UnitInput | undefined): UnitCommand | null {
  return u?.read ? commandOf(u.read) : null;
}

/**
 * A command of finite numbers, put inside the contract's ranges (what a unit can run); null if
 * either is not a number. A unit's read-back or a row's `last` is continued from this, never NaN.
 */
function commandOf(c: Partial<UnitCommand> | null | undefined): UnitCommand | null {
  const fan = c?.fanPct;
  const sp = c?.supplySetpointC;
  if (typeof fan !== 'number' || typeof sp !== 'number' || !Number.isFinite(fan) || !Number.isFinite(sp))
    return null;
  return {
    fanPct: clamp(fan, FAN_RANGE_PCT.min, FAN_RANGE_PCT.max),
    supplySetpointC: clamp(sp, SUPPLY_SETPOINT_RANGE_C.min, SUPPLY_SETPOINT_RANGE_C.max),
  };
}

function zeros(keys: readonly string[]): Record<string, number> {
  return Object.fromEntries(keys.map((k) => [k, 0]));
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

function mean(xs: readonly number[]): number | undefined {
  return xs.length > 0 ? xs.reduce((a, b) => a + b, 0) / xs.length : undefined;
}
