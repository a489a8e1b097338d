// The offline release: each bundle's size (compressed, and unpacked), and how the arm64 node starts
// beside the x64 one — each from its own bundle, as its unit runs it (node flags, compiled entry),
// the arm64 runtime under qemu-user on this x64 machine (emulated: slower and larger than a real
// arm64 core, a sanity figure, not a gateway's). Per run and architecture: a one-node daemon on the
// demo site against a fresh single-member etcd (the production timing of
// deploy/etcd/controller.yaml.example), timed from spawn until /readyz answers 200 (a live
// lease, in the elections), its CPU time to then, and its RSS at ready and 10 s later. The x64
// figures are the baseline of the same run. Args: [--runs 2] [--settle-s 10]
import { type ChildProcess, execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parse, stringify } from 'yaml';
import { writeOneNodeConfig } from '../test/daemon/one-node.ts';
import {
  buildRelease,
  procFigures,
  qemuProblem,
  startLogged,
  stop,
  underQemu,
  unitCommand,
} from '../test/deploy/package-release.ts';
import { startEtcdCluster } from '../test/support/etcd-cluster.ts';
import { delay, median } from './lib/stats.ts';

interface Start {
  readyS: number;
  cpuToReadyS: number;
  rssReadyMb: number;
  rssSettledMb: number;
}

const MB = 1e6;

export async function run(argv: string[]): Promise<Record<string, number>> {
  const { values } = parseArgs({
    args: argv,
    options: { runs: { type: 'string', default: '2' }, 'settle-s': { type: 'string', default: '10' } },
  });
  const runs = Number(values.runs);
  const settleS = Number(values['settle-s']);
  const release = await buildRelease();
  const figures: Record<string, number> = {};
  for (const arch of ['x64', 'arm64'] as const) {
    const f = release.arch[arch]!;
    figures[`${arch}_bundle_mb`] = size(f.tarball);
    figures[`${arch}_bundle_unpacked_mb`] = unpacked(f.tarball);
    figures[`${arch}_deb_mb`] = size(f.deb);
    figures[`${arch}_sim_bundle_mb`] = size(f.sim);
  }

  const tmp = await mkdtemp(join(tmpdir(), 'coolctl-bench-package-'));
  const etcd = await startEtcdCluster({ size: 1, secure: false });
  try {
    const bundles: Record<string, string> = {};
    for (const arch of ['x64', 'arm64'] as const) {
      execFileSync('tar', ['-xzf', release.arch[arch]!.tarball, '-C', tmp]);
      bundles[arch] = join(tmp, `coolctl-${release.version}-linux-${arch}`);
    }
    const problem = qemuProblem(join(bundles.arm64!, 'node/bin/node'));
    if (problem) process.stdout.write(`arm64 not measured: ${problem}\n`);
    const starts: Record<string, Start[]> = { x64: [], arm64: [] };
    for (let i = 0; i < runs; i++) {
      for (const arch of problem ? (['x64'] as const) : (['x64', 'arm64'] as const)) {
        const dir = join(tmp, `${arch}-${i}`);
        await mkdir(dir);
        const s = await measureStart(
          bundles[arch]!,
          arch,
          dir,
          etcd.clientConfig(),
          `/bench-package/${arch}-${i}`,
          settleS,
        );
        starts[arch]!.push(s);
        process.stdout.write(
          `${arch} run ${i + 1}: ready after ${s.readyS.toFixed(2)} s (CPU ${s.cpuToReadyS.toFixed(2)} s), RSS ${s.rssReadyMb.toFixed(0)} MB at ready, ${s.rssSettledMb.toFixed(0)} MB ${settleS} s later\n`,
        );
      }
    }
    for (const [arch, list] of Object.entries(starts)) {
      if (list.length === 0) continue;
      figures[`${arch}_ready_s`] = median(list.map((s) => s.readyS));
      figures[`${arch}_cpu_to_ready_s`] = median(list.map((s) => s.cpuToReadyS));
      figures[`${arch}_rss_ready_mb`] = median(list.map((s) => s.rssReadyMb));
      figures[`${arch}_rss_settled_mb`] = median(list.map((s) => s.rssSettledMb));
    }
    if (figures.arm64_ready_s !== undefined) {
      figures.arm64_vs_x64_ready_ratio = figures.arm64_ready_s / figures.x64_ready_s!;
      figures.arm64_vs_x64_rss_settled_ratio = figures.arm64_rss_settled_mb! / figures.x64_rss_settled_mb!;
    }
    figures.runs = runs;
    return figures;
  } finally {
    await etcd.stop();
    await rm(tmp, { recursive: true, force: true });
  }
}

async function measureStart(
  bundle: string,
  arch: 'x64' | 'arm64',
  dir: string,
  etcd: Parameters<typeof writeOneNodeConfig>[0]['etcd'],
  prefix: string,
  settleS: number,
): Promise<Start> {
  const { config, api } = await writeOneNodeConfig({ dir, etcd, prefix, periodMs: 1000 });
  // deploy/etcd/controller.yaml.example's timing for both: the test timing's 500 ms etcd calls are
  // too short for an emulated start.
  const cfg = parse(await readFile(config, 'utf8')) as { cluster: Record<string, unknown> };
  Object.assign(cfg.cluster, {
    leaseTtlS: 5,
    keepaliveIntervalMs: 1000,
    safetyMarginMs: 500,
    etcdCallTimeoutMs: 1000,
  });
  await writeFile(config, stringify(cfg));
  const unit = unitCommand(join(bundle, 'deploy/systemd/coolctl@.service'), {
    instance: 'n1',
    release: bundle,
    etc: dir,
  });
  // The unit reads /etc/coolctl/controller.yaml: here `dir`'s, the one-node config.
  if (!unit.args.includes(config)) throw new Error(`${bundle}: the unit does not read ${config}`);
  const args = unit.args;
  // x64 with the unit's environment (jemalloc); arm64 without: the host's jemalloc is x64.
  const cmd = arch === 'arm64' ? underQemu(unit.cmd, args) : { cmd: unit.cmd, args };
  const t0 = performance.now();
  const child: ChildProcess = startLogged(cmd, join(dir, 'daemon.log'), arch === 'x64' ? unit.env : {});
  try {
    const deadline = t0 + 300_000;
    for (;;) {
      if (child.exitCode !== null) {
        const log = await readFile(join(dir, 'daemon.log'), 'utf8');
        throw new Error(`${arch} daemon exited ${child.exitCode}:\n${log.slice(-3000)}`);
      }
      const ok = await fetch(`${api}/readyz`, { signal: AbortSignal.timeout(1000) }).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) break;
      if (performance.now() > deadline) throw new Error(`${arch} daemon not ready within 300 s`);
      await delay(50);
    }
    const readyS = (performance.now() - t0) / 1000;
    const atReady = procFigures(child.pid!);
    await delay(settleS * 1000);
    const settled = procFigures(child.pid!);
    return { readyS, cpuToReadyS: atReady.cpuS, rssReadyMb: atReady.rssMb, rssSettledMb: settled.rssMb };
  } finally {
    await stop(child, 30_000);
  }
}

function size(file: string): number {
  return Number(execFileSync('stat', ['-c', '%s', file], { encoding: 'utf8' })) / MB;
}

/** The tar stream's length: the bundle's files unpacked (plus tar's small headers). */
function unpacked(tarball: string): number {
  return (
    Number(execFileSync('sh', ['-c', 'gzip -dc "$1" | wc -c', 'sh', tarball], { encoding: 'utf8' })) / MB
  );
}
