// The webhook against receivers that answer in ways retrying cannot fix, or ask to be left alone,
// and against an operator's careless URL: each a real HTTP server on loopback. A 4xx other than
// 401/403/408/429 is given up at once (the same body gets the same answer); 401/403 read the header
// file again (a rotated secret works without a reload); 429's Retry-After is waited, bounded; a 413
// splits the batch; retries are jittered; a notification re-sent for the receiver's clock never
// replaces a newer state; a stopping node drains for a moment and says what it could not send; a
// query string (where tokens go) is refused at config load, pointing to headerFile.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { StoredAlarm } from '../../src/alarms/alarm.ts';
import { Notifier } from '../../src/alarms/notify.ts';
import { NotifierHolder } from '../../src/alarms/wiring.ts';
import { loadSite } from '../../src/config/load-site.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { ConfigError } from '../../src/errors.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { storedAlarm } from '../support/stored-alarm.ts';

const alarm = (over: Partial<StoredAlarm> = {}): StoredAlarm => storedAlarm(over);
const id = (x: string) => `unit-tripped~zone-1~${x}~m1abc`;

interface Alert {
  labels: { alarm_id: string };
  annotations: { state: string };
}

/** A receiver that answers each request with `answer(n, alerts, req, res)` (n counts from 0). */
async function receiver(
  answer: (n: number, alerts: Alert[], req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ url: string; posts: { atMs: number; alerts: Alert[] }[] }> {
  const posts: { atMs: number; alerts: Alert[] }[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const alerts = JSON.parse(Buffer.concat(chunks).toString()) as Alert[];
      const n = posts.length;
      posts.push({ atMs: performance.now(), alerts });
      answer(n, alerts, req, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v2/alerts`, posts };
}

const servers: Server[] = [];
const notifiers: Notifier[] = [];
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coolctl-notify-hostile-'));
});
afterEach(async () => {
  for (const n of notifiers.splice(0)) await n.stop();
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

function notifier(o: Partial<ConstructorParameters<typeof Notifier>[0]> & { url: string }): {
  n: Notifier;
  lines: string[];
  registry: Registry;
} {
  const lines: string[] = [];
  const registry = new Registry();
  const { url, ...rest } = o;
  const n = new Notifier({
    logger: pino({ level: 'debug' }, { write: (l: string) => lines.push(l) }),
    registry,
    site: 'demo',
    generatorUrl: 'http://x/',
    webhook: { url },
    backoffMs: 10,
    ...rest,
  });
  notifiers.push(n);
  return { n, lines, registry };
}

describe('answers retrying cannot help', () => {
  it('a 400 is given up at once, saying why, counted; not sent again five times', async () => {
    const r = await receiver((_n, _a, _req, res) => res.writeHead(400).end('bad alert'));
    const { n, registry } = notifier({ url: r.url, maxAttempts: 5 });
    n.notify(alarm(), 'raised');
    await waitFor('given up', () => n.status().failures.length === 1);
    expect(r.posts).toHaveLength(1);
    expect(n.status().failures[0]!.error).toMatch(/answered 400 .*not retried/);
    expect(n.status().sinks[0]).toMatchObject({ sent: 0, failed: 1, pending: 0 });
    const text = await registry.metrics();
    expect(text).toContain('coolctl_alarm_notifications_total{sink="webhook",result="failed"} 1');
    expect(text).toContain('coolctl_alarm_notifications_total{sink="webhook",result="retried"} 0');
  });

  it('a 401 reads the header file again before the next try: a rotated secret works without a reload', async () => {
    const file = join(dir, 'rotated.header');
    await writeFile(file, 'Bearer old\n', { mode: 0o600 });
    const r = await receiver((_n, _a, req, res) => {
      if (req.headers.authorization === 'Bearer new') {
        res.writeHead(200).end();
        return;
      }
      // The operator rotates the secret while the receiver refuses the old one.
      void writeFile(file, 'Bearer new\n', { mode: 0o600 }).then(() => res.writeHead(401).end());
    });
    const lines: string[] = [];
    // headerFile, as the daemon builds it (wiring.ts): read at the first send.
    const w = new Notifier({
      logger: pino({ level: 'debug' }, { write: (l: string) => lines.push(l) }),
      registry: new Registry(),
      site: 'demo',
      generatorUrl: 'http://x/',
      webhook: { url: r.url, headerFile: { name: 'Authorization', file } },
      backoffMs: 10,
      maxAttempts: 3,
    });
    notifiers.push(w);
    w.notify(alarm(), 'raised');
    await waitFor('delivered with the new secret', () => w.status().sinks[0]!.sent === 1);
    expect(r.posts).toHaveLength(2);
    expect(lines.join('\n')).not.toMatch(/Bearer (old|new)/);
  });

  it('429 with Retry-After: the next try waits what the receiver asked, at most maxBackoffMs', async () => {
    const r = await receiver((k, _a, _req, res) => {
      if (k === 0) res.writeHead(429, { 'retry-after': '1' }).end();
      else if (k === 1) res.writeHead(429, { 'retry-after': '3600' }).end();
      else res.writeHead(200).end();
    });
    const { n, lines } = notifier({ url: r.url, maxAttempts: 5, maxBackoffMs: 1500 });
    n.notify(alarm(), 'raised');
    await waitFor('delivered', () => n.status().sinks[0]!.sent === 1, { timeoutMs: 15_000 });
    const [a, b, c] = r.posts;
    expect(b!.atMs - a!.atMs).toBeGreaterThanOrEqual(950);
    // 3 600 s asked, 1.5 s waited: a receiver cannot park the queue for an hour.
    expect(c!.atMs - b!.atMs).toBeGreaterThanOrEqual(1400);
    const waits = lines
      .filter((l) => l.includes('retrying with backoff'))
      .map((l) => (JSON.parse(l) as { retryInMs: number }).retryInMs);
    expect(waits).toEqual([1000, 1500]);
  });

  it('a 413 splits the batch until the receiver takes it, instead of dropping a hundred alerts', async () => {
    const r = await receiver((_n, alerts, _req, res) => res.writeHead(alerts.length > 10 ? 413 : 200).end());
    const { n } = notifier({ url: r.url, maxAttempts: 2 });
    for (let i = 0; i < 60; i++) n.notify(alarm({ id: id(`AHU-${i}`) }), 'raised');
    await waitFor('all delivered', () => n.status().sinks[0]!.pending === 0);
    expect(n.status().sinks[0]).toMatchObject({ sent: 60, failed: 0 });
    const delivered = new Set(
      r.posts.filter((p) => p.alerts.length <= 10).flatMap((p) => p.alerts.map((a) => a.labels.alarm_id)),
    );
    expect(delivered.size).toBe(60);
  });
});

describe('retries', () => {
  it('are jittered: waits spread within [½, 1] of the doubling backoff, so nodes do not retry in step', async () => {
    const r = await receiver((_n, _a, _req, res) => res.writeHead(503).end());
    const { n, lines } = notifier({ url: r.url, maxAttempts: 6, backoffMs: 40 });
    n.notify(alarm(), 'raised');
    await waitFor('given up', () => n.status().failures.length === 1);
    const waits = lines
      .filter((l) => l.includes('retrying with backoff'))
      .map((l) => (JSON.parse(l) as { retryInMs: number }).retryInMs);
    expect(waits).toHaveLength(5);
    waits.forEach((w, i) => {
      expect(w).toBeGreaterThanOrEqual(20 * 2 ** i);
      expect(w).toBeLessThanOrEqual(40 * 2 ** i);
    });
    expect(waits.some((w, i) => w !== 40 * 2 ** i)).toBe(true);
  });

  it('a clear queued while its raise is in flight is never replaced by the raise sent again for the receiver’s clock', async () => {
    let release: (() => void) | undefined;
    const r = await receiver((k, _a, _req, res) => {
      // The first answer comes from a clock a day ahead (the raise is sent again with its time).
      if (k === 0)
        release = () => res.writeHead(200, { date: new Date(Date.now() + 86_400_000).toUTCString() }).end();
      else res.writeHead(200).end();
    });
    const { n } = notifier({ url: r.url });
    n.notify(alarm(), 'raised');
    await waitFor('the raise in flight', () => release);
    n.notify(alarm({ clearedAtMs: Date.now(), clearedBy: 'n1', clearReason: 'unit running' }), 'cleared');
    release!();
    await waitFor('drained', () => n.status().sinks[0]!.pending === 0 && r.posts.length >= 2);
    const last = r.posts.at(-1)!.alerts.find((a) => a.labels.alarm_id === alarm().id);
    expect(last?.annotations.state).toBe('cleared');
  });
});

describe('a reload', () => {
  it('hands on what waits before anything newer: a clear notified right after it stays the last word', async () => {
    const down = await receiver((_k, _a, _req, res) => res.writeHead(503).end());
    const good = await receiver((_k, _a, _req, res) => res.writeHead(200).end());
    let webhookUrl = down.url;
    const holder = new NotifierHolder({
      node: 'n1',
      config: () => ({
        site: {
          site: { id: 'demo' },
          alarms: { notifications: { webhook: { url: webhookUrl } } },
        } as unknown as Site,
        sitePath: '/nowhere/site.yaml',
        nodes: ['n1'],
        mqtt: undefined,
      }),
      apiUrl: 'http://127.0.0.1:1',
      logger: quietLogger,
      registry: new Registry(),
    });
    try {
      holder.get()!.notify(alarm(), 'raised');
      await waitFor('refused once', () => down.posts.length === 1);
      webhookUrl = good.url;
      // The reload, and the alarm's clear from the engine's next evaluation, in the same turn.
      holder
        .get()!
        .notify(alarm({ clearedAtMs: Date.now(), clearedBy: 'n1', clearReason: 'unit running' }), 'cleared');
      await waitFor('drained', () => holder.get()!.status().sinks[0]!.pending === 0 && good.posts.length > 0);
      const states = good.posts.flatMap((p) => p.alerts.map((a) => a.annotations.state));
      expect(states.at(-1)).toBe('cleared');
    } finally {
      await holder.stop();
    }
  });
});

describe('a removed sink', () => {
  it('what it still held is counted as failed and said, not dropped silently', async () => {
    const down = await receiver((_k, _a, _req, res) => res.writeHead(503).end());
    const { n, lines, registry } = notifier({ url: down.url, backoffMs: 10_000 });
    n.notify(alarm(), 'raised');
    await waitFor('refused once', () => down.posts.length === 1);
    // The reload keeps only an MQTT topic (its broker out of reach: nothing to hand to).
    const next = new Notifier({
      logger: quietLogger,
      registry,
      site: 'demo',
      generatorUrl: 'http://x/',
      mqtt: { url: 'mqtt://127.0.0.1:1', topic: 'site/alarms', clientId: 'coolctl-test-removed' },
    });
    notifiers.push(next);
    await n.handOver(next);
    expect(await registry.metrics()).toContain(
      'coolctl_alarm_notifications_total{sink="webhook",result="failed"} 1',
    );
    const line = lines.find((l) => l.includes('not delivered: the sink was removed'));
    expect(JSON.parse(line!)).toMatchObject({ sink: 'webhook', dropped: 1 });
  });
});

describe('a stopping node', () => {
  it('drains what waits for a moment, then says what it could not send', async () => {
    const r = await receiver((k, _a, _req, res) => res.writeHead(k === 0 ? 503 : 200).end());
    const { n } = notifier({ url: r.url, backoffMs: 200 });
    n.notify(alarm(), 'raised');
    await waitFor('first try refused', () => r.posts.length === 1);
    await n.stop({ drainMs: 5000 });
    expect(r.posts).toHaveLength(2);
    expect(n.status().sinks[0]).toMatchObject({ sent: 1, pending: 0 });

    const down = await receiver((_k, _a, _req, res) => res.writeHead(503).end());
    const { n: m, lines } = notifier({ url: down.url, backoffMs: 10_000 });
    m.notify(alarm({ id: id('A') }), 'raised');
    m.notify(alarm({ id: id('B') }), 'raised');
    await waitFor('first try refused', () => down.posts.length === 1);
    const t0 = performance.now();
    await m.stop({ drainMs: 300 });
    expect(performance.now() - t0).toBeLessThan(5000);
    const line = lines.find((l) => l.includes('not delivered: the node is stopping'));
    expect(line).toBeDefined();
    expect(JSON.parse(line!)).toMatchObject({ sink: 'webhook', dropped: 2 });
  });
});

describe('a careless webhook URL', () => {
  it('a query string (where tokens go) is refused at config load, pointing to headerFile, the token in no message', async () => {
    const doc = parse(await readFile('config/demo-site.yaml', 'utf8')) as Record<string, unknown>;
    doc.alarms = { notifications: { webhook: { url: 'https://hooks.example/alerts?token=hunter2' } } };
    const file = join(dir, 'site-query.yaml');
    await writeFile(file, stringify(doc));
    const err = await loadSite(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    const problem = (err as ConfigError).problems.find((p) => p.path === '/alarms/notifications/webhook/url');
    expect(problem).toBeDefined();
    expect(`${problem!.message} ${problem!.allowed}`).toContain('headerFile');
    expect(JSON.stringify((err as ConfigError).problems) + (err as Error).message).not.toContain('hunter2');
  });
});
