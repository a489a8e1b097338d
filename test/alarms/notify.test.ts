// Alarm notifications against real receivers in this process: an HTTP server that takes
// Alertmanager's v2 alert array (and first answers 500: the notification is retried with backoff and
// then delivered once), a receiver that never accepts (given up after maxAttempts, counted, listed
// with its error, the header's secret in no log line), and the simulator's MQTT broker (QoS 1).
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type BrokerHandle, startBroker } from '../../firmware-sim/mesh/broker.ts';
import type { StoredAlarm } from '../../src/alarms/alarm.ts';
import { Notifier } from '../../src/alarms/notify.ts';
import { quietLogger, waitFor } from '../helpers.ts';

const alarm = (over: Partial<StoredAlarm> = {}): StoredAlarm => ({
  v: 1,
  id: 'unit-tripped~zone-1~AHU-01~m1abc',
  kind: 'unit-tripped',
  severity: 'major',
  group: 'zone-1',
  subject: 'AHU-01',
  message: 'unit AHU-01 tripped',
  value: null,
  raisedAtMs: Date.parse('2026-12-04T10:00:00Z'),
  raisedBy: 'n1',
  clearedAtMs: null,
  clearedBy: null,
  clearReason: null,
  ack: null,
  shelf: null,
  ...over,
});

interface Received {
  headers: IncomingMessage['headers'];
  body: unknown;
}

async function receiver(
  answers: number[],
): Promise<{ server: Server; url: string; got: Received[]; tries: () => number }> {
  const got: Received[] = [];
  let n = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const status = answers[Math.min(n, answers.length - 1)]!;
      n++;
      if (status < 300)
        got.push({ headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString()) });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v2/alerts`;
  return { server, url, got, tries: () => n };
}

const servers: Server[] = [];
const notifiers: Notifier[] = [];
afterEach(async () => {
  for (const n of notifiers.splice(0)) await n.stop();
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

describe('webhook (Alertmanager v2)', () => {
  it('first answered 500: retried with backoff, then delivered once in Alertmanager’s shape', async () => {
    const r = await receiver([500, 200]);
    servers.push(r.server);
    const registry = new Registry();
    const n = new Notifier({
      logger: quietLogger,
      registry,
      site: 'demo',
      generatorUrl: 'http://127.0.0.1:8101/api/v1/alarms?state=all',
      webhook: { url: r.url, header: { name: 'Authorization', value: 'Bearer s3cret' } },
      backoffMs: 50,
    });
    notifiers.push(n);
    n.notify(alarm(), 'raised');
    await waitFor('the alert delivered', () => r.got.length === 1);
    expect(r.tries()).toBe(2);
    const [rec] = r.got;
    expect(rec!.headers.authorization).toBe('Bearer s3cret');
    expect(rec!.headers['content-type']).toBe('application/json');
    expect(rec!.body).toEqual([
      {
        labels: {
          alertname: 'unit-tripped',
          severity: 'major',
          alarm_id: 'unit-tripped~zone-1~AHU-01~m1abc',
          site: 'demo',
          group: 'zone-1',
          subject: 'AHU-01',
        },
        annotations: { summary: 'unit AHU-01 tripped', state: 'raised', raised_by: 'n1' },
        startsAt: '2026-12-04T10:00:00.000Z',
        endsAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        generatorURL: 'http://127.0.0.1:8101/api/v1/alarms?state=all',
      },
    ]);
    // A firing alert ends in the future (the owner re-sends it before); a cleared one at its clear.
    expect(Date.parse((rec!.body as { endsAt: string }[])[0]!.endsAt)).toBeGreaterThan(Date.now());
    n.notify(
      alarm({ clearedAtMs: Date.parse('2026-12-04T10:05:00Z'), clearReason: 'mode remote' }),
      'cleared',
    );
    await waitFor('the clear delivered', () => r.got.length === 2);
    expect((r.got[1]!.body as { endsAt: string; annotations: { state: string } }[])[0]).toMatchObject({
      endsAt: '2026-12-04T10:05:00.000Z',
      annotations: { state: 'cleared', clear_reason: 'mode remote' },
    });
    expect(n.status().sinks).toEqual([{ name: 'webhook', target: r.url, sent: 2, failed: 0, pending: 0 }]);
    const text = await registry.metrics();
    expect(text).toContain('coolctl_alarm_notifications_total{sink="webhook",result="retried"} 1');
    expect(text).toContain('coolctl_alarm_notifications_total{sink="webhook",result="sent"} 2');
  });

  it('a shelf is silence on the webhook; its end, by an operator or by expiry, sends the alert firing again', async () => {
    const r = await receiver([200]);
    servers.push(r.server);
    const n = new Notifier({
      logger: quietLogger,
      registry: new Registry(),
      site: 'demo',
      generatorUrl: 'http://x/',
      webhook: { url: r.url },
    });
    notifiers.push(n);
    n.notify(alarm(), 'raised');
    n.notify(
      alarm({ shelf: { untilMs: Date.now() + 60_000, user: 'op', atMs: Date.now(), comment: '' } }),
      'shelved',
    );
    n.notify(alarm(), 'unshelved');
    n.notify(alarm(), 'shelf-expired');
    await waitFor('three delivered', () => r.got.length === 3 && n.status().sinks[0]!.pending === 0);
    const bodies = r.got.map(
      (g) => (g.body as { labels: unknown; annotations: { state: string }; endsAt: string }[])[0]!,
    );
    for (const b of bodies) {
      expect(b.labels).toEqual(bodies[0]!.labels);
      expect(b.annotations.state).toBe('raised');
      expect(Date.parse(b.endsAt)).toBeGreaterThan(Date.now());
    }
  });

  it('a receiver that never accepts: given up after maxAttempts, counted, listed; the secret never logged', async () => {
    const r = await receiver([503]);
    servers.push(r.server);
    const lines: string[] = [];
    const logger = pino({ level: 'debug' }, { write: (s: string) => lines.push(s) });
    const registry = new Registry();
    const n = new Notifier({
      logger,
      registry,
      site: 'demo',
      generatorUrl: 'http://x/',
      webhook: { url: `${r.url}?token=in-query`, header: { name: 'X-Api-Key', value: 'hunter2-secret' } },
      backoffMs: 10,
      maxAttempts: 3,
    });
    notifiers.push(n);
    n.notify(alarm(), 'raised');
    await waitFor('given up', () => n.status().failures.length === 1);
    expect(r.tries()).toBe(3);
    expect(n.status().sinks[0]).toMatchObject({ sent: 0, failed: 1, pending: 0 });
    expect(n.status().failures[0]).toMatchObject({
      sink: 'webhook',
      alarm: 'unit-tripped~zone-1~AHU-01~m1abc',
      transition: 'raised',
      error: expect.stringContaining('answered 503 (after 3 tries)'),
    });
    expect(await registry.metrics()).toContain(
      'coolctl_alarm_notifications_total{sink="webhook",result="failed"} 1',
    );
    expect(lines.some((l) => l.includes('given up'))).toBe(true);
    expect(lines.join('\n')).not.toMatch(/hunter2-secret|in-query/);
  });
});

describe('MQTT', () => {
  let broker: BrokerHandle | undefined;
  afterAll(async () => broker?.close());

  it('every transition is published on the topic, QoS 1, in the API’s alarm shape', async () => {
    broker = await startBroker({ host: '127.0.0.1', port: 0 });
    const sub = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    const got: { transition: string; alarm: { id: string; state: string; raisedAt: string } }[] = [];
    sub.on('message', (_t, p) => got.push(JSON.parse(p.toString())));
    await sub.subscribeAsync('site/alarms', { qos: 1 });
    const n = new Notifier({
      logger: quietLogger,
      registry: new Registry(),
      site: 'demo',
      generatorUrl: 'http://x/',
      mqtt: { url: broker.url, topic: 'site/alarms', clientId: 'coolctl-test-alarms' },
      backoffMs: 50,
    });
    notifiers.push(n);
    // Sent before the connection is up: retried until it is.
    n.notify(alarm(), 'raised');
    n.notify(alarm({ ack: { user: 'op', atMs: Date.now(), comment: 'on it' } }), 'acknowledged');
    await waitFor('both published', () => got.length === 2);
    expect(got.map((g) => [g.transition, g.alarm.state])).toEqual([
      ['raised', 'raised'],
      ['acknowledged', 'acknowledged'],
    ]);
    expect(got[0]!.alarm.raisedAt).toBe('2026-12-04T10:00:00.000Z');
    await sub.endAsync();
  });
});
