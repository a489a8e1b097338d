// The rows the cache bench writes: a control group's real process state (GroupProcessState, what the
// group driver broadcasts every period) for a group of 8 air handlers, ~420 bytes of JSON — and the
// group names, shared by the writer and the peers.
import type { GroupProcessState } from '../../src/control/group-driver.ts';

export const AHUS_PER_GROUP = 8;

export function groupName(prefix: string, i: number): string {
  return `${prefix}-${String(i).padStart(4, '0')}`;
}

/** A group's process state; `tick` moves the commands the way a control loop would. */
export function processState(group: number, tick: number): GroupProcessState {
  const commands: GroupProcessState['commands'] = {};
  for (let u = 0; u < AHUS_PER_GROUP; u++) {
    const wobble = ((tick * 7 + u * 13 + group) % 100) / 100;
    commands[`ahu-r${String(group % 100).padStart(2, '0')}-${String(u + 1).padStart(2, '0')}`] = {
      fanPct: Math.round((55 + 20 * wobble) * 100) / 100,
      supplySetpointC: Math.round((17.5 + 2 * wobble) * 1000) / 1000,
    };
  }
  return { v: 1, commands };
}
