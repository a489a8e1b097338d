// What operators decided for a control group, kept in etcd so it survives restarts and failovers
// and reaches whichever node leads: a pause (maintenance — the cluster stops writing and hands the
// units to their local control) and per-unit overrides (fan %, supply setpoint, or to local).
// Key `<prefix>/operator/<group>`, no lease (it outlives every node); written compare-and-swap on
// its mod revision so two operators cannot lose each other's change. A value that does not parse
// never counts as "not paused": the last valid state is kept (operator-store.ts), and with none the
// group is paused (FAILSAFE_OPERATOR_STATE).
import { FAN_RANGE_PCT, inRange, rangeText, SUPPLY_SETPOINT_RANGE_C } from '../unit-contract.ts';
import { clip } from '../util/log-limit.ts';
import { parseWireJson } from '../version.ts';

export interface UnitOverride {
  fanPct?: number;
  supplySetpointC?: number;
  /** Hand this unit to its local control (no remote writes). */
  toLocal?: boolean;
}

export interface OperatorState {
  paused: boolean;
  overrides: Record<string, UnitOverride>;
  /** Who changed it last, and when (ms since the Unix epoch). */
  by: string | null;
  atMs: number | null;
  reason: string | null;
}

export const NO_OPERATOR_STATE: OperatorState = Object.freeze({
  paused: false,
  overrides: Object.freeze({}) as Record<string, UnitOverride>,
  by: null,
  atMs: null,
  reason: null,
}) as OperatorState;

export function operatorKey(prefix: string, group: string): string {
  return `${prefix}/operator/${group}`;
}

/** The problem with an override, or null; the ranges are the device contract's. */
export function overrideProblem(o: UnitOverride): string | null {
  if (o.fanPct !== undefined && !inRange(o.fanPct, FAN_RANGE_PCT))
    return `fanPct must be ${rangeText(FAN_RANGE_PCT)}`;
  if (o.supplySetpointC !== undefined && !inRange(o.supplySetpointC, SUPPLY_SETPOINT_RANGE_C))
    return `supplySetpointC must be ${rangeText(SUPPLY_SETPOINT_RANGE_C)} °C`;
  if (o.toLocal !== undefined && typeof o.toLocal !== 'boolean') return 'toLocal must be true or false';
  if (o.fanPct === undefined && o.supplySetpointC === undefined && !o.toLocal)
    return 'an override needs fanPct, supplySetpointC or toLocal: true';
  return null;
}

/**
 * What a node that finds an invalid stored value and knows no valid one before it does: pause — the
 * units run on their own local control, as when every controller is down (the state the plant is
 * built to survive). "Not paused" could drive units an operator stopped for maintenance.
 */
export const FAILSAFE_OPERATOR_STATE: OperatorState = Object.freeze({
  paused: true,
  overrides: Object.freeze({}) as Record<string, UnitOverride>,
  by: null,
  atMs: null,
  reason: 'the stored operator state is invalid and no valid one is known: paused until it is fixed',
}) as OperatorState;

/** Parses a stored value; null when it is not an operator state. */
export function parseOperatorState(raw: string): OperatorState | null {
  const r = checkOperatorState(raw);
  return r.ok ? r.state : null;
}

/** How many dropped overrides a problem names (the rest are counted): a log line stays a line. */
const DROPPED_NAMED = 5;

/**
 * Parses a stored value, or says what is wrong with it. An override outside the device contract is
 * not in force while the rest of the state is; `dropped` says which and why (empty: none), so the
 * caller can log and count it.
 */
export function checkOperatorState(
  raw: string,
): { ok: true; state: OperatorState; dropped: string[] } | { ok: false; problem: string } {
  const read = parseWireJson(raw);
  if (!read.ok) return { ok: false, problem: read.problem };
  const o = read.value as Partial<OperatorState>;
  if (typeof o.paused !== 'boolean') return { ok: false, problem: '"paused" is not true or false' };
  const kept: [string, UnitOverride][] = [];
  const dropped: string[] = [];
  if (o.overrides !== undefined && o.overrides !== null) {
    if (typeof o.overrides !== 'object' || Array.isArray(o.overrides))
      dropped.push('"overrides" is not an object of unit → override');
    else
      for (const [ahu, ov] of Object.entries(o.overrides as Record<string, unknown>)) {
        const problem =
          ov && typeof ov === 'object' && !Array.isArray(ov)
            ? overrideProblem(ov as UnitOverride)
            : 'an override is an object';
        if (problem === null) kept.push([ahu, ov as UnitOverride]);
        else dropped.push(`${clip(JSON.stringify(ahu), 80)}: ${problem}`);
      }
  }
  return {
    ok: true,
    state: {
      paused: o.paused,
      // fromEntries defines own properties: a unit named "__proto__" cannot become the prototype
      // through which every other unit's lookup would find an override nobody checked.
      overrides: Object.fromEntries(kept),
      by: typeof o.by === 'string' ? o.by : null,
      atMs: typeof o.atMs === 'number' ? o.atMs : null,
      reason: typeof o.reason === 'string' ? o.reason : null,
    },
    dropped:
      dropped.length > DROPPED_NAMED
        ? [...dropped.slice(0, DROPPED_NAMED), `and ${dropped.length - DROPPED_NAMED} more`]
        : dropped,
  };
}

/** Why the stored operator state of a group is not what this node acts on. */
export interface OperatorProblem {
  /** What is wrong with the stored value. */
  problem: string;
  /** The etcd key holding it. */
  key: string;
  /** Whether this node acts on the last valid state it saw (true) or paused for lack of one (false). */
  keptLastValid: boolean;
  /** Since when (ms since the Unix epoch) this node has seen the value invalid. */
  sinceMs: number;
}
