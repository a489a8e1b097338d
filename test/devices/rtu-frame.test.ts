// The Modbus RTU frame every RTU end in the tree builds and checks (src/devices/modbus/rtu-frame.ts),
// against frames published as worked examples of Modbus RTU.
import { describe, expect, it } from 'vitest';
import {
  answerPduLength,
  crc16,
  interFrameGapMs,
  rtuCrcOk,
  rtuFrame,
} from '../../src/devices/modbus/rtu-frame.ts';

describe('Modbus RTU frame', () => {
  it('carries the CRC-16 real masters send, low byte first', () => {
    // Read holding registers 0..9 of unit 1: 01 03 00 00 00 0A C5 CD.
    expect(rtuFrame(1, Buffer.from([0x03, 0x00, 0x00, 0x00, 0x0a])).toString('hex')).toBe('01030000000ac5cd');
    // Write single register 1 = 3 on unit 17: 11 06 00 01 00 03 9A 9B.
    expect(rtuFrame(17, Buffer.from([0x06, 0x00, 0x01, 0x00, 0x03])).toString('hex')).toBe(
      '1106000100039a9b',
    );
    expect(crc16(Buffer.from('0103', 'hex'), 0)).toBe(0xffff);
  });

  it('accepts a frame whose CRC is right and refuses one bit off, or one too short to have a CRC', () => {
    const good = rtuFrame(5, Buffer.from([0x04, 0x00, 0x10, 0x00, 0x02]));
    expect(rtuCrcOk(good)).toBe(true);
    const flipped = Buffer.from(good);
    flipped[3]! ^= 0x01;
    expect(rtuCrcOk(flipped)).toBe(false);
    expect(rtuCrcOk(Buffer.from([0x05, 0x04, 0xff]))).toBe(false);
    // A frame cut from a longer buffer is checked over its own length only.
    expect(rtuCrcOk(Buffer.concat([good, Buffer.from([0x00, 0x00])]), good.length)).toBe(true);
  });

  it('keeps 3.5 characters of 11 bits between frames, and 1.75 ms above 19 200 baud', () => {
    expect(interFrameGapMs(9_600)).toBeCloseTo((3.5 * 11 * 1000) / 9_600, 6);
    expect(interFrameGapMs(19_200)).toBeCloseTo((3.5 * 11 * 1000) / 19_200, 6);
    expect(interFrameGapMs(38_400)).toBe(1.75);
  });

  it("reads an answer PDU's length from its function code and byte count", () => {
    expect(answerPduLength(Buffer.from([0x03]))).toBeUndefined();
    expect(answerPduLength(Buffer.from([0x03, 0x04, 0, 1]))).toBe(6);
    expect(answerPduLength(Buffer.from([0x01, 0x01]))).toBe(3);
    expect(answerPduLength(Buffer.from([0x10, 0, 0]))).toBe(5);
    expect(answerPduLength(Buffer.from([0x05]))).toBe(5);
    expect(answerPduLength(Buffer.from([0x83]))).toBe(2);
    expect(answerPduLength(Buffer.from([0x2b, 0x0e]))).toBe(-1);
  });
});
