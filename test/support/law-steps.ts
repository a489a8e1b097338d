// Runs the control law's pure step n times at 1 s with the same inputs, as a group settles: the
// tests of the law's parts start from a state that has run, not from a cold start.
import {
  type GroupControlConfig,
  type GroupControlInputs,
  type GroupControlOutput,
  type GroupControlState,
  stepGroup,
} from '../../src/control/law/group-controller.ts';

export function stepsOf(
  cfg: GroupControlConfig,
  n: number,
  inp: Omit<GroupControlInputs, 'dtS'>,
  s: GroupControlState | null,
): GroupControlOutput {
  let out = stepGroup(cfg, { ...inp, dtS: 1 }, s);
  for (let i = 1; i < n; i++) out = stepGroup(cfg, { ...inp, dtS: 1 }, out.state);
  return out;
}
