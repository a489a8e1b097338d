// Debian's chromium for the browser tests, driven by playwright-core (never a downloaded browser):
// one launch with the flags a sandbox-less, offline CI machine needs, a throwaway profile, and the
// dashboard's test viewport (1366×768, the smallest screen the dashboard is made for).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
/** Screenshots of each run (gitignored), for people to look at. */
export const SCREENSHOTS_DIR = 'test-results/screenshots';

export interface TestBrowser {
  context: BrowserContext;
  /** Closes the browser and removes its profile. */
  close(): Promise<void>;
}

export async function launchChromium(name: string): Promise<TestBrowser> {
  const profile = await mkdtemp(join(tmpdir(), `coolctl-${name}-`));
  try {
    const context = await chromium.launchPersistentContext(profile, {
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
    return {
      context,
      close: async () => {
        await context.close();
        await rm(profile, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await rm(profile, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Sets the test viewport and timeout on `page`, and pushes every page error and console error onto
 * `problems`, except console errors `expected` says the test will cause (each taken off as it comes).
 */
export async function watchPage(
  page: Page,
  problems: string[],
  expected: () => RegExp[],
  timeoutMs: number,
): Promise<Page> {
  await page.setViewportSize({ width: 1366, height: 768 });
  page.setDefaultTimeout(timeoutMs);
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const list = expected();
    const i = list.findIndex((re) => re.test(msg.text()));
    if (i >= 0) list.splice(i, 1);
    else problems.push(`console error: ${msg.text()} (${msg.location().url})`);
  });
  return page;
}

/**
 * Signs `page` in through the dashboard's own form (the page is on the sign-in form, or about to
 * show it) and waits for the signed-in page.
 */
export async function signInThroughForm(page: Page, user: string, password: string): Promise<void> {
  await page.waitForSelector('#sign-in-form', { state: 'visible' });
  await page.fill('#sign-in-name', user);
  await page.fill('#sign-in-password', password);
  await page.click('#sign-in-send');
  await page.waitForSelector('#main', { state: 'visible' });
}

/** How many polls the page has drawn (it counts them in `body[data-polls]`). */
export async function pollsDrawn(page: Page): Promise<number> {
  return Number(await page.evaluate<string | undefined>('document.body.dataset.polls'));
}
