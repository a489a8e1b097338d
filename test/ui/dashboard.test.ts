// The dashboard in a real browser (Debian's chromium, driven by playwright-core): two controller
// nodes over fakes listen on loopback; the page opened on node-a asks to sign in, then shows the
// site's floor map and the groups' leaders, and an operator's command and switchover typed into it
// reach the unit, the leadership and the audit trail under the signed-in user, across nodes too (the
// session cookie is good on every node); trends and the energy report are drawn, and a rack opens
// from the keyboard; the cluster's alarms (the fakes' shared store, test/support/fake-alarms.ts) are
// acknowledged and shelved in the page and read the same on the other node's page. Any page error
// or console error fails the test. test/ui/hall-dashboard.test.ts does the same on a real hall.
import { mkdir } from 'node:fs/promises';
import type { Page, Response } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSite } from '../../src/config/load-site.ts';
import { FAN_RANGE_PCT, SUPPLY_SETPOINT_RANGE_C } from '../../src/unit-contract.ts';
import { waitFor } from '../helpers.ts';
import { TEST_PASSWORD } from '../support/api-auth.ts';
import { launchChromium, SCREENSHOTS_DIR, type TestBrowser, watchPage } from '../support/browser.ts';
import {
  DEMO_TWO_NODES,
  FakeCluster,
  type FakeNode,
  fakeNode,
  type UnitWrite,
} from '../support/fake-cluster.ts';

const site = await loadSite('config/demo-site.yaml');

describe('operator dashboard in a browser', () => {
  const written: UnitWrite[] = [];
  const cluster = new FakeCluster(DEMO_TWO_NODES);
  let a: FakeNode;
  let b: FakeNode;
  let urlA: string;
  let urlB: string;
  let browser: TestBrowser;
  let page: Page;
  /** Page errors and console errors: each fails the test. */
  const problems: string[] = [];
  /** Console errors the test expects (a 409 the page then follows), taken off `problems` one each. */
  let expected: RegExp[] = [];

  beforeAll(async () => {
    a = await fakeNode(cluster, 'node-a', site, written);
    b = await fakeNode(cluster, 'node-b', site, written);
    urlA = await a.app.listen({ host: '127.0.0.1', port: 0 });
    urlB = await b.app.listen({ host: '127.0.0.1', port: 0 });
    cluster.members.push(
      { node: 'node-a', apiUrl: urlA, startedAtMs: 1 },
      { node: 'node-b', apiUrl: urlB, startedAtMs: 2 },
    );
    await mkdir(SCREENSHOTS_DIR, { recursive: true });
    browser = await launchChromium('ui');
    page = await watchPage(
      browser.context.pages()[0] ?? (await browser.context.newPage()),
      problems,
      () => expected,
      10_000,
    );
    // Not signed in yet: the page's one question (who am I?) is answered 401.
    expected = [/status of 401/];
    await page.goto(`${urlA}/`);
    await page.waitForSelector('#sign-in-form', { state: 'visible' });
    expect(await page.locator('#main').isHidden()).toBe(true);
    await page.fill('#sign-in-name', 'operator');
    await page.fill('#sign-in-password', 'a wrong password');
    expected.push(/status of 401/);
    await page.click('#sign-in-send');
    await waitFor('the refusal shown', async () =>
      /not signed in/.test(await page.locator('#sign-in-result').innerText()),
    );
    await page.fill('#sign-in-password', TEST_PASSWORD);
    await page.click('#sign-in-send');
    await page.waitForSelector('#main', { state: 'visible' });
    expect(await page.locator('#whoami').innerText()).toBe('operator (operator)');
    const cookie = (await browser.context.cookies(urlA)).find((c) => c.name === 'coolctl_session');
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    expect(expected).toEqual([]);
  });

  afterAll(async () => {
    await browser?.close();
    await a?.close();
    await b?.close();
  });

  const text = (selector: string) => page.locator(selector).innerText();
  const box = async (selector: string) => (await page.locator(selector).boundingBox()) ?? undefined;
  const noProblems = () => expect(problems).toEqual([]);

  it('shows the floor map with the site’s racks and air handlers, and its fixed colour scale', async () => {
    await waitFor('the floor map drawn', async () => (await page.locator('#floor g.rack').count()) > 0);
    expect(await page.locator('#floor g.rack').count()).toBe(site.racks.length);
    expect(await page.locator('#floor g.ahu').count()).toBe(site.airHandlers.length);
    const ids = await page
      .locator('#floor g.ahu')
      .evaluateAll((els) => els.map((e) => e.getAttribute('data-id')));
    expect(ids.sort()).toEqual(site.airHandlers.map((x) => x.id).sort());
    expect(await text('#site-name')).toBe(site.site.name);
    // The scale is labelled, with both limits, whatever the data.
    const ticks = await page.locator('#floor-legend svg.scale text.tick-label').allTextContents();
    expect(ticks).toEqual(['18', '21', '24', '27', '30', '32', '35']);
    expect(await text('#floor-legend')).toMatch(/▲ above 27 °C · ✖ above 32 °C/);
    // The fakes have no sensor view: every rack is grey with "no data" in words and a "?".
    await waitFor('the legend says rack inlets have no data', async () =>
      /Rack inlets of .*: no data/.test(await text('#floor-source')),
    );
    const ra01 = page.locator('#floor g.rack[data-id="RA-01"]');
    expect(await ra01.getAttribute('aria-label')).toMatch(/RA-01: no data/);
    expect(await ra01.getAttribute('data-level')).toBe('none');
    expect(await ra01.locator('.rack-temp').textContent()).toBe('– ?');
    noProblems();
  });

  it('shows each group’s leader, epoch and this node’s role, and the units driven', async () => {
    const row = (g: string) => text(`#groups tr[data-group="${g}"]`);
    await waitFor('all four groups', async () => (await page.locator('#groups tbody tr').count()) === 4);
    await waitFor('zone-1 led and driven by node-a', async () =>
      /node-a\s+41\s+leader\s+yes/.test(await row('zone-1')),
    );
    await waitFor('zone-3 led and driven by node-b', async () =>
      /node-b\s+57\s+follower\s+yes/.test(await row('zone-3')),
    );
    await waitFor('AHU-01 held at 50 %, driven by node-a', async () =>
      /AHU-01\s+zone-1\s+node-a\s+● driven\s+50\.0\s+18\.0/.test(await text('#units tr[data-ahu="AHU-01"]')),
    );
    // Each unit's state on the map in words and a mark, as its group's leader holds it.
    await waitFor('AHU-03 driven on the map', async () =>
      /● driven/.test((await page.locator('#floor g.ahu[data-id="AHU-03"] .ahu-state').textContent()) ?? ''),
    );
    // No alarm computed in the browser (no "link down" for units other nodes drive): the cluster's list.
    await waitFor('no active alarms', async () => /✔ no active alarms/.test(await text('#alarms')));
    expect(await text('#alarm-count')).toBe('✔ no unacknowledged alarms');
    expect(await text('#notices')).toBe('');
    expect(await text('#node-name')).toBe('node-a');
    expect(await text('#ready')).toBe('✔ ready');
    noProblems();
  });

  it('bounds the command form by the device contract, as the API states it', async () => {
    const bounds = async (sel: string) => [
      await page.getAttribute(sel, 'min'),
      await page.getAttribute(sel, 'max'),
    ];
    await waitFor(
      'the form’s bounds from /openapi.json',
      async () => (await bounds('#cmd-setpoint'))[1] !== null,
    );
    expect(await bounds('#cmd-setpoint')).toEqual([
      String(SUPPLY_SETPOINT_RANGE_C.min),
      String(SUPPLY_SETPOINT_RANGE_C.max),
    ]);
    expect(await bounds('#cmd-fan')).toEqual([String(FAN_RANGE_PCT.min), String(FAN_RANGE_PCT.max)]);
    noProblems();
  });

  it('sends an operator command typed into the page to the unit, and shows it in the audit log', async () => {
    await page.selectOption('#cmd-target', 'zone-1/AHU-01');
    await page.fill('#cmd-fan', '61.5');
    await page.click('#cmd-send');
    await waitFor('AHU-01 written at 61.5 % by node-a', () =>
      written.some(
        (w) => w.ahu === 'AHU-01' && w.node === 'node-a' && w.cmd.fanPct === 61.5 && w.cmd.epoch === 41,
      ),
    );
    expect(written.some((w) => w.ahu === 'AHU-05' && w.cmd.fanPct === 61.5)).toBe(false);
    await waitFor('the result line', async () =>
      /manual command for AHU-01: done/.test(await text('#action-result')),
    );
    const audit = await waitFor('the command in the audit log', async () => {
      const rows = await page.locator('#audit tr[data-kind="operator"]').allInnerTexts();
      return rows.find((r) => r.includes('commands zone-1'));
    });
    expect(audit).toMatch(/operator \(operator\) @ 127\.0\.0\.1 via node-a/);
    expect(audit).toContain('{"ahu":"AHU-01","fanPct":61.5}');
    expect(audit).toMatch(/\b200\b/);
    await waitFor('the held command in the unit table', async () =>
      /61\.5/.test(await text('#units tr[data-ahu="AHU-01"] .held-fan')),
    );
    noProblems();
  });

  it('sends a command for a group led by another node straight to that node', async () => {
    await page.selectOption('#cmd-target', 'zone-3');
    await page.fill('#cmd-fan', '');
    await page.fill('#cmd-setpoint', '19.5');
    await page.click('#cmd-send');
    const zone3 = site.controlGroups.find((g) => g.id === 'zone-3')!.airHandlers;
    await waitFor('every zone-3 unit written at 19.5 °C by node-b', () =>
      zone3.every((ahu) =>
        written.some((w) => w.ahu === ahu && w.node === 'node-b' && w.cmd.supplySetpointC === 19.5),
      ),
    );
    // The units can be written before the page has the answer: wait for the page, do not read it once.
    await waitFor('the result line names node-b', async () =>
      (await text('#action-result')).includes(`via ${urlB}`),
    );
    const trail = (await b.audit.list()).entries;
    expect(trail.some((e) => e.kind === 'operator' && e.group === 'zone-3' && e.status === 200)).toBe(true);
    noProblems();
  });

  it('follows the leader named in a 409 when the page’s view of the cluster is stale', async () => {
    // The page believes node-a leads zone-4 (it is node-b): node-a answers 409 naming node-b's API.
    // The page reads node-a's cluster change-only: asked without its revision, node-a answers whole.
    const clusterOfA = (u: URL) => u.origin === new URL(urlA).origin && u.pathname === '/api/v1/cluster';
    await page.route(clusterOfA, async (route) => {
      const url = new URL(route.request().url());
      url.searchParams.delete('since');
      const res = await route.fetch({ url: url.href });
      const body = await res.json();
      for (const g of body.groups) if (g.id === 'zone-4') g.leader = 'node-a';
      await route.fulfill({ response: res, json: body });
    });
    try {
      await waitFor('the page sees the stale leader', async () =>
        /zone-4\s+node-a/.test(await text('#groups tr[data-group="zone-4"]')),
      );
      // The browser logs the 409 it got on the way; that is the path under test.
      expected = [/status of 409/];
      await page.selectOption('#cmd-target', 'zone-4/AHU-04');
      await page.fill('#cmd-fan', '33');
      await page.fill('#cmd-setpoint', '');
      await page.click('#cmd-send');
      await waitFor('AHU-04 written at 33 % by node-b', () =>
        written.some((w) => w.ahu === 'AHU-04' && w.node === 'node-b' && w.cmd.fanPct === 33),
      );
      await waitFor('done via node-b', async () =>
        (await text('#action-result')).includes(`done via ${urlB}`),
      );
      const refusedHere = (await a.audit.list()).entries.find(
        (e) => e.kind === 'operator' && e.group === 'zone-4' && e.status === 409,
      );
      expect(refusedHere).toMatchObject({ status: 409, error: { code: 'COOLCTL_E_NOT_LEADER' } });
    } finally {
      // A poll still in the handler must not fail the run once the route is gone.
      await page.unrouteAll({ behavior: 'ignoreErrors' });
    }
    expect(expected).toEqual([]);
    noProblems();
  });

  it('switches a group over with the button: the leadership moves and the audit log shows it', async () => {
    await page.selectOption('#sw-group', 'zone-2');
    await page.selectOption('#sw-to', 'node-b');
    await page.click('#sw-send');
    await waitFor('the switchover asked of node-a', () =>
      cluster.switched.some((s) => s.group === 'zone-2' && s.from === 'node-a' && s.to === 'node-b'),
    );
    await waitFor('zone-2 now led by node-b', async () =>
      /zone-2\s+node-b\s+52\s+follower/.test(await text('#groups tr[data-group="zone-2"]')),
    );
    await waitFor('the role change and the action in the audit log', async () => {
      const rows = await page.locator('#audit tbody tr').allInnerTexts();
      return (
        rows.some((r) => /node-b\s+zone-2: \w+ → leader \(epoch 52\)/.test(r)) &&
        rows.some((r) => /switchover zone-2 \{"to":"node-b"\}/.test(r))
      );
    });
    noProblems();
  });

  it('draws trends with labelled axes for a group and a unit, over 10 minutes or 24 hours', async () => {
    await page.selectOption('#trend-subject', 'group:zone-1');
    const fan = page.locator('#trends figure[data-chart="fan"]');
    await waitFor(
      'a zone-1 fan line',
      async () => /^M/.test((await fan.locator('path[data-series="fanPct"]').getAttribute('d')) ?? ''),
      { timeoutMs: 15_000 },
    );
    expect(await fan.locator('figcaption').textContent()).toBe('group zone-1: fan speed, % — last 10 min');
    expect(await fan.locator('text.y-label').allTextContents()).toEqual(['0', '20', '40', '60', '80', '100']);
    expect(await fan.locator('text.axis-title').textContent()).toBe('%');
    const times = await fan.locator('text.x-label').allTextContents();
    expect(times.length).toBeGreaterThanOrEqual(4);
    expect(times.every((t) => /^\d\d:\d\d$/.test(t))).toBe(true);
    expect(await text('#trends figure[data-chart="fan"] .chart-key')).toMatch(
      /mean fan % of its units \(told\): \d+\.\d/,
    );
    const temp = page.locator('#trends figure[data-chart="temperature"]');
    expect(await temp.locator('text.ref-label').allTextContents()).toEqual([
      '27 °C recommended',
      '32 °C allowable',
    ]);
    // A unit: its own fan and setpoint, with the group's hottest inlet.
    await page.selectOption('#trend-subject', 'unit:AHU-05');
    await waitFor('AHU-05’s setpoint line', async () =>
      /^M/.test((await temp.locator('path[data-series="supplySetpointC"]').getAttribute('d')) ?? ''),
    );
    expect(await text('#trends figure[data-chart="temperature"] figcaption')).toMatch(
      /unit AHU-05 \(group zone-1\)/,
    );
    await page.click('#trend-day');
    expect(await page.getAttribute('#trend-day', 'aria-pressed')).toBe('true');
    await waitFor('the 24-hour chart', async () =>
      /last 24 h/.test(await text('#trends figure[data-chart="fan"] figcaption')),
    );
    await waitFor('24-hour time labels', async () => (await fan.locator('text.x-label').count()) >= 7);
    await page.screenshot({
      path: `${SCREENSHOTS_DIR}/fakes-trends.png`,
      fullPage: false,
      clip: await box('#trends-section'),
    });
    await page.click('#trend-recent');
    noProblems();
  });

  it('reports fan energy against every unit on local control, with the saving', async () => {
    // The fake units run at 50 %: 0.5³ of the baseline's power, a saving of 87.5 %.
    await waitFor(
      'an hour row with its saving',
      async () => /\b88 %/.test(await text('#energy-hours tbody')),
      { timeoutMs: 25_000 },
    );
    expect(await text('#energy-summary')).toMatch(/saving [\d.]+ kWh \(88 %\)/);
    expect(await text('#energy-days tbody')).toMatch(/\b88 %/);
    expect(await page.locator('#energy-chart rect.bar.fan').count()).toBeGreaterThan(0);
    expect(await page.locator('#energy-basis').textContent()).toMatch(/cube of speed/);
    noProblems();
  });

  it('opens a rack from the keyboard: Tab to it, Enter shows its sensors', async () => {
    await page.locator('#sign-out').focus();
    let focused = '';
    for (let i = 0; i < 80 && !focused.startsWith('rack:'); i++) {
      await page.keyboard.press('Tab');
      // A string runs in the page (this file has no DOM types).
      focused = await page.evaluate<string>(
        "(e => e?.classList.contains('rack') ? 'rack:' + e.getAttribute('data-id') : (e?.tagName ?? ''))(document.activeElement)",
      );
    }
    expect(focused).toMatch(/^rack:RA-\d+$/);
    const id = focused.slice(5);
    // The focus is visible: a thick dark frame.
    const stroke = await page.evaluate<string>(
      "getComputedStyle(document.activeElement.querySelector('rect')).strokeWidth",
    );
    expect(Number.parseFloat(stroke)).toBeGreaterThan(0.1);
    await page.keyboard.press('Enter');
    await waitFor('the rack’s panel', async () => (await text('#rack-details h3')).startsWith(`Rack ${id}`));
    await waitFor(
      'its sensors listed',
      async () => (await page.locator('#rack-details tr[data-sensor]').count()) > 0,
    );
    // The fakes have no sensor view: every sensor's trust says unknown, in words.
    expect(await text('#rack-details')).toMatch(/no sensor view/);
    expect(await text('#rack-details tbody')).toMatch(/\? unknown/);
    // No good inlet reading is said once, in words: never "no data (no data)".
    expect(await text('#rack-details .rack-summary')).toMatch(
      /^Hottest good inlet: no data\. [✖?] (not trusted: none of \d+ inlet sensors good|no inlet sensors)\.$/,
    );
    await page.click('#rack-close');
    expect(await page.evaluate<string>("document.activeElement?.getAttribute('data-id')")).toBe(id);
    noProblems();
  });

  it('acknowledges and shelves an alarm of the cluster; the other node’s page shows it acknowledged', async () => {
    const id = cluster.alarms.raise(
      'inlet-recommended',
      'zone-1',
      'RA-03',
      'RA-03 inlet 28.4 °C above 27 °C',
      {
        value: 28.4,
      },
    );
    const row = page.locator(`#alarms tr[data-alarm="${id}"]`);
    await waitFor('the alarm listed', async () => (await row.count()) === 1);
    expect(await row.locator('td.sev').innerText()).toBe('◆ major');
    expect(await row.locator('td.alarm-state').innerText()).toBe('unacknowledged');
    expect(await row.innerText()).toMatch(/zone-1 \/ RA-03\s+RA-03 inlet 28\.4 °C above 27 °C/);
    await waitFor(
      'the header counts it',
      async () => (await text('#alarm-count')) === '1 unacknowledged alarm',
    );
    await page.fill('#alarm-comment', 'facilities on it');
    await row.locator('button.ack').click();
    await waitFor('acknowledged', async () => (await row.getAttribute('data-state')) === 'acknowledged');
    expect(await row.locator('td.alarm-ack').innerText()).toMatch(
      /^by operator \d+ s ago: “facilities on it”$/,
    );
    expect(await row.locator('button.ack').count()).toBe(0);
    expect(await text('#alarm-result')).toBe(`ack ${id}: done`);

    // node-b's page, same session: the same alarm, acknowledged.
    const other = await browser.context.newPage();
    try {
      other.on('pageerror', (err) => problems.push(`page error (node-b): ${err.message}`));
      await other.goto(`${urlB}/`);
      await other.waitForSelector('#main', { state: 'visible' });
      const there = other.locator(`#alarms tr[data-alarm="${id}"]`);
      await waitFor(
        'acknowledged on node-b’s page',
        async () =>
          (await there.count()) === 1 && (await there.getAttribute('data-state')) === 'acknowledged',
      );
      expect(await there.locator('td.alarm-ack').innerText()).toMatch(/by operator .*“facilities on it”/);
      expect(await other.locator('#node-name').innerText()).toBe('node-b');
    } finally {
      await other.close();
    }

    // Raised and acknowledged elsewhere (on etcd, by another node's operator): the page holds the
    // list and is sent only that alarm each time, which it merges into what it shows.
    const answers: { url: string; body: { alarms?: { id: string }[]; since?: string | null } }[] = [];
    const onAnswer = async (r: Response) => {
      if (r.url().includes('/api/v1/alarms?') && r.status() === 200)
        answers.push({ url: r.url(), body: await r.json().catch(() => ({})) });
    };
    page.on('response', onAnswer);
    try {
      const later = cluster.alarms.raise('inlet-recommended', 'zone-2', 'RB-02', 'RB-02 inlet 27.9 °C', {
        value: 27.9,
      });
      const laterRow = page.locator(`#alarms tr[data-alarm="${later}"]`);
      await waitFor('the later alarm listed', async () => (await laterRow.count()) === 1);
      await cluster.alarms.acknowledge(later, 'night-shift', 'on the roof');
      await waitFor(
        'acknowledged elsewhere, shown here',
        async () => (await laterRow.getAttribute('data-state')) === 'acknowledged',
      );
      expect(await laterRow.locator('td.alarm-ack').innerText()).toMatch(/by night-shift .*“on the roof”/);
      // Both came as change-only answers naming that alarm alone; the first alarm is still listed.
      const changeOnly = answers.filter(
        (x) => x.url.includes('changes=only') && typeof x.body.since === 'string' && x.body.alarms,
      );
      expect(changeOnly.map((x) => x.body.alarms?.map((y) => y.id))).toEqual([[later], [later]]);
      expect(await row.getAttribute('data-state')).toBe('acknowledged');
      expect(await page.locator('#alarms tr[data-alarm]').count()).toBe(2);
      cluster.alarms.records.delete(later);
      await waitFor('the later alarm gone', async () => (await laterRow.count()) === 0);
    } finally {
      page.off('response', onAnswer);
    }

    // Shelved for an hour, then back.
    await page.selectOption('#alarm-shelve-for', '3600');
    await row.locator('button.shelve').click();
    await waitFor('shelved', async () =>
      /acknowledged, shelved until \d\d:\d\d/.test(await row.locator('td.alarm-state').innerText()),
    );
    const shelf = cluster.alarms.records.get(id)!.shelf!;
    expect(shelf.untilMs - shelf.atMs).toBe(3_600_000);
    await page.screenshot({
      path: `${SCREENSHOTS_DIR}/fakes-alarms.png`,
      clip: await box('#alarms-section'),
    });
    await row.locator('button.unshelve').click();
    await waitFor(
      'unshelved',
      async () => (await row.locator('td.alarm-state').innerText()) === 'acknowledged',
    );
    // Cleared: it leaves the active list, and "All" still shows it.
    cluster.alarms.clear(id);
    await waitFor('gone from the active list', async () => (await row.count()) === 0);
    await page.click('#alarms-all');
    await waitFor('cleared, under All', async () => (await row.getAttribute('data-state')) === 'cleared');
    await page.click('#alarms-active');
    noProblems();
  });

  it('shows a group without a leader, in words', async () => {
    cluster.move('zone-4', null, 'test: leader lost');
    await waitFor('zone-4 without a leader', async () =>
      /zone-4\s+✖ none/.test(await text('#groups tr[data-group="zone-4"]')),
    );
    await waitFor('its units not driven on the map', async () =>
      /○ no leader/.test(
        (await page.locator('#floor g.ahu[data-id="AHU-04"] .ahu-state').textContent()) ?? '',
      ),
    );
    await page.screenshot({ path: `${SCREENSHOTS_DIR}/fakes-page.png`, fullPage: true });
    noProblems();
  });

  it('says next to the group why another node handed it on, and its new leader, from change-only reads', async () => {
    // Every member's cluster answer as the page reads it (this node's, and node-b's for the handover
    // column): after the first, it sends back the answer's rev and is sent nothing while unchanged.
    const reads: { origin: string; since: string | null; body: Record<string, unknown> | null }[] = [];
    const onResponse = async (r: Response) => {
      const u = new URL(r.url());
      if (u.pathname !== '/api/v1/cluster') return;
      const body = (await r.json().catch(() => null)) as Record<string, unknown> | null;
      reads.push({ origin: u.origin, since: u.searchParams.get('since'), body });
    };
    page.on('response', onResponse);
    try {
      const unchangedFrom = (url: string) =>
        reads.some((x) => x.origin === new URL(url).origin && x.since && x.body && !('groups' in x.body));
      await waitFor(
        'both nodes read change-only, unchanged',
        async () => unchangedFrom(urlA) && unchangedFrom(urlB),
      );
      // The page is on node-a; node-b gives one of its groups up: only node-b's API knows why.
      const group = [...cluster.leaders].find(([, l]) => l.leader === 'node-b')![0];
      b.leadership.relinquish(group, 'no unit accepted a write for 2.0 s (bound 2.0 s): test');
      const { leader, epoch } = cluster.leaders.get(group)!;
      expect(leader).toBe('node-a');
      const cell = page.locator(`#groups tr[data-group="${group}"] td.handover`);
      await waitFor('the handover shown', async () =>
        /handed on by node-b \d+ s ago: no unit accepted a write for 2\.0 s/.test(await cell.innerText()),
      );
      expect(await cell.getAttribute('class')).toContain('warn');
      expect(await cell.innerText()).toMatch(/^▲ handed on/);
      await waitFor('the new leader and epoch shown', async () =>
        new RegExp(`node-a\\s+${epoch}\\s+leader`).test(await text(`#groups tr[data-group="${group}"]`)),
      );
      // Each node told it with only that group.
      for (const url of [urlA, urlB])
        expect(
          reads.some(
            (x) =>
              x.origin === new URL(url).origin &&
              x.since &&
              Array.isArray(x.body?.groups) &&
              (x.body.groups as { id: string }[]).map((g) => g.id).join() === group,
          ),
          url,
        ).toBe(true);
    } finally {
      page.off('response', onResponse);
    }
    noProblems();
  });

  it('signs out: the session is refused on every node and the page asks to sign in again', async () => {
    const cookie = (await browser.context.cookies(urlA)).find((c) => c.name === 'coolctl_session')!;
    await page.click('#sign-out');
    await page.waitForSelector('#sign-in-form', { state: 'visible' });
    for (const url of [urlA, urlB]) {
      const r = await fetch(`${url}/api/v1/cluster`, {
        headers: { cookie: `coolctl_session=${cookie.value}` },
      });
      expect(r.status, url).toBe(401);
    }
    noProblems();
  });
});
