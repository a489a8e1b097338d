// MQTT wire pieces the tests build by hand (to send what a well-behaved client library never would).

/** MQTT's variable-length "remaining length" (1–4 bytes, 7 bits each, least significant first). */
export function remainingLength(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}
