// A simulated Modbus TCP sensor gateway: the mesh delivers node reports to it, and it serves each
// node's latest report under the node's slave id (register map: src/sensors/modbus-gateway-map.ts).
// Read-only (FC3 and FC4), behind the listener of the simulated air handlers
// (../ahu/modbus-tcp-listener.ts: connection cap, strict MBAP framing, clients that do not read):
// every complete request gets an answer or an exact exception (Modbus Application Protocol
// v1.1b3), each exception counted. Invariants: an unknown slave id answers exception 0x0B like a
// real gateway; down = connections refused; stop() is bounded and idempotent.
import { type Logger, pino } from 'pino';
import { nodeUnitIds } from '../../src/config/site-rules.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { MODBUS_EXCEPTION } from '../../src/devices/modbus/point-map.ts';
import { encodeNode, NODE_HEADER_LEN } from '../../src/sensors/modbus-gateway-map.ts';
import { RateLimitedLog } from '../../src/util/log-limit.ts';
import { MBAP_HEADER_LEN, mbapAnswer } from '../ahu/mbap-stream.ts';
import { FC, MAX_READ_QUANTITY } from '../ahu/modbus-pdu.ts';
import {
  DEFAULT_MODBUS_IDLE_DISPLACE_AFTER_MS,
  DEFAULT_MODBUS_IDLE_TIMEOUT_MS,
  type ModbusTcpCounters,
  type ModbusTcpEndpointOptions,
  ModbusTcpListener,
  newModbusTcpCounters,
} from '../ahu/modbus-tcp-listener.ts';
import type { SensorMesh } from './sensor-mesh.ts';

/** A read request's PDU: function code, start address, quantity. */
const READ_PDU_LEN = 5;
const LOG_INTERVAL_MS = 10_000;

/** `port`: a gateway-down fault re-opens the same one. */
export interface ModbusGatewayOptions extends ModbusTcpEndpointOptions {
  logger?: Logger;
}

export interface ModbusGatewayCounters extends ModbusTcpCounters {
  /** Complete requests framed (whatever their answer). */
  requests: number;
  /** Slave ids with no node behind the gateway: exception 0x0B. */
  unknownUnit: number;
  /** Reads past the node's block: exception 0x02. */
  badAddress: number;
  /** Function codes other than 3 and 4: exception 0x01. */
  illegalFunction: number;
  /** A read whose PDU length or quantity (1…125) is wrong: exception 0x03. */
  illegalValue: number;
  exceptionsSent: number;
  exceptionsByCode: Record<number, number>;
}

export class ModbusGatewayServer {
  readonly gatewayId: string;
  readonly counters: ModbusGatewayCounters = {
    requests: 0,
    unknownUnit: 0,
    badAddress: 0,
    illegalFunction: 0,
    illegalValue: 0,
    exceptionsSent: 0,
    exceptionsByCode: {},
    ...newModbusTcpCounters(),
  };
  private readonly nodes: Map<number, { id: string; sensors: number }>;
  private readonly mesh: SensorMesh;
  private readonly opts: ModbusGatewayOptions;
  private readonly log: Logger;
  private readonly warns: RateLimitedLog;
  private readonly listener: ModbusTcpListener<undefined>;
  private stopping: Promise<void> | undefined;

  constructor(site: Site, gatewayId: string, mesh: SensorMesh, opts: ModbusGatewayOptions) {
    this.gatewayId = gatewayId;
    this.mesh = mesh;
    this.opts = opts;
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.warns = new RateLimitedLog(this.log, LOG_INTERVAL_MS);
    // The controller polls every pollIntervalS (up to an hour): its connection sits idle that long
    // between polls and must outlast it, whatever the Modbus units' default.
    const pollMs = (site.gateways.find((g) => g.id === gatewayId)?.pollIntervalS ?? 5) * 1000;
    this.listener = new ModbusTcpListener({
      endpoint: {
        ...opts,
        idleTimeoutMs: opts.idleTimeoutMs ?? Math.max(DEFAULT_MODBUS_IDLE_TIMEOUT_MS, 3 * pollMs),
        idleDisplaceAfterMs:
          opts.idleDisplaceAfterMs ?? Math.max(DEFAULT_MODBUS_IDLE_DISPLACE_AFTER_MS, pollMs + 5_000),
      },
      name: `Modbus sensor gateway ${gatewayId}`,
      portSetting: 'gateways[].endpoint.port',
      logFields: { gateway: gatewayId },
      log: this.log,
      warns: this.warns,
      counters: this.counters,
      newState: () => undefined,
      onFrame: (conn, frame) => {
        conn.socket.write(this.answer(frame));
        return true;
      },
    });
    const ids = nodeUnitIds(site).get(gatewayId);
    if (!ids) throw new Error(`gateway ${gatewayId} is not a modbus-tcp gateway`);
    const byId = new Map(site.sensorNodes.map((n) => [n.id, n]));
    this.nodes = new Map(
      [...ids].map(([nodeId, unit]) => [unit, { id: nodeId, sensors: byId.get(nodeId)!.sensors.length }]),
    );
  }

  async start(): Promise<{ host: string; port: number }> {
    const port = await this.listener.listen(this.opts.port);
    this.log.info(
      { gateway: this.gatewayId, host: this.opts.host, port, nodes: this.nodes.size },
      'modbus sensor gateway listening',
    );
    return { host: this.opts.host, port };
  }

  /** Down: stop listening and drop every connection; up: listen again on the same port. */
  async setDown(down: boolean): Promise<void> {
    if (down) await this.listener.close('gateway down');
    else if (!this.listener.listening && !this.stopping) await this.listener.listen(this.listener.port);
  }

  stop(): Promise<void> {
    this.stopping ??= this.listener.stop().then(() => undefined);
    return this.stopping;
  }

  /** One complete frame in, its answer frame out. */
  private answer(frame: Buffer): Buffer {
    this.counters.requests++;
    const unit = frame.readUInt8(6);
    const pdu = frame.subarray(MBAP_HEADER_LEN);
    const fc = pdu.readUInt8(0);
    return mbapAnswer(frame, this.answerPdu(unit, fc, pdu));
  }

  private answerPdu(unit: number, fc: number, pdu: Buffer): Buffer {
    if (fc !== FC.readHolding && fc !== FC.readInput) {
      this.counters.illegalFunction++;
      return this.exception(fc, MODBUS_EXCEPTION.illegalFunction);
    }
    const quantity = pdu.length === READ_PDU_LEN ? pdu.readUInt16BE(3) : 0;
    if (quantity < 1 || quantity > MAX_READ_QUANTITY) {
      this.counters.illegalValue++;
      return this.exception(fc, MODBUS_EXCEPTION.illegalDataValue);
    }
    const node = this.nodes.get(unit);
    if (!node) {
      this.counters.unknownUnit++;
      return this.exception(fc, MODBUS_EXCEPTION.gatewayTargetFailedToRespond);
    }
    const address = pdu.readUInt16BE(1);
    if (address + quantity > NODE_HEADER_LEN + node.sensors) {
      this.counters.badAddress++;
      return this.exception(fc, MODBUS_EXCEPTION.illegalDataAddress);
    }
    const held = this.mesh.heldReport(this.gatewayId, node.id);
    const sensorIds = this.mesh.nodeSensorIds(node.id);
    const words = encodeNode({
      seq: held?.report.seq ?? 0,
      ageS: held ? (Date.now() - held.receivedAtMs) / 1000 : null,
      batteryPct: held?.report.batteryPct ?? 0,
      rssiDbm: held?.report.rssiDbm ?? 0,
      hops: held?.report.hops ?? 0,
      values: sensorIds.map((id) => held?.report.readings.find((r) => r.sensor === id)?.value ?? null),
    }).slice(address, address + quantity);
    const out = Buffer.alloc(2 + 2 * quantity);
    out.writeUInt8(fc, 0);
    out.writeUInt8(2 * quantity, 1);
    for (const [i, w] of words.entries()) out.writeUInt16BE(w, 2 + 2 * i);
    return out;
  }

  private exception(fc: number, code: number): Buffer {
    this.counters.exceptionsSent++;
    this.counters.exceptionsByCode[code] = (this.counters.exceptionsByCode[code] ?? 0) + 1;
    return Buffer.from([(fc | 0x80) & 0xff, code]);
  }
}
