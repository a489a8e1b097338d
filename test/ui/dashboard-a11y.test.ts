// The dashboard for people who do not use a mouse or do not tell colours apart, at 1366×768 in a
// real browser (Debian's chromium) over two fake nodes: axe-core finds no serious or critical
// violation in any state of the page (signed out, every section drawn, alarms in every state, a
// rack open, an action under way, an error notice); every operator flow runs from the keyboard
// alone with the focus always visible and Escape closing what opened; every status carries words
// or a mark beside its colour; the legend's and the trends' labels neither overlap nor get clipped.
import { mkdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { Page, Route } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSite } from '../../src/config/load-site.ts';
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

// Evaluated through the devtools protocol: the page's CSP (scripts from the node only) rightly
// refuses an added <script>.
const AXE = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const site = await loadSite('config/demo-site.yaml');

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[] }[];
}

describe('dashboard for keyboard users and without colour', () => {
  const written: UnitWrite[] = [];
  const cluster = new FakeCluster(DEMO_TWO_NODES);
  let a: FakeNode;
  let b: FakeNode;
  let urlA: string;
  let browser: TestBrowser;
  let page: Page;
  const problems: string[] = [];
  let expected: RegExp[] = [];
  /** Per path, the next answers bent into an error (each used once). */
  const bent = new Map<string, number>();

  beforeAll(async () => {
    a = await fakeNode(cluster, 'node-a', site, written);
    b = await fakeNode(cluster, 'node-b', site, written);
    urlA = await a.app.listen({ host: '127.0.0.1', port: 0 });
    const urlB = await b.app.listen({ host: '127.0.0.1', port: 0 });
    cluster.members.push(
      { node: 'node-a', apiUrl: urlA, startedAtMs: 1 },
      { node: 'node-b', apiUrl: urlB, startedAtMs: 2 },
    );
    await mkdir(SCREENSHOTS_DIR, { recursive: true });
    browser = await launchChromium('ui-a11y');
    page = await watchPage(await browser.context.newPage(), problems, () => expected, 10_000);
    await page.route('**/*', async (route: Route) => {
      const path = new URL(route.request().url()).pathname;
      const n = bent.get(path) ?? 0;
      if (n <= 0) return route.continue();
      bent.set(path, n - 1);
      return route.fulfill({
        status: 503,
        contentType: 'application/json',
        body: JSON.stringify({ error: 'COOLCTL_E_UNAVAILABLE', message: 'etcd is away' }),
      });
    });
    expected = [/status of 401/];
    await page.goto(`${urlA}/`);
    await page.waitForSelector('#sign-in-form', { state: 'visible' });
  });

  afterAll(async () => {
    await browser?.close();
    await a?.close();
    await b?.close();
  });

  const text = (selector: string) => page.locator(selector).innerText();
  // Code that runs in the page is a string: this file has no DOM types.
  const active = () =>
    page.evaluate<string>(
      "(e => e ? e.tagName.toLowerCase() + '#' + e.id + '.' + (e.getAttribute('class') ?? '') : '')(document.activeElement)",
    );

  /** axe-core's serious and critical findings on the page as it is now. */
  async function axe(state: string): Promise<void> {
    if (!(await page.evaluate<boolean>("'axe' in window"))) await page.evaluate(`${AXE}\n;0`);
    const found = await page.evaluate<AxeViolation[]>(
      "axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } }).then((r) => r.violations)",
    );
    const bad = found
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map(
        (v) =>
          `${state}: ${v.id} (${v.impact}) ${v.help}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`,
      );
    expect(bad).toEqual([]);
  }

  /** Where the focus is, and whether it shows: an outline of 2 px or more, or the map's thick frame. */
  const FOCUS_PROBE = `(sel) => {
    const e = document.activeElement;
    if (!e || e === document.body) return { match: false, visible: true, what: 'body' };
    const s = getComputedStyle(e);
    const box = e.querySelector('.rack-box, .ahu-box');
    const frame = box ? Number.parseFloat(getComputedStyle(box).strokeWidth) >= 0.1 : false;
    const visible = (s.outlineStyle !== 'none' && Number.parseFloat(s.outlineWidth) >= 2) || frame;
    return { match: e.matches(sel), visible, what: e.tagName + '#' + e.id + '.' + e.getAttribute('class') };
  }`;

  /**
   * Presses Tab (or Shift+Tab) until the focus is on `selector`, at most `max` times; at each stop
   * the focused element must show a focus frame (an outline, or the map's thick stroke).
   */
  async function tabTo(selector: string, { back = false, max = 120 } = {}): Promise<void> {
    for (let i = 0; i < max; i++) {
      await page.keyboard.press(back ? 'Shift+Tab' : 'Tab');
      const at = await page.evaluate<{ match: boolean; visible: boolean; what: string }>(
        `(${FOCUS_PROBE})(${JSON.stringify(selector)})`,
      );
      expect(at.visible, `focus visible on ${at.what}`).toBe(true);
      if (at.match) return;
    }
    throw new Error(`${selector} not reached with ${max} presses of Tab (focus on ${await active()})`);
  }

  /**
   * Tabs into the alarm list (a grid: one Tab stop), then walks it with the arrow keys to `selector`
   * in `alarm`'s row: down the rows from the first, then right along the row from its first cell.
   * The focus must show at every step.
   */
  async function gridTo(alarm: string, selector: string): Promise<void> {
    await tabTo('#alarms tbody [tabindex="0"]');
    const at = async (sel: string) => {
      const probe = await page.evaluate<{ match: boolean; visible: boolean; what: string }>(
        `(${FOCUS_PROBE})(${JSON.stringify(sel)})`,
      );
      expect(probe.visible, `focus visible on ${probe.what}`).toBe(true);
      return probe.match;
    };
    await page.keyboard.press('Control+Home');
    const row = `#alarms tr[data-alarm="${alarm}"]`;
    for (let i = 0; i < 20 && !(await at(`${row} *`)); i++) await page.keyboard.press('ArrowDown');
    await page.keyboard.press('Home');
    for (let i = 0; i < 10 && !(await at(`${row} ${selector}`)); i++) await page.keyboard.press('ArrowRight');
    expect(await at(`${row} ${selector}`), `${row} ${selector} (focus on ${await active()})`).toBe(true);
  }

  it('signs in from the keyboard; the sign-in form has no serious finding', async () => {
    await axe('signed out');
    expect(await page.getAttribute('html', 'lang')).toBe('en');
    await tabTo('#sign-in-name');
    await page.keyboard.type('operator');
    await page.keyboard.press('Tab');
    expect(await active()).toMatch(/#sign-in-password/);
    await page.keyboard.type('a wrong password');
    expected.push(/status of 401/);
    await page.keyboard.press('Enter');
    await waitFor('the refusal said', async () => /not signed in/.test(await text('#sign-in-result')));
    expect(await page.getAttribute('#sign-in-result', 'role')).toBe('status');
    await page.focus('#sign-in-password');
    await page.keyboard.type(TEST_PASSWORD);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#main', { state: 'visible' });
    await waitFor(
      'every group driven',
      async () =>
        (await page.locator('#groups tbody tr').allInnerTexts()).every((t) => /\byes\b/.test(t)) &&
        (await page.locator('#groups tbody tr').count()) === 4,
    );
    await waitFor('trends drawn', async () => (await page.locator('#trends svg.chart').count()) === 2);
    await waitFor('energy drawn', async () => (await page.locator('#energy-chart svg').count()) === 1);
    await axe('signed in, every section drawn');
    expect(problems).toEqual([]);
  });

  /** Picks `value` in the focused <select> with the arrow keys, as a keyboard user would. */
  async function choose(value: string): Promise<void> {
    for (let i = 0; i < 40; i++) await page.keyboard.press('ArrowUp');
    for (let i = 0; i < 40; i++) {
      if ((await page.evaluate<string>('document.activeElement.value')) === value) return;
      await page.keyboard.press('ArrowDown');
    }
    throw new Error(`option ${value} not reached`);
  }

  it('opens a rack from the keyboard, reads it, and Escape closes it; racks say their level in words and marks', async () => {
    // Every level of the page's own scale at once: node-a's racks from cold to above allowable.
    const temps = [12, 18, 22.5, 26.9, 27.5, 31, 32.5, 34, 36, null];
    // Every read whole, and without `rev`: the page then asks as it would an older member, never
    // for changes only, so each answer it gets is this test's.
    await page.route('**/api/v1/site/live**', async (route) => {
      const r = await route.fetch({ url: route.request().url().replace(/\?.*$/, '') });
      const body = await r.json();
      delete body.rev;
      delete body.since;
      if (body.node === 'node-a') {
        body.rackInletsKnown = true;
        Object.keys(body.racks).forEach((id, i) => {
          body.racks[id] = temps[i % temps.length] ?? null;
        });
      }
      await route.fulfill({ response: r, json: body });
    });
    await waitFor(
      'the racks coloured',
      async () => (await page.locator('#floor g.rack[data-level="crit"]').count()) > 0,
    );
    const racks = await page.evaluate<{ level: string; text: string; label: string; contrast: number }[]>(`
      [...document.querySelectorAll('#floor g.rack')].map((g) => {
        const lum = (c) => {
          const [r, gr, b] = (c.match(/\\d+/g) ?? []).map(Number).map((v) => {
            const x = v / 255;
            return x <= 0.04045 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4;
          });
          return 0.2126 * r + 0.7152 * gr + 0.0722 * b;
        };
        const temp = g.querySelector('.rack-temp');
        const [l1, l2] = [lum(getComputedStyle(g.querySelector('rect')).fill), lum(getComputedStyle(temp).fill)].sort((x, y) => y - x);
        return {
          level: g.getAttribute('data-level'),
          text: temp.textContent.trim(),
          label: g.getAttribute('aria-label'),
          contrast: (l1 + 0.05) / (l2 + 0.05),
        };
      })`);
    const marks: Record<string, RegExp | undefined> = {
      cold: /▼/,
      ok: /^\d+\.\d$/,
      warn: /▲/,
      crit: /✖/,
      none: /\?/,
    };
    const words: Record<string, RegExp | undefined> = {
      cold: /below the 18 °C/,
      ok: /in the recommended range/,
      warn: /above the 27 °C/,
      crit: /above the 32 °C/,
      none: /no data/,
    };
    for (const r of racks) {
      expect(r.text, r.label).toMatch(marks[r.level] ?? /never/);
      expect(r.label).toMatch(words[r.level] ?? /never/);
      // The value on the rack reads against the rack's colour (WCAG AA, 4.5:1) all along the scale.
      expect(r.contrast, `${r.label}: ${r.text}`).toBeGreaterThanOrEqual(4.5);
    }
    expect(new Set(racks.map((r) => r.level))).toEqual(new Set(['cold', 'ok', 'warn', 'crit', 'none']));

    await page.focus('#alarm-shelve-for');
    await tabTo('#floor g.rack');
    const id = await page.evaluate<string>("document.activeElement.getAttribute('data-id')");
    await page.keyboard.press('Enter');
    await waitFor('the rack’s panel', async () => (await text('#rack-details h3')).startsWith(`Rack ${id}`));
    expect(await text('#rack-status')).toMatch(new RegExp(`Rack ${id} opened.*Escape closes it`));
    await waitFor(
      'its sensors',
      async () => (await page.locator('#rack-details tr[data-sensor]').count()) > 0,
    );
    await axe('a rack open');
    await page.screenshot({
      path: `${SCREENSHOTS_DIR}/a11y-map.png`,
      clip: (await page.locator('#floor-section').boundingBox()) ?? undefined,
    });
    await page.keyboard.press('Escape');
    await waitFor('the panel closed', async () => (await page.locator('#rack-details h3').count()) === 0);
    expect(await page.evaluate<string>("document.activeElement.getAttribute('data-id')")).toBe(id);
    // An air handler says its state in words and a mark.
    expect(await page.locator('#floor g.ahu[data-id="AHU-01"] .ahu-state').textContent()).toMatch(
      /^[●▲✖▽○?] \w/,
    );
    await page.unroute('**/api/v1/site/live**');
    expect(problems).toEqual([]);
  });

  it('acknowledges an alarm with a comment and shelves another, from the keyboard', async () => {
    const fresh = cluster.alarms.raise(
      'inlet-recommended',
      'zone-1',
      'RA-03',
      'RA-03 inlet 28.4 °C above 27 °C',
      { value: 28.4 },
    );
    const other = cluster.alarms.raise('unit-fallback', 'zone-3', 'AHU-05', 'AHU-05 on fallback', {});
    const acked = cluster.alarms.raise(
      'inlet-allowable',
      'zone-2',
      'RA-09',
      'RA-09 inlet 33 °C above 32 °C',
      { value: 33 },
    );
    await cluster.alarms.acknowledge(acked, 'operator', 'on it');
    const shelved = cluster.alarms.raise(
      'sensors-degraded',
      'zone-4',
      'zone-4',
      'zone-4 sensors degraded',
      {},
    );
    await cluster.alarms.shelve(shelved, 'operator', 3600, 'known');
    await waitFor(
      'four alarms listed',
      async () => (await page.locator('#alarms tr[data-alarm]').count()) === 4,
    );
    await axe('alarms active, acknowledged and shelved');
    for (const sev of await page.locator('#alarms td.sev').allInnerTexts())
      expect(sev).toMatch(/^[✖◆▲●] [a-z]+$/);

    await page.focus('#alarms-all');
    await tabTo('#alarm-comment');
    await page.keyboard.type('facilities on it');
    await gridTo(fresh, 'button.ack');
    await page.keyboard.press('Enter');
    const row = page.locator(`#alarms tr[data-alarm="${fresh}"]`);
    await waitFor('acknowledged', async () => (await row.getAttribute('data-state')) === 'acknowledged');
    expect(await row.locator('td.alarm-ack').innerText()).toMatch(/“facilities on it”/);
    // The focus stays on the row across its redraw: Shift+Tab comes back to it, Tab on to the next.
    await page.focus('#alarm-shelve-for');
    await gridTo(other, 'button.shelve');
    await page.keyboard.press('Enter');
    await waitFor('shelved', async () =>
      /shelved until/.test(
        await page.locator(`#alarms tr[data-alarm="${other}"] td.alarm-state`).innerText(),
      ),
    );
    expect(await text('#alarm-result')).toMatch(/shelve .*: done/);
    await page.screenshot({
      path: `${SCREENSHOTS_DIR}/a11y-alarms.png`,
      clip: (await page.locator('#alarms-section').boundingBox()) ?? undefined,
    });
    expect(problems).toEqual([]);
  });

  it('pauses and resumes a group, sets and clears an override and switches over, from the keyboard', async () => {
    await page.focus('#trend-day');
    await tabTo('#cmd-target');
    await choose('zone-1/AHU-01');
    await tabTo('#cmd-fan');
    await page.keyboard.type('40');
    await page.keyboard.press('Enter');
    await waitFor('the override set', async () => /done/.test(await text('#action-result')));
    await waitFor('held by the unit', async () =>
      /40\.0/.test(await text('#units tr[data-ahu="AHU-01"] td.held-fan')),
    );
    await axe('an action done');
    await tabTo('#cmd-clear');
    await page.keyboard.press('Enter');
    await waitFor('the override cleared', async () =>
      /clear override of AHU-01: done/.test(await text('#action-result')),
    );

    await tabTo('#pause-group');
    await choose('zone-2');
    await tabTo('#pause-reason');
    await page.keyboard.type('filter change');
    await page.keyboard.press('Enter');
    await waitFor('paused', async () => cluster.operators.get('zone-2')?.paused === true);
    await waitFor('said beside the group', async () =>
      /⏸ paused \(filter change\)/.test(await text('#groups tr[data-group="zone-2"]')),
    );
    await tabTo('#resume-send');
    await page.keyboard.press('Enter');
    await waitFor('resumed', async () => cluster.operators.get('zone-2')?.paused === false);

    await tabTo('#sw-group');
    await choose('zone-4');
    await tabTo('#sw-to');
    await choose('node-a');
    await tabTo('#sw-send');
    await page.keyboard.press('Enter');
    await waitFor('switched over', async () =>
      /switchover of zone-4 to node-a: done/.test(await text('#action-result')),
    );
    expect(cluster.leaders.get('zone-4')?.leader).toBe('node-a');
    expect(problems).toEqual([]);
  });

  it('names an error in a live notice, which passes axe', async () => {
    // The cluster answers 503 until the test lets it go (each poll's error is expected on the console).
    expected = Array.from({ length: 100 }, () => /status of 503/);
    bent.set('/api/v1/cluster', 100);
    await waitFor('the notice', async () => /cluster.*503/.test(await text('#notices')));
    expect(await page.getAttribute('#notices', 'aria-live')).toBe('polite');
    // A live region redrawn at every poll would be read out again every 1.5 s: the same words stay put.
    // Marked in the same turn as it is found: the notice's words matched a moment ago, but a poll
    // may be redrawing the list right now.
    await waitFor('the notice marked', () =>
      page.evaluate<boolean>(`(() => {
        const li = [...document.querySelectorAll('#notices li')].find((e) => /cluster.*503/.test(e.textContent));
        if (li) li.dataset.seen = '1';
        return Boolean(li);
      })()`),
    );
    const polls = async () => Number(await page.evaluate<string>('document.body.dataset.polls'));
    const at = await polls();
    await waitFor('two more polls', async () => (await polls()) > at + 1);
    expect(await text('#notices')).toMatch(/cluster.*503/);
    expect(await page.locator('#notices li[data-seen]').count()).toBe(1);
    await axe('an error notice shown');
    bent.set('/api/v1/cluster', 0);
    await waitFor('the notice gone', async () => !/503/.test(await text('#notices')));
    expected = [];
    expect(problems).toEqual([]);
  });

  it('keeps the legend’s and the trends’ labels apart and inside their charts at 1366×768', async () => {
    expect(page.viewportSize()).toEqual({ width: 1366, height: 768 });
    type Box = { t: string; x: number; y: number; w: number; h: number };
    const boxes = await page.evaluate<{ where: string; texts: Box[]; svg: Box }[]>(`
      [...document.querySelectorAll('#floor-legend svg.scale, #trends svg.chart, #energy-chart svg')].map((svg) => {
        const box = (e) => {
          const b = e.getBoundingClientRect();
          return { t: e.textContent ?? '', x: b.x, y: b.y, w: b.width, h: b.height };
        };
        return {
          where: svg.getAttribute('aria-label') ?? svg.getAttribute('class') ?? '',
          svg: box(svg),
          texts: [...svg.querySelectorAll('text')].map(box),
        };
      })`);
    expect(boxes.length).toBeGreaterThanOrEqual(4);
    const clash: string[] = [];
    for (const { where, svg, texts } of boxes) {
      for (const t of texts) {
        if (t.w === 0) continue;
        if (
          t.x < svg.x - 0.5 ||
          t.y < svg.y - 0.5 ||
          t.x + t.w > svg.x + svg.w + 0.5 ||
          t.y + t.h > svg.y + svg.h + 0.5
        )
          clash.push(`${where}: "${t.t}" clipped`);
        // Readable: at least 9 px high on the screen.
        if (t.h < 9) clash.push(`${where}: "${t.t}" ${t.h.toFixed(1)} px high`);
      }
      for (const [i, p] of texts.entries())
        for (const q of texts.slice(i + 1)) {
          const ox = Math.min(p.x + p.w, q.x + q.w) - Math.max(p.x, q.x);
          const oy = Math.min(p.y + p.h, q.y + q.h) - Math.max(p.y, q.y);
          if (ox > 1 && oy > 1) clash.push(`${where}: "${p.t}" overlaps "${q.t}"`);
        }
    }
    expect(clash).toEqual([]);
    await page.screenshot({
      path: `${SCREENSHOTS_DIR}/a11y-trends.png`,
      clip: (await page.locator('#trends-section').boundingBox()) ?? undefined,
    });
    expect(problems).toEqual([]);
  });

  it('signs out from the keyboard', async () => {
    await page.focus('#alarms-active');
    await tabTo('#sign-out', { back: true });
    await page.keyboard.press('Enter');
    await page.waitForSelector('#sign-in-form', { state: 'visible' });
    expect(await text('#sign-in-result')).toBe('signed out');
    await axe('signed out again');
    expect(problems).toEqual([]);
  });
});
