// The operator's CLI against a running daemon (real etcd): pause, override, clear, resume — each
// lands in etcd and shows in the group's API view; a bad override is refused with exit 2 and why.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { useEtcdFixture } from '../cluster/harness.ts';
import { waitFor } from '../helpers.ts';
import { writeOneNodeConfig } from './one-node.ts';

const fx = useEtcdFixture('operator-cli');
let daemon: ChildProcess | undefined;
afterAll(() => {
  if (daemon && daemon.exitCode === null) daemon.kill('SIGKILL');
});

const cli = (...args: string[]) =>
  spawnSync(process.execPath, ['src/cli.ts', ...args], { encoding: 'utf8', timeout: 20_000 });

describe('operator CLI', () => {
  it('pause, override, clear and resume reach etcd through any node; a bad override is refused', async () => {
    const { config, api } = await writeOneNodeConfig({
      dir: fx.root.dir,
      etcd: fx.etcd.clientUrls,
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
    const operator = async () =>
      (
        (await (await fetch(`${api}/api/v1/groups/zone-1`)).json()) as {
          operator: { paused: boolean; overrides: object; by: string };
        }
      ).operator;

    let r = cli('pause', 'zone-1', '--reason', 'filter change', '--api', api);
    expect(r.status, r.stderr).toBe(0);
    await waitFor('paused', async () => (await operator()).paused);
    r = cli('override', 'zone-1', 'AHU-01', '--fan', '40', '--api', api);
    expect(r.status, r.stderr).toBe(0);
    await waitFor(
      'override stored',
      async () => JSON.stringify((await operator()).overrides) === '{"AHU-01":{"fanPct":40}}',
    );
    r = cli('override', 'zone-1', 'AHU-01', '--fan', '150', '--api', api);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/fanPct/);
    r = cli('override', 'zone-1', 'AHU-99', '--local', '--api', api);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/AHU-99 is not a unit of zone-1/);
    r = cli('override', 'zone-1', 'AHU-01', '--clear', '--api', api);
    expect(r.status, r.stderr).toBe(0);
    r = cli('resume', 'zone-1', '--api', api);
    expect(r.status, r.stderr).toBe(0);
    await waitFor('resumed, no override', async () => {
      const o = await operator();
      return !o.paused && Object.keys(o.overrides).length === 0;
    });
  }, 60_000);
});
