// Modbus TCP (MBAP framing) for the two requests the air-handler adapter makes — read holding
// registers (FC3) and write multiple registers (FC16) — one at a time on a socket the adapter
// opened and owns. Every answer is checked against its request (transaction id, unit id, function
// code, lengths, echoed address); anything else is a ModbusFrameError and the adapter drops the
// connection. There is no timer here: the adapter's call deadline bounds each request, and a
// closed socket fails the request in flight.
// Why not modbus-serial, which still speaks RTU: at 1 000 units its TCP path allocated ~25 MB/s
// (a transaction object kept in a table it never cleans, a timer, debug arguments, three Buffers
// per request) and much of it outlived the young generation: old-space garbage that cost a
// mark-compact every ~2 s (docs/scale.md).
import type { Socket } from 'node:net';

const MBAP_LEN = 7;
const READ_HOLDING_REGISTERS = 0x03;
const WRITE_MULTIPLE_REGISTERS = 0x10;
/** Registers one request may read (FC3) or write (FC16), by the Modbus application protocol. */
export const MAX_READ_REGISTERS = 125;
export const MAX_WRITE_REGISTERS = 123;
/** Largest MBAP length field: unit id + a PDU of at most 253 bytes. */
const MAX_MBAP_LENGTH = 254;

/** The answer is not a valid Modbus frame for the request in flight. */
export class ModbusFrameError extends Error {
  override readonly name = 'ModbusFrameError';
}

/** The unit answered with a Modbus exception. */
export class ModbusExceptionError extends Error {
  override readonly name = 'ModbusExceptionError';
  readonly modbusCode: number;
  constructor(code: number) {
    super(`Modbus exception ${code}`);
    this.modbusCode = code;
  }
}

/** The connection closed with the request in flight, or before it was sent. */
export class ModbusConnectionClosedError extends Error {
  override readonly name = 'PortNotOpenError';
}

interface Pending {
  tid: number;
  fc: number;
  address: number;
  count: number;
  resolve: (value: number[]) => void;
  reject: (err: Error) => void;
}

export class ModbusTcpClient {
  private readonly unitId: number;
  private socket: Socket | undefined;
  private closed = false;
  private tid = 0;
  private pending: Pending | undefined;
  /** Bytes of an answer that arrived in pieces (rare: answers are a few dozen bytes). */
  private partial: Buffer | undefined;

  constructor(unitId: number) {
    this.unitId = unitId;
  }

  /** The connected socket; bytes must reach `receive` (the adapter reads with net's `onread`). */
  attach(socket: Socket): void {
    this.socket = socket;
    socket.once('close', () => {
      this.closed = true;
      this.fail(new ModbusConnectionClosedError('connection closed'));
    });
  }

  readHoldingRegisters(address: number, count: number): Promise<{ data: number[] }> {
    if (!(count >= 1 && count <= MAX_READ_REGISTERS)) {
      return Promise.reject(new RangeError(`read of ${count} registers (1…${MAX_READ_REGISTERS})`));
    }
    const frame = this.frame(READ_HOLDING_REGISTERS, 4);
    frame.writeUInt16BE(address, MBAP_LEN + 1);
    frame.writeUInt16BE(count, MBAP_LEN + 3);
    return this.send(frame, READ_HOLDING_REGISTERS, address, count).then((data) => ({ data }));
  }

  writeRegisters(address: number, words: readonly number[]): Promise<{ address: number; length: number }> {
    const n = words.length;
    if (!(n >= 1 && n <= MAX_WRITE_REGISTERS)) {
      return Promise.reject(new RangeError(`write of ${n} registers (1…${MAX_WRITE_REGISTERS})`));
    }
    const frame = this.frame(WRITE_MULTIPLE_REGISTERS, 5 + 2 * n);
    frame.writeUInt16BE(address, MBAP_LEN + 1);
    frame.writeUInt16BE(n, MBAP_LEN + 3);
    frame[MBAP_LEN + 5] = 2 * n;
    for (let i = 0; i < n; i++) frame.writeUInt16BE(words[i]!, MBAP_LEN + 6 + 2 * i);
    return this.send(frame, WRITE_MULTIPLE_REGISTERS, address, n).then(() => ({ address, length: n }));
  }

  /** Bytes from the socket, in order. */
  receive(chunk: Buffer): void {
    if (!this.pending) return; // nothing asked: a stray answer (its tid would not match anyway)
    let buf = chunk;
    if (this.partial) {
      buf = Buffer.concat([this.partial, chunk]);
      this.partial = undefined;
    }
    if (buf.length < MBAP_LEN) {
      this.partial = Buffer.from(buf);
      return;
    }
    const length = buf.readUInt16BE(4);
    if (buf.readUInt16BE(2) !== 0 || length < 3 || length > MAX_MBAP_LENGTH) {
      this.fail(
        new ModbusFrameError(
          `Unexpected data error: not an MBAP header (protocol ${buf.readUInt16BE(2)}, length ${length})`,
        ),
      );
      return;
    }
    const end = 6 + length;
    if (buf.length < end) {
      this.partial = Buffer.from(buf);
      return;
    }
    // One request at a time: bytes after its answer answer nothing, and are dropped.
    const result = this.answer(buf, end);
    if (result instanceof Error) this.fail(result);
    else this.settle(result);
  }

  /** Closes the socket; the request in flight fails. */
  destroy(): void {
    this.closed = true;
    this.socket?.destroy();
    this.fail(new ModbusConnectionClosedError('connection closed'));
  }

  private frame(fc: number, pduBodyLen: number): Buffer {
    this.tid = (this.tid + 1) & 0xffff;
    const frame = Buffer.allocUnsafe(MBAP_LEN + 1 + pduBodyLen);
    frame.writeUInt16BE(this.tid, 0);
    frame.writeUInt16BE(0, 2);
    frame.writeUInt16BE(2 + pduBodyLen, 4);
    frame[6] = this.unitId;
    frame[7] = fc;
    return frame;
  }

  private send(frame: Buffer, fc: number, address: number, count: number): Promise<number[]> {
    if (this.closed || !this.socket)
      return Promise.reject(new ModbusConnectionClosedError('connection not open'));
    if (this.pending)
      return Promise.reject(new Error('a Modbus request is already in flight on this connection'));
    return new Promise<number[]>((resolve, reject) => {
      this.pending = { tid: this.tid, fc, address, count, resolve, reject };
      this.partial = undefined;
      this.socket!.write(frame);
    });
  }

  /** The answer in `buf[0, end)` to the request in flight: its registers (none for a write), or why not. */
  private answer(buf: Buffer, end: number): number[] | Error {
    const p = this.pending!;
    const tid = buf.readUInt16BE(0);
    const unit = buf[6]!;
    const fc = buf[7]!;
    if (tid !== p.tid)
      return new ModbusFrameError(`Unexpected data error: answer to transaction ${tid}, asked ${p.tid}`);
    if (unit !== this.unitId) {
      return new ModbusFrameError(
        `Unexpected data error: answer from unit ${unit}, asked unit ${this.unitId}`,
      );
    }
    if (fc === (p.fc | 0x80)) {
      return end === MBAP_LEN + 2
        ? new ModbusExceptionError(buf[8]!)
        : new ModbusFrameError('Data length error: exception answer of the wrong length');
    }
    if (fc !== p.fc)
      return new ModbusFrameError(`Unexpected data error: function ${fc} answers function ${p.fc}`);
    if (fc === READ_HOLDING_REGISTERS) {
      const bytes = buf[8]!;
      if (bytes !== 2 * p.count || end !== MBAP_LEN + 2 + bytes) {
        return new ModbusFrameError(`Data length error: ${bytes} bytes for ${p.count} registers`);
      }
      const data = new Array<number>(p.count);
      for (let i = 0; i < p.count; i++) data[i] = buf.readUInt16BE(MBAP_LEN + 2 + 2 * i);
      return data;
    }
    if (end !== MBAP_LEN + 5 || buf.readUInt16BE(8) !== p.address || buf.readUInt16BE(10) !== p.count) {
      return new ModbusFrameError('Unexpected data error: the write answer does not echo its request');
    }
    return [];
  }

  private settle(value: number[]): void {
    const p = this.pending!;
    this.pending = undefined;
    p.resolve(value);
  }

  private fail(err: Error): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    this.partial = undefined;
    p.reject(err);
  }
}
