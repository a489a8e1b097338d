#!/bin/sh
# coolctl from its release folder: the release's own Node runs the compiled CLI, so the host needs
# no Node of its own. Found through any chain of links (/usr/bin/coolctl → /opt/coolctl/current →
# releases/VERSION); the packaged links are relative, so they resolve inside a staged root too.
release=$(dirname "$(dirname "$(readlink -f "$0")")")
exec "$release/node/bin/node" "$release/dist/src/cli.js" "$@"
