// The dashboard against hostile and broken answers, in a real browser: names from the site config,
// alarm texts, audit entries and peer answers that carry markup are shown as text and never run; an
// API that answers an error or a malformed body once does not freeze the page (it keeps polling and
// says what failed); a group whose leader answers an error is not shown as "not driving"; and an
// operator action is followed only to a member of the cluster. Answers are bent with page.route, the
// way a broken or hostile peer would send them; the node behind them is a real API over the fakes.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
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

const MARKUP = '<img src=x onerror="window.__xss=1">';
const demo = await loadSite('config/demo-site.yaml');
const site: Site = {
  ...demo,
  site: { ...demo.site, name: `hall ${MARKUP}` },
  rooms: demo.rooms.map((r) => ({ ...r, name: `room ${MARKUP}` })),
};

describe('dashboard against hostile and broken answers', () => {
  const written: UnitWrite[] = [];
  const cluster = new FakeCluster(DEMO_ONE_NODE);
  let a: FakeNode;
  let url: string;
  let browser: TestBrowser;
  let page: Page;
  const problems: string[] = [];
  let expected: RegExp[] = [];
  /** Per path (no query), what the next answers are bent into; each is used once. */
  const bent = new Map<string, ((route: Route) => Promise<void>)[]>();

  beforeAll(async () => {
    cluster.alarms.raise('unit-tripped', 'zone-1', 'AHU-01', `unit AHU-01 tripped ${MARKUP}`);
    a = await fakeNode(cluster, 'node-a', site, written);
    url = await a.app.listen({ host: '127.0.0.1', port: 0 });
    cluster.members.push({ node: 'node-a', apiUrl: url, startedAtMs: 1 });
    browser = await launchChromium('ui-hostile');
    page = await watchPage(await browser.context.newPage(), problems, () => expected, 10_000);
    await page.route('**/*', async (route) => {
      const path = new URL(route.request().url()).pathname;
      const next = bent.get(path)?.shift();
      if (next) await next(route);
      else await route.continue();
    });
    expected = [/status of 401/];
    await page.goto(`${url}/`);
    await signInThroughForm(page, 'operator', TEST_PASSWORD);
    await waitFor('every group driven', async () =>
      (await page.locator('#groups tbody tr').allInnerTexts()).every((t) => /\byes\b/.test(t)),
    );
  });

  afterAll(async () => {
    await browser?.close();
    await a?.close();
  });

  const polls = () => pollsDrawn(page);
  const bend = (path: string, ...answers: ((route: Route) => Promise<void>)[]) =>
    bent.set(path, [...(bent.get(path) ?? []), ...answers]);
  const answer = (status: number, body: unknown) => (route: Route) =>
    route.fulfill({ status, contentType: 'application/json', body: JSON.stringify(body) });

  it('shows markup from the site config and the alarms as text, and never runs it', async () => {
    await waitFor(
      'the alarm shown',
      async () => (await page.locator('#alarms tr[data-alarm]').count()) === 1,
    );
    expect(await page.locator('#site-name').innerText()).toBe(`hall ${MARKUP}`);
    expect(await page.locator('#alarms .alarm-message').innerText()).toContain(MARKUP);
    expect(await page.locator('#floor text.room-name').first().textContent()).toContain(MARKUP);
    expect(await page.locator('img').count()).toBe(0);
    expect(await page.evaluate<unknown>('window.__xss')).toBeUndefined();
    expect(problems).toEqual([]);
  });

  it('keeps polling after this node answers the cluster with an error, and says so', async () => {
    expected = [/status of 503/];
    bend('/api/v1/cluster', answer(503, { error: 'COOLCTL_E_UNAVAILABLE', message: 'etcd is away' }));
    const before = await polls();
    await waitFor('the failure shown', async () =>
      /cluster.*503/.test(await page.locator('#notices').innerText()),
    );
    await waitFor('two more polls after it', async () => (await polls()) >= before + 3);
    await waitFor(
      'the notice gone once the cluster answers',
      async () => !/503/.test(await page.locator('#notices').innerText()),
    );
    expect(problems).toEqual([]);
  });

  it('keeps polling when a section gets a malformed answer, and shows the rest', async () => {
    expected = [];
    // A member of another version: figures as strings, a bucket without a start.
    const energy = (route: Route) =>
      route.fulfill({
        status: 200,
        contentType: 'application/json',
        body: JSON.stringify({
          node: 'node-a',
          basis: 'b',
          units: [],
          hours: [
            { startMs: Math.floor(Date.now() / 3_600_000) * 3_600_000, fanKwh: '5', baselineFanKwh: 9 },
            {},
          ],
          days: [
            {
              startMs: Math.floor(Date.now() / 86_400_000) * 86_400_000,
              fanKwh: '5',
              baselineFanKwh: 9,
              unitSeconds: 'x',
            },
          ],
        }),
      });
    const audit = answer(200, { lastSeq: 'x', entries: null });
    bend('/api/v1/energy', ...Array.from({ length: 20 }, () => energy));
    bend('/api/v1/audit', ...Array.from({ length: 3 }, () => audit));
    await page.reload();
    await page.waitForSelector('#main', { state: 'visible' });
    await waitFor('the energy summary drawn', async () =>
      /Today/.test(await page.locator('#energy-summary').innerText()),
    );
    const summary = await page.locator('#energy-summary').innerText();
    // "5" is no figure: the string is counted as nothing, never glued onto a number as "05".
    expect(summary).toMatch(/fans 0\.000 kWh against 9\.00 kWh/);
    const before = await polls();
    await waitFor('polling goes on', async () => (await polls()) >= before + 2);
    expect(await page.locator('#groups tbody tr').count()).toBe(4);
    expect(problems).toEqual([]);
    bent.delete('/api/v1/energy');
  });

  it('says why a group’s sensors are not trusted, naming the racks, as text', async () => {
    expected = [];
    const why = `1 rack without a good inlet sensor: RA-03 ${MARKUP}`;
    const live = async (route: Route) => {
      const res = await route.fetch();
      const body = (await res.json()) as { groups?: Record<string, unknown> };
      body.groups = {
        ...body.groups,
        'zone-1': {
          verdict: 'degraded',
          inletMaxC: 24.5,
          hottestRack: 'RA-01',
          coverage: 0.92,
          uncoveredRacks: ['RA-03'],
          reasons: [why, 7],
        },
      };
      await route.fulfill({ response: res, json: body });
    };
    bend('/api/v1/site/live', ...Array.from({ length: 40 }, () => live));
    const row = page.locator('#groups tbody tr[data-group="zone-1"]');
    await waitFor('the reason shown beside the verdict', async () =>
      (await row.innerText()).includes('RA-03'),
    );
    expect(await row.innerText()).toContain('◐ degraded (92 %)');
    expect(await row.innerText()).toContain(`(92 %) — ${why}`);
    expect(await page.evaluate('window.__xss')).toBeUndefined();
    bent.delete('/api/v1/site/live');
  });

  it('shows markup in audit entries as text', async () => {
    const entry = {
      seq: 10_000,
      atMs: Date.now(),
      kind: 'operator',
      user: `mallory ${MARKUP}`,
      role: 'operator',
      clientIp: '127.0.0.1',
      node: 'node-a',
      action: 'pause',
      group: 'zone-1',
      params: { reason: MARKUP },
      status: 200,
    };
    bend('/api/v1/audit', answer(200, { lastSeq: 10_000, entries: [entry] }));
    await waitFor('the entry shown', async () => /mallory/.test(await page.locator('#audit').innerText()));
    expect(await page.locator('#audit').innerText()).toContain(`mallory ${MARKUP}`);
    expect(await page.locator('img').count()).toBe(0);
    expect(await page.evaluate<unknown>('window.__xss')).toBeUndefined();
  });

  it('says what a group’s leader answered instead of showing the group as not driven', async () => {
    expected = [/status of 500/, /status of 500/, /status of 500/];
    const broken = answer(500, { error: 'COOLCTL_E_INTERNAL', message: 'the view broke' });
    // The page reads every group of a leader in one answer (GET /api/v1/groups).
    bend('/api/v1/groups', broken, broken, broken);
    await waitFor('the answer shown in the driving cell', async () =>
      /answered 500: the view broke/.test(await page.locator('#groups tr[data-group="zone-2"]').innerText()),
    );
    expect(await page.locator('#groups tr[data-group="zone-2"]').innerText()).not.toMatch(/✖ no/);
    await waitFor('zone-2 driven again', async () =>
      /\byes\b/.test(await page.locator('#groups tr[data-group="zone-2"]').innerText()),
    );
    expected = [];
  });

  it('follows a 409 only to a member of the cluster, never to an address a node names', async () => {
    const reached: string[] = [];
    const elsewhere: Server = createServer((req, res) => {
      reached.push(`${req.method} ${req.url}`);
      res.writeHead(204, {
        'access-control-allow-origin': url,
        'access-control-allow-credentials': 'true',
        'access-control-allow-headers': 'content-type, x-coolctl-request',
        'access-control-allow-methods': 'POST',
      });
      res.end();
    });
    await new Promise<void>((r) => elsewhere.listen(0, '127.0.0.1', r));
    const other = `http://127.0.0.1:${(elsewhere.address() as AddressInfo).port}`;
    try {
      expected = [/status of 409/];
      bend(
        '/api/v1/groups/zone-1/commands',
        answer(409, {
          error: 'COOLCTL_E_NOT_LEADER',
          message: 'node-a does not lead zone-1',
          details: [`leader API: ${other}`],
        }),
      );
      await page.selectOption('#cmd-target', 'zone-1');
      await page.fill('#cmd-fan', '55');
      await page.click('#cmd-send');
      await waitFor('the refusal shown', async () =>
        /refused \(409/.test(await page.locator('#action-result').innerText()),
      );
      expect(reached).toEqual([]);
      expect(problems).toEqual([]);
    } finally {
      await new Promise((r) => elsewhere.close(r));
      expected = [];
    }
  });

  it('says a sign-out that failed, and forgets what the page read once signed out', async () => {
    await waitFor(
      'the audit trail and energy drawn',
      async () =>
        (await page.locator('#audit tbody tr').count()) > 0 &&
        (await page.locator('#energy-hours tbody tr').count()) > 0,
    );
    expected = [/status of 503/];
    bend('/api/v1/auth/sign-out', answer(503, { error: 'COOLCTL_E_UNAVAILABLE', message: 'etcd is away' }));
    await page.click('#sign-out');
    await waitFor('the failure said', async () =>
      /not signed out \(answered 503: etcd is away\): the session is still open/.test(
        await page.locator('#notices').innerText(),
      ),
    );
    expect(await page.locator('#main').isVisible()).toBe(true);
    expect(problems).toEqual([]);
    await page.click('#sign-out');
    await page.waitForSelector('#sign-in-form', { state: 'visible' });
    expect(await page.locator('#sign-in-result').innerText()).toBe('signed out');
    // Once the reads under way have ended, nothing of the session is left in the page, shown or hidden.
    await page.waitForLoadState('networkidle');
    for (const table of ['#alarms', '#groups', '#units', '#audit', '#energy-hours', '#energy-days'])
      expect(
        await page
          .locator(
            `${table} tbody tr[data-alarm], ${table} tbody tr[data-group], ${table} tbody tr[data-ahu], ${table} tbody tr[data-kind], ${table} tbody tr[data-start]`,
          )
          .count(),
        table,
      ).toBe(0);
    expect(await page.locator('#main').innerText()).not.toMatch(
      /mallory|AHU-01 tripped|node-a\s+\d+\s+leader/,
    );
    expect(problems).toEqual([]);
  });
});
