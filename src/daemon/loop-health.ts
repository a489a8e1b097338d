// What /healthz vouches for: every loop the node runs still runs — each control group's loop ticks,
// the leadership decision loop finishes passes, sensor ingest is started and not stopped. A loop that
// stopped makes /healthz answer 503 with the reason (a load balancer or an operator's probe sees a
// wedged node); what the world does to the node (etcd out of reach, a unit down) is /readyz's and
// the alarms' business, not a stopped loop.

/** One loop's liveness: null while it runs, else why it is judged stopped. */
export type LoopProbe = (nowMs: number) => string | null;

export interface LoopHealthReport {
  ok: boolean;
  /** Why, one line per stopped loop (empty when ok). */
  problems: string[];
}

/** Runs every probe (a throwing probe is a stopped loop, with its message). */
export function checkLoops(probes: Iterable<LoopProbe>, nowMs = performance.now()): LoopHealthReport {
  const problems: string[] = [];
  for (const probe of probes) {
    let why: string | null;
    try {
      why = probe(nowMs);
    } catch (err) {
      why = `health probe failed: ${(err as Error).message}`;
    }
    if (why) problems.push(why);
  }
  return { ok: problems.length === 0, problems };
}

/** A loop that marks each pass with a monotonic time: stopped once none came within `limitMs`. */
export function tickProbe(what: string, lastAtMs: () => number | undefined, limitMs: number): LoopProbe {
  return (nowMs) => {
    const at = lastAtMs();
    if (at === undefined) return null;
    const idleMs = nowMs - at;
    return idleMs > limitMs
      ? `${what} has not run for ${Math.round(idleMs)} ms (limit ${Math.round(limitMs)} ms)`
      : null;
  };
}

/** A component that is either running or not (started by the node, stopped only when it stops). */
export function runningProbe(what: string, running: () => boolean | undefined): LoopProbe {
  return () => (running() === false ? `${what} is stopped` : null);
}

/** What a node runs, as the probes of `nodeLoopProbes` read it. */
export interface NodeLoops {
  /** Each control group's loop (GroupDriver): ticks at least once a period while started. */
  drivers: Iterable<{ group: string; lastTickAtMs: number }>;
  periodMs: number;
  leadership?: { lastPassAtMs?: number } | undefined;
  leaseTtlS: number;
  /** Sensor ingest the site needs: undefined when it has no such gateways. */
  mqtt?: (() => boolean) | undefined;
  modbus?: (() => boolean) | undefined;
}

/**
 * The node's probes: each group's control loop ticked within three periods (at least 2 s); the leadership decision
 * loop finished a pass within max(10 s, 3 TTL) (it passes at least every few keepalive intervals,
 * and a pass is bounded by etcd call deadlines even with etcd out of reach); sensor ingest runs.
 */
export function nodeLoopProbes(n: NodeLoops): LoopProbe[] {
  // Never under 2 s: a busy event loop (a start-up, a long GC) is not a stopped loop.
  const tickLimitMs = Math.max(n.periodMs * 3, 2000);
  const probes: LoopProbe[] = [...n.drivers].map((d) =>
    tickProbe(`the control loop of group ${d.group}`, () => d.lastTickAtMs, tickLimitMs),
  );
  const leadership = n.leadership;
  if (leadership)
    probes.push(
      tickProbe(
        'the leadership decision loop',
        () => leadership.lastPassAtMs,
        Math.max(10_000, n.leaseTtlS * 3000),
      ),
    );
  if (n.mqtt) probes.push(runningProbe('sensor ingest over MQTT', n.mqtt));
  if (n.modbus) probes.push(runningProbe('sensor ingest over Modbus', n.modbus));
  return probes;
}
