// `coolctl status` against a real daemon (one node, real etcd), configured only by the CLI config
// file (COOLCTL_CLI_CONFIG: api, tokenFile, output): per group its leader, epoch, mode, pause,
// overrides, sensor verdict and whether it is driven, in a table or as JSON; the member's config
// hash is the fingerprint of its controller config and site file, published in its member record
// and shown by GET /api/v1/cluster, and it follows a hot reload. `history` shows the operator's
// actions. The warning for members on different configs: pure, from two member records.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatStatus, type StatusReport, statusWarnings } from '../../src/cli/status.ts';
import { configHash } from '../../src/config/config-hash.ts';
import { useOneNodeDaemon, writeOneNodeConfig } from '../daemon/one-node.ts';
import { waitFor } from '../helpers.ts';

const fx = useOneNodeDaemon('cli-status');

describe('coolctl status, history and the CLI config file against a running daemon', () => {
  it('shows every group’s state, the config hash, and follows pause, override and reload', async () => {
    const dir = fx.dir();
    const written = await writeOneNodeConfig({
      dir,
      etcd: fx.etcd().clientConfig(),
      prefix: '/coolctl/status',
    });
    // The site in the test's dir, so a reload can change it.
    const site = join(dir, 'site.yaml');
    copyFileSync('config/demo-site.yaml', site);
    writeFileSync(
      written.config,
      readFileSync(written.config, 'utf8').replace(/^site: .*$/m, `site: ${site}`),
    );
    fx.run(written.config);
    await waitFor(
      'the daemon API',
      async () => (await fetch(`${written.api}/readyz`).catch(() => null))?.ok,
      {
        timeoutMs: 30_000,
      },
    );
    writeFileSync(join(dir, 'admin.pw'), written.admin.password, { mode: 0o600 });
    const env = {
      COOLCTL_API: undefined,
      COOLCTL_TOKEN: undefined,
      COOLCTL_CA_FILE: undefined,
      COOLCTL_OUTPUT: undefined,
    };
    const login = spawnSync(
      process.execPath,
      [
        'src/cli.ts',
        'login',
        '--user',
        'admin',
        '--password-file',
        join(dir, 'admin.pw'),
        '--api',
        written.api,
      ],
      { encoding: 'utf8', timeout: 20_000, env: { ...process.env, ...env } },
    );
    expect(login.status, login.stderr).toBe(0);
    writeFileSync(join(dir, 'token'), login.stdout.trim(), { mode: 0o600 });
    // Only the CLI config file says where the API is and which token to use (relative to the file).
    const cliYaml = join(dir, 'cli.yaml');
    writeFileSync(cliYaml, `api: ${written.api}\ntokenFile: token\noutput: table\n`);
    const cli = async (...args: string[]) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        const p = spawn(process.execPath, ['src/cli.ts', ...args], {
          env: { ...process.env, ...env, COOLCTL_CLI_CONFIG: cliYaml },
        });
        let stdout = '';
        let stderr = '';
        p.stdout.on('data', (d: Buffer) => (stdout += d));
        p.stderr.on('data', (d: Buffer) => (stderr += d));
        const t = setTimeout(() => p.kill('SIGKILL'), 20_000);
        p.once('exit', (status) => {
          clearTimeout(t);
          resolve({ status, stdout, stderr });
        });
      });
    const status = async (): Promise<StatusReport> => {
      const r = await cli('status', '--output', 'json');
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as StatusReport;
    };

    const hash = await configHash(written.config, site);
    expect(hash).toMatch(/^[0-9a-f]{12}$/);
    await waitFor(
      'every group led and driven',
      async () => {
        const s = await status();
        return s.groups.length === 4 && s.groups.every((g) => g.leader === 'n1' && g.driven !== null);
      },
      { timeoutMs: 20_000, intervalMs: 500 },
    );
    let s = await status();
    expect(s.members).toEqual([expect.objectContaining({ node: 'n1', configHash: hash })]);
    for (const g of s.groups) {
      expect(g).toMatchObject({ leader: 'n1', paused: false, overrides: {}, from: 'n1' });
      expect(g.epoch).toBeGreaterThan(0);
      // No sensor broker in this config: every group's sensors are blind, and so is its mode.
      expect(g.sensors).toBe('blind');
      if (g.driven) expect(g.mode).toBe('blind');
    }

    let r = await cli('pause', 'zone-1', '--reason', 'filter change', '--output', 'json');
    expect(r.status, r.stderr).toBe(0);
    r = await cli('override', 'zone-2', 'AHU-02', '--fan', '40');
    expect(r.status, r.stderr).toBe(0);
    await waitFor(
      'the pause and the override in status',
      async () => {
        s = await status();
        const z1 = s.groups.find((g) => g.id === 'zone-1')!;
        const z2 = s.groups.find((g) => g.id === 'zone-2')!;
        return z1.paused && z1.pauseReason === 'filter change' && z2.overrides['AHU-02']?.fanPct === 40;
      },
      { timeoutMs: 10_000, intervalMs: 300 },
    );
    expect(s.warnings).toContain('zone-1 is paused (filter change): its units run on local control');
    // The table (the file's default output): a row per group, the override and the warning.
    r = await cli('status');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^n1\\s+http://127\\.0\\.0\\.1:\\d+\\s+${hash}$`, 'm'));
    expect(r.stdout).toMatch(/^group\s+leader\s+epoch\s+mode\s+paused\s+sensors\s+driven\s+overrides$/m);
    expect(r.stdout).toMatch(/^zone-1\s+n1\s+\d+\s+\S+\s+yes\s+blind\s+(yes|no)\s+-$/m);
    expect(r.stdout).toMatch(/^zone-2\s+n1\s+\d+\s+\S+\s+no\s+blind\s+(yes|no)\s+AHU-02 fan 40%$/m);
    expect(r.stdout).toMatch(/warnings:\n(.*\n)*\s+! zone-1 is paused/);

    // history: the operator's actions, newest last, as JSON or lines.
    r = await cli('history', '--output', 'json');
    const entries = (JSON.parse(r.stdout) as { entries: { kind: string; user?: string; path?: string }[] })
      .entries;
    expect(entries.filter((e) => e.kind === 'operator').map((e) => e.path)).toEqual(
      expect.arrayContaining(['/api/v1/groups/zone-1/pause', '/api/v1/groups/zone-2/overrides/AHU-02']),
    );
    r = await cli('history');
    expect(r.stdout).toMatch(/admin \(admin\) via n1: POST \/api\/v1\/groups\/zone-1\/pause/);

    // A hot reload (the site file changed) publishes the new fingerprint.
    writeFileSync(site, readFileSync(site, 'utf8').replace('itLoadKw: 8.5', 'itLoadKw: 9'));
    const next = await configHash(written.config, site);
    expect(next).not.toBe(hash);
    await waitFor(
      'the new config hash in the member record',
      async () => (await status()).members[0]?.configHash === next,
      {
        timeoutMs: 20_000,
        intervalMs: 500,
      },
    );
  }, 120_000);

  it('a bad CLI config file stops the command with exit 2, naming the file and the key', () => {
    const bad = join(fx.dir(), 'bad-cli.yaml');
    writeFileSync(bad, 'api: http://127.0.0.1:1\noutput: xml\ncolour: blue\n');
    const r = spawnSync(process.execPath, ['src/cli.ts', 'status'], {
      encoding: 'utf8',
      timeout: 20_000,
      env: { ...process.env, COOLCTL_API: undefined, COOLCTL_CLI_CONFIG: bad },
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/bad-cli\.yaml: output: "xml" — want table or json; unknown key "colour"/);
  });
});

describe('status warnings', () => {
  const member = (node: string, configHash: string | null) => ({
    node,
    apiUrl: `http://${node}:8101`,
    startedAtMs: 0,
    configHash,
  });
  const group = {
    id: 'zone-1',
    leader: 'n1',
    epoch: 3,
    mode: 'normal',
    paused: false,
    pauseReason: null,
    overrides: {},
    sensors: 'ok',
    uncoveredRacks: [] as string[],
    recovery: null as { heldS: number; needS: number } | null,
    driven: true,
    problem: null,
    from: 'n1',
  };

  it('warns when members run different configs, naming which node runs which', () => {
    const w = statusWarnings(
      [member('n1', 'aaaaaaaaaaaa'), member('n2', 'aaaaaaaaaaaa'), member('n3', 'bbbbbbbbbbbb')],
      [group],
    );
    expect(w).toEqual([
      'nodes run different configs: aaaaaaaaaaaa on n1, n2; bbbbbbbbbbbb on n3 — copy the same controller config and site file to every node, then systemctl reload coolctl@NODE',
    ]);
    expect(statusWarnings([member('n1', 'aaaaaaaaaaaa'), member('n2', 'aaaaaaaaaaaa')], [group])).toEqual([]);
    expect(statusWarnings([member('n1', 'aaaaaaaaaaaa'), member('n2', null)], [group])).toEqual([
      'n2 publish(es) no config hash (an older coolctl): their configs are not compared',
    ]);
  });

  it('warns about a group without a leader and one led but not driven', () => {
    const w = statusWarnings(
      [member('n1', 'a')],
      [
        { ...group, leader: null, epoch: null, driven: false },
        { ...group, id: 'zone-2', driven: false, problem: 'no unit accepts writes' },
      ],
    );
    expect(w).toEqual(['zone-1 has no leader', 'zone-2 is led by n1 but not driven: no unit accepts writes']);
    const table = formatStatus({ node: 'n1', members: [member('n1', 'a')], groups: [group], warnings: w });
    expect(table).toMatch(/^zone-1\s+n1\s+3\s+normal\s+no\s+ok\s+yes\s+-$/m);
    expect(table).toMatch(/! zone-2 is led by n1 but not driven/);
  });

  it('names the racks nobody watches beside a group’s verdict, capped', () => {
    const racks = ['RA-01', 'RA-02', 'RA-03', 'RA-04', 'RA-05', 'RA-06', 'RA-07'];
    const table = formatStatus({
      node: 'n1',
      members: [member('n1', 'a')],
      groups: [
        { ...group, mode: 'degraded', sensors: 'degraded', uncoveredRacks: ['RA-03'] },
        { ...group, id: 'zone-2', mode: 'degraded', sensors: 'degraded', uncoveredRacks: racks },
      ],
      warnings: [],
    });
    expect(table).toMatch(/^zone-1\s+n1\s+3\s+degraded\s+no\s+degraded \(RA-03\)\s+yes\s+-$/m);
    expect(table).toMatch(/^zone-2 .* degraded \(RA-01, RA-02, RA-03, RA-04, RA-05 \+2 more\)\s+yes/m);
  });

  it('says a group is recovering while its better verdict has not held long enough', () => {
    const table = formatStatus({
      node: 'n1',
      members: [member('n1', 'a')],
      groups: [{ ...group, mode: 'degraded', sensors: 'degraded', recovery: { heldS: 12.7, needS: 60 } }],
      warnings: [],
    });
    expect(table).toMatch(
      /^zone-1\s+n1\s+3\s+degraded\s+no\s+degraded \(recovering: 12 s of 60 s\)\s+yes\s+-$/m,
    );
  });
});
