// Alarm notifications leave the cluster two ways: a webhook whose body is what Alertmanager's
// `POST /api/v2/alerts` takes (an array of {labels, annotations, startsAt, endsAt, generatorURL}),
// and an MQTT topic (QoS 1) on the controller config's sensor broker. Each sink has its own queue,
// sends one notification at a time in order, and retries a failure with exponential backoff up to
// `maxAttempts`; then the notification is dropped, counted and kept in the list of failures the API
// shows. The queues are bounded (the oldest goes first, counted as failed): a receiver that is down
// for a day cannot grow the node. Secrets (the webhook's header) come from a file and never reach a
// log line or an error.
import { type IClientOptions, type MqttClient, connect as mqttConnect } from 'mqtt';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { type NotificationStatus, type StoredAlarm, stateOf, toApiAlarm } from './alarm.ts';

export type Transition =
  | 'raised'
  | 'acknowledged'
  | 'cleared'
  | 'shelved'
  | 'unshelved'
  | 'shelf-expired'
  | 'resend';

export interface WebhookSettings {
  url: string;
  /** A header sent with every request (its value read from a file). */
  header?: { name: string; value: string } | undefined;
  timeoutMs?: number;
}

export interface MqttSettings {
  url: string;
  topic: string;
  username?: string | undefined;
  password?: string | undefined;
  tls?: { ca?: Buffer | undefined; cert?: Buffer | undefined; key?: Buffer | undefined } | undefined;
  clientId: string;
}

export interface NotifierOptions {
  logger: Logger;
  registry: Registry;
  /** Labels every alert carries (site, cluster) and the link a receiver shows. */
  site: string;
  generatorUrl: string;
  webhook?: WebhookSettings | undefined;
  mqtt?: MqttSettings | undefined;
  maxAttempts?: number;
  /** First retry after this; doubles up to `maxBackoffMs`. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Most notifications waiting per sink. */
  maxQueue?: number;
  /** An alert without an end is told to end this far ahead; the owner sends it again before then. */
  firingHoldMs?: number;
}

/** One alert as Alertmanager v2 takes it (PostableAlert). */
export interface AlertmanagerAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt: string;
  generatorURL: string;
}

interface Item {
  alarm: StoredAlarm;
  transition: Transition;
  attempts: number;
  atMs: number;
}

interface Sink {
  name: 'webhook' | 'mqtt';
  target: string;
  queue: Item[];
  busy: boolean;
  timer: NodeJS.Timeout | undefined;
  sent: number;
  failed: number;
  send(item: Item): Promise<void>;
}

const MAX_FAILURES_KEPT = 50;

export class Notifier {
  private readonly opts: NotifierOptions;
  private readonly log: Logger;
  private readonly sinks: Sink[] = [];
  private readonly failures: NotificationStatus['failures'] = [];
  private readonly outcomes: Counter<'sink' | 'result'>;
  private mqtt: MqttClient | undefined;
  private stopped = false;

  constructor(opts: NotifierOptions) {
    this.opts = opts;
    this.log = opts.logger.child({ component: 'alarm-notify' });
    for (const n of ['coolctl_alarm_notifications_total', 'coolctl_alarm_notifications_pending'])
      opts.registry.removeSingleMetric(n);
    this.outcomes = new Counter({
      name: 'coolctl_alarm_notifications_total',
      help: 'alarm notifications by sink and result: sent, retried (a try failed, another follows), failed (given up after every try, or pushed out of a full queue)',
      labelNames: ['sink', 'result'],
      registers: [opts.registry],
    });
    const sinks = this.sinks;
    new Gauge({
      name: 'coolctl_alarm_notifications_pending',
      help: 'alarm notifications waiting to be sent (or retried), by sink',
      labelNames: ['sink'],
      registers: [opts.registry],
      collect() {
        for (const s of sinks) this.set({ sink: s.name }, s.queue.length);
      },
    });
    if (opts.webhook) this.sinks.push(this.webhookSink(opts.webhook));
    if (opts.mqtt) this.sinks.push(this.mqttSink(opts.mqtt));
  }

  /**
   * Queues one transition of `alarm` on every sink. The webhook has no shelved state: a shelf is
   * silence (nothing sent, so Alertmanager resolves the alert at its endsAt), and its end — by an
   * operator or by expiry — sends the alert firing again, the same body as its raise.
   */
  notify(alarm: StoredAlarm, transition: Transition): void {
    if (this.stopped) return;
    for (const s of this.sinks) {
      if (s.name === 'webhook' && transition === 'shelved') continue;
      if (s.name === 'mqtt' && transition === 'resend') continue;
      if (s.queue.length >= (this.opts.maxQueue ?? 1000)) {
        const dropped = s.queue.shift()!;
        this.giveUp(s, dropped, 'the queue was full: pushed out by newer notifications');
      }
      s.queue.push({ alarm, transition, attempts: 0, atMs: Date.now() });
      this.pump(s);
    }
  }

  status(): NotificationStatus {
    return {
      sinks: this.sinks.map((s) => ({
        name: s.name,
        target: s.target,
        sent: s.sent,
        failed: s.failed,
        pending: s.queue.length,
      })),
      failures: [...this.failures],
    };
  }

  /** Whether any sink is configured. */
  get enabled(): boolean {
    return this.sinks.length > 0;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const s of this.sinks) clearTimeout(s.timer);
    const m = this.mqtt;
    this.mqtt = undefined;
    if (m) await new Promise<void>((resolve) => m.end(true, {}, () => resolve()));
  }

  private pump(s: Sink): void {
    if (s.busy || s.timer || this.stopped) return;
    const item = s.queue[0];
    if (!item) return;
    s.busy = true;
    item.attempts++;
    s.send(item).then(
      () => {
        s.busy = false;
        s.queue.shift();
        s.sent++;
        this.outcomes.inc({ sink: s.name, result: 'sent' });
        this.pump(s);
      },
      (err: unknown) => {
        s.busy = false;
        const why = (err as Error).message;
        const max = this.opts.maxAttempts ?? 6;
        if (item.attempts >= max) {
          s.queue.shift();
          this.giveUp(s, item, `${why} (after ${item.attempts} tries)`);
          this.pump(s);
          return;
        }
        this.outcomes.inc({ sink: s.name, result: 'retried' });
        const waitMs = Math.min(
          this.opts.maxBackoffMs ?? 60_000,
          (this.opts.backoffMs ?? 1000) * 2 ** (item.attempts - 1),
        );
        if (item.attempts === 1)
          this.log.warn(
            {
              sink: s.name,
              target: s.target,
              alarm: item.alarm.id,
              transition: item.transition,
              err: why,
              retryInMs: waitMs,
            },
            'alarm notification failed; retrying with backoff',
          );
        s.timer = setTimeout(() => {
          s.timer = undefined;
          this.pump(s);
        }, waitMs);
      },
    );
  }

  private giveUp(s: Sink, item: Item, error: string): void {
    s.failed++;
    this.outcomes.inc({ sink: s.name, result: 'failed' });
    this.failures.push({
      sink: s.name,
      alarm: item.alarm.id,
      transition: item.transition,
      error,
      atMs: Date.now(),
    });
    if (this.failures.length > MAX_FAILURES_KEPT) this.failures.shift();
    this.log.error(
      { sink: s.name, target: s.target, alarm: item.alarm.id, transition: item.transition, err: error },
      'alarm notification not delivered: given up',
    );
  }

  /** The Alertmanager v2 alert for one alarm now. */
  alertOf(a: StoredAlarm, nowMs = Date.now()): AlertmanagerAlert {
    const labels: Record<string, string> = {
      alertname: a.kind,
      severity: a.severity,
      alarm_id: a.id,
      site: this.opts.site,
      ...(a.group ? { group: a.group } : {}),
      ...(a.subject ? { subject: a.subject } : {}),
    };
    const annotations: Record<string, string> = {
      summary: a.message,
      state: stateOf(a),
      raised_by: a.raisedBy,
      ...(a.value !== null ? { value: String(a.value) } : {}),
      ...(a.ack ? { acknowledged_by: a.ack.user, acknowledged_at: new Date(a.ack.atMs).toISOString() } : {}),
      ...(a.ack?.comment ? { ack_comment: a.ack.comment } : {}),
      ...(a.clearReason ? { clear_reason: a.clearReason } : {}),
    };
    return {
      labels,
      annotations,
      startsAt: new Date(a.raisedAtMs).toISOString(),
      // Alertmanager resolves an alert at endsAt: a cleared one now, a firing one only if nobody
      // sends it again in time (the owner re-sends it well before).
      endsAt: new Date(a.clearedAtMs ?? nowMs + (this.opts.firingHoldMs ?? 300_000)).toISOString(),
      generatorURL: this.opts.generatorUrl,
    };
  }

  private webhookSink(w: WebhookSettings): Sink {
    // The URL may carry a path with a token-like segment; only its origin and path go to logs.
    const u = new URL(w.url);
    const target = `${u.origin}${u.pathname}`;
    return {
      name: 'webhook',
      target,
      queue: [],
      busy: false,
      timer: undefined,
      sent: 0,
      failed: 0,
      send: async (item) => {
        const res = await fetch(w.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            ...(w.header ? { [w.header.name]: w.header.value } : {}),
          },
          body: JSON.stringify([this.alertOf(item.alarm)]),
          signal: AbortSignal.timeout(w.timeoutMs ?? 5000),
        }).catch((err: unknown) => {
          const e = err as Error;
          throw new Error(e.name === 'TimeoutError' ? `no answer in ${w.timeoutMs ?? 5000} ms` : e.message);
        });
        await res.body?.cancel().catch(() => {});
        if (!res.ok) throw new Error(`${target} answered ${res.status}`);
      },
    };
  }

  private mqttSink(m: MqttSettings): Sink {
    const options: IClientOptions = {
      clientId: m.clientId,
      clean: true,
      reconnectPeriod: 2000,
      reconnectOnConnackError: true,
      connectTimeout: 5000,
      keepalive: 30,
      writeCache: false,
      ...(m.username ? { username: m.username } : {}),
      ...(m.password ? { password: m.password } : {}),
      ...(m.tls?.ca ? { ca: m.tls.ca } : {}),
      ...(m.tls?.cert ? { cert: m.tls.cert } : {}),
      ...(m.tls?.key ? { key: m.tls.key } : {}),
    };
    const client = mqttConnect(m.url, options);
    client.on('error', () => {}); // a refused connect shows as a failed publish, with its reason
    this.mqtt = client;
    return {
      name: 'mqtt',
      target: `${new URL(m.url).host} ${m.topic}`,
      queue: [],
      busy: false,
      timer: undefined,
      sent: 0,
      failed: 0,
      send: (item) =>
        new Promise<void>((resolve, reject) => {
          if (!client.connected) {
            reject(new Error(`not connected to ${new URL(m.url).host}`));
            return;
          }
          const timer = setTimeout(() => reject(new Error('no PUBACK in 5000 ms')), 5000);
          const payload = JSON.stringify({
            transition: item.transition,
            alarm: toApiAlarm(item.alarm, Date.now()),
          });
          client.publish(m.topic, payload, { qos: 1 }, (err) => {
            clearTimeout(timer);
            if (err) reject(new Error(err.message));
            else resolve();
          });
        }),
    };
  }
}
