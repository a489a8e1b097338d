#!/usr/bin/env bash
# Installs coolctl on a Debian / Raspberry Pi OS (arm64 or amd64) gateway as the systemd service
# coolctl@NODE: the code in /opt/coolctl (Node 24 comes with it, from the npm registry), a system
# user, /etc/coolctl for the config, site file and cluster secret, and Debian's etcd-server,
# systemd-notify and jemalloc (the unit's malloc). It does not start anything until the config validates.
# It also installs the fencing gateway's unit coolctl-gateway@.service and its example config
# /etc/coolctl/gateway.yaml.example, but enables no gateway: a host runs one only where it owns an
# RS-485 line or fronts units that cannot check epochs (docs/fencing-gateway.md).
# usage: sudo deploy/install.sh NODE        (NODE: this gateway's name in /etc/coolctl/controller.yaml)
# DESTDIR=DIR puts every file under DIR instead of / (a staged install; test/deploy/install.test.ts).
set -euo pipefail
node_name=${1:?usage: $0 NODE}
src=$(cd "$(dirname "$0")/.." && pwd)
root=${DESTDIR:-}
[ "$(id -u)" -eq 0 ] || { echo "install: run as root" >&2; exit 1; }

deps="etcd-server etcd-client systemd nodejs npm libjemalloc2"
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $deps >/dev/null; }; then
  echo "install: apt-get could not install $deps (problems above); this script needs Debian's archive and" >&2
  echo "         the npm registry. On a gateway without network install the .deb instead (docs/packaging.md)." >&2
  exit 1
fi

id coolctl >/dev/null 2>&1 || useradd --system --home /var/lib/coolctl --shell /usr/sbin/nologin coolctl
install -d -o root -g root -m 0755 "$root/opt/coolctl"
cp -a "$src"/{package.json,package-lock.json,tsconfig.json,tsconfig.build.json,src,firmware-sim,config,deploy,docs,README.md} "$root/opt/coolctl/"
# The unit runs the compiled dist/src/cli.js: stripping TypeScript types at every start costs ~20 MB.
if ! (cd "$root/opt/coolctl" && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build); then
  echo "install: npm could not install and build coolctl in /opt/coolctl (problems above): it needs the npm" >&2
  echo "         registry. On a gateway without network install the .deb instead (docs/packaging.md)." >&2
  exit 1
fi

install -d -o root -g coolctl -m 0750 "$root/etc/coolctl"
[ -f "$root/etc/coolctl/controller.yaml" ] || install -m 0640 -g coolctl "$src/deploy/etcd/controller.yaml.example" "$root/etc/coolctl/controller.yaml"
# A re-run lays the config out as the first run (and the .deb's postinst) does: root writes, the
# service's group reads, nobody else.
chown root:coolctl "$root/etc/coolctl/controller.yaml"
chmod 0640 "$root/etc/coolctl/controller.yaml"
# A secret another user can read or change is no secret, and the daemon refuses it (mode 0644 is
# what `openssl rand … > FILE` makes under the usual umask). Tightened in place; one read through
# the world bits before goes through the service's group now. deploy/debian/postinst does the same.
tighten_secret() {
  local f=$1 perm owner
  perm=$(stat -c '%a' "$f") owner=$(stat -c '%u' "$f")
  if (( 8#$perm & 8#007 )); then
    [ "$owner" -eq 0 ] && chgrp coolctl "$f"
    chmod g+r,g-w,o-rwx "$f"
  elif (( 8#$perm & 8#020 )); then
    chmod g-w "$f"
  else
    return 0
  fi
  echo "install: ${f#"$root"} was mode $perm: now $(stat -c '%a' "$f"), readable by root and the coolctl group only" >&2
}
for f in "$root"/etc/coolctl/*.secret "$root"/etc/coolctl/*.key; do
  [ -f "$f" ] && [ ! -L "$f" ] && tighten_secret "$f"
done
if [ ! -f "$root/etc/coolctl/cluster.secret" ]; then
  echo "install: /etc/coolctl/cluster.secret is missing: copy the cluster's secret here (the same on every gateway)," >&2
  echo "         or create it on the first gateway with:" >&2
  echo "         (umask 027; openssl rand -hex 32 > /etc/coolctl/cluster.secret) && chgrp coolctl /etc/coolctl/cluster.secret" >&2
fi
# Each node has its own data dir now (/var/lib/coolctl/NODE); a node refuses one another live node holds.
if grep -Eq '^dataDir:[[:space:]]*/var/lib/coolctl/?[[:space:]]*(#.*)?$' "$root/etc/coolctl/controller.yaml"; then
  echo "install: /etc/coolctl/controller.yaml has dataDir: /var/lib/coolctl, shared by every node on this host;" >&2
  echo "         a second coolctl@ instance will refuse to start: set dataDir: /var/lib/coolctl/{node}" >&2
fi
# A node that kept its OPC-UA certificates in the shared dir keeps them in its own (a copy: other
# instances on this host may still read the old one). The old shared lease-id file is left alone.
if [ -d "$root/var/lib/coolctl/opcua-pki" ] && [ ! -e "$root/var/lib/coolctl/$node_name/opcua-pki" ]; then
  install -d -o coolctl -g coolctl -m 0750 "$root/var/lib/coolctl/$node_name"
  cp -a "$root/var/lib/coolctl/opcua-pki" "$root/var/lib/coolctl/$node_name/opcua-pki"
fi
install -d -m 0755 "$root/etc/systemd/system"
install -m 0644 "$src/deploy/systemd/coolctl@.service" "$root/etc/systemd/system/coolctl@.service"
# The gateway's example is refreshed on every install; a gateway's own config is gateway-NAME.yaml.
install -m 0644 "$src/deploy/systemd/coolctl-gateway@.service" "$root/etc/systemd/system/coolctl-gateway@.service"
install -m 0640 -g coolctl "$src/config/examples/gateway.yaml" "$root/etc/coolctl/gateway.yaml.example"
systemctl daemon-reload
echo "install: a fencing gateway NAME runs as coolctl-gateway@NAME from /etc/coolctl/gateway-NAME.yaml" \
  "(start from gateway.yaml.example; docs/fencing-gateway.md)"

if "$root/opt/coolctl/node_modules/.bin/node" "$root/opt/coolctl/dist/src/cli.js" config validate "$root/etc/coolctl/controller.yaml" --node "$node_name"; then
  systemctl enable --now "coolctl@$node_name"
  echo "install: coolctl@$node_name started; journalctl -u coolctl@$node_name -f"
else
  echo "install: fix /etc/coolctl/controller.yaml (problems above), then: systemctl enable --now coolctl@$node_name" >&2
  exit 2
fi
