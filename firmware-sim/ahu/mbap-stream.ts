// The simulator's Modbus TCP servers (the units', the TCP→RTU gateway's, the sensor gateway's) split
// each connection's bytes into MBAP frames here. TCP carries no frame delimiter, so a header that
// cannot be framed closes the connection (nothing says where the next frame would start), and so
// does a frame still incomplete after `frameTimeoutMs`; both are counted and logged (rate-limited).
import type { Socket } from 'node:net';
import type { RateLimitedLog } from '../../src/util/log-limit.ts';

export const MBAP_HEADER_LEN = 7; // transaction id 2, protocol id 2, length 2, unit id 1
/** MBAP length counts the unit id and the PDU: at least unit id + function code, at most 1 + 253. */
export const MBAP_MIN_LENGTH = 2;
export const MBAP_MAX_LENGTH = 254;
export const DEFAULT_FRAME_TIMEOUT_MS = 2_000;

/** The answer frame to `request` carrying `pdu`: its transaction id, protocol id and unit id echoed. */
export function mbapAnswer(request: Buffer, pdu: Buffer): Buffer {
  const out = Buffer.alloc(MBAP_HEADER_LEN + pdu.length);
  request.copy(out, 0, 0, 4);
  out.writeUInt16BE(1 + pdu.length, 4);
  out.writeUInt8(request.readUInt8(6), 6);
  pdu.copy(out, MBAP_HEADER_LEN);
  return out;
}

/** What the framer needs of a server's connection. */
export interface MbapConnection {
  readonly socket: Socket;
  readonly client: string;
  buffer: Buffer;
  frameTimer: NodeJS.Timeout | undefined;
  closed: boolean;
}

export interface MbapStreamOptions<C extends MbapConnection> {
  counters: { badFrames: number; frameTimeouts: number };
  warns: RateLimitedLog;
  /** Who the server is in its log lines (`{ ahu }`, `{ gateway }`). */
  logFields: Record<string, unknown>;
  frameTimeoutMs: number;
  close(conn: C): void;
  /**
   * One whole frame: a view into the stream's buffer, so copy it to keep it past the call. Returns
   * false when it closed the connection (the rest of the stream is not read).
   */
  onFrame(conn: C, frame: Buffer): boolean;
}

/** Adds `chunk` to `conn`'s stream and hands on every whole frame it now holds. */
export function readMbapFrames<C extends MbapConnection>(
  conn: C,
  chunk: Buffer,
  o: MbapStreamOptions<C>,
): void {
  if (conn.closed) return;
  conn.buffer = conn.buffer.length === 0 ? chunk : Buffer.concat([conn.buffer, chunk]);
  while (conn.buffer.length >= MBAP_HEADER_LEN - 1) {
    const protocolId = conn.buffer.readUInt16BE(2);
    const length = conn.buffer.readUInt16BE(4);
    if (protocolId !== 0 || length < MBAP_MIN_LENGTH || length > MBAP_MAX_LENGTH) {
      o.counters.badFrames++;
      o.warns.warn(
        'bad-frame',
        { ...o.logFields, client: conn.client, protocolId, length },
        protocolId !== 0
          ? 'modbus frame with protocol id ≠ 0; closing the connection'
          : `modbus frame with MBAP length outside ${MBAP_MIN_LENGTH}..${MBAP_MAX_LENGTH}; closing the connection`,
      );
      o.close(conn);
      return;
    }
    const frameLen = 6 + length;
    if (conn.buffer.length < frameLen) break;
    const frame = conn.buffer.subarray(0, frameLen);
    conn.buffer = conn.buffer.subarray(frameLen);
    clearTimeout(conn.frameTimer);
    conn.frameTimer = undefined;
    if (!o.onFrame(conn, frame)) return;
  }
  if (conn.buffer.length > 0 && !conn.frameTimer) {
    conn.frameTimer = setTimeout(() => {
      conn.frameTimer = undefined;
      o.counters.frameTimeouts++;
      o.warns.warn(
        'frame-timeout',
        { ...o.logFields, client: conn.client, bytes: conn.buffer.length, frameTimeoutMs: o.frameTimeoutMs },
        'incomplete modbus frame timed out; closing the connection',
      );
      o.close(conn);
    }, o.frameTimeoutMs);
  }
}
