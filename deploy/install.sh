#!/usr/bin/env bash
# Installs coolctl on a Debian / Raspberry Pi OS (arm64 or amd64) gateway as the systemd service
# coolctl@NODE: the code in /opt/coolctl (Node 24 comes with it, from the npm registry), a system
# user, /etc/coolctl for the config, site file and cluster secret, and Debian's etcd-server,
# systemd-notify and jemalloc (the unit's malloc). It does not start anything until the config validates.
# usage: sudo deploy/install.sh NODE        (NODE: this gateway's name in /etc/coolctl/controller.yaml)
set -euo pipefail
node_name=${1:?usage: $0 NODE}
src=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "install: run as root" >&2; exit 1; }

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client systemd nodejs npm libjemalloc2 >/dev/null

id coolctl >/dev/null 2>&1 || useradd --system --home /var/lib/coolctl --shell /usr/sbin/nologin coolctl
install -d -o root -g root -m 0755 /opt/coolctl
cp -a "$src"/{package.json,package-lock.json,tsconfig.json,tsconfig.build.json,src,firmware-sim,config,deploy,docs,README.md} /opt/coolctl/
# The unit runs the compiled dist/src/cli.js: stripping TypeScript types at every start costs ~20 MB.
(cd /opt/coolctl && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)

install -d -o root -g coolctl -m 0750 /etc/coolctl
[ -f /etc/coolctl/controller.yaml ] || install -m 0640 -g coolctl "$src/deploy/etcd/controller.yaml.example" /etc/coolctl/controller.yaml
if [ ! -f /etc/coolctl/cluster.secret ]; then
  echo "install: /etc/coolctl/cluster.secret is missing: copy the cluster's secret here (the same on every gateway)," >&2
  echo "         or create it on the first gateway with: openssl rand -hex 32 > /etc/coolctl/cluster.secret" >&2
fi
# Each node has its own data dir now (/var/lib/coolctl/NODE); a node refuses one another live node holds.
if grep -Eq '^dataDir:[[:space:]]*/var/lib/coolctl/?[[:space:]]*(#.*)?$' /etc/coolctl/controller.yaml; then
  echo "install: /etc/coolctl/controller.yaml has dataDir: /var/lib/coolctl, shared by every node on this host;" >&2
  echo "         a second coolctl@ instance will refuse to start: set dataDir: /var/lib/coolctl/{node}" >&2
fi
# A node that kept its OPC-UA certificates in the shared dir keeps them in its own (a copy: other
# instances on this host may still read the old one). The old shared lease-id file is left alone.
if [ -d /var/lib/coolctl/opcua-pki ] && [ ! -e "/var/lib/coolctl/$node_name/opcua-pki" ]; then
  install -d -o coolctl -g coolctl -m 0750 "/var/lib/coolctl/$node_name"
  cp -a /var/lib/coolctl/opcua-pki "/var/lib/coolctl/$node_name/opcua-pki"
fi
install -m 0644 "$src/deploy/systemd/coolctl@.service" /etc/systemd/system/coolctl@.service
systemctl daemon-reload

if /opt/coolctl/node_modules/.bin/node /opt/coolctl/dist/src/cli.js config validate /etc/coolctl/controller.yaml --node "$node_name"; then
  systemctl enable --now "coolctl@$node_name"
  echo "install: coolctl@$node_name started; journalctl -u coolctl@$node_name -f"
else
  echo "install: fix /etc/coolctl/controller.yaml (problems above), then: systemctl enable --now coolctl@$node_name" >&2
  exit 2
fi
