// Debian's chromium for the browser tests, driven by playwright-core (never a downloaded browser):
// one launch with the flags a sandbox-less, offline CI machine needs, a throwaway profile, and the
// dashboard's test viewport (1366×768, the smallest screen the dashboard is made for).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
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

/**
 * `niceness`: chromium and every process it starts run at that scheduling priority (nice(1)), so a
 * bench's browser cannot starve the processes it shares a core with (the simulator, etcd). Without
 * CAP_SYS_NICE: run as root, chromium raises its own main threads to nice -8, above everything else.
 */
export async function launchChromium(name: string, o: { niceness?: number } = {}): Promise<TestBrowser> {
  const dir = await mkdtemp(join(tmpdir(), `coolctl-${name}-`));
  const profile = join(dir, 'profile');
  try {
    let executablePath = CHROMIUM;
    if (o.niceness !== undefined) {
      if (!Number.isInteger(o.niceness) || o.niceness < -20 || o.niceness > 19)
        throw new Error(`niceness ${o.niceness}: an integer from -20 to 19`);
      executablePath = join(dir, 'chromium');
      await writeFile(
        executablePath,
        `#!/bin/sh\nexec nice -n ${o.niceness} setpriv --bounding-set -sys_nice -- ${CHROMIUM} "$@"\n`,
        {
          mode: 0o700,
        },
      );
    }
    const context = await chromium.launchPersistentContext(profile, {
      executablePath,
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
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
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
