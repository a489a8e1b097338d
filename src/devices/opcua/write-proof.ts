// What a native unit's answers around a WriteCommand prove, decided from the values alone (the
// device does the I/O): whether a command may be sent at all, whether the read-back confirms it or
// shows a newer leader (DEVICE_FENCED), and whether a stale-epoch refusal is proven fencing.
import { DeviceError, ErrorCodes } from '../../errors.ts';
import type { AhuCommandSet, AhuModeName } from '../device-io.ts';
import { OPCUA_MODE_NAMES, WRITE_COMMAND_STATUS } from './node-map.ts';

/** Read back after a write: what the unit must show if it took the command. */
export const VERIFY_POINTS = ['epoch', 'heartbeat', 'mode', 'fanCmdPct', 'supplySetpointC'] as const;
export type VerifyPoint = (typeof VERIFY_POINTS)[number];

/** Why `cmd` must not be sent (a refusal, before anything goes out), or undefined. */
export function invalidCommand(cmd: AhuCommandSet): string | undefined {
  if (!Number.isSafeInteger(cmd.epoch) || cmd.epoch < 0) return `epoch ${cmd.epoch} is not an integer ≥ 0`;
  if (!Number.isFinite(cmd.fanPct)) return `fanPct ${cmd.fanPct} is not a number`;
  if (!Number.isFinite(cmd.supplySetpointC)) return `supplySetpointC ${cmd.supplySetpointC} is not a number`;
  if (typeof cmd.remoteEnable !== 'boolean') return 'remoteEnable is not a boolean';
  return undefined;
}

/** Throws unless the read-back `got` shows that the unit took `cmd` with `heartbeat`. */
export function checkReadBack(
  device: string,
  cmd: AhuCommandSet,
  heartbeat: number,
  got: Record<VerifyPoint, number>,
): void {
  const mode = modeName(got.mode);
  if (got.epoch > cmd.epoch) {
    throw new DeviceError(
      ErrorCodes.DEVICE_FENCED,
      device,
      `read-back shows epoch ${got.epoch} above ours (${cmd.epoch}): a newer leader wrote; stop driving it`,
      { retryable: false, unitEpoch: got.epoch },
    );
  }
  const problems: string[] = [];
  if (got.epoch !== cmd.epoch) problems.push(`epoch ${got.epoch} ≠ ${cmd.epoch}`);
  if (got.heartbeat !== heartbeat) problems.push(`heartbeat ${got.heartbeat} ≠ ${heartbeat}`);
  // A tripped unit stores the command but runs nothing: that is the unit's state (read() shows it,
  // as the Modbus read-back of the command block does), not a failed write.
  if (mode === 'tripped') {
    // epoch and heartbeat above are all a tripped unit can confirm
  } else if (cmd.remoteEnable) {
    if (mode !== 'remote') problems.push(`mode ${mode} ≠ remote`);
    if (!near(got.fanCmdPct, cmd.fanPct)) problems.push(`fan command ${got.fanCmdPct} ≠ ${cmd.fanPct} %`);
    if (!near(got.supplySetpointC, cmd.supplySetpointC))
      problems.push(`setpoint ${got.supplySetpointC} ≠ ${cmd.supplySetpointC} °C`);
  } else if (mode !== 'local') {
    problems.push(`mode ${mode} ≠ local`);
  }
  if (problems.length > 0) {
    throw new DeviceError(
      ErrorCodes.DEVICE_VERIFY_MISMATCH,
      device,
      `write accepted but read-back differs: ${problems.join(', ')}`,
      { retryable: false },
    );
  }
}

function staleEpochClaim(epoch: number): string {
  return `write with epoch ${epoch} refused with ${WRITE_COMMAND_STATUS.staleEpoch} (stale epoch)`;
}

/** A stale-epoch refusal whose proof failed: the unit's epoch could not be read back. */
export function staleEpochUnread(
  device: string,
  refusal: DeviceError,
  epoch: number,
  why: string,
): DeviceError {
  return new DeviceError(
    ErrorCodes.DEVICE_BAD_STATUS,
    device,
    `${staleEpochClaim(epoch)}, not proven: the unit's epoch could not be read back (${why})`,
    { cause: refusal, retryable: true, deviceCode: WRITE_COMMAND_STATUS.staleEpoch },
  );
}

/**
 * A stale-epoch refusal judged by the unit's epoch: above ours proves a newer leader (DEVICE_FENCED,
 * carrying that epoch); anything else is an ordinary refusal the caller may try again.
 */
export function staleEpochVerdict(
  device: string,
  refusal: DeviceError,
  epoch: number,
  unitEpoch: number,
): DeviceError {
  if (unitEpoch > epoch) {
    return new DeviceError(
      ErrorCodes.DEVICE_FENCED,
      device,
      `${staleEpochClaim(epoch)}: the unit holds epoch ${unitEpoch}, above ours: a newer leader drives it`,
      { cause: refusal, retryable: false, deviceCode: WRITE_COMMAND_STATUS.staleEpoch, unitEpoch },
    );
  }
  return new DeviceError(
    ErrorCodes.DEVICE_BAD_STATUS,
    device,
    `${staleEpochClaim(epoch)}, not proven: the unit holds epoch ${unitEpoch}, not above ours`,
    { cause: refusal, retryable: true, deviceCode: WRITE_COMMAND_STATUS.staleEpoch },
  );
}

/** The unit's mode code by name (an unknown code is 'unknown'). */
export function modeName(code: number): AhuModeName {
  return OPCUA_MODE_NAMES[code] ?? 'unknown';
}

function near(a: number, b: number): boolean {
  return Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b));
}
