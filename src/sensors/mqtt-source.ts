// Sensor readings from MQTT gateways (topics and payloads: docs/mqtt-topics.md): subscribes to every
// report and status topic of the site's MQTT gateways and hands each message to the SensorStore.
// Invariants: a message can never throw out of the handler; the client reconnects by itself with
// a bounded period; stop() is bounded and idempotent.
import { connect, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { Site } from '../config/site-schema.ts';
import type { SensorStore } from './sensor-store.ts';

export interface MqttSourceOptions {
  url: string;
  clientId?: string;
  username?: string;
  password?: string;
  logger?: Logger;
  /** Deadline for stop(): disconnect politely, else drop the socket. */
  stopDeadlineMs?: number;
}

interface Route {
  prefix: string;
  /** `${prefix}/gateway/`: what every topic of the route starts with. */
  gatewayPrefix: string;
}

export class MqttSource {
  readonly counters = { messages: 0, statusMessages: 0, unroutable: 0, handlerErrors: 0, connects: 0 };
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

  constructor(site: Site, store: SensorStore, opts: MqttSourceOptions) {
    this.store = store;
    this.opts = opts;
    this.log = opts.logger;
    const gws = site.gateways.filter((g) => (g.transport ?? 'mqtt') === 'mqtt');
    this.mqttGateways = new Set(gws.map((g) => g.id));
    this.routes = [...new Set(gws.map((g) => g.topicPrefix ?? 'coolctl/sim'))].map((prefix) => ({
      prefix,
      gatewayPrefix: `${prefix}/gateway/`,
    }));
  }

  /** Connected and subscribed: readings can arrive. */
  get connected(): boolean {
    return (this.client?.connected ?? false) && this.subscribed;
  }

  /** Starts connecting and returns at once; the client keeps trying until stop(). */
  start(): void {
    if (this.client || this.routes.length === 0) return;
    const client = connect(this.opts.url, {
      clientId:
        this.opts.clientId ?? `coolctl-ingest-${process.pid}-${Math.random().toString(16).slice(2, 8)}`,
      clean: true,
      reconnectPeriod: 1000,
      connectTimeout: 5000,
      keepalive: 15,
      // Otherwise mqtt-packet fills a process-wide cache of 65 536 two-byte Buffers (~7 MB of heap)
      // to write packet ids; we send a handful of packets (subscribe, ping), never at a rate.
      writeCache: false,
      ...(this.opts.username ? { username: this.opts.username } : {}),
      ...(this.opts.password ? { password: this.opts.password } : {}),
    });
    this.client = client;
    client.on('connect', () => {
      this.counters.connects++;
      const topics = this.routes.flatMap((r) => [
        `${r.prefix}/gateway/+/node/+/report`,
        `${r.prefix}/gateway/+/status`,
      ]);
      client.subscribe(topics, { qos: 1 }, (err) => {
        if (err) {
          this.log?.error({ err: err.message, topics }, 'MQTT subscribe failed');
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
      if (this.connectedOnce && !this.stopping)
        this.log?.warn({ url: this.opts.url }, 'sensor MQTT connection lost; reconnecting');
    });
    // Reconnect attempts repeat every second while the broker is away: debug, not a warning each time.
    client.on('error', (err) => this.log?.debug({ err: err.message }, 'sensor MQTT error'));
    client.on('message', (topic, payload) => this.onMessage(topic, payload));
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
      const client = this.client;
      if (!client) return;
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

  private onMessage(topic: string, payload: Buffer): void {
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
            this.onStatus(topic.slice(start, a), payload);
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
          this.store.ingestPayload(payload, 'mqtt', topic.slice(start, a), topic.slice(b + 1, c));
          return;
        }
      }
      this.counters.unroutable++;
    } catch (err) {
      // The store never throws by contract; this is the last line of defence for the client's loop.
      this.counters.handlerErrors++;
      this.log?.error({ err, topic }, 'sensor message handler failed');
    }
  }

  private onStatus(gw: string, payload: Buffer): void {
    if (!this.mqttGateways.has(gw)) {
      this.counters.unroutable++;
      return;
    }
    let online: unknown;
    let reason: unknown;
    try {
      ({ online, reason } = JSON.parse(payload.toString('utf8')) as { online?: unknown; reason?: unknown });
    } catch {
      online = undefined;
    }
    if (typeof online !== 'boolean') {
      this.counters.unroutable++;
      this.log?.warn({ gateway: gw, bytes: payload.length }, 'malformed gateway status ignored');
      return;
    }
    this.store.setGatewayOnline(gw, online, typeof reason === 'string' ? reason : 'status');
  }
}
