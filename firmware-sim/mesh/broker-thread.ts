// The simulator's MQTT broker thread: runs startBrokerHere() with the settings it was started with,
// and gives back what the starting thread needs (broker.ts): each refused client counted in shared
// memory, and where it listens and its log lines as messages. Ends when told to close, after the
// broker has closed.
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { Logger } from 'pino';
import { CoolctlError, ErrorCodes } from '../../src/errors.ts';
import {
  type BrokerCounters,
  type BrokerHandle,
  type BrokerSecurity,
  type BrokerThreadData,
  type BrokerThreadMessage,
  COUNTER_FIELDS,
  startBrokerHere,
} from './broker.ts';

if (!isMainThread && parentPort) {
  const port = parentPort;
  const send = (m: BrokerThreadMessage): void => port.postMessage(m);
  const d = workerData as BrokerThreadData;
  // Structured cloning turns Buffers into Uint8Arrays; tls and the password checks want Buffers.
  const tlsIn = d.security.tls;
  const security: BrokerSecurity = {
    ...(tlsIn
      ? { tls: { cert: Buffer.from(tlsIn.cert), key: Buffer.from(tlsIn.key), ca: Buffer.from(tlsIn.ca) } }
      : {}),
    ...(d.security.auth ? { auth: d.security.auth } : {}),
  };
  // Counted in memory the starting thread reads, before the refusal is answered.
  const counts = new Int32Array(d.counts);
  const counters = {} as BrokerCounters;
  for (const [i, field] of COUNTER_FIELDS.entries()) {
    Object.defineProperty(counters, field, {
      enumerable: true,
      get: () => Atomics.load(counts, i),
      set: (v: number) => Atomics.store(counts, i, v),
    });
  }
  const logAt =
    (level: 'debug' | 'info' | 'warn' | 'error') =>
    (fieldsOrMsg: Record<string, unknown> | string, msg?: string): void => {
      if (typeof fieldsOrMsg === 'string') send({ t: 'log', level, fields: {}, msg: fieldsOrMsg });
      else send({ t: 'log', level, fields: plain(fieldsOrMsg), msg: msg ?? '' });
    };
  const logger = { debug: logAt('debug'), info: logAt('info'), warn: logAt('warn'), error: logAt('error') };
  let broker: BrokerHandle | undefined;
  port.on('message', (m: { t: 'close' }) => {
    if (m.t !== 'close') return;
    void (broker?.close() ?? Promise.resolve()).finally(() => {
      send({ t: 'closed' });
      port.close();
    });
  });
  startBrokerHere({
    host: d.host,
    port: d.port,
    security,
    counters,
    logger: logger as unknown as Logger,
    maxBacklogBytes: d.maxBacklogBytes,
    maxConnections: d.maxConnections,
  }).then(
    (b) => {
      broker = b;
      send({ t: 'ready', url: b.url, port: b.port });
    },
    (err: unknown) =>
      send({
        t: 'failed',
        code: err instanceof CoolctlError ? err.code : ErrorCodes.STARTUP,
        message: err instanceof Error ? err.message : String(err),
      }),
  );
}

/** Log fields as data a message can carry (an Error becomes its name and message). */
function plain(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields))
    out[k] = v instanceof Error ? { type: v.name, message: v.message } : v;
  return out;
}
