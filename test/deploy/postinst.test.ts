// deploy/debian/postinst `configure`, run as dpkg runs it for a staged root (DPKG_ROOT, as
// `dpkg --root --force-script-chrootless` does; test/deploy/package.test.ts runs the whole package),
// without building the package: the release's own `coolctl` is a stand-in that records what it was
// asked. Held to: conffiles keep the operator's edits and get root:coolctl 0640; a secret in
// /etc/coolctl that other users could read or write is taken back to root and the service's group;
// a second configure (dpkg-reconfigure, a reinstall) changes nothing more.
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
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

const VERSION = '7.0.0';
const GID = 4242;
const dir = mkdtempSync(join(tmpdir(), 'coolctl-postinst-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function stagedRoot(): string {
  const root = join(dir, 'root');
  mkdirSync(join(root, 'etc/coolctl'), { recursive: true });
  mkdirSync(join(root, 'var/lib/coolctl'), { recursive: true });
  mkdirSync(join(root, 'opt/coolctl'), { recursive: true });
  writeFileSync(
    join(root, 'etc/passwd'),
    `root:x:0:0::/root:/bin/sh\ncoolctl:x:${GID}:${GID}::/var/lib/coolctl:/usr/sbin/nologin\n`,
  );
  writeFileSync(join(root, 'etc/group'), `root:x:0:\ncoolctl:x:${GID}:\n`);
  const bin = join(root, `usr/lib/coolctl/${VERSION}/bin`);
  mkdirSync(bin, { recursive: true });
  // `coolctl release install|activate … --root OPT`: what the release's own CLI would leave.
  writeFileSync(
    join(bin, 'coolctl'),
    `#!/bin/sh\nopt=$(eval echo "\\$$#")\ncase "$2" in\ninstall) mkdir -p "$opt/releases/${VERSION}" ;;\nactivate) ln -sfn "releases/$3" "$opt/current" ;;\nesac\n`,
  );
  chmodSync(join(bin, 'coolctl'), 0o755);
  return root;
}

function configure(root: string): { status: number | null; stdout: string; stderr: string } {
  const script = join(dir, 'postinst');
  writeFileSync(script, readFileSync('deploy/debian/postinst', 'utf8').replaceAll('@VERSION@', VERSION));
  const r = spawnSync('sh', [script, 'configure'], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, DPKG_ROOT: root },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('deploy/debian/postinst configure', () => {
  it('keeps conffile edits, takes secrets back from other users, and is idempotent', () => {
    const root = stagedRoot();
    const etc = join(root, 'etc/coolctl');
    writeFileSync(join(etc, 'controller.yaml'), '# the operator edited this\n');
    chmodSync(join(etc, 'controller.yaml'), 0o644);
    writeFileSync(join(etc, 'gateway.yaml.example'), '# example\n');
    // What `openssl rand -hex 32 > cluster.secret` makes under umask 022, a key the world may
    // write owned by the service, and a secret already kept close.
    writeFileSync(join(etc, 'cluster.secret'), 'feedface\n');
    chmodSync(join(etc, 'cluster.secret'), 0o644);
    writeFileSync(join(etc, 'peer.key'), 'k\n');
    chownSync(join(etc, 'peer.key'), GID, GID);
    chmodSync(join(etc, 'peer.key'), 0o666);
    writeFileSync(join(etc, 'api.secret'), 's\n');
    chmodSync(join(etc, 'api.secret'), 0o600);

    const first = configure(root);
    expect(first.status, first.stderr).toBe(0);
    const st = (f: string) => statSync(join(etc, f));
    const mode = (f: string) => st(f).mode & 0o777;
    expect([mode('controller.yaml'), st('controller.yaml').uid, st('controller.yaml').gid]).toEqual([
      0o640,
      0,
      GID,
    ]);
    expect(readFileSync(join(etc, 'controller.yaml'), 'utf8')).toBe('# the operator edited this\n');
    // the service read it through the world bits; now through its group, and nobody else can
    expect([mode('cluster.secret'), st('cluster.secret').uid, st('cluster.secret').gid]).toEqual([
      0o640,
      0,
      GID,
    ]);
    expect([mode('peer.key'), st('peer.key').uid]).toEqual([0o640, GID]);
    expect(mode('api.secret')).toBe(0o600);
    expect(readFileSync(join(etc, 'cluster.secret'), 'utf8')).toBe('feedface\n');
    expect(first.stdout).toMatch(/\/etc\/coolctl\/cluster\.secret was mode 644: now 640/);
    expect(first.stdout).toMatch(/\/etc\/coolctl\/peer\.key was mode 666: now 640/);
    expect(first.stdout).not.toMatch(/api\.secret/);
    expect(statSync(join(root, 'var/lib/coolctl')).mode & 0o777).toBe(0o750);

    const second = configure(root);
    expect(second.status, second.stderr).toBe(0);
    expect(second.stdout).not.toMatch(/was mode/);
    expect([mode('cluster.secret'), mode('peer.key'), mode('api.secret'), mode('controller.yaml')]).toEqual([
      0o640, 0o640, 0o600, 0o640,
    ]);
  });
});
