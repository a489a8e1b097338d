// The OPC-UA adapter against the simulator's OPC-UA server over real sockets: reads, fenced writes,
// stale-epoch refusal, watchdog fallback and deliberate re-assertion, link loss and return, the
// sim's faults, certificates, passwords, a bounded connect, close() with calls in flight, metrics,
// and that node-opcua stays unloaded for sites without OPC-UA.
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { OpcuaAhuServer } from '../../firmware-sim/ahu/opcua-server.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import type { OpcuaAirHandler } from '../../src/config/site-schema.ts';
import type { LinkEvent } from '../../src/devices/device-io.ts';
import { DeviceMetrics } from '../../src/devices/metrics.ts';
import { OpcuaDevice, routeNodeOpcuaLogs } from '../../src/devices/opcua/opcua-device.ts';
import { DeviceError, ErrorCodes } from '../../src/errors.ts';
import { freePort } from '../../src/util/async.ts';
import { quietLogger, rejectionOf, waitFor } from '../helpers.ts';

const base = generateSite(demoShape).airHandlers.find((a): a is OpcuaAirHandler => a.protocol === 'opcua')!;
const user = { username: 'operator', password: 'cool-secret' };
const journal = new Journal(() => 0);

/** One unit per concern, so each scenario starts from a unit nobody else has written to. */
function unitConfig(id: string, extra: Partial<OpcuaAirHandler> = {}): OpcuaAirHandler {
  return { ...base, id, ...extra };
}
const configs = {
  reads: unitConfig('ahu-reads'),
  fence: unitConfig('ahu-fence'),
  refusal: unitConfig('ahu-refusal'),
  watchdog: unitConfig('ahu-watchdog', { watchdogS: 0.3 }),
  faults: unitConfig('ahu-faults'),
  security: unitConfig('ahu-security'),
  closing: unitConfig('ahu-closing'),
};
const units = Object.fromEntries(
  Object.entries(configs).map(([k, c]) => [k, new SimAirHandler(c, journal)]),
) as Record<keyof typeof configs, SimAirHandler>;

let root = '';
let serverPki = '';
let server: OpcuaAhuServer;
let endpointUrl = '';
const devices: OpcuaDevice[] = [];
const servers: OpcuaAhuServer[] = [];

function device(
  config: OpcuaAirHandler,
  opts: {
    url?: string;
    endpoint?: Partial<OpcuaAirHandler['endpoint']>;
    timeoutMs?: number;
    pkiDir?: string;
  } = {},
  registry?: Registry,
): OpcuaDevice {
  const d = new OpcuaDevice(
    {
      ...config,
      endpoint: { url: opts.url ?? endpointUrl, securityMode: 'None', ...opts.endpoint },
      client: { timeoutMs: opts.timeoutMs ?? 1_000 },
    },
    {
      logger: quietLogger,
      pkiDir: opts.pkiDir ?? join(root, 'client-pki'),
      clientName: `test-${config.id}`,
      ...(registry ? { metrics: new DeviceMetrics(registry) } : {}),
    },
  );
  devices.push(d);
  return d;
}

function rejection(p: Promise<unknown>): Promise<DeviceError> {
  return rejectionOf(p, DeviceError);
}

/** A fault shows once the subscription's last Good samples are older than the freshness bound. */
function eventually(call: () => Promise<unknown>, timeoutMs = 5_000): Promise<DeviceError> {
  return waitFor(
    'the call to fail',
    () =>
      call().then(
        () => null,
        (err: unknown) => {
          expect(err).toBeInstanceOf(DeviceError);
          return err as DeviceError;
        },
      ),
    { timeoutMs },
  );
}

const entriesFor = (ahu: string, epoch?: number) =>
  journal.since(0).entries.filter((e) => e.ahu === ahu && (epoch === undefined || e.epoch === epoch));
const lastEntry = () => journal.since(journal.lastSeq - 1).entries[0];

function startServer(unitList: SimAirHandler[], port = 0): Promise<{ endpointUrl: string }> {
  const s = new OpcuaAhuServer(unitList, {
    host: '127.0.0.1',
    port,
    resourcePath: '/coolctl-sim',
    logger: quietLogger,
    pkiDir: serverPki,
    users: [user],
  });
  servers.push(s);
  if (unitList.includes(units.reads)) server = s;
  return s.start();
}

beforeAll(async () => {
  routeNodeOpcuaLogs(quietLogger);
  root = await mkdtemp(join(tmpdir(), 'coolctl-opcua-device-'));
  serverPki = join(root, 'server-pki');
  ({ endpointUrl } = await startServer(Object.values(units)));
}, 60_000);

afterEach(async () => {
  await Promise.all(devices.splice(0).map((d) => d.close()));
  for (const u of Object.values(units))
    Object.assign(u.faults, { offline: false, slowMs: 0, badStatus: null });
});

afterAll(async () => {
  for (const s of servers) await s.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('OPC-UA air handler adapter', () => {
  it('reads every point in engineering units with Good quality and recent source timestamps', async () => {
    const d = device(configs.reads);
    const links: LinkEvent[] = [];
    d.on('link', (e: LinkEvent) => links.push(e));
    await d.open();
    expect(d.linkState).toBe('up');
    expect(links).toEqual([expect.objectContaining({ device: 'ahu-reads', from: 'down', to: 'up' })]);
    const r = await d.read();
    expect(r).toMatchObject({
      mode: 'local',
      supplySetpointC: configs.reads.localSetpointC,
      fanPct: configs.reads.localFanPct,
      epoch: 0,
      quality: 'good',
    });
    expect(Math.abs(Date.now() - r.sourceTimeMs)).toBeLessThan(5_000);
    units.reads.updateMeasurements({
      fanPct: 55,
      supplyC: 17.5,
      returnC: 29,
      cwValvePct: 40,
      fanKw: 3.2,
      coolingKw: 80,
    });
    // The subscription brings the new sample; read() returns it from there or from a Read.
    const seen = await waitFor('the new measurements', async () => {
      const x = await d.read();
      return x.supplyC === 17.5 ? x : null;
    });
    expect(seen).toMatchObject({ fanPct: 55, returnC: 29, cwValvePct: 40, fanKw: 3.2, coolingKw: 80 });
    expect(server.counters.getterErrors).toBe(0);
  });

  it('writes a fenced command: the unit goes remote and journals the epoch once', async () => {
    const d = device(configs.fence);
    await d.open();
    await d.writeCommand({ epoch: 5, remoteEnable: true, fanPct: 60, supplySetpointC: 21.5 });
    expect(units.fence.mode).toBe('remote');
    expect(entriesFor('ahu-fence')).toEqual([
      expect.objectContaining({
        epoch: 5,
        accepted: true,
        values: expect.objectContaining({ fanPct: 60, supplySetpointC: 21.5, remoteEnable: true }),
      }),
    ]);
    expect(lastEntry()?.client).toMatch(/^opcua:test-ahu-fence/);
    expect(await d.read()).toMatchObject({ mode: 'remote', epoch: 5, supplySetpointC: 21.5 });
    // Each write carries a new heartbeat.
    await d.writeCommand({ epoch: 5, remoteEnable: true, fanPct: 61, supplySetpointC: 21.5 });
    const [a, b] = entriesFor('ahu-fence').map((e) => e.values.heartbeat);
    expect(b).not.toBe(a);
  });

  it('refuses a stale epoch as DEVICE_FENCED, once, and the unit keeps the newer command', async () => {
    const newer = device(configs.fence);
    const older = device(configs.fence);
    await Promise.all([newer.open(), older.open()]);
    await newer.writeCommand({ epoch: 9, remoteEnable: true, fanPct: 70, supplySetpointC: 20 });
    const err = await rejection(
      older.writeCommand({ epoch: 8, remoteEnable: true, fanPct: 10, supplySetpointC: 25 }),
    );
    expect(err.code).toBe(ErrorCodes.DEVICE_FENCED);
    expect(err.retryable).toBe(false);
    expect(err.deviceCode).toBe('BadInvalidState');
    expect(err.unitEpoch).toBe(9); // the proof: the unit's epoch, read back
    expect(entriesFor('ahu-fence', 8)).toHaveLength(1); // never retried
    expect(units.fence.status()).toMatchObject({ epoch: 9, fanCmdPct: 70, supplySetpointC: 20 });
    expect(older.linkState).toBe('up'); // the unit answered: the link is fine
  });

  it('a BadInvalidState the unit’s epoch does not back is an ordinary, retryable refusal, never DEVICE_FENCED', async () => {
    const d = device(configs.refusal);
    await d.open();
    const cmd = { epoch: 5, remoteEnable: true, fanPct: 40, supplySetpointC: 20 };
    await d.writeCommand(cmd);
    // WriteCommand answers BadInvalidState while the epoch reads fine: 5, not above ours.
    units.refusal.faults.badStatus = 'BadInvalidState';
    units.refusal.faults.faultWritesOnly = true;
    let err = await rejection(d.writeCommand({ ...cmd, fanPct: 45 }));
    expect(err).toMatchObject({
      code: ErrorCodes.DEVICE_BAD_STATUS,
      deviceCode: 'BadInvalidState',
      retryable: true,
      unitEpoch: undefined,
    });
    expect(err.message).toMatch(/not proven: the unit holds epoch 5, not above ours/);
    expect(entriesFor('ahu-refusal', 5).filter((e) => !e.accepted)).toHaveLength(1); // not re-sent
    expect(d.linkState).toBe('up'); // the unit answered
    // Reads answer it too: the epoch cannot be read back, so nothing is proven.
    units.refusal.faults.faultWritesOnly = false;
    err = await rejection(d.writeCommand({ ...cmd, fanPct: 45 }));
    expect(err).toMatchObject({ code: ErrorCodes.DEVICE_BAD_STATUS, retryable: true });
    expect(err.message).toMatch(/not proven: the unit's epoch could not be read back/);
    // Cleared: the same epoch is accepted again.
    units.refusal.faults.badStatus = null;
    await d.writeCommand({ ...cmd, fanPct: 45 });
    expect(units.refusal.status()).toMatchObject({ epoch: 5, fanCmdPct: 45, mode: 'remote' });
  });

  it('checks the lease guard right before the call: when it says no, nothing reaches the unit', async () => {
    const d = device(configs.fence);
    await d.open();
    const before = journal.lastSeq;
    const err = await rejection(
      d.writeCommand(
        { epoch: 30, remoteEnable: true, fanPct: 40, supplySetpointC: 22 },
        { mayWrite: () => false },
      ),
    );
    expect(err.code).toBe(ErrorCodes.NOT_LEADER);
    expect(journal.lastSeq).toBe(before);
  });

  it('opens several devices at once on a fresh PKI folder (one key, made once)', async () => {
    const pkiDir = join(root, 'fresh-pki');
    const ds = [
      device(configs.reads, { pkiDir }),
      device(configs.fence, { pkiDir }),
      device(configs.closing, { pkiDir }),
    ];
    await Promise.all(ds.map((d) => d.open()));
    for (const d of ds) expect(d.linkState).toBe('up');
  });

  it('a tripped unit takes the command (epoch and heartbeat verified) and read() shows the trip', async () => {
    const d = device(configs.fence);
    await d.open();
    units.fence.faults.trip = true;
    try {
      await d.writeCommand({ epoch: 12, remoteEnable: true, fanPct: 60, supplySetpointC: 21 });
      expect(entriesFor('ahu-fence', 12).at(-1)?.accepted).toBe(true);
      await waitFor('read() to show the trip', async () => (await d.read()).mode === 'tripped');
    } finally {
      units.fence.faults.trip = false;
    }
  });

  it('sees the watchdog fallback, refuses a plain write, and takes the unit back only with reassert', async () => {
    const d = device(configs.watchdog);
    const lostEvents: unknown[] = [];
    d.on('remote-lost', (e) => lostEvents.push(e));
    await d.open();
    await d.writeCommand({ epoch: 1, remoteEnable: true, fanPct: 50, supplySetpointC: 20 });
    expect(d.remoteControlLost).toBe(false);
    // Stop writing; the sim's tick would run the watchdog, here the poll does.
    await waitFor('the adapter to see the fallback', () => {
      units.watchdog.checkWatchdog();
      return d.remoteControlLost;
    });
    expect(units.watchdog.mode).toBe('fallback');
    expect(lostEvents).toHaveLength(1);
    expect((await d.read()).mode).toBe('fallback');

    const before = journal.lastSeq;
    const refused = await rejection(
      d.writeCommand({ epoch: 1, remoteEnable: true, fanPct: 50, supplySetpointC: 20 }),
    );
    expect(refused.code).toBe(ErrorCodes.DEVICE_REFUSED);
    expect(journal.lastSeq).toBe(before); // nothing reached the unit

    await d.writeCommand(
      { epoch: 1, remoteEnable: true, fanPct: 50, supplySetpointC: 20 },
      { reassert: true },
    );
    expect(units.watchdog.mode).toBe('remote');
    expect(d.remoteControlLost).toBe(false);
    await d.writeCommand({ epoch: 1, remoteEnable: true, fanPct: 52, supplySetpointC: 20 });
  });

  it('offline unit: DEVICE_BAD_STATUS BadCommunicationError, link degraded, then up again', async () => {
    const d = device(configs.faults);
    await d.open();
    await d.read();
    units.faults.faults.offline = true;
    const err = await eventually(() => d.read());
    expect(err.code).toBe(ErrorCodes.DEVICE_BAD_STATUS);
    expect(err.deviceCode).toBe('BadCommunicationError');
    expect(d.linkState).toBe('degraded');
    const w = await rejection(
      d.writeCommand({ epoch: 1, remoteEnable: true, fanPct: 40, supplySetpointC: 20 }),
    );
    expect(w).toMatchObject({ code: ErrorCodes.DEVICE_BAD_STATUS, deviceCode: 'BadCommunicationError' });
    units.faults.faults.offline = false;
    expect((await d.read()).quality).toBe('good');
    expect(d.linkState).toBe('up');
  });

  it('slow unit: DEVICE_TIMEOUT within the deadline, no hang, and works again once cleared', async () => {
    const d = device(configs.faults, { timeoutMs: 400 });
    await d.open();
    await d.read();
    units.faults.faults.slowMs = 1_500;
    // Wait until the subscription's samples are overdue, so read() has to ask the server.
    let t0 = performance.now();
    const err = await eventually(() => {
      t0 = performance.now();
      return d.read();
    });
    const elapsed = performance.now() - t0;
    expect(err).toMatchObject({ code: ErrorCodes.DEVICE_TIMEOUT, retryable: true });
    expect(elapsed).toBeLessThan(400 + 500);
    t0 = performance.now();
    const w = await rejection(
      d.writeCommand({ epoch: 2, remoteEnable: true, fanPct: 40, supplySetpointC: 20 }),
    );
    // Our deadline and the unit's BadTimeout (the hint we send is what is left of the call) end at
    // the same instant; whichever the caller hears first, it is a retryable timeout.
    expect(w).toMatchObject({ code: ErrorCodes.DEVICE_TIMEOUT, retryable: true });
    expect(performance.now() - t0).toBeLessThan(400 + 500);
    units.faults.faults.slowMs = 0;
    await waitFor('reads to work again', () => d.read().then(() => true));
    await d.writeCommand({ epoch: 2, remoteEnable: true, fanPct: 41, supplySetpointC: 20 });
    expect(units.faults.status().fanCmdPct).toBe(41);
  });

  it('Bad status fault: DEVICE_BAD_STATUS with the status name, and a write is not retried', async () => {
    const d = device(configs.faults);
    await d.open();
    units.faults.faults.badStatus = 'BadDeviceFailure';
    await server.applyFaults();
    expect(await eventually(() => d.read())).toMatchObject({
      code: ErrorCodes.DEVICE_BAD_STATUS,
      deviceCode: 'BadDeviceFailure',
    });
    const before = journal.lastSeq;
    expect(
      await rejection(d.writeCommand({ epoch: 3, remoteEnable: true, fanPct: 40, supplySetpointC: 20 })),
    ).toMatchObject({ code: ErrorCodes.DEVICE_BAD_STATUS, deviceCode: 'BadDeviceFailure', retryable: false });
    expect(journal.lastSeq).toBe(before + 1);
    units.faults.faults.badStatus = null;
    await d.read();
  });

  it('untrusted server certificate: DEVICE_UNTRUSTED naming the file; trusted, Sign and SignAndEncrypt work', async () => {
    const pkiDir = await mkdtemp(join(root, 'untrusted-pki-'));
    const secure = device(configs.security, { pkiDir, endpoint: { securityMode: 'SignAndEncrypt' } });
    const err = await rejection(secure.open());
    expect(err.code).toBe(ErrorCodes.DEVICE_UNTRUSTED);
    expect(secure.linkState).toBe('down');
    const rejected = await readdir(join(pkiDir, 'rejected'));
    expect(rejected).toHaveLength(1);
    expect(err.message).toContain(join(pkiDir, 'rejected', rejected[0]!));
    // What the message tells the operator to do.
    await rename(join(pkiDir, 'rejected', rejected[0]!), join(pkiDir, 'trusted', 'certs', rejected[0]!));
    await secure.open();
    expect((await secure.read()).quality).toBe('good');
    await secure.writeCommand({ epoch: 1, remoteEnable: true, fanPct: 30, supplySetpointC: 19 });

    const signed = device(configs.security, { pkiDir, endpoint: { securityMode: 'Sign' } });
    await signed.open();
    expect((await signed.read()).epoch).toBe(1);
  });

  it('user and password: from a passwordFile; a wrong or missing one is DEVICE_AUTH', async () => {
    const good = join(root, 'password');
    const bad = join(root, 'wrong-password');
    // Mode 0600, as the config check wants every secret file (src/config/config-files.ts).
    await writeFile(good, `${user.password}\n`, { mode: 0o600 });
    await writeFile(bad, 'not-it\n', { mode: 0o600 });
    const ok = device(configs.security, { endpoint: { username: user.username, passwordFile: good } });
    await ok.open();
    expect((await ok.read()).quality).toBe('good');

    const wrong = device(configs.security, { endpoint: { username: user.username, passwordFile: bad } });
    expect((await rejection(wrong.open())).code).toBe(ErrorCodes.DEVICE_AUTH);
    const missing = join(root, 'no-such-file');
    const none = device(configs.security, { endpoint: { username: user.username, passwordFile: missing } });
    const e = await rejection(none.open());
    expect(e.code).toBe(ErrorCodes.DEVICE_AUTH);
    expect(e.message).toContain(missing);
  });

  it('nothing listening: open() rejects DEVICE_UNREACHABLE within the deadline and retries until close', async () => {
    const port = await freePort('127.0.0.1');
    const registry = new Registry();
    const d = device(configs.reads, { url: `opc.tcp://127.0.0.1:${port}/coolctl-sim` }, registry);
    const t0 = performance.now();
    const err = await rejection(d.open());
    expect(err.code).toBe(ErrorCodes.DEVICE_UNREACHABLE);
    expect(performance.now() - t0).toBeLessThan(5_000 + 500);
    expect(d.linkState).toBe('down');
    const connectErrors = async () => {
      const m = await registry.getSingleMetric('coolctl_device_errors_total')?.get();
      return m?.values.find((v) => v.labels.kind === 'unreachable')?.value ?? 0;
    };
    await waitFor('background reconnect attempts', async () => (await connectErrors()) >= 3);
    expect((await rejection(d.read())).code).toBe(ErrorCodes.DEVICE_UNREACHABLE);
    await d.close();
    const after = await connectErrors();
    await new Promise((r) => setTimeout(r, 800)); // asserting that nothing happens needs a window
    expect(await connectErrors()).toBe(after);
  });

  it('link lost and back: down when the server stops, up when it returns, control re-asserted deliberately', async () => {
    const own = new SimAirHandler(unitConfig('ahu-restart'), journal);
    const first = await startServer([own]);
    const port = Number(new URL(first.endpointUrl).port);
    const d = device(own.config as OpcuaAirHandler, { url: first.endpointUrl });
    const links: LinkEvent[] = [];
    d.on('link', (e: LinkEvent) => links.push(e));
    await d.open();
    await d.writeCommand({ epoch: 4, remoteEnable: true, fanPct: 45, supplySetpointC: 19 });

    await servers.at(-1)!.stop();
    await waitFor('link down', () => d.linkState === 'down');
    expect(d.remoteControlLost).toBe(true);
    expect((await rejection(d.read())).code).toBe(ErrorCodes.DEVICE_UNREACHABLE);

    await startServer([own], port);
    await waitFor('link up again', () => d.linkState === 'up', { timeoutMs: 20_000 });
    expect(links.map((e) => e.to)).toEqual(expect.arrayContaining(['up', 'down']));
    expect(links.at(-1)?.to).toBe('up');
    expect(d.remoteControlLost).toBe(true);
    expect(
      (await rejection(d.writeCommand({ epoch: 4, remoteEnable: true, fanPct: 45, supplySetpointC: 19 })))
        .code,
    ).toBe(ErrorCodes.DEVICE_REFUSED);
    await d.writeCommand(
      { epoch: 4, remoteEnable: true, fanPct: 45, supplySetpointC: 19 },
      { reassert: true },
    );
    expect(d.remoteControlLost).toBe(false);
    expect(own.mode).toBe('remote');
  });

  it('close() settles calls in flight with DEVICE_CLOSED, promptly, and twice is harmless', async () => {
    const d = device(configs.closing, { timeoutMs: 10_000 });
    await d.open();
    units.closing.faults.slowMs = 5_000;
    // Handlers attached at once: the rejections come while close() runs.
    const read = rejection(d.read());
    const write = rejection(
      d.writeCommand({ epoch: 1, remoteEnable: true, fanPct: 40, supplySetpointC: 20 }),
    );
    const t0 = performance.now();
    await Promise.all([d.close(), d.close()]);
    expect(performance.now() - t0).toBeLessThan(3_000);
    expect((await read).code).toBe(ErrorCodes.DEVICE_CLOSED);
    expect((await write).code).toBe(ErrorCodes.DEVICE_CLOSED);
    expect((await rejection(d.read())).code).toBe(ErrorCodes.DEVICE_CLOSED);
    expect((await rejection(d.open())).code).toBe(ErrorCodes.DEVICE_CLOSED);
    expect(d.linkState).toBe('down');
  });

  it('reports transactions, errors by kind, latency and link state on a prom-client registry', async () => {
    const registry = new Registry();
    const d = device(configs.reads, {}, registry);
    await d.open();
    await d.read();
    await d.writeCommand({ epoch: 1, remoteEnable: false, fanPct: 40, supplySetpointC: 20 });
    units.reads.faults.badStatus = 'BadDeviceFailure';
    await eventually(() => d.read());
    const text = await registry.metrics();
    const labels = 'device="ahu-reads",protocol="opcua"';
    expect(text).toContain(`coolctl_device_transactions_total{${labels},op="connect",outcome="ok"} 1`);
    expect(text).toMatch(
      new RegExp(`coolctl_device_transactions_total\\{${labels},op="read",outcome="ok"\\} [1-9]`),
    );
    expect(text).toContain(`coolctl_device_transactions_total{${labels},op="write",outcome="ok"} 1`);
    expect(text).toContain(`coolctl_device_transactions_total{${labels},op="verify",outcome="ok"} 1`);
    expect(text).toContain(`coolctl_device_errors_total{${labels},kind="bad_status"} 1`);
    // Latency is by protocol and operation, not per unit (see docs/device-io.md).
    expect(text).toMatch(
      /coolctl_device_request_seconds_bucket\{le="\+Inf",protocol="opcua",op="read"\} [1-9]/,
    );
    expect(text).not.toMatch(/coolctl_device_request_seconds_bucket\{[^}]*device=/);
    expect(text).toContain(`coolctl_device_link_state{${labels},state="degraded"} 1`);
  });

  it('does not load node-opcua for the interface or the node map; the adapter does', () => {
    const probe = (modules: string[]) => {
      const script = `
        import { registerHooks } from 'node:module';
        const seen = [];
        registerHooks({ resolve(spec, ctx, next) { const r = next(spec, ctx); seen.push(r.url); return r; } });
        for (const m of ${JSON.stringify(modules)}) await import(new URL(m, '${new URL('../../', import.meta.url).href}').href);
        console.log(JSON.stringify(seen.filter((u) => u.includes('/node_modules/node-opcua')).length));
      `;
      const out = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
      expect(out.stderr).not.toMatch(/Error/);
      return Number(out.stdout.trim());
    };
    expect(probe(['src/devices/device-io.ts', 'src/devices/opcua/node-map.ts'])).toBe(0);
    // The probe can see node-opcua when it is there.
    expect(probe(['src/devices/opcua/opcua-device.ts'])).toBeGreaterThan(0);
  });
});
