// A unit's OPC-UA server allows few sessions, and keeps the session of a client that vanished
// (kill -9, a lost link) until the session's timeout. Found by the chaos soak: three controller
// restarts within a minute filled the simulator's server with dead sessions (60 s timeout) and it
// refused the restarted controller's (BadTooManySessions) long enough that a group went undriven.
// A controller must ask for a session timeout short enough that dead sessions free their slots
// within seconds, and must say clearly what a refusal means. Proven here with a server that
// allows 2 sessions, filled by a child process that is then killed with SIGKILL.
import { type ChildProcess, spawn } from 'node:child_process';
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
import { OPCUA_SESSION_TIMEOUT_MS } from '../../src/devices/opcua/opcua-link.ts';
import { freePort } from '../../src/util/async.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const site = generateSite(demoShape);
const base = site.airHandlers.find((a): a is OpcuaAirHandler => a.protocol === 'opcua')!;
const MAX_SESSIONS = 2;

let root = '';
let server: OpcuaAhuServer;
let url = '';
let child: ChildProcess | undefined;

beforeAll(async () => {
  routeNodeOpcuaLogs(quietLogger);
  root = await mkdtemp(join(tmpdir(), 'coolctl-opcua-slots-'));
  const port = await freePort('127.0.0.1');
  const unit = new SimAirHandler({ ...base, id: 'ahu-slots' }, new Journal(() => 0));
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
  child?.kill('SIGKILL');
  await server?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

/** A controller's device for the unit; with `namespaceUri`, one configured with a namespace the server lacks. */
function device(name: string, namespaceUri?: string): OpcuaDevice {
  return new OpcuaDevice(
    {
      ...base,
      id: 'ahu-slots',
      endpoint: { ...base.endpoint, url },
      client: { timeoutMs: 1_000 },
      ...(namespaceUri
        ? { pointMap: { ...base.pointMap, namespaceUri } as OpcuaAirHandler['pointMap'] }
        : {}),
    },
    { logger: quietLogger, pkiDir: join(root, 'client-pki'), clientName: name },
  );
}

/** A child process that opens MAX_SESSIONS devices to the unit, says so, and then waits to be killed. */
function fillSessions(): Promise<ChildProcess> {
  const mod = new URL('../../src/devices/opcua/opcua-device.ts', import.meta.url).href;
  const unit = {
    ...base,
    id: 'ahu-slots',
    endpoint: { ...base.endpoint, url },
    client: { timeoutMs: 1_000 },
  };
  const script = `
    const { OpcuaDevice } = await import(${JSON.stringify(mod)});
    const unit = ${JSON.stringify(unit)};
    for (let i = 0; i < ${MAX_SESSIONS}; i++) {
      const d = new OpcuaDevice(unit, { pkiDir: ${JSON.stringify(join(root, 'child-pki'))}, clientName: 'doomed-' + i });
      await d.open();
      await d.read();
    }
    console.log('ready');
    setInterval(() => {}, 1000);
  `;
  const p = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  p.stderr!.on('data', (b) => {
    err += String(b);
  });
  return new Promise((resolve, reject) => {
    p.stdout!.on('data', (b) => {
      if (String(b).includes('ready')) resolve(p);
    });
    p.once('exit', (code) =>
      reject(new Error(`child exited ${code} before filling the sessions: ${err.slice(-2000)}`)),
    );
  });
}

// A connect that fails after its session is made (the configured namespace is not on the server)
// is retried with backoff; each failed attempt must give its session back, or a controller's
// retries would lock out everyone else (the unit's BMS, the next leader) until they time out.
// Before the vanished controller's case below: it leaves every slot free.
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
      expect((await right.read()).supplyC).toBeGreaterThan(0);
    } finally {
      await right.close();
    }
  }, 60_000);
});

describe('OPC-UA sessions of a controller that vanished', () => {
  it('free their slots within the session timeout, and a refusal says what it means', async () => {
    expect(OPCUA_SESSION_TIMEOUT_MS).toBeLessThanOrEqual(10_000);
    child = await fillSessions();
    // Full: a newcomer is refused, and says why and what to do.
    const probe = device('probe');
    try {
      const refused = await probe.open().then(
        () => null,
        (e: Error) => e,
      );
      expect(refused?.message).toMatch(/refuses another session \(BadTooManySessions\)/);
      expect(refused?.message).toMatch(/expire after their timeout/);
    } finally {
      await probe.close();
    }

    child.kill('SIGKILL');
    const killedAt = performance.now();
    const next = device('restarted');
    try {
      // The restarted controller gets a session once the dead ones time out: within the timeout
      // plus the server's sweep and one reconnect try, not after node-opcua's usual 60 s.
      const readAt = await waitFor(
        'a session after the dead ones expired',
        async () => {
          try {
            await next.open();
            await next.read();
            return performance.now();
          } catch {
            return null;
          }
        },
        { timeoutMs: OPCUA_SESSION_TIMEOUT_MS + 15_000, intervalMs: 500 },
      );
      expect(readAt - killedAt).toBeGreaterThan(0);
    } finally {
      await next.close();
    }
  }, 90_000);
});
