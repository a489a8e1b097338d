// The simulated OPC-UA units' channel cap under a client that opens sockets and says nothing, over
// real sockets: node-opcua closes the oldest channel without a session for each newcomer at its cap
// (10 per endpoint); each closing is counted (`channelsDropped`) and logged at most once a second
// through the sim's logger, node-opcua's own line per socket is quieted, and the controller's own
// adapter still gets a session and reads. Before, every closing was two uncounted lines on stdout,
// and newcomers arriving together were refused (15 of 40) with one more line each.
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { OpcuaAhuServer } from '../../firmware-sim/ahu/opcua-server.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import { Simulation } from '../../firmware-sim/simulation.ts';
import type { OpcuaAirHandler } from '../../src/config/site-schema.ts';
import { OpcuaDevice } from '../../src/devices/opcua/opcua-device.ts';
import { freePort } from '../../src/util/async.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const base = generateSite(demoShape).airHandlers.find((a): a is OpcuaAirHandler => a.protocol === 'opcua')!;
/** node-opcua's channels per endpoint (OPCUAServer's maxConnectionsPerEndpoint default). */
const CHANNEL_CAP = 10;
const SILENT = 40;

let root = '';
let server: OpcuaAhuServer;
let port = 0;
const lines: { level: number; msg: string; component?: string }[] = [];
const sockets: Socket[] = [];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'coolctl-opcua-cap-'));
  port = await freePort('127.0.0.1');
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  server = new OpcuaAhuServer([new SimAirHandler({ ...base, id: 'ahu-cap' }, new Journal(() => 0))], {
    host: '127.0.0.1',
    port,
    resourcePath: '/coolctl-sim',
    logger: log,
    pkiDir: join(root, 'server-pki'),
  });
  await server.start();
}, 60_000);

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await server?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

/** A TCP connection that never sends a byte; resolves once connected. */
function silent(): Promise<{ socket: Socket; closed: () => boolean }> {
  const socket = connect(port, '127.0.0.1');
  sockets.push(socket);
  let closed = false;
  socket.on('error', () => undefined);
  socket.once('close', () => {
    closed = true;
  });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve({ socket, closed: () => closed }));
    socket.once('close', () => reject(new Error('closed before it connected')));
  });
}

describe('OPC-UA unit: channel cap under silent sockets', () => {
  it('counts and rate-limits the channels closed at the cap, and still serves the controller', async () => {
    const stdout = vi.spyOn(console, 'log');
    try {
      const held = await Promise.all(Array.from({ length: SILENT }, () => silent()));
      // Every newcomer past the cap closes the oldest channel without a session.
      await waitFor(
        'channels closed at the cap',
        () => held.filter((h) => h.closed()).length >= SILENT - CHANNEL_CAP,
      );
      await waitFor('each closing counted', () => server.counters.channelsDropped >= SILENT - CHANNEL_CAP);
      // Each newcomer took a silent one's slot; none was refused, the ten last still hold theirs.
      expect(server.counters.channelsDropped).toBe(SILENT - CHANNEL_CAP);
      expect(server.counters.connectionsRefused).toBe(0);
      expect(held.filter((h) => h.closed()).length).toBe(SILENT - CHANNEL_CAP);
      const dropLines = lines.filter((l) => l.msg.startsWith('opcua channel closed'));
      expect(dropLines.length).toBeGreaterThanOrEqual(1);
      // One line a second at most: the burst took well under 5 s.
      expect(dropLines.length).toBeLessThanOrEqual(5);
      // node-opcua's own line per socket is neither on stdout nor in the sim's log.
      const capChatter = /DDOS|Forcefully closing|maximum number of connection/;
      expect(stdout.mock.calls.filter((c) => capChatter.test(c.join(' '))).length).toBe(0);
      expect(lines.filter((l) => capChatter.test(l.msg)).length).toBe(0);
    } finally {
      stdout.mockRestore();
    }

    // The survivors still hold every slot; the controller's adapter takes one and reads.
    const device = new OpcuaDevice(
      {
        ...base,
        id: 'ahu-cap',
        endpoint: { ...base.endpoint, url: `opc.tcp://127.0.0.1:${port}/coolctl-sim` },
      },
      { logger: quietLogger, pkiDir: join(root, 'client-pki'), clientName: 'controller' },
    );
    try {
      await device.open();
      const reading = await device.read();
      expect(reading.quality).toBe('good');
    } finally {
      await device.close();
    }
    expect(server.counters.channelsDropped).toBeGreaterThanOrEqual(SILENT - CHANNEL_CAP + 1);
    expect(server.counters.connectionsRefused).toBe(0);
  }, 60_000);
});

describe('OPC-UA channel cap in GET /sim/state', () => {
  it('shows each endpoint’s refusals and dropped channels', async () => {
    const site = generateSite(demoShape);
    const sim = new Simulation({
      site: {
        ...site,
        airHandlers: [{ ...base, id: 'ahu-state' }],
        controlGroups: [],
      },
      seed: 3,
      ephemeralPorts: true,
      logger: quietLogger,
    });
    await sim.start();
    try {
      type Entry = { endpoint: string; ahus: string[]; counters: Record<string, number> };
      const entry = () => (sim.state().opcuaServers as Entry[])[0]!;
      expect(entry()).toMatchObject({
        ahus: ['ahu-state'],
        counters: { channelsDropped: 0, connectionsRefused: 0 },
      });
      const url = new URL(entry().endpoint.replace(/^opc\.tcp:/, 'http:'));
      const socks = await Promise.all(
        Array.from({ length: CHANNEL_CAP + 2 }, () => {
          const s = connect(Number(url.port), url.hostname);
          sockets.push(s);
          s.on('error', () => undefined);
          return new Promise<void>((r) => s.once('connect', () => r()));
        }),
      );
      expect(socks.length).toBe(CHANNEL_CAP + 2);
      await waitFor('two channels dropped in /sim/state', () => entry().counters.channelsDropped === 2);
    } finally {
      await sim.stop();
    }
  }, 60_000);
});
