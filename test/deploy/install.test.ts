// deploy/install.sh as a staged install (DESTDIR): the real script, real `cp` and `install`, with
// stand-ins only for what would change this host or reach the network (apt-get, useradd, npm,
// systemctl, and owner/group changes). It installs the controller's unit and config and the
// fencing gateway's unit and example config, reloads systemd, and enables the controller only.
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
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
function install(
  root: string,
  node: string,
  o: { script?: string; aptGet?: string } = {},
): { status: number | null; stdout: string; stderr: string } {
  const bin = join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  const log = join(root, 'systemctl.log');
  stub(bin, 'apt-get', o.aptGet ?? 'exit 0');
  stub(bin, 'useradd', 'exit 0');
  stub(bin, 'id', '[ "$1" = -u ] && echo 0; exit 0');
  // npm ci + build in the staged /opt/coolctl: stands in the node that validates the config.
  stub(
    bin,
    'npm',
    'mkdir -p node_modules/.bin && printf "#!/bin/sh\\nexit 0\\n" > node_modules/.bin/node && chmod 755 node_modules/.bin/node',
  );
  stub(bin, 'systemctl', `echo "$*" >> ${log}`);
  // Owner and group changes are logged, not made (no coolctl group on a test host).
  stub(bin, 'chown', `echo "chown $*" >> ${JSON.stringify(join(root, 'owners.log'))}`);
  stub(bin, 'chgrp', `echo "chgrp $*" >> ${JSON.stringify(join(root, 'owners.log'))}`);
  // The real install(1), without owner and group (no coolctl user on a test host).
  stub(
    bin,
    'install',
    'for a; do shift; case "$skip$a" in 1*) skip=;; -o|-g) skip=1;; *) set -- "$@" "$a";; esac; done; exec /usr/bin/install "$@"',
  );
  const res = spawnSync('bash', [o.script ?? SCRIPT, node], {
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

  it('on a re-run, takes a config and secrets other users could read back to root and the coolctl group', () => {
    const root = join(dir, 'rerun');
    mkdirSync(root);
    expect(install(root, 'n3').status).toBe(0);
    // What the old hint made (umask 022), a key the world may write, and one already right.
    writeFileSync(join(root, 'etc/coolctl/cluster.secret'), 'feedface\n', { mode: 0o644 });
    chmodSync(join(root, 'etc/coolctl/cluster.secret'), 0o644);
    writeFileSync(join(root, 'etc/coolctl/peer.key'), 'k\n');
    chmodSync(join(root, 'etc/coolctl/peer.key'), 0o666);
    writeFileSync(join(root, 'etc/coolctl/api.secret'), 's\n');
    chmodSync(join(root, 'etc/coolctl/api.secret'), 0o600);
    chmodSync(join(root, 'etc/coolctl/controller.yaml'), 0o666);
    writeFileSync(join(root, 'etc/coolctl/controller.yaml'), '# edited\n');
    const r = install(root, 'n3');
    expect(r.status, r.stderr).toBe(0);
    const mode = (f: string) => statSync(join(root, 'etc/coolctl', f)).mode & 0o777;
    expect(mode('cluster.secret')).toBe(0o640);
    expect(mode('peer.key')).toBe(0o640);
    expect(mode('api.secret')).toBe(0o600);
    expect(mode('controller.yaml')).toBe(0o640);
    expect(readFileSync(join(root, 'etc/coolctl/controller.yaml'), 'utf8')).toBe('# edited\n');
    expect(readFileSync(join(root, 'etc/coolctl/cluster.secret'), 'utf8')).toBe('feedface\n');
    expect(r.stderr).toMatch(/\/etc\/coolctl\/cluster\.secret was mode 644: now 640/);
    expect(r.stderr).not.toMatch(/api\.secret/);
    // the world's reader is now the service's group
    const owners = readFileSync(join(root, 'owners.log'), 'utf8');
    expect(owners).toContain(`chgrp coolctl ${join(root, 'etc/coolctl/cluster.secret')}`);
    expect(owners).toContain(`chown root:coolctl ${join(root, 'etc/coolctl/controller.yaml')}`);
    // and the hint for a missing secret makes one the daemon accepts
    expect(install(join(dir, 'rerun-empty'), 'n3').stderr).toMatch(
      /\(umask 027; openssl rand -hex 32 > \/etc\/coolctl\/cluster\.secret\)/,
    );
  });

  it('installs from a checkout and into a root whose paths have spaces', () => {
    const checkout = join(dir, 'my checkout');
    mkdirSync(checkout);
    for (const f of [
      'package.json',
      'package-lock.json',
      'tsconfig.json',
      'tsconfig.build.json',
      'README.md',
    ])
      cpSync(f, join(checkout, f));
    for (const d of ['src', 'firmware-sim', 'config', 'deploy', 'docs'])
      cpSync(d, join(checkout, d), { recursive: true });
    const root = join(dir, 'a root dir');
    mkdirSync(root);
    const r = install(root, 'n4', { script: join(checkout, 'deploy/install.sh') });
    expect(r.status, r.stderr).toBe(0);
    expect(statSync(join(root, 'opt/coolctl/src/cli.ts')).isFile()).toBe(true);
    expect(statSync(join(root, 'etc/coolctl/controller.yaml')).mode & 0o777).toBe(0o640);
  });

  it('stops with what to do when a dependency cannot be installed (no network)', () => {
    const root = join(dir, 'offline');
    mkdirSync(root);
    const r = install(root, 'n5', {
      aptGet: 'echo "E: Temporary failure resolving deb.debian.org" >&2; exit 100',
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/apt-get could not install etcd-server .*\n.*install the \.deb instead/);
    // nothing was installed
    expect(() => statSync(join(root, 'opt/coolctl'))).toThrow();
  });
});
