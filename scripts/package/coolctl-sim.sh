#!/bin/sh
# The simulated data hall from its own bundle (its own Node and packages; nothing a gateway runs).
# usage: coolctl-sim --config SITE.yaml [--port 8090] …   (a wrong option prints them all; run
# from the bundle's folder, the default site config/demo-site.yaml is the demo hall)
bundle=$(dirname "$(dirname "$(readlink -f "$0")")")
exec "$bundle/node/bin/node" "$bundle/dist/firmware-sim/main.js" "$@"
