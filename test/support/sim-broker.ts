// The simulator's MQTT broker as the suite's secured links run it: a CA and a certificate for
// 127.0.0.1 (what the controllers and the simulated gateways dial), and one required user whose
// password lives in a file (mode 0600). Hall and any test that starts the simulator take it from
// here, as simulator flags (a process) or as the Simulation's `mqttSecurity` (in-process).
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BrokerSecurityFiles } from '../../firmware-sim/mesh/broker.ts';
import { makeCa, makeLeaf } from '../../scripts/lib/throwaway-pki.ts';
import { secureLinks } from './links.ts';

export interface SimBrokerSecurity {
  /** The CA that signed the broker's certificate: a client's `caFile`. */
  caFile: string;
  certFile: string;
  keyFile: string;
  username: string;
  password: string;
  passwordFile: string;
}

/** Makes the broker's material under `dir/mqtt-pki`. */
export async function makeSimBrokerSecurity(
  dir: string,
  username = 'coolctl-hall',
): Promise<SimBrokerSecurity> {
  const pki = join(dir, 'mqtt-pki');
  await mkdir(pki, { recursive: true });
  const ca = await makeCa(pki, 'mqtt-ca');
  const server = await makeLeaf(ca, 'mqtt-broker', { usage: ['serverAuth'] });
  const password = randomBytes(18).toString('base64url');
  const passwordFile = join(pki, 'mqtt-password');
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  return {
    caFile: ca.caFile,
    certFile: server.certFile,
    keyFile: server.keyFile,
    username,
    password,
    passwordFile,
  };
}

/** The suite's mode: the secured broker's material in secure mode, none (a plain broker) in plain. */
export function simBrokerForLinks(dir: string): Promise<SimBrokerSecurity | undefined> {
  return secureLinks() ? makeSimBrokerSecurity(dir) : Promise.resolve(undefined);
}

/** `npm run sim` flags for the secured broker. */
export function simBrokerFlags(s: SimBrokerSecurity): string[] {
  return [
    '--mqtt-cert',
    s.certFile,
    '--mqtt-key',
    s.keyFile,
    '--mqtt-ca',
    s.caFile,
    '--mqtt-username',
    s.username,
    '--mqtt-password-file',
    s.passwordFile,
  ];
}

/** The in-process Simulation's `mqttSecurity` for the secured broker. */
export function simBrokerFiles(s: SimBrokerSecurity): BrokerSecurityFiles {
  return {
    certFile: s.certFile,
    keyFile: s.keyFile,
    caFile: s.caFile,
    username: s.username,
    passwordFile: s.passwordFile,
  };
}

/** A controller config's `sensors.mqtt` for the broker at `url` (mqtts:// when secured). */
export function simBrokerSensors(
  url: string,
  s: SimBrokerSecurity | undefined,
): { mqtt: Record<string, string> } {
  return {
    mqtt: s ? { url, username: s.username, passwordFile: s.passwordFile, caFile: s.caFile } : { url },
  };
}
