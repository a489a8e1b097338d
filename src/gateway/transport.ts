// What a line of the fencing gateway sends requests over: an RS-485 line (./rtu-transport.ts) or a
// Modbus TCP connection to units that cannot check epochs (./tcp-transport.ts). One request at a
// time (the line's pump guarantees it); every request ends within its deadline, with an answer PDU
// or a reason — never a throw, never a wait without a timer.
import { answerPduLength as pduLength } from '../devices/modbus/rtu-frame.ts';

export type TransportOutcome =
  /** The unit answered; `pdu` is its answer (possibly an exception PDU), checked against the request. */
  | { kind: 'answer'; pdu: Buffer }
  /** Nothing (or nothing whole) arrived within the deadline. */
  | { kind: 'timeout' }
  /** Bytes arrived that are not an answer to this request (bad CRC, wrong function, wrong length). */
  | { kind: 'garbage'; reason: string }
  /** The line itself is not usable (port closed, connection refused). */
  | { kind: 'unavailable'; reason: string };

export interface Transport {
  /** `serial:/dev/ttyUSB0` or `tcp:host:port`, for logs. */
  readonly endpoint: string;
  /** Opens the line; rejects with COOLCTL_E_STARTUP when it cannot (a serial line is needed to start). */
  open(): Promise<void>;
  /** One request to `unitId`; resolves within `timeoutMs` (plus the line's own frame gap). */
  transact(unitId: number, pdu: Buffer, timeoutMs: number): Promise<TransportOutcome>;
  /** True while the line can carry requests. */
  readonly usable: boolean;
  /** Bounded, idempotent. */
  close(): Promise<void>;
  /** Answers from another address than the one asked, skipped while waiting (a multi-drop line's). */
  readonly strays?: { readonly frames: number; readonly lastAddress: number };
}

/**
 * Length of the answer PDU that starts `pdu` (function code first) to a request of function `fc`,
 * or undefined when more bytes must arrive first; -1 when the bytes cannot answer `fc`.
 */
export function answerPduLength(fc: number, pdu: Buffer): number | undefined {
  if (pdu.length < 1) return undefined;
  if (pdu[0] !== fc && pdu[0] !== (fc | 0x80)) return -1;
  return pduLength(pdu);
}

/**
 * Whether a whole answer PDU fits its request: byte counts for reads, the echo for writes. A unit
 * that echoes something else did not do what was asked.
 */
export function answerMatches(request: Buffer, answer: Buffer): boolean {
  const fc = request[0]!;
  if (answer[0] === (fc | 0x80)) return answer.length === 2;
  if (answer[0] !== fc) return false;
  switch (fc) {
    case 1:
    case 2: {
      const n = request.readUInt16BE(3);
      return answer[1] === Math.ceil(n / 8) && answer.length === 2 + answer[1]!;
    }
    case 3:
    case 4:
      return answer[1] === 2 * request.readUInt16BE(3) && answer.length === 2 + answer[1]!;
    case 5:
    case 6:
      return answer.length === 5 && answer.subarray(1, 5).equals(request.subarray(1, 5));
    case 15:
    case 16:
      return answer.length === 5 && answer.subarray(1, 5).equals(request.subarray(1, 5));
    default:
      return false;
  }
}
