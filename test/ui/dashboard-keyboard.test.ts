// The dashboard for an operator on call with the keyboard alone, with a full alarm list (250
// raised: 200 listed) in a real browser (Debian's chromium) over one fake node: the first Tab
// stop is a skip link to each section, so the floor map is a few presses from the top (and is
// itself one Tab stop); the alarm list is one Tab stop (a WAI-ARIA grid) whose arrow keys reach
// every row's buttons; an alarm is acknowledged with Enter; and the focus stays on the same
// alarm's cell when the list is redrawn, whether the alarm moved, lost its button (acknowledged by
// someone else) or left the list.
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSite } from '../../src/config/load-site.ts';
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

const site = await loadSite('config/demo-site.yaml');
/** More than the page lists (200): the list is as long as it gets. */
const ALARMS = 250;

describe('dashboard from the keyboard, with a full alarm list', () => {
  const written: UnitWrite[] = [];
  const cluster = new FakeCluster(DEMO_ONE_NODE);
  let a: FakeNode;
  let url: string;
  let browser: TestBrowser;
  let page: Page;
  const problems: string[] = [];
  let expected: RegExp[] = [];

  beforeAll(async () => {
    // Oldest first: the page lists the newest first, so RA-249 heads the list.
    for (let i = 0; i < ALARMS; i++)
      cluster.alarms.raise('inlet-recommended', 'zone-1', `RA-${i}`, `RA-${i} inlet above 27 °C`, {
        value: 28,
        atMs: Date.now() - (ALARMS - i) * 1000,
      });
    a = await fakeNode(cluster, 'node-a', site, written);
    url = await a.app.listen({ host: '127.0.0.1', port: 0 });
    cluster.members.push({ node: 'node-a', apiUrl: url, startedAtMs: 1 });
    browser = await launchChromium('ui-keyboard');
    page = await watchPage(await browser.context.newPage(), problems, () => expected, 20_000);
    expected = [/status of 401/];
    await page.goto(`${url}/`);
    await signInThroughForm(page, 'operator', TEST_PASSWORD);
    await waitFor(
      '200 alarms listed',
      async () => (await page.locator('#alarms tr[data-alarm]').count()) === 200,
    );
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await a?.close();
  });

  const polls = () => pollsDrawn(page);
  /** Waits until the page has drawn `n` more polls. */
  const redrawn = async (n = 1) => {
    const at = await polls();
    await waitFor(`${n} more polls`, async () => (await polls()) >= at + n);
  };
  /** Where the focus is: the alarm row it is in, its cell's column, the button if on one. */
  const focus = () =>
    page.evaluate<{ alarm: string | null; col: number; button: string | null; what: string }>(`(() => {
      const e = document.activeElement;
      return {
        alarm: e.closest('tr[data-alarm]')?.getAttribute('data-alarm') ?? null,
        col: e.closest('td')?.cellIndex ?? -1,
        button: e.tagName === 'BUTTON' ? e.className : null,
        what: e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + ' ' + (e.textContent ?? '').slice(0, 40),
      };
    })()`);
  /** Presses Tab until `selector` has the focus; how many presses it took (throws past `max`). */
  async function tabTo(selector: string, max: number): Promise<number> {
    for (let i = 1; i <= max; i++) {
      await page.keyboard.press('Tab');
      if (await page.evaluate<boolean>(`document.activeElement.matches(${JSON.stringify(selector)})`))
        return i;
    }
    throw new Error(`${selector} not reached with ${max} presses of Tab (focus on ${(await focus()).what})`);
  }
  /** The page as just opened by an operator already signed in: the focus at the top. */
  async function fromTheTop(): Promise<void> {
    await page.reload();
    await page.waitForSelector('#main', { state: 'visible' });
    await waitFor(
      '200 alarms listed',
      async () => (await page.locator('#alarms tr[data-alarm]').count()) === 200,
    );
  }

  it('reaches the floor map (its find box, then its racks) from the top in a few Tab presses, by a skip link shown on focus', async () => {
    await fromTheTop();
    expect(await tabTo('#skip a', 1)).toBe(1);
    // Visible while it has the focus (an operator who does not use a screen reader sees it).
    const box = await page.locator('#skip a').first().boundingBox();
    expect(box?.width).toBeGreaterThan(20);
    expect(await page.evaluate<string>("getComputedStyle(document.getElementById('skip')).clipPath")).toBe(
      'none',
    );
    const presses = 1 + (await tabTo('#skip a[href="#floor-section"]', 3));
    await page.keyboard.press('Enter');
    expect((await focus()).what).toMatch(/^h2 Floor map/);
    // The map's first stop is its find box (one unit among 1 000), its first rack the next.
    await tabTo('#find', 1);
    expect(presses + 1).toBeLessThanOrEqual(4);
    await tabTo('#floor g.rack', 1);
    // The map is one Tab stop (its arrow keys move within it): the next Tab leaves it.
    await tabTo('#map-zoom-in', 1);
    expect(problems).toEqual([]);
  });

  it('gives every section a skip link, a landmark and a heading', async () => {
    const links = await page
      .locator('#skip a')
      .evaluateAll((as) => as.map((x) => x.getAttribute('href') ?? ''));
    expect(links).toEqual([
      '#alarms-section',
      '#floor-section',
      '#groups-section',
      '#units-section',
      '#trends-section',
      '#energy-section',
      '#actions-section',
      '#audit-section',
    ]);
    // Every section of the page has its link: none added without one.
    expect(await page.locator('#main > section').evaluateAll((ss) => ss.map((x) => `#${x.id}`))).toEqual(
      links,
    );
    for (const href of links) {
      const section = page.locator(href);
      // A region landmark: a <section> with a name, and that name is its heading's.
      const name = await page.evaluate<string>(
        `document.getElementById(document.querySelector('${href}').getAttribute('aria-labelledby'))?.textContent ?? ''`,
      );
      expect(name, href).not.toBe('');
      expect(await section.locator('h2').innerText(), href).toContain(name);
      await page.focus(`#skip a[href="${href}"]`);
      await page.keyboard.press('Enter');
      expect(
        await page.evaluate<boolean>(`document.activeElement === document.querySelector('${href} h2')`),
        `${href}: focus on ${(await focus()).what}`,
      ).toBe(true);
    }
    expect(problems).toEqual([]);
  });

  it('takes one Tab stop for the whole alarm list, and acknowledges an alarm with the arrow keys and Enter', async () => {
    await fromTheTop();
    await tabTo('#skip a[href="#alarms-section"]', 1);
    await page.keyboard.press('Enter');
    await tabTo('#alarms tbody *', 6);
    // Tab again: out of the list, onto the floor map, past 200 rows of buttons.
    await page.keyboard.press('Tab');
    expect((await focus()).alarm).toBeNull();
    await page.keyboard.press('Shift+Tab');
    const first = await focus();
    expect(first.alarm).toBe(await page.locator('#alarms tr[data-alarm]').first().getAttribute('data-alarm'));
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('End');
    await page.keyboard.press('ArrowLeft');
    const on = await focus();
    expect(on.button).toBe('ack');
    const third = await page.locator('#alarms tr[data-alarm]').nth(2).getAttribute('data-alarm');
    expect(on.alarm).toBe(third);
    await page.keyboard.press('Enter');
    const row = page.locator(`#alarms tr[data-alarm="${third}"]`);
    await waitFor('acknowledged', async () => (await row.getAttribute('data-state')) === 'acknowledged');
    expect(await row.locator('td.alarm-ack').innerText()).toMatch(/^by operator/);
    expect(cluster.alarms.records.get(third ?? '')?.ack?.user).toBe('operator');
    // Its button gone, the focus stays in its cell; Right reaches its Shelve button.
    expect(await focus()).toMatchObject({ alarm: third, col: on.col, button: null });
    await page.keyboard.press('ArrowRight');
    expect(await focus()).toMatchObject({ alarm: third, button: 'shelve' });
    // Page Down and Ctrl+End reach the rows far down the list without 200 presses.
    await page.keyboard.press('PageDown');
    expect((await focus()).alarm).toBe(
      await page.locator('#alarms tr[data-alarm]').nth(12).getAttribute('data-alarm'),
    );
    await page.keyboard.press('Control+End');
    expect((await focus()).what).toMatch(/^td 50 more alarms not listed/);
    expect(problems).toEqual([]);
  });

  it('keeps the focus on the same alarm across live redraws: moved, acknowledged elsewhere, cleared', async () => {
    await page.keyboard.press('Control+Home');
    for (let i = 0; i < 4; i++) await page.keyboard.press('ArrowDown');
    await page.keyboard.press('End');
    const moved = await focus();
    expect(moved.button).toBe('shelve');
    // A new alarm heads the list: every row moves down one, the focused one with them.
    cluster.alarms.raise('unit-tripped', 'zone-2', 'AHU-03', 'AHU-03 tripped', {});
    await waitFor('the new alarm listed', async () =>
      /AHU-03 tripped/.test(await page.locator('#alarms tr[data-alarm]').first().innerText()),
    );
    await redrawn();
    expect(await focus()).toEqual(moved);

    // Another operator acknowledges it on another node while its Acknowledge button has the focus.
    await page.keyboard.press('ArrowLeft');
    const acking = await focus();
    expect(acking.button).toBe('ack');
    await cluster.alarms.acknowledge(acking.alarm ?? '', 'someone-else', 'seen');
    const row = page.locator(`#alarms tr[data-alarm="${acking.alarm}"]`);
    await waitFor(
      'acknowledged elsewhere',
      async () => (await row.getAttribute('data-state')) === 'acknowledged',
    );
    await redrawn();
    expect(await focus()).toMatchObject({ alarm: acking.alarm, col: acking.col, button: null });

    // It clears and leaves the active list: the focus goes to the alarm that takes its row.
    const index = await page.evaluate<number>(
      `document.querySelector('#alarms tr[data-alarm="${acking.alarm}"]').sectionRowIndex`,
    );
    cluster.alarms.clear(acking.alarm ?? '');
    await waitFor('gone from the list', async () => (await row.count()) === 0);
    await redrawn();
    const next = await page.locator('#alarms tbody tr').nth(index).getAttribute('data-alarm');
    expect(await focus()).toMatchObject({ alarm: next, col: acking.col, button: 'ack' });
    expect(problems).toEqual([]);
  });
});
