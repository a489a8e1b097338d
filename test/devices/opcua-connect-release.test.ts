// A unit whose connect fails after its session is made (the namespace the config names is not on
// the server) is retried with backoff. Each failed attempt must give its session back: a server
// allows few sessions, and slots a controller's retries keep would lock out everyone else (the
// unit's BMS, the next leader) until they time out.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OpcuaAhuServer } from '../../firmware-sim/ahu/opcua-server.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import type { OpcuaAirHandler } from '../../src/config/site-schema.ts';
import { OpcuaDevice, routeNodeOpcuaLogs } from '../../src/devices/opcua/opcua-device.ts';
import { freePort } from '../../src/util/async.ts';
import { quietLogger } from '../helpers.ts';

const site = generateSite(demoShape);
const base = site.airHandlers.find((a): a is OpcuaAirHandler => a.protocol === 'opcua')!;
const MAX_SESSIONS = 2;

let root = '';
let server: OpcuaAhuServer;
let url = '';

beforeAll(async () => {
  routeNodeOpcuaLogs(quietLogger);
  root = await mkdtemp(join(tmpdir(), 'coolctl-opcua-release-'));
  const port = await freePort('127.0.0.1');
  const unit = new SimAirHandler({ ...base, id: 'ahu-release' }, new Journal(() => 0));
  server = new OpcuaAhuServer([unit], {
    host: '127.0.0.1',
    port,
    resourcePath: '/coolctl-sim',
    logger: quietLogger,
    pkiDir: join(root, 'server-pki'),
    maxSessions: MAX_SESSIONS,
  });
  await server.start();
  url = `opc.tcp://127.0.0.1:${port}/coolctl-sim`;
}, 60_000);

afterAll(async () => {
  await server?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

function device(name: string, namespaceUri?: string): OpcuaDevice {
  const unit: OpcuaAirHandler = {
    ...base,
    id: 'ahu-release',
    endpoint: { ...base.endpoint, url },
    client: { timeoutMs: 1_000 },
    ...(namespaceUri ? { pointMap: { ...base.pointMap, namespaceUri } as OpcuaAirHandler['pointMap'] } : {}),
  };
  return new OpcuaDevice(unit, { logger: quietLogger, pkiDir: join(root, 'client-pki'), clientName: name });
}

describe('an OPC-UA connect that fails after its session', () => {
  it('gives the session back each time: a well-configured client still gets one at once', async () => {
    const wrong = device('wrong-namespace', 'urn:not-on-this-server');
    try {
      // More failed attempts than the server has slots.
      for (let i = 0; i < MAX_SESSIONS + 1; i++) {
        const err = await wrong.open().then(
          () => null,
          (e: Error) => e,
        );
        expect(err?.message).toMatch(/namespace urn:not-on-this-server is not on the server/);
      }
    } finally {
      await wrong.close();
    }
    const right = device('right');
    try {
      await right.open();
      const status = await right.read();
      expect(status.supplyC).toBeGreaterThan(0);
    } finally {
      await right.close();
    }
  }, 60_000);
});
