// Refuses an MQTT packet that is too large before any of it is buffered. mqtt.js (mqtt-packet)
// collects a whole packet before it looks at it, and MQTT lets a packet announce up to 256 MB; this
// stream sits between the socket and the client's parser, reads each packet's fixed header
// (type, then the Remaining Length varint) as the bytes arrive, and ends the connection as soon as a
// packet announces more than the limit. Invariant: the parser only ever sees whole packets of at
// most `maxPacketBytes` (and the bytes before a refused one), and what the guard holds back is at
// most one fixed header (5 bytes).
import { Duplex } from 'node:stream';
import { CoolctlError, ErrorCodes } from '../errors.ts';

export interface RefusedPacket {
  reason: 'too-large' | 'malformed-length';
  /** MQTT control packet type (3 = PUBLISH). */
  packetType: number;
  /** The whole packet's size as its header announced it (fixed header included), bytes. */
  announcedBytes: number;
  /** A PUBLISH's topic, when it arrived in the same read as the header. */
  topic: string | undefined;
}

const PUBLISH = 3;

/**
 * Wraps `inner` (the broker connection) so that reads pass through the size check and writes go
 * straight to it. On a refused packet: `onRefused` once, then both streams are destroyed with a
 * `COOLCTL_E_MQTT_PACKET_TOO_LARGE` error (the client sees a lost connection and reconnects).
 */
export function guardPacketSize(
  inner: Duplex,
  maxPacketBytes: number,
  onRefused: (p: RefusedPacket) => void,
): Duplex {
  return new PacketSizeGuard(inner, maxPacketBytes, onRefused);
}

class PacketSizeGuard extends Duplex {
  private readonly inner: Duplex;
  private readonly max: number;
  private readonly onRefused: (p: RefusedPacket) => void;
  /** Bytes of the current packet's body still to pass; 0 while a fixed header is being read. */
  private bodyLeft = 0;
  /** The fixed header read so far (type byte and up to 4 length bytes). */
  private readonly header = Buffer.alloc(5);
  private headerLen = 0;
  private refused = false;

  constructor(inner: Duplex, maxPacketBytes: number, onRefused: (p: RefusedPacket) => void) {
    super();
    this.inner = inner;
    this.max = maxPacketBytes;
    this.onRefused = onRefused;
    inner.on('data', (chunk: Buffer) => this.onData(chunk));
    inner.on('end', () => this.push(null));
    inner.on('error', (err) => this.destroy(err));
    inner.on('close', () => this.destroy());
  }

  override _read(): void {
    this.inner.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.inner.write(chunk, done);
  }

  override _final(done: (err?: Error | null) => void): void {
    this.inner.end();
    done();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.inner.destroy();
    done(err);
  }

  private onData(chunk: Buffer): void {
    if (this.refused) return;
    // Header bytes held back from the previous read (a header split over reads), and where the
    // current header's bytes in this chunk begin.
    let carried = this.headerLen;
    let headerAt = 0;
    let i = 0;
    while (i < chunk.length) {
      if (this.bodyLeft > 0) {
        const take = Math.min(this.bodyLeft, chunk.length - i);
        this.bodyLeft -= take;
        i += take;
        continue;
      }
      if (this.headerLen === 0) {
        headerAt = i;
        carried = 0;
      }
      this.header[this.headerLen++] = chunk[i++]!;
      if (this.headerLen === 1) continue;
      if ((this.header[this.headerLen - 1]! & 0x80) !== 0) {
        // The Remaining Length has at most 4 bytes.
        if (this.headerLen === 5) {
          if (headerAt > 0) this.pass(chunk.subarray(0, headerAt));
          this.refuse(chunk, i, 'malformed-length', 0);
          return;
        }
        continue;
      }
      let remaining = 0;
      for (let k = this.headerLen - 1; k >= 1; k--) remaining = remaining * 128 + (this.header[k]! & 0x7f);
      const total = this.headerLen + remaining;
      if (total > this.max) {
        if (headerAt > 0) this.pass(chunk.subarray(0, headerAt));
        this.refuse(chunk, i, 'too-large', total);
        return;
      }
      // A header begun in the previous read goes out ahead of this chunk (nothing of it passed yet);
      // a copy, as `header` is reused.
      if (carried > 0) {
        this.pass(Buffer.from(this.header.subarray(0, carried)));
        carried = 0;
      }
      this.headerLen = 0;
      this.bodyLeft = remaining;
    }
    // Everything up to a header still being read goes to the parser; that header waits for its end.
    const end = this.headerLen > 0 ? headerAt : chunk.length;
    if (end > 0) this.pass(chunk.subarray(0, end));
  }

  private pass(bytes: Buffer): void {
    if (!this.push(bytes)) this.inner.pause();
  }

  /** `at`: where the refused packet's variable header starts in `chunk`. */
  private refuse(chunk: Buffer, at: number, reason: RefusedPacket['reason'], announcedBytes: number): void {
    this.refused = true;
    const packetType = this.header[0]! >> 4;
    let topic: string | undefined;
    if (packetType === PUBLISH && at + 2 <= chunk.length) {
      const len = chunk.readUInt16BE(at);
      if (at + 2 + len <= chunk.length) topic = chunk.toString('utf8', at + 2, at + 2 + len);
    }
    this.onRefused({ reason, packetType, announcedBytes, topic });
    const what =
      reason === 'too-large'
        ? `an MQTT packet of ${announcedBytes} bytes (at most ${this.max})`
        : 'an MQTT packet whose length field runs past 4 bytes';
    this.destroy(
      new CoolctlError(ErrorCodes.MQTT_PACKET_TOO_LARGE, `refused ${what}; connection closed`, {
        retryable: true,
      }),
    );
  }
}
