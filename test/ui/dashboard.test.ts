// The dashboard in a real browser (Debian's chromium, driven by playwright-core): two controller
// nodes over fakes listen on loopback; the page opened on node-a asks to sign in, then shows the
// site's floor map and the groups' leaders, and an operator's command and switchover typed into it
// reach the unit, the leadership and the audit trail under the signed-in user, across nodes too (the
// session cookie is good on every node). Any page error or console error fails the test.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSite } from '../../src/config/load-site.ts';
import { FAN_RANGE_PCT, SUPPLY_SETPOINT_RANGE_C } from '../../src/devices/unit-contract.ts';
import { waitFor } from '../helpers.ts';
import { TEST_PASSWORD } from '../support/api-auth.ts';
import { FakeCluster, type FakeNode, fakeNode, type UnitWrite } from '../support/fake-cluster.ts';

const CHROMIUM = '/usr/bin/chromium';
const site = await loadSite('config/demo-site.yaml');

describe('operator dashboard in a browser', () => {
  const written: UnitWrite[] = [];
  const cluster = new FakeCluster({
    'zone-1': ['node-a', 41],
    'zone-2': ['node-a', 42],
    'zone-3': ['node-b', 57],
    'zone-4': ['node-b', 58],
  });
  let a: FakeNode;
  let b: FakeNode;
  let urlA: string;
  let urlB: string;
  let profile: string;
  let browser: BrowserContext;
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
    profile = await mkdtemp(join(tmpdir(), 'coolctl-ui-'));
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      timeout: 30_000,
    });
    page = browser.pages()[0] ?? (await browser.newPage());
    page.setDefaultTimeout(10_000);
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      const i = expected.findIndex((re) => re.test(msg.text()));
      if (i >= 0) expected.splice(i, 1);
      else problems.push(`console error: ${msg.text()} (${msg.location().url})`);
    });
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
    const cookie = (await browser.cookies(urlA)).find((c) => c.name === 'coolctl_session');
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    expect(expected).toEqual([]);
  });

  afterAll(async () => {
    await browser?.close();
    await a?.close();
    await b?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
  });

  const text = (selector: string) => page.locator(selector).innerText();
  const noProblems = () => expect(problems).toEqual([]);

  it('shows the floor map with the site’s racks and air handlers', async () => {
    await waitFor('the floor map drawn', async () => (await page.locator('#floor rect.rack').count()) > 0);
    expect(await page.locator('#floor rect.rack').count()).toBe(site.racks.length);
    expect(await page.locator('#floor rect.ahu').count()).toBe(site.airHandlers.length);
    const ids = await page
      .locator('#floor rect.ahu')
      .evaluateAll((els) => els.map((e) => e.getAttribute('data-id')));
    expect(ids.sort()).toEqual(site.airHandlers.map((x) => x.id).sort());
    expect(await text('#site-name')).toBe(site.site.name);
    await waitFor('the legend says rack inlets have no data', async () =>
      /Rack inlets: no data/.test(await text('#floor-legend')),
    );
    expect(await page.locator('#floor rect.rack[data-id="RA-01"] title').textContent()).toMatch(/no data/);
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
      /AHU-01\s+zone-1\s+node-a\s+50\.0\s+18\.0/.test(await text('#units tr[data-ahu="AHU-01"]')),
    );
    await waitFor('no alarms', async () => (await text('#alarms')) === 'no alarms');
    expect(await text('#node-name')).toBe('node-a');
    expect(await text('#ready')).toBe('ready');
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
    await page.route(`${urlA}/api/v1/cluster`, async (route) => {
      const res = await route.fetch();
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

  it('draws trends and raises an alarm when a group loses its leader', async () => {
    await waitFor(
      'a zone-1 fan trend',
      async () => /zone-1: fan \d/.test(await text('#trends .trend[data-group="zone-1"]')),
      { timeoutMs: 15_000 },
    );
    expect(await page.locator('#trends .trend[data-group="zone-1"] path.fan').getAttribute('d')).toMatch(
      /^M/,
    );
    cluster.move('zone-4', null, 'test: leader lost');
    await waitFor('the no-leader alarm', async () => /zone-4: no leader/.test(await text('#alarms')));
    noProblems();
  });

  it('says next to the group why another node handed it on', async () => {
    // The page is on node-a; node-b gives one of its groups up: only node-b's API knows why.
    const group = [...cluster.leaders].find(([, l]) => l.leader === 'node-b')![0];
    b.leadership.relinquish(group, 'no unit accepted a write for 2.0 s (bound 2.0 s): test');
    const cell = page.locator(`#groups tr[data-group="${group}"] td.handover`);
    await waitFor('the handover shown', async () =>
      /handed on by node-b \d+ s ago: no unit accepted a write for 2\.0 s/.test(await cell.innerText()),
    );
    expect(await cell.getAttribute('class')).toContain('warn');
    expect(await text('#alarms')).toMatch(new RegExp(`${group}: handed on by node-b`));
    noProblems();
  });

  it('signs out: the session is refused on every node and the page asks to sign in again', async () => {
    const cookie = (await browser.cookies(urlA)).find((c) => c.name === 'coolctl_session')!;
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
