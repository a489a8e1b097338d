// The rows the cache bench writes: a control group's real process state (GroupProcessRow, what the
// group driver broadcasts every period: last commands and the control law's state) for a group of
// 8 air handlers, about 1.5 KB of JSON — and the group names, shared by the writer and the peers.
import type { GroupProcessRow } from '../../src/control/group-driver.ts';
import { resumeState } from '../../src/control/law/group-controller.ts';

export const AHUS_PER_GROUP = 8;

export function groupName(prefix: string, i: number): string {
  return `${prefix}-${String(i).padStart(4, '0')}`;
}

/** A group's process state; `tick` moves the commands the way a control loop would. */
export function processState(group: number, tick: number): GroupProcessRow {
  const commands: GroupProcessRow['commands'] = {};
  for (let u = 0; u < AHUS_PER_GROUP; u++) {
    const wobble = ((tick * 7 + u * 13 + group) % 100) / 100;
    commands[`ahu-r${String(group % 100).padStart(2, '0')}-${String(u + 1).padStart(2, '0')}`] = {
      fanPct: Math.round((55 + 20 * wobble) * 100) / 100,
      supplySetpointC: Math.round((17.5 + 2 * wobble) * 1000) / 1000,
    };
  }
  const control = resumeState(commands);
  for (const a of Object.keys(commands))
    control.offsets[a] = Math.round((commands[a]!.fanPct - 65) * 100) / 100;
  control.integralPct = 12.5 + (tick % 10) / 10;
  control.track = false;
  return { v: 2, kind: 'control', commands, mode: 'normal', control };
}
