// `coolctl` loads only what the command it runs needs: `--help`, `status`, `profile check` and
// `gateway` must not load the controller (etcd, OPC-UA, fastify), which takes seconds to load on a
// small gateway. A module hook in the child records every module it loads.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'coolctl-cli-startup-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const TRACE_HOOK = `data:text/javascript,${encodeURIComponent(`
import { registerHooks } from 'node:module';
import { appendFileSync } from 'node:fs';
registerHooks({ load(url, context, next) { appendFileSync(process.env.COOLCTL_TEST_TRACE, url + '\\n'); return next(url, context); } });
`)}`;

/** The modules `coolctl ARGS` loaded, as URLs, and how it exited. */
function loaded(name: string, args: string[]): { modules: string[]; status: number | null } {
  const trace = join(dir, `${name}.trace`);
  const res = spawnSync(process.execPath, ['--import', TRACE_HOOK, 'src/cli.ts', ...args], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, COOLCTL_TEST_TRACE: trace },
  });
  return { modules: readFileSync(trace, 'utf8').split('\n').filter(Boolean), status: res.status };
}

const CONTROLLER_ONLY = [
  /\/src\/daemon\/controller\.ts$/,
  /\/node_modules\/etcd3\//,
  /\/node_modules\/node-opcua/,
  /\/node_modules\/fastify\//,
];

function expectNoController(modules: string[]): void {
  for (const re of CONTROLLER_ONLY)
    expect(
      modules.filter((m) => re.test(m)),
      String(re),
    ).toEqual([]);
}

describe('coolctl start-up: each command loads its own modules', () => {
  it('--help loads neither the controller nor any command', () => {
    const r = loaded('help', ['--help']);
    expect(r.status).toBe(0);
    expectNoController(r.modules);
    expect(r.modules.filter((m) => m.includes('/src/devices/'))).toEqual([]);
  });

  it('profile check loads the profile codec, not the controller', () => {
    const r = loaded('profile-check', ['profile', 'check', 'config/profiles/coolctl-native.yaml']);
    expect(r.status).toBe(0);
    expect(r.modules.some((m) => m.endsWith('/src/devices/profile/codec.ts'))).toBe(true);
    expectNoController(r.modules);
  });

  it('status (a node that does not answer) loads no controller', () => {
    const r = loaded('status', ['status', '--api', 'http://127.0.0.1:1']);
    expect(r.status).toBe(1);
    expectNoController(r.modules);
  });

  it('gateway loads the gateway, not the controller', () => {
    const r = loaded('gateway', ['gateway', '--config', join(dir, 'missing.yaml')]);
    expect(r.status).toBe(2);
    expect(r.modules.some((m) => m.endsWith('/src/gateway/main.ts'))).toBe(true);
    expectNoController(r.modules);
  });
});
