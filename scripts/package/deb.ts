// The .deb of one architecture, built with dpkg-deb from a staged tree: the release bundle under
// /usr/lib/coolctl/VERSION, which postinst installs beside the others as /opt/coolctl/releases/VERSION
// (with `coolctl release install`: dpkg never owns, so never removes, a release a node may run from),
// the units from deploy/systemd as they are, /etc/coolctl as conffiles, /var/lib/coolctl,
// /usr/bin/coolctl, and the maintainer scripts of deploy/debian. The links from /opt/coolctl into
// `current` keep the paths the units (and deploy/install.sh) use, so one unit file serves both kinds
// of install.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { run } from './bundle.ts';

export interface DebInput {
  repo: string;
  /** The staged bundle folder (hard-linked into the package tree, so it must not change after). */
  bundle: string;
  version: string;
  /** Debian's name: arm64 | amd64. */
  debArch: string;
  nodeVersion: string;
  /** The folder to stage the package tree in (emptied by the caller). */
  stage: string;
}

/** /opt/coolctl entries that lead into the current release: what the units and docs name. */
const OPT_LINKS = ['dist', 'node_modules', 'docs', 'README.md'];

/** The configs under /etc/coolctl (conffiles: dpkg keeps an operator's edits on upgrade). */
const CONFFILES: { path: string; from: string }[] = [
  { path: 'etc/coolctl/controller.yaml', from: 'deploy/etcd/controller.yaml.example' },
  { path: 'etc/coolctl/gateway.yaml.example', from: 'config/examples/gateway.yaml' },
];

const UNITS = ['coolctl@.service', 'coolctl-gateway@.service'];

function fill(template: string, values: Record<string, string>): string {
  return template.replace(/@([A-Z_]+)@/g, (m, k: string) => {
    const v = values[k];
    if (v === undefined) throw new Error(`deploy/debian: no value for ${m}`);
    return v;
  });
}

/** Stages the package tree of `d` in `d.stage` (then `buildDeb` packs it). */
export function stageDeb(d: DebInput): void {
  const root = d.stage;
  mkdirSync(join(root, 'usr/lib/coolctl'), { recursive: true });
  execFileSync('cp', ['-al', d.bundle, join(root, 'usr/lib/coolctl', d.version)]);
  mkdirSync(join(root, 'opt/coolctl'), { recursive: true });
  for (const l of OPT_LINKS) symlinkSync(`current/${l}`, join(root, 'opt/coolctl', l));
  mkdirSync(join(root, 'usr/bin'), { recursive: true });
  symlinkSync('../../opt/coolctl/current/bin/coolctl', join(root, 'usr/bin/coolctl'));

  mkdirSync(join(root, 'usr/lib/systemd/system'), { recursive: true });
  for (const u of UNITS) cpSync(join(d.repo, 'deploy/systemd', u), join(root, 'usr/lib/systemd/system', u));
  mkdirSync(join(root, 'etc/coolctl'), { recursive: true, mode: 0o750 });
  chmodSync(join(root, 'etc/coolctl'), 0o750);
  for (const c of CONFFILES) {
    cpSync(join(d.repo, c.from), join(root, c.path));
    chmodSync(join(root, c.path), 0o640);
  }
  mkdirSync(join(root, 'var/lib/coolctl'), { recursive: true });
  chmodSync(join(root, 'var/lib/coolctl'), 0o750);
  mkdirSync(join(root, 'usr/share/doc/coolctl'), { recursive: true });
  cpSync(join(d.repo, 'deploy/debian/copyright'), join(root, 'usr/share/doc/coolctl/copyright'));

  const kb = (dir: string) =>
    Number(execFileSync('du', ['-sk', '--apparent-size', dir], { encoding: 'utf8' }).split('\t')[0]);
  // The disk it takes: its files, and the release postinst installs from them.
  const installedKb = kb(root) + kb(d.bundle);
  const values = {
    VERSION: d.version,
    DEB_ARCH: d.debArch,
    INSTALLED_SIZE: String(installedKb),
    NODE_VERSION: d.nodeVersion,
  };
  const control = join(root, 'DEBIAN');
  mkdirSync(control, { mode: 0o755 });
  writeFileSync(
    join(control, 'control'),
    fill(readFileSync(join(d.repo, 'deploy/debian/control.in'), 'utf8'), values),
  );
  writeFileSync(join(control, 'conffiles'), CONFFILES.map((c) => `/${c.path}\n`).join(''));
  writeFileSync(join(control, 'md5sums'), md5sums(root));
  for (const s of ['postinst', 'prerm', 'postrm']) {
    writeFileSync(join(control, s), fill(readFileSync(join(d.repo, 'deploy/debian', s), 'utf8'), values));
    chmodSync(join(control, s), 0o755);
  }
}

/**
 * DEBIAN/md5sums: every regular file the package installs but its conffiles (dpkg keeps theirs
 * itself), so `dpkg --verify` and debsums tell an installed file changed since from one as shipped.
 */
export function md5sums(root: string): string {
  const conffiles = new Set(CONFFILES.map((c) => c.path));
  const lines: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const path = join(dir, e.name);
      const rel = relative(root, path);
      if (rel === 'DEBIAN') continue;
      if (e.isDirectory()) walk(path);
      else if (e.isFile() && !conffiles.has(rel))
        lines.push(`${createHash('md5').update(readFileSync(path)).digest('hex')}  ${rel}\n`);
    }
  };
  walk(root);
  return lines.join('');
}

/** Packs a staged tree into `out` with dpkg-deb. */
export function buildDeb(stage: string, out: string): Promise<void> {
  // xz at its fastest preset: about a quarter smaller than the .tar.gz, in seconds rather than the
  // minute the default preset takes on a gateway-sized runtime.
  return run('dpkg-deb', ['--root-owner-group', '-Zxz', '-z1', '--build', stage, out]);
}
