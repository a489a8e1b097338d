// deploy/install.sh as a staged install (DESTDIR): the real script, real `cp` and `install`, with
// stand-ins only for what would change this host or reach the network (apt-get, useradd, npm,
// systemctl, and owner/group changes). It installs the controller's unit and config and the
// fencing gateway's unit and example config, reloads systemd, and enables the controller only.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const SCRIPT = 'deploy/install.sh';
const dir = mkdtempSync(join(tmpdir(), 'coolctl-install-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function stub(bin: string, name: string, body: string): void {
  writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
  chmodSync(join(bin, name), 0o755);
}

/** Runs install.sh NODE into `root`; systemctl's calls are in `root`/systemctl.log. */
function install(root: string, node: string): { status: number | null; stdout: string; stderr: string } {
  const bin = join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  const log = join(root, 'systemctl.log');
  stub(bin, 'apt-get', 'exit 0');
  stub(bin, 'useradd', 'exit 0');
  stub(bin, 'id', '[ "$1" = -u ] && echo 0; exit 0');
  // npm ci + build in the staged /opt/coolctl: stands in the node that validates the config.
  stub(
    bin,
    'npm',
    'mkdir -p node_modules/.bin && printf "#!/bin/sh\\nexit 0\\n" > node_modules/.bin/node && chmod 755 node_modules/.bin/node',
  );
  stub(bin, 'systemctl', `echo "$*" >> ${log}`);
  // The real install(1), without owner and group (no coolctl user on a test host).
  stub(
    bin,
    'install',
    'for a; do shift; case "$skip$a" in 1*) skip=;; -o|-g) skip=1;; *) set -- "$@" "$a";; esac; done; exec /usr/bin/install "$@"',
  );
  const res = spawnSync('bash', [SCRIPT, node], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, DESTDIR: root, PATH: `${bin}:${process.env.PATH}` },
  });
  return { status: res.status, stdout: res.stdout, stderr: res.stderr };
}

describe('deploy/install.sh', () => {
  it('installs the controller and the fencing gateway units and configs; enables the controller only', () => {
    // Never let a script without DESTDIR write to this host's /etc.
    expect(readFileSync(SCRIPT, 'utf8')).toMatch(/\$\{DESTDIR:-\}/);
    const root = join(dir, 'root');
    mkdirSync(root);
    const r = install(root, 'n1');
    expect(r.status, r.stderr).toBe(0);

    const same = (installed: string, from: string) =>
      expect(readFileSync(join(root, installed), 'utf8')).toBe(readFileSync(from, 'utf8'));
    same('etc/systemd/system/coolctl@.service', 'deploy/systemd/coolctl@.service');
    same('etc/systemd/system/coolctl-gateway@.service', 'deploy/systemd/coolctl-gateway@.service');
    same('etc/coolctl/gateway.yaml.example', 'config/examples/gateway.yaml');
    same('etc/coolctl/controller.yaml', 'deploy/etcd/controller.yaml.example');
    // The gateway's user reads its config through the group; nobody else may.
    expect(statSync(join(root, 'etc/coolctl/gateway.yaml.example')).mode & 0o777).toBe(0o640);
    // The code the gateway unit runs is there to build (dist/src/gateway/main.js comes from src/).
    expect(statSync(join(root, 'opt/coolctl/src/gateway/main.ts')).isFile()).toBe(true);
    expect(r.stdout).toMatch(/coolctl-gateway@NAME from \/etc\/coolctl\/gateway-NAME\.yaml/);

    const calls = readFileSync(join(root, 'systemctl.log'), 'utf8').trim().split('\n');
    expect(calls).toEqual(['daemon-reload', 'enable --now coolctl@n1']);
  });

  it('keeps a controller config already there on a second install', () => {
    const root = join(dir, 'again');
    mkdirSync(join(root, 'etc/coolctl'), { recursive: true });
    writeFileSync(join(root, 'etc/coolctl/controller.yaml'), '# edited by the operator\n');
    const r = install(root, 'n2');
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(join(root, 'etc/coolctl/controller.yaml'), 'utf8')).toBe(
      '# edited by the operator\n',
    );
    expect(statSync(join(root, 'etc/systemd/system/coolctl-gateway@.service')).isFile()).toBe(true);
  });
});
