// The operators' state per group as this node acts on it. From each snapshot: a valid stored value
// is taken; no value means none set; an invalid value (a hand-made put, a bad restore, a value too
// large) never means "not paused" — the last valid state stays in force, and a node that never saw a
// valid one pauses the group (FAILSAFE_OPERATOR_STATE: units to their local control). An invalid
// value is logged at error level once per value, counted, and shown by problem() until it is fixed.

import { setTimeout as delay } from 'node:timers/promises';
import type { Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import { CoolctlError, ErrorCodes } from '../../errors.ts';
import { wireJson } from '../../version.ts';
import {
  FAILSAFE_OPERATOR_STATE,
  NO_OPERATOR_STATE,
  type OperatorProblem,
  type OperatorState,
  operatorKey,
  parseOperatorState,
} from '../operator-state.ts';
import type { ClusterSnapshot } from '../view.ts';
import { etcdCall } from './etcd-client.ts';

export interface OperatorStoreOptions {
  client: Etcd3;
  prefix: string;
  callTimeoutMs: number;
  logger: Logger;
  /** Called once per invalid value seen (group, problem). */
  onInvalid?: (group: string) => void;
}

interface Entry {
  /** What this node acts on. */
  state: OperatorState;
  /** The last valid stored state (undefined: never seen one). */
  lastValid: OperatorState | undefined;
  problem: OperatorProblem | null;
  /** `${modRevision}:${problem}` of the invalid value already reported. */
  reported: string | null;
}

export class OperatorStore {
  private readonly opts: OperatorStoreOptions;
  private readonly entries = new Map<string, Entry>();
  private seenSnapshot = false;

  constructor(opts: OperatorStoreOptions) {
    this.opts = opts;
  }

  /** What this node acts on for `group` (no snapshot yet: none set). */
  state(group: string): OperatorState {
    return this.entries.get(group)?.state ?? NO_OPERATOR_STATE;
  }

  /** Why the stored value is not in force (null: it is, or none is stored). */
  problem(group: string): OperatorProblem | null {
    return this.entries.get(group)?.problem ?? null;
  }

  /** Takes a snapshot in; returns the groups whose state in force changed (not on the first one). */
  apply(snap: ClusterSnapshot, groups: readonly string[]): string[] {
    const changed: string[] = [];
    const first = !this.seenSnapshot;
    this.seenSnapshot = true;
    for (const group of groups) {
      const e = this.entries.get(group) ?? {
        state: NO_OPERATOR_STATE,
        lastValid: undefined,
        problem: null,
        reported: null,
      };
      this.entries.set(group, e);
      const before = e.state;
      const valid = snap.operators.get(group);
      const invalid = snap.operatorsInvalid.get(group);
      if (invalid) {
        const keptLastValid = e.lastValid !== undefined;
        e.state = e.lastValid ?? FAILSAFE_OPERATOR_STATE;
        const tag = `${invalid.modRevision}:${invalid.problem}`;
        e.problem = {
          problem: invalid.problem,
          key: operatorKey(this.opts.prefix, group),
          keptLastValid,
          sinceMs: e.problem?.sinceMs ?? Date.now(),
        };
        if (e.reported !== tag) {
          e.reported = tag;
          this.opts.onInvalid?.(group);
          this.opts.logger.error(
            { group, key: e.problem.key, problem: invalid.problem, keptLastValid, inForce: e.state },
            keptLastValid
              ? 'stored operator state is invalid: keeping the last valid one until it is fixed'
              : 'stored operator state is invalid and no valid one is known: group paused until it is fixed',
          );
        }
      } else {
        e.state = valid ?? NO_OPERATOR_STATE;
        e.lastValid = e.state;
        if (e.problem) this.opts.logger.info({ group }, 'stored operator state is valid again');
        e.problem = null;
        e.reported = null;
      }
      if (!first && JSON.stringify(before) !== JSON.stringify(e.state)) changed.push(group);
    }
    for (const group of this.entries.keys()) if (!groups.includes(group)) this.entries.delete(group);
    return changed;
  }

  /** Compare-and-swap change of the stored state; an invalid stored value is changed from what is in force. */
  update(group: string, change: (cur: OperatorState) => OperatorState): Promise<OperatorState> {
    return updateOperatorState(
      this.opts.client,
      this.opts.prefix,
      group,
      change,
      this.opts.callTimeoutMs,
      this.entries.get(group)?.state ?? FAILSAFE_OPERATOR_STATE,
    );
  }
}

/** Compare-and-swap tries before a change gives up (COOLCTL_E_OPERATOR_STATE_CONTENDED, retryable). */
export const OPERATOR_STATE_ATTEMPTS = 8;
/** The longest random wait before a try after a lost race grows by this much a try, ms. */
const CONTENDED_BACKOFF_STEP_MS = 15;

/**
 * Applies `change` to the group's stored state, compare-and-swap: re-read and retry if someone else
 * changed it in between, after a random wait that grows with each lost race (operators acting on
 * one group through several nodes at once write one key; retrying at once, they collide again).
 * Returns what was stored. A stored value that does not parse is changed from `invalidAs` (what this
 * node acts on for it), never from "nothing set".
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
        .then(client.put(key).value(wireJson(next)))
        .options(o)
        .commit(),
    );
    if (txn.succeeded) return next;
    if (attempt >= OPERATOR_STATE_ATTEMPTS)
      throw new CoolctlError(
        ErrorCodes.OPERATOR_STATE_CONTENDED,
        `operator state of ${group} changed ${attempt} times under us while we wrote it; try again`,
        { retryable: true },
      );
    await delay(Math.random() * CONTENDED_BACKOFF_STEP_MS * attempt);
  }
}
