#!/usr/bin/env bash
# Installs what the demo or the test suite needs on a fresh Debian machine with Node and npm:
# Debian packages (only when missing) and the npm dependencies (only when the lock file changed),
# which bring Node 24 itself through the `node` npm package. Idempotent; safe to run every time.
# usage: deploy/dev/prepare.sh demo|test
set -euo pipefail
cd "$(dirname "$0")/../.."

purpose=${1:-test}
case "$purpose" in
  demo) debs=(etcd-server etcd-client) ;;
  # python3-pymodbus: an independent Modbus implementation the tests check the simulator against
  # socat: the pseudo-terminal pair the Modbus RTU tests use as a serial line
  # etcd-server, etcd-client: the real 3-member etcd cluster of the leadership and chaos tests
  # faketime: the wall-clock jump of the chaos suite
  # systemd: systemd-notify, which the daemon speaks sd_notify through (tested)
  # chromium: the dashboard's browser test (driven by playwright-core; no browser download)
  # libjemalloc2: the malloc the systemd unit runs the daemon on (its sd_notify test, the scale bench)
  # mosquitto: a broker in its own process (MQTT 3.1.1 and 5) for the oversized-packet test
  # mosquitto-clients: mosquitto_sub / mosquitto_pub, MQTT clients nobody here wrote (TLS broker, chaos)
  # mbpoll: a Modbus master nobody here wrote, reading every device profile from the simulator
  # prometheus: promtool checks and unit-tests deploy/prometheus/alerts.yml; prometheus scrapes a node
  # qemu-user-static, libc6-arm64-cross, libstdc++6-arm64-cross: the arm64 bundle's Node runs under qemu
  test) debs=(python3-pymodbus socat etcd-server etcd-client faketime systemd chromium libjemalloc2 mosquitto mosquitto-clients mbpoll prometheus
              qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross) ;;
  *) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac

missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "prepare: installing Debian packages: ${missing[*]}"
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${missing[@]}" >/dev/null
  # Debian starts mosquitto's own service on port 1883, the simulator's default; the tests start
  # their own broker, so a service this script brought in is stopped and disabled.
  if [[ " ${missing[*]} " == *" mosquitto "* ]] && [ -d /run/systemd/system ]; then
    $sudo_ systemctl disable --now mosquitto.service >/dev/null 2>&1 || true
  fi
  # The same for Debian's Prometheus (port 9090) and the node exporter it recommends (9100).
  if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    $sudo_ systemctl disable --now prometheus.service prometheus-node-exporter.service >/dev/null 2>&1 || true
  fi
fi

# npm ci only when node_modules was not installed from this very lock file.
stamp=node_modules/.coolctl-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -x node_modules/.bin/node ]; then
  echo "prepare: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi
node_version=$(node_modules/.bin/node --version)
case "$node_version" in
  v24.*) ;;
  *) echo "prepare: expected Node 24 from node_modules/.bin/node, got $node_version" >&2; exit 1 ;;
esac
