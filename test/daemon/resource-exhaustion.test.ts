// The controller daemon on a gateway box whose data partition fills up or was full from the start,
// tried from outside: a real `coolctl run` with its data dir on a small tmpfs of its own, and a lease
// taken away in etcd so that the node must be granted a new one while the lease-id file cannot be
// written. What the operator must see: the node leads again (the file only speeds up a restart, it
// never decides leadership), one error line and one line when the file is written again, not a line
// per attempt; a start on a (nearly) full disk names the data dir, not etcd; and the release CLI on a
// root that cannot be written says which path and why, with no stack trace and nothing left behind.
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { DataDirLock } from '../../src/cluster/data-dir-lock.ts';
import { CoolctlError, ErrorCodes } from '../../src/errors.ts';
import { mountTmpfs, type Tmpfs } from '../gateway/tmpfs.ts';
import { waitFor } from '../helpers.ts';
import { useOneNodeDaemon, writeOneNodeConfig } from './one-node.ts';

const fx = useOneNodeDaemon('resource-exhaustion');
const mounts: Tmpfs[] = [];
afterAll(() => {
  for (const m of mounts.splice(0)) m.unmount();
});

function tmpfs(name: string, sizeKiB?: number): Tmpfs {
  const m = mountTmpfs(join(fx.dir(), name), sizeKiB);
  mounts.push(m);
  return m;
}

const lines = (log: string) =>
  log
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg: string; level: number; lease?: string; err?: { code?: string } });

async function ready(api: string): Promise<boolean> {
  return fetch(`${api}/readyz`, { signal: AbortSignal.timeout(2_000) }).then(
    (r) => r.status === 200,
    () => false,
  );
}

/** Runs `coolctl run` expected to refuse to start: exit code and output, bounded. */
function startRefused(config: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, ['src/cli.ts', 'run', '--config', config, '--node', 'n1'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    proc.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

describe('a data dir that fills up while the node runs', () => {
  it('a new lease is used though its id cannot be written: the node leads again, one line per state change', async () => {
    const base = await writeOneNodeConfig({
      dir: fx.dir(),
      etcd: fx.etcd().clientConfig(),
      prefix: '/coolctl-test/exhaustion',
    });
    // writeOneNodeConfig puts the data dir at <dir>/var: that is where the small disk goes.
    const disk = tmpfs('var');
    fx.run(base.config);
    await waitFor('the node to be ready', () => ready(base.api), { timeoutMs: 60_000, intervalMs: 200 });
    const leaseFile = join(disk.dir, 'lease-id.n1');
    const first = readFileSync(leaseFile, 'utf8').trim();

    disk.fill();
    const mark = fx.log().length;
    // etcd takes the lease away: the keepalive worker must be granted a new one on a full disk.
    await fx.etcd().ctl(['lease', 'revoke', BigInt(first).toString(16)], { asRoot: true });
    await waitFor('the node to lose its lease', () => /"msg":"lease lost"/.test(fx.log().slice(mark)), {
      timeoutMs: 10_000,
    });
    await waitFor('the node to lead again with the full disk', () => ready(base.api), {
      timeoutMs: 20_000,
      intervalMs: 200,
    });
    // A window of keepalive periods on the full disk (what is checked is that nothing more is
    // said): the file is tried again every second, and the failure said once.
    const since = () => lines(fx.log().slice(mark));
    await new Promise((r) => setTimeout(r, 2_500));
    const failing = since().filter((l) => /cannot write the lease id file/.test(l.msg));
    expect(failing).toHaveLength(1);
    expect(failing[0]).toMatchObject({ level: 50, err: { code: 'ENOSPC' } });
    expect(since().filter((l) => /lease grant failed/.test(l.msg))).toEqual([]);
    expect(readFileSync(leaseFile, 'utf8').trim()).toBe(first);
    expect(readdirSync(disk.dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);

    // Space returns: the file names the lease in use, and one line says so.
    const granted = since().filter((l) => l.msg === 'lease granted');
    const current = granted[granted.length - 1]!.lease!;
    disk.free();
    await waitFor(
      'the lease-id file to name the new lease',
      () => BigInt(readFileSync(leaseFile, 'utf8').trim()).toString(16) === current,
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    await waitFor('the recovery line', () => since().some((l) => l.msg === 'lease id file written again'));
    expect(await ready(base.api)).toBe(true);
  }, 120_000);
});

describe('a data dir full at start', () => {
  it('nearly full: the start stops naming the data dir and its setting, not etcd', async () => {
    const disk = tmpfs('nearly-full', 256);
    // Room for a small file, not for what the start writes there (certificates, lock, lease id).
    disk.fill(12);
    const cfgDir = join(fx.dir(), 'nearly-full-cfg');
    mkdirSync(cfgDir);
    const cfg = await writeOneNodeConfig({
      dir: cfgDir,
      etcd: fx.etcd().clientConfig(),
      prefix: '/coolctl-test/exhaustion-start',
    });
    writeFileSync(
      cfg.config,
      readFileSync(cfg.config, 'utf8').replace(/dataDir: .*/, `dataDir: ${disk.dir}`),
    );
    const r = await startRefused(cfg.config);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/cannot use the data dir .*nearly-full \(dataDir in .*\): ENOSPC/);
    expect(r.out).not.toMatch(/cannot use etcd/);
  }, 60_000);

  it('the data dir lock on a full disk: COOLCTL_E_STARTUP naming the file, and no empty lock left', async () => {
    const disk = tmpfs('lock-full');
    disk.fill();
    const err = await new DataDirLock(disk.dir, 'n9', pino({ level: 'silent' })).acquire().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CoolctlError);
    expect((err as CoolctlError).code).toBe(ErrorCodes.STARTUP);
    expect((err as Error).message).toMatch(/cannot write the data dir lock .*coolctl\.lock: ENOSPC/);
    expect(readdirSync(disk.dir).filter((f) => f.startsWith('coolctl.lock'))).toEqual([]);
  });
});

/** `coolctl ARGS`: exit code and stderr, bounded. */
function coolctl(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['src/cli.ts', ...args], { timeout: 30_000 }, (err, _out, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr }),
    );
  });
}

describe('the release root full or read-only', () => {
  it('install and activate fail with the path and the errno, never a stack trace; nothing is left behind', async () => {
    const release = join(fx.dir(), 'release-src');
    mkdirSync(join(release, 'src'), { recursive: true });
    copyFileSync('src/version.ts', join(release, 'src/version.ts'));
    writeFileSync(join(release, 'src/cli.ts'), `// ${'x'.repeat(100_000)}\n`);
    const { VERSION } = await import('../../src/version.ts');
    const root = tmpfs('release-root', 64);

    const full = await coolctl(['release', 'install', release, '--root', root.dir]);
    expect(full.code).toBe(1);
    expect(full.stderr).toMatch(/ENOSPC: no space left on device/);
    expect(full.stderr).not.toMatch(/fatal|\n\s+at /);
    expect(readdirSync(join(root.dir, 'releases'))).toEqual([]);

    writeFileSync(join(release, 'src/cli.ts'), '// small\n');
    expect((await coolctl(['release', 'install', release, '--root', root.dir])).code).toBe(0);
    root.readOnly(true);
    const ro = await coolctl(['release', 'activate', VERSION, '--root', root.dir]);
    expect(ro.code).toBe(1);
    expect(ro.stderr).toMatch(
      new RegExp(`cannot point .*current at ${VERSION.replaceAll('.', '\\.')}: EROFS`),
    );
    expect(ro.stderr).not.toMatch(/fatal|\n\s+at /);
    const elsewhere = tmpfs('release-root-ro', 64);
    elsewhere.readOnly(true);
    const noDir = await coolctl(['release', 'install', release, '--root', elsewhere.dir]);
    expect(noDir.code).toBe(1);
    // (Node says ENOENT for a recursive mkdir on a read-only file system.)
    expect(noDir.stderr).toMatch(/cannot create .*release-root-ro\/releases: (EROFS|ENOENT)/);
    expect(noDir.stderr).not.toMatch(/fatal|\n\s+at /);
    root.readOnly(false);
    expect(readdirSync(root.dir).filter((f) => f.startsWith('.'))).toEqual([]);
  }, 60_000);
});
