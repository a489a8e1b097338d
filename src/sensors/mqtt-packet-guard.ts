// Refuses an MQTT packet that is too large, or a PUBLISH at a QoS we never asked for, before it is
// buffered. mqtt.js (mqtt-packet) collects a whole packet before it looks at it, and MQTT lets a
// packet announce up to 256 MB; and mqtt.js keeps every QoS 2 PUBLISH until its PUBREL, which a
// rogue broker never sends (65 535 ids × 64 KiB). This watcher reads every packet's fixed header
// (type and flags, then the Remaining Length varint) from the connection's reads as they arrive,
// ahead of the client's parser, and destroys the connection as soon as a packet announces more
// than the limit, or a PUBLISH a QoS above the most we subscribe with. Invariant: of a refused
// packet, the parser gets at most the one read in which its header arrived (a socket read,
// ≤ 64 KB); nothing after it. It only watches (no stream in between): ingest pays a few operations
// per packet and nothing per byte.
import type { Duplex } from 'node:stream';
import { CoolctlError, ErrorCodes } from '../errors.ts';

/** Why a packet was refused; each is a label of `coolctl_sensor_mqtt_packets_refused_total`. */
export type PacketRefusal = 'too-large' | 'malformed-length' | 'qos-not-granted';
export const PACKET_REFUSALS: readonly PacketRefusal[] = ['too-large', 'malformed-length', 'qos-not-granted'];

export interface RefusedPacket {
  reason: PacketRefusal;
  /** MQTT control packet type (3 = PUBLISH). */
  packetType: number;
  /** A PUBLISH's QoS (its header's flags); undefined for other packets. */
  qos: number | undefined;
  /** The whole packet's size as its header announced it (fixed header included), bytes. */
  announcedBytes: number;
  /** A PUBLISH's topic, when it arrived in the same read as the header. */
  topic: string | undefined;
}

const PUBLISH = 3;

/**
 * Watches the reads of `socket` (the broker connection, before the client pipes it to its parser)
 * and returns it. On a refused packet: `onRefused` once, then the socket is destroyed with a
 * `COOLCTL_E_MQTT_PACKET_TOO_LARGE` error (`COOLCTL_E_MQTT_PROTOCOL_VIOLATION` for a QoS not granted;
 * the client sees a lost connection and reconnects).
 * `maxPublishQos`: the highest QoS of our subscriptions (a broker grants at most that); a PUBLISH
 * above it is a protocol violation. Must be called before anything reads the socket: its listener
 * has to run first on every read.
 */
export function guardPacketSize<S extends Duplex>(
  socket: S,
  maxPacketBytes: number,
  onRefused: (p: RefusedPacket) => void,
  maxPublishQos = 2,
): S {
  const scanner = new PacketScanner(maxPacketBytes, maxPublishQos);
  socket.on('data', (chunk: Buffer) => {
    const refused = scanner.scan(chunk);
    if (!refused) return;
    onRefused(refused);
    const what =
      refused.reason === 'too-large'
        ? `an MQTT packet of ${refused.announcedBytes} bytes (at most ${maxPacketBytes})`
        : refused.reason === 'qos-not-granted'
          ? `a QoS ${refused.qos} PUBLISH (subscribed with QoS ${maxPublishQos} at most)`
          : 'an MQTT packet whose length field runs past 4 bytes';
    socket.destroy(
      new CoolctlError(
        refused.reason === 'qos-not-granted'
          ? ErrorCodes.MQTT_PROTOCOL_VIOLATION
          : ErrorCodes.MQTT_PACKET_TOO_LARGE,
        `refused ${what}; connection closed`,
        { retryable: true },
      ),
    );
  });
  return socket;
}

/** Packet boundaries of one connection's byte stream, read by fixed headers only. */
export class PacketScanner {
  private readonly max: number;
  private readonly maxQos: number;
  /** Bytes of the current packet's body still to come; 0 while a fixed header is being read. */
  private bodyLeft = 0;
  /** The fixed header read so far (type byte and up to 4 length bytes): a header may span reads. */
  private readonly header = new Uint8Array(5);
  private headerLen = 0;
  private refused = false;

  constructor(maxPacketBytes: number, maxPublishQos = 2) {
    this.max = maxPacketBytes;
    this.maxQos = maxPublishQos;
  }

  /** The next read of the stream; the first packet over the limit (once), else null. */
  scan(chunk: Buffer): RefusedPacket | null {
    if (this.refused) return null;
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      if (this.bodyLeft > 0) {
        const take = Math.min(this.bodyLeft, n - i);
        this.bodyLeft -= take;
        i += take;
        continue;
      }
      const b = chunk[i++]!;
      this.header[this.headerLen++] = b;
      if (this.headerLen === 1) continue;
      if ((b & 0x80) !== 0) {
        // The Remaining Length has at most 4 bytes.
        if (this.headerLen === 5) return this.refuse(chunk, i, 'malformed-length', 0);
        continue;
      }
      let remaining = 0;
      for (let k = this.headerLen - 1; k >= 1; k--) remaining = remaining * 128 + (this.header[k]! & 0x7f);
      const total = this.headerLen + remaining;
      if (total > this.max) return this.refuse(chunk, i, 'too-large', total);
      const first = this.header[0]!;
      // QoS 3 is no QoS at all; either way the client would have kept the packet until a PUBREL.
      if (first >> 4 === PUBLISH && ((first >> 1) & 3) > this.maxQos)
        return this.refuse(chunk, i, 'qos-not-granted', total);
      this.headerLen = 0;
      this.bodyLeft = remaining;
    }
    return null;
  }

  /** `at`: where the refused packet's variable header starts in `chunk`. */
  private refuse(
    chunk: Buffer,
    at: number,
    reason: RefusedPacket['reason'],
    announcedBytes: number,
  ): RefusedPacket {
    this.refused = true;
    const packetType = this.header[0]! >> 4;
    const qos = packetType === PUBLISH ? (this.header[0]! >> 1) & 3 : undefined;
    let topic: string | undefined;
    if (packetType === PUBLISH && at + 2 <= chunk.length) {
      const len = chunk.readUInt16BE(at);
      if (at + 2 + len <= chunk.length) topic = chunk.toString('utf8', at + 2, at + 2 + len);
    }
    return { reason, packetType, qos, announcedBytes, topic };
  }
}
