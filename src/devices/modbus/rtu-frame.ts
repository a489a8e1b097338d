// The Modbus RTU frame (Modbus over serial line, 2.5.1): slave address, PDU, CRC-16 low byte first,
// and the silence between frames. The one owner of both for every RTU end in the tree — the
// controller's line (./rtu-line.ts), the fencing gateway's (src/gateway/rtu-transport.ts) and the
// simulator's units and converter.

/** Modbus CRC-16 (polynomial 0xA001 reflected, initial 0xFFFF) of `bytes[0..end)`. */
export function crc16(bytes: Uint8Array, end = bytes.length): number {
  let crc = 0xffff;
  for (let j = 0; j < end; j++) {
    crc ^= bytes[j]!;
    for (let i = 0; i < 8; i++) crc = crc & 1 ? (crc >>> 1) ^ 0xa001 : crc >>> 1;
  }
  return crc;
}

/** Address + PDU + CRC. */
export function rtuFrame(unitId: number, pdu: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(pdu.length + 3);
  frame[0] = unitId;
  frame.set(pdu, 1);
  frame.writeUInt16LE(crc16(frame, pdu.length + 1), pdu.length + 1);
  return frame;
}

/** Whether a whole frame (address, PDU, CRC) ends in the CRC of what precedes it. */
export function rtuCrcOk(frame: Uint8Array, length = frame.length): boolean {
  return length >= 4 && crc16(frame, length - 2) === (frame[length - 2]! | (frame[length - 1]! << 8));
}

/** Bits per character on the wire: start, 8 data, parity or a second stop bit, stop (Modbus over serial line, 2.5.1). */
export const RTU_BITS_PER_CHAR = 11;

/**
 * The serial rates Modbus RTU units are built for (the standard UART rates): a line opened at any
 * other rate is one no unit speaks, and every request on it would only time out.
 */
export const BAUD_RATES = [
  1_200, 2_400, 4_800, 9_600, 14_400, 19_200, 38_400, 57_600, 115_200, 230_400, 460_800, 921_600,
] as const;

/**
 * The silence that must precede a frame: 3.5 characters, and a fixed 1.75 ms above 19 200 baud
 * (the Modbus serial-line spec's advice, since timers cannot resolve less).
 */
export function interFrameGapMs(baudRate: number): number {
  return baudRate > 19_200 ? 1.75 : (3.5 * RTU_BITS_PER_CHAR * 1000) / baudRate;
}

/**
 * The length of the answer PDU at the start of `pdu` (function code first), read from its function
 * code and byte count — RTU frames carry no length. Undefined while more bytes must arrive; -1 for
 * a function code that is no answer we know the shape of. An exception answer is 2 bytes.
 */
export function answerPduLength(pdu: Uint8Array): number | undefined {
  if (pdu.length < 1) return undefined;
  const fc = pdu[0]!;
  if (fc & 0x80) return 2;
  switch (fc) {
    case 0x01:
    case 0x02:
    case 0x03:
    case 0x04:
      return pdu.length < 2 ? undefined : 2 + pdu[1]!;
    case 0x05:
    case 0x06:
    case 0x0f:
    case 0x10:
      return 5;
    default:
      return -1;
  }
}
