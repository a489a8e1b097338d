// Alarm notifications leave the cluster two ways: a webhook whose body is what Alertmanager's
// `POST /api/v2/alerts` takes (an array of {labels, annotations, startsAt, endsAt, generatorURL}),
// and an MQTT topic (QoS 1) on the controller config's sensor broker. Each sink has its own queue,
// sends in order, and retries a failure that retrying can help (no answer, 5xx, 408, 429, 401/403
// after reading the header file again) with jittered exponential backoff up to `maxAttempts`, or
// after the receiver's Retry-After, bounded by `maxBackoffMs`; another 4xx or a redirect is given up
// at once (the same body would get the same answer); a 413 halves the batch instead. A dropped
// notification is counted and kept in the list of failures the API shows. The queues are
// bounded (the oldest waiting one goes first, counted as failed; never the one in flight): a
// receiver that is down for a day cannot grow the node. A hall that heats up raises thousands of
// alarms at once, so the webhook sends up to WEBHOOK_BATCH alerts per request and keeps one waiting
// entry per alarm (its body is the alarm's state now, so a newer transition replaces a waiting one);
// MQTT publishes every transition, one at a time. The webhook follows no redirect: a POST turned
// into a GET, or the header's secret sent to another origin, would read as delivered. Secrets (the
// webhook's header) come from a file and never reach a log line or an error; lines about failures
// are rate-limited (src/util/log-limit.ts), the counters count every one.
// Times in the webhook's body are judged by Alertmanager on its own clock (it resolves an alert at
// its endsAt, and refuses one that starts after it ends), so they are written on the receiver's
// clock (ReceiverClock), never on this node's alone: a node a day behind would send an endsAt
// already past — the alert resolved as it arrives — and one a day ahead an alert that outlives its
// sender by a day.
import { request as httpsRequest } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { type IClientOptions, type MqttClient, connect as mqttConnect } from 'mqtt';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { readCaFile, readSecretLine } from '../config/config-files.ts';
import { zeroSeries } from '../metrics/zero-series.ts';
import { clip, LogLimiter } from '../util/log-limit.ts';
import { http } from '../util/node-http.ts';
import { type NotificationStatus, type StoredAlarm, stateOf, toApiAlarm } from './alarm.ts';

/** What happens to an alarm (coolctl_alarm_transitions_total{transition}). */
export const ALARM_TRANSITIONS = [
  'raised',
  'acknowledged',
  'cleared',
  'shelved',
  'unshelved',
  'shelf-expired',
] as const;
export type AlarmTransition = (typeof ALARM_TRANSITIONS)[number];
/** What a notification says: a transition, or an open alarm sent again (Alertmanager forgets). */
export type Transition = AlarmTransition | 'resend';
/** What became of a notification (coolctl_alarm_notifications_total{result}). */
const NOTIFICATION_RESULTS = ['sent', 'retried', 'failed'] as const;

/** A send that failed: whether another try can help, and what the receiver asked of the next one. */
class SendFailure extends Error {
  /** False: the same request would get the same answer (given up at once). */
  readonly retryable: boolean;
  /** The receiver's Retry-After, in ms (bounded by `maxBackoffMs` where it is used). */
  readonly retryAfterMs: number | undefined;
  /** 413: the batch was too large for the receiver (or a proxy in front of it). */
  readonly tooLarge: boolean;

  constructor(
    message: string,
    o: { retryable: boolean; retryAfterMs?: number | undefined; tooLarge?: boolean },
  ) {
    super(message);
    this.retryable = o.retryable;
    this.retryAfterMs = o.retryAfterMs;
    this.tooLarge = o.tooLarge ?? false;
  }
}

export interface WebhookSettings {
  url: string;
  /** A header sent with every request. */
  header?: { name: string; value: string } | undefined;
  /** A header whose value is a secret file's one line (config-files.ts rules), read at the first send. */
  headerFile?: { name: string; file: string } | undefined;
  /** The PEM CA an https:// receiver's certificate is checked against (absent: the system's). */
  caFile?: string | undefined;
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
  /**
   * An alert without an end is told to end this far ahead (on the receiver's clock); the owner sends
   * it again before then.
   */
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
  /** Sent again at once because the receiver's clock turned out far from the one its times used. */
  clockFix?: true;
}

interface Sink {
  name: 'webhook' | 'mqtt';
  target: string;
  /** Oldest first; the first `inFlight` are being sent now. */
  queue: Item[];
  inFlight: number;
  /** Most items one send carries. */
  batch: number;
  /** Waiting (not in flight) items by alarm id, for a sink whose body is the alarm's state (webhook). */
  waiting: Map<string, Item> | undefined;
  timer: NodeJS.Timeout | undefined;
  sent: number;
  failed: number;
  send(items: readonly Item[]): Promise<void>;
}

const MAX_FAILURES_KEPT = 50;
/** Alerts per webhook request: Alertmanager takes arrays; ~100 KB of JSON at most. */
export const WEBHOOK_BATCH = 100;
/** Default bound of a sink's queue: a flood of a big hall (~500 bytes an alarm, a few MB). */
export const DEFAULT_MAX_QUEUE = 10_000;
/** How long a stopping node goes on sending what waits before it says what it could not send. */
export const SHUTDOWN_DRAIN_MS = 2000;
/** Lines about failed notifications: at most a few per kind and sink a minute (each is counted). */
const FAILURE_LINES_EVERY_MS = 60_000;
const FAILURE_LINES_BURST = 5;

/**
 * The webhook receiver's wall clock as this node sees it: learned from each answer's Date header
 * (RFC 9110: a server with a clock sends one; Alertmanager does) and carried forward on this node's
 * monotonic clock, so a step of this node's wall clock changes nothing. Until an answer with a Date
 * arrives (or from a receiver that sends none) it is this node's wall clock.
 */
export class ReceiverClock {
  /** Receiver's wall ms minus this node's monotonic ms; undefined: not learned yet. */
  private anchorMs: number | undefined;
  private readonly wall: () => number;
  private readonly mono: () => number;

  constructor(wall: () => number = () => Date.now(), mono: () => number = () => performance.now()) {
    this.wall = wall;
    this.mono = mono;
  }

  now(): number {
    return this.anchorMs === undefined ? this.wall() : this.anchorMs + this.mono();
  }

  /**
   * Takes the Date header of an answer that came now; returns how far the estimate moved (ms). The
   * header has whole seconds: the receiver's time is taken as the start of its second, so a clear
   * sent as "now" is never in the receiver's future (a firing alert's hold is a second short at most).
   */
  learn(date: string | undefined): number {
    const dateMs = date === undefined ? Number.NaN : Date.parse(date);
    if (!Number.isFinite(dateMs)) return 0;
    const before = this.now();
    this.anchorMs = dateMs - this.mono();
    return this.now() - before;
  }
}

export class Notifier {
  private readonly opts: NotifierOptions;
  private readonly log: Logger;
  private readonly sinks: Sink[] = [];
  private readonly failures: NotificationStatus['failures'] = [];
  private readonly outcomes: Counter<'sink' | 'result'>;
  private mqtt: MqttClient | undefined;
  private stopped = false;
  private readonly lines = new LogLimiter(
    () => performance.now(),
    FAILURE_LINES_EVERY_MS,
    FAILURE_LINES_BURST,
  );

  constructor(opts: NotifierOptions) {
    this.opts = opts;
    this.log = opts.logger.child({ component: 'alarm-notify' });
    // A reload that rebuilds the notifier keeps counting where the last one left off: a counter that
    // went back to 0 would read as a restart to Prometheus. The pending gauge is this notifier's own.
    opts.registry.removeSingleMetric('coolctl_alarm_notifications_pending');
    const counted = opts.registry.getSingleMetric('coolctl_alarm_notifications_total');
    this.outcomes =
      counted instanceof Counter
        ? (counted as Counter<'sink' | 'result'>)
        : new Counter({
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
    zeroSeries(this.outcomes, { sink: this.sinks.map((s) => s.name), result: NOTIFICATION_RESULTS });
  }

  /**
   * Queues one transition of `alarm` on every sink. The webhook has no shelved state: a shelf is
   * silence (nothing sent, so Alertmanager resolves the alert at its endsAt), and its end — by an
   * operator or by expiry — sends the alert firing again, the same body as its raise.
   */
  notify(alarm: StoredAlarm, transition: Transition): void {
    if (this.stopped) return;
    for (const s of this.sinks) this.enqueue(s, alarm, transition, 0);
  }

  /**
   * `older`: the state of an earlier notification sent again (for the receiver's clock, or handed on
   * by a reload): one of the same alarm already waiting is newer, and stays.
   */
  private enqueue(
    s: Sink,
    alarm: StoredAlarm,
    transition: Transition,
    attempts: number,
    o: { clockFix?: true; older?: true } = {},
  ): void {
    if (this.stopped) return;
    if (s.name === 'webhook' && transition === 'shelved') return;
    if (s.name === 'mqtt' && transition === 'resend') return;
    const same = s.waiting?.get(alarm.id);
    if (same) {
      if (o.older) return;
      same.alarm = alarm;
      same.transition = transition;
      return;
    }
    if (s.queue.length >= (this.opts.maxQueue ?? DEFAULT_MAX_QUEUE) && s.queue.length > s.inFlight) {
      const [dropped] = s.queue.splice(s.inFlight, 1);
      s.waiting?.delete(dropped!.alarm.id);
      this.giveUp(s, dropped!, 'the queue was full: pushed out by newer notifications', 'queue full');
    }
    const item: Item = {
      alarm,
      transition,
      attempts,
      atMs: Date.now(),
      ...(o.clockFix ? { clockFix: true } : {}),
    };
    s.queue.push(item);
    s.waiting?.set(alarm.id, item);
    this.pump(s);
  }

  /**
   * Stops, and hands what was not delivered yet to `next` (a reload that rebuilt the notifier):
   * each to the sink of the same name there; a sink the new config no longer has drops its own,
   * with a line saying how many.
   */
  async handOver(next: Notifier): Promise<void> {
    // Handed on before anything is awaited: a transition notified to `next` meanwhile is newer, and
    // must neither be replaced by an older state (webhook) nor come before it (MQTT).
    this.stopped = true;
    for (const s of this.sinks) {
      const to = next.sinks.find((x) => x.name === s.name);
      if (!to) {
        if (s.queue.length > 0) this.dropAll(s, 'the sink was removed');
        continue;
      }
      for (const it of s.queue) next.enqueue(to, it.alarm, it.transition, it.attempts, { older: true });
    }
    await this.stop();
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

  /**
   * Stops. `drainMs` (a node shutting down): what waits is sent first for at most that long (a retry
   * due meanwhile included); what is still not delivered then is counted as failed, with a line per
   * sink saying how many.
   */
  async stop(o: { drainMs?: number } = {}): Promise<void> {
    if (!this.stopped && o.drainMs !== undefined && o.drainMs > 0) {
      const deadline = performance.now() + o.drainMs;
      const pending = () => this.sinks.some((s) => s.queue.length > 0);
      // Retries keep their backoff: a receiver that is down gets no burst of tries from a stopping node.
      while (pending() && performance.now() < deadline)
        await sleep(Math.min(20, Math.max(1, deadline - performance.now())));
      this.stopped = true;
      for (const s of this.sinks) if (s.queue.length > 0) this.dropAll(s, 'the node is stopping');
    }
    this.stopped = true;
    for (const s of this.sinks) clearTimeout(s.timer);
    const m = this.mqtt;
    this.mqtt = undefined;
    if (m) await new Promise<void>((resolve) => m.end(true, {}, () => resolve()));
  }

  private pump(s: Sink): void {
    if (s.inFlight > 0 || s.timer || this.stopped || s.queue.length === 0) return;
    const items = s.queue.slice(0, s.batch);
    s.inFlight = items.length;
    for (const it of items) {
      it.attempts++;
      s.waiting?.delete(it.alarm.id);
    }
    s.send(items).then(
      () => {
        s.inFlight = 0;
        if (this.stopped) return;
        s.queue.splice(0, items.length);
        s.sent += items.length;
        this.outcomes.inc({ sink: s.name, result: 'sent' }, items.length);
        this.pump(s);
      },
      (err: unknown) => {
        s.inFlight = 0;
        if (this.stopped) return;
        const why = (err as Error).message;
        const failure = err instanceof SendFailure ? err : undefined;
        s.queue.splice(0, items.length);
        if (failure?.tooLarge && items.length > 1) {
          // Too large for the receiver (or a proxy before it): half as many a request from now on. A
          // split is not a try; bounded, since the batch halves each time down to one.
          s.batch = Math.ceil(items.length / 2);
          for (const it of items) it.attempts--;
          this.requeue(s, items);
          const notLogged = this.lines.admit(`${s.name} too large`);
          if (notLogged >= 0)
            this.log.warn(
              { sink: s.name, target: s.target, err: why, batch: s.batch, suppressedSinceLast: notLogged },
              'alarm notifications refused as too large: sent in smaller batches',
            );
          this.pump(s);
          return;
        }
        const max = failure?.retryable === false ? 0 : (this.opts.maxAttempts ?? 6);
        const again = items.filter((it) => it.attempts < max);
        for (const it of items)
          if (it.attempts >= max)
            this.giveUp(
              s,
              it,
              failure?.retryable === false ? why : `${why} (after ${it.attempts} tries)`,
              'given up',
            );
        if (again.length === 0) {
          this.pump(s);
          return;
        }
        const keep = this.requeue(s, again);
        this.outcomes.inc({ sink: s.name, result: 'retried' }, again.length);
        const attempts = Math.max(...again.map((it) => it.attempts));
        const maxBackoffMs = this.opts.maxBackoffMs ?? 60_000;
        // Jittered ("equal jitter": ½ to 1 of the doubling step), so the nodes of a cluster and the
        // notifications of a flood do not all come back at the same instant; never sooner than the
        // receiver's Retry-After, never later than maxBackoffMs (a receiver cannot park the queue).
        const stepMs = Math.min(maxBackoffMs, (this.opts.backoffMs ?? 1000) * 2 ** (attempts - 1));
        const waitMs = Math.round(
          Math.min(maxBackoffMs, Math.max(failure?.retryAfterMs ?? 0, stepMs * (0.5 + Math.random() / 2))),
        );
        const notLogged = this.lines.admit(`${s.name} retry`);
        if (notLogged >= 0)
          this.log.warn(
            {
              sink: s.name,
              target: s.target,
              alarm: items[0]!.alarm.id,
              alarms: items.length,
              transition: items[0]!.transition,
              err: why,
              retryInMs: waitMs,
              suppressedSinceLast: notLogged,
            },
            'alarm notification failed; retrying with backoff',
          );
        if (keep.length === 0) {
          this.pump(s);
          return;
        }
        s.timer = setTimeout(() => {
          s.timer = undefined;
          this.pump(s);
        }, waitMs);
      },
    );
  }

  /** Every notification `s` still holds is counted as failed and dropped, with one line. */
  private dropAll(s: Sink, why: string): void {
    const items = s.queue.splice(0);
    s.waiting?.clear();
    s.failed += items.length;
    this.outcomes.inc({ sink: s.name, result: 'failed' }, items.length);
    this.log.warn(
      {
        sink: s.name,
        target: s.target,
        dropped: items.length,
        alarms: items.slice(0, 5).map((it) => `${it.alarm.id} ${it.transition}`),
      },
      `alarm notifications not delivered: ${why}`,
    );
  }

  /** Puts `items` back at the head, in order; a newer transition of the same alarm queued meanwhile wins. */
  private requeue(s: Sink, items: readonly Item[]): Item[] {
    const keep = items.filter((it) => !s.waiting?.has(it.alarm.id));
    s.queue.unshift(...keep);
    for (const it of keep) s.waiting?.set(it.alarm.id, it);
    return keep;
  }

  private giveUp(s: Sink, item: Item, error: string, kind: 'given up' | 'queue full'): void {
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
    // A flood or a receiver down for long gives up on thousands: a few lines a minute say so.
    const notLogged = this.lines.admit(`${s.name} ${kind}`);
    if (notLogged >= 0)
      this.log.error(
        {
          sink: s.name,
          target: s.target,
          alarm: item.alarm.id,
          transition: item.transition,
          err: error,
          suppressedSinceLast: notLogged,
        },
        'alarm notification not delivered: given up',
      );
  }

  /**
   * The Alertmanager v2 alert for one alarm, `nowMs` on the receiver's clock. The alarm's own times
   * are its raising and clearing nodes' clocks: none is sent later than the receiver's now, so an
   * alert never starts after it ends (Alertmanager refuses that) nor is cleared in the future.
   */
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
      startsAt: new Date(Math.min(a.raisedAtMs, nowMs)).toISOString(),
      // Alertmanager resolves an alert at endsAt: a cleared one now, a firing one only if nobody
      // sends it again in time (the owner re-sends it well before).
      endsAt: new Date(
        a.clearedAtMs === null ? nowMs + this.holdMs : Math.min(a.clearedAtMs, nowMs),
      ).toISOString(),
      generatorURL: this.opts.generatorUrl,
    };
  }

  private get holdMs(): number {
    return this.opts.firingHoldMs ?? 300_000;
  }

  private webhookSink(w: WebhookSettings): Sink {
    // The URL may carry a path with a token-like segment; only its origin and path go to logs.
    const u = new URL(w.url);
    const target = `${u.origin}${u.pathname}`;
    const timeoutMs = w.timeoutMs ?? 5000;
    let ca: Buffer | undefined;
    let header = w.header;
    const clock = new ReceiverClock();
    const sink: Sink = {
      name: 'webhook',
      target,
      queue: [],
      inFlight: 0,
      batch: WEBHOOK_BATCH,
      waiting: new Map(),
      timer: undefined,
      sent: 0,
      failed: 0,
      send: async (items) => {
        const nowMs = clock.now();
        // The header's secret and the site's CA, read at the first send (and again after a failed
        // read): a file that went missing or open to others since the config check fails the send,
        // which says so — never a request without its header, or trusting the system's CAs instead.
        if (w.headerFile !== undefined && header === undefined) {
          const r = await readSecretLine(w.headerFile.file);
          if (!r.ok) throw new Error(clip(`headerFile: ${r.message}`, 300));
          header = { name: w.headerFile.name, value: r.value };
        }
        if (w.caFile !== undefined && ca === undefined) {
          const r = await readCaFile(w.caFile);
          if (!r.ok) throw new Error(clip(`caFile: ${r.message}`, 300));
          ca = r.value;
        }
        const { status, date, retryAfter } = await postJson(u, {
          headers: header ? { [header.name]: header.value } : {},
          body: JSON.stringify(items.map((it) => this.alertOf(it.alarm, nowMs))),
          ca,
          timeoutMs,
        });
        const movedMs = clock.learn(date);
        // A refused credential: the header file is read again before the next try, so a rotated
        // secret works without a reload.
        if ((status === 401 || status === 403) && w.headerFile !== undefined) header = undefined;
        if (status < 200 || status >= 300) throw answerFailure(target, status, retryAfter, date);
        // Times off by more than half the hold (the first answer of a receiver whose clock is far
        // from ours): the same alerts again at once, before Alertmanager acts on the wrong ones.
        // Once per notification, so a receiver whose Date jumps about cannot make a loop.
        if (Math.abs(movedMs) > this.holdMs / 2) {
          const again = items.filter((it) => !it.clockFix);
          if (again.length > 0)
            this.log.warn(
              {
                sink: 'webhook',
                target,
                offsetMs: Math.round(clock.now() - Date.now()),
                alerts: again.length,
              },
              'the webhook receiver’s clock is far from this node’s: alerts sent again with its time',
            );
          for (const it of again)
            this.enqueue(sink, it.alarm, it.transition, 0, { clockFix: true, older: true });
        }
      },
    };
    return sink;
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
    // A refused connect shows as a failed publish, with its reason (the broker's, never the password).
    let connectError: string | undefined;
    client.on('error', (err) => {
      connectError = clip(err.message);
    });
    client.on('connect', () => {
      connectError = undefined;
    });
    this.mqtt = client;
    const host = new URL(m.url).host;
    return {
      name: 'mqtt',
      target: `${host} ${m.topic}`,
      queue: [],
      inFlight: 0,
      batch: 1,
      waiting: undefined,
      timer: undefined,
      sent: 0,
      failed: 0,
      send: ([item]) =>
        new Promise<void>((resolve, reject) => {
          if (!item) {
            resolve();
            return;
          }
          if (!client.connected) {
            reject(new Error(`not connected to ${host}${connectError ? `: ${connectError}` : ''}`));
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

/**
 * What a non-2xx answer means for the notification: retried (no receiver yet, overloaded, or a
 * credential that may be rotated) or given up at once (the same request would get the same answer).
 */
function answerFailure(
  target: string,
  status: number,
  retryAfter: string | undefined,
  date: string | undefined,
): SendFailure {
  if (status >= 300 && status < 400)
    return new SendFailure(
      `${target} answered ${status} (a redirect: not followed, not retried; configure the receiver’s own URL)`,
      { retryable: false },
    );
  if (status === 401 || status === 403)
    return new SendFailure(
      `${target} answered ${status} (the receiver refused the credential: check headerName and headerFile)`,
      { retryable: true },
    );
  if (status === 413)
    return new SendFailure(`${target} answered 413 (the request was too large for the receiver)`, {
      retryable: false,
      tooLarge: true,
    });
  if (status >= 400 && status < 500 && status !== 408 && status !== 425 && status !== 429)
    return new SendFailure(
      `${target} answered ${status} (the receiver refused these alerts: not retried, the same request would get the same answer)`,
      { retryable: false },
    );
  return new SendFailure(`${target} answered ${status}`, {
    retryable: true,
    retryAfterMs: retryAfterMs(retryAfter, date),
  });
}

/** Retry-After (RFC 9110: seconds, or an HTTP date on the receiver's clock, its Date header) in ms. */
function retryAfterMs(value: string | undefined, date: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  const now = date !== undefined && Number.isFinite(Date.parse(date)) ? Date.parse(date) : Date.now();
  return Number.isFinite(at) ? Math.max(0, at - now) : undefined;
}

/**
 * One POST of `body` (JSON) to `url`; resolves with the answer's status and Date header as soon as its
 * head arrives.
 * Nothing of the answer is read (a receiver that sends a huge body costs nothing) and no redirect is
 * followed. The whole exchange has `timeoutMs`; an error says why (ECONNREFUSED, a TLS error code),
 * never the URL's query.
 */
function postJson(
  url: URL,
  o: { headers: Record<string, string>; body: string; ca: Buffer | undefined; timeoutMs: number },
): Promise<{ status: number; date: string | undefined; retryAfter: string | undefined }> {
  return new Promise((resolve, reject) => {
    const send = url.protocol === 'https:' ? httpsRequest : http.request;
    const req = send(
      url,
      {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(o.body),
          ...o.headers,
        },
        ...(o.ca !== undefined ? { ca: o.ca } : {}),
      },
      (res) => {
        clearTimeout(timer);
        const retryAfter = res.headers['retry-after'];
        resolve({ status: res.statusCode ?? 0, date: res.headers.date, retryAfter });
        res.destroy();
      },
    );
    const timer = setTimeout(() => req.destroy(new Error(`no answer in ${o.timeoutMs} ms`)), o.timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new Error(
          clip(
            err.code !== undefined && !err.message.includes(err.code)
              ? `${err.code}: ${err.message}`
              : err.message,
          ),
        ),
      );
    });
    req.end(o.body);
  });
}
