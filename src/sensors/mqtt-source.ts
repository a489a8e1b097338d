// Sensor readings from MQTT gateways (topics and payloads: docs/mqtt-topics.md): subscribes to every
// report and status topic of the site's MQTT gateways and hands each message to the SensorStore.
// Invariants: a message can never throw out of the handler; a packet larger than
// MAX_MQTT_PACKET_BYTES, or a PUBLISH at QoS 2 (we subscribe at QoS 1), is refused before it is
// buffered (mqtt-packet-guard.ts), and no QoS 2 message is ever held for a PUBREL; a message that
// is not used is counted by reason and logged at most once per reason every 10 s, wire text
// clipped; the client reconnects by itself with a bounded, backing-off period; stop() is bounded
// and idempotent.
// Credentials come from the config's files (src/config/link-secrets.ts), never from the URL; a
// broker that refuses them is counted and logged once per streak, without the password.
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { type IClientOptions, MqttClient, Store } from 'mqtt';
import type { Packet } from 'mqtt-packet';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { Site } from '../config/site-schema.ts';
import { clip, LogLimiter } from '../util/log-limit.ts';
import {
  guardPacketSize,
  PACKET_REFUSALS,
  type PacketRefusal,
  type RefusedPacket,
} from './mqtt-packet-guard.ts';
import { MAX_REPORT_BYTES } from './report.ts';
import type { SensorStore } from './sensor-store.ts';

/**
 * The largest MQTT packet a controller reads. Above the largest report (`MAX_REPORT_BYTES`, which
 * the store counts as `too-large` and drops alone) so a gateway with a few overlong reports costs
 * only those; far below MQTT's 256 MB, so one publish cannot grow every controller by its size.
 */
export const MAX_MQTT_PACKET_BYTES = 4 * MAX_REPORT_BYTES;
/** Reconnect delay after a refused packet: doubles per refusal in a row, up to the cap. */
const RECONNECT_MS = 1000;
const RECONNECT_MAX_MS = 30_000;
/** A refusal this long after the previous one starts the backoff over; so long without one, the delay is back to normal. */
const REFUSAL_STREAK_RESET_MS = 60_000;
/**
 * Work on one socket read's messages before the rest wait for the next turn of the event loop. A
 * read holds up to 64 KB, a few hundred reports, and mqtt.js works through all of a read's packets
 * in one task (process.nextTick between them): ~10 ms at 1 000 units, in front of every control
 * loop's timer.
 */
export const MQTT_INGEST_SLICE_MS = 2;
const MQTT_METRICS = [
  'coolctl_sensor_mqtt_packets_refused_total',
  'coolctl_sensor_mqtt_messages_dropped_total',
  'coolctl_sensor_mqtt_auth_refused_total',
];
/** The QoS of every subscription: a broker grants at most this, so a PUBLISH above it is a violation. */
const SUBSCRIBE_QOS = 1 as const;
const DROP_LOG_EVERY_MS = 10_000;

/** Why a message was not handed on (a report's own drops are the store's); each is a counter label. */
export type MqttDropReason = 'unroutable-topic' | 'unknown-gateway' | 'malformed-status' | 'handler-error';
export const MQTT_DROP_REASONS: readonly MqttDropReason[] = [
  'unroutable-topic',
  'unknown-gateway',
  'malformed-status',
  'handler-error',
];

/**
 * mqtt.js's incoming store holds a QoS 2 PUBLISH until the broker's PUBREL. The guard refuses any
 * QoS 2 PUBLISH and closes the connection; this store keeps none of those the refused read may still
 * have carried to the parser, so not one waits for a PUBREL that a rogue broker never sends.
 */
class NoQos2Store extends Store {
  override put(_packet: Packet, cb: () => void): this {
    cb();
    return this;
  }
}
/** CONNACK codes (3.1.1: 4, 5; 5.0: 134, 135) that mean the broker refused who we are. */
const AUTH_REFUSED_CODES = new Set([4, 5, 134, 135]);

export interface MqttSourceOptions {
  url: string;
  clientId?: string;
  username?: string | undefined;
  password?: string | undefined;
  /** mqtts:// only: the broker's CA (else the system's), and a client certificate. */
  tls?: { ca?: Buffer | undefined; cert?: Buffer | undefined; key?: Buffer | undefined } | undefined;
  logger?: Logger;
  registry?: Registry;
  /** Deadline for stop(): disconnect politely, else drop the socket. */
  stopDeadlineMs?: number;
  /**
   * 4 (MQTT 3.1.1, the default) or 5. With 5 the broker is told the largest packet we take
   * (Maximum Packet Size) and sends no retained message on report topics.
   */
  protocolVersion?: 4 | 5;
  /** Largest packet read (default MAX_MQTT_PACKET_BYTES). */
  maxPacketBytes?: number;
  /** Work on a read's messages before the rest wait for the next turn (default MQTT_INGEST_SLICE_MS). */
  ingestSliceMs?: number;
}

interface Route {
  prefix: string;
  /** `${prefix}/gateway/`: what every topic of the route starts with. */
  gatewayPrefix: string;
}

export class MqttSource {
  readonly counters = {
    messages: 0,
    statusMessages: 0,
    /** Messages not handed on, by reason. */
    dropped: Object.fromEntries(MQTT_DROP_REASONS.map((r) => [r, 0])) as Record<MqttDropReason, number>,
    connects: 0,
    /** Packets refused unread (each closed the connection), and by reason. */
    refusedPackets: 0,
    refused: Object.fromEntries(PACKET_REFUSALS.map((r) => [r, 0])) as Record<PacketRefusal, number>,
    authRefused: 0,
    /** Times the rest of a read's messages waited for the next turn of the event loop. */
    ingestYields: 0,
  };
  /** The ingest slice in progress: when it began, and whether this task's ticks are still its. */
  private sliceFrom = 0;
  private inSlice = false;
  private readonly store: SensorStore;
  private readonly opts: MqttSourceOptions;
  private readonly log: Logger | undefined;
  private readonly routes: Route[];
  private readonly mqttGateways: Set<string>;
  private client: MqttClient | undefined;
  private stopping: Promise<void> | undefined;
  private connectedOnce = false;
  private subscribed = false;
  private readonly onSubscribed = new Set<() => void>();
  private readonly maxPacketBytes: number;
  private refusalStreak = 0;
  private lastRefusalMs = Number.NEGATIVE_INFINITY;
  /** Puts the reconnect delay back to normal once refusals have stopped for a while. */
  private backoffReset: NodeJS.Timeout | undefined;
  /** The connection is closing because we refused a packet: that line is written already. */
  private refusedClose = false;
  /** The broker refused our credentials and that was logged; cleared by the next connect. */
  private authRefusedLogged = false;
  private authRefusalStreak = 0;
  private readonly dropLog = new LogLimiter(() => performance.now(), DROP_LOG_EVERY_MS);

  constructor(site: Site, store: SensorStore, opts: MqttSourceOptions) {
    this.store = store;
    this.opts = opts;
    this.log = opts.logger;
    this.maxPacketBytes = opts.maxPacketBytes ?? MAX_MQTT_PACKET_BYTES;
    const gws = site.gateways.filter((g) => (g.transport ?? 'mqtt') === 'mqtt');
    this.mqttGateways = new Set(gws.map((g) => g.id));
    this.routes = [...new Set(gws.map((g) => g.topicPrefix ?? 'coolctl/sim'))].map((prefix) => ({
      prefix,
      gatewayPrefix: `${prefix}/gateway/`,
    }));
    if (opts.registry) this.registerMetrics(opts.registry);
  }

  private registerMetrics(registry: Registry): void {
    // A reload that changes the sensors builds a new source on the same registry.
    for (const name of MQTT_METRICS) registry.removeSingleMetric(name);
    const counters = this.counters;
    new Counter({
      name: 'coolctl_sensor_mqtt_packets_refused_total',
      help:
        'MQTT packets refused before being read, by reason: too-large, malformed-length, qos-not-granted ' +
        '(a PUBLISH above the QoS we subscribe with); each closes the connection',
      labelNames: ['reason'],
      registers: [registry],
      collect() {
        this.reset();
        for (const reason of PACKET_REFUSALS) this.inc({ reason }, counters.refused[reason]);
      },
    });
    new Counter({
      name: 'coolctl_sensor_mqtt_messages_dropped_total',
      help:
        'MQTT messages not used, by reason: unroutable-topic, unknown-gateway (a status), malformed-status, ' +
        'handler-error (reports are counted in coolctl_sensor_reports_dropped_total)',
      labelNames: ['reason'],
      registers: [registry],
      collect() {
        this.reset();
        for (const reason of MQTT_DROP_REASONS) this.inc({ reason }, counters.dropped[reason]);
      },
    });
    new Counter({
      name: 'coolctl_sensor_mqtt_auth_refused_total',
      help: 'connection attempts the MQTT broker refused for bad credentials or no authorization',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(counters.authRefused);
      },
    });
  }

  /** Connected and subscribed: readings can arrive. */
  get connected(): boolean {
    return (this.client?.connected ?? false) && this.subscribed;
  }

  /** Started and not stopped: the client is connected or keeps reconnecting (for /healthz). */
  get running(): boolean {
    return this.client !== undefined && this.stopping === undefined;
  }

  /** Starts connecting and returns at once; the client keeps trying until stop(). */
  start(): void {
    if (this.client || this.routes.length === 0) return;
    const v5 = this.opts.protocolVersion === 5;
    const options: IClientOptions = {
      clientId:
        this.opts.clientId ?? `coolctl-ingest-${process.pid}-${Math.random().toString(16).slice(2, 8)}`,
      protocolVersion: v5 ? 5 : 4,
      clean: true,
      // We subscribe on every connect ourselves; mqtt.js's own resubscription would make ours a
      // no-op whose callback runs before the broker's SUBACK, and `connected` would say so too early.
      resubscribe: false,
      reconnectPeriod: RECONNECT_MS,
      // A refused CONNACK (bad password, not authorized) would otherwise end the client for good;
      // a fixed password file or broker ACL must be picked up without a restart.
      reconnectOnConnackError: true,
      connectTimeout: 5000,
      keepalive: 15,
      // Otherwise mqtt-packet fills a process-wide cache of 65 536 two-byte Buffers (~7 MB of heap)
      // to write packet ids; we send a handful of packets (subscribe, ping), never at a rate.
      writeCache: false,
      incomingStore: new NoQos2Store(),
      ...(v5 ? { properties: { maximumPacketSize: this.maxPacketBytes } } : {}),
      ...(this.opts.username ? { username: this.opts.username } : {}),
      ...(this.opts.password ? { password: this.opts.password } : {}),
    };
    // Our own stream builder (the public constructor, not `connect()`): the size guard watches the
    // broker connection's reads before the client's parser gets any.
    const client = new MqttClient(() => this.openStream(), options);
    // As mqtt.connect() does: a client error without a listener must not become an uncaught one.
    client.on('error', () => {});
    this.client = client;
    client.on('connect', () => {
      this.counters.connects++;
      this.authRefusedLogged = false;
      this.authRefusalStreak = 0;
      if (!this.refusalStreak) client.options.reconnectPeriod = RECONNECT_MS;
      // Clean session: whatever arrives from here on is newer than what came before the subscription.
      this.store.statusSubscriptionStarted(this.mqttGateways);
      // Reports are never retained by the gateways; with MQTT 5 a retained one (stale, or a planted
      // oversized one that would refuse every reconnect) is not even sent.
      const topics = Object.fromEntries(
        this.routes.flatMap((r) => [
          [`${r.prefix}/gateway/+/node/+/report`, { qos: SUBSCRIBE_QOS, ...(v5 ? { rh: 2 } : {}) }],
          [`${r.prefix}/gateway/+/status`, { qos: SUBSCRIBE_QOS }],
        ]),
      );
      client.subscribe(topics, (err) => {
        if (err) {
          this.log?.error({ err: err.message, topics: Object.keys(topics) }, 'MQTT subscribe failed');
          return;
        }
        this.subscribed = true;
        for (const f of this.onSubscribed) f();
      });
      this.log?.info({ url: this.opts.url, reconnect: this.connectedOnce }, 'sensor MQTT connected');
      this.connectedOnce = true;
    });
    client.on('close', () => {
      this.subscribed = false;
      const refused = this.refusedClose;
      this.refusedClose = false;
      if (this.connectedOnce && !this.stopping && !refused)
        this.log?.warn({ url: this.opts.url }, 'sensor MQTT connection lost; reconnecting');
    });
    // Reconnect attempts repeat every second while the broker is away: debug, not a warning each time.
    client.on('error', (err) => {
      const code = (err as { code?: unknown }).code;
      if (typeof code === 'number' && AUTH_REFUSED_CODES.has(code)) {
        this.counters.authRefused++;
        // Backs off like a refused packet: a wrong password must not hammer the broker every second.
        this.authRefusalStreak++;
        client.options.reconnectPeriod = Math.min(
          RECONNECT_MS * 2 ** (this.authRefusalStreak - 1),
          RECONNECT_MAX_MS,
        );
        if (!this.authRefusedLogged) {
          this.authRefusedLogged = true;
          this.log?.error(
            { url: this.opts.url, username: this.opts.username ?? null, code, reason: err.message },
            'sensor MQTT broker refused our credentials; retrying (check sensors.mqtt username and passwordFile)',
          );
        }
        return;
      }
      this.log?.debug({ err: err.message }, 'sensor MQTT error');
    });
    client.on('message', (topic, payload, packet) => this.onMessage(topic, payload, packet.retain));
    // mqtt.js takes a read's next packet (and acknowledges a QoS 1 one) once this calls back: the
    // place to let the event loop turn. The messages wait in mqtt.js's queue, and the socket's
    // further reads behind its stream's backpressure; none is dropped.
    client.handleMessage = (_packet, done) => this.paced(done);
  }

  /** Calls `done` now while the slice lasts, else on the event loop's next turn (`ingestSliceMs`). */
  private paced(done: () => void): void {
    const now = performance.now();
    if (!this.inSlice) {
      // mqtt.js moves between a read's packets with process.nextTick, and Node runs every queued
      // tick before any microtask: this one marks the end of the task.
      this.inSlice = true;
      this.sliceFrom = now;
      queueMicrotask(() => {
        this.inSlice = false;
      });
    }
    if (now - this.sliceFrom < (this.opts.ingestSliceMs ?? MQTT_INGEST_SLICE_MS)) {
      done();
      return;
    }
    this.counters.ingestYields++;
    setImmediate(done);
  }

  /** The broker connection, watched by the packet-size guard. */
  private openStream(): Duplex {
    const url = new URL(this.opts.url);
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const secure = url.protocol === 'mqtts:';
    const port = Number(url.port) || (secure ? 8883 : 1883);
    // TLS verifies the broker's certificate (Node's default); SNI only for a name, never an address.
    const t = this.opts.tls;
    const socket = secure
      ? tls.connect({
          host,
          port,
          ...(net.isIP(host) === 0 ? { servername: host } : {}),
          ...(t?.ca ? { ca: t.ca } : {}),
          ...(t?.cert && t.key ? { cert: t.cert, key: t.key } : {}),
        })
      : net.connect({ host, port });
    return guardPacketSize(socket, this.maxPacketBytes, (p) => this.onRefused(p), SUBSCRIBE_QOS);
  }

  /**
   * One line and one count per refused packet; the connection is closing, and the next attempt
   * waits longer for each refusal in a row, so a sender that repeats cannot keep us reconnecting
   * every second.
   */
  private onRefused(p: RefusedPacket): void {
    this.counters.refusedPackets++;
    this.counters.refused[p.reason]++;
    const now = performance.now();
    this.refusalStreak = now - this.lastRefusalMs > REFUSAL_STREAK_RESET_MS ? 1 : this.refusalStreak + 1;
    this.lastRefusalMs = now;
    const reconnectMs = Math.min(RECONNECT_MS * 2 ** (this.refusalStreak - 1), RECONNECT_MAX_MS);
    if (this.client) this.client.options.reconnectPeriod = reconnectMs;
    this.refusedClose = true;
    clearTimeout(this.backoffReset);
    this.backoffReset = setTimeout(() => {
      if (this.client) this.client.options.reconnectPeriod = RECONNECT_MS;
    }, REFUSAL_STREAK_RESET_MS);
    this.backoffReset.unref();
    this.log?.warn(
      {
        reason: p.reason,
        topic: p.topic === undefined ? null : clip(p.topic),
        packetType: p.packetType,
        ...(p.reason === 'qos-not-granted' ? { qos: p.qos, maxQos: SUBSCRIBE_QOS } : {}),
        announcedBytes: p.announcedBytes,
        maxBytes: this.maxPacketBytes,
        reconnectMs,
      },
      'MQTT packet refused before reading it; connection closed',
    );
  }

  /** Resolves once connected and subscribed (or rejects after `timeoutMs`); for tests and readiness. */
  waitConnected(timeoutMs: number): Promise<void> {
    if (!this.client) return Promise.reject(new Error('MQTT source not started'));
    if (this.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.onSubscribed.delete(done);
        reject(new Error(`no MQTT subscription at ${this.opts.url} within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.onSubscribed.delete(done);
        resolve();
      };
      this.onSubscribed.add(done);
    });
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      clearTimeout(this.backoffReset);
      const client = this.client;
      if (!client) return;
      // A graceful end waits for a connect in flight (up to connectTimeout) only to say DISCONNECT;
      // a client not connected has nothing to say, so a stop during start-up is immediate.
      if (!client.connected) {
        client.end(true);
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        client.endAsync(false).catch(() => undefined),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, this.opts.stopDeadlineMs ?? 2000);
        }),
      ]);
      clearTimeout(timer);
      if (!client.disconnected) client.end(true);
    })();
    return this.stopping;
  }

  private onMessage(topic: string, payload: Buffer, retained: boolean): void {
    try {
      this.counters.messages++;
      for (const { gatewayPrefix } of this.routes) {
        if (!topic.startsWith(gatewayPrefix)) continue;
        // GW/node/NODE/report or GW/status; cut at the slashes rather than split: one message
        // costs a few string slices, not an array of them.
        const start = gatewayPrefix.length;
        const a = topic.indexOf('/', start);
        if (a === -1) continue;
        const b = topic.indexOf('/', a + 1);
        if (b === -1) {
          if (topic.length - a === 7 && topic.endsWith('status')) {
            this.counters.statusMessages++;
            this.onStatus(topic, topic.slice(start, a), payload, retained);
            return;
          }
          continue;
        }
        const c = topic.indexOf('/', b + 1);
        if (
          c !== -1 &&
          b - a === 5 &&
          topic.startsWith('node', a + 1) &&
          topic.length - c === 7 &&
          topic.endsWith('report')
        ) {
          // A retained report (gateways never retain theirs; MQTT 3.1.1 cannot ask for none) comes
          // at every (re)connect, however old: the store counts it and applies nothing of it.
          this.store.ingestPayload(payload, 'mqtt', topic.slice(start, a), topic.slice(b + 1, c), {
            retained,
          });
          return;
        }
      }
      this.dropMessage('unroutable-topic', topic, 'neither a report nor a status topic of the site');
    } catch (err) {
      // The store never throws by contract; this is the last line of defence for the client's loop.
      this.dropMessage('handler-error', topic, 'the handler threw', err);
    }
  }

  /** Counts the message and logs it, at most one line per reason every 10 s (with how many were not). */
  private dropMessage(reason: MqttDropReason, topic: string, detail: string, err?: unknown): void {
    this.counters.dropped[reason]++;
    if (!this.log) return;
    const notLogged = this.dropLog.admit(reason);
    if (notLogged < 0) return;
    if (reason === 'handler-error')
      this.log.error({ reason, topic: clip(topic), err, notLogged }, 'sensor message handler failed');
    else this.log.warn({ reason, topic: clip(topic), detail, notLogged }, 'sensor MQTT message dropped');
  }

  /** `retained`: sent because we subscribed (of unknown age), not as it was published. */
  private onStatus(topic: string, gw: string, payload: Buffer, retained: boolean): void {
    if (!this.mqttGateways.has(gw)) {
      this.dropMessage('unknown-gateway', topic, 'no MQTT gateway of the site has this id');
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse(payload.toString('utf8'));
    } catch {
      this.dropMessage('malformed-status', topic, `not JSON (${payload.length} bytes)`);
      return;
    }
    const { online, reason } = (typeof body === 'object' && body !== null ? body : {}) as {
      online?: unknown;
      reason?: unknown;
    };
    if (typeof online !== 'boolean') {
      this.dropMessage('malformed-status', topic, `"online" is not true or false (${payload.length} bytes)`);
      return;
    }
    // `reason` is the gateway's own text, of any length: the store clips it where it logs it.
    this.store.setGatewayOnline(gw, online, typeof reason === 'string' ? reason : 'status', { retained });
  }
}
