// Modbus TCP (MBAP framing) for the requests the air-handler adapters make — reads of the four
// tables (FC1–FC4) and writes of coils and registers (FC5, FC6, FC15, FC16) — one at a time on a
// socket the adapter opened and owns. Every answer is checked against its request (transaction id, unit id, function
// code, lengths, echoed address); anything else is a ModbusFrameError and the adapter drops the
// connection. Bytes no request asked for (while idle, or glued after an answer) never pair with
// one: they go to the owner's `onStray`. There is no timer here: the adapter's call deadline bounds each request, and a
// closed socket fails the request in flight.
// Why not modbus-serial, which still speaks RTU: at 1 000 units its TCP path allocated ~25 MB/s
// (a transaction object kept in a table it never cleans, a timer, debug arguments, three Buffers
// per request) and much of it outlived the young generation: old-space garbage that cost a
// mark-compact every ~2 s (docs/scale.md).
import type { Socket } from 'node:net';

const MBAP_LEN = 7;
const READ_COILS = 0x01;
const READ_DISCRETE_INPUTS = 0x02;
const READ_HOLDING_REGISTERS = 0x03;
const READ_INPUT_REGISTERS = 0x04;
const WRITE_SINGLE_COIL = 0x05;
const WRITE_SINGLE_REGISTER = 0x06;
const WRITE_MULTIPLE_COILS = 0x0f;
const WRITE_MULTIPLE_REGISTERS = 0x10;
/** Registers one request may read (FC3/FC4) or write (FC16), by the Modbus application protocol. */
export const MAX_READ_REGISTERS = 125;
export const MAX_WRITE_REGISTERS = 123;
/** Bits one request may read (FC1/FC2) or write (FC15). */
export const MAX_READ_BITS = 2000;
export const MAX_WRITE_BITS = 1968;
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

/**
 * Bytes no request in flight asked for: an answer while idle (to a request never sent, or a
 * duplicate), or bytes glued after an answer. They never pair with a request; the owner counts
 * them and drops the connection, since a peer that speaks out of turn could next send a frame that
 * carries the tid of a request not yet answered.
 */
export type StrayBytes = (bytes: number, kind: StrayKind) => void;

/** `idle`: bytes with no request in flight; `after-answer`: bytes glued after an answer. */
export type StrayKind = 'idle' | 'after-answer';

/** Words for a log line about stray bytes of each kind. */
export const STRAY_TEXT: Readonly<Record<StrayKind, string>> = {
  idle: 'bytes with no request in flight',
  'after-answer': 'bytes after the answer',
};

interface Pending {
  tid: number;
  fc: number;
  address: number;
  /** Registers or bits read; for a single write (FC5/FC6), the value it must echo. */
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
  private readonly onStray: StrayBytes | undefined;

  constructor(unitId: number, onStray?: StrayBytes) {
    this.unitId = unitId;
    this.onStray = onStray;
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
    return this.readWords(READ_HOLDING_REGISTERS, address, count);
  }

  readInputRegisters(address: number, count: number): Promise<{ data: number[] }> {
    return this.readWords(READ_INPUT_REGISTERS, address, count);
  }

  readCoils(address: number, count: number): Promise<{ data: boolean[] }> {
    return this.readBits(READ_COILS, address, count);
  }

  readDiscreteInputs(address: number, count: number): Promise<{ data: boolean[] }> {
    return this.readBits(READ_DISCRETE_INPUTS, address, count);
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

  /** FC6: one holding register; the unit echoes address and value. */
  writeRegister(address: number, word: number): Promise<{ address: number; value: number }> {
    if (!(Number.isInteger(word) && word >= 0 && word <= 0xffff)) {
      return Promise.reject(new RangeError(`register value ${word} is not a 16-bit word`));
    }
    const frame = this.frame(WRITE_SINGLE_REGISTER, 4);
    frame.writeUInt16BE(address, MBAP_LEN + 1);
    frame.writeUInt16BE(word, MBAP_LEN + 3);
    return this.send(frame, WRITE_SINGLE_REGISTER, address, word).then(() => ({ address, value: word }));
  }

  /** FC5: one coil, as FF00 (on) or 0000 (off); the unit echoes both. */
  writeCoil(address: number, on: boolean): Promise<{ address: number; state: boolean }> {
    const value = on ? 0xff00 : 0x0000;
    const frame = this.frame(WRITE_SINGLE_COIL, 4);
    frame.writeUInt16BE(address, MBAP_LEN + 1);
    frame.writeUInt16BE(value, MBAP_LEN + 3);
    return this.send(frame, WRITE_SINGLE_COIL, address, value).then(() => ({ address, state: on }));
  }

  /** FC15: consecutive coils, packed least significant bit first. */
  writeCoils(address: number, bits: readonly boolean[]): Promise<{ address: number; length: number }> {
    const n = bits.length;
    if (!(n >= 1 && n <= MAX_WRITE_BITS)) {
      return Promise.reject(new RangeError(`write of ${n} coils (1…${MAX_WRITE_BITS})`));
    }
    const bytes = Math.ceil(n / 8);
    const frame = this.frame(WRITE_MULTIPLE_COILS, 5 + bytes);
    frame.writeUInt16BE(address, MBAP_LEN + 1);
    frame.writeUInt16BE(n, MBAP_LEN + 3);
    frame[MBAP_LEN + 5] = bytes;
    frame.fill(0, MBAP_LEN + 6);
    for (let i = 0; i < n; i++) if (bits[i]) frame[MBAP_LEN + 6 + (i >> 3)]! |= 1 << (i & 7);
    return this.send(frame, WRITE_MULTIPLE_COILS, address, n).then(() => ({ address, length: n }));
  }

  private readWords(fc: number, address: number, count: number): Promise<{ data: number[] }> {
    if (!(count >= 1 && count <= MAX_READ_REGISTERS)) {
      return Promise.reject(new RangeError(`read of ${count} registers (1…${MAX_READ_REGISTERS})`));
    }
    return this.sendRead(fc, address, count).then((data) => ({ data }));
  }

  private readBits(fc: number, address: number, count: number): Promise<{ data: boolean[] }> {
    if (!(count >= 1 && count <= MAX_READ_BITS)) {
      return Promise.reject(new RangeError(`read of ${count} bits (1…${MAX_READ_BITS})`));
    }
    return this.sendRead(fc, address, count).then((data) => ({ data: data.map((b) => b !== 0) }));
  }

  private sendRead(fc: number, address: number, count: number): Promise<number[]> {
    const frame = this.frame(fc, 4);
    frame.writeUInt16BE(address, MBAP_LEN + 1);
    frame.writeUInt16BE(count, MBAP_LEN + 3);
    return this.send(frame, fc, address, count);
  }

  /** Bytes from the socket, in order. */
  receive(chunk: Buffer): void {
    if (!this.pending) {
      this.onStray?.(chunk.length, 'idle');
      return;
    }
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
    // One request at a time: bytes after its answer answer nothing; never parsed, only reported.
    const result = this.answer(buf, end);
    if (result instanceof Error) this.fail(result);
    else {
      this.settle(result);
      if (buf.length > end) this.onStray?.(buf.length - end, 'after-answer');
    }
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
    if (fc === READ_HOLDING_REGISTERS || fc === READ_INPUT_REGISTERS) {
      const bytes = buf[8]!;
      if (bytes !== 2 * p.count || end !== MBAP_LEN + 2 + bytes) {
        return new ModbusFrameError(`Data length error: ${bytes} bytes for ${p.count} registers`);
      }
      const data = new Array<number>(p.count);
      for (let i = 0; i < p.count; i++) data[i] = buf.readUInt16BE(MBAP_LEN + 2 + 2 * i);
      return data;
    }
    if (fc === READ_COILS || fc === READ_DISCRETE_INPUTS) {
      const bytes = buf[8]!;
      if (bytes !== Math.ceil(p.count / 8) || end !== MBAP_LEN + 2 + bytes) {
        return new ModbusFrameError(`Data length error: ${bytes} bytes for ${p.count} bits`);
      }
      const data = new Array<number>(p.count);
      for (let i = 0; i < p.count; i++) data[i] = (buf[MBAP_LEN + 2 + (i >> 3)]! >> (i & 7)) & 1;
      return data;
    }
    // Every write answer echoes address and count (FC15/FC16) or address and value (FC5/FC6).
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
