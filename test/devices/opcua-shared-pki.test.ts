// Two secured units share the process's client certificate manager (one per PKI folder: one key
// pair, one lock). node-opcua's client.disconnect() disposes the manager it was given, so one unit
// going away (closed, or its link lost and rebuilt) must not leave the other — or its own next
// connect — with a manager that no longer checks certificates. The server certificate is trusted
// explicitly (no trust on first use), so every connect checks it against trusted/.
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceDeps } from '../../src/devices/device-deps.ts';
import { OpcuaDevice, routeNodeOpcuaLogs } from '../../src/devices/opcua/opcua-device.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { startUnitServer, type UnitServer } from './opcua-unit-server.ts';

const UNITS = ['ahu-pki-a', 'ahu-pki-b'] as const;

let root = '';
let pkiDir = '';
let unitServer: UnitServer;
const devices: OpcuaDevice[] = [];

function device(id: string): OpcuaDevice {
  const deps: DeviceDeps = { logger: quietLogger, pkiDir };
  const d = new OpcuaDevice(unitServer.ahu(id, { securityMode: 'SignAndEncrypt' }), deps);
  devices.push(d);
  return d;
}

const readsGood = (d: OpcuaDevice) =>
  d.read().then(
    (r) => r.quality === 'good',
    () => false,
  );

beforeAll(async () => {
  routeNodeOpcuaLogs(quietLogger);
  root = await mkdtemp(join(tmpdir(), 'coolctl-opcua-pki-'));
  pkiDir = join(root, 'client-pki');
  unitServer = await startUnitServer(root, UNITS, { secure: true });
  const serverCert = unitServer.server.certificateFile;
  await mkdir(join(pkiDir, 'trusted', 'certs'), { recursive: true });
  await copyFile(serverCert, join(pkiDir, 'trusted', 'certs', basename(serverCert)));
}, 90_000);

afterEach(async () => {
  await Promise.all(devices.splice(0).map((d) => d.close()));
});

afterAll(async () => {
  await unitServer?.server.shutdown(0);
  if (root) await rm(root, { recursive: true, force: true });
}, 30_000);

describe('OPC-UA adapter: secured units sharing one client certificate manager', () => {
  it('one unit closing and coming back leaves the other working, and both reconnect after a lost link', async () => {
    const a = device(UNITS[0]);
    const b = device(UNITS[1]);
    await Promise.all([a.open(), b.open()]);
    await waitFor('unit a reads', () => readsGood(a));
    await waitFor('unit b reads', () => readsGood(b));

    // Unit a goes away (its client disconnects) and comes back, twice over.
    for (let round = 0; round < 2; round++) {
      await a.close();
      devices.splice(devices.indexOf(a), 1);
      expect(await readsGood(b)).toBe(true);
      const again = device(UNITS[0]);
      await again.open();
      await waitFor(`unit a reads again (round ${round})`, () => readsGood(again));
      expect(await readsGood(b)).toBe(true);
      if (round === 1) {
        // Both links are cut by the server: each unit throws its connection away and builds a new
        // secured one, checking the server certificate again with the shared manager.
        const downs: string[] = [];
        again.on('link', (e: { to: string }) => e.to === 'down' && downs.push('a'));
        b.on('link', (e: { to: string }) => e.to === 'down' && downs.push('b'));
        for (const endpoint of unitServer.server.endpoints) endpoint.abruptlyInterruptChannels();
        await waitFor('both links lost', () => downs.includes('a') && downs.includes('b'));
        await waitFor('unit a up again', () => again.linkState === 'up' && readsGood(again));
        await waitFor('unit b up again', () => b.linkState === 'up' && readsGood(b));
      }
    }
    // A third unit opened after all this still connects through the same manager.
    const c = device(UNITS[1]);
    await c.open();
    await waitFor('a fresh device reads', () => readsGood(c));
  }, 90_000);
});
