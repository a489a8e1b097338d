// `npm run package [-- --arch arm64,x64] [--out release] [--if-changed]`: the offline release of
// this version for each architecture (docs/packaging.md):
//   release/VERSION/coolctl-VERSION-linux-ARCH.tar.gz      controller: compiled JS, its packages, Node
//   release/VERSION/coolctl_VERSION_DEBARCH.deb            the same as a Debian package
//   release/VERSION/coolctl-sim-VERSION-linux-ARCH.tar.gz  the simulator with its own packages and Node
// The Node runtime is the npm registry's node-linux-ARCH at the version the lock pins, fetched once
// into release/cache. --if-changed does nothing when release/VERSION was built from the same inputs
// (the tests and the bench build through it). Exit 0 built, 1 failed.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { copyPackages, foreignBinaries, linkNodeBin, tarGz, writeLauncher } from './package/bundle.ts';
import { buildDeb, stageDeb } from './package/deb.ts';
import { closure, importedPackages, type Lock, readLock } from './package/deps.ts';
import { lockedNodeVersion, nodeTarball, unpackNode } from './package/runtime.ts';

const REPO = resolve(import.meta.dirname, '..');
const ARCHES: Record<string, { deb: string }> = { arm64: { deb: 'arm64' }, x64: { deb: 'amd64' } };

/** What the release is built from: a change to any of these builds it again under --if-changed. */
const INPUTS = [
  'package.json',
  'package-lock.json',
  'tsconfig.json',
  'tsconfig.build.json',
  'README.md',
  'src',
  'firmware-sim',
  'config/profiles',
  'config/examples/gateway.yaml',
  'config/demo-site.yaml',
  'docs',
  'deploy/systemd',
  'deploy/etcd/controller.yaml.example',
  'deploy/debian',
  'scripts/package.ts',
  'scripts/package',
];

const started = performance.now();
const log = (s: string) =>
  process.stderr.write(`${s} (${((performance.now() - started) / 1000).toFixed(1)} s)\n`);

export interface ReleaseFiles {
  version: string;
  dir: string;
  /** Per architecture (arm64, x64): its files' paths. */
  arch: Record<string, { tarball: string; deb: string; sim: string }>;
}

export function releaseFiles(out: string, version: string, arches: string[]): ReleaseFiles {
  const dir = join(out, version);
  const arch: ReleaseFiles['arch'] = {};
  for (const a of arches)
    arch[a] = {
      tarball: join(dir, `coolctl-${version}-linux-${a}.tar.gz`),
      deb: join(dir, `coolctl_${version}_${ARCHES[a]!.deb}.deb`),
      sim: join(dir, `coolctl-sim-${version}-linux-${a}.tar.gz`),
    };
  return { version, dir, arch };
}

function inputsDigest(extra: string): string {
  const h = createHash('sha256').update(extra);
  for (const input of INPUTS) {
    const abs = join(REPO, input);
    const files = statSync(abs).isDirectory()
      ? readdirSync(abs, { recursive: true, withFileTypes: true })
          .filter((e) => e.isFile())
          .map((e) => join(e.parentPath, e.name))
          .sort()
      : [abs];
    for (const f of files)
      h.update(`${relative(REPO, f)}\0`)
        .update(readFileSync(f))
        .update('\0');
  }
  return h.digest('hex');
}

function git(args: string[]): string | null {
  try {
    return execFileSync('git', args, {
      cwd: REPO,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return null;
  }
}

/** Compiles src/ and firmware-sim/ into `out` (as `npm run build` does, without touching dist/). */
function compile(stage: string): string {
  const out = join(stage, 'build');
  const tsconfig = join(stage, 'tsconfig.json');
  writeFileSync(
    tsconfig,
    JSON.stringify({
      extends: join(REPO, 'tsconfig.build.json'),
      compilerOptions: { outDir: out, rootDir: REPO, typeRoots: [join(REPO, 'node_modules/@types')] },
      include: [join(REPO, 'src'), join(REPO, 'firmware-sim')],
    }),
  );
  log('package: compiling src/ and firmware-sim/');
  execFileSync(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', tsconfig], {
    stdio: 'inherit',
  });
  cpSync(join(REPO, 'src/api/ui'), join(out, 'src/api/ui'), { recursive: true });
  cpSync(join(REPO, 'config/profiles'), join(out, 'config/profiles'), { recursive: true });
  writeFileSync(join(out, 'package.json'), '{ "type": "module" }\n');
  return out;
}

/** A bundle's package.json: ES modules, and the packages it ships at their locked versions. */
function bundlePackageJson(name: string, version: string, roots: string[], lock: Lock): string {
  const dependencies = Object.fromEntries(
    roots.sort().map((r) => [r, lock.packages[`node_modules/${r}`]?.version ?? 'unknown']),
  );
  return `${JSON.stringify({ name, version, private: true, type: 'module', license: 'Apache-2.0', dependencies }, null, 2)}\n`;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      arch: { type: 'string', default: 'arm64,x64' },
      out: { type: 'string', default: join(REPO, 'release') },
      'if-changed': { type: 'boolean', default: false },
    },
    strict: true,
  });
  const arches = values.arch.split(',').filter(Boolean);
  for (const a of arches)
    if (!ARCHES[a]) throw new Error(`--arch: ${a} is not one of ${Object.keys(ARCHES).join(', ')}`);
  const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
    version: string;
    dependencies: Record<string, string>;
    devDependencies: Record<string, string>;
  };
  const version = pkg.version;
  const lock = readLock(REPO);
  const nodeVersion = lockedNodeVersion(lock);
  const out = resolve(values.out);
  const files = releaseFiles(out, version, arches);
  const digestFile = join(files.dir, 'inputs.sha256');
  const digest = inputsDigest(`node ${nodeVersion}`);
  const outputs = Object.values(files.arch).flatMap((f) => [f.tarball, f.deb, f.sim]);
  if (
    values['if-changed'] &&
    existsSync(digestFile) &&
    readFileSync(digestFile, 'utf8').trim() === digest &&
    outputs.every((f) => existsSync(f))
  ) {
    log(`package: ${relative(REPO, files.dir)} is up to date`);
    printSizes(outputs);
    return 0;
  }

  const commit = git(['rev-parse', 'HEAD']) ?? 'unknown';
  const dirty = (git(['status', '--porcelain', '--', ...INPUTS]) ?? '') !== '';
  const mtimeS = Number(process.env.SOURCE_DATE_EPOCH ?? git(['log', '-1', '--format=%ct']) ?? 0);
  const stage = mkdtempSync(join(tmpdir(), 'coolctl-package-'));
  try {
    const build = compile(stage);
    // The release states what its own code reports: VERSION, and the wire versions it speaks
    // (a rolling upgrade reads them from release.json, docs/upgrade.md).
    const reported = (await import(pathToFileURL(join(build, 'src/version.js')).href)) as {
      VERSION: string;
      WIRE?: unknown;
    };
    if (reported.VERSION !== version)
      throw new Error(
        `src/version.ts says ${reported.VERSION}, package.json ${version}: one version per release`,
      );
    const controller = importedPackages([join(build, 'src')]);
    for (const f of controller.files)
      if (!f.startsWith(join(build, 'src/')))
        throw new Error(`${relative(build, f)}: the controller imports outside src/`);
    // package.json's dependencies are exactly what the controller imports: the simulator's belong
    // to devDependencies (its own bundle takes them from the lock).
    const declared = new Set(Object.keys(pkg.dependencies));
    const undeclared = [...controller.packages].filter(([p]) => !declared.has(p));
    const unused = [...declared].filter((d) => !controller.packages.has(d));
    if (undeclared.length > 0 || unused.length > 0)
      throw new Error(
        `package.json dependencies must be what src/ imports:${undeclared.map(([p, f]) => `\n  missing ${p} (imported by ${relative(build, f)})`).join('')}${unused.map((u) => `\n  not imported by src/: ${u} (a devDependency, if the simulator or tests use it)`).join('')}`,
      );
    // The broker's thread is started by URL (new Worker), not imported: named here as an entry.
    const sim = importedPackages([
      join(build, 'firmware-sim/main.js'),
      join(build, 'firmware-sim/mesh/broker-thread.js'),
    ]);
    const simRoots = [...sim.packages.keys()];
    for (const [p, f] of sim.packages)
      if (!declared.has(p) && !(p in pkg.devDependencies))
        throw new Error(`${relative(build, f)} imports ${p}, which package.json does not list`);

    mkdirSync(files.dir, { recursive: true });
    for (const f of outputs) rmSync(f, { force: true });
    rmSync(digestFile, { force: true });
    // Staged first, then packed: the compressors run side by side, one per core.
    const jobs: { what: string; run: () => Promise<void> }[] = [];
    const packInto = (what: string, file: string, pack: (tmp: string) => Promise<void>) =>
      jobs.push({
        what,
        run: async () => {
          await pack(`${file}.tmp`);
          renameSync(`${file}.tmp`, file);
        },
      });
    for (const arch of arches) {
      const target = { os: 'linux', cpu: arch };
      const runtime = nodeTarball(join(out, 'cache'), arch, nodeVersion, log);
      const release = {
        name: 'coolctl',
        version,
        ...(reported.WIRE ? { wire: reported.WIRE } : {}),
        os: 'linux',
        cpu: arch,
        node: nodeVersion,
        commit,
        dirty,
      };
      const f = files.arch[arch]!;

      log(`package: staging coolctl ${version} linux-${arch}`);
      const bundle = join(stage, arch, `coolctl-${version}-linux-${arch}`);
      cpSync(join(build, 'src'), join(bundle, 'dist/src'), { recursive: true });
      cpSync(join(build, 'config'), join(bundle, 'dist/config'), { recursive: true });
      copyPackages(REPO, closure(lock, controller.packages.keys(), target), bundle, target);
      unpackNode(runtime, join(bundle, 'node'));
      linkNodeBin(bundle);
      writeLauncher(bundle, 'coolctl', join(REPO, 'scripts/package/coolctl.sh'));
      cpSync(join(REPO, 'README.md'), join(bundle, 'README.md'));
      cpSync(join(REPO, 'docs'), join(bundle, 'docs'), { recursive: true });
      // For an install from the tarball (the .deb puts them in their places itself).
      cpSync(join(REPO, 'deploy/systemd'), join(bundle, 'deploy/systemd'), { recursive: true });
      cpSync(
        join(REPO, 'deploy/etcd/controller.yaml.example'),
        join(bundle, 'deploy/controller.yaml.example'),
      );
      cpSync(join(REPO, 'config/examples/gateway.yaml'), join(bundle, 'deploy/gateway.yaml.example'));
      writeFileSync(
        join(bundle, 'package.json'),
        bundlePackageJson('coolctl', version, [...controller.packages.keys()], lock),
      );
      writeFileSync(join(bundle, 'release.json'), `${JSON.stringify(release, null, 2)}\n`);
      checkArch(bundle, arch);
      packInto(`coolctl linux-${arch}`, f.tarball, (tmp) => tarGz(bundle, tmp, mtimeS));
      const debTree = join(stage, arch, 'deb');
      stageDeb({ repo: REPO, bundle, version, debArch: ARCHES[arch]!.deb, nodeVersion, stage: debTree });
      packInto(`coolctl .deb ${ARCHES[arch]!.deb}`, f.deb, (tmp) => buildDeb(debTree, tmp));

      log(`package: staging coolctl-sim ${version} linux-${arch}`);
      const simBundle = join(stage, arch, `coolctl-sim-${version}-linux-${arch}`);
      for (const file of sim.files) cpSync(file, join(simBundle, 'dist', relative(build, file)));
      cpSync(join(build, 'config'), join(simBundle, 'dist/config'), { recursive: true });
      cpSync(join(REPO, 'config/demo-site.yaml'), join(simBundle, 'config/demo-site.yaml'));
      copyPackages(REPO, closure(lock, simRoots, target), simBundle, target);
      unpackNode(runtime, join(simBundle, 'node'));
      writeLauncher(simBundle, 'coolctl-sim', join(REPO, 'scripts/package/coolctl-sim.sh'));
      writeFileSync(
        join(simBundle, 'package.json'),
        bundlePackageJson('coolctl-sim', version, simRoots, lock),
      );
      writeFileSync(
        join(simBundle, 'release.json'),
        `${JSON.stringify({ ...release, name: 'coolctl-sim' }, null, 2)}\n`,
      );
      checkArch(simBundle, arch);
      packInto(`coolctl-sim linux-${arch}`, f.sim, (tmp) => tarGz(simBundle, tmp, mtimeS));
    }
    const workers = Math.max(1, Math.min(availableParallelism(), jobs.length));
    await Promise.all(
      Array.from({ length: workers }, async () => {
        for (let job = jobs.shift(); job; job = jobs.shift()) {
          await job.run();
          log(`package: packed ${job.what}`);
        }
      }),
    );
    const sums = execFileSync(
      'sha256sum',
      outputs.map((o) => relative(files.dir, o)),
      {
        cwd: files.dir,
        encoding: 'utf8',
      },
    );
    writeFileSync(join(files.dir, 'SHA256SUMS'), sums);
    writeFileSync(digestFile, `${digest}\n`);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
  printSizes(outputs);
  return 0;
}

function checkArch(dir: string, arch: string): void {
  const bad = foreignBinaries(dir, arch);
  if (bad.length > 0) throw new Error(`${dir}: binaries not for ${arch}:\n  ${bad.join('\n  ')}`);
}

function printSizes(outputs: string[]): void {
  for (const o of outputs)
    process.stdout.write(
      `${relative(REPO, o).padEnd(48)} ${(statSync(o).size / 1e6).toFixed(1).padStart(7)} MB\n`,
    );
}

// Only when run (`npm run package`): the tests and the bench import releaseFiles().
if (process.argv[1] && resolve(process.argv[1]) === import.meta.filename) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`package: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
