// A simulated Modbus TCP sensor gateway: the mesh delivers node reports to it, and it serves each
// node's latest report under the node's slave id (register map: src/sensors/modbus-gateway-map.ts).
// Built on modbus-serial's ServerTCP (read-only registers: its write-path quirks do not matter here).
// Invariants: an unknown slave id answers exception 0x0B like a real gateway; down = connections
// refused; stop() is bounded and idempotent.
import modbusSerial from 'modbus-serial';
import type { Logger } from 'pino';
import { nodeUnitIds } from '../../src/config/site-rules.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { CoolctlError, ErrorCodes } from '../../src/errors.ts';
import { encodeNode, NODE_HEADER_LEN } from '../../src/sensors/modbus-gateway-map.ts';
import { freePort } from '../../src/util/async.ts';
import type { SensorMesh } from './sensor-mesh.ts';

const ServerTCP = modbusSerial.ServerTCP;
const GATEWAY_TARGET_FAILED = 0x0b;
const ILLEGAL_ADDRESS = 0x02;

export interface ModbusGatewayOptions {
  host: string;
  /** 0 picks a free port; start() says which. */
  port: number;
  logger?: Logger;
}

export class ModbusGatewayServer {
  readonly gatewayId: string;
  readonly counters = { requests: 0, unknownUnit: 0, badAddress: 0 };
  private readonly nodes: Map<number, { id: string; sensors: number }>;
  private readonly mesh: SensorMesh;
  private readonly opts: ModbusGatewayOptions;
  private server: InstanceType<typeof ServerTCP> | undefined;
  private port = 0;
  private stopping: Promise<void> | undefined;

  constructor(site: Site, gatewayId: string, mesh: SensorMesh, opts: ModbusGatewayOptions) {
    this.gatewayId = gatewayId;
    this.mesh = mesh;
    this.opts = opts;
    const ids = nodeUnitIds(site).get(gatewayId);
    if (!ids) throw new Error(`gateway ${gatewayId} is not a modbus-tcp gateway`);
    const byId = new Map(site.sensorNodes.map((n) => [n.id, n]));
    this.nodes = new Map(
      [...ids].map(([nodeId, unit]) => [unit, { id: nodeId, sensors: byId.get(nodeId)!.sensors.length }]),
    );
  }

  async start(): Promise<{ host: string; port: number }> {
    this.port = this.opts.port === 0 ? await freePort(this.opts.host) : this.opts.port;
    await this.listen();
    this.opts.logger?.info(
      { gateway: this.gatewayId, host: this.opts.host, port: this.port, nodes: this.nodes.size },
      'modbus sensor gateway listening',
    );
    return { host: this.opts.host, port: this.port };
  }

  /** Down: stop listening and drop every connection; up: listen again on the same port. */
  async setDown(down: boolean): Promise<void> {
    if (down) await this.close();
    else if (!this.server && !this.stopping) await this.listen();
  }

  stop(): Promise<void> {
    this.stopping ??= this.close();
    return this.stopping;
  }

  private listen(): Promise<void> {
    const server = new ServerTCP(
      {
        getHoldingRegister: (addr: number, unit: number) => this.registers(unit, addr, 1)[0]!,
        getInputRegister: (addr: number, unit: number) => this.registers(unit, addr, 1)[0]!,
        getMultipleHoldingRegisters: (addr: number, len: number, unit: number) =>
          this.registers(unit, addr, len),
        getMultipleInputRegisters: (addr: number, len: number, unit: number) =>
          this.registers(unit, addr, len),
      },
      { host: this.opts.host, port: this.port, unitID: 255 },
    );
    // A client that vanishes mid-frame must not take the gateway down.
    server.on('socketError', () => {});
    return new Promise((resolve, reject) => {
      server.once('initialized', () => {
        this.server = server;
        resolve();
      });
      server.once('serverError', (err: Error | null) =>
        reject(
          new CoolctlError(
            ErrorCodes.STARTUP,
            `Modbus sensor gateway ${this.gatewayId} cannot listen on ${this.opts.host}:${this.port}: ${err?.message} (free the port or change gateways[].endpoint.port)`,
            { cause: err },
          ),
        ),
      );
    });
  }

  private registers(unit: number, addr: number, len: number): number[] {
    this.counters.requests++;
    const node = this.nodes.get(unit);
    if (!node) {
      this.counters.unknownUnit++;
      throw { modbusErrorCode: GATEWAY_TARGET_FAILED, msg: `no node with slave id ${unit}` };
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
    });
    if (addr + len > NODE_HEADER_LEN + node.sensors) {
      this.counters.badAddress++;
      throw {
        modbusErrorCode: ILLEGAL_ADDRESS,
        msg: `registers ${addr}..${addr + len - 1} beyond the node block`,
      };
    }
    return words.slice(addr, addr + len);
  }

  private close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, 2000);
      server.close(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
