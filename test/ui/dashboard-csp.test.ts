// The dashboard's Content-Security-Policy in a real browser (Debian's chromium, driven by
// playwright-core), three controller nodes over fakes on loopback: the page opened on node-a reaches
// node-b, a member, and nothing else — a request a script in the page sends to another host never
// leaves the browser. node-c joins after the page was loaded and leads a group: the browser refuses
// the page's reads from it, the page says to reload, and once reloaded it reads node-c.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSite } from '../../src/config/load-site.ts';
import { waitFor } from '../helpers.ts';
import { TEST_PASSWORD } from '../support/api-auth.ts';
import { launchChromium, signInThroughForm, type TestBrowser, watchPage } from '../support/browser.ts';
import {
  DEMO_TWO_NODES,
  FakeCluster,
  type FakeNode,
  fakeNode,
  type UnitWrite,
} from '../support/fake-cluster.ts';

const site = await loadSite('config/demo-site.yaml');

describe('the dashboard page’s connections in a browser', () => {
  const written: UnitWrite[] = [];
  const cluster = new FakeCluster(DEMO_TWO_NODES);
  const nodes: FakeNode[] = [];
  const urls: Record<string, string> = {};
  let browser: TestBrowser;
  let page: Page;
  /** A host that is no member: it counts every request that reaches it. */
  let outsider: Server;
  let outsiderUrl: string;
  let outsiderHits = 0;
  const problems: string[] = [];
  /** Console errors the current step expects (each matching line is let by, however many). */
  let allowed: RegExp[] = [];
  /** The browser's lines on a connection it refused to `url` (two per fetch). */
  const refusedTo = (url: string) =>
    new RegExp(`(Connecting to '|Fetch API cannot load )${url}/.*Content Security Policy`);

  beforeAll(async () => {
    for (const name of ['node-a', 'node-b', 'node-c']) {
      const n = await fakeNode(cluster, name, site, written);
      nodes.push(n);
      urls[name] = await n.app.listen({ host: '127.0.0.1', port: 0 });
    }
    cluster.members.push(
      { node: 'node-a', apiUrl: urls['node-a']!, startedAtMs: 1 },
      { node: 'node-b', apiUrl: urls['node-b']!, startedAtMs: 2 },
    );
    outsider = createServer((_req, res) => {
      outsiderHits++;
      res.end('{}');
    });
    await new Promise<void>((resolve) => outsider.listen(0, '127.0.0.1', resolve));
    outsiderUrl = `http://127.0.0.1:${(outsider.address() as AddressInfo).port}`;
    browser = await launchChromium('csp');
    // The outsider is refused in every step: the browser's lines on it may come late.
    page = await watchPage(
      await browser.context.newPage(),
      problems,
      () => [...allowed, refusedTo(outsiderUrl)],
      10_000,
    );
    allowed = [/status of 401/];
    await page.goto(`${urls['node-a']}/`);
    await signInThroughForm(page, 'operator', TEST_PASSWORD);
    allowed = [];
  });

  afterAll(async () => {
    await browser?.close();
    for (const n of nodes) await n.close();
    await new Promise((resolve) => outsider?.close(resolve));
  });

  const text = (selector: string) => page.locator(selector).innerText();
  /** What a fetch from the page's own script gets: the status, or the error that stopped it. */
  const fetchFromPage = (url: string, init: { method?: string; mode?: 'no-cors'; body?: string } = {}) =>
    page.evaluate(
      ([u, i]) =>
        fetch(u, { ...i, credentials: 'include' }).then(
          (r) => `status ${r.status}`,
          (err: Error) => `refused: ${err.message}`,
        ),
      [url, init] as const,
    );

  it('reads the groups node-b leads from node-b, and reaches node-b’s API', async () => {
    await waitFor('zone-3 led and driven by node-b, read from node-b', async () =>
      /node-b\s+57\s+follower\s+yes/.test(await text('#groups tr[data-group="zone-3"]')),
    );
    expect(await fetchFromPage(`${urls['node-b']}/api/v1/cluster`)).toBe('status 200');
    expect(await text('#notices')).toBe('');
    expect(problems).toEqual([]);
  });

  it('sends nothing to a host that is no member of the cluster', async () => {
    expect(await fetchFromPage(`${outsiderUrl}/steal?x=1`, { mode: 'no-cors' })).toMatch(/^refused/);
    expect(
      await fetchFromPage(`${outsiderUrl}/steal`, { method: 'POST', mode: 'no-cors', body: 'secret' }),
    ).toMatch(/^refused/);
    expect(outsiderHits).toBe(0);
    // The page names no reason to reload for a host that is no member.
    expect(await text('#notices')).toBe('');
  });

  it('says to reload when a member joins after it was loaded, and reads it once reloaded', async () => {
    allowed = [refusedTo(urls['node-c']!)];
    cluster.members.push({ node: 'node-c', apiUrl: urls['node-c']!, startedAtMs: 3 });
    cluster.move('zone-4', 'node-c', 'test: node-c joined');
    await waitFor('the page says node-c joined and to reload', async () =>
      /node-c joined the cluster after this page was loaded.*reload it/.test(await text('#notices')),
    );
    expect(await page.locator('#reload-page').isVisible()).toBe(true);
    await Promise.all([page.waitForEvent('load'), page.click('#reload-page')]);
    // The session survives the reload; the new policy names node-c (the browser's lines on node-c
    // from before the reload may come late: were it refused now, the notice would say so).
    await page.waitForSelector('#main', { state: 'visible' });
    await waitFor('zone-4 led and driven by node-c, read from node-c', async () =>
      /node-c\s+68\s+follower\s+yes/.test(await text('#groups tr[data-group="zone-4"]')),
    );
    await waitFor('no notice left', async () => (await text('#notices')) === '');
    expect(await fetchFromPage(`${urls['node-c']}/api/v1/cluster`)).toBe('status 200');
    expect(problems).toEqual([]);
  });
});
