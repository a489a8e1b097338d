// etcd's own Prometheus counters, read from /metrics on each member's client URL, summed over the
// members, and differenced over a window: what the clients asked of etcd, seen from etcd's side.
//   requests: grpc_server_msg_received_total — every message a client sent: each unary call
//             (Range, Txn, LeaseTimeToLive, …) and each message on a stream (a lease keepalive, a
//             watch create). grpc_server_handled_total alone would miss keepalives: a stream is
//             counted once, when it ends.
//   bytes:    etcd_network_client_grpc_received_bytes_total / sent_bytes_total.

export interface EtcdCounters {
  /** Messages received, by gRPC method (summed over members). */
  received: Map<string, number>;
  receivedBytes: number;
  sentBytes: number;
  /** Monotonic ms of the read. */
  atMs: number;
}

export interface EtcdRates {
  windowS: number;
  requestsPerS: number;
  /** Per gRPC method, requests/s (only methods that saw any). */
  byMethod: Map<string, number>;
  receivedBytesPerS: number;
  sentBytesPerS: number;
}

const RECEIVED = /^grpc_server_msg_received_total\{([^}]*)\}\s+(\S+)/;
const METHOD = /grpc_method="([^"]+)"/;

export async function readEtcdCounters(
  clientUrls: readonly string[],
  timeoutMs = 5_000,
): Promise<EtcdCounters> {
  const c: EtcdCounters = { received: new Map(), receivedBytes: 0, sentBytes: 0, atMs: performance.now() };
  const texts = await Promise.all(
    clientUrls.map(async (u) => {
      const res = await fetch(`${u}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
      if (!res.ok) throw new Error(`etcd metrics ${u}: HTTP ${res.status}`);
      return res.text();
    }),
  );
  for (const text of texts) {
    for (const line of text.split('\n')) {
      const m = RECEIVED.exec(line);
      if (m) {
        const method = METHOD.exec(m[1]!)?.[1] ?? '?';
        c.received.set(method, (c.received.get(method) ?? 0) + Number(m[2]));
      } else if (line.startsWith('etcd_network_client_grpc_received_bytes_total ')) {
        c.receivedBytes += Number(line.split(' ')[1]);
      } else if (line.startsWith('etcd_network_client_grpc_sent_bytes_total ')) {
        c.sentBytes += Number(line.split(' ')[1]);
      }
    }
  }
  return c;
}

export function ratesBetween(a: EtcdCounters, b: EtcdCounters): EtcdRates {
  const windowS = (b.atMs - a.atMs) / 1000;
  const byMethod = new Map<string, number>();
  let total = 0;
  for (const [method, n] of b.received) {
    const d = n - (a.received.get(method) ?? 0);
    if (d > 0) byMethod.set(method, d / windowS);
    total += d;
  }
  return {
    windowS,
    requestsPerS: total / windowS,
    byMethod,
    receivedBytesPerS: (b.receivedBytes - a.receivedBytes) / windowS,
    sentBytesPerS: (b.sentBytes - a.sentBytes) / windowS,
  };
}
