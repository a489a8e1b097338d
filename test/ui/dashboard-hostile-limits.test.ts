// The dashboard against answers that are well-formed JSON but out of bounds, in a real browser: an
// alarm list of 10 000 and an audit trail of thousands are capped and the page says how much it
// left out; figures that are huge, negative or not numbers never reach an axis, a bar or a cell as
// "NaN", "Infinity" or a broken drawing; a name that is one very long word does not widen the page
// past a 1366 px screen; direction overrides and invisible characters in names and comments are
// shown, never obeyed; an alarm's severity is a word, never a style. Answers are bent with
// page.route, the way a broken or hostile peer would send them; the node is a real API over fakes.
import type { Page, Route } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSite } from '../../src/config/load-site.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { waitFor } from '../helpers.ts';
import { TEST_PASSWORD } from '../support/api-auth.ts';
import {
  launchChromium,
  pollsDrawn,
  signInThroughForm,
  type TestBrowser,
  watchPage,
} from '../support/browser.ts';
import {
  DEMO_ONE_NODE,
  FakeCluster,
  type FakeNode,
  fakeNode,
  type UnitWrite,
} from '../support/fake-cluster.ts';

/** One word too long for any screen: no place to break it. */
const LONG = `Hall${'W'.repeat(900)}`;
const RLO = '\u202E';
const demo = await loadSite('config/demo-site.yaml');
const site: Site = {
  ...demo,
  site: { ...demo.site, name: LONG },
  rooms: demo.rooms.map((r) => ({ ...r, name: `room ${LONG}` })),
};

const iso = (ms: number) => new Date(ms).toISOString();
function alarm(i: number, over: Record<string, unknown> = {}) {
  return {
    id: `probe~zone-1~RA-${i}~${i.toString(36)}`,
    kind: 'rack-inlet-high',
    severity: ['critical', 'major', 'minor', 'warning'][i % 4],
    group: 'zone-1',
    subject: `RA-${i}`,
    message: `rack RA-${i} inlet above 27 °C`,
    state: 'raised',
    raisedAt: iso(Date.now() - i * 1000),
    clearedAt: null,
    ack: null,
    shelvedUntil: null,
    value: 28,
    ...over,
  };
}

describe('dashboard against out-of-bounds answers', () => {
  const written: UnitWrite[] = [];
  const cluster = new FakeCluster(DEMO_ONE_NODE);
  let a: FakeNode;
  let url: string;
  let browser: TestBrowser;
  let page: Page;
  const problems: string[] = [];
  let expected: RegExp[] = [];
  /** Per path (no query), what every answer is bent into until the test removes it. */
  const bent = new Map<string, (route: Route) => Promise<void>>();
  const json = (body: unknown) => (route: Route) =>
    route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(body) });
  const polls = () => pollsDrawn(page);
  /** Reloads the page with the answers bent as they are now, and waits for it to draw twice. */
  const reload = async () => {
    await page.reload();
    await page.waitForSelector('#main', { state: 'visible' });
    await waitFor('two polls drawn', async () => (await polls()) >= 2, { timeoutMs: 20_000 });
  };

  beforeAll(async () => {
    cluster.alarms.raise('unit-tripped', 'zone-1', 'AHU-01', 'unit AHU-01 tripped');
    a = await fakeNode(cluster, 'node-a', site, written);
    url = await a.app.listen({ host: '127.0.0.1', port: 0 });
    cluster.members.push({ node: 'node-a', apiUrl: url, startedAtMs: 1 });
    browser = await launchChromium('ui-limits');
    page = await watchPage(await browser.context.newPage(), problems, () => expected, 20_000);
    await page.route('**/*', async (route) => {
      const next = bent.get(new URL(route.request().url()).pathname);
      if (next) await next(route);
      else await route.continue();
    });
    expected = [/status of 401/];
    await page.goto(`${url}/`);
    await signInThroughForm(page, 'operator', TEST_PASSWORD);
    await waitFor('every group driven', async () =>
      (await page.locator('#groups tbody tr').allInnerTexts()).every((t) => /\byes\b/.test(t)),
    );
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await a?.close();
  });

  it('lists at most a page of 10 000 alarms, the worst first, and says how many it left out', async () => {
    const many = Array.from({ length: 10_000 }, (_, i) => alarm(i));
    bent.set('/api/v1/alarms', json({ alarms: many }));
    try {
      await reload();
      await waitFor(
        'the alarms drawn',
        async () => (await page.locator('#alarms tr[data-alarm]').count()) > 0,
      );
      const rows = await page.locator('#alarms tr[data-alarm]').count();
      expect(rows).toBeLessThanOrEqual(200);
      expect(await page.locator('#alarms tr[data-alarm]').first().getAttribute('data-state')).toBe('raised');
      expect(await page.locator('#alarms tr[data-alarm] td.sev').first().innerText()).toMatch(/critical/);
      expect(await page.locator('#alarms').innerText()).toMatch(
        new RegExp(`${10_000 - rows} more alarms not listed`),
      );
      // The badge counts them all, and the page keeps polling and answering the keyboard.
      expect(await page.locator('#alarm-count').innerText()).toBe('10000 unacknowledged alarms');
      const before = await polls();
      await waitFor('polling goes on', async () => (await polls()) >= before + 2, { timeoutMs: 20_000 });
      await page.focus('#alarms-all');
      await page.keyboard.press('Enter');
      expect(await page.locator('#alarms-all').getAttribute('aria-pressed')).toBe('true');
      await page.click('#alarms-active');
      expect(problems).toEqual([]);
    } finally {
      bent.delete('/api/v1/alarms');
    }
  }, 90_000);

  it('shows an alarm whose severity is no known word, as a word and not as a style', async () => {
    bent.set(
      '/api/v1/alarms',
      json({ alarms: [alarm(1, { severity: 'sr-only', message: 'severity names a class' })] }),
    );
    try {
      await reload();
      const cell = page.locator('#alarms tr[data-alarm] td.alarm-message');
      await waitFor('the alarm drawn', async () => (await cell.count()) === 1);
      // The message is what the browser draws at its place: not clipped away by a class it was given.
      const drawn = await page.evaluate<boolean>(`(() => {
        const cell = document.querySelector('#alarms tr[data-alarm] td.alarm-message');
        cell.scrollIntoView();
        const r = cell.getBoundingClientRect();
        return cell.contains(document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2));
      })()`);
      expect(drawn).toBe(true);
      expect(await page.locator('#alarms tr[data-alarm] td').first().innerText()).toBe('? sr-only');
      expect(problems).toEqual([]);
    } finally {
      bent.delete('/api/v1/alarms');
    }
  }, 60_000);

  it('draws trends whose figures are huge, out of order or not numbers without NaN or a broken axis', async () => {
    const now = Date.now();
    bent.set(
      '/api/v1/trends',
      json({
        // No periodMs, no memoryBytes: a member of another version.
        groups: [
          {
            group: 'zone-1',
            t: [now - 240_000, now - 180_000, 'soon', now - 60_000, now - 30_000],
            inletMaxC: [22, 1e308, 23, -1e308, 24],
            fanPct: [40, 1e308, 'x', 50, null],
          },
        ],
        units: [],
      }),
    );
    try {
      expected = [];
      await reload();
      const trends = page.locator('#trends-section');
      await waitFor('the trend drawn', async () => (await page.locator('#trends svg path.line').count()) > 0);
      expect(await trends.innerText()).not.toMatch(/NaN|Infinity|undefined|e\+/);
      const attrs = await page.evaluate<string[]>(`[...document.querySelectorAll('#trends svg *')]
        .flatMap((e) => [...e.attributes].map((a) => a.value))`);
      expect(attrs.filter((v) => /NaN|Infinity/.test(v))).toEqual([]);
      // The temperature axis stays one an operator can read: its labels are a few plain °C figures.
      const yLabels = (
        await page.locator('#trends figure[data-chart="temperature"] text.y-label').allTextContents()
      ).map(Number);
      expect(yLabels.length).toBeGreaterThan(2);
      expect(Math.max(...yLabels)).toBeLessThanOrEqual(200);
      expect(Math.min(...yLabels)).toBeGreaterThanOrEqual(-100);
      expect(problems).toEqual([]);
    } finally {
      bent.delete('/api/v1/trends');
    }
  }, 60_000);

  it('counts no energy figure that is negative or beyond any hall, and draws no broken bar', async () => {
    const hour = Math.floor(Date.now() / 3_600_000) * 3_600_000;
    const day = Math.floor(Date.now() / 86_400_000) * 86_400_000;
    const bucket = (startMs: number) => ({
      startMs,
      fanKwh: -5,
      estimatedFanKwh: 0,
      baselineFanKwh: 1.7e308,
      coolingKwh: 1e308,
      unitSeconds: 3600,
    });
    bent.set(
      '/api/v1/energy',
      json({
        node: 'node-a',
        basis: 'b',
        units: [],
        hours: [bucket(hour), bucket(hour - 3_600_000)],
        days: [bucket(day)],
      }),
    );
    try {
      await reload();
      await waitFor('the energy summary drawn', async () =>
        /Today/.test(await page.locator('#energy-summary').innerText()),
      );
      const section = await page.locator('#energy-section').innerText();
      expect(section).not.toMatch(/NaN|Infinity|e\+|[\s(]-\d/);
      expect(section).toMatch(/fans 0\.000 kWh against 0\.000 kWh/);
      expect(section).toMatch(/Not counted: figures from node-a that are no energy/);
      const heights = await page.evaluate<string[]>(
        `[...document.querySelectorAll('#energy-chart rect')].map((r) => r.getAttribute('height'))`,
      );
      expect(heights.filter((h) => !(Number(h) >= 0))).toEqual([]);
      expect(problems).toEqual([]);
    } finally {
      bent.delete('/api/v1/energy');
    }
  }, 60_000);

  it('shows the newest part of a long audit trail, says so, and no "Invalid Date" or NaN', async () => {
    const now = Date.now();
    const entries = Array.from({ length: 5000 }, (_, i) => ({
      seq: 20_000 + i,
      atMs: i === 4999 ? 'yesterday' : now - (5000 - i) * 1000,
      kind: 'operator',
      user: 'operator',
      role: 'operator',
      clientIp: '127.0.0.1',
      node: 'node-a',
      action: 'pause',
      group: 'zone-1',
      params: i === 4999 ? { reason: 'x'.repeat(20_000) } : { reason: 'probe' },
      status: i === 4999 ? 'teapot' : 200,
      ...(i === 4999 ? { error: 'a string, not a {code}' } : {}),
    }));
    let sent = false;
    bent.set('/api/v1/audit', async (route) => {
      // The whole trail once, then nothing new: the way the node answers `since`.
      const body = sent ? { lastSeq: 24_999, entries: [] } : { lastSeq: 24_999, entries };
      sent = true;
      await json(body)(route);
    });
    try {
      await reload();
      await waitFor('the trail drawn', async () => (await page.locator('#audit tbody tr').count()) > 0);
      expect(await page.locator('#audit tbody tr[data-kind]').count()).toBe(200);
      const text = await page.locator('#audit-section').innerText();
      expect(text).toMatch(/newest 200 of 5000 entries/);
      expect(text).not.toMatch(/Invalid Date|NaN|undefined/);
      // A 20 000-character comment does not make the trail 20 000 characters wide.
      const wide = await page.evaluate<number>(`document.querySelector('#audit').scrollWidth`);
      expect(wide).toBeLessThan(4000);
      expect(problems).toEqual([]);
    } finally {
      bent.delete('/api/v1/audit');
    }
  }, 60_000);

  it('an entry read while its action ran shows the answer once the node completes it in place', async () => {
    const entry = {
      seq: 30_000,
      atMs: Date.now(),
      kind: 'operator',
      user: 'operator',
      role: 'operator',
      clientIp: '127.0.0.1',
      node: 'node-a',
      method: 'POST',
      path: '/api/v1/groups/zone-1/pause',
      action: 'pause',
      group: 'zone-1',
      target: null,
      params: { reason: 'probe' },
      status: null,
      error: { code: 'COOLCTL_E_AUDIT_NO_OUTCOME', message: 'no outcome recorded' },
      outcome: 'pending',
    };
    let current: Record<string, unknown> = entry;
    bent.set('/api/v1/audit', async (route) => {
      // As the node answers: entries whose seq (create revision) is above `since`; a completed
      // entry keeps its seq.
      const since = Number(new URL(route.request().url()).searchParams.get('since'));
      await json({ lastSeq: 30_000, entries: since < 30_000 ? [current] : [] })(route);
    });
    const cell = () => page.locator('#audit tbody tr[data-kind="operator"] td').last().innerText();
    try {
      await reload();
      await waitFor('the running action listed', async () => /running/.test(await cell()));
      current = { ...entry, status: 200, error: null, outcome: 'answered' };
      await waitFor('its answer shown', async () => (await cell()) === '200', { timeoutMs: 20_000 });
      expect(await page.locator('#audit tbody tr[data-kind="operator"]').count()).toBe(1);
      expect(problems).toEqual([]);
    } finally {
      bent.delete('/api/v1/audit');
    }
  }, 60_000);

  it('shows a last write time that is no number as "never", not as "NaN s ago"', async () => {
    // The page reads every group of a leader in one answer (GET /api/v1/groups).
    bent.set('/api/v1/groups', async (route) => {
      const res = await route.fetch();
      const body = (await res.json()) as { groups?: { id: string; units?: { lastWriteOkMs?: unknown }[] }[] };
      for (const g of body.groups ?? [])
        if (g.id === 'zone-1') for (const u of g.units ?? []) u.lastWriteOkMs = 'soon';
      await route.fulfill({ response: res, json: body });
    });
    try {
      await reload();
      await waitFor('zone-1 drawn', async () => (await page.locator('#units tr[data-ahu]').count()) > 0);
      await waitFor('the bent view drawn', async () =>
        /zone-1/.test(await page.locator('#units tbody').innerText()),
      );
      expect(await page.locator('#units tbody').innerText()).not.toMatch(/NaN/);
      expect(problems).toEqual([]);
    } finally {
      bent.delete('/api/v1/groups');
    }
  }, 60_000);

  it('fits a 1366 px screen whatever the names, and shows a direction override instead of obeying it', async () => {
    bent.set(
      '/api/v1/alarms',
      json({
        alarms: [
          alarm(1, {
            message: `unit ${'M'.repeat(2000)} tripped`,
            state: 'acknowledged',
            ack: { user: `eve${RLO}`, at: iso(Date.now() - 5000), comment: 'comment' },
          }),
        ],
      }),
    );
    try {
      await reload();
      await waitFor(
        'the alarm drawn',
        async () => (await page.locator('#alarms tr[data-alarm]').count()) === 1,
      );
      const overflow = await page.evaluate<number>(
        'document.documentElement.scrollWidth - document.documentElement.clientWidth',
      );
      expect(overflow).toBeLessThanOrEqual(0);
      // The room's name is drawn within its room, not across its neighbours.
      const spill =
        await page.evaluate<number>(`Math.max(...[...document.querySelectorAll('#floor text.room-name')]
        .map((t, i) => t.getBBox().width - document.querySelectorAll('#floor rect.room')[i].getBBox().width))`);
      expect(spill).toBeLessThanOrEqual(0);
      // What comes after the override reads left to right: "comment" is not drawn as "tnemmoc".
      const order = await page.evaluate<number>(`(() => {
        const cell = document.querySelector('#alarms td.alarm-ack');
        const walk = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
        for (let n = walk.nextNode(); n; n = walk.nextNode()) {
          const i = n.data.indexOf('comment');
          if (i < 0) continue;
          const at = (k) => { const r = document.createRange(); r.setStart(n, k); r.setEnd(n, k + 1); return r.getBoundingClientRect().left; };
          return at(i + 6) - at(i);
        }
        return NaN;
      })()`);
      expect(order).toBeGreaterThan(0);
      expect(await page.locator('#alarms td.alarm-ack').innerText()).not.toContain(RLO);
      expect(problems).toEqual([]);
    } finally {
      bent.delete('/api/v1/alarms');
    }
  }, 60_000);
});
