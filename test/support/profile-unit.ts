// A simulated vendor-profile air handler for device and simulator tests: the simulator's unit behind
// its Modbus TCP server on a loopback port, serving the named shipped profile through the shared
// codec, with the unit's start-up quirks off unless the test asks for them and its watchdog on a
// wall clock the test moves.
import { join } from 'node:path';
import { DEFAULT_PROFILES_DIR } from '../../firmware-sim/ahu/modbus-devices.ts';
import { ModbusAhuServer } from '../../firmware-sim/ahu/modbus-server.ts';
import { ProfilePdu, type ProfileQuirks } from '../../firmware-sim/ahu/profile-pdu.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import type { Journal } from '../../firmware-sim/journal.ts';
import type { ModbusAirHandler } from '../../src/config/site-schema.ts';
import { type CompiledProfile, compileProfile } from '../../src/devices/profile/codec.ts';
import { loadProfile } from '../../src/devices/profile/load.ts';
import { quietLogger } from '../helpers.ts';

export const NO_QUIRKS: ProfileQuirks = { notReadyMs: 0, noDataMs: 0, firstReadDelayMs: 0 };

export interface ProfileUnit {
  unit: SimAirHandler;
  server: ModbusAhuServer;
  port: number;
  profile: CompiledProfile;
  /** The unit's PDU handler (made when the server starts). */
  pdu: ProfilePdu;
}

/** Starts `config` (its `profile` names the shipped profile) on a free loopback port; `stop()` it via `server`. */
export async function startProfileUnit(
  config: ModbusAirHandler & { profile: string },
  journal: Journal,
  opts: { quirks?: ProfileQuirks; wallNowMs: () => number },
): Promise<ProfileUnit> {
  const raw = await loadProfile(join(DEFAULT_PROFILES_DIR, `${config.profile}.yaml`));
  const profile = compileProfile(raw);
  const unit = new SimAirHandler(config, journal);
  let pdu: ProfilePdu | undefined;
  const server = new ModbusAhuServer(unit, {
    host: '127.0.0.1',
    port: 0,
    unitId: 1,
    logger: quietLogger,
    handler: (counters, log) => {
      pdu = new ProfilePdu(unit, profile, raw, counters, {
        log,
        quirks: opts.quirks ?? NO_QUIRKS,
        wallNowMs: opts.wallNowMs,
      });
      return pdu;
    },
  });
  const { port } = await server.start();
  return { unit, server, port, profile, pdu: pdu as ProfilePdu };
}
