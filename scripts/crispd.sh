#!/bin/sh
# crispd from this checkout, started as the installed `crisp daemon` starts it (packaging/crisp-wrapper.sh:
# V8's young generation kept small, glibc's malloc thresholds at their start values), with the node on
# PATH. Arguments go to `crisp daemon`. README, "Set up".
checkout=$(cd "$(dirname "$0")/.." && pwd) || exit 1
CRISP_LIB="$checkout" CRISP_NODE="${CRISP_NODE:-$(command -v node)}" exec sh "$checkout/packaging/crisp-wrapper.sh" daemon "$@"
