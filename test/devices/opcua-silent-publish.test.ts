// A unit server that stops publishing — no data changes, no keep-alives — while its session and
// TCP connection stay up and it still answers Read. The adapter must call the link lost within
// 4 keep-alive periods (docs/opcua-client.md, "Link state and liveness"), never hand out the
// subscription's old values as good meanwhile, and be up for good once the server publishes again.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Subscription } from 'node-opcua';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { LinkEvent } from '../../src/devices/device-io.ts';
import { OpcuaDevice, routeNodeOpcuaLogs } from '../../src/devices/opcua/opcua-device.ts';
import { quietLogger, waitFor } from '../helpers.ts';
import { startUnitServer, type UnitServer } from './opcua-unit-server.ts';

const UNIT = 'ahu-silent';
/** 250 ms publishing × 2 (keep-alive count) × 4 silent periods, + one 500 ms housekeeping tick. */
const SILENCE_BOUND_MS = 4 * 500 + 500;
/**
 * 3 publishing intervals (the cache's freshness rule), counted from the last publish received: one
 * already on its way when the server froze lands a little later, so a little more from the freeze.
 */
const CACHE_FRESH_MS = 3 * 250 + 500;
/** Slack for a loaded 2-core machine. */
const SLACK_MS = 1_500;

let root = '';
let unitServer: UnitServer;
const devices: OpcuaDevice[] = [];

// Freezing: every server subscription skips its publishing-interval tick, so it sends neither
// notifications nor keep-alives; its session, its channel and the Read service are untouched.
/** node-opcua's private per-interval step of a server subscription. */
const subscriptionProto = Subscription.prototype as unknown as { _tick(this: Subscription): void };
const realTick = subscriptionProto._tick;
let frozen = false;
function freezePublishing(on: boolean): void {
  frozen = on;
}

beforeAll(async () => {
  routeNodeOpcuaLogs(quietLogger);
  root = await mkdtemp(join(tmpdir(), 'coolctl-opcua-silent-'));
  unitServer = await startUnitServer(root, [UNIT]);
  subscriptionProto._tick = function (this: Subscription) {
    if (frozen) return;
    realTick.call(this);
  };
}, 90_000);

afterEach(async () => {
  freezePublishing(false);
  await Promise.all(devices.splice(0).map((d) => d.close()));
});

afterAll(async () => {
  subscriptionProto._tick = realTick;
  await unitServer?.server.shutdown(0);
  if (root) await rm(root, { recursive: true, force: true });
}, 30_000);

describe('OPC-UA adapter: a server that stops publishing but keeps its session', () => {
  it('link down within 4 keep-alive periods, no stale cached values as good, up again once it publishes', async () => {
    const d = new OpcuaDevice(unitServer.ahu(UNIT), {
      logger: quietLogger,
      pkiDir: join(root, 'client-pki'),
    });
    devices.push(d);
    const events: (LinkEvent & { atMs: number })[] = [];
    d.on('link', (e: LinkEvent) => events.push({ ...e, atMs: performance.now() }));
    await d.open();
    const held = unitServer.values.get(UNIT)!;
    // Served from the subscription: every value fresh.
    await waitFor('a good read', () => d.read().then((r) => r.quality === 'good' && r.supplyC === 18.2));

    freezePublishing(true);
    const frozenAtMs = performance.now();
    held.set('supplyC', 21.4); // only a Read can see this now: no notification will carry it

    // Until the link is called lost, every read either fails or shows what the unit holds now —
    // except within the freshness window, where the cached value may still be served.
    let stale = 0;
    let readsAfterWindow = 0;
    while (d.linkState === 'up' && performance.now() - frozenAtMs < SILENCE_BOUND_MS + SLACK_MS) {
      const r = await d.read().catch(() => undefined);
      const doneMs = performance.now();
      if (!r || doneMs - frozenAtMs < CACHE_FRESH_MS) continue;
      readsAfterWindow++;
      if (r.supplyC !== 21.4) stale++;
    }
    expect(stale).toBe(0);
    expect(readsAfterWindow).toBeGreaterThan(0);

    const down = await waitFor(
      'the link called lost',
      () => events.find((e) => e.atMs > frozenAtMs && e.to !== 'up'),
      { timeoutMs: SILENCE_BOUND_MS + SLACK_MS },
    );
    expect(down.atMs - frozenAtMs).toBeLessThan(SILENCE_BOUND_MS + SLACK_MS);
    expect(down.to).toBe('down');
    expect(down.reason).toMatch(/no publish or keep-alive/);

    // Still frozen: each reconnect gets a subscription that stays silent too, so the link keeps
    // falling back to down; reads in between ask the server (Read works) and are never stale.
    const secondDown = await waitFor(
      'the reconnected but still silent link called lost again',
      () => events.find((e) => e.atMs > down.atMs && e.from === 'up' && e.to === 'down'),
      { timeoutMs: 10_000 },
    );
    expect(secondDown.reason).toMatch(/no publish or keep-alive/);

    freezePublishing(false);
    const thawedAtMs = performance.now();
    await waitFor('the link up again', () => d.linkState === 'up', { timeoutMs: 10_000 });
    // It stays up for longer than the silence bound: publishing really resumed.
    const upSinceMs = performance.now();
    while (performance.now() - upSinceMs < SILENCE_BOUND_MS + 1_000) {
      expect(d.linkState).toBe('up');
      const r = await d.read();
      expect(r.quality).toBe('good');
      expect(r.supplyC).toBe(21.4);
    }
    expect(events.filter((e) => e.atMs > thawedAtMs + SILENCE_BOUND_MS && e.to !== 'up')).toEqual([]);
  }, 60_000);
});
