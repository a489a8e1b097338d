// The arm64 bundle proven on this (x64) machine: its own Node runtime runs under qemu-user
// (Debian's qemu-user-static, with the arm64 libc and libstdc++ of libc6-arm64-cross and
// libstdc++6-arm64-cross as its sysroot), exactly as bin/coolctl runs it: `coolctl --version`,
// `config validate`, then a node that takes c2's place in a running hall (etcd ×3, the
// simulator's Modbus TCP and OPC-UA units, c1) with the node flags of the bundle's own unit, leads
// a group, then — c1 stopped — every group, and drives every unit over both protocols until the
// test stops it. Its RSS and CPU are printed as a sanity figure (emulated: qemu's translation is
// slower and larger than a real arm64 core). The hall runs the production timing of
// deploy/etcd/controller.yaml.example (5 s lease, 1 s keepalive and control period): emulation
// is several times slower than the gateways the chaos timing is tuned for. Skipped, with the
// reason printed, only where qemu cannot run the arm64 runtime.
import { type ChildProcess, execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers.ts';
import { Hall } from '../support/hall.ts';
import {
  buildRelease,
  packagedNodeConfig,
  procFigures,
  procLifeS,
  qemuProblem,
  startLogged,
  stop,
  underQemu,
  unitCommand,
  waitRunning,
} from './package-release.ts';

const run = promisify(execFile);

/** deploy/etcd/controller.yaml.example's timing. */
const PRODUCTION_TIMING = {
  leaseTtlS: 5,
  keepaliveIntervalMs: 1000,
  safetyMarginMs: 500,
  etcdCallTimeoutMs: 1000,
  periodMs: 1000,
};

let hall: Hall | undefined;
let tmp = '';
let bundle = '';
let version = '';
let node: ChildProcess | undefined;
let problem: string | null = null;

beforeAll(async () => {
  const release = await buildRelease();
  version = release.version;
  tmp = await mkdtemp(join(tmpdir(), 'coolctl-arm64-'));
  await run('tar', ['-xzf', release.arch.arm64!.tarball, '-C', tmp]);
  bundle = join(tmp, `coolctl-${version}-linux-arm64`);
  problem = qemuProblem(join(bundle, 'node/bin/node'));
  if (problem) {
    process.stdout.write(`arm64 bundle not run: ${problem}\n`);
    return;
  }
  hall = await Hall.start({
    name: 'arm64',
    controllers: 2,
    groups: 2,
    airHandlers: 4,
    opcuaShare: 0.5,
    timing: PRODUCTION_TIMING,
  });
}, 600_000);

afterAll(async () => {
  if (node) await stop(node, 20_000);
  await hall?.stopAll();
  if (tmp) await rm(tmp, { recursive: true, force: true });
}, 60_000);

/** The bundle's CLI under qemu, as bin/coolctl runs it (this host cannot exec arm64 binaries). */
function coolctl(args: string[]) {
  return underQemu(join(bundle, 'node/bin/node'), [join(bundle, 'dist/src/cli.js'), ...args]);
}

describe('the arm64 bundle under qemu', () => {
  it('is arm64 throughout, and its coolctl answers --version and config validate', async (ctx) => {
    ctx.skip(problem !== null, `qemu cannot run the arm64 runtime here: ${problem}`);
    const arch = await run(...spread(underQemu(join(bundle, 'node/bin/node'), ['-p', 'process.arch'])));
    expect(arch.stdout.trim()).toBe('arm64');
    const v = await run(...spread(coolctl(['--version'])), { timeout: 120_000 });
    expect(v.stdout.trim()).toBe(version);
    const config = await packagedNodeConfig({
      hallDir: hall!.dir,
      node: 'c2',
      etcDir: join(tmp, 'etc'),
      stateDir: join(tmp, 'state'),
    });
    const ok = await run(...spread(coolctl(['config', 'validate', config, '--node', 'c2'])), {
      timeout: 120_000,
    });
    expect(ok.stdout).toMatch(/valid/);
    const bad = join(tmp, 'bad.yaml');
    await writeFile(bad, 'cluster: {}\n');
    const refused = await run(...spread(coolctl(['config', 'validate', bad, '--node', 'c2'])), {
      timeout: 120_000,
    }).then(
      () => null,
      (err: { code: number }) => err,
    );
    expect(refused?.code).toBe(2);
  }, 300_000);

  it('joins a running hall, leads a group, then drives Modbus and OPC-UA units of every group', async (ctx) => {
    ctx.skip(problem !== null, `qemu cannot run the arm64 runtime here: ${problem}`);
    const h = hall!;
    await h.kill('c2', 'SIGTERM');
    await h.waitForLeaders({ among: ['c1'], timeoutMs: 30_000 });
    const seq0 = await h.lastSeq();

    // The bundle's own unit: its node flags and entry point (its LD_PRELOAD of the host's
    // jemalloc does not apply to an arm64 process, so the unit's environment is left out).
    const unit = unitCommand(join(bundle, 'deploy/systemd/coolctl@.service'), {
      instance: 'c2',
      release: bundle,
      etc: join(tmp, 'etc'),
    });
    const logPath = join(h.dir, 'c2.log');
    node = startLogged(underQemu(unit.cmd, unit.args), logPath, {});
    const startMs = await waitRunning(node, 'c2', logPath, 180_000);

    await h.waitForLeaders({
      among: ['c1', 'c2'],
      timeoutMs: 60_000,
      where: (l) => [...l.values()].some((x) => x.node === 'c2'),
    });
    // c1 goes: the arm64 node takes every group, so it drives units of both protocols.
    await h.kill('c1', 'SIGTERM');
    const leaders = await h.waitForLeaders({
      among: ['c2'],
      timeoutMs: 60_000,
      where: (l) => [...l.values()].every((x) => x.node === 'c2'),
    });
    const ahus = Object.values(h.groups).flat();
    const epochOf = (ahu: string) =>
      leaders.get(Object.entries(h.groups).find(([, a]) => a.includes(ahu))![0])!.epoch;
    const read = await waitFor(
      "an accepted write to every unit under the arm64 node's epoch",
      async () => {
        const r = await h.journal(seq0);
        return ahus.every((a) => r.entries.some((e) => e.ahu === a && e.accepted && e.epoch === epochOf(a)))
          ? r
          : null;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    const protocols = new Set(
      read.entries.filter((e) => e.accepted && e.epoch === epochOf(e.ahu)).map((e) => e.protocol),
    );
    expect([...protocols].sort()).toEqual(['modbus-tcp', 'opcua']);

    const fig = procFigures(node.pid!);
    const lifeS = procLifeS(node.pid!);
    process.stdout.write(
      `arm64 node (emulated by qemu): running after ${(startMs / 1000).toFixed(1)} s; leads ${leaders.size} groups, ` +
        `${ahus.length} units; RSS ${fig.rssMb.toFixed(0)} MB, CPU ${((100 * fig.cpuS) / lifeS).toFixed(0)} % of one core over its ${lifeS.toFixed(0)} s\n`,
    );

    // Stopped by the test, the last node hands every unit to its local control.
    const seq1 = await h.lastSeq();
    expect(await stop(node, 30_000)).toBe(0);
    const released = (await h.journal(seq1)).entries.filter(
      (e) => e.accepted && e.values.remoteEnable === false,
    );
    expect(new Set(released.map((e) => e.ahu))).toEqual(new Set(ahus));
    expect((await h.check()).violations.map((v) => v.message)).toEqual([]);
  }, 420_000);
});

function spread(c: { cmd: string; args: string[] }): [string, string[]] {
  return [c.cmd, c.args];
}
