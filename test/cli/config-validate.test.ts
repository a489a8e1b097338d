// `coolctl config validate` tells a site file from a controller config by what it holds and checks
// each against its own schema: a site file is no longer told "/cluster is required" and "unknown
// setting" for every site key. Pure: the detection, then the CLI as a process on real files.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { detectConfigKind, validateConfigFile } from '../../src/cli/config-validate.ts';

const dir = mkdtempSync(join(tmpdir(), 'coolctl-validate-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const SITE = resolve('config/demo-site.yaml');
const CONTROLLER = resolve('test/fixtures/cluster/controller.yaml');

const cli = (...args: string[]) =>
  spawnSync(process.execPath, ['src/cli.ts', 'config', 'validate', ...args], {
    encoding: 'utf8',
    timeout: 30_000,
  });

describe('which kind of file', () => {
  it('a site file describes the site; a controller config names its site file and the cluster', () => {
    expect(detectConfigKind({ site: { id: 'x', name: 'X' }, rooms: [], racks: [] })).toBe('site');
    expect(detectConfigKind({ site: 'site.yaml', cluster: {}, nodes: {} })).toBe('controller');
    // A half-written site file (no rooms yet) is still a site file.
    expect(detectConfigKind({ site: { id: 'x' }, airHandlers: [] })).toBe('site');
    expect(detectConfigKind({ hello: 'world' })).toBeNull();
    expect(detectConfigKind('text')).toBeNull();
  });
});

describe('coolctl config validate', () => {
  it('a valid site file is checked as a site file', () => {
    const r = cli(SITE);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(
      /valid site file — site demo-hall: 1 rooms, 48 racks, 8 air handlers, 48 sensor nodes, 4 groups/,
    );
  });

  it('a broken site file gets the site schema’s problems with lines, not the controller’s', () => {
    const bad = join(dir, 'bad-site.yaml');
    writeFileSync(
      bad,
      readFileSync(SITE, 'utf8')
        .replace('itLoadKw: 8.5', 'itLoadKw: lots')
        .replace(/room: hall-a\n {4}row: row-1/, 'room: hall-z\n    row: row-1'),
    );
    const r = cli(bad);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/not a valid site file — \d+ problem\(s\)/);
    expect(r.stderr).toMatch(/bad-site\.yaml:\d+ \/racks\/0\/itLoadKw/);
    expect(r.stderr).not.toMatch(/\/cluster|unknown setting/);
  });

  it('a controller config is checked as before, with its site file', async () => {
    const r = cli(CONTROLLER);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/valid — 4 groups, 8 air handlers, 3 nodes, lease TTL 2 s/);
    const j = cli(CONTROLLER, '--output', 'json');
    expect(JSON.parse(j.stdout)).toMatchObject({ kind: 'controller', valid: true, problems: [] });
    expect((await validateConfigFile(CONTROLLER)).kind).toBe('controller');
  });

  it('a file that is neither is told what each would hold; --kind overrides the guess', () => {
    const odd = join(dir, 'odd.yaml');
    writeFileSync(odd, 'hello: world\n');
    let r = cli(odd);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/neither a controller config nor a site file/);
    r = cli(odd, '--kind', 'site', '--output', 'json');
    expect(r.status).toBe(2);
    const j = JSON.parse(r.stdout) as { kind: string; problems: { path: string }[] };
    expect(j.kind).toBe('site');
    expect(j.problems.map((p) => p.path)).toContain('/hello');
    r = cli(odd, '--kind', 'gateway');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/Allowed choices are site, controller/);
  });

  it('a valid controller config prints its warnings; a site.yaml that does not parse is still told as a site file', () => {
    const r = cli(CONTROLLER, '--node', 'node-b');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/valid — 4 groups/);
    expect(r.stdout).toMatch(
      /\n {2}warning: .*controller\.yaml \/sensors: the site's gateways gw-1, gw-2 publish over MQTT/,
    );
    const broken = join(dir, 'site.yaml');
    writeFileSync(broken, 'site:\n  id: [unclosed\n');
    const b = cli(broken);
    expect(b.status).toBe(2);
    expect(b.stderr).toMatch(
      /site\.yaml: not a valid site file — 1 problem\(s\)\n.*site\.yaml:3 \/: YAML syntax/,
    );
  });

  it('a group tuning the law would have to move is refused with every setting; a moved default is a warning', () => {
    // Group 1 of the demo site (zone-2), with a tuning block added under its sensor nodes.
    const withTuning = (yaml: string) =>
      readFileSync(SITE, 'utf8').replace(/(\n {2}- id: zone-2\n(?: {4}.*\n)+)/, `$1    tuning:\n${yaml}`);
    const written = join(dir, 'tuning-site.yaml');
    writeFileSync(
      written,
      withTuning('      fan: { minPct: 30 }\n      degraded: { minFanPct: 20 }\n      blindFanPct: 10\n'),
    );
    const r = cli(written);
    expect(r.status, r.stdout).toBe(2);
    expect(r.stderr).toMatch(/not a valid site file — 2 problem\(s\)/);
    expect(r.stderr).toMatch(
      /tuning-site\.yaml:\d+ \/controlGroups\/1\/tuning\/degraded\/minFanPct: degraded\.minFanPct \(20\) is below fan\.minPct \(30\)/,
    );
    expect(r.stderr).toMatch(
      /\/controlGroups\/1\/tuning\/blindFanPct: blindFanPct \(10\) is below hardMinFanPct \(20\)/,
    );

    const moved = join(dir, 'moved-site.yaml');
    writeFileSync(moved, withTuning('      fan: { minPct: 10 }\n'));
    const controller = join(dir, 'moved-controller.yaml');
    writeFileSync(controller, readFileSync(CONTROLLER, 'utf8').replace(/^site: .*$/m, `site: ${moved}`));
    const c = cli(controller);
    expect(c.status, c.stderr).toBe(0);
    expect(c.stdout).toMatch(
      /\n {2}warning: .*moved-site\.yaml:\d+ \/controlGroups\/1\/tuning\/fan\/minPct: hardMinFanPct is not set: its default 20 is above fan\.minPct \(10\), so the group runs hardMinFanPct 10/,
    );
    // The site file alone says the same.
    const s = cli(moved);
    expect(s.status, s.stderr).toBe(0);
    expect(s.stdout).toMatch(
      /\n {2}warning: .*moved-site\.yaml:\d+ \/controlGroups\/1\/tuning\/fan\/minPct: hardMinFanPct is not set/,
    );
  });
});
