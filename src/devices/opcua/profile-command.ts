// What a vendor profile's OPC-UA section lets a controller command, and in how many requests —
// without node-opcua, so that the config's lease timing rule can ask it (node-opcua costs ~30 MB
// and is loaded only for a site's first OPC-UA unit). The compiled profile says which fields have
// a place to go; no sample value is encoded, so a value a point could not carry never hides a field.
import type { CompiledOpcua } from '../profile/opcua-codec.ts';
import type { ProfileCommand } from '../profile/values.ts';

/** Every command field. */
const FIELDS = [
  'epoch',
  'heartbeat',
  'remoteEnable',
  'run',
  'fanPct',
  'supplySetpointC',
  'watchdogTimerS',
] as const satisfies readonly (keyof ProfileCommand)[];

/** Which command fields the profile takes: a method argument or a writable variable for each. */
export function supportedFields(opcua: CompiledOpcua, _prefix: string): ReadonlySet<keyof ProfileCommand> {
  return new Set(FIELDS.filter((f) => opcua.commandFields.has(f)));
}

/** Requests one command to such a unit takes: its method call, and one Write of its variables. */
export function opcuaCommandRequests(opcua: CompiledOpcua, prefix: string): number {
  const fields = [...supportedFields(opcua, prefix)];
  const inMethod = new Set(opcua.methodArguments);
  return (fields.some((f) => inMethod.has(f)) ? 1 : 0) + (fields.some((f) => !inMethod.has(f)) ? 1 : 0);
}
