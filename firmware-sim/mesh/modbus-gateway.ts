// A simulated Modbus TCP sensor gateway: the mesh delivers node reports to it, and it serves each
// node's latest report under the node's slave id (register map: src/sensors/modbus-gateway-map.ts).
// Read-only (FC3 and FC4), with the strict MBAP framing of the simulated air handlers
// (../ahu/modbus-server.ts): every complete request gets an answer or an exact exception
// (Modbus Application Protocol v1.1b3), each exception counted; a stream that cannot be framed, an
// incomplete frame held too long, a client that never reads its answers, and connections past the
// cap are closed, counted and logged (rate-limited). Invariants: an unknown slave id answers
// exception 0x0B like a real gateway; down = connections refused; stop() is bounded and idempotent.
import { createServer, type Server, type Socket } from 'node:net';
import { type Logger, pino } from 'pino';
import { nodeUnitIds } from '../../src/config/site-rules.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { MODBUS_EXCEPTION } from '../../src/devices/modbus/point-map.ts';
import { CoolctlError, ErrorCodes } from '../../src/errors.ts';
import { encodeNode, NODE_HEADER_LEN } from '../../src/sensors/modbus-gateway-map.ts';
import { settlesWithin } from '../../src/util/async.ts';
import { RateLimitedLog } from '../../src/util/log-limit.ts';
import { DEFAULT_FRAME_TIMEOUT_MS, MBAP_HEADER_LEN, readMbapFrames } from '../ahu/mbap-stream.ts';
import { FC, MAX_READ_QUANTITY } from '../ahu/modbus-pdu.ts';
import { DEFAULT_MAX_CONNECTIONS, MAX_PIPELINED_REQUESTS } from '../ahu/modbus-server.ts';
import type { SensorMesh } from './sensor-mesh.ts';

/** A read request's PDU: function code, start address, quantity. */
const READ_PDU_LEN = 5;
/** The most answer bytes one connection may have waiting to be sent: its client is not reading them. */
const MAX_UNSENT_BYTES = MAX_PIPELINED_REQUESTS * (MBAP_HEADER_LEN + 2 + 2 * 125);
const STOP_DEADLINE_MS = 2_000;
const LOG_INTERVAL_MS = 10_000;

export interface ModbusGatewayOptions {
  host: string;
  /** 0 lets the OS pick; start() says which, and a gateway-down fault re-opens the same port. */
  port: number;
  logger?: Logger;
  /** A frame whose first byte arrived longer ago than this and is still incomplete closes its connection. */
  frameTimeoutMs?: number;
  /** Concurrent connections; one more is closed at once. */
  maxConnections?: number;
}

export interface ModbusGatewayCounters {
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
  connectionsAccepted: number;
  /** Closed at once: over the connection cap. */
  connectionsRejected: number;
  /** Unframeable stream (protocol id ≠ 0, MBAP length out of 2…254): connection closed. */
  badFrames: number;
  frameTimeouts: number;
  pipelineOverflows: number;
  socketErrors: number;
}

interface Connection {
  readonly socket: Socket;
  readonly client: string;
  buffer: Buffer;
  frameTimer: NodeJS.Timeout | undefined;
  closed: boolean;
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
    connectionsAccepted: 0,
    connectionsRejected: 0,
    badFrames: 0,
    frameTimeouts: 0,
    pipelineOverflows: 0,
    socketErrors: 0,
  };
  private readonly nodes: Map<number, { id: string; sensors: number }>;
  private readonly mesh: SensorMesh;
  private readonly opts: ModbusGatewayOptions;
  private readonly log: Logger;
  private readonly warns: RateLimitedLog;
  private readonly frameTimeoutMs: number;
  private readonly maxConnections: number;
  private readonly connections = new Set<Connection>();
  private server: Server | undefined;
  private port = 0;
  private stopping: Promise<void> | undefined;

  constructor(site: Site, gatewayId: string, mesh: SensorMesh, opts: ModbusGatewayOptions) {
    this.gatewayId = gatewayId;
    this.mesh = mesh;
    this.opts = opts;
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.warns = new RateLimitedLog(this.log, LOG_INTERVAL_MS);
    this.frameTimeoutMs = opts.frameTimeoutMs ?? DEFAULT_FRAME_TIMEOUT_MS;
    this.maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    const ids = nodeUnitIds(site).get(gatewayId);
    if (!ids) throw new Error(`gateway ${gatewayId} is not a modbus-tcp gateway`);
    const byId = new Map(site.sensorNodes.map((n) => [n.id, n]));
    this.nodes = new Map(
      [...ids].map(([nodeId, unit]) => [unit, { id: nodeId, sensors: byId.get(nodeId)!.sensors.length }]),
    );
  }

  async start(): Promise<{ host: string; port: number }> {
    await this.listen(this.opts.port);
    this.log.info(
      { gateway: this.gatewayId, host: this.opts.host, port: this.port, nodes: this.nodes.size },
      'modbus sensor gateway listening',
    );
    return { host: this.opts.host, port: this.port };
  }

  /** Down: stop listening and drop every connection; up: listen again on the same port. */
  async setDown(down: boolean): Promise<void> {
    if (down) await this.close();
    else if (!this.server && !this.stopping) await this.listen(this.port);
  }

  stop(): Promise<void> {
    this.stopping ??= this.close();
    return this.stopping;
  }

  private listen(port: number): Promise<void> {
    const server = createServer((socket) => this.onConnection(socket));
    return new Promise((resolve, reject) => {
      server.once('error', (err) =>
        reject(
          new CoolctlError(
            ErrorCodes.STARTUP,
            `Modbus sensor gateway ${this.gatewayId} cannot listen on ${this.opts.host}:${port}: ${err.message} (free the port or change gateways[].endpoint.port)`,
            { cause: err },
          ),
        ),
      );
      server.listen(port, this.opts.host, () => {
        server.removeAllListeners('error');
        server.on('error', (err) =>
          this.log.error({ err, gateway: this.gatewayId }, 'modbus listener error'),
        );
        const address = server.address();
        this.port = typeof address === 'object' && address ? address.port : port;
        this.server = server;
        resolve();
      });
    });
  }

  private async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const conn of [...this.connections]) this.closeConnection(conn);
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    if (!(await settlesWithin(closed, STOP_DEADLINE_MS)))
      this.log.warn(
        { gateway: this.gatewayId },
        'modbus gateway listener did not close in time; abandoning it',
      );
  }

  private onConnection(socket: Socket): void {
    socket.on('error', () => {
      this.counters.socketErrors++;
    });
    if (this.stopping || !this.server || this.connections.size >= this.maxConnections) {
      this.counters.connectionsRejected++;
      this.warns.warn(
        'rejected',
        { gateway: this.gatewayId, connections: this.connections.size, maxConnections: this.maxConnections },
        'modbus gateway connection closed at once (connection cap reached or gateway down)',
      );
      socket.destroy();
      return;
    }
    this.counters.connectionsAccepted++;
    socket.setNoDelay(true);
    const conn: Connection = {
      socket,
      client: `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`,
      buffer: Buffer.alloc(0),
      frameTimer: undefined,
      closed: false,
    };
    this.connections.add(conn);
    socket.on('data', (chunk: Buffer) => this.onData(conn, chunk));
    socket.on('close', () => this.closeConnection(conn));
  }

  private closeConnection(conn: Connection): void {
    if (conn.closed) return;
    conn.closed = true;
    clearTimeout(conn.frameTimer);
    conn.buffer = Buffer.alloc(0);
    this.connections.delete(conn);
    conn.socket.destroy();
  }

  /** Answers each whole request at once; a client that does not read its answers is closed. */
  private onData(conn: Connection, chunk: Buffer): void {
    readMbapFrames(conn, chunk, {
      counters: this.counters,
      warns: this.warns,
      logFields: { gateway: this.gatewayId },
      frameTimeoutMs: this.frameTimeoutMs,
      close: (c) => this.closeConnection(c),
      onFrame: (c, frame) => {
        // Answers are written at once; a client that keeps sending but never reads them would
        // otherwise fill our send buffer without bound once the kernel's is full.
        if (c.socket.writableLength > MAX_UNSENT_BYTES) {
          this.counters.pipelineOverflows++;
          this.warns.warn(
            'pipeline',
            { gateway: this.gatewayId, client: c.client },
            'modbus client sends more requests than it reads answers; closing the connection',
          );
          this.closeConnection(c);
          return false;
        }
        c.socket.write(this.answer(frame));
        return true;
      },
    });
  }

  /** One complete frame in, its answer frame out. */
  private answer(frame: Buffer): Buffer {
    this.counters.requests++;
    const unit = frame.readUInt8(6);
    const pdu = frame.subarray(MBAP_HEADER_LEN);
    const fc = pdu.readUInt8(0);
    return this.frame(frame, this.answerPdu(unit, fc, pdu));
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

  private frame(request: Buffer, pdu: Buffer): Buffer {
    const out = Buffer.alloc(MBAP_HEADER_LEN + pdu.length);
    request.copy(out, 0, 0, 4); // transaction id and protocol id, echoed
    out.writeUInt16BE(1 + pdu.length, 4);
    out.writeUInt8(request.readUInt8(6), 6);
    pdu.copy(out, MBAP_HEADER_LEN);
    return out;
  }
}
