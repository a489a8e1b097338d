// Alarm notifications against real receivers in this process: an HTTP server that takes
// Alertmanager's v2 alert array (and first answers 500: the notification is retried with backoff and
// then delivered once), a receiver that never accepts (given up after maxAttempts, counted, listed
// with its error, the header's secret in no log line), and the simulator's MQTT broker (QoS 1).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type BrokerHandle, startBroker } from '../../firmware-sim/mesh/broker.ts';
import { makeCa, makeLeaf } from '../../scripts/lib/throwaway-pki.ts';
import type { StoredAlarm } from '../../src/alarms/alarm.ts';
import { Notifier, WEBHOOK_BATCH } from '../../src/alarms/notify.ts';
import { NotifierHolder } from '../../src/alarms/wiring.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { storedAlarm } from '../support/stored-alarm.ts';

const alarm = (over: Partial<StoredAlarm> = {}): StoredAlarm => storedAlarm(over);

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
    // One at a time: waiting transitions of one alarm coalesce into its newest state (a test below).
    n.notify(alarm(), 'raised');
    await waitFor('raise delivered', () => r.got.length === 1);
    n.notify(
      alarm({ shelf: { untilMs: Date.now() + 60_000, user: 'op', atMs: Date.now(), comment: '' } }),
      'shelved',
    );
    n.notify(alarm(), 'unshelved');
    await waitFor('unshelve delivered', () => r.got.length === 2);
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

describe('webhook receivers that misbehave, and floods', () => {
  const listen = async (server: Server) => {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    servers.push(server);
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  };

  it('a redirect is not followed: a failure with its status, no GET elsewhere, the header’s secret stays home', async () => {
    const elsewhere: { method: string | undefined; headers: IncomingMessage['headers'] }[] = [];
    const other = await listen(
      createServer((req, res) => {
        elsewhere.push({ method: req.method, headers: req.headers });
        res.writeHead(200).end();
      }),
    );
    const url = await listen(
      createServer((req, res) => {
        req.resume();
        res.writeHead(302, { location: `${other}/steal` }).end();
      }),
    );
    const n = new Notifier({
      logger: quietLogger,
      registry: new Registry(),
      site: 'demo',
      generatorUrl: 'http://x/',
      webhook: { url: `${url}/api/v2/alerts`, header: { name: 'X-Api-Key', value: 'hunter2-secret' } },
      backoffMs: 10,
      maxAttempts: 2,
    });
    notifiers.push(n);
    n.notify(alarm(), 'raised');
    await waitFor('given up', () => n.status().failures.length === 1);
    expect(n.status().sinks[0]).toMatchObject({ sent: 0, failed: 1, pending: 0 });
    expect(n.status().failures[0]!.error).toContain('answered 302');
    expect(elsewhere).toEqual([]);
  });

  it('a flood of 3 000 raises reaches the receiver whole, in batched requests, with a few log lines', async () => {
    let requests = 0;
    const ids = new Set<string>();
    const url = await listen(
      createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          requests++;
          for (const a of JSON.parse(Buffer.concat(chunks).toString()) as { labels: { alarm_id: string } }[])
            ids.add(a.labels.alarm_id);
          res.writeHead(200).end();
        });
      }),
    );
    const lines: string[] = [];
    const registry = new Registry();
    const n = new Notifier({
      logger: pino({ level: 'info' }, { write: (l: string) => lines.push(l) }),
      registry,
      site: 'demo',
      generatorUrl: 'http://x/',
      webhook: { url },
    });
    notifiers.push(n);
    const many = Array.from({ length: 3000 }, (_, i) => alarm({ id: `unit-tripped~zone-1~AHU-${i}~m1abc` }));
    for (const a of many) n.notify(a, 'raised');
    // A resend of what is still waiting adds nothing: one waiting entry per alarm.
    for (const a of many) n.notify(a, 'resend');
    await waitFor('all delivered', () => ids.size === 3000 && n.status().sinks[0]!.pending === 0);
    expect(n.status().sinks[0]!.failed).toBe(0);
    expect(requests).toBeLessThanOrEqual(2 * Math.ceil(3000 / WEBHOOK_BATCH) + 2);
    expect(lines.filter((l) => l.includes('not delivered')).length).toBe(0);
  });

  it('a full queue pushes out the oldest waiting notification, never the one being sent', async () => {
    const got: string[] = [];
    let release: (() => void) | undefined;
    const url = await listen(
      createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          for (const a of JSON.parse(Buffer.concat(chunks).toString()) as { labels: { alarm_id: string } }[])
            got.push(a.labels.alarm_id);
          if (got.length === 1) release = () => res.writeHead(200).end();
          else res.writeHead(200).end();
        });
      }),
    );
    const n = new Notifier({
      logger: quietLogger,
      registry: new Registry(),
      site: 'demo',
      generatorUrl: 'http://x/',
      webhook: { url },
      maxQueue: 2,
    });
    notifiers.push(n);
    const id = (x: string) => `unit-tripped~zone-1~${x}~m1abc`;
    n.notify(alarm({ id: id('A') }), 'raised');
    await waitFor('A in flight', () => release);
    n.notify(alarm({ id: id('B') }), 'raised');
    n.notify(alarm({ id: id('C') }), 'raised');
    release!();
    await waitFor('drained', () => n.status().sinks[0]!.pending === 0 && got.length === 2);
    expect(got).toEqual([id('A'), id('C')]);
    expect(n.status().sinks[0]).toMatchObject({ sent: 2, failed: 1 });
    expect(n.status().failures.map((f) => f.alarm)).toEqual([id('B')]);
  });

  it('a reload that changes the receiver hands what was not delivered to the new one', async () => {
    const got: string[] = [];
    const good = await listen(
      createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          for (const a of JSON.parse(Buffer.concat(chunks).toString()) as { labels: { alarm_id: string } }[])
            got.push(a.labels.alarm_id);
          res.writeHead(200).end();
        });
      }),
    );
    let refused = 0;
    const down = await listen(
      createServer((req, res) => {
        req.resume();
        refused++;
        res.writeHead(503).end();
      }),
    );
    let webhookUrl = down;
    const site = () =>
      ({
        site: { id: 'demo' },
        alarms: { notifications: { webhook: { url: webhookUrl } } },
      }) as unknown as Site;
    const registry = new Registry();
    const holder = new NotifierHolder({
      node: 'n1',
      config: () => ({ site: site(), sitePath: '/nowhere/site.yaml', nodes: ['n1'], mqtt: undefined }),
      apiUrl: 'http://127.0.0.1:1',
      logger: quietLogger,
      registry,
    });
    const counted = async () =>
      (await registry.getSingleMetric('coolctl_alarm_notifications_total')!.get()).values.map(
        (v) => `${v.labels.result} ${v.value}`,
      );
    try {
      holder.get()!.notify(alarm(), 'raised');
      await waitFor('refused once', () => refused === 1);
      webhookUrl = good;
      await waitFor('delivered by the new receiver', () => {
        holder.get();
        return got.length === 1;
      });
      expect(got).toEqual([alarm().id]);
      // The counters carry on across the rebuild (a reset would read as a counter reset to Prometheus).
      await waitFor('counted', async () => (await counted()).includes('sent 1'));
      expect(await counted()).toContain('retried 1');
    } finally {
      await holder.stop();
    }
  });

  it('a receiver out of reach says why (refused), not just that the fetch failed', async () => {
    const server = createServer(() => {});
    const url = await listen(server);
    await new Promise((r) => server.close(r));
    servers.splice(servers.indexOf(server), 1);
    const n = new Notifier({
      logger: quietLogger,
      registry: new Registry(),
      site: 'demo',
      generatorUrl: 'http://x/',
      webhook: { url },
      maxAttempts: 1,
    });
    notifiers.push(n);
    n.notify(alarm(), 'raised');
    await waitFor('given up', () => n.status().failures.length === 1);
    expect(n.status().failures[0]!.error).toContain('ECONNREFUSED');
  });
});

describe('webhook over TLS', () => {
  it('a receiver whose certificate a site CA signed: refused (with the TLS code) without caFile, delivered with it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coolctl-am-tls-'));
    try {
      const ca = await makeCa(dir);
      const leaf = await makeLeaf(ca, 'am', { usage: ['serverAuth'] });
      const got: unknown[] = [];
      const server = createHttpsServer(
        { cert: await readFile(leaf.certFile), key: await readFile(leaf.keyFile) },
        (req, res) => {
          const chunks: Buffer[] = [];
          req.on('data', (c: Buffer) => chunks.push(c));
          req.on('end', () => {
            got.push(JSON.parse(Buffer.concat(chunks).toString()));
            res.writeHead(200).end();
          });
        },
      );
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      servers.push(server);
      const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/api/v2/alerts`;
      const notifier = (caFile?: string) => {
        const n = new Notifier({
          logger: quietLogger,
          registry: new Registry(),
          site: 'demo',
          generatorUrl: 'http://x/',
          webhook: { url, ...(caFile ? { caFile } : {}) },
          maxAttempts: 1,
        });
        notifiers.push(n);
        return n;
      };
      const system = notifier();
      system.notify(alarm(), 'raised');
      await waitFor('given up', () => system.status().failures.length === 1);
      expect(system.status().failures[0]!.error).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED/);
      expect(got).toEqual([]);
      const site = notifier(ca.caFile);
      site.notify(alarm(), 'raised');
      await waitFor('delivered', () => got.length === 1);
      expect((got[0] as { labels: { alertname: string } }[])[0]!.labels.alertname).toBeDefined();
      expect(site.status().failures).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
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
  it('a broker that refuses our credentials: the failure says so, the password in no line', async () => {
    const strict = await startBroker({
      host: '127.0.0.1',
      port: 0,
      security: { auth: { username: 'alarms', password: 'right-password' } },
    });
    const lines: string[] = [];
    const n = new Notifier({
      logger: pino({ level: 'debug' }, { write: (l: string) => lines.push(l) }),
      registry: new Registry(),
      site: 'demo',
      generatorUrl: 'http://x/',
      mqtt: {
        url: strict.url,
        topic: 'site/alarms',
        clientId: 'coolctl-test-refused',
        username: 'alarms',
        password: 'wrong-hunter2',
      },
      backoffMs: 100,
      maxAttempts: 4,
    });
    notifiers.push(n);
    try {
      n.notify(alarm(), 'raised');
      await waitFor('given up', () => n.status().failures.length === 1);
      expect(n.status().failures[0]!.error).toMatch(
        /not connected to 127\.0\.0\.1:\d+: .*(authori|password)/i,
      );
      expect(JSON.stringify(n.status()) + lines.join('\n')).not.toContain('wrong-hunter2');
    } finally {
      await n.stop();
      await strict.close();
    }
  });
});
