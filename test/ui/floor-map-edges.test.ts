// The floor map draws everything inside the hall, in a real browser (Debian's chromium) over one
// fake node: racks and units placed at every wall and corner of a room (the site gives positions
// from 0 to the room's width and depth), in a room turned a quarter, in a room smaller than a unit,
// with long ids and hot racks' values and marks, the focus frame on each: every drawn box, label
// and frame lies inside its room, and every room name inside the map, at ×1, ×8 and ×32. The same
// on a generated site (units 0.5 m from the walls, as `npm run gen-site` makes them).
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoShape, generateSite } from '../../firmware-sim/generate-site.ts';
import { loadSite } from '../../src/config/load-site.ts';
import { checkSiteRules } from '../../src/config/site-rules.ts';
import type { Site } from '../../src/config/site-schema.ts';
import { SensorStore } from '../../src/sensors/sensor-store.ts';
import { waitFor } from '../helpers.ts';
import { TEST_PASSWORD } from '../support/api-auth.ts';
import {
  launchChromium,
  SCREENSHOTS_DIR,
  signInThroughForm,
  type TestBrowser,
  watchPage,
} from '../support/browser.ts';
import { FakeCluster, type FakeNode, fakeNode, type UnitWrite } from '../support/fake-cluster.ts';

const demo = await loadSite('config/demo-site.yaml');
const first = <T>(x: T | undefined, what: string): T => {
  if (x === undefined) throw new Error(`the demo site has no ${what}`);
  return x;
};

/** The corners and the middle of each wall of a `w` × `d` m room. */
const wallSpots = (w: number, d: number): [number, number][] => [
  [0, 0],
  [w, 0],
  [0, d],
  [w, d],
  [0, d / 2],
  [w, d / 2],
  [w / 2, 0],
  [w / 2, d],
];

/**
 * The demo site with its units moved to hall A's corners and walls and its first racks to the
 * walls between them, plus a room
 * deeper than wide (drawn turned a quarter) with racks and a unit at its walls, long ids among
 * them, and a room smaller than a unit. The config rules accept it: every position is in its room.
 */
function edgeSite(): Site {
  const site = structuredClone(demo);
  const hallA = first(site.rooms[0], 'room');
  const spotsA = wallSpots(hallA.widthM, hallA.depthM);
  site.airHandlers.forEach((a, i) => {
    [a.xM, a.yM] = first(spotsA[i % spotsA.length], 'spot');
  });
  // Racks between the units, a quarter of the way along each wall (hall B has racks in corners).
  const { widthM: w, depthM: d } = hallA;
  const quarters: [number, number][] = [
    [w / 4, 0],
    [(3 * w) / 4, 0],
    [w / 4, d],
    [(3 * w) / 4, d],
    [0, d / 4],
    [0, (3 * d) / 4],
    [w, d / 4],
    [w, (3 * d) / 4],
  ];
  site.racks.slice(0, quarters.length).forEach((r, i) => {
    [r.xM, r.yM] = first(quarters[i], 'spot');
  });
  site.rooms.push(
    { id: 'hall-b', name: 'Hall B', widthM: 4, depthM: 10 },
    { id: 'closet', name: 'Closet', widthM: 1.5, depthM: 0.8 },
  );
  const rack = first(site.racks[0], 'rack');
  wallSpots(4, 10).forEach(([xM, yM], i) => {
    const id = i === 0 ? 'EDGE-WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW-01' : `EB-0${i + 1}`;
    site.racks.push({ ...rack, id, room: 'hall-b', row: 'row-b', xM, yM });
  });
  const unit = first(site.airHandlers[0], 'unit');
  const at = (id: string, room: string, xM: number, yM: number): typeof unit =>
    ({
      ...unit,
      id,
      room,
      xM,
      yM,
      // Not driven by anyone here: an endpoint of its own is not needed (port 0 shares none).
      endpoint: { ...unit.endpoint, port: 0 },
    }) as typeof unit;
  site.airHandlers.push(
    at('AHU-MMMMMMMMMMMMMMMMMMMMMMMMMMMM-B1', 'hall-b', 4, 10),
    at('AHU-B2', 'hall-b', 0, 0),
    // Closer to AHU-B2 than half a unit: drawn beside it, never on top of it.
    at('AHU-B3', 'hall-b', 0.4, 0),
    at('AHU-C1', 'closet', 0, 0),
  );
  return site;
}

/**
 * Every drawn item's box, each of its labels and its focus frame (the item focused, its box's
 * stroke counted) against its room's inside (the room rect as drawn), and every room name against
 * the map: what lies outside, with by how many px. Half a px of slack for rounding.
 */
const OUTSIDE = `(() => {
  const svg = document.querySelector('#floor > svg');
  const map = svg.getBoundingClientRect();
  const rooms = [...svg.querySelectorAll('rect.room')].map((r) => r.getBoundingClientRect());
  const pxPerM = map.width / svg.viewBox.baseVal.width;
  const out = [];
  const check = (what, b, inside) => {
    const over = Math.max(inside.left - b.left, b.right - inside.right, inside.top - b.top, b.bottom - inside.bottom);
    if (over > 0.5) out.push(what + ' ' + over.toFixed(1) + ' px outside');
  };
  let items = 0;
  for (const g of svg.querySelectorAll('g.rack, g.ahu')) {
    items++;
    g.focus({ preventScroll: true });
    const box = g.querySelector('rect');
    const b = box.getBoundingClientRect();
    const half = (Number.parseFloat(getComputedStyle(box).strokeWidth) * pxPerM) / 2;
    const framed = { left: b.left - half, right: b.right + half, top: b.top - half, bottom: b.bottom + half };
    const cx = (b.left + b.right) / 2;
    const cy = (b.top + b.bottom) / 2;
    const room = rooms.find((r) => cx >= r.left && cx <= r.right && cy >= r.top && cy <= r.bottom);
    const id = g.getAttribute('data-id');
    if (!room) {
      out.push(id + ' in no room');
      continue;
    }
    check(id + ' box with its focus frame', framed, room);
    for (const t of g.querySelectorAll('text'))
      if (getComputedStyle(t).display !== 'none') check(id + ' label "' + t.textContent + '"', t.getBoundingClientRect(), room);
    check(id + ' drawing', g.getBoundingClientRect(), map);
  }
  for (const t of svg.querySelectorAll('text.room-name')) check('room name ' + t.textContent, t.getBoundingClientRect(), map);
  // Items at different places are drawn apart: none hidden under another.
  const at = new Map();
  for (const g of svg.querySelectorAll('g.rack, g.ahu')) {
    const b = g.querySelector('rect').getBoundingClientRect();
    const key = Math.round(b.left) + ',' + Math.round(b.top);
    if (at.has(key)) out.push(g.getAttribute('data-id') + ' drawn on ' + at.get(key));
    at.set(key, g.getAttribute('data-id'));
  }
  document.activeElement.blur();
  return { items, out };
})()`;

/** Every inlet at 36 °C: each rack shows its widest value and mark ("36.0 ✖"). */
function hotSensors(site: Site): SensorStore {
  const store = new SensorStore(site);
  for (const n of site.sensorNodes)
    store.ingestReport(
      {
        node: n.id,
        gateway: n.gateway,
        seq: 1,
        readings: n.sensors.map((x) => ({
          sensor: x.id,
          kind: x.kind,
          value: x.kind === 'humidity' ? 45 : 36,
        })),
      },
      'mqtt',
      store.nowMs(),
    );
  return store;
}

const cases = [
  { name: 'edge site', site: edgeSite() },
  {
    name: 'generated site',
    site: generateSite({ ...demoShape, airHandlers: 20, sensorNodes: 60, controlGroups: 4, seed: 3 }),
  },
];

it('takes a site whose racks and units stand at every wall and corner (the config rules accept it)', () => {
  for (const { site } of cases) expect(checkSiteRules(site)).toEqual([]);
});

// One browser per site: each fake cluster has its own sessions, and a browser holds one cookie.
describe.each(cases)('floor map of the $name: nothing drawn outside the hall', ({ name, site }) => {
  let browser: TestBrowser;
  let node: FakeNode;
  let page: Page;
  const problems: string[] = [];
  let expected: RegExp[] = [];

  beforeAll(async () => {
    const cluster = new FakeCluster(
      Object.fromEntries(site.controlGroups.map((g, i) => [g.id, ['node-a', 100 + i]])),
    );
    const written: UnitWrite[] = [];
    node = await fakeNode(cluster, 'node-a', site, written, { sensors: hotSensors(site) });
    const url = await node.app.listen({ host: '127.0.0.1', port: 0 });
    cluster.members.push({ node: 'node-a', apiUrl: url, startedAtMs: 1 });
    browser = await launchChromium(`ui-map-edges-${name.split(' ')[0]}`);
    page = await watchPage(await browser.context.newPage(), problems, () => expected, 20_000);
    expected = [/status of 401/];
    await page.goto(`${url}/`);
    await signInThroughForm(page, 'operator', TEST_PASSWORD);
    await waitFor(`${name}: every item on the map, hot racks showing their value`, async () =>
      page.evaluate<boolean>(
        `document.querySelectorAll('#floor g.ahu').length === ${site.airHandlers.length} &&
         document.querySelectorAll('#floor g.rack[data-level="crit"]').length > 0`,
      ),
    );
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await node?.close();
  });

  it('draws every rack, unit, label and focus frame inside its room at ×1, ×8 and ×32', async () => {
    for (const zoom of [1, 8, 32]) {
      // Bounded: ×1 to ×32 is five steps.
      for (let i = 0; i < 6 && (await page.locator('#map-zoom-level').textContent()) !== `×${zoom}`; i++)
        await page.click('#map-zoom-in');
      expect(await page.locator('#map-zoom-level').textContent()).toBe(`×${zoom}`);
      const { items, out } = await page.evaluate<{ items: number; out: string[] }>(OUTSIDE);
      expect(items).toBe(site.racks.length + site.airHandlers.length);
      expect(out, `×${zoom}`).toEqual([]);
      if (zoom === 1)
        await page
          .locator('#floor')
          .screenshot({ path: `${SCREENSHOTS_DIR}/map-edges-${name.split(' ')[0]}.png` });
    }
    await page.click('#map-fit');
    expect(problems).toEqual([]);
  }, 60_000);
});
