// A controller stopped while its sensor MQTT client is still connecting (the broker accepted the
// TCP connection and has not answered CONNECT: a broker starting, or a black-holed link) stops at
// at once and closes its connection. A graceful end would only send DISCONNECT, which a client
// without a session has no reason to send; before, the connection in flight stayed open until its
// connect timed out (5 s), and kept the stopping process alive that long.
import net from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { MqttSource } from '../../src/sensors/mqtt-source.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const site = generateSite(demoShape);
/** mqtt.js gives up on a CONNECT without CONNACK after this (MqttSource's `connectTimeout`). */
const CONNECT_TIMEOUT_MS = 5_000;

let silent: net.Server | undefined;
const held: net.Socket[] = [];

afterEach(async () => {
  for (const s of held.splice(0)) s.destroy();
  await new Promise<void>((resolve) => (silent ? silent.close(() => resolve()) : resolve()));
  silent = undefined;
});

describe('a sensor MQTT client stopped while it connects', () => {
  it('closes its connection at once, not after the connect in flight times out', async () => {
    const closed: boolean[] = [];
    silent = net.createServer((socket) => {
      const i = held.push(socket) - 1;
      closed[i] = false;
      socket.on('close', () => {
        closed[i] = true;
      });
      socket.resume(); // reads CONNECT, never answers
    });
    await new Promise<void>((resolve) => silent!.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as net.AddressInfo;
    const store = new SensorStore(site, { logger: quietLogger });
    const source = new MqttSource(site, store, {
      url: `mqtt://127.0.0.1:${port}`,
      logger: quietLogger,
      registry: new Registry(),
      stopDeadlineMs: 60_000,
    });
    source.start();
    await waitFor('the client to open its TCP connection', () => held.length === 1);

    await source.stop();
    expect(source.connected).toBe(false);
    // The connect began just before stop(): a client that waited for its timeout would hold the
    // connection (and the stopping process) for most of it.
    await waitFor('the broker to see the connection closed', () => closed[0] === true, {
      timeoutMs: CONNECT_TIMEOUT_MS / 2,
    });
    expect(held).toHaveLength(1); // and no reconnect after stop
  }, 30_000);
});
