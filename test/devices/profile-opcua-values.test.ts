// What a vendor profile's OPC-UA decoder takes as a value, and which alarms a unit's readings can
// carry: no node-opcua server, only the compiled profile and OpcuaProfileNodes. A unit's wrong-typed
// data is absent (NaN), never a coerced figure; every bit of an alarm word has its bit in `alarms`.
import { describe, expect, it } from 'vitest';
import { supportedFields } from '../../src/devices/opcua/profile-command.ts';
import { OpcuaProfileNodes } from '../../src/devices/opcua/profile-nodes.ts';
import { compileProfile } from '../../src/devices/profile/codec.ts';
import { loadProfile, parseProfile } from '../../src/devices/profile/load.ts';
import { ConfigError } from '../../src/errors.ts';

const SHIPPED = 'config/profiles/opcua-tenths-c-method-heartbeat.yaml';

describe('vendor OPC-UA values', () => {
  it('only numbers are values, and Booleans only on flag and alarm points', async () => {
    const ua = compileProfile(await loadProfile(SHIPPED)).opcua!;
    for (const junk of ['', '21.5', [], [215], {}, new Date(0), true, Number.POSITIVE_INFINITY]) {
      const d = ua.decode({ supplyC: junk });
      expect(d.supplyC, String(junk)).toBeUndefined();
      expect(d.absent, String(junk)).toEqual(['supplyC']);
    }
    expect(ua.decode({ supplyC: 215 }).supplyC).toBeCloseTo(21.5, 9);
    // A Boolean is a value where the point is a flag: the unit's run state, an alarm.
    expect(ua.decode({ runFeedback: true })).toMatchObject({ runFeedback: true, absent: [] });
    expect(ua.decode({ runFeedback: 'yes' }).absent).toEqual(['runFeedback']);
  });

  it('every bit of an alarm word sets its bit of `alarms`, not only bit 0', async () => {
    const profile = compileProfile(await loadProfile(SHIPPED));
    const nodes = new OpcuaProfileNodes(profile, 'AHU-1');
    // alarmWord bits: 0 commonAlarm, 1 supplyAirHighTemp, 2 bmsCommLoss.
    const high = nodes.readings({ alarmWord: 2 }, 0);
    expect(high.alarmNames).toEqual(['supplyAirHighTemp']);
    expect(high.alarms).not.toBe(0);
    const all = nodes.readings({ alarmWord: 7 }, 0);
    expect(all.alarmNames?.sort()).toEqual(['bmsCommLoss', 'commonAlarm', 'supplyAirHighTemp']);
    // Three alarms, three distinct bits.
    expect(all.alarms.toString(2).replace(/0/g, '')).toBe('111');
  });
});

describe('vendor OPC-UA nodes', () => {
  const profile = (points: string) => `profile: shared-node
description: points that share a variable
source: test
protocol: opcua
fencing: [lease]
watchdog: { style: none }
opcua:
  namespaceUri: urn:test:shared
  points:
    returnC: { nodeId: "s={unit}.Return" }
${points}
`;
  function problems(text: string): { path: string; message: string; line?: number }[] {
    try {
      parseProfile(text, '/x/shared-node.yaml');
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      return (e as ConfigError).problems;
    }
    return [];
  }

  it('a command point on the node of an alarm word or a reading is refused, with its line', () => {
    const p = problems(
      profile(`    supplyC: { nodeId: "s={unit}.Alarms", scale: 0.1 }
    alarmWord: { nodeId: "s={unit}.Alarms", alarmBits: { 0: common } }
    fanPct: { nodeId: "s={unit}.Alarms", write: true }`),
    );
    expect(p.map((x) => [x.path, x.line])).toEqual([
      ['/opcua/points/alarmWord/nodeId', 12],
      ['/opcua/points/fanPct/nodeId', 13],
    ]);
    expect(p[1]?.message).toBe('fanPct is on the same node as supplyC (s={unit}.Alarms)');
  });

  it('two points on one browse path are refused too; distinct nodes load', () => {
    const p = problems(
      profile(`    supplyC: { browsePath: "/Objects/2:{unit}/2:Supply" }
    supplySetpointC: { browsePath: "/Objects/2:{unit}/2:Supply", write: true }`),
    );
    expect(p.map((x) => x.path)).toEqual(['/opcua/points/supplySetpointC/browsePath']);
    expect(
      problems(
        profile(`    supplyC: { browsePath: "/Objects/2:{unit}/2:Supply" }
    supplySetpointC: { nodeId: "s={unit}.Setpoint", write: true }`),
      ),
    ).toEqual([]);
  });
});

describe('vendor OPC-UA commands', () => {
  const narrow = `profile: narrow-fan
description: a fan command in a UInt16 of ten-thousandths
source: test
protocol: opcua
fencing: [lease]
watchdog: { style: none }
opcua:
  namespaceUri: urn:test:narrow
  points:
    supplyC: { nodeId: "s={unit}.Supply" }
    fanPct: { nodeId: "s={unit}.Fan", type: UInt16, scale: 0.0001, write: true }
    supplySetpointC: { nodeId: "s={unit}.Sp", type: Int16, scale: 0.1, write: true }
`;

  it('a value beyond the point’s integer type is refused (PROFILE_VALUE), never wrapped or clipped', () => {
    const ua = compileProfile(parseProfile(narrow)).opcua!;
    expect(ua.encodeCommand({ fanPct: 6, supplySetpointC: 19.5 }, 'U').writes.map((w) => w.value)).toEqual([
      60_000, 195,
    ]);
    expect(() => ua.encodeCommand({ fanPct: 50 }, 'U')).toThrow(
      /fanPct: 50 is 500000 as the unit's UInt16, outside 0…65535/,
    );
    expect(() => ua.encodeCommand({ supplySetpointC: 3300 }, 'U')).toThrow(/outside -32768…32767/);
  });

  it('a point whose sample value it cannot hold is still a command point: never silently not written', () => {
    const ua = compileProfile(parseProfile(narrow)).opcua!;
    expect([...supportedFields(ua, 'U')].sort()).toEqual(['fanPct', 'supplySetpointC']);
  });
});
