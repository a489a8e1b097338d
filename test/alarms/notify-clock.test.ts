// The webhook's times against a receiver whose clock is far from this node's. Alertmanager judges
// startsAt and endsAt on its own clock: a firing alert whose endsAt is already past there is resolved
// as it arrives, and one that starts after it ends is refused. The receiver here plays Alertmanager
// over loopback and keeps, per alert, whether it is firing on its own clock after every post.
import { createServer, type Server } from 'node:http';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { StoredAlarm } from '../../src/alarms/alarm.ts';
import { Notifier } from '../../src/alarms/notify.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { storedAlarm } from '../support/stored-alarm.ts';

const DAY_MS = 86_400_000;
const HOLD_MS = 300_000;

const alarm = (over: Partial<StoredAlarm> = {}): StoredAlarm =>
  storedAlarm({ raisedAtMs: Date.now(), ...over });

interface Alert {
  labels: { alarm_id: string };
  startsAt: string;
  endsAt: string;
}

/** A receiver whose clock stands `offsetMs()` from ours; `firing`: its view after the last post. */
async function alertmanager(offsetMs: () => number | null) {
  const posts: Alert[][] = [];
  const firing = new Map<string, boolean>();
  const refused: string[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const off = offsetMs();
      const now = Date.now() + (off ?? 0);
      const alerts = JSON.parse(Buffer.concat(chunks).toString()) as Alert[];
      posts.push(alerts);
      for (const a of alerts) {
        // Alertmanager's validation and its resolve rule, on its own clock.
        if (Date.parse(a.endsAt) < Date.parse(a.startsAt)) refused.push(a.labels.alarm_id);
        else firing.set(a.labels.alarm_id, Date.parse(a.endsAt) > now);
      }
      if (off === null) res.sendDate = false;
      else res.setHeader('date', new Date(now).toUTCString());
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return { server, url: `http://127.0.0.1:${port}/api/v2/alerts`, posts, firing, refused };
}

const servers: Server[] = [];
const notifiers: Notifier[] = [];
afterEach(async () => {
  for (const n of notifiers.splice(0)) await n.stop();
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

function notifier(url: string): Notifier {
  const n = new Notifier({
    logger: quietLogger,
    registry: new Registry(),
    site: 'demo',
    generatorUrl: 'http://x/',
    webhook: { url },
    firingHoldMs: HOLD_MS,
  });
  notifiers.push(n);
  return n;
}

describe('webhook times on the receiver’s clock', () => {
  it('a node a day behind Alertmanager keeps a firing alert firing there', async () => {
    const am = await alertmanager(() => DAY_MS);
    servers.push(am.server);
    const n = notifier(am.url);
    n.notify(alarm(), 'raised');
    await waitFor(
      'the alert posted and settled',
      () => am.posts.length >= 1 && n.status().sinks[0]!.pending === 0,
    );
    expect(am.firing.get(alarm().id)).toBe(true);
    const last = am.posts.at(-1)![0]!;
    // Its end is the hold ahead on the receiver's clock (the Date header has whole seconds).
    expect(Date.parse(last.endsAt) - (Date.now() + DAY_MS)).toBeGreaterThan(HOLD_MS - 5_000);
    expect(Date.parse(last.endsAt) - (Date.now() + DAY_MS)).toBeLessThan(HOLD_MS + 5_000);
    // Later sends (the owner's re-sends) use the learned clock straight away: one post each.
    const before = am.posts.length;
    n.notify(alarm(), 'resend');
    await waitFor(
      'the re-send posted',
      () => am.posts.length === before + 1 && n.status().sinks[0]!.pending === 0,
    );
    expect(am.firing.get(alarm().id)).toBe(true);
  });

  it('a node a day ahead: the alert starts and ends on the receiver’s clock, a clear resolves at once', async () => {
    const am = await alertmanager(() => -DAY_MS);
    servers.push(am.server);
    const n = notifier(am.url);
    const raised = alarm(); // raised by this node's clock: a day ahead of the receiver
    n.notify(raised, 'raised');
    await waitFor(
      'the alert posted and settled',
      () => am.posts.length >= 1 && n.status().sinks[0]!.pending === 0,
    );
    expect(am.refused).toEqual([]);
    expect(am.firing.get(raised.id)).toBe(true);
    const last = am.posts.at(-1)![0]!;
    // Not a day after its sender stops re-sending it: the hold on the receiver's clock.
    expect(Date.parse(last.endsAt)).toBeLessThan(Date.now() - DAY_MS + HOLD_MS + 5_000);
    n.notify({ ...raised, clearedAtMs: Date.now(), clearReason: 'mode remote' }, 'cleared');
    await waitFor('the clear posted', () => am.firing.get(raised.id) === false);
    expect(am.refused).toEqual([]);
  });

  it('a receiver whose Date jumps about gets each alert again at most once, not a loop', async () => {
    let k = 0;
    const am = await alertmanager(() => (k++ % 2 === 0 ? DAY_MS : -DAY_MS));
    servers.push(am.server);
    const n = notifier(am.url);
    n.notify(alarm(), 'raised');
    n.notify(alarm({ id: 'other' }), 'raised');
    await waitFor('settled', () => am.posts.length >= 2 && n.status().sinks[0]!.pending === 0);
    // Give a loop the chance to show: a few more turns of the event loop and a short wait.
    await new Promise((r) => setTimeout(r, 200));
    expect(am.posts.flat().length).toBeLessThanOrEqual(4);
    expect(n.status().sinks[0]!.failed).toBe(0);
  });

  it('a receiver that sends no Date: this node’s clock, as before', async () => {
    const am = await alertmanager(() => null);
    servers.push(am.server);
    const n = notifier(am.url);
    n.notify(alarm(), 'raised');
    await waitFor('posted', () => am.posts.length === 1 && n.status().sinks[0]!.pending === 0);
    const endsAt = Date.parse(am.posts[0]![0]!.endsAt);
    expect(endsAt - Date.now()).toBeGreaterThan(HOLD_MS - 5_000);
    expect(endsAt - Date.now()).toBeLessThanOrEqual(HOLD_MS);
  });
});
