// The Modbus application layer of a simulated air handler, shared by the TCP (MBAP) and RTU
// (serial line) transports: function codes, the exact exceptions, the fenced command block, the
// journal and the faults. It sees PDUs only; framing, unit-id policy and sockets are the transport's.
// Invariants: every write attempt that reaches the unit is journaled exactly once; a handler bug
// costs one answer (exception 04), never the server; faults are read on every request.
import type { Logger } from 'pino';
import {
  COMMAND_BLOCK_LEN,
  commandRegistersValid,
  decodeCommand,
  encodeCommand,
  encodeStatus,
  MODBUS_EXCEPTION,
  type ModbusPointMap,
  STALE_EPOCH_EXCEPTION,
  STATUS_BLOCK_LEN,
  STATUS_OFFSET,
} from '../../src/devices/modbus/point-map.ts';
import type { AhuCommand } from '../../src/unit-contract.ts';
import type { RejectReason, SimAirHandler } from './unit.ts';

export const FC = { readHolding: 0x03, readInput: 0x04, writeSingle: 0x06, writeMultiple: 0x10 } as const;
export const MAX_READ_QUANTITY = 125;
export const MAX_WRITE_QUANTITY = 123;
/** Never sent as a request's function code or its exception: a lax client notices a garbage answer at once. */
export const GARBAGE_FUNCTION_CODE = 0x00;

/** The exception a refusal of the unit answers with (docs/modbus-register-map.md says why). */
const REASON_EXCEPTION: Record<RejectReason, number> = {
  'stale-epoch': STALE_EPOCH_EXCEPTION,
  'out-of-range': MODBUS_EXCEPTION.illegalDataValue,
  'heartbeat-unchanged': MODBUS_EXCEPTION.illegalDataValue,
  'partial-command-block': MODBUS_EXCEPTION.illegalDataAddress,
  'fault-exception': MODBUS_EXCEPTION.serverDeviceFailure,
  'fault-bad-status': MODBUS_EXCEPTION.serverDeviceFailure,
  offline: MODBUS_EXCEPTION.serverDeviceFailure,
  tripped: MODBUS_EXCEPTION.serverDeviceFailure,
  expired: MODBUS_EXCEPTION.gatewayTargetFailedToRespond,
  'bms-timeout': MODBUS_EXCEPTION.serverDeviceFailure,
  'unsupported-function': MODBUS_EXCEPTION.illegalFunction,
  'not-ready': MODBUS_EXCEPTION.illegalDataAddress,
};

/**
 * What the transport does with a request:
 * - `reply`: send `pdu` (a normal answer or an exception);
 * - `garbage`: the request was served (its answer is `pdu`), but answer bytes that are not a frame instead;
 * - `reset`: the request was served; send half of `pdu`'s frame, then reset the connection;
 * - `silent`: the request was received and dropped, never answered (a hung peer);
 * - `offline`: the unit went offline as the request arrived; drop it (TCP: and the connection).
 */
export type PduOutcome =
  | { kind: 'reply'; pdu: Buffer }
  | { kind: 'garbage'; pdu: Buffer }
  | { kind: 'reset'; pdu: Buffer }
  | { kind: 'silent' }
  | { kind: 'offline' };

/** Counters the application layer keeps; each transport's counters include these. */
export interface PduCounters {
  requests: number;
  reads: number;
  writes: number;
  writesAccepted: number;
  exceptionsSent: number;
  exceptionsByCode: Record<number, number>;
  garbageSent: number;
  resetsSent: number;
  silentDrops: number;
  offlineDrops: number;
  /** Not served within the unit's apply bound (`expire`): dropped unanswered. */
  expiredDrops: number;
  handlerErrors: number;
}

export function newPduCounters(): PduCounters {
  return {
    requests: 0,
    reads: 0,
    writes: 0,
    writesAccepted: 0,
    exceptionsSent: 0,
    exceptionsByCode: {},
    garbageSent: 0,
    resetsSent: 0,
    silentDrops: 0,
    offlineDrops: 0,
    expiredDrops: 0,
    handlerErrors: 0,
  };
}

/**
 * The application layer of one unit as its transports see it: the native fenced map
 * (`ModbusAhuPdu`) and a vendor profile's map (`ProfilePdu`) both answer PDUs this way.
 */
export interface PduHandler {
  readonly unit: SimAirHandler;
  readonly counters: PduCounters;
  handle(client: string, pdu: Buffer): PduOutcome;
  /** A request not served within the unit's apply bound: dropped, a write journaled 'expired'. */
  expire(client: string, pdu: Buffer): void;
  /** An exception PDU, counted. */
  exception(fc: number, code: number): Buffer;
  /** Extra time the unit takes for this request besides the `ahu-slow` fault (a slow first read). */
  serviceDelayMs?(pdu: Buffer): number;
}

/** A write request that would change command registers, as far as it can be read. */
interface WriteAttempt {
  cmd: AhuCommand;
  /** Exactly the whole command block, in one FC16. */
  whole: boolean;
}

export class ModbusAhuPdu implements PduHandler {
  readonly unit: SimAirHandler;
  private readonly pm: ModbusPointMap;
  readonly counters: PduCounters;
  private readonly log: Logger;
  /** The command registers as last accepted; undefined until the first accepted write. */
  private commandWords: number[] | undefined;

  constructor(unit: SimAirHandler, pm: ModbusPointMap, counters: PduCounters, log: Logger) {
    this.unit = unit;
    this.pm = pm;
    this.counters = counters;
    this.log = log;
  }

  /** One request PDU (already addressed to this unit) from `client`, and what to answer. */
  handle(client: string, pdu: Buffer): PduOutcome {
    this.counters.requests++;
    const fc = pdu.readUInt8(0);
    const faults = this.unit.faults;
    if (faults.offline) {
      // The transport is on its way to going dark; what arrived meanwhile is lost like on a dead unit.
      const attempt = this.writeAttempt(pdu);
      if (attempt) this.unit.write(client, attempt.cmd, 'offline');
      this.counters.offlineDrops++;
      return { kind: 'offline' };
    }
    if (faults.silent) {
      // A hung peer: the request arrived and nothing happens, not even the journal.
      this.counters.silentDrops++;
      return { kind: 'silent' };
    }
    let answer: Buffer;
    const isWrite = fc === FC.writeSingle || fc === FC.writeMultiple;
    if (faults.exceptionCode !== null && (isWrite || !faults.faultWritesOnly)) {
      const attempt = this.writeAttempt(pdu);
      if (attempt) this.unit.write(client, attempt.cmd, 'fault-exception');
      answer = this.exception(fc, faults.exceptionCode);
    } else {
      try {
        answer = this.serve(client, pdu);
      } catch (err) {
        // A bug here must cost one answer, not the server: 04 is what a device says when it failed.
        this.counters.handlerErrors++;
        this.log.error({ err, ahu: this.unit.id, client }, 'modbus request handler failed');
        answer = this.exception(fc, MODBUS_EXCEPTION.serverDeviceFailure);
      }
    }
    return answerWithFaults(answer, faults, this.counters);
  }

  /**
   * A request the unit did not get to within its apply bound (`client.maxApplyDelayMs` of the site):
   * dropped as a TCP→RTU gateway drops one past its response timeout — never served later, never
   * answered (the client times out); a write is journaled refused 'expired'.
   */
  expire(client: string, pdu: Buffer): void {
    this.counters.requests++;
    this.counters.expiredDrops++;
    const attempt = this.writeAttempt(pdu);
    if (attempt) this.unit.write(client, attempt.cmd, 'expired');
  }

  private serve(client: string, pdu: Buffer): Buffer {
    const fc = pdu.readUInt8(0);
    switch (fc) {
      case FC.readHolding:
      case FC.readInput:
        return this.read(pdu);
      case FC.writeMultiple:
        return this.writeMultiple(client, pdu);
      case FC.writeSingle:
        return this.writeSingle(client, pdu);
      default:
        return this.exception(fc, MODBUS_EXCEPTION.illegalFunction);
    }
  }

  private read(pdu: Buffer): Buffer {
    const fc = pdu.readUInt8(0);
    this.counters.reads++;
    if (pdu.length !== 5) return this.exception(fc, MODBUS_EXCEPTION.illegalDataValue);
    const start = pdu.readUInt16BE(1);
    const quantity = pdu.readUInt16BE(3);
    if (quantity < 1 || quantity > MAX_READ_QUANTITY) {
      return this.exception(fc, MODBUS_EXCEPTION.illegalDataValue);
    }
    const { commandBlock, statusBlock } = this.pm;
    const inCommand = (a: number) => a >= commandBlock && a < commandBlock + COMMAND_BLOCK_LEN;
    const inStatus = (a: number) => a >= statusBlock && a < statusBlock + STATUS_BLOCK_LEN;
    for (let a = start; a < start + quantity; a++) {
      if (!inCommand(a) && !inStatus(a)) return this.exception(fc, MODBUS_EXCEPTION.illegalDataAddress);
    }
    const status = encodeStatus(this.unit.status(), this.pm);
    // A broken probe: its register holds the no-data word, as a unit with an open or shorted sensor serves it.
    for (const [point, word] of this.unit.faults.brokenSensors) status[STATUS_OFFSET[point]] = word;
    const command = this.currentCommandWords();
    const body = Buffer.alloc(2 + 2 * quantity);
    body.writeUInt8(fc, 0);
    body.writeUInt8(2 * quantity, 1);
    for (let i = 0; i < quantity; i++) {
      const a = start + i;
      const word = inCommand(a) ? command[a - commandBlock] : status[a - statusBlock];
      body.writeUInt16BE(word ?? 0, 2 + 2 * i);
    }
    return body;
  }

  private writeMultiple(client: string, pdu: Buffer): Buffer {
    const fc = FC.writeMultiple;
    this.counters.writes++;
    const parsed = parseWriteMultiple(pdu);
    // Malformed: the request never became a write the unit could see, so nothing is journaled.
    if (!parsed) return this.exception(fc, MODBUS_EXCEPTION.illegalDataValue);
    const { start, values } = parsed;
    const attempt = this.writeAttempt(pdu);
    if (!attempt) return this.exception(fc, MODBUS_EXCEPTION.illegalDataAddress);
    if (!attempt.whole) {
      this.unit.write(client, attempt.cmd, 'partial-command-block');
      return this.exception(fc, MODBUS_EXCEPTION.illegalDataAddress);
    }
    if (!commandRegistersValid(values)) {
      this.unit.write(client, attempt.cmd, 'out-of-range');
      return this.exception(fc, MODBUS_EXCEPTION.illegalDataValue);
    }
    const result = this.unit.write(client, attempt.cmd);
    if (!result.accepted) {
      const reason = result.reason ?? 'out-of-range';
      this.log.debug({ ahu: this.unit.id, client, epoch: attempt.cmd.epoch, reason }, 'modbus write refused');
      return this.exception(fc, REASON_EXCEPTION[reason]);
    }
    this.counters.writesAccepted++;
    this.commandWords = values;
    const body = Buffer.alloc(5);
    body.writeUInt8(fc, 0);
    body.writeUInt16BE(start, 1);
    body.writeUInt16BE(values.length, 3);
    return body;
  }

  /** FC6 can never carry a whole fenced command: refused, and journaled when it aimed at the command block. */
  private writeSingle(client: string, pdu: Buffer): Buffer {
    const fc = FC.writeSingle;
    this.counters.writes++;
    if (pdu.length !== 5) return this.exception(fc, MODBUS_EXCEPTION.illegalDataValue);
    const attempt = this.writeAttempt(pdu);
    if (!attempt) return this.exception(fc, MODBUS_EXCEPTION.illegalDataAddress);
    this.unit.write(client, attempt.cmd, 'partial-command-block');
    return this.exception(fc, MODBUS_EXCEPTION.illegalFunction);
  }

  /**
   * The command a write request would leave in the command block (its registers laid over the
   * current ones), or null when it is not a well-formed FC6/FC16 touching the block.
   */
  private writeAttempt(pdu: Buffer): WriteAttempt | null {
    const fc = pdu.readUInt8(0);
    let start: number;
    let values: number[];
    if (fc === FC.writeMultiple) {
      const parsed = parseWriteMultiple(pdu);
      if (!parsed) return null;
      ({ start, values } = parsed);
    } else if (fc === FC.writeSingle && pdu.length === 5) {
      start = pdu.readUInt16BE(1);
      values = [pdu.readUInt16BE(3)];
    } else {
      return null;
    }
    const block = this.pm.commandBlock;
    if (start >= block + COMMAND_BLOCK_LEN || start + values.length <= block) return null;
    const words = [...this.currentCommandWords()];
    values.forEach((v, i) => {
      const off = start + i - block;
      if (off >= 0 && off < COMMAND_BLOCK_LEN) words[off] = v;
    });
    const whole = fc === FC.writeMultiple && start === block && values.length === COMMAND_BLOCK_LEN;
    return { cmd: decodeCommand(words, this.pm), whole };
  }

  /** The last accepted command block; before the first, the unit's epoch and heartbeat and its local values. */
  private currentCommandWords(): number[] {
    if (this.commandWords) return this.commandWords;
    const st = this.unit.status();
    const base = { epoch: st.epoch, heartbeat: st.heartbeat, remoteEnable: false };
    try {
      return encodeCommand(
        { ...base, fanPct: this.unit.config.localFanPct, supplySetpointC: this.unit.config.localSetpointC },
        this.pm,
      );
    } catch {
      // A scale that cannot carry the local values: read back zeros rather than fail the read.
      return encodeCommand({ ...base, fanPct: 0, supplySetpointC: 0 }, this.pm);
    }
  }

  /** An exception PDU, counted; transports use it for requests they refuse before the unit looks. */
  exception(fc: number, code: number): Buffer {
    this.counters.exceptionsSent++;
    this.counters.exceptionsByCode[code] = (this.counters.exceptionsByCode[code] ?? 0) + 1;
    return Buffer.from([(fc | 0x80) & 0xff, code & 0xff]);
  }
}

/** FC16 request fields, or null when quantity, byte count and PDU length disagree (exception 03). */
function parseWriteMultiple(pdu: Buffer): { start: number; values: number[] } | null {
  if (pdu.length < 6) return null;
  const start = pdu.readUInt16BE(1);
  const quantity = pdu.readUInt16BE(3);
  const byteCount = pdu.readUInt8(5);
  if (quantity < 1 || quantity > MAX_WRITE_QUANTITY || byteCount !== 2 * quantity) return null;
  if (pdu.length !== 6 + byteCount) return null;
  const values: number[] = [];
  for (let i = 0; i < quantity; i++) values.push(pdu.readUInt16BE(6 + 2 * i));
  return { start, values };
}

/**
 * The outcome of a served request under the unit's answer faults: garbage and reset destroy only the
 * answer — the request was served (a write may have landed). Counted on `counters`.
 */
export function answerWithFaults(
  answer: Buffer,
  faults: { garbage: boolean; reset: boolean },
  counters: PduCounters,
): PduOutcome {
  if (faults.garbage) {
    counters.garbageSent++;
    return { kind: 'garbage', pdu: answer };
  }
  if (faults.reset) {
    counters.resetsSent++;
    return { kind: 'reset', pdu: answer };
  }
  return { kind: 'reply', pdu: answer };
}
