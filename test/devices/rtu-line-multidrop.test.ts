// The controller's shared RS-485 line (src/devices/modbus/rtu-line.ts) against the simulator's
// multi-drop RTU line (several live units) over a socat pty pair, line time simulated at 19 200
// baud: units on one path share one line, each request is answered by its own unit, and a slow
// unit's late answer is dropped, never taken for the next unit's. Dead slave ids, callers that
// give up and ModbusDevices on one path: rtu-line.test.ts.
import { afterEach, describe, expect, it } from 'vitest';
import { ModbusAhuPdu, newPduCounters } from '../../firmware-sim/ahu/modbus-pdu.ts';
import { ModbusRtuLineServer } from '../../firmware-sim/ahu/modbus-rtu-server.ts';
import { SimAirHandler } from '../../firmware-sim/ahu/unit.ts';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { Journal } from '../../firmware-sim/journal.ts';
import type { ModbusAirHandler } from '../../src/config/site-schema.ts';
import { ModbusExceptionError } from '../../src/devices/modbus/modbus-tcp.ts';
import {
  COMMAND_BLOCK_LEN,
  decodeStatus,
  encodeCommand,
  resolvePointMap,
  STATUS_BLOCK_LEN,
} from '../../src/devices/modbus/point-map.ts';
import {
  openRtuUnit,
  RtuLine,
  RtuTimeoutError,
  type RtuUnitClient,
  rtuLineOn,
} from '../../src/devices/modbus/rtu-line.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { type PtyPair, ptyPair } from '../support/pty-pair.ts';

const site = generateSite(demoShape);
const baseAhu = site.airHandlers.find((a): a is ModbusAirHandler => a.protocol === 'modbus-tcp')!;
const pm = resolvePointMap(undefined);
const journal = new Journal(() => 0);

const pairs: PtyPair[] = [];
const servers: ModbusRtuLineServer[] = [];
const closers: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  for (const s of servers.splice(0)) await s.stop();
  for (const pair of pairs.splice(0)) await pair.close();
});

/** A pty pair with the simulator's line on the device end, units at the given slave ids. */
async function simLine(unitIds: number[]) {
  const pair = await ptyPair();
  pairs.push(pair);
  const { master: controllerEnd, device: deviceEnd } = pair;
  const server = new ModbusRtuLineServer({
    path: deviceEnd,
    parity: 'even',
    baudRate: 19_200,
    logger: quietLogger,
  });
  const units = new Map<number, SimAirHandler>();
  for (const id of unitIds) {
    const unit = new SimAirHandler(
      { ...baseAhu, id: `AHU-RTU-${id}`, client: { timeoutMs: 2_000 } } as ModbusAirHandler,
      journal,
    );
    server.addUnit(id, new ModbusAhuPdu(unit, pm, newPduCounters(), quietLogger));
    units.set(id, unit);
  }
  servers.push(server);
  await server.start();
  return { controllerEnd, deviceEnd, server, units };
}

async function unitOn(path: string, unitId: number): Promise<RtuUnitClient> {
  const u = await openRtuUnit({ path, baudRate: 19_200, parity: 'even' }, unitId, { logger: quietLogger });
  closers.push(() => u.close());
  return u;
}

const FC3_STATUS = Buffer.from([0x03, pm.statusBlock >> 8, pm.statusBlock & 0xff, 0, STATUS_BLOCK_LEN]);

describe('a shared RTU line against the simulated multi-drop line', () => {
  it('units on one path share one line; each request is answered by its own unit', async () => {
    const { controllerEnd, units } = await simLine([3, 4]);
    const u3 = await unitOn(controllerEnd, 3);
    const u4 = await unitOn(controllerEnd, 4);
    expect(u3.line).toBe(u4.line);
    expect(rtuLineOn(controllerEnd)).toBe(u3.line);

    const words = encodeCommand(
      { epoch: 7, heartbeat: 1, remoteEnable: true, fanPct: 61, supplySetpointC: 20.5 },
      pm,
    );
    await u4.writeRegisters(pm.commandBlock, words);
    expect((await u4.readHoldingRegisters(pm.commandBlock, COMMAND_BLOCK_LEN)).data).toEqual(words);
    const s4 = decodeStatus((await u4.readHoldingRegisters(pm.statusBlock, STATUS_BLOCK_LEN)).data, pm);
    const s3 = decodeStatus((await u3.readHoldingRegisters(pm.statusBlock, STATUS_BLOCK_LEN)).data, pm);
    expect(s4).toMatchObject({ epoch: 7, mode: 'remote' });
    expect(s3).toMatchObject({ epoch: 0 });
    expect(units.get(4)!.status()).toMatchObject({ mode: 'remote', fanCmdPct: 61 });
    expect(units.get(3)!.status().epoch).toBe(0);

    // A stale epoch is the unit's exception, passed through as such.
    const stale = encodeCommand(
      { epoch: 6, heartbeat: 2, remoteEnable: true, fanPct: 50, supplySetpointC: 20 },
      pm,
    );
    await expect(u4.writeRegisters(pm.commandBlock, stale)).rejects.toBeInstanceOf(ModbusExceptionError);

    // Settings must agree; the line closes with its last unit.
    await expect(openRtuUnit({ path: controllerEnd, baudRate: 9_600, parity: 'even' }, 5)).rejects.toThrow(
      /baudRate 19200, not 9600/,
    );
    u3.close();
    expect(u4.line.isOpen).toBe(true);
    u4.close();
    await waitFor('line closed', () => rtuLineOn(controllerEnd) === undefined);
    expect(u4.line.closed).toBe(true);
  });

  it("a slow unit's late answer is dropped, never taken for the next unit's", async () => {
    const { controllerEnd, units } = await simLine([3, 4]);
    const line = new RtuLine(
      { path: controllerEnd, baudRate: 19_200, parity: 'even' },
      { logger: quietLogger },
    );
    closers.push(() => line.close());
    await line.open();
    units.get(4)!.faults.slowMs = 250;
    const words = encodeCommand(
      { epoch: 9, heartbeat: 1, remoteEnable: true, fanPct: 40, supplySetpointC: 19 },
      pm,
    );
    const write = Buffer.alloc(6 + 2 * words.length);
    write[0] = 0x10;
    write.writeUInt16BE(pm.commandBlock, 1);
    write.writeUInt16BE(words.length, 3);
    write[5] = 2 * words.length;
    for (const [i, w] of words.entries()) write.writeUInt16BE(w, 6 + 2 * i);
    await line.request(3, write, 1_000);

    const slow = line.request(4, FC3_STATUS, 100);
    const next = line.request(3, FC3_STATUS, 2_000);
    await expect(slow).rejects.toBeInstanceOf(RtuTimeoutError);
    const pdu = await next;
    // Unit 3's own status (epoch 9), not unit 4's late answer (epoch 0), though that came first.
    const regs = Array.from({ length: STATUS_BLOCK_LEN }, (_, i) => pdu.readUInt16BE(2 + 2 * i));
    expect(decodeStatus(regs, pm).epoch).toBe(9);
    await waitFor('the late answer counted as stray', () => line.counters.strayFrames === 1);
    expect(line.unitCounters(4).timeouts).toBe(1);
    expect(line.unitCounters(3).timeouts).toBe(0);

    units.get(4)!.faults.slowMs = 0;
    const back = await line.request(4, FC3_STATUS, 1_000);
    expect(back.length).toBe(2 + 2 * STATUS_BLOCK_LEN);
  });
});
