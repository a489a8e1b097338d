// How a write refused for a stale epoch reads, whatever the protocol: each protocol says it in its
// own words (Modbus exception 0x0D, OPC-UA BadInvalidState), owned by its map; control asks here and
// never names a protocol. The adapter has already judged the refusal: a proven one is
// COOLCTL_E_DEVICE_FENCED, an unproven one keeps the protocol's words as its `deviceCode`.
import { type DeviceError, ErrorCodes } from '../errors.ts';
import { STALE_EPOCH_EXCEPTION } from './modbus/point-map.ts';
import { WRITE_COMMAND_STATUS } from './opcua/node-map.ts';

/**
 * A write refused in its protocol's stale-epoch words (Modbus 0x0D, OPC-UA BadInvalidState) that the
 * adapter's read-back of the unit's epoch did not prove: an ordinary refusal, tried again. A proven
 * one is COOLCTL_E_DEVICE_FENCED instead.
 */
export function isUnprovenStaleEpoch(e: DeviceError): boolean {
  return (
    e.code !== ErrorCodes.DEVICE_FENCED &&
    (e.deviceCode === STALE_EPOCH_EXCEPTION || e.deviceCode === WRITE_COMMAND_STATUS.staleEpoch)
  );
}
