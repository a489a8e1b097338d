// Each unit's `profile:` against the protocol the unit speaks, when the site file loads: a unit
// whose profile has no section for its protocol (a Modbus-only profile on an opc.tcp endpoint, or
// an OPC-UA-only one on a Modbus unit) is refused with the line of its `profile:`, before anything
// connects or serves. A profile that cannot be read or is invalid is left to those that load it
// (the controller config's lease rule, createDevice, the simulator): each names the file and why.
import { join } from 'node:path';
import { DEFAULT_PROFILES_DIR } from '../devices/create-device.ts';
import { loadProfile } from '../devices/profile/load.ts';
import { NATIVE_PROFILE, type Site } from './site-schema.ts';

export interface SiteProblem {
  path: string;
  message: string;
  allowed: string;
}

export async function unitProfileProblems(
  site: Site,
  profilesDir: string = DEFAULT_PROFILES_DIR,
): Promise<SiteProblem[]> {
  const protocolsOf = new Map<string, Promise<readonly string[] | undefined>>();
  const problems: SiteProblem[] = [];
  for (const [i, a] of site.airHandlers.entries()) {
    const name = a.profile ?? NATIVE_PROFILE;
    if (name === NATIVE_PROFILE) continue;
    let protocols = protocolsOf.get(name);
    if (!protocols) {
      protocols = loadProfile(join(profilesDir, `${name}.yaml`)).then(
        (p) => (Array.isArray(p.protocol) ? p.protocol : [p.protocol]),
        () => undefined,
      );
      protocolsOf.set(name, protocols);
    }
    const has = await protocols;
    const wanted = a.protocol === 'opcua' ? 'opcua' : 'modbus';
    if (!has || has.includes(wanted)) continue;
    problems.push({
      path: `/airHandlers/${i}/profile`,
      message: `air handler "${a.id}" speaks ${a.protocol}, but profile "${name}" is for ${has.join(' and ')} only (it has no ${wanted} section)`,
      allowed: `a profile whose protocol lists ${wanted}, or protocol ${wanted === 'opcua' ? 'modbus-tcp or modbus-rtu if the unit speaks Modbus' : 'opcua if the unit speaks OPC-UA'}`,
    });
  }
  return problems;
}
