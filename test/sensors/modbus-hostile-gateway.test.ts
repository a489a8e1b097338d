// Sensor judgement against a broken or hostile Modbus TCP sensor gateway, a real MBAP server on
// loopback scripted per slave id: one node that answers an exception must not blind the healthy
// groups behind the same gateway (and push them into their safe fallback); a node block whose
// figures no report may carry (battery 6553.5 %, 65 535 hops) is dropped and counted, not shown to
// an operator; and nobody on the MQTT broker can speak for a node the controller polls over Modbus
// (keeping a dead gateway "online", or overwriting what the gateway says).
import { createServer, type Server, type Socket } from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { nodeUnitIds } from '../../src/config/site-rules.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { encodeNode, NODE_HEADER_LEN } from '../../src/sensors/modbus-gateway-map.ts';
import { ModbusSource } from '../../src/sensors/modbus-source.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { waitFor } from '../helpers.ts';
import { captureLogs } from '../support/log-lines.ts';

const TIME_SCALE = 20;

/** What the gateway answers a read of `count` registers from slave id `unit`: words, or an exception code. */
type Answer = { words: number[] } | { exception: number };

interface HostileGateway {
  server: Server;
  port: number;
  answer: (unit: number, count: number) => Answer;
  /** Bytes to glue after the answer to slave id `unit`, or to send 20 ms later (none by default). */
  extra: (unit: number) => { glued?: Buffer; later?: Buffer } | undefined;
  /** Stops listening and drops every connection: the gateway is gone. */
  kill(): Promise<void>;
}

const servers: Server[] = [];
const sources: ModbusSource[] = [];

afterEach(async () => {
  for (const s of sources.splice(0)) await s.stop();
  for (const s of servers.splice(0)) await new Promise<void>((r) => s.close(() => r()));
});

async function hostileGateway(answer: HostileGateway['answer']): Promise<HostileGateway> {
  const sockets = new Set<Socket>();
  const server = createServer();
  const gw: HostileGateway = {
    server,
    port: 0,
    answer,
    extra: () => undefined,
    kill: () => {
      const closed = new Promise<void>((r) => server.close(() => r()));
      for (const s of sockets) s.destroy();
      servers.splice(servers.indexOf(server), 1);
      return closed;
    },
  };
  gw.server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 12) {
        const req = pending.subarray(0, 12);
        pending = pending.subarray(12);
        const unit = req[6]!;
        const fc = req[7]!;
        const a = gw.answer(unit, req.readUInt16BE(10));
        const pdu =
          'exception' in a
            ? Buffer.from([fc | 0x80, a.exception])
            : Buffer.concat([
                Buffer.from([fc, 2 * a.words.length]),
                Buffer.from(a.words.flatMap((w) => [w >> 8, w & 0xff])),
              ]);
        const mbap = Buffer.alloc(7);
        req.copy(mbap, 0, 0, 4);
        mbap.writeUInt16BE(pdu.length + 1, 4);
        mbap[6] = unit;
        const extra = gw.extra(unit);
        socket.write(Buffer.concat([mbap, pdu, extra?.glued ?? Buffer.alloc(0)]));
        if (extra?.later) setTimeout(() => socket.destroyed || socket.write(extra.later!), 20);
      }
    });
  });
  await new Promise<void>((r) => gw.server.listen(0, '127.0.0.1', () => r()));
  gw.port = (gw.server.address() as { port: number }).port;
  servers.push(gw.server);
  return gw;
}

const base = generateSite({ ...demoShape, modbusBasePort: 0, opcuaShare: 0 });
const site: Site = {
  ...base,
  gateways: base.gateways.map((g) =>
    g.id === 'gw-2'
      ? { ...g, transport: 'modbus-tcp', endpoint: { host: '127.0.0.1', port: 0 }, pollIntervalS: 1 }
      : g,
  ),
};
const gw2Nodes = site.sensorNodes.filter((n) => n.gateway === 'gw-2');
const gw2Groups = site.controlGroups.filter((g) =>
  g.sensorNodes.every((id) => gw2Nodes.some((n) => n.id === id)),
);
const unitOf = nodeUnitIds(site).get('gw-2')!;
const nodeOfUnit = new Map([...unitOf].map(([node, unit]) => [unit, node]));

/** A healthy node's block: a new seq at every read, values that move like air does. */
function healthy(seqs: Map<number, number>, unit: number, count: number): Answer {
  const seq = (seqs.get(unit) ?? 0) + 1;
  seqs.set(unit, seq);
  const values = Array.from(
    { length: count - NODE_HEADER_LEN },
    (_, i) => 22 + i * 0.5 + 0.05 * Math.sin(seq + unit + i),
  );
  return { words: encodeNode({ seq, ageS: 0, batteryPct: 90, rssiDbm: -60, hops: 1, values }) };
}

function start(port: number) {
  const logs = captureLogs();
  const registry = new Registry();
  const store = new SensorStore(site, { timeScale: TIME_SCALE, logger: logs.logger });
  const source = new ModbusSource(site, store, {
    endpoints: { 'gw-2': { host: '127.0.0.1', port } },
    timeScale: TIME_SCALE,
    timeoutMs: 500,
    logger: logs.logger,
    registry,
  });
  sources.push(source);
  source.start();
  const online = () => store.gatewayStates().find((g) => g.id === 'gw-2')?.online;
  const metric = async (name: string, labels = '') => {
    const text = await registry.getSingleMetricAsString(name);
    const m = new RegExp(`^${name}${labels.replace(/[{}]/g, '\\$&')} (\\d+)$`, 'm').exec(text);
    return Number(m?.[1]);
  };
  return { store, source, logs, online, metric };
}

describe('a Modbus sensor gateway that is broken or hostile', () => {
  it('bytes no read asked for are counted by reason, logged at most once in 10 s, and cost the connection', async () => {
    const seqs = new Map<number, number>();
    const gw = await hostileGateway((unit, count) => healthy(seqs, unit, count));
    const lastUnit = Math.max(...unitOf.values());
    let glue = true;
    gw.extra = (unit) => {
      if (glue) {
        glue = false;
        return { glued: Buffer.from([0, 1, 2]) };
      }
      // After the last node of a round the poller is idle until the next one (50 ms here).
      return unit === lastUnit && s.source.counters.strays.idle === 0
        ? { later: Buffer.from([9, 9, 9, 9]) }
        : undefined;
    };
    const s = start(gw.port);
    await waitFor(
      'both kinds of stray seen',
      () => s.source.counters.strays['after-answer'] >= 1 && s.source.counters.strays.idle >= 1,
      { timeoutMs: 5_000 },
    );
    expect(await s.metric('coolctl_sensor_modbus_stray_frames_total', '{reason="after-answer"}')).toBe(1);
    expect(
      await s.metric('coolctl_sensor_modbus_stray_frames_total', '{reason="idle"}'),
    ).toBeGreaterThanOrEqual(1);
    // Each stray cost its connection; the polls on fresh ones go on, and the gateway stays trusted.
    expect(s.source.counters.connects).toBeGreaterThanOrEqual(3);
    const newReports = s.source.counters.newReports;
    await waitFor(
      'new reports after the strays',
      () => s.source.counters.newReports > newReports + gw2Nodes.length,
    );
    expect(s.online()).toBe(true);
    const lines = s.logs
      .parsed()
      .filter((l) => l.msg === 'unsolicited bytes from Modbus gateway; connection dropped');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ gateway: 'gw-2', level: 40 });
  });

  it('one node answering an exception does not take the gateway offline nor blind the other groups', async () => {
    expect(gw2Groups.length).toBeGreaterThan(1);
    // The broken node: the last node of the last group (its block is shorter than the site says,
    // so the read goes past it: 0x02, illegal data address; or the gateway fails it: 0x04).
    const brokenGroup = gw2Groups.at(-1)!;
    const broken = unitOf.get(brokenGroup.sensorNodes.at(-1)!)!;
    const healthyGroups = gw2Groups.filter((g) => g !== brokenGroup);
    const seqs = new Map<number, number>();
    let code = 0x02;
    const gw = await hostileGateway((unit, count) =>
      unit === broken ? { exception: code } : healthy(seqs, unit, count),
    );
    const { store, source, logs, online, metric } = start(gw.port);

    await waitFor('healthy groups ok', () => healthyGroups.every((g) => store.view(g.id).verdict === 'ok'), {
      timeoutMs: 10_000,
    });
    // Several polls later: the gateway answered every one of them, so it is online throughout.
    await waitFor('several polls', () => source.counters.newReports > 4 * gw2Nodes.length, {
      timeoutMs: 15_000,
    });
    code = 0x04;
    const before = source.counters.newReports;
    await waitFor('more polls', () => source.counters.newReports > before + 2 * gw2Nodes.length, {
      timeoutMs: 15_000,
    });
    expect(online()).toBe(true);
    expect(logs.parsed().filter((l) => l.msg === 'sensor gateway offline')).toEqual([]);
    for (const g of healthyGroups) expect(store.view(g.id).verdict).toBe('ok');
    // The broken node's sensors have nothing to be trusted by.
    const brokenNode = nodeOfUnit.get(broken)!;
    expect(store.sensor(brokenNode, 'inlet-top')!.quality).toBe('bad');
    // Counted under its own outcome, and said in a line that names the node and the code.
    expect(await metric('coolctl_sensor_modbus_polls_total', '{outcome="exception"}')).toBeGreaterThan(2);
    expect(await metric('coolctl_sensor_modbus_polls_total', '{outcome="failed"}')).toBe(0);
    const line = logs.parsed().find((l) => l.msg === 'Modbus gateway answered a node read with an exception');
    expect(line).toMatchObject({ gateway: 'gw-2', sensorNode: brokenNode, modbusCode: 2 });
  });

  it('a gateway that answers every node with an exception is offline: its groups are not trusted', async () => {
    const gw = await hostileGateway(() => ({ exception: 0x04 }));
    const { store, online } = start(gw.port);
    await waitFor('gw-2 offline', () => online() === false, { timeoutMs: 10_000 });
    for (const g of gw2Groups) expect(store.view(g.id).verdict).toBe('blind');
  });

  it('a node block with figures no report may carry is dropped and counted, not shown', async () => {
    const seqs = new Map<number, number>();
    const absurd = unitOf.get(gw2Nodes[0]!.id)!;
    const gw = await hostileGateway((unit, count) => {
      const a = healthy(seqs, unit, count);
      if (unit === absurd && 'words' in a) {
        a.words[3] = 0xffff; // battery 6553.5 %
        a.words[5] = 0xffff; // 65 535 hops
      }
      return a;
    });
    const { store, source, logs, metric } = start(gw.port);
    await waitFor('the other nodes reported', () => source.counters.newReports > 2 * gw2Nodes.length, {
      timeoutMs: 15_000,
    });
    const health = store.nodeHealth().find((h) => h.node === gw2Nodes[0]!.id)!;
    expect(health.batteryPct).toBeNull();
    expect(health.hops).toBeNull();
    expect(health.reports).toBe(0);
    expect(store.sensor(gw2Nodes[0]!.id, 'inlet-top')!.value).toBeNull();
    expect(await metric('coolctl_sensor_modbus_polls_total', '{outcome="malformed"}')).toBeGreaterThan(1);
    const line = logs.parsed().find((l) => l.msg === 'malformed node block from Modbus gateway');
    expect(line).toMatchObject({ gateway: 'gw-2', sensorNode: gw2Nodes[0]!.id });
    expect(String(line?.err)).toMatch(/batteryPct|hops/);
    // The other nodes' reports apply.
    expect(store.nodeHealth().find((h) => h.node === gw2Nodes[1]!.id)!.batteryPct).toBe(90);
  });

  it('a report over MQTT for a node polled over Modbus is dropped: it neither revives the gateway nor overrides it', async () => {
    const seqs = new Map<number, number>();
    const gw = await hostileGateway((unit, count) => healthy(seqs, unit, count));
    const { store, online } = start(gw.port);
    const node = gw2Nodes[0]!;
    await waitFor('a reading over Modbus', () => store.sensor(node.id, 'inlet-top')?.source === 'modbus', {
      timeoutMs: 10_000,
    });
    // Someone on the broker publishes on gw-2's topic (the same prefix as the site's MQTT gateways)
    // a cool reading with a seq far ahead: old code took it, and dropped the gateway's own reports
    // as out of order from then on.
    const forged = (seq: number) =>
      JSON.stringify({
        node: node.id,
        gateway: 'gw-2',
        seq,
        readings: [{ sensor: 'inlet-top', kind: 'inlet-top', value: 18 }],
      });
    expect(store.ingestPayload(forged(2 ** 31), 'mqtt', 'gw-2', node.id)).toBe('topic-mismatch');
    expect(store.counters.drops['topic-mismatch']).toBe(1);
    expect(store.sensor(node.id, 'inlet-top')!.value).not.toBe(18);

    // The gateway dies; forged reports must not keep it (and its groups) trusted.
    await gw.kill();
    await waitFor('gw-2 offline', () => online() === false, { timeoutMs: 10_000 });
    for (let seq = 2 ** 31 + 1; seq < 2 ** 31 + 5; seq++)
      expect(store.ingestPayload(forged(seq), 'mqtt', 'gw-2', node.id)).toBe('topic-mismatch');
    expect(online()).toBe(false);
    for (const g of gw2Groups) expect(store.view(g.id).verdict).toBe('blind');
  });
});
