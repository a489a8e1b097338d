// The dashboard of a running cluster in Debian's chromium (playwright-core): a hall of real parts —
// etcd, the simulator (thermal model, sensor mesh over MQTT, units over Modbus), two controller
// processes. After the simulator's heat-load step the floor map shows hot racks (their colour on the
// fixed scale, their value and mark in text); a rack opens from the keyboard with its sensors and
// their trust; an alarm a fault raised (a unit tripped in the simulator) is acknowledged on one
// node's page and shows acknowledged on the other node's page. Screenshots of the map, the trends and the alarms go to
// test-results/screenshots/ (gitignored). Heavy: run it alone (flock /tmp/coolctl-heavy.lock).
import { mkdir } from 'node:fs/promises';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers.ts';
import {
  launchChromium,
  SCREENSHOTS_DIR,
  signInThroughForm,
  type TestBrowser,
  watchPage,
} from '../support/browser.ts';
import { Hall } from '../support/hall.ts';

/** Hall time runs this much faster: the heat step warms the racks in seconds, not minutes. */
const TIME_SCALE = 10;

let hall: Hall | undefined;
let browser: TestBrowser | undefined;
/** Page errors and console errors of either page: each fails the test. */
const problems: string[] = [];

async function openPage(url: string): Promise<Page> {
  // Before signing in, the page's one question (who am I?) is answered 401, as often as it asks.
  const page = await watchPage(await browser!.context.newPage(), problems, () => [/status of 401/], 15_000);
  await page.goto(`${url}/`);
  return page;
}

async function signIn(page: Page): Promise<void> {
  const admin = hall!.apiAdmin!;
  await signInThroughForm(page, admin.user, admin.password);
}

beforeAll(async () => {
  hall = await Hall.start({ name: 'ui', controllers: 2, groups: 2, airHandlers: 4, timeScale: TIME_SCALE });
  await mkdir(SCREENSHOTS_DIR, { recursive: true });
  browser = await launchChromium('ui-hall');
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await hall?.stopAll();
}, 60_000);

describe('the dashboard of a running hall', () => {
  let a: Page;
  /** The hot rack the map showed, and its group. */
  let hotId = '';
  let hotGroup = '';
  const text = (page: Page, selector: string) => page.locator(selector).innerText();

  it('colours the racks from the sensors, and a heat-load step shows hot racks in colour and text', async () => {
    const h = hall!;
    a = await openPage(h.apiUrl(h.nodes[0]!));
    await signIn(a);
    // Before the fault: racks with sensors show their inlet, in range.
    await waitFor(
      'racks with an inlet reading',
      async () => (await a.locator('#floor g.rack[data-level="ok"]').count()) > 0,
      { timeoutMs: 60_000 },
    );
    expect(
      await a.locator('#floor g.rack[data-level="warn"], #floor g.rack[data-level="crit"]').count(),
    ).toBe(0);
    await h.simFault({ fault: 'heat-load-step', rack: '*', factor: 2.5 });
    const hot = a.locator('#floor g.rack[data-level="warn"], #floor g.rack[data-level="crit"]').first();
    await waitFor('a hot rack on the map', async () => (await hot.count()) > 0, {
      timeoutMs: 240_000,
      intervalMs: 500,
    });
    hotId = (await hot.getAttribute('data-id'))!;
    hotGroup = (await hot.getAttribute('data-group'))!;
    const level = await hot.getAttribute('data-level');
    const label = (await hot.getAttribute('aria-label')) ?? '';
    const shown = (await hot.locator('.rack-temp').textContent()) ?? '';
    const fill = (await hot.locator('rect').getAttribute('fill')) ?? '';
    // Its text: the value and the mark of the limit it crossed.
    const c = Number.parseFloat(shown);
    expect(c).toBeGreaterThan(27);
    expect(shown).toContain(level === 'crit' ? '✖' : '▲');
    expect(label).toMatch(
      level === 'crit' ? /above the 32 °C allowable limit/ : /above the 27 °C recommended limit/,
    );
    // Its colour: the orange band above 27 °C (red above 32), never the grey of no data or the green of in range.
    const [r, g, b] = (fill.match(/\d+/g) ?? []).map(Number) as [number, number, number];
    if (level === 'crit') {
      expect(r).toBeGreaterThanOrEqual(127);
      expect(g).toBeLessThan(50);
    } else {
      expect(r).toBeGreaterThan(220);
      expect(g).toBeGreaterThan(70);
      expect(g).toBeLessThan(150);
    }
    expect(b).toBeLessThan(50);
    await a.locator('#floor-section').screenshot({ path: `${SCREENSHOTS_DIR}/hall-floor-map.png` });
    expect(problems).toEqual([]);
  }, 300_000);

  it('opens a rack from the keyboard with its sensors, values, ages and trust', async () => {
    const id = hotId;
    // The map is one Tab stop (docs/dashboard.md): from the last control before it, past the alarm
    // list (one stop) and the find box, the next Tab is on the map and the one after leaves it; the
    // find box takes the keyboard to one rack by its id.
    const activeId = () => a.evaluate<string>("document.activeElement?.getAttribute('data-id') ?? ''");
    const onMap = () =>
      a.evaluate<boolean>("Boolean(document.activeElement?.closest?.('#floor g.rack, #floor g.ahu'))");
    await a.locator('#alarm-shelve-for').focus();
    let presses = 0;
    while (presses < 6 && !(await onMap())) {
      await a.keyboard.press('Tab');
      presses++;
    }
    expect(await onMap()).toBe(true);
    await a.keyboard.press('Tab');
    expect(await onMap()).toBe(false);
    await a.locator('#find').focus();
    await a.keyboard.type(id);
    await a.keyboard.press('Enter');
    expect(await activeId()).toBe(id);
    await a.keyboard.press('Enter');
    await waitFor(
      'the rack’s sensors',
      async () => (await a.locator('#rack-details tr[data-sensor]').count()) > 0,
    );
    const panel = await text(a, '#rack-details');
    expect(panel).toMatch(new RegExp(`Rack ${id}`));
    // The heat step may already have made its sensors noisy: either way the panel says which to trust.
    expect(panel).toMatch(/Hottest good inlet: (\d+\.\d °C [▲✖] \(above the \d+ °C \w+ limit\)|no data)\. /);
    expect(panel).toMatch(/[✔◐✖] (trusted|partly trusted|not trusted): .* inlet sensors good/);
    // Every sensor shows a reading, its age and whether it is trusted. The panel is read again each
    // poll: a node whose report has not reached the answering leader yet fills in on a later one.
    const sensorRow = /\d+\.\d (°C|%RH|Pa)\s+\d+ s\s+(✔ good|✖ untrusted)/;
    const rows = await waitFor(
      'every sensor row with a reading, its age and its trust',
      async () => {
        const shown = await a.locator('#rack-details tr[data-sensor]').allInnerTexts();
        if (shown.length >= 4 && shown.every((r) => sensorRow.test(r))) return shown;
        throw new Error(`rows: ${JSON.stringify(shown)}`); // waitFor names the last on timeout
      },
      { timeoutMs: 20_000, intervalMs: 250 },
    );
    expect(rows.some((r) => /inlet-middle\s+\d+\.\d °C/.test(r))).toBe(true);
    expect(rows.some((r) => /humidity\s+\d+\.\d %RH/.test(r))).toBe(true);
    await a.locator('#floor-section').screenshot({ path: `${SCREENSHOTS_DIR}/hall-rack-details.png` });
    // The whole hall again for the tests after this one.
    await a.locator('#find').fill('');
    expect(problems).toEqual([]);
  });

  it('draws the hot group’s trends', async () => {
    const group = hotGroup;
    await a.selectOption('#trend-subject', `group:${group}`);
    const temp = a.locator('#trends figure[data-chart="temperature"]');
    await waitFor('the inlet line', async () =>
      /^M/.test((await temp.locator('path[data-series="inletMaxC"]').getAttribute('d')) ?? ''),
    );
    expect(await text(a, '#trends figure[data-chart="temperature"] .chart-key')).toMatch(
      /hottest inlet: \d+\.\d/,
    );
    const unit = hall!.groups[group!]![0]!;
    await a.selectOption('#trend-subject', `unit:${unit}`);
    await waitFor('the unit’s supply air, measured by its driver', async () =>
      /^M/.test((await temp.locator('path[data-series="supplyC"]').getAttribute('d')) ?? ''),
    );
    await a.locator('#trends-section').screenshot({ path: `${SCREENSHOTS_DIR}/hall-trends.png` });
    expect(problems).toEqual([]);
  });

  it('acknowledges an alarm a unit trip raised on one node’s page; the other node’s page shows it acknowledged', async () => {
    const h = hall!;
    await h.simFault({ fault: 'clear-all' });
    // A unit of a group the other node leads, if it leads one: that node raises the alarm.
    const { leaders } = await h.leaders();
    const [group] = [...leaders].find(([, l]) => l.node === h.nodes[1]) ?? [...leaders][0]!;
    const unit = h.groups[group]![0]!;
    await h.simFault({ fault: 'ahu-trip', ahu: unit });
    const raised = a.locator(`#alarms tr[data-kind="unit-tripped"][data-state="raised"]`).first();
    await waitFor(`the trip of ${unit} in the alarm list`, async () => (await raised.count()) > 0, {
      timeoutMs: 60_000,
      intervalMs: 500,
    }).catch(async (err: unknown) => {
      // Say what the page listed and what the nodes logged about alarms.
      const logs = (await h.logTails(400)).split('\n').filter((l) => /alarm/i.test(l));
      throw new Error(
        `${(err as Error).message}\n--- the page's alarms ---\n${await text(a, '#alarms-section')}\n--- alarm log lines ---\n${logs.slice(-40).join('\n')}`,
      );
    });
    const id = (await raised.getAttribute('data-alarm'))!;
    const row = a.locator(`#alarms tr[data-alarm="${id}"]`);
    expect(await row.locator('td.sev').innerText()).toMatch(/^[✖◆▲●] (critical|major|minor|warning)$/);
    expect(await row.locator('td.alarm-message').innerText()).toContain(unit);
    await a.fill('#alarm-comment', 'hall test: trip seen');
    await row.locator('button.ack').click();
    await waitFor(
      'acknowledged on this page',
      async () => (await row.getAttribute('data-state')) === 'acknowledged',
    );
    expect(await row.locator('td.alarm-ack').innerText()).toMatch(
      new RegExp(`by ${h.apiAdmin!.user} .* ago: “hall test: trip seen”`),
    );
    await a.locator('#alarms-section').screenshot({ path: `${SCREENSHOTS_DIR}/hall-alarms.png` });

    // The other node's page: the same session (the cookie is good on every node), the same alarm.
    const b = await openPage(h.apiUrl(h.nodes[1]!));
    if (await b.locator('#sign-in-form').isVisible()) await signIn(b);
    await b.waitForSelector('#main', { state: 'visible' });
    const there = b.locator(`#alarms tr[data-alarm="${id}"]`);
    await waitFor(
      'acknowledged on the other node’s page',
      async () => (await there.count()) > 0 && (await there.getAttribute('data-state')) === 'acknowledged',
    );
    expect(await there.locator('td.alarm-ack').innerText()).toMatch(/hall test: trip seen/);
    expect(await b.locator('#node-name').innerText()).toBe(h.nodes[1]);
    await b.locator('#alarms-section').screenshot({ path: `${SCREENSHOTS_DIR}/hall-alarms-other-node.png` });
    expect(problems).toEqual([]);
  }, 300_000);
});
