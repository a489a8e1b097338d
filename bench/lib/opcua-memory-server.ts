// Child of bench/opcua-memory.ts: one OPC-UA unit server (test/devices/opcua-unit-server.ts, secure
// endpoints) holding the units named in --units, in a process of its own so that its memory and CPU
// are not the measured client's. Sends the units' air-handler configs (SignAndEncrypt) over IPC once
// it listens; shuts down on SIGTERM or when the parent goes away, so it never outlives the bench.
// Args: --root DIR (its PKI) --units ahu-1,ahu-5,…

import { parseArgs } from 'node:util';
import type { OpcuaAirHandler } from '../../src/config/site-schema.ts';
import { startUnitServer } from '../../test/devices/opcua-unit-server.ts';

export interface UnitServerReady {
  url: string;
  ahus: OpcuaAirHandler[];
}

const SHUTDOWN_DEADLINE_MS = 5_000;

const { values } = parseArgs({
  options: { root: { type: 'string' }, units: { type: 'string' } },
  strict: true,
});
if (!values.root || !values.units) throw new Error('--root DIR and --units IDS are required');
const ids = values.units.split(',').filter(Boolean);
const unitServer = await startUnitServer(values.root, ids, { secure: true });

let stopping = false;
const shutdown = (): void => {
  if (stopping) return;
  stopping = true;
  // node-opcua may hold a socket a little after shutdown(); the deadline ends it either way.
  setTimeout(() => process.exit(0), SHUTDOWN_DEADLINE_MS).unref();
  unitServer.server.shutdown(0).finally(() => process.exit(0));
};
process.on('SIGTERM', shutdown);
process.on('disconnect', shutdown);

const ready: UnitServerReady = {
  url: unitServer.endpointUrl,
  ahus: ids.map((id) => unitServer.ahu(id, { securityMode: 'SignAndEncrypt' })),
};
process.send!(ready);
