// `npm run demo` as a user meets it: scripts/demo.ts as its own process (the same Node; the
// install step is the suite's own), then what its printed text says to do — the CLI commands, the
// dashboards, the simulator and a fault — and Ctrl-C, after which nothing of it runs or listens.
// It runs beside a user's demo: its own directory and every port free (COOLCTL_DEMO_DIR,
// COOLCTL_DEMO_PORTS=free); its process group is killed after the tests whatever happened.
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadSite } from '../../src/config/load-site.ts';
import { tmpDir } from '../cluster/harness.ts';
import { canConnect, waitFor } from '../helpers.ts';
import { REPO_ROOT } from '../support/repo.ts';

const site = await loadSite('config/demo-site.yaml');
const GROUPS = site.controlGroups.map((g) => g.id);

interface DemoRun {
  proc: ChildProcess;
  out: string;
  err: string;
  /** Every process it started, seen while it ran: afterAll kills any that is left. */
  children: Set<number>;
}

let root: { dir: string; cleanup: () => Promise<void> } | undefined;
const runs: DemoRun[] = [];

/**
 * `node scripts/demo.ts` in `dir` with every port free, in its own process group so that afterAll
 * can kill it and everything it started in one go.
 */
function startDemo(dir: string): DemoRun {
  const proc = spawn(process.execPath, ['scripts/demo.ts'], {
    cwd: REPO_ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, COOLCTL_DEMO_DIR: dir, COOLCTL_DEMO_PORTS: 'free' },
  });
  const run: DemoRun = { proc, out: '', err: '', children: new Set() };
  proc.stdout!.on('data', (c) => {
    run.out += c;
  });
  proc.stderr!.on('data', (c) => {
    run.err += c;
  });
  runs.push(run);
  return run;
}

/** Its exit code, or 'late' when it has not exited within `ms`. */
function exitOf(run: DemoRun, ms: number): Promise<number | null | 'late'> {
  if (run.proc.exitCode !== null) return Promise.resolve(run.proc.exitCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('late'), ms);
    run.proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

/** The pids whose parent is `pid` (from /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      // The command name may hold spaces and parentheses: the fields after the last ')' are fixed.
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(e));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Whether `pid` still runs (a zombie waiting for its parent does not). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** A file's text, or '' while it does not exist. */
function textOf(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** The printed line's match, or a failure that shows what was printed. */
function printed(pattern: RegExp): RegExpExecArray {
  const m = pattern.exec(demo.out);
  if (!m) throw new Error(`the demo printed no line matching ${pattern}:\n${demo.out}`);
  return m;
}

/** `npm run coolctl -- ARGS` as the demo printed it, run with the same Node: exit code and output. */
function coolctl(line: string): Promise<{ code: number | null; out: string }> {
  const args = line.trim().split(/\s+/);
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['src/cli.ts', ...args], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, COOLCTL_TOKEN: '', COOLCTL_API: '' },
      timeout: 20_000,
      killSignal: 'SIGKILL',
    });
    let out = '';
    p.stdout.on('data', (c) => {
      out += c;
    });
    p.stderr.on('data', (c) => {
      out += c;
    });
    p.once('close', (code) => resolve({ code, out }));
  });
}

/** `coolctl status`'s group table as rows of named cells (columns start where their header does). */
function groupRows(out: string): Record<string, string>[] {
  const lines = out.split('\n');
  const h = lines.findIndex((l) => /^group\s+leader\s+epoch/.test(l));
  if (h < 0) return [];
  const header = lines[h]!;
  const cols = [...header.matchAll(/\S+/g)].map((m) => ({ name: m[0], at: m.index }));
  const rows: Record<string, string>[] = [];
  for (const l of lines.slice(h + 1)) {
    if (l.trim() === '') break;
    rows.push(
      Object.fromEntries(cols.map((c, i) => [c.name, l.slice(c.at, cols[i + 1]?.at ?? l.length).trim()])),
    );
  }
  return rows;
}

let demo: DemoRun;
const tokenFile = () => printed(/^ {2}CLI token\s+(\S+)/m)[1]!;
const token = () => readFileSync(tokenFile(), 'utf8').trim();
const simStateUrl = () => printed(/^ {2}simulator\s+(http:\/\/\S+\/sim\/state)\s/m)[1]!;
const dashboards = () => [...demo.out.matchAll(/^ {2}dashboard (c\d)\s+(http:\/\/\S+)$/gm)].map((m) => m[2]!);

beforeAll(async () => {
  root = await tmpDir('demo-script');
  demo = startDemo(join(root.dir, 'demo'));
}, 10_000);

afterAll(async () => {
  for (const run of runs) {
    const pid = run.proc.pid;
    if (pid === undefined) continue;
    for (const c of childrenOf(pid)) run.children.add(c);
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // the group is gone: the demo stopped as it should
    }
    for (const c of run.children) {
      try {
        if (running(c)) process.kill(c, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  await root?.cleanup();
}, 30_000);

describe('npm run demo', () => {
  it('says it is running within a minute, and its controllers, simulator and etcd run', async () => {
    await waitFor(
      'the demo to print "coolctl demo is running" or exit',
      () => demo.out.includes('coolctl demo is running') || demo.proc.exitCode !== null,
      { timeoutMs: 60_000, intervalMs: 100 },
    ).catch((err: Error) => {
      throw new Error(`${err.message}\nstdout:\n${demo.out}\nstderr:\n${demo.err}`);
    });
    expect(demo.proc.exitCode, `the demo exited\nstdout:\n${demo.out}\nstderr:\n${demo.err}`).toBeNull();
    for (const c of childrenOf(demo.proc.pid!)) demo.children.add(c);
    // 3 etcd members, the simulator, 3 controllers.
    expect(demo.children.size, `children of the demo: ${[...demo.children].join(' ')}`).toBe(7);
    expect(dashboards()).toHaveLength(3);
    expect(tokenFile()).toBe(join(root!.dir, 'demo', 'admin.token'));
    expect(demo.out).toContain(`logs             ${join(root!.dir, 'demo')}/{sim,c1,c2,c3}.log`);
  }, 70_000);

  it('its printed `coolctl status` shows every group of the site led and driven', async () => {
    const cmd = printed(/^ {2}cluster\s+npm run coolctl -- (status .+)$/m)[1]!;
    expect(cmd).toContain(`--token-file ${tokenFile()}`);
    let last = { code: null as number | null, out: '' };
    // The demo starts rebalancing as it prints: a group may be between two leaders for a moment.
    await waitFor(
      'every group led and driven in `coolctl status`',
      async () => {
        last = await coolctl(cmd);
        const rows = groupRows(last.out);
        return (
          last.code === 0 &&
          rows.length === GROUPS.length &&
          GROUPS.every((g) =>
            rows.some((r) => r.group === g && /^c\d$/.test(r.leader ?? '') && r.driven === 'yes'),
          ) &&
          !last.out.includes('warnings:')
        );
      },
      { timeoutMs: 30_000, intervalMs: 500 },
    ).catch((err: Error) => {
      throw new Error(`${err.message}\nlast answer (exit ${last.code}):\n${last.out}`);
    });
    expect(groupRows(last.out).map((r) => r.group)).toEqual(GROUPS);
  }, 40_000);

  it('a second demo in the same directory is refused and leaves the running one alone', async () => {
    const second = startDemo(join(root!.dir, 'demo'));
    const code = await exitOf(second, 20_000);
    expect(code, `the second demo\n${second.out}\n${second.err}`).toBe(1);
    expect(second.err).toContain(
      `demo: a demo is already running from ${join(root!.dir, 'demo')} (pid ${demo.proc.pid})`,
    );
    // Its token, logs and etcd data are where they were: the printed commands still work.
    const r = await coolctl(printed(/^ {2}cluster\s+npm run coolctl -- (status .+)$/m)[1]!);
    expect(r.code, r.out).toBe(0);
  }, 30_000);

  it('its printed `coolctl history` reads the audit trail: the admin signed in', async () => {
    const cmd = printed(/^ {2}audit trail\s+npm run coolctl -- (history .+)$/m)[1]!;
    const r = await coolctl(cmd);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/admin \(admin\) via c1: POST \/api\/v1\/auth\/sign-in/);
  }, 30_000);

  it('each printed dashboard serves the page; /metrics wants the token', async () => {
    for (const url of dashboards()) {
      const page = await fetch(url, { signal: AbortSignal.timeout(5_000) });
      expect(page.status, url).toBe(200);
      expect(page.headers.get('content-type')).toMatch(/^text\/html/);
      expect(await page.text()).toContain('<title>coolctl</title>');
      const anonymous = await fetch(new URL('/metrics', url), { signal: AbortSignal.timeout(5_000) });
      expect(anonymous.status, `${url}metrics without a token`).toBe(401);
      const scraped = await fetch(new URL('/metrics', url), {
        headers: { authorization: `Bearer ${token()}` },
        signal: AbortSignal.timeout(5_000),
      });
      expect(scraped.status, `${url}metrics with the demo's token`).toBe(200);
      expect(await scraped.text()).toMatch(/^# HELP coolctl_/m);
    }
  }, 30_000);

  it('the printed simulator answers, and the printed trip shows as an alarm', async () => {
    const state = await fetch(simStateUrl(), { signal: AbortSignal.timeout(5_000) });
    expect(state.status).toBe(200);
    const ahus = ((await state.json()) as { ahus: { id: string }[] }).ahus.map((a) => a.id);
    expect(ahus).toEqual(site.airHandlers.map((a) => a.id));

    // The printed curl, sent as curl would send it.
    const [, url, headerName, headerValue, body] = printed(
      /curl -s -XPOST (\S+) -H '([^':]+):\s*([^']+)' -d '([^']+)'/,
    );
    const trip = await fetch(url!, {
      method: 'POST',
      headers: { [headerName!]: headerValue! },
      body,
      signal: AbortSignal.timeout(5_000),
    });
    expect(trip.status, await trip.clone().text()).toBe(200);
    const unit = (JSON.parse(body!) as { ahu: string }).ahu;

    const api = dashboards()[0]!;
    await waitFor(
      `a unit-tripped alarm for ${unit} in GET /api/v1/alarms`,
      async () => {
        const r = await fetch(new URL('/api/v1/alarms', api), {
          headers: { authorization: `Bearer ${token()}` },
          signal: AbortSignal.timeout(5_000),
        });
        const { alarms } = (await r.json()) as { alarms: { kind: string; subject: string; state: string }[] };
        return alarms.some((a) => a.kind === 'unit-tripped' && a.subject === unit && a.state === 'raised');
      },
      { timeoutMs: 20_000, intervalMs: 250 },
    );
  }, 30_000);

  it('stops on SIGINT: "demo: stopped", exit 0, no process of it left, every port free', async () => {
    expect(demo.err, 'nothing the demo started exited on its own').not.toMatch(/exited/);
    // Every port the demo's processes listen on, from what it printed and the files it wrote.
    const sim = (await (await fetch(simStateUrl(), { signal: AbortSignal.timeout(5_000) })).json()) as {
      mqttBrokerUrl: string;
      ahus: { endpoint: string }[];
    };
    const config = parse(readFileSync(join(root!.dir, 'demo', 'controller.yaml'), 'utf8')) as {
      nodes: Record<string, { api: string; peer: string }>;
    };
    const ports = new Set(
      [
        ...dashboards(),
        simStateUrl(),
        sim.mqttBrokerUrl,
        ...sim.ahus.map((a) => a.endpoint),
        ...printed(/^ {2}etcd\s+(.+)$/m)[1]!.split(/\s+/),
        ...Object.values(config.nodes).flatMap((n) => [`tcp://${n.api}`, `tcp://${n.peer}`]),
      ].map((u) => Number(new URL(u).port)),
    );
    expect(ports.size).toBeGreaterThanOrEqual(14);
    for (const p of ports) expect(await canConnect(p), `port ${p} listens while the demo runs`).toBe(true);

    const exited = exitOf(demo, 30_000);
    demo.proc.kill('SIGINT');
    expect(await exited, `the demo's exit after SIGINT\n${demo.out}\n${demo.err}`).toBe(0);
    expect(demo.out).toMatch(/demo: stopped\n$/);
    const left = [...demo.children].filter(running);
    expect(left, 'processes the demo started, still running after it exited').toEqual([]);
    for (const p of ports) expect(await canConnect(p), `port ${p} after the demo stopped`).toBe(false);
  }, 45_000);
});

describe('npm run demo, stopped while it starts', () => {
  it('Ctrl-C while the controllers start: "demo: stopped", exit 0, nothing left running', async () => {
    const dir = join(root!.dir, 'early');
    const run = startDemo(dir);
    // A controller is up to its peer channel, not yet running: the demo still waits for it.
    await waitFor(
      'a controller of the demo to start',
      () => {
        for (const c of childrenOf(run.proc.pid!)) run.children.add(c);
        return run.proc.exitCode !== null || textOf(join(dir, 'c1.log')).includes('peer channel listening');
      },
      { timeoutMs: 40_000, intervalMs: 20 },
    );
    expect(run.proc.exitCode, `the demo exited while starting\n${run.out}\n${run.err}`).toBeNull();
    for (const c of childrenOf(run.proc.pid!)) run.children.add(c);
    const exited = exitOf(run, 30_000);
    run.proc.kill('SIGINT');
    expect(await exited, `the demo's exit after SIGINT\n${run.out}\n${run.err}`).toBe(0);
    expect(run.out).toMatch(/demo: stopped\n$/);
    expect(run.out).not.toContain('coolctl demo is running');
    expect([...run.children].filter(running), 'processes left running').toEqual([]);
  }, 60_000);
});
