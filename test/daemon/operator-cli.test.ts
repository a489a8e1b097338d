// The operator's CLI against a running daemon (real etcd): the first admin from the bootstrap file
// signs in, adds an operator and makes a token for them; with that token (COOLCTL_TOKEN, address
// from COOLCTL_API) pause, override, clear, resume land in etcd and in the audit trail under the
// operator's name (`coolctl history`); a bad override is refused with exit 2 and why; without a
// token, or once it is revoked, the API refuses.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { useEtcdFixture } from '../cluster/harness.ts';
import { waitFor } from '../helpers.ts';
import { writeOneNodeConfig } from './one-node.ts';

const fx = useEtcdFixture('operator-cli');
let daemon: ChildProcess | undefined;
afterAll(() => {
  if (daemon && daemon.exitCode === null) daemon.kill('SIGKILL');
});

/** The CLI as a process; env adds to (and `undefined` removes from) the test's environment. */
let env: Record<string, string | undefined> = {};
const cli = (...args: string[]) =>
  spawnSync(process.execPath, ['src/cli.ts', ...args], {
    encoding: 'utf8',
    timeout: 20_000,
    env: { ...process.env, COOLCTL_TOKEN: undefined, COOLCTL_API: undefined, ...env },
  });

describe('operator CLI', () => {
  it('pause, override, clear and resume reach etcd through any node; a bad override is refused', async () => {
    const { config, api, admin } = await writeOneNodeConfig({
      dir: fx.root.dir,
      etcd: fx.etcd.clientConfig(),
      prefix: '/coolctl/cli',
    });
    daemon = spawn(
      process.execPath,
      ['src/cli.ts', 'run', '--config', config, '--node', 'n1', '--log-level', 'warn'],
      {
        stdio: 'ignore',
      },
    );
    await waitFor('the daemon API', async () => (await fetch(`${api}/readyz`).catch(() => null))?.ok, {
      timeoutMs: 30_000,
    });
    // The admin signs in (password from a file), adds an operator and makes a token for them.
    const secrets = fx.root.dir;
    await writeFile(join(secrets, 'admin.pw'), admin.password, { mode: 0o600 });
    let r = cli('login', '--user', admin.name, '--password-file', join(secrets, 'admin.pw'), '--api', api);
    expect(r.status, r.stderr).toBe(0);
    await writeFile(join(secrets, 'admin.token'), r.stdout.trim(), { mode: 0o600 });
    const asAdmin = ['--api', api, '--token-file', join(secrets, 'admin.token')];
    await writeFile(join(secrets, 'op.pw'), 'operator password 42', { mode: 0o600 });
    r = cli(
      'user',
      'add',
      'olga',
      '--role',
      'operator',
      '--password-file',
      join(secrets, 'op.pw'),
      ...asAdmin,
    );
    expect(r.status, r.stderr).toBe(0);
    r = cli('user', 'list', ...asAdmin);
    expect(r.stdout).toMatch(/olga\s+operator/);
    r = cli('token', 'create', '--label', 'ci', '--user', 'olga', ...asAdmin);
    expect(r.status, r.stderr).toBe(0);
    const token = r.stdout.trim();
    const tokenId = /token ([0-9a-f]{16})/.exec(r.stderr)![1]!;
    r = cli('status', '--api', api);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/COOLCTL_E_UNAUTHENTICATED|COOLCTL_TOKEN/);
    env = { COOLCTL_TOKEN: token, COOLCTL_API: api };
    const auth = { authorization: `Bearer ${token}` };
    const operator = async () =>
      (
        (await (await fetch(`${api}/api/v1/groups/zone-1`, { headers: auth })).json()) as {
          operator: { paused: boolean; overrides: object; by: string };
        }
      ).operator;

    r = cli('pause', 'zone-1', '--reason', 'filter change');
    expect(r.status, r.stderr).toBe(0);
    await waitFor('paused', async () => (await operator()).paused);
    r = cli('override', 'zone-1', 'AHU-01', '--fan', '40');
    expect(r.status, r.stderr).toBe(0);
    await waitFor(
      'override stored',
      async () => JSON.stringify((await operator()).overrides) === '{"AHU-01":{"fanPct":40}}',
    );
    r = cli('override', 'zone-1', 'AHU-01', '--fan', '150');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/fanPct/);
    r = cli('override', 'zone-1', 'AHU-99', '--local');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/AHU-99 is not a unit of zone-1/);
    r = cli('override', 'zone-1', 'AHU-01', '--clear');
    expect(r.status, r.stderr).toBe(0);
    r = cli('resume', 'zone-1');
    expect(r.status, r.stderr).toBe(0);
    await waitFor('resumed, no override', async () => {
      const o = await operator();
      return !o.paused && Object.keys(o.overrides).length === 0;
    });
    expect((await operator()).by).toBe('olga');
    r = cli('history');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /olga \(operator\) via n1: POST \/api\/v1\/groups\/zone-1\/pause \{"reason":"filter change"\} → 200/,
    );
    expect(r.stdout).toMatch(
      /olga \(operator\) via n1: PUT \/api\/v1\/groups\/zone-1\/overrides\/AHU-01 \{"fanPct":40\} → 200/,
    );
    // Refused by its schema: counted, not kept.
    expect(r.stdout).not.toContain('"fanPct":150');
    expect(r.stdout).toMatch(
      /olga \(operator\) via n1: DELETE \/api\/v1\/groups\/zone-1\/overrides\/AHU-01 → 200/,
    );
    expect(r.stdout).toMatch(
      /admin \(admin\) via n1: POST \/api\/v1\/users \{"name":"olga","role":"operator","password":"\(secret\)"\} → 200/,
    );
    expect(r.stdout).not.toContain('operator password 42');
    // An operator cannot manage users; a revoked token works nowhere.
    r = cli('user', 'list');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/needs the admin role/);
    r = cli('token', 'revoke', tokenId, ...asAdmin);
    expect(r.status, r.stderr).toBe(0);
    r = cli('status');
    expect(r.status).toBe(1);
  }, 60_000);
});
