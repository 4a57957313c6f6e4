#!/bin/sh
# /usr/bin/crisp (installed by the crisp package): the crisp command; `crisp daemon` runs crispd.
# The daemon and its node_modules live in /usr/lib/crisp, the native helpers in /usr/libexec/crisp;
# CRISP_NODE picks another node.
exec "${CRISP_NODE:-/usr/bin/node}" /usr/lib/crisp/dist/cli/main.js "$@"
