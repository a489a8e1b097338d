// What operators decided for a control group, kept in etcd so it survives restarts and failovers
// and reaches whichever node leads: a pause (maintenance — the cluster stops writing and hands the
// units to their local control) and per-unit overrides (fan %, supply setpoint, or to local).
// Key `<prefix>/operator/<group>`, no lease (it outlives every node); written compare-and-swap on
// its mod revision so two operators cannot lose each other's change. A value that does not parse
// never counts as "not paused": the last valid state is kept (operator-store.ts), and with none the
// group is paused (FAILSAFE_OPERATOR_STATE).
import type { Etcd3 } from 'etcd3';
import { etcdCall } from './etcd-client.ts';

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

/** The problem with an override, or null; the ranges are the units' own (0–100 %, 10–30 °C). */
export function overrideProblem(o: UnitOverride): string | null {
  if (o.fanPct !== undefined && !(Number.isFinite(o.fanPct) && o.fanPct >= 0 && o.fanPct <= 100))
    return 'fanPct must be 0…100';
  if (
    o.supplySetpointC !== undefined &&
    !(Number.isFinite(o.supplySetpointC) && o.supplySetpointC >= 10 && o.supplySetpointC <= 30)
  )
    return 'supplySetpointC must be 10…30 °C';
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

/** Parses a stored value, or says what is wrong with it. */
export function checkOperatorState(
  raw: string,
): { ok: true; state: OperatorState } | { ok: false; problem: string } {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return { ok: false, problem: 'not JSON' };
  }
  const o = v as Partial<OperatorState>;
  if (!o || typeof o !== 'object') return { ok: false, problem: 'not a JSON object' };
  if (typeof o.paused !== 'boolean') return { ok: false, problem: '"paused" is not true or false' };
  const overrides: Record<string, UnitOverride> = {};
  if (o.overrides && typeof o.overrides === 'object') {
    for (const [ahu, ov] of Object.entries(o.overrides)) {
      if (ov && typeof ov === 'object' && overrideProblem(ov) === null) overrides[ahu] = ov;
    }
  }
  return {
    ok: true,
    state: {
      paused: o.paused,
      overrides,
      by: typeof o.by === 'string' ? o.by : null,
      atMs: typeof o.atMs === 'number' ? o.atMs : null,
      reason: typeof o.reason === 'string' ? o.reason : null,
    },
  };
}

/**
 * Applies `change` to the group's stored state, compare-and-swap: re-read and retry (3 times) if
 * someone else changed it in between. Returns what was stored. A stored value that does not parse
 * is changed from `invalidAs` (what this node acts on for it), never from "nothing set".
 */
export async function updateOperatorState(
  client: Etcd3,
  prefix: string,
  group: string,
  change: (cur: OperatorState) => OperatorState,
  callTimeoutMs: number,
  invalidAs: OperatorState = FAILSAFE_OPERATOR_STATE,
): Promise<OperatorState> {
  const key = operatorKey(prefix, group);
  for (let attempt = 1; ; attempt++) {
    const res = await etcdCall('operator state read', callTimeoutMs, undefined, (o) =>
      client.get(key).options(o).exec(),
    );
    const kv = res.kvs[0];
    const cur = kv ? (parseOperatorState(kv.value.toString()) ?? invalidAs) : NO_OPERATOR_STATE;
    const next = change(cur);
    const rev = kv ? kv.mod_revision : '0';
    const txn = await etcdCall('operator state write', callTimeoutMs, undefined, (o) =>
      client
        .if(key, 'Mod', '==', rev)
        .then(client.put(key).value(JSON.stringify(next)))
        .options(o)
        .commit(),
    );
    if (txn.succeeded) return next;
    if (attempt >= 3) throw new Error(`operator state of ${group} changed three times under us; try again`);
  }
}
