// A test air handler: the plant fields device tests do not vary (one mid-size CRAH in room
// `hall`), and a Modbus TCP unit on loopback built on them. A test adds what it is about —
// endpoint port, client timing, profile, fencing.
import type { ModbusAirHandler } from '../../src/config/site-schema.ts';

export const TEST_AHU_PLANT = {
  room: 'hall',
  xM: 1,
  yM: 1,
  capacityKw: 100,
  maxAirflowM3s: 10,
  fanMaxKw: 5,
  localSetpointC: 18,
  localFanPct: 100,
  watchdogS: 30,
  supplyTauS: 60,
} as const;

/** A Modbus TCP unit `id` at 127.0.0.1:`port` (0 until its server has one), unit id 1. */
export function modbusTestAhu(
  id: string,
  port: number,
  extra: Partial<ModbusAirHandler> = {},
): ModbusAirHandler {
  return {
    id,
    ...TEST_AHU_PLANT,
    protocol: 'modbus-tcp',
    endpoint: { host: '127.0.0.1', port, unitId: 1 },
    ...extra,
  };
}
