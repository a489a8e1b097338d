// `npm run bench -- dashboard`: the operator dashboard on a full-size site (bench/scale.ts's: one
// controller leading 100 groups / 1 000 Modbus AHUs / ~50 000 sensors, simulator and a 3-member
// etcd on loopback), opened in Debian's chromium (playwright-core). Figures, all in one run: how
// long the page takes to show the floor map and unit list, what each 1.5 s refresh costs the
// browser (requests, bytes, main-thread long tasks, heap growth) and what the open page costs the
// controller (CPU, event-loop lag p99 and share over 20 ms) with 0, 1 and 3 pages open, side by side.
// With taskset the controller has core 1 to itself; everything else (chromium too) shares core 0,
// where chromium runs at nice 19 (unable to raise itself: as root it put its main threads at nice
// -8): its launch and a 5 000-rack page starved the simulator for seconds, the units stopped
// answering and the controller handed every group on, back to itself (a bench artefact).
// Args: [--window-s 40] [--warmup-s 20] [--ahus 1000] [--groups 100] [--nodes 11765] [--from-source]
//       [--keep] [--screenshot FILE] [--profile DIR]
// --profile DIR: the controller runs with --cpu-prof (sampled every 250 µs), written to DIR when it
// stops: where its main thread spends the time the pages cost it.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { CDPSession, Page } from 'playwright-core';
import { HARNESS_ADMIN, HARNESS_PASSWORD } from '../test/support/api-seed.ts';
import { launchChromium, signInThroughForm } from '../test/support/browser.ts';
import { buildDaemon, type DaemonCommand, deployedDaemon } from '../test/support/deployed-daemon.ts';
import { startEtcdCluster } from '../test/support/etcd-cluster.ts';
import type { ClusterView } from '../test/support/hall.ts';
import { intOption } from './lib/args.ts';
import {
  canPin,
  getJson,
  pinSelf,
  poll,
  REPO_ROOT,
  ScaleProcesses,
  scaleSite,
  sensorCount,
  startController,
  startSim,
} from './lib/scale-hall.ts';
import {
  cpuSeconds,
  histogramPercentile,
  histogramShareAbove,
  LOOP_DELAY,
  scrape,
  sum,
} from './lib/scale-probe.ts';
import { delay } from './lib/stats.ts';

const SIM_CORE = 0;
const CONTROLLER_CORE = 1;
/** Groups this controller handed on (docs/daemon.md, "relinquish"). */
const HAND_ONS = 'coolctl_control_relinquished_total';
const say = (s: string) => process.stderr.write(`${s}\n`);

/** Counts main-thread tasks over 50 ms (the browser's "long task") from the page's first script on. */
const LONG_TASK_PROBE = `(() => {
  const lt = { count: 0, ms: 0, maxMs: 0 };
  window.__longTasks = lt;
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) { lt.count++; lt.ms += e.duration; lt.maxMs = Math.max(lt.maxMs, e.duration); }
    }).observe({ type: 'longtask', buffered: true });
  } catch {}
})();`;

interface PageProbe {
  page: Page;
  cdp: CDPSession;
  requests: number;
  bytes: number;
  /** Bytes per path (no query): which answers make a refresh heavy. */
  bytesByPath: Map<string, number>;
}

async function probePage(page: Page): Promise<PageProbe> {
  const cdp = await page.context().newCDPSession(page);
  const p: PageProbe = { page, cdp, requests: 0, bytes: 0, bytesByPath: new Map() };
  const pathOf = new Map<string, string>();
  // Sizes only: DevTools need keep no answer bodies, which would sit in the page's heap figures.
  await cdp.send('Network.enable', { maxTotalBufferSize: 0, maxResourceBufferSize: 0 });
  await cdp.send('Performance.enable');
  cdp.on(
    'Network.requestWillBeSent',
    (e: { requestId: string; request: { method: string; url: string } }) => {
      // CORS preflights are requests too; every other method is the page's own.
      if (e.request.method !== 'OPTIONS') p.requests++;
      pathOf.set(e.requestId, new URL(e.request.url).pathname);
    },
  );
  cdp.on('Network.loadingFinished', (e: { requestId: string; encodedDataLength: number }) => {
    p.bytes += e.encodedDataLength;
    const path = pathOf.get(e.requestId) ?? '?';
    pathOf.delete(e.requestId);
    p.bytesByPath.set(path, (p.bytesByPath.get(path) ?? 0) + e.encodedDataLength);
  });
  await page.addInitScript(LONG_TASK_PROBE);
  return p;
}

const polls = async (page: Page) =>
  Number(await page.evaluate<string | undefined>('document.body.dataset.polls'));
const longTasks = (page: Page) =>
  page.evaluate<{ count: number; ms: number; maxMs: number }>('window.__longTasks');
/** What the page holds: its JS heap after full collections, not what V8 has yet to free. */
async function heapMb(p: PageProbe): Promise<number> {
  await p.cdp.send('HeapProfiler.collectGarbage');
  await p.cdp.send('HeapProfiler.collectGarbage');
  const h = (await p.cdp.send('Runtime.getHeapUsage')) as { usedSize: number };
  return h.usedSize / 2 ** 20;
}

/** The map drawn with every rack and unit, racks coloured from live figures, every unit row filled. */
async function pageReady(page: Page, racks: number, ahus: number, timeoutMs: number): Promise<void> {
  // Asked through page.evaluate (the devtools protocol), not waitForFunction: that one compiles its
  // predicate in the page, which the page's CSP (no 'unsafe-eval') refuses.
  const drawn = `document.querySelectorAll('#floor g.rack').length === ${racks} &&
     document.querySelectorAll('#units tbody tr[data-ahu]').length >= ${Math.min(ahus, 1)} &&
     document.querySelector('#floor g.rack:not([data-level="none"])') !== null &&
     document.querySelector('#floor g.ahu[data-state="driven"]') !== null`;
  await poll(
    'the page drawn from live figures',
    timeoutMs,
    async () => ((await page.evaluate<boolean>(drawn).catch(() => false)) ? true : undefined),
    100,
  );
}

export async function run(argv: string[]): Promise<Record<string, number>> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'window-s': { type: 'string', default: '40' },
      'warmup-s': { type: 'string', default: '20' },
      ahus: { type: 'string', default: '1000' },
      groups: { type: 'string', default: '100' },
      nodes: { type: 'string', default: '11765' },
      'from-source': { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      screenshot: { type: 'string' },
      profile: { type: 'string' },
    },
    strict: true,
  });
  const int = (name: keyof typeof values, min: number, max: number): number =>
    intOption(values, name, min, max);
  const windowS = int('window-s', 10, 300);
  const warmupS = int('warmup-s', 0, 300);
  const ahus = int('ahus', 10, 5000);
  const groups = int('groups', 1, ahus);
  const nodes = int('nodes', 1, 100_000);
  const built: DaemonCommand = values['from-source']
    ? { nodeFlags: [], script: join(REPO_ROOT, 'src/cli.ts'), env: {} }
    : deployedDaemon();
  const daemon: DaemonCommand = values.profile
    ? {
        ...built,
        nodeFlags: [
          ...built.nodeFlags,
          '--cpu-prof',
          '--cpu-prof-interval',
          '250',
          '--cpu-prof-dir',
          values.profile,
        ],
      }
    : built;
  if (!values['from-source']) {
    say('building dist/ (npm run build)');
    buildDaemon();
  }
  const pinned = canPin();
  if (pinned) pinSelf(SIM_CORE);
  const dir = await mkdtemp(join(tmpdir(), 'coolctl-bench-dashboard-'));
  const procs = new ScaleProcesses(dir, pinned);
  const onSignal = (sig: NodeJS.Signals) => {
    say(`${sig}: stopping every process of the bench`);
    void procs.stopAll().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;
  let ok = false;
  try {
    const etcd = await startEtcdCluster({ dataDir: join(dir, 'etcd') });
    procs.onStop(() => etcd.stop());
    const site = scaleSite({ ahus, groups, nodes });
    say(
      `site: ${groups} groups, ${site.airHandlers.length} AHUs, ${site.racks.length} racks, ${sensorCount(site)} sensors`,
    );
    const sim = await startSim(procs, 'dashboard', site, SIM_CORE, 180_000);
    const ctl = await startController(procs, {
      name: 'dashboard',
      site: sim.controllerSite,
      etcd: etcd.clientUrls,
      mqttUrl: sim.mqttUrl,
      core: CONTROLLER_CORE,
      timeoutMs: 180_000,
      daemon,
    });
    const alive = () => {
      for (const p of [ctl.proc, sim.proc]) if (p.exit()) throw new Error(`a process died (logs in ${dir})`);
    };
    await poll('every group led and driven', 120_000, async () => {
      alive();
      const v = await getJson<ClusterView>(`${ctl.apiUrl}/api/v1/cluster`, 5000, ctl.headers).catch(
        () => null,
      );
      return v?.groups.filter((g) => g.state === 'leader' && g.driving).length === groups ? true : undefined;
    });
    say(`controller drives all ${groups} groups; warming up ${warmupS} s`);
    await delay(warmupS * 1000);

    /** The controller over `windowS`: CPU % of one core, lag p99 (ms) and share of samples over 20 ms. */
    const controllerWindow = async (name: string) => {
      const m0 = await scrape(ctl.apiUrl, 5000, ctl.headers);
      const c0 = cpuSeconds(ctl.proc.pid);
      const t0 = performance.now();
      for (let i = 0; i < windowS; i++) {
        await delay(1000);
        alive();
      }
      const wallS = (performance.now() - t0) / 1000;
      const cpu = ((cpuSeconds(ctl.proc.pid) - c0) / wallS) * 100;
      const m1 = await scrape(ctl.apiUrl, 5000, ctl.headers);
      const r = {
        cpu_pct: cpu,
        lag_p99_ms: histogramPercentile(m0.samples, m1.samples, LOOP_DELAY, 99) * 1000,
        lag_over_20ms_pct: histogramShareAbove(m0.samples, m1.samples, LOOP_DELAY, 0.02),
        // A group handed on in the window (its units' writes failed for the undriven bound): pages
        // must never cost the controller its groups.
        hand_ons: sum(m1.samples, HAND_ONS) - sum(m0.samples, HAND_ONS),
        hand_ons_since_start: sum(m1.samples, HAND_ONS),
      };
      say(
        `${name}: controller cpu ${r.cpu_pct.toFixed(1)} %, lag p99 ${r.lag_p99_ms.toFixed(1)} ms, ${r.lag_over_20ms_pct.toFixed(2)} % over 20 ms, ${r.hand_ons} groups handed on`,
      );
      return r;
    };

    const none = await controllerWindow('no page');

    browser = await launchChromium('bench-dashboard', { niceness: 19 });
    const first = await browser.context.newPage();
    await first.setViewportSize({ width: 1366, height: 768 });
    first.setDefaultTimeout(60_000);
    await first.goto(`${ctl.apiUrl}/`);
    await signInThroughForm(first, HARNESS_ADMIN, HARNESS_PASSWORD);
    // Measured on a page opened signed in, as an operator's reload is.
    const p1 = await probePage(first);
    const t0 = performance.now();
    await first.goto(`${ctl.apiUrl}/`);
    await pageReady(first, site.racks.length, site.airHandlers.length, 120_000);
    const readyMs = performance.now() - t0;
    say(`page ready (every rack drawn, racks and units from live figures) in ${readyMs.toFixed(0)} ms`);
    const rackBox = await first.locator('#floor g.rack rect').first().boundingBox();
    if (values.screenshot) await first.screenshot({ path: values.screenshot });

    // What a user does: a rack opened by click shows its sensors, the trends and alarm list drawn.
    const tRack = performance.now();
    await first.locator('#floor g.rack').first().click();
    await first.waitForSelector('#rack-details table.sensors tbody tr', { timeout: 30_000 });
    const rackPanelMs = performance.now() - tRack;
    await first.waitForSelector('#trends svg', { timeout: 30_000 });
    await first.waitForSelector('#alarms tbody tr', { timeout: 30_000 });
    await first.locator('#rack-close').click();

    await delay(5000);
    const heap0 = await heapMb(p1);
    const heapT0 = performance.now();
    p1.bytesByPath.clear();
    const req0 = p1.requests;
    const bytes0 = p1.bytes;
    const lt0 = await longTasks(first);
    const polls0 = await polls(first);
    const one = await controllerWindow('one page');
    const pollsOne = (await polls(first)) - polls0;
    const lt1 = await longTasks(first);
    const perRefresh = {
      requests: (p1.requests - req0) / pollsOne,
      bytes: (p1.bytes - bytes0) / pollsOne,
    };
    const longTaskMsPerMin = ((lt1.ms - lt0.ms) / windowS) * 60;
    const heaviest = [...p1.bytesByPath]
      .sort((x, y) => y[1] - x[1])
      .slice(0, 5)
      .map(([path, b]) => `${path} ${(b / pollsOne / 1024).toFixed(0)} KiB`);
    say(`one page: bytes per refresh by answer: ${heaviest.join(', ')}`);
    say(
      `one page: ${pollsOne} refreshes, ${perRefresh.requests.toFixed(1)} requests and ${(perRefresh.bytes / 1024).toFixed(0)} KiB each; long tasks ${lt1.count - lt0.count} (${longTaskMsPerMin.toFixed(0)} ms/min, longest ${lt1.maxMs.toFixed(0)} ms)`,
    );

    for (let i = 0; i < 2; i++) {
      const p = await browser.context.newPage();
      await p.setViewportSize({ width: 1366, height: 768 });
      await p.goto(`${ctl.apiUrl}/`);
      await pageReady(p, site.racks.length, site.airHandlers.length, 120_000);
    }
    const three = await controllerWindow('three pages');
    const heap1 = await heapMb(p1);
    const heapMin = (performance.now() - heapT0) / 60_000;
    say(`page heap ${heap0.toFixed(1)} → ${heap1.toFixed(1)} MB over ${heapMin.toFixed(1)} min`);

    ok = true;
    return {
      groups,
      ahus: site.airHandlers.length,
      racks: site.racks.length,
      sensors: sensorCount(site),
      pinned_to_cores: pinned ? 1 : 0,
      page_ready_ms: readyMs,
      rack_px_width: rackBox?.width ?? 0,
      rack_panel_ms: rackPanelMs,
      refreshes_measured: pollsOne,
      requests_per_refresh: perRefresh.requests,
      kib_per_refresh: perRefresh.bytes / 1024,
      long_tasks_per_min: ((lt1.count - lt0.count) / windowS) * 60,
      long_task_ms_per_min: longTaskMsPerMin,
      long_task_ms_max: lt1.maxMs,
      page_heap_mb: heap1,
      page_heap_growth_mb_per_min: (heap1 - heap0) / heapMin,
      ctl_cpu_pct_no_page: none.cpu_pct,
      ctl_cpu_pct_one_page: one.cpu_pct,
      ctl_cpu_pct_three_pages: three.cpu_pct,
      ctl_cpu_ratio_one_page: one.cpu_pct / none.cpu_pct,
      ctl_cpu_ratio_three_pages: three.cpu_pct / none.cpu_pct,
      ctl_lag_p99_ms_no_page: none.lag_p99_ms,
      ctl_lag_p99_ms_one_page: one.lag_p99_ms,
      ctl_lag_p99_ms_three_pages: three.lag_p99_ms,
      ctl_lag_p99_ratio_three_pages: three.lag_p99_ms / none.lag_p99_ms,
      ctl_lag_over_20ms_pct_no_page: none.lag_over_20ms_pct,
      ctl_lag_over_20ms_pct_one_page: one.lag_over_20ms_pct,
      ctl_lag_over_20ms_pct_three_pages: three.lag_over_20ms_pct,
      // PRODUCT.md: lag p99 < 20 ms, i.e. under 1 % of the samples over 20 ms, with three pages open.
      lag_target_met_three_pages: three.lag_over_20ms_pct < 1 ? 1 : 0,
      ctl_hand_ons_no_page: none.hand_ons,
      ctl_hand_ons_one_page: one.hand_ons,
      ctl_hand_ons_three_pages: three.hand_ons,
      ctl_hand_ons_since_start: three.hand_ons_since_start,
    };
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    await browser?.close().catch(() => {});
    await procs.stopAll();
    if (ok && !values.keep) await rm(dir, { recursive: true, force: true }).catch(() => {});
    else say(`logs kept in ${dir}`);
  }
}
