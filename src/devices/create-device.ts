// The one place that turns an air handler of the site file into a DeviceIo. Loading node-opcua
// costs ~30 MB of RSS under the service's flags (docs/opcua-client.md, "Memory"), so its adapter
// is imported only when the first OPC-UA unit is created; a Modbus-only site never loads it. Control code gets DeviceIo and never imports an adapter.
// A unit with a vendor `profile:` gets the profile-driven adapter; coolctl-native units keep the
// native one, unchanged on the wire.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type AirHandler, NATIVE_PROFILE, unitFencing } from '../config/site-schema.ts';
import { ConfigError, ErrorCodes } from '../errors.ts';
import type { DeviceDeps } from './device-deps.ts';
import type { DeviceIo } from './device-io.ts';
import { ModbusDevice } from './modbus/modbus-device.ts';
import { commandRequestCounts, ProfileModbusDevice } from './modbus/profile-device.ts';
import { opcuaCommandRequests } from './opcua/profile-command.ts';
import { type CompiledProfile, compileProfile } from './profile/codec.ts';
import { loadProfile } from './profile/load.ts';

type OpcuaModule = typeof import('./opcua/opcua-device.ts');
let opcua: Promise<OpcuaModule> | undefined;

/** Where `profile: NAME` is looked up: config/profiles/NAME.yaml of this installation. */
export const DEFAULT_PROFILES_DIR = fileURLToPath(new URL('../../config/profiles/', import.meta.url));

/** Compiled profiles by file and firmware: a site of 1 000 units of one kind compiles it once. */
const compiled = new Map<string, Promise<CompiledProfile>>();

/**
 * The compiled profile of a unit, or undefined for a coolctl-native one (unless it sits behind a
 * fencing gateway). Throws ConfigError
 * (COOLCTL_E_PROFILE_INVALID) naming the unit when the file is missing, invalid, or has no section
 * for the unit's protocol.
 */
export async function unitProfile(
  ahu: AirHandler,
  profilesDir: string = DEFAULT_PROFILES_DIR,
): Promise<CompiledProfile | undefined> {
  const name = (ahu as { profile?: string }).profile ?? NATIVE_PROFILE;
  // A native unit behind a fencing gateway writes through the gateway's window: the profile device
  // does that, with the native map as its profile.
  if (name === NATIVE_PROFILE && (ahu.protocol === 'opcua' || ahu.fencing !== 'gateway')) return undefined;
  const file = join(profilesDir, `${name}.yaml`);
  const firmware = (ahu as { firmware?: string }).firmware;
  const key = `${file}\0${firmware ?? ''}`;
  let p = compiled.get(key);
  if (!p) {
    p = loadProfile(file).then((doc) => compileProfile(doc, firmware === undefined ? {} : { firmware }));
    compiled.set(key, p);
    // A failed load is not cached: the operator fixes the file and reloads.
    p.catch(() => compiled.delete(key));
  }
  const profile = await p;
  const wanted = ahu.protocol === 'opcua' ? 'opcua' : 'modbus';
  if (wanted === 'modbus' ? profile.points.size === 0 : !profile.opcua) {
    throw new ConfigError(
      file,
      [
        {
          file,
          path: `/${wanted}`,
          message: `air handler ${ahu.id} speaks ${ahu.protocol}, but profile ${name} has no ${wanted} points`,
          allowed: `a profile with a ${wanted} section, or another protocol for the unit`,
        },
      ],
      { code: ErrorCodes.PROFILE_INVALID },
    );
  }
  return profile;
}

/**
 * Requests one command to each lease-fenced unit with a vendor profile takes (Modbus: steady state,
 * and the first on a connection; OPC-UA: its method call and one Write), for the lease timing rule;
 * a unit whose profile cannot be loaded is reported as a problem of its `profile` entry. Native
 * units and other kinds: absent.
 */
export async function leaseCommandRequests(
  ahus: readonly AirHandler[],
  profilesDir: string = DEFAULT_PROFILES_DIR,
): Promise<{
  counts: Map<string, { perPeriod: number; first: number }>;
  problems: { index: number; message: string }[];
}> {
  const counts = new Map<string, { perPeriod: number; first: number }>();
  const problems: { index: number; message: string }[] = [];
  for (const [index, ahu] of ahus.entries()) {
    if (unitFencing(ahu) !== 'lease') continue;
    try {
      const profile = await unitProfile(ahu, profilesDir);
      if (profile?.opcua && ahu.protocol === 'opcua') {
        const n = opcuaCommandRequests(profile.opcua, ahu.pointMap?.nodePrefix ?? ahu.id);
        counts.set(ahu.id, { perPeriod: n, first: n });
      } else if (profile) counts.set(ahu.id, commandRequestCounts(profile));
    } catch (err) {
      problems.push({ index, message: (err as Error).message });
    }
  }
  return { counts, problems };
}

export async function createDevice(ahu: AirHandler, deps: DeviceDeps = {}): Promise<DeviceIo> {
  const profile = await unitProfile(ahu, deps.profilesDir);
  if (ahu.protocol !== 'opcua') {
    return profile ? new ProfileModbusDevice(ahu, profile, deps) : new ModbusDevice(ahu, deps);
  }
  opcua ??= import('./opcua/opcua-device.ts').then((m) => {
    // node-opcua writes its warnings as plain text on stdout; route them into our JSON logs once.
    if (deps.logger) m.routeNodeOpcuaLogs(deps.logger);
    return m;
  });
  const { OpcuaDevice } = await opcua;
  return new OpcuaDevice(ahu, deps, profile);
}
