// The native Modbus TCP adapter against a hostile air handler: a real TCP server on loopback that
// holds the coolctl-native register map (docs/modbus-register-map.md) and lies on purpose — wrong
// transaction ids, answers to requests never sent, answers in 1-byte pieces or after the deadline,
// resets mid-frame, exceptions forever, writes it applies but refuses. What must hold: every call
// settles inside its deadline with a typed error, a bad frame never pairs with a request and is
// counted, the link state says what happened, and a write is reported done only when the unit
// holds it (read back), with the same epoch on every try.
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { evaluateGroup, newMemory, type RuleMemory } from '../../src/alarms/rules.ts';
import { alarmDelays, alarmLimits } from '../../src/config/alarm-schema.ts';
import type { ModbusAirHandler } from '../../src/config/site-schema.ts';
import type { AhuCommandSet } from '../../src/devices/device-io.ts';
import { DeviceMetrics } from '../../src/devices/metrics.ts';
import { ModbusDevice } from '../../src/devices/modbus/modbus-device.ts';
import { decodeCommand, encodeStatus } from '../../src/devices/modbus/point-map.ts';
import { DeviceError, ErrorCodes } from '../../src/errors.ts';
import { MetricsExposition } from '../../src/metrics/exposition.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const site = generateSite(demoShape);
const baseAhu = site.airHandlers.find((a): a is ModbusAirHandler => a.protocol === 'modbus-tcp')!;
const COMMAND = 0;
const STATUS = 100;

interface Req {
  tid: number;
  unit: number;
  fc: number;
  address: number;
  /** FC16: the words written. */
  words: number[];
  /** Which accepted connection (1-based) carried it. */
  conn: number;
}

/** What the unit does with one request: write answers itself (or not) on `peer`. */
type Behaviour = (req: Req, peer: Socket, unit: HostileUnit) => void;

/** An MBAP frame: tid, protocol 0, length, unit, PDU. */
function mbap(tid: number, unit: number, pdu: number[]): Buffer {
  const b = Buffer.alloc(7 + pdu.length);
  b.writeUInt16BE(tid, 0);
  b.writeUInt16BE(0, 2);
  b.writeUInt16BE(1 + pdu.length, 4);
  b[6] = unit;
  Buffer.from(pdu).copy(b, 7);
  return b;
}
const bytesOf = (words: number[]): number[] => words.flatMap((w) => [w >> 8, w & 0xff]);

class HostileUnit {
  readonly regs = new Map<number, number>();
  readonly requests: Req[] = [];
  readonly peers = new Set<Socket>();
  connections = 0;
  behaviour: Behaviour = (req, peer, u) => peer.write(u.honest(req));
  port = 0;
  private readonly server: Server;

  constructor() {
    const status = encodeStatus({
      mode: 'remote',
      fanPct: 50,
      supplySetpointC: 18,
      supplyC: 18,
      returnC: 30,
      cwValvePct: 40,
      alarms: 0,
      epoch: 0,
      heartbeat: 0,
      fanKw: 1,
      coolingKw: 10,
      watchdogS: 10,
      localSetpointC: 20,
    });
    for (const [i, w] of status.entries()) this.regs.set(STATUS + i, w);
    for (let i = 0; i < 8; i++) this.regs.set(COMMAND + i, 0);
    this.server = createServer((peer) => {
      const conn = ++this.connections;
      this.peers.add(peer);
      peer.on('close', () => this.peers.delete(peer));
      peer.on('error', () => {});
      let buf = Buffer.alloc(0);
      peer.on('data', (chunk) => {
        buf = Buffer.concat([buf, chunk]);
        while (buf.length >= 7 && buf.length >= 6 + buf.readUInt16BE(4)) {
          const f = buf.subarray(0, 6 + buf.readUInt16BE(4));
          buf = buf.subarray(f.length);
          const fc = f[7]!;
          const words: number[] = [];
          if (fc === 0x10) for (let i = 0; i < f[12]! / 2; i++) words.push(f.readUInt16BE(13 + 2 * i));
          const req = { tid: f.readUInt16BE(0), unit: f[6]!, fc, address: f.readUInt16BE(8), words, conn };
          this.requests.push(req);
          if (!peer.destroyed) this.behaviour(req, peer, this);
        }
      });
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  stop(): Promise<void> {
    for (const p of this.peers) p.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }

  /** Takes an FC16 into the command block as the native unit does: the status mirrors epoch and heartbeat. */
  apply(req: Req): void {
    for (const [i, w] of req.words.entries()) this.regs.set(req.address + i, w);
    for (let i = 0; i < 4; i++) this.regs.set(STATUS + 7 + i, req.words[i]!);
    this.regs.set(STATUS + 11, req.words[4]!);
  }

  /** The honest answer (FC3 reads, FC16 writes applied). */
  honest(req: Req, o: { tid?: number; apply?: boolean } = {}): Buffer {
    const tid = o.tid ?? req.tid;
    if (req.fc === 0x10) {
      if (o.apply !== false) this.apply(req);
      return mbap(tid, req.unit, [0x10, ...bytesOf([req.address, req.words.length])]);
    }
    const qty = req.address === STATUS ? 16 : 8;
    const words = Array.from({ length: qty }, (_, i) => this.regs.get(req.address + i) ?? 0);
    return mbap(tid, req.unit, [0x03, 2 * qty, ...bytesOf(words)]);
  }

  exception(req: Req, code: number): Buffer {
    return mbap(req.tid, req.unit, [req.fc | 0x80, code]);
  }

  get commandEpoch(): number {
    return decodeCommand(Array.from({ length: 8 }, (_, i) => this.regs.get(COMMAND + i)!)).epoch;
  }

  writes(): Req[] {
    return this.requests.filter((r) => r.fc === 0x10);
  }
}

const units: HostileUnit[] = [];
const devices: ModbusDevice[] = [];
afterEach(async () => {
  await Promise.all(devices.splice(0).map((d) => d.close()));
  await Promise.all(units.splice(0).map((u) => u.stop()));
});

async function hostile(behaviour?: Behaviour): Promise<HostileUnit> {
  const u = await new HostileUnit().start();
  if (behaviour) u.behaviour = behaviour;
  units.push(u);
  return u;
}

function device(
  u: HostileUnit,
  client: ModbusAirHandler['client'] = { timeoutMs: 400 },
  metrics?: DeviceMetrics,
): ModbusDevice {
  const d = new ModbusDevice(
    { ...baseAhu, endpoint: { host: '127.0.0.1', port: u.port, unitId: 1 }, client },
    { logger: quietLogger, ...(metrics ? { metrics } : {}) },
  );
  devices.push(d);
  return d;
}

const cmd = (epoch: number, fanPct = 60): AhuCommandSet => ({
  epoch,
  remoteEnable: true,
  fanPct,
  supplySetpointC: 17,
});

/** The DeviceError a promise rejects with, and how long it took; fails if it resolves. */
async function failure(p: Promise<unknown>): Promise<DeviceError & { tookMs: number }> {
  const t0 = performance.now();
  const err = await p.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DeviceError);
  return Object.assign(err as DeviceError, { tookMs: performance.now() - t0 });
}

describe('answers that lie', () => {
  it('a wrong transaction id is garbage: the read fails inside its deadline, the connection is dropped', async () => {
    const u = await hostile((req, peer, unit) => peer.write(unit.honest(req, { tid: req.tid + 1 })));
    const d = device(u);
    const err = await failure(d.read());
    expect(err.code).toBe(ErrorCodes.DEVICE_GARBAGE);
    expect(err.tookMs).toBeLessThan(400 + 300);
    // Each lie cost its connection: no answer was ever paired on a stream that lied once.
    const byConn = new Set(u.requests.map((r) => r.conn));
    expect(byConn.size).toBe(u.requests.length);
    expect(d.linkState).not.toBe('up');
  });

  it('the right id with another function code is garbage, never data', async () => {
    const u = await hostile((req, peer) =>
      peer.write(mbap(req.tid, req.unit, [0x04, 32, ...bytesOf(Array(16).fill(7))])),
    );
    const d = device(u);
    expect((await failure(d.read())).code).toBe(ErrorCodes.DEVICE_GARBAGE);
  });

  it('a byte count that disagrees with the MBAP length is garbage', async () => {
    const u = await hostile((req, peer, unit) => {
      const f = unit.honest(req);
      f[8] = f[8]! - 2; // says 30 bytes, carries 32
      peer.write(f);
    });
    const d = device(u);
    expect((await failure(d.read())).code).toBe(ErrorCodes.DEVICE_GARBAGE);
  });

  it('an answer in 1-byte TCP segments with delays is reassembled', async () => {
    const u = await hostile((req, peer, unit) => {
      const f = unit.honest(req);
      let i = 0;
      const next = (): void => {
        if (peer.destroyed || i >= f.length) return;
        peer.write(f.subarray(i, ++i));
        setTimeout(next, 3);
      };
      next();
    });
    const d = device(u, { timeoutMs: 2_000 });
    const r = await d.read();
    expect(r.fanPct).toBe(50);
    expect(u.connections).toBe(1);
  });

  it('an exception for a write the unit applied anyway: never reported applied, the read shows the truth', async () => {
    const u = await hostile((req, peer, unit) => {
      if (req.fc === 0x10) {
        unit.apply(req);
        peer.write(unit.exception(req, 0x04));
      } else peer.write(unit.honest(req));
    });
    const d = device(u);
    const err = await failure(d.writeCommand(cmd(7)));
    expect(err.code).toBe(ErrorCodes.DEVICE_EXCEPTION);
    expect(err.deviceCode).toBe(4);
    // 04 is not retried: one write on the wire, and the unit does hold it.
    expect(u.writes()).toHaveLength(1);
    expect((await d.read()).epoch).toBe(7);
  });

  it('two answers glued in one segment: the first is used, the second is counted and never pairs', async () => {
    const fan = 51;
    const u = await hostile((req, peer, unit) => {
      const honest = unit.honest(req);
      if (unit.requests.length === 1) {
        // The honest answer, then a forged one with the next transaction id and another fan speed.
        unit.regs.set(STATUS + 1, 990);
        const forged = unit.honest(req, { tid: req.tid + 1 });
        unit.regs.set(STATUS + 1, fan * 10);
        peer.write(Buffer.concat([honest, forged]));
      } else peer.write(honest);
    });
    const d = device(u);
    expect((await d.read()).fanPct).toBe(50);
    expect((await d.read()).fanPct).toBe(fan);
    expect(d.strayFrames).toBe(1);
    // The stream that spoke out of turn is not trusted with another request.
    expect(u.requests.map((r) => r.conn)).toEqual([1, 2]);
    expect(d.linkState).toBe('up');
  });

  it('an answer to a request never sent, while idle, is counted and never pairs with the next request', async () => {
    const u = await hostile();
    const d = device(u);
    await d.read();
    const [peer] = [...u.peers];
    // The next request will be transaction 2: forge its answer before it is asked.
    u.regs.set(STATUS + 1, 990);
    peer!.write(u.honest({ tid: 2, unit: 1, fc: 3, address: STATUS, words: [], conn: 1 }));
    u.regs.set(STATUS + 1, 510);
    await waitFor('the stray answer is seen', () => d.strayFrames === 1, { timeoutMs: 2_000 });
    expect((await d.read()).fanPct).toBe(51);
    expect(u.requests.at(-1)!.conn).toBe(2);
  });

  it('an answer after the deadline never pairs with a later request', async () => {
    const u = await hostile((req, peer, unit) => {
      if (unit.requests.length === 1) {
        unit.regs.set(STATUS + 1, 990);
        const late = unit.honest(req);
        unit.regs.set(STATUS + 1, 520);
        setTimeout(() => peer.write(late), 500); // past the 400 ms deadline, while the next is asked
      } else setTimeout(() => peer.write(unit.honest(req)), 300);
    });
    const d = device(u, { timeoutMs: 400 });
    expect((await failure(d.read())).code).toBe(ErrorCodes.DEVICE_TIMEOUT);
    const r = await d.read();
    expect(r.fanPct).toBe(52);
  });
});

/** /metrics as the daemon serves it; checked to be the text registry.metrics() gives too. */
async function scrape(registry: Registry): Promise<string> {
  const text = (await new MetricsExposition(registry, { reuseMs: 0 }).body()).toString('utf8');
  expect(text).toBe(await registry.metrics());
  return text;
}

describe('what /metrics and the status say of a unit that misbehaves', () => {
  it('stray bytes are counted per device on /metrics, glued after an answer or sent while idle', async () => {
    const u = await hostile((req, peer, unit) => {
      const honest = unit.honest(req);
      peer.write(unit.requests.length === 1 ? Buffer.concat([honest, Buffer.from([0, 0, 0])]) : honest);
    });
    const registry = new Registry();
    const d = device(u, { timeoutMs: 400 }, new DeviceMetrics(registry));
    await d.read();
    await d.read();
    for (const p of u.peers) p.write(Buffer.from([1, 2, 3, 4]));
    await waitFor('the idle stray is seen', () => d.strayFrames === 2, { timeoutMs: 2_000 });
    const text = await scrape(registry);
    expect(text).toContain('# TYPE coolctl_device_stray_frames_total counter');
    expect(text).toContain(
      `coolctl_device_stray_frames_total{device="${baseAhu.id}",protocol="modbus-tcp"} 2`,
    );
    expect((await d.read()).fanPct).toBe(50);
  });

  it('a unit that refuses every read (02): link up, its refusal and code in the status, on /metrics, and the comm-loss alarm', async () => {
    let refuse = true;
    const u = await hostile((req, peer, unit) =>
      peer.write(refuse && req.fc === 3 ? unit.exception(req, 2) : unit.honest(req)),
    );
    const registry = new Registry();
    const d = device(u, { timeoutMs: 400 }, new DeviceMetrics(registry));
    for (let i = 0; i < 3; i++) {
      const err = await failure(d.read());
      expect(err.code).toBe(ErrorCodes.DEVICE_EXCEPTION);
      expect(err.deviceCode).toBe(2);
    }
    // The exceptions prove the link; what is wrong is said beside it.
    expect(d.linkState).toBe('up');
    expect(d.refusal).toMatchObject({ code: 2, name: 'illegal data address' });
    let text = await scrape(registry);
    const labels = `device="${baseAhu.id}",protocol="modbus-tcp"`;
    expect(text).toContain(`coolctl_device_refusing{${labels}} 1`);
    expect(text).toContain(`coolctl_device_exceptions_total{${labels},code="2"} 3`);
    expect(text).toContain(`coolctl_device_link_state{${labels},state="up"} 1`);
    // The group's leader gets no reading: the comm-loss alarm fires after its delay, saying why.
    const memory = newMemory();
    const commLoss = (tS: number) => commLossOf(d, memory, tS);
    expect(commLoss(0).verdict).toBe('hold');
    const raised = commLoss(alarmDelays(undefined).unitCommLossS);
    expect(raised.verdict).toBe('active');
    expect(raised.message).toMatch(/refuses every read \(Modbus exception 2, illegal data address\)/);
    // The register map is put right: the next read clears it all.
    refuse = false;
    expect((await d.read()).fanPct).toBe(50);
    expect(d.refusal).toBeNull();
    text = await scrape(registry);
    expect(text).toContain(`coolctl_device_refusing{${labels}} 0`);
    expect(commLoss(100).verdict).toBe('clear');
  });
});

/** The comm-loss condition of the unit behind `d`, as the alarm engine judges it at `tS`. */
function commLossOf(d: ModbusDevice, memory: RuleMemory, tS: number) {
  const conditions = evaluateGroup(
    {
      group: 'zone-1',
      nowMs: tS * 1000,
      rackInletsC: {},
      rackDewPointsC: {},
      verdict: 'ok',
      recovery: null,
      configuredInletSensors: 0,
      units: [{ id: d.id, link: d.linkState, mode: null, refusal: d.refusal }],
      drive: { driving: true, problem: null },
      limits: alarmLimits(undefined),
      delays: alarmDelays(undefined),
    },
    memory,
  );
  const c = conditions.find((x) => x.kind === 'unit-comm-loss' && x.subject === d.id);
  if (!c) throw new Error('no comm-loss condition');
  return { verdict: c.verdict, message: c.message };
}

describe('connection faults', () => {
  it('accept, then never answer: DEVICE_TIMEOUT at the deadline, link down, reconnects bounded', async () => {
    const u = await hostile(() => {});
    const d = device(u, { timeoutMs: 200 });
    const err = await failure(d.read());
    expect(err.code).toBe(ErrorCodes.DEVICE_TIMEOUT);
    expect(err.tookMs).toBeLessThan(200 + 300);
    const t0 = performance.now();
    await waitFor('link down', () => d.linkState === 'down', { timeoutMs: 5_000 });
    // The background reconnect keeps trying (≤ 1 s apart) but never piles connections up.
    await waitFor('2 s of reconnecting', () => performance.now() - t0 > 2_000, { timeoutMs: 3_000 });
    expect(u.connections).toBeLessThanOrEqual(12);
    await waitFor('at most one connection open', () => u.peers.size <= 1, { timeoutMs: 2_000 });
  });

  it('RST mid-answer: a typed error, link down, and every retry on a fresh connection', async () => {
    const u = await hostile((req, peer, unit) => {
      peer.write(unit.honest(req).subarray(0, 12));
      setTimeout(() => peer.resetAndDestroy(), 10);
    });
    const d = device(u);
    const err = await failure(d.read());
    expect(err.code).toBe(ErrorCodes.DEVICE_UNREACHABLE);
    expect(d.linkState).toBe('down');
    expect(new Set(u.requests.map((r) => r.conn)).size).toBe(u.requests.length);
  });

  it('close after a write it applied: retried with the same epoch on a new connection, reported done after read-back', async () => {
    const u = await hostile((req, peer, unit) => {
      if (req.fc === 0x10 && unit.writes().length === 1) {
        unit.apply(req);
        peer.end();
      } else peer.write(unit.honest(req));
    });
    const d = device(u);
    await d.writeCommand(cmd(9));
    const writes = u.writes();
    expect(writes.length).toBe(2);
    expect(writes.map((w) => decodeCommand(w.words).epoch)).toEqual([9, 9]);
    expect(writes[0]!.conn).not.toBe(writes[1]!.conn);
    expect(u.commandEpoch).toBe(9);
    expect(d.linkState).toBe('up');
  });

  it('10 000 requests, 1 in 10 answered: every call settles near its deadline, the wire sees few', async () => {
    let n = 0;
    const u = await hostile((req, peer, unit) => {
      if (++n % 10 === 0) peer.write(unit.honest(req));
    });
    const d = device(u, { timeoutMs: 300, retries: 2 });
    const t0 = performance.now();
    const calls = Array.from({ length: 10_000 }, () =>
      d.read().then(
        () => 'ok',
        (e: DeviceError) => e.code,
      ),
    );
    const outcomes = await Promise.all(calls);
    expect(performance.now() - t0).toBeLessThan(300 + 5_000);
    // Queued calls expire in the lane: none of them reaches the wire after its deadline.
    expect(u.requests.length).toBeLessThan(20);
    expect(outcomes.filter((o) => o === 'ok').length).toBeLessThanOrEqual(u.requests.length / 10 + 1);
    expect(new Set(outcomes.filter((o) => o !== 'ok'))).toEqual(new Set([ErrorCodes.DEVICE_TIMEOUT]));
    // Sequential, as a control loop calls: one connection per unanswered request at most.
    const seq = device(u, { timeoutMs: 100, retries: 2 });
    const before = u.requests.length;
    const connsBefore = u.connections;
    let slowestMs = 0;
    for (let i = 0; i < 20; i++) {
      const t = performance.now();
      await seq.read().catch(() => undefined);
      slowestMs = Math.max(slowestMs, performance.now() - t);
    }
    const sent = u.requests.length - before;
    expect(slowestMs).toBeLessThan(100 + 400);
    expect(u.connections - connsBefore).toBeLessThanOrEqual(sent);
    // Each device holds at most one connection: none left behind by a call that timed out.
    await waitFor('at most one connection per device', () => u.peers.size <= 2, { timeoutMs: 2_000 });
  }, 30_000);

  it.each([4, 6])('exception %i forever: tries per call bounded, one connection, link down', async (code) => {
    const u = await hostile((req, peer, unit) => peer.write(unit.exception(req, code)));
    const d = device(u, { timeoutMs: 1_000, retries: 2 });
    for (let i = 0; i < 5; i++) {
      const err = await failure(d.read());
      expect(err.code).toBe(ErrorCodes.DEVICE_EXCEPTION);
      expect(err.deviceCode).toBe(code);
    }
    expect(d.linkState).toBe('down');
    expect(u.connections).toBe(1);
    // 04 is no reason to try again; 06 (busy) is tried up to retries + 1 times with backoff.
    expect(u.requests.length).toBeLessThanOrEqual(code === 4 ? 5 + 5 : 5 * 3 + 5);
  });
});

describe("a write's truth", () => {
  it('a write that times out is never reported applied, and is not retried after its deadline', async () => {
    const u = await hostile((req, peer, unit) => {
      if (req.fc === 0x10)
        unit.apply(req); // takes it, never answers
      else peer.write(unit.honest(req));
    });
    const d = device(u, { timeoutMs: 300 });
    const err = await failure(d.writeCommand(cmd(11)));
    expect(err.code).toBe(ErrorCodes.DEVICE_TIMEOUT);
    const writes = u.writes().length;
    // Wait past a few backoffs: no write of this call leaves after its deadline.
    const t0 = performance.now();
    await waitFor('1 s', () => performance.now() - t0 > 1_000);
    expect(u.writes().length).toBe(writes);
    expect(writes).toBe(1);
  });

  it.each([
    [
      'busy (exception 06)',
      (req: Req, peer: Socket, unit: HostileUnit) => peer.write(unit.exception(req, 6)),
    ],
    [
      'applied, then a garbage answer',
      (req: Req, peer: Socket, unit: HostileUnit) => peer.write(unit.honest(req, { tid: req.tid ^ 0xff })),
    ],
  ])(
    'a first try that fails (%s) is tried again with the same epoch, and done only once it reads back',
    async (_, first) => {
      const u = await hostile((req, peer, unit) => {
        if (req.fc === 0x10 && unit.writes().length === 1) first(req, peer, unit);
        else peer.write(unit.honest(req));
      });
      const d = device(u);
      await d.writeCommand(cmd(13));
      const writes = u.writes();
      expect(writes.map((w) => decodeCommand(w.words).epoch)).toEqual([13, 13]);
      // A fresh heartbeat each try: a unit in fallback never sees a repeated frame.
      expect(writes[0]!.words[4]).not.toBe(writes[1]!.words[4]);
      expect(u.commandEpoch).toBe(13);
      // The read-back came after the last write.
      expect(u.requests.at(-1)!.fc).toBe(3);
    },
  );

  it('a unit that echoes a write but does not take it: VERIFY_MISMATCH, never success', async () => {
    const u = await hostile((req, peer, unit) => peer.write(unit.honest(req, { apply: false })));
    const d = device(u);
    expect((await failure(d.writeCommand(cmd(12)))).code).toBe(ErrorCodes.DEVICE_VERIFY_MISMATCH);
  });

  it('epoch fencing holds across reconnects: a newer epoch at the unit is DEVICE_FENCED on the new connection', async () => {
    const u = await hostile((req, peer, unit) => {
      if (req.fc === 0x10 && decodeCommand(req.words).epoch < unit.commandEpoch) {
        peer.write(unit.exception(req, 0x0d));
      } else peer.write(unit.honest(req));
    });
    const d = device(u);
    await d.writeCommand(cmd(20));
    for (const p of u.peers) p.resetAndDestroy();
    await waitFor('reconnected', () => u.connections >= 2 && d.linkState === 'up');
    // A newer leader took the unit meanwhile.
    u.apply({ tid: 0, unit: 1, fc: 0x10, address: COMMAND, words: epochWords(21), conn: 0 });
    const err = await failure(d.writeCommand(cmd(20)));
    expect(err.code).toBe(ErrorCodes.DEVICE_FENCED);
    expect(err.unitEpoch).toBe(21);
    // Refused once, not retried: the fencing signal is final.
    expect(u.writes().filter((w) => decodeCommand(w.words).epoch === 20)).toHaveLength(2);
  });
});

function epochWords(epoch: number): number[] {
  return [0, 0, Math.floor(epoch / 0x10000), epoch % 0x10000, 1234, 1, 500, 170];
}
