#!/bin/sh
# /usr/bin/crisp (installed by the crisp package): the crisp command; `crisp daemon` runs crispd.
# The daemon and its node_modules live in /usr/lib/crisp, the native helpers in /usr/libexec/crisp;
# CRISP_NODE picks another node; CRISP_LIB another place for dist/ (scripts/crispd.sh: a checkout).
# crispd runs with a small young generation: V8 otherwise grows it to 32 MiB, which after start-up
# stays resident for nothing (idle RSS ~12 MiB lower). glibc's malloc keeps its trim and mmap
# thresholds at their start values (128 KiB) instead of raising them after start-up's large frees,
# so an idle crispd gives that memory back (~1 MiB lower, no CPU cost measured); an operator's own
# values win. bench/README.md, "Where the memory goes".
main="${CRISP_LIB:-/usr/lib/crisp}/dist/cli/main.js"
if [ "${1:-}" = daemon ]; then
  export MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-131072}"
  export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-131072}"
  exec "${CRISP_NODE:-/usr/bin/node}" --max-semi-space-size=2 "$main" "$@"
fi
exec "${CRISP_NODE:-/usr/bin/node}" "$main" "$@"
