// The dashboard on a site larger than the demo (22 groups, 220 units, 440 racks; one node leads
// all), in a real browser: a refresh reads the leader's group views in one request, not one per
// group; a poll that brings no change leaves the map's racks and units and the unit rows as they
// are (no DOM rewritten); the unit list is bounded and says how many it left out; and one unit is
// found from the keyboard by its id, the map zoomed to it and the tables listing only it; the map
// is one Tab stop whose arrow keys go to the item drawn that way, and it zooms and pans.
// The full-size figures (1 000 units, 5 000 racks) are bench/dashboard.ts's, not a timed test's.
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { waitFor } from '../helpers.ts';
import { TEST_PASSWORD } from '../support/api-auth.ts';
import {
  launchChromium,
  pollsDrawn,
  signInThroughForm,
  type TestBrowser,
  watchPage,
} from '../support/browser.ts';
import { FakeCluster, type FakeNode, fakeNode, type UnitWrite } from '../support/fake-cluster.ts';

const GROUPS = 22;
const site = generateSite({
  ...demoShape,
  id: 'size-hall',
  name: 'Size hall',
  airHandlers: GROUPS * 10,
  sensorNodes: GROUPS * 20,
  controlGroups: GROUPS,
  racksPerAirHandler: 2,
  opcuaShare: 0,
  modbusBasePort: 0,
  seed: 1,
});

/** Every sensor node reports its inlets at 22 °C (a rack of `hot`: its figure), 45 %RH, every 2 s. */
const store = new SensorStore(site);
const hot: Record<string, number> = {};
let reportSeq = 0;
function report(): void {
  reportSeq++;
  for (const n of site.sensorNodes)
    store.ingestReport(
      {
        node: n.id,
        gateway: n.gateway,
        seq: reportSeq,
        readings: n.sensors.map((x) => ({
          sensor: x.id,
          kind: x.kind,
          // 0.02 °C up and down: never stuck (a sensor that repeats itself is not trusted), shown alike.
          value: (x.kind === 'humidity' ? 45 : (hot[n.rack] ?? 22)) + (reportSeq % 2) * 0.02,
        })),
      },
      'mqtt',
      store.nowMs(),
    );
}
report();
const reporting = setInterval(report, 2000);

describe('dashboard on a site larger than the demo', () => {
  const written: UnitWrite[] = [];
  const cluster = new FakeCluster(
    Object.fromEntries(site.controlGroups.map((g, i) => [g.id, ['node-a', 100 + i]])),
  );
  let a: FakeNode;
  let url: string;
  let browser: TestBrowser;
  let page: Page;
  const problems: string[] = [];
  let expected: RegExp[] = [];
  const requests: string[] = [];
  /** The size of each live answer the page read, in order. */
  const liveBytes: number[] = [];
  /** The size of each group-views answer the page read, in order. */
  const groupsBytes: number[] = [];
  /** The size of each cluster answer the page read, in order. */
  const clusterBytes: number[] = [];

  beforeAll(async () => {
    a = await fakeNode(cluster, 'node-a', site, written, { sensors: store });
    url = await a.app.listen({ host: '127.0.0.1', port: 0 });
    cluster.members.push({ node: 'node-a', apiUrl: url, startedAtMs: 1 });
    browser = await launchChromium('ui-size');
    page = await watchPage(await browser.context.newPage(), problems, () => expected, 20_000);
    page.on('request', (r) => {
      if (r.method() === 'GET') requests.push(new URL(r.url()).pathname);
    });
    page.on('response', async (r) => {
      const path = new URL(r.url()).pathname;
      const into = {
        '/api/v1/site/live': liveBytes,
        '/api/v1/groups': groupsBytes,
        '/api/v1/cluster': clusterBytes,
      }[path];
      if (!into) return;
      into.push((await r.body().catch(() => Buffer.alloc(0))).length);
    });
    expected = [/status of 401/];
    await page.goto(`${url}/`);
    await signInThroughForm(page, 'operator', TEST_PASSWORD);
    await waitFor('every unit driven on the map', async () =>
      page.evaluate<boolean>(
        `document.querySelectorAll('#floor g.ahu[data-state="driven"]').length === ${site.airHandlers.length}`,
      ),
    );
  }, 60_000);

  afterAll(async () => {
    clearInterval(reporting);
    await browser?.close();
    await a?.close();
  });

  const polls = () => pollsDrawn(page);
  const redrawn = async (n: number) => {
    const at = await polls();
    await waitFor(`${n} more polls`, async () => (await polls()) >= at + n, { timeoutMs: 20_000 });
  };

  it('reads the leader’s group views in one request per refresh, not one per group', async () => {
    const p0 = await polls();
    const r0 = requests.length;
    await redrawn(4);
    const n = (await polls()) - p0;
    const read = requests.slice(r0);
    const groupViews = read.filter((p) => /^\/api\/v1\/groups(\/[^/]+)?$/.test(p)).length;
    // One leader: one read of its groups per refresh (a poll in flight at either end counts ±1).
    expect(groupViews).toBeLessThanOrEqual(n + 1);
    // cluster, readyz, alarms, audit, groups, live, trends, now and then energy: never per group.
    expect(read.length / n).toBeLessThan(10);
    expect(problems).toEqual([]);
  });

  it('leaves the map and the unit rows untouched by a refresh that changes nothing on them', async () => {
    await page.evaluate(`(() => {
      window.__floorChanges = 0;
      new MutationObserver((l) => { window.__floorChanges += l.length; })
        .observe(document.getElementById('floor'), { subtree: true, childList: true, attributes: true, characterData: true });
      window.__unitRow = document.querySelector('#units tr[data-ahu="AHU-07"]');
      window.__groupRow = document.querySelector('#groups tr[data-group="zone-3"]');
    })()`);
    await redrawn(3);
    expect(await page.evaluate<number>('window.__floorChanges')).toBe(0);
    expect(
      await page.evaluate<boolean>(
        `window.__unitRow === document.querySelector('#units tr[data-ahu="AHU-07"]') && window.__unitRow.isConnected`,
      ),
    ).toBe(true);
    expect(
      await page.evaluate<boolean>(
        `window.__groupRow === document.querySelector('#groups tr[data-group="zone-3"]') && window.__groupRow.isConnected`,
      ),
    ).toBe(true);
  });

  it('reads the live figures whole once, then only what changed, and shows a rack’s new value', async () => {
    const full = liveBytes[0]!;
    const n0 = liveBytes.length;
    await redrawn(3);
    // A refresh whose sensors said nothing new brings no rack, unit or group: a few dozen bytes.
    expect(Math.max(...liveBytes.slice(n0 + 1))).toBeLessThan(full / 20);
    // Racks a group's sensors cover (the generated hall leaves some groups without sensor nodes).
    const [rack, neighbour] = site.controlGroups
      .flatMap((g) => store.rackInletStats(g.id).map((r) => r.rack))
      .slice(7, 9) as [string, string];
    expect(await page.locator(`#floor g.rack[data-id="${rack}"] .rack-temp`).textContent()).toBe(' 22.0');
    hot[rack] = 28.5;
    report();
    await waitFor(
      `${rack} at its new value`,
      async () =>
        (await page.locator(`#floor g.rack[data-id="${rack}"] .rack-temp`).textContent()) === ' 28.5 ▲',
    );
    // Its neighbours kept theirs.
    expect(await page.locator(`#floor g.rack[data-id="${neighbour}"] .rack-temp`).textContent()).toBe(
      ' 22.0',
    );
    expect(problems).toEqual([]);
  });

  it('reads the group views whole once, then only what changed, and still sees every unit written', async () => {
    const full = groupsBytes[0]!;
    const n0 = groupsBytes.length;
    const drivenAt = Date.now();
    // Longer than a unit's last write may be old before the map says "not driven" (10 s).
    await waitFor(
      '12 s of refreshes',
      async () => Date.now() - drivenAt > 12_000 && groupsBytes.length > n0 + 3,
      {
        timeoutMs: 30_000,
      },
    );
    // Every unit writes each period: its last write comes in a compact list, not its group's view.
    expect(Math.max(...groupsBytes.slice(n0 + 1))).toBeLessThan(full / 5);
    expect(
      await page.evaluate<number>(`document.querySelectorAll('#floor g.ahu[data-state="driven"]').length`),
    ).toBe(site.airHandlers.length);
    expect(await page.locator('#units tr[data-ahu="AHU-07"]').innerText()).toMatch(/\b[0-9] s ago/);
    expect(problems).toEqual([]);
  });

  it('reads the cluster whole once, then nothing while it is unchanged, and still shows a new leader', async () => {
    const full = clusterBytes[0]!;
    const n0 = clusterBytes.length;
    await redrawn(3);
    // Unchanged: the revision and little else, not every group's leader, epoch and state again.
    expect(Math.max(...clusterBytes.slice(n0 + 1))).toBeLessThan(full / 20);
    const group = site.controlGroups[5]!.id;
    cluster.move(group, null, 'test: leader lost');
    await waitFor(`${group} without a leader`, async () =>
      /✖ none/.test(await page.locator(`#groups tr[data-group="${group}"]`).innerText()),
    );
    cluster.move(group, 'node-a', 'test: elected again');
    await waitFor(`${group} led again`, async () =>
      /node-a\s+\d+\s+leader/.test(await page.locator(`#groups tr[data-group="${group}"]`).innerText()),
    );
    expect(problems).toEqual([]);
  });

  it('bounds the unit list and says how many more there are', async () => {
    const rows = await page.locator('#units tbody tr[data-ahu]').count();
    expect(rows).toBe(200);
    expect(await page.locator('#units tbody tr.more').innerText()).toMatch(/^20 more units not listed/);
  });

  it('finds one unit from the keyboard: the tables list it alone and Enter goes to it on the map', async () => {
    const full = await page.evaluate<string>(`document.querySelector('#floor svg').getAttribute('viewBox')`);
    await page.focus('#find');
    await page.keyboard.type('AHU-142');
    await waitFor(
      'the unit list narrowed',
      async () => (await page.locator('#units tbody tr[data-ahu]').count()) === 1,
    );
    expect(await page.locator('#units tbody tr[data-ahu]').getAttribute('data-ahu')).toBe('AHU-142');
    expect(await page.locator('#find-status').innerText()).toMatch(/^1 unit, 0 racks in 1 group match/);
    await page.keyboard.press('Enter');
    expect(await page.evaluate<string | null>(`document.activeElement.getAttribute('data-id')`)).toBe(
      'AHU-142',
    );
    const zoomed = await page.evaluate<string>(
      `document.querySelector('#floor svg').getAttribute('viewBox')`,
    );
    expect(Number(zoomed.split(' ')[2])).toBeLessThan(Number(full.split(' ')[2]) / 2);
    // Enter on it shows its trend, as on the full map.
    await page.keyboard.press('Enter');
    await waitFor(
      'its trend chosen',
      async () => (await page.locator('#trend-subject').inputValue()) === 'unit:AHU-142',
    );
    // A group by its exact id: its units only, and Tab from the box visits only its items.
    await page.fill('#find', 'zone-3');
    await waitFor(
      'zone-3 listed',
      async () => (await page.locator('#units tbody tr[data-ahu]').count()) === 10,
    );
    expect(await page.locator('#groups tbody tr').count()).toBe(1);
    await page.focus('#find');
    await page.keyboard.press('Tab');
    const group = await page.evaluate<string | null>(`document.activeElement.getAttribute('data-group')`);
    expect(group).toBe('zone-3');
    // Cleared: everything back, the whole map in view.
    await page.fill('#find', '');
    await waitFor(
      'all listed again',
      async () => (await page.locator('#units tbody tr[data-ahu]').count()) === 200,
    );
    expect(await page.evaluate<string>(`document.querySelector('#floor svg').getAttribute('viewBox')`)).toBe(
      full,
    );
    expect(problems).toEqual([]);
  });

  /** The focused map item: id, group, drawn centre (m), on-screen width (px), whether what is drawn of it shows whole in the map's scrolled view, and how many map items are Tab stops. */
  const onMap = () =>
    page.evaluate<{
      id: string | null;
      group: string | null;
      dimmed: boolean;
      x: number;
      y: number;
      widthPx: number;
      inView: boolean;
      stops: number;
    }>(`(() => {
      const g = document.activeElement.closest('#floor g.rack, #floor g.ahu');
      const stops = document.querySelectorAll('#floor [tabindex="0"]').length;
      if (!g) return { id: null, group: null, dimmed: false, x: 0, y: 0, widthPx: 0, inView: false, stops };
      const box = g.querySelector('rect');
      // As drawn: a unit against the hall's wall is cut by the drawing's edge, at any zoom.
      const b = box.getBoundingClientRect();
      const d = document.querySelector('#floor svg').getBoundingClientRect();
      const r = {
        left: Math.max(b.left, d.left), top: Math.max(b.top, d.top),
        right: Math.min(b.right, d.right), bottom: Math.min(b.bottom, d.bottom), width: b.width,
      };
      const host = document.getElementById('floor');
      const v = host.getBoundingClientRect();
      const inView = r.left >= v.left - 0.5 && r.top >= v.top - 0.5 &&
        r.right <= v.left + host.clientWidth + 0.5 && r.bottom <= v.top + host.clientHeight + 0.5;
      return {
        id: g.getAttribute('data-id'),
        group: g.getAttribute('data-group'),
        dimmed: g.classList.contains('unmatched'),
        x: +box.getAttribute('x') + +box.getAttribute('width') / 2,
        y: +box.getAttribute('y') + +box.getAttribute('height') / 2,
        widthPx: r.width,
        inView,
        stops,
      };
    })()`);
  /** The rack drawn next to the right of `id` in its row (same centre line), if any. */
  const rackRightOf = (id: string) =>
    page.evaluate<string | null>(`(() => {
      const at = (g) => { const b = g.querySelector('rect'); return [+b.getAttribute('x') + +b.getAttribute('width') / 2, +b.getAttribute('y') + +b.getAttribute('height') / 2]; };
      const racks = [...document.querySelectorAll('#floor g.rack')];
      const [x, y] = at(racks.find((g) => g.getAttribute('data-id') === ${JSON.stringify(id)}));
      let best = null, bx = Infinity;
      for (const g of racks) { const [gx, gy] = at(g); if (Math.abs(gy - y) < 0.01 && gx > x + 0.01 && gx < bx) { best = g; bx = gx; } }
      return best?.getAttribute('data-id') ?? null;
    })()`);

  it('takes one Tab stop for the whole map: the arrow keys go to the item drawn that way, kept across redraws', async () => {
    await page.focus('#find');
    await page.keyboard.press('Tab');
    const first = await onMap();
    expect(first.id).toMatch(/^RA-/);
    expect(first.stops).toBe(1);
    // The next Tab leaves the map (440 racks and 220 units are not 660 stops).
    await page.keyboard.press('Tab');
    expect((await onMap()).id).toBeNull();
    expect(await page.evaluate<string>('document.activeElement.id')).toBe('map-zoom-in');
    await page.keyboard.press('Shift+Tab');
    expect((await onMap()).id).toBe(first.id);

    // Right: the next rack of its row; Left: back.
    await page.keyboard.press('Home');
    const home = await onMap();
    const right = await rackRightOf(home.id ?? '');
    expect(right).not.toBeNull();
    await page.keyboard.press('ArrowRight');
    expect((await onMap()).id).toBe(right);
    await page.keyboard.press('ArrowLeft');
    expect((await onMap()).id).toBe(home.id);
    // Down: something drawn below, within the 90° cone.
    await page.keyboard.press('ArrowDown');
    const below = await onMap();
    expect(below.y).toBeGreaterThan(home.y);
    expect(Math.abs(below.x - home.x)).toBeLessThanOrEqual(below.y - home.y);
    await page.keyboard.press('End');
    expect((await onMap()).id).toBe(site.airHandlers.at(-1)?.id);
    expect((await onMap()).stops).toBe(1);

    // The stop stays on its item across the live redraws, and Tab back returns to it.
    await page.keyboard.press('ArrowUp');
    const used = await onMap();
    await redrawn(2);
    expect((await onMap()).id).toBe(used.id);
    await page.keyboard.press('Tab');
    await page.keyboard.press('Shift+Tab');
    expect(await onMap()).toMatchObject({ id: used.id, stops: 1 });
    expect(problems).toEqual([]);
  });

  it('skips what the find box dims, opens a rack with Enter and Escape returns to it', async () => {
    await page.fill('#find', 'zone-3');
    await page.focus('#find');
    await page.keyboard.press('Tab');
    const seen = new Set<string>();
    for (const key of [
      'ArrowRight',
      'ArrowRight',
      'ArrowDown',
      'ArrowRight',
      'ArrowLeft',
      'ArrowUp',
      'End',
    ]) {
      await page.keyboard.press(key);
      const at = await onMap();
      expect(at, key).toMatchObject({ group: 'zone-3', dimmed: false, stops: 1 });
      seen.add(at.id ?? '');
    }
    // It moved between zone-3's items (past the other groups' racks between them).
    expect(seen.size).toBeGreaterThan(2);
    await page.fill('#find', '');
    await page.focus('#find');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Home');
    const rack = (await onMap()).id ?? '';
    await page.keyboard.press('Enter');
    await waitFor('the rack’s panel', async () =>
      ((await page.locator('#rack-details h3').textContent()) ?? '').startsWith(`Rack ${rack}`),
    );
    await page.keyboard.press('Escape');
    await waitFor('the panel closed', async () => (await page.locator('#rack-details h3').count()) === 0);
    expect(await onMap()).toMatchObject({ id: rack, stops: 1 });
    expect(problems).toEqual([]);
  });

  it('zooms in from the keyboard keeping the focused rack in view, pans with the arrow keys, and fit shows the whole hall', async () => {
    const full = await page.evaluate<string>(`document.querySelector('#floor svg').getAttribute('viewBox')`);
    // A rack amid the hall (a click, or any focus, makes an item the map's stop).
    const middle = site.racks[Math.floor(site.racks.length / 2)]?.id ?? '';
    await page.focus(`#floor g.rack[data-id="${middle}"]`);
    const before = await onMap();
    expect(before).toMatchObject({ id: middle, stops: 1 });
    for (let i = 0; i < 3; i++) await page.keyboard.press('+');
    const zoomed = await onMap();
    expect(zoomed.id).toBe(before.id);
    // ×8: a rack wide enough to read its id and value.
    expect(zoomed.widthPx).toBeGreaterThanOrEqual(Math.max(40, before.widthPx * 7));
    expect(zoomed.inView).toBe(true);
    expect(await page.locator('#map-zoom-level').textContent()).toBe('×8');
    // Arrow keys past the edge of the view pan it: the focused item always shows.
    const visited = new Set<string>();
    for (let i = 0; i < 30; i++) {
      await page.keyboard.press(i < 20 ? 'ArrowLeft' : 'ArrowDown');
      const at = await onMap();
      expect(at.inView, `${at.id} in view`).toBe(true);
      visited.add(at.id ?? '');
    }
    // Far past the first view's edge at ×8.
    expect(visited.size).toBeGreaterThan(15);
    await page.keyboard.press('-');
    expect(await page.locator('#map-zoom-level').textContent()).toBe('×4');
    expect((await onMap()).inView).toBe(true);
    // The buttons do the same; fit returns to the whole hall, also from the find box's zoom.
    await page.click('#map-zoom-in');
    expect(await page.locator('#map-zoom-level').textContent()).toBe('×8');
    await page.fill('#find', 'AHU-142');
    expect(
      await page.evaluate<string>(`document.querySelector('#floor svg').getAttribute('viewBox')`),
    ).not.toBe(full);
    await page.click('#map-fit');
    expect(await page.evaluate<string>(`document.querySelector('#floor svg').getAttribute('viewBox')`)).toBe(
      full,
    );
    expect(await page.locator('#map-zoom-level').textContent()).toBe('×1');
    expect(
      await page.evaluate<boolean>(
        `(() => { const h = document.getElementById('floor'); return h.scrollWidth <= h.clientWidth + 1 && h.scrollHeight <= h.clientHeight + 1; })()`,
      ),
    ).toBe(true);
    const rackPx = await page.evaluate<number>(
      `document.querySelector('#floor g.rack rect').getBoundingClientRect().width`,
    );
    expect(rackPx).toBeCloseTo(before.widthPx, 0);
    await page.fill('#find', '');
    expect(problems).toEqual([]);
  });
});
