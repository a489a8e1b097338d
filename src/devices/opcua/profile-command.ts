// What a vendor profile's OPC-UA section lets a controller command, and in how many requests —
// without node-opcua, so that the config's lease timing rule can ask it (node-opcua costs ~90 MB
// and is loaded only for a site's first OPC-UA unit).
import { type CompiledOpcua, type ProfileCommand, ProfileValueError } from '../profile/codec.ts';

/** Every command field, with a sample value the codec can encode. */
const SAMPLE: Required<ProfileCommand> = {
  epoch: 1,
  heartbeat: 1,
  remoteEnable: true,
  run: true,
  fanPct: 50,
  supplySetpointC: 20,
  watchdogTimerS: 60,
};

/** Which command fields the profile takes, found by asking its encoder (the one owner of the answer). */
export function supportedFields(opcua: CompiledOpcua, prefix: string): ReadonlySet<keyof ProfileCommand> {
  const fields = new Set(Object.keys(SAMPLE) as (keyof ProfileCommand)[]);
  for (let i = 0; i <= Object.keys(SAMPLE).length; i++) {
    try {
      opcua.encodeCommand(Object.fromEntries([...fields].map((f) => [f, SAMPLE[f]])), prefix);
      return fields;
    } catch (err) {
      if (!(err instanceof ProfileValueError) || !fields.has(err.point as keyof ProfileCommand)) throw err;
      fields.delete(err.point as keyof ProfileCommand);
    }
  }
  return fields;
}

/** Requests one command to such a unit takes: its method call, and one Write of its variables. */
export function opcuaCommandRequests(opcua: CompiledOpcua, prefix: string): number {
  const fields = supportedFields(opcua, prefix);
  const { call, writes } = opcua.encodeCommand(
    Object.fromEntries([...fields].map((f) => [f, SAMPLE[f]])),
    prefix,
  );
  return (call ? 1 : 0) + (writes.length > 0 ? 1 : 0);
}
