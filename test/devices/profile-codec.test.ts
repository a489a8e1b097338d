// The profile codec: the native profile against today's point map word for word, round trips of
// every type and order (encode with the codec, decode back), no-data, inverted flags, command bits,
// write groups and read planning (fewest requests, checked against an exhaustive search).
import { describe, expect, it } from 'vitest';
import {
  COMMAND_BLOCK_LEN,
  decodeStatus,
  MEASUREMENT_REGISTERS,
  encodeCommand as mapEncodeCommand,
  encodeStatus as mapEncodeStatus,
  NO_DATA_WORDS,
  STATUS_BLOCK_LEN,
} from '../../src/devices/modbus/point-map.ts';
import {
  compileProfile,
  type Profile,
  type ReadRequest,
  type ReadResult,
} from '../../src/devices/profile/codec.ts';
import { loadProfile } from '../../src/devices/profile/load.ts';
import type { RegisterImage } from '../../src/devices/profile/register-image.ts';
import type { ModbusPoint } from '../../src/devices/profile/schema.ts';
import { ProfileValueError } from '../../src/devices/profile/values.ts';

const NATIVE = 'config/profiles/coolctl-native.yaml';

/** What a unit showing `image` answers to each planned read. */
function serve(image: RegisterImage, plan: readonly ReadRequest[]): ReadResult[] {
  return plan.map((request) => ({
    request,
    values: Array.from(
      { length: request.count },
      (_, i) => image.get(request.table)?.get(request.address + i) ?? 0,
    ),
  }));
}

/** A small valid profile to vary one thing at a time. */
function profileWith(
  points: Record<string, ModbusPoint>,
  extra: Partial<NonNullable<Profile['modbus']>> = {},
): Profile {
  return {
    profile: 'test-unit',
    description: 'test',
    source: 'test',
    protocol: 'modbus',
    fencing: ['lease'],
    watchdog: { style: 'none' },
    modbus: {
      functionCodes: [1, 2, 3, 4, 5, 6, 15, 16],
      points: {
        supplyC: { table: 'input', address: 0, type: 'i16', scale: 0.1 },
        fanPct: { table: 'holding', address: 0, type: 'u16', write: 6 },
        ...points,
      },
      ...extra,
    },
  };
}

describe('coolctl-native profile against src/devices/modbus/point-map.ts', () => {
  it('encodes every command into the same 8 words, in one FC16 at the command block', async () => {
    const c = compileProfile(await loadProfile(NATIVE));
    const commands = [
      { epoch: 0, heartbeat: 0, remoteEnable: false, fanPct: 0, supplySetpointC: 12 },
      { epoch: 1, heartbeat: 1, remoteEnable: true, fanPct: 100, supplySetpointC: 30 },
      { epoch: 2 ** 53 - 1, heartbeat: 65_535, remoteEnable: true, fanPct: 55.55, supplySetpointC: 18.25 },
      { epoch: 123_456_789_012, heartbeat: 70_000, remoteEnable: true, fanPct: 0.15, supplySetpointC: -5.05 },
      { epoch: 42, heartbeat: -3, remoteEnable: false, fanPct: 6553.5, supplySetpointC: 3276.7 },
    ];
    // Plus values on every rounding edge of tenths.
    for (let i = 0; i < 400; i++) {
      commands.push({
        epoch: i * 7919,
        heartbeat: i * 331,
        remoteEnable: i % 2 === 0,
        fanPct: (i * 0.25) % 100,
        supplySetpointC: 10 + i * 0.05,
      });
    }
    for (const cmd of commands) {
      const writes = c.encodeCommand(cmd);
      expect(writes).toHaveLength(1);
      expect(writes[0]).toMatchObject({ fc: 16, table: 'holding', address: 0 });
      expect(writes[0]?.values).toHaveLength(COMMAND_BLOCK_LEN);
      expect(writes[0]?.values).toEqual(mapEncodeCommand(cmd));
    }
  });

  it('refuses exactly what the point map refuses', async () => {
    const c = compileProfile(await loadProfile(NATIVE));
    const ok = { epoch: 1, heartbeat: 1, remoteEnable: true, fanPct: 50, supplySetpointC: 20 };
    for (const bad of [
      { epoch: -1 },
      { epoch: 2 ** 53 },
      { epoch: 1.5 },
      { heartbeat: 0.5 },
      { fanPct: -1 },
      { fanPct: 6553.6 },
      { supplySetpointC: 3276.8 },
      { supplySetpointC: -3276.9 },
      { fanPct: Number.NaN },
    ]) {
      const cmd = { ...ok, ...bad };
      expect(() => mapEncodeCommand(cmd)).toThrow(RangeError);
      expect(() => c.encodeCommand(cmd)).toThrow(ProfileValueError);
    }
  });

  it('reads the status block in one request and decodes what decodeStatus decodes', async () => {
    const c = compileProfile(await loadProfile(NATIVE));
    const plan = c.planReads();
    expect(plan).toEqual([{ fc: 3, table: 'holding', address: 100, count: STATUS_BLOCK_LEN }]);
    const status = {
      mode: 'fallback' as const,
      fanPct: 61.3,
      supplySetpointC: 19.5,
      supplyC: -4.2,
      returnC: 31.7,
      cwValvePct: 44.4,
      alarms: 0b101,
      epoch: 9_007_199_254_740_991,
      heartbeat: 4242,
      fanKw: 3.21,
      coolingKw: 120.5,
      watchdogS: 0.4,
      localSetpointC: 21,
    };
    const words = mapEncodeStatus(status);
    const d = c.decodeReads([{ request: plan[0] as ReadRequest, values: words }]);
    const want = decodeStatus(words);
    expect(d).toMatchObject({
      mode: want.mode,
      modeCode: want.modeCode,
      fanFeedbackPct: want.fanPct,
      supplySetpointFeedbackC: want.supplySetpointC,
      supplyC: want.supplyC,
      returnC: want.returnC,
      cwValvePct: want.cwValvePct,
      epochFeedback: want.epoch,
      heartbeatFeedback: want.heartbeat,
      fanKw: want.fanKw,
      coolingKw: want.coolingKw,
      watchdogS: want.watchdogS,
      localSetpointC: want.localSetpointC,
    });
    expect(d.alarms.sort()).toEqual(['commLoss', 'highSupplyTemp']);
    expect(d.absent).toEqual([]);
  });

  it('names exactly the no-data words of NO_DATA_WORDS, in exactly its measurement registers', async () => {
    // point-map.ts owns the words; the profile's `noData` lists are its transcription, held to it here.
    const doc = await loadProfile(NATIVE);
    const declared = Object.values(doc.modbus?.points ?? {})
      .filter((p) => p.noData !== undefined)
      .map((p) => ({
        address: p.address,
        type: p.type,
        words: [p.noData ?? []].flat().map((v) => v & 0xffff),
      }))
      .sort((a, b) => Number(a.address) - Number(b.address));
    const wanted = MEASUREMENT_REGISTERS.map(([, off, type]) => ({
      address: 100 + off,
      type,
      words: [...NO_DATA_WORDS[type]],
    })).sort((a, b) => a.address - b.address);
    expect(declared).toEqual(wanted);

    // And the codec finds no data where decodeStatus does: every no-data word, its neighbours and 0,
    // in every status register.
    const c = compileProfile(doc);
    const request = c.planReads()[0] as ReadRequest;
    const base = mapEncodeStatus({
      mode: 'remote',
      fanPct: 50,
      supplySetpointC: 18,
      supplyC: 18.5,
      returnC: 29,
      cwValvePct: 40,
      alarms: 0,
      epoch: 3,
      heartbeat: 1,
      fanKw: 3.2,
      coolingKw: 45,
      watchdogS: 10,
      localSetpointC: 20,
    });
    const profileName: Record<string, string> = {
      fanPct: 'fanFeedbackPct',
      supplySetpointC: 'supplySetpointFeedbackC',
    };
    const words = new Set([0, 1, ...NO_DATA_WORDS.u16.flatMap((w) => [w - 1, w, (w + 1) & 0xffff])]);
    const mismatches: string[] = [];
    let noDataSeen = 0;
    for (let off = 0; off < STATUS_BLOCK_LEN; off++) {
      for (const word of words) {
        const regs = [...base];
        regs[off] = word;
        const viaMap = [...decodeStatus(regs).noData].map((p) => profileName[p] ?? p);
        const viaProfile = c.decodeReads([{ request, values: regs }]).absent;
        noDataSeen += viaMap.length;
        if (viaMap.join() !== viaProfile.join())
          mismatches.push(`+${off}=${word}: [${viaMap}] vs [${viaProfile}]`);
      }
    }
    expect(mismatches).toEqual([]);
    // 0x7FFF and 0x8000 in each of the 7 measurement registers, 0xFFFF in the 4 unsigned ones.
    expect(noDataSeen).toBe(7 * NO_DATA_WORDS.i16.length + 4);
  });

  it("shows the simulator's status block as the point map encodes it", async () => {
    const c = compileProfile(await loadProfile(NATIVE));
    const image = c.encodeImage({
      mode: 'tripped',
      fanFeedbackPct: 150_000, // saturates, as a status register does
      supplySetpointFeedbackC: 19.5,
      supplyC: -4.25,
      returnC: 31.7,
      cwValvePct: 44.4,
      alarms: ['trip'],
      epochFeedback: 77,
      heartbeatFeedback: 12,
      fanKw: 3.21,
      coolingKw: 120.5,
      watchdogS: 0.4,
      localSetpointC: 21,
    });
    const regs = Array.from({ length: STATUS_BLOCK_LEN }, (_, i) => image.get('holding')?.get(100 + i));
    expect(regs).toEqual(
      mapEncodeStatus({
        mode: 'tripped',
        fanPct: 150_000,
        supplySetpointC: 19.5,
        supplyC: -4.25,
        returnC: 31.7,
        cwValvePct: 44.4,
        alarms: 2,
        epoch: 77,
        heartbeat: 12,
        fanKw: 3.21,
        coolingKw: 120.5,
        watchdogS: 0.4,
        localSetpointC: 21,
      }),
    );
  });

  it('the simulator side refuses a partial command block, FC6, and reads back the command', async () => {
    const c = compileProfile(await loadProfile(NATIVE));
    const cmd = { epoch: 5, heartbeat: 9, remoteEnable: true, fanPct: 40, supplySetpointC: 17.5 };
    const [w] = c.encodeCommand(cmd);
    expect(c.decodeWrite(16, 0, w?.values ?? [])).toEqual({
      ok: true,
      command: cmd,
      points: ['epoch', 'heartbeat', 'remoteEnable', 'fanPct', 'supplySetpointC'],
    });
    expect(c.decodeWrite(16, 4, [1, 1, 400, 175])).toMatchObject({ ok: false, exception: 2 });
    expect(c.decodeWrite(6, 6, [400])).toMatchObject({ ok: false, exception: 1 });
    expect(c.decodeWrite(16, 100, [1])).toMatchObject({ ok: false, exception: 2 });
    expect(c.decodeWrite(16, 0, [0, 0, 0, 1, 1, 7, 0, 0])).toMatchObject({ ok: false, exception: 3 });
  });

  it('OPC-UA: the node map of node-map.ts and the WriteCommand arguments in order', async () => {
    const c = compileProfile(await loadProfile(NATIVE));
    const ua = c.opcua;
    expect(ua?.namespaceUri).toBe('urn:coolctl:sim:ahu');
    const nodes = new Map(ua?.nodes('AHU-07').map((n) => [n.name, n.nodeId]));
    expect(nodes.get('supplyC')).toBe('s=AHU-07.SupplyC');
    expect(nodes.get('mode')).toBe('s=AHU-07.Mode');
    const { call, writes } = ua?.encodeCommand(
      { epoch: 3, heartbeat: 4, remoteEnable: true, fanPct: 50, supplySetpointC: 18 },
      'AHU-07',
    ) ?? { call: undefined, writes: [] };
    expect(writes).toEqual([]);
    expect(call).toEqual({
      objectId: 's=AHU-07',
      methodId: 's=AHU-07.WriteCommand',
      inputArguments: [
        { point: 'epoch', value: 3 },
        { point: 'heartbeat', value: 4 },
        { point: 'remoteEnable', value: true },
        { point: 'fanPct', value: 50 },
        { point: 'supplySetpointC', value: 18 },
      ],
    });
    const d = ua?.decode({ mode: 1, supplyC: 21.5, alarms: 2, fanKw: Number.NaN });
    expect(d).toMatchObject({ mode: 'remote', supplyC: 21.5, alarms: ['trip'], absent: ['fanKw'] });
  });
});

describe('round trips of every type and order', () => {
  const types = ['i16', 'u16', 'i32', 'u32', 'f32'] as const;
  const orders = ['msw-first', 'lsw-first'] as const;
  const bytes = ['big', 'little'] as const;
  for (const type of types) {
    for (const wordOrder of orders) {
      for (const byteOrder of bytes) {
        if ((type === 'i16' || type === 'u16') && wordOrder === 'lsw-first') continue;
        it(`${type} ${wordOrder} ${byteOrder}: command and status decode to what was encoded`, () => {
          const two = type !== 'i16' && type !== 'u16';
          const c = compileProfile(
            profileWith(
              {
                supplyC: {
                  table: 'input',
                  address: 10,
                  type,
                  scale: type === 'f32' ? 1 : 0.1,
                  ...(two ? { wordOrder } : {}),
                },
                returnC: {
                  table: 'input',
                  address: 12,
                  type,
                  scale: type === 'f32' ? 1 : 0.01,
                  ...(two ? { wordOrder } : {}),
                },
                supplySetpointC: {
                  table: 'holding',
                  address: 40,
                  type,
                  scale: type === 'f32' ? 1 : 0.1,
                  write: 16,
                  ...(two ? { wordOrder } : {}),
                },
              },
              { byteOrder },
            ),
          );
          const signed = type === 'i16' || type === 'i32' || type === 'f32';
          const values = signed ? [-40.5, -0.1, 0, 18.3, 21.5, 327.6] : [0, 0.1, 18.3, 21.5, 327.6];
          for (const v of values) {
            const [w] = c.encodeCommand({ supplySetpointC: v });
            expect(w?.values).toHaveLength(two ? 2 : 1);
            const back = c.decodeWrite(16, w?.address ?? -1, w?.values ?? []);
            // float32 carries about 7 significant digits.
            const digits = type === 'f32' ? 3 : 5;
            expect(back.ok && back.command.supplySetpointC).toBeCloseTo(v, digits);
            const image = c.encodeImage({ supplyC: v, returnC: v });
            const d = c.decodeReads(serve(image, c.planReads()));
            expect(d.supplyC).toBeCloseTo(v, digits);
            expect(d.returnC).toBeCloseTo(v, digits);
          }
        });
      }
    }
  }

  it('puts the words where the vendor documents say: high word first, float32 swapped, bytes swapped', () => {
    const words = (
      type: 'i32' | 'f32',
      wordOrder: 'msw-first' | 'lsw-first',
      byteOrder: 'big' | 'little',
      v: number,
    ) =>
      compileProfile(
        profileWith(
          { supplySetpointC: { table: 'holding', address: 40, type, wordOrder, write: 16 } },
          { byteOrder },
        ),
      ).encodeCommand({ supplySetpointC: v })[0]?.values;
    expect(words('i32', 'msw-first', 'big', -2)).toEqual([0xffff, 0xfffe]);
    expect(words('i32', 'msw-first', 'big', 70_000)).toEqual([0x0001, 0x1170]);
    expect(words('i32', 'lsw-first', 'big', 70_000)).toEqual([0x1170, 0x0001]);
    expect(words('f32', 'msw-first', 'big', 21.5)).toEqual([0x41ac, 0x0000]);
    expect(words('f32', 'lsw-first', 'big', 21.5)).toEqual([0x0000, 0x41ac]);
    expect(words('f32', 'msw-first', 'little', 21.5)).toEqual([0xac41, 0x0000]);
  });

  it('tenths of °F: 70.0 °F is 700 and reads back as 21.11 °C', () => {
    const c = compileProfile(
      profileWith({
        supplyC: { table: 'holding', address: 92, type: 'i32', scale: 0.1, unit: 'F' },
        supplySetpointC: { table: 'holding', address: 3, type: 'i16', scale: 0.1, unit: 'F', write: 16 },
      }),
    );
    expect(c.encodeCommand({ supplySetpointC: 21.111_111_111 })[0]?.values).toEqual([700]);
    const d = c.decodeReads([
      { request: { fc: 3, table: 'holding', address: 92, count: 2 }, values: [0, 700] },
    ]);
    expect(d.supplyC).toBeCloseTo((70 - 32) / 1.8, 9);
  });
});

describe('meanings', () => {
  it('a no-data value is absent, never 0; a value the codec would write as no-data is refused', () => {
    const c = compileProfile(
      profileWith({
        supplyC: { table: 'input', address: 0, type: 'i16', scale: 0.1, noData: -32768 },
        returnC: { table: 'input', address: 1, type: 'i16', scale: 0.1, noData: [-32768, 32767] },
        supplySetpointC: { table: 'holding', address: 5, type: 'i16', scale: 0.1, noData: -32768, write: 6 },
      }),
    );
    const d = c.decodeReads([
      { request: { fc: 4, table: 'input', address: 0, count: 2 }, values: [0x8000, 0x7fff] },
    ]);
    expect(d.supplyC).toBeUndefined();
    expect(d.returnC).toBeUndefined();
    expect(d.absent).toEqual(['supplyC', 'returnC']);
    expect(() => c.encodeCommand({ supplySetpointC: -3276.8 })).toThrow(/no-data/);
    // The simulator shows a missing value as the unit's no-data value.
    expect(c.encodeImage({}).get('input')?.get(0)).toBe(0x8000);
  });

  it('an inverted coil writes 1 for stop and reads 1 as off; command bits write a code, not a state', () => {
    const c = compileProfile(
      profileWith({
        run: { table: 'coil', address: 61, type: 'bool', inverted: true, write: 5 },
        remoteEnable: { table: 'holding', address: 426, type: 'u16', command: { on: 2, off: 1 }, write: 6 },
        runFeedback: { table: 'discrete', address: 3, type: 'bool', inverted: true },
      }),
    );
    expect(c.encodeCommand({ run: false })).toEqual([
      { fc: 5, table: 'coil', address: 61, values: [1], points: ['run'] },
    ]);
    expect(c.encodeCommand({ run: true })[0]?.values).toEqual([0]);
    expect(c.encodeCommand({ remoteEnable: true })[0]).toMatchObject({ fc: 6, address: 426, values: [2] });
    expect(c.encodeCommand({ remoteEnable: false })[0]?.values).toEqual([1]);
    // Command bits are not a state: never planned for a read.
    expect(() => c.planReads(['remoteEnable'])).toThrow(ProfileValueError);
    const d = c.decodeReads([
      { request: { fc: 2, table: 'discrete', address: 3, count: 1 }, values: [true] },
    ]);
    expect(d.runFeedback).toBe(false);
  });

  it('mode codes map to coolctl modes; an unmapped code is unknown, with its code', () => {
    const c = compileProfile(
      profileWith({ mode: { table: 'input', address: 279, type: 'u16', enum: { 0: 'local', 1: 'remote' } } }),
    );
    const read = (v: number) =>
      c.decodeReads([{ request: { fc: 4, table: 'input', address: 279, count: 1 }, values: [v] }]);
    expect(read(1)).toMatchObject({ mode: 'remote', modeCode: 1 });
    expect(read(9)).toMatchObject({ mode: 'unknown', modeCode: 9 });
  });

  it('alarm bits of a register and alarm discrete inputs decode to names', () => {
    const c = compileProfile(
      profileWith({
        alarmAirflow: { table: 'discrete', address: 10, type: 'bool', alarm: 'airflow' },
        alarmFan: { table: 'input', address: 20, type: 'bool', bit: 3, alarm: 'fan' },
        alarmWord: { table: 'input', address: 20, type: 'u16', alarmBits: { 0: 'filter', 15: 'fire' } },
      }),
    );
    const image = c.encodeImage({ alarms: ['airflow', 'fan', 'fire'] });
    expect(image.get('input')?.get(20)).toBe(0x8008);
    const d = c.decodeReads(serve(image, c.planReads()));
    expect(d.alarms.sort()).toEqual(['airflow', 'fan', 'fire']);
  });

  it('a command field the profile has no point for is refused, not dropped', () => {
    const c = compileProfile(profileWith({}));
    expect(c.commandPoints).toEqual(new Set(['fanPct']));
    expect(() => c.encodeCommand({ fanPct: 10, supplySetpointC: 20 })).toThrow(/no writable point/);
    try {
      c.encodeCommand({ fanPct: 70_000 });
      expect.unreachable();
    } catch (e) {
      expect((e as ProfileValueError).code).toBe('COOLCTL_E_PROFILE_VALUE');
      expect((e as ProfileValueError).point).toBe('fanPct');
    }
  });

  it('writes in profile order; a writeTogether group goes whole in one request, or not at all', () => {
    const c = compileProfile(
      profileWith(
        {
          watchdogTimerS: { table: 'holding', address: 447, type: 'u16', scale: 60, write: 6 },
          fanPct: { table: 'holding', address: 10, type: 'u16', write: 16 },
          supplySetpointC: { table: 'holding', address: 11, type: 'i16', scale: 0.1, write: 16 },
          run: { table: 'coil', address: 0, type: 'bool', write: 5 },
        },
        { writeTogether: [['fanPct', 'supplySetpointC']] },
      ),
    );
    const w = c.encodeCommand({ run: true, supplySetpointC: 18, fanPct: 60, watchdogTimerS: 180 });
    expect(w.map((r) => [r.fc, r.address, r.values])).toEqual([
      [16, 10, [60, 180]],
      [6, 447, [3]],
      [5, 0, [1]],
    ]);
    expect(() => c.encodeCommand({ fanPct: 60 })).toThrow(/written together with supplySetpointC/);
  });

  it('points since a firmware the unit lacks are left out of reads and writes', () => {
    const p = profileWith({
      fanKw: { table: 'input', address: 50, type: 'u16', scale: 0.1, sinceFirmware: '2.4' },
    });
    p.firmware = 'points marked sinceFirmware need 2.4 or later';
    expect(compileProfile(p, { firmware: '2.3.9' }).planReads()).toHaveLength(1);
    expect(compileProfile(p).planReads()).toHaveLength(1);
    expect(compileProfile(p, { firmware: '2.10' }).planReads()).toHaveLength(2);
  });
});

describe('read planning', () => {
  /** The fewest blocks, by exhaustive dynamic programming over the sorted spans. */
  function fewest(spans: { start: number; end: number }[], max: number, gap: number): number {
    const s = [...spans].sort((a, b) => a.start - b.start || a.end - b.end);
    const best = new Array<number>(s.length + 1).fill(Number.POSITIVE_INFINITY);
    best[0] = 0;
    for (let i = 1; i <= s.length; i++) {
      let end = -1;
      let ok = true;
      for (let j = i; j >= 1 && ok; j--) {
        const a = s[j - 1] as { start: number; end: number };
        end = Math.max(end, a.end);
        for (let k = j; k < i; k++) {
          const prevEnd = Math.max(...s.slice(j - 1, k).map((x) => x.end));
          if ((s[k] as { start: number }).start - prevEnd > gap) ok = false;
        }
        if (!ok || end - a.start > max) break;
        best[i] = Math.min(best[i] as number, (best[j - 1] as number) + 1);
      }
    }
    return best[s.length] as number;
  }

  it('reads a layout in the fewest requests, within maxReadRegisters and maxGap (random layouts)', () => {
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % n;
    };
    for (let trial = 0; trial < 300; trial++) {
      const max = 4 + rnd(30);
      const gap = rnd(6);
      const used = new Set<number>();
      const points: Record<string, ModbusPoint> = {};
      let n = 0;
      for (let k = 0; k < 2 + rnd(12); k++) {
        const wide = rnd(3) === 0;
        const at = rnd(120);
        if (used.has(at) || (wide && used.has(at + 1))) continue;
        used.add(at);
        if (wide) used.add(at + 1);
        points[`a${n++}`] = {
          table: 'input',
          address: at + 1000,
          type: wide ? 'u32' : 'u16',
          alarmBits: { 0: `x${n}` },
        };
      }
      const c = compileProfile(
        profileWith(
          { supplyC: { table: 'holding', address: 100, type: 'i16', scale: 0.1 }, ...points },
          {
            maxReadRegisters: max,
            maxGap: gap,
            numbering: 'wire',
          },
        ),
      );
      const plan = c.planReads().filter((r) => r.table === 'input');
      const spans = Object.values(points).map((p) => ({
        start: Number(p.address),
        end: Number(p.address) + (p.type === 'u32' ? 2 : 1),
      }));
      expect(plan.length).toBe(fewest(spans, max, gap));
      for (const r of plan) {
        expect(r.count).toBeLessThanOrEqual(max);
        // Every unread run inside a block is at most maxGap long.
        const inside = spans.filter((s) => s.start >= r.address && s.end <= r.address + r.count);
        let covered = r.address;
        for (const s of inside.sort((a, b) => a.start - b.start)) {
          expect(s.start - covered).toBeLessThanOrEqual(gap);
          covered = Math.max(covered, s.end);
        }
        expect(covered).toBe(r.address + r.count);
      }
      // And every point is in exactly one block.
      for (const s of spans) {
        expect(plan.filter((r) => s.start >= r.address && s.end <= r.address + r.count)).toHaveLength(1);
      }
    }
  });

  it('never reads a reserved register unless maxGap allows it', () => {
    const pts = {
      supplyC: { table: 'input' as const, address: 1, type: 'i16' as const, scale: 0.1 },
      returnC: { table: 'input' as const, address: 3, type: 'i16' as const, scale: 0.1 },
    };
    expect(compileProfile(profileWith(pts)).planReads()).toHaveLength(2);
    expect(compileProfile(profileWith(pts, { maxGap: 1 })).planReads()).toEqual([
      { fc: 4, table: 'input', address: 1, count: 3 },
    ]);
  });

  it('coils and discrete inputs are read as bits, each table apart', () => {
    const c = compileProfile(
      profileWith(
        {
          runFeedback: { table: 'coil', address: 1012, type: 'bool' },
          alarmCommon: { table: 'coil', address: 1009, type: 'bool', alarm: 'common' },
          alarmAirflow: { table: 'discrete', address: 10, type: 'bool', alarm: 'airflow' },
        },
        { maxGap: 8 },
      ),
    );
    expect(c.planReads()).toEqual([
      { fc: 1, table: 'coil', address: 1009, count: 4 },
      { fc: 2, table: 'discrete', address: 10, count: 1 },
      { fc: 4, table: 'input', address: 0, count: 1 },
    ]);
  });
});
