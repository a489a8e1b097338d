// The OPC-UA client offers small chunks (OPCUA_CHUNK_BYTES) in its Hello, so node-opcua's buffer per
// message sent is 16 KB, not 512 KB; messages larger than a chunk still cross whole, in several
// chunks, up to the 1 MB message bound. A TCP listener reads the Hello; a node-opcua server in this
// process (127.0.0.1 only, SignAndEncrypt) answers a 200 KB NamespaceArray.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { OpcuaDevice, routeNodeOpcuaLogs } from '../../src/devices/opcua/opcua-device.ts';
import { OPCUA_CHUNK_BYTES } from '../../src/devices/opcua/opcua-link.ts';
import { freePort } from '../../src/util/async.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { TEST_AHU_PLANT } from '../support/air-handler.ts';
import { startUnitServer, type UnitServer } from './opcua-unit-server.ts';

const roots: string[] = [];
const devices: OpcuaDevice[] = [];
let unitServer: UnitServer | undefined;
let listener: Server | undefined;
const sockets = new Set<Socket>();

async function tempRoot(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'coolctl-opcua-chunks-'));
  roots.push(root);
  return root;
}

afterEach(async () => {
  await Promise.all(devices.splice(0).map((d) => d.close()));
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise<void>((done) => (listener ? listener.close(() => done()) : done()));
  await unitServer?.server.shutdown(0);
  await Promise.all(roots.map((r) => rm(r, { recursive: true, force: true })));
}, 30_000);

describe('OPC-UA chunk size', () => {
  it('the Hello offers 16 KB chunks both ways and takes messages of at most 1 MB', async () => {
    routeNodeOpcuaLogs(quietLogger);
    const root = await tempRoot();
    const port = await freePort('127.0.0.1');
    let hello: Buffer | undefined;
    listener = createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
      let got = Buffer.alloc(0);
      s.on('data', (b: Buffer) => {
        got = Buffer.concat([got, b]);
        if (!hello && got.length >= 8 && got.length >= got.readUInt32LE(4)) hello = got;
      });
    });
    await new Promise<void>((ok) => listener!.listen(port, '127.0.0.1', ok));
    const d = new OpcuaDevice(
      {
        id: 'ahu-hello',
        ...TEST_AHU_PLANT,
        protocol: 'opcua',
        endpoint: { url: `opc.tcp://127.0.0.1:${port}/hello`, securityMode: 'None' },
        client: { timeoutMs: 1_000, maxApplyDelayMs: 500 },
      },
      { logger: quietLogger, pkiDir: join(root, 'client-pki') },
    );
    devices.push(d);
    void d.open().catch(() => undefined);
    const h = await waitFor('the client Hello', () => hello, { timeoutMs: 10_000 });
    // HEL: type, chunk type, size, protocol version, then the four limits (OPC UA Part 6, 7.1.2.3).
    expect(h.subarray(0, 4).toString()).toBe('HELF');
    expect({
      receiveBufferSize: h.readUInt32LE(12),
      sendBufferSize: h.readUInt32LE(16),
      maxMessageSize: h.readUInt32LE(20),
    }).toEqual({ receiveBufferSize: 16 * 1024, sendBufferSize: 16 * 1024, maxMessageSize: 1024 * 1024 });
    expect(OPCUA_CHUNK_BYTES).toBe(16 * 1024);
  }, 30_000);

  it('an answer of many chunks (a 200 KB NamespaceArray) arrives whole over SignAndEncrypt', async () => {
    const root = await tempRoot();
    unitServer = await startUnitServer(root, ['ahu-chunks'], { secure: true });
    // Registered after ours, so our namespace keeps its index; the array read at connect is ~200 KB.
    unitServer.server.engine.addressSpace!.registerNamespace(`urn:coolctl:test:${'x'.repeat(200_000)}`);
    const d = new OpcuaDevice(unitServer.ahu('ahu-chunks', { securityMode: 'SignAndEncrypt' }), {
      logger: quietLogger,
      pkiDir: join(root, 'client-pki'),
      trustUnknownCertificates: true,
    });
    devices.push(d);
    await d.open();
    const r = await d.read();
    expect(r.supplyC).toBe(18.2);
    expect(d.linkState).toBe('up');
  }, 60_000);
});
