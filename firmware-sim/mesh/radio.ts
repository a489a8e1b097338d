// The mesh radio model: what happens to one report on its way over `hops` links to the gateway.
// Each link loses a frame (and, independently, its ack) with probability `lossP`; the sender
// retries up to `maxRetries` times after an ack timeout. A retry whose ack got lost delivers a
// second copy, which then travels on by itself: that is where gateway-side duplicates come from.
// Pure and deterministic for a given `rnd`; no timers here.

export interface LinkModel {
  /** Probability in [0, 1] that one frame (data or ack) is lost on one hop. */
  lossP: number;
  perHopLatencyMs: number;
  maxRetries: number;
}

/** One copy of a report that reached the gateway. */
export interface ArrivedCopy {
  /** Wall ms from the node's first transmission to arrival at the gateway. */
  latencyMs: number;
  /** Link-level retries this copy took, summed over its hops. */
  retries: number;
}

/** Copies of one report in flight at once are bounded, so a lossy 16-hop path cannot explode. */
export const MAX_COPIES_PER_REPORT = 4;
/** Latency is capped so delivery timers stay bounded even with the largest configured hop latency. */
export const MAX_LATENCY_MS = 10_000;

/** Sends one report over the mesh; returns the copies that reached the gateway (empty = lost). */
export function transmit(hops: number, link: LinkModel, rnd: () => number): ArrivedCopy[] {
  const { lossP, perHopLatencyMs, maxRetries } = link;
  // The sender waits about two air times for the ack before it retries.
  const ackTimeoutMs = Math.max(5, 2 * perHopLatencyMs);
  const arrived: ArrivedCopy[] = [];
  const work: { hop: number; latencyMs: number; retries: number }[] = [{ hop: 0, latencyMs: 0, retries: 0 }];
  let copies = 1;
  while (work.length > 0) {
    const copy = work.pop()!;
    let alive = true;
    for (let h = copy.hop; h < hops && alive; h++) {
      let senderMs = copy.latencyMs;
      let retries = copy.retries;
      let firstArrivalMs = -1;
      let firstRetries = 0;
      for (let attempt = 0; attempt <= maxRetries; attempt++) {
        if (attempt > 0) {
          senderMs += ackTimeoutMs;
          retries++;
        }
        const arrivalMs = senderMs + perHopLatencyMs * (0.5 + rnd());
        if (rnd() < lossP) continue; // data frame lost: no ack comes, the sender retries
        if (firstArrivalMs < 0) {
          firstArrivalMs = arrivalMs;
          firstRetries = retries;
        } else if (copies < MAX_COPIES_PER_REPORT) {
          // The next hop already had this frame; it forwards the retry too (no dedup in the mesh).
          copies++;
          work.push({ hop: h + 1, latencyMs: arrivalMs, retries });
        }
        if (rnd() >= lossP) break; // ack came back: the sender stops
      }
      if (firstArrivalMs < 0) alive = false;
      else {
        copy.latencyMs = firstArrivalMs;
        copy.retries = firstRetries;
      }
    }
    if (alive) arrived.push({ latencyMs: Math.min(MAX_LATENCY_MS, copy.latencyMs), retries: copy.retries });
  }
  return arrived;
}

/** Standard normal sample (Box–Muller) from a uniform PRNG. */
export function gaussian(rnd: () => number): number {
  const u = 1 - rnd(); // (0, 1]: log(0) would be -Infinity
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rnd());
}
