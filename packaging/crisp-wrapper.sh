#!/bin/sh
# /usr/bin/crisp (installed by the crisp package): the crisp command; `crisp daemon` runs crispd.
# The daemon, its node_modules and native helpers live in /usr/lib/crisp; CRISP_NODE picks another node.
exec "${CRISP_NODE:-/usr/bin/node}" /usr/lib/crisp/dist/cli/main.js "$@"
