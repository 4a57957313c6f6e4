#!/usr/bin/env bash
# Installs what crisp needs on a Debian machine (as root) and builds it. Idempotent: it installs only
# what is missing and says what it installs.
#   bash scripts/setup.sh            install + build
#   bash scripts/setup.sh --no-cni   do not write the default CNI network to /etc/cni/net.d
set -euo pipefail
cd "$(dirname "$0")/.."

write_cni=1
for arg in "$@"; do
  case "$arg" in
    --no-cni) write_cni=0 ;;
    *) echo "setup: unknown argument $arg" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" != 0 ]; then
  echo "setup: run as root (crisp manages namespaces, mounts and containerd)" >&2
  exit 1
fi

# Runtime stack, CNI plugins, test registry and image tools, native helper toolchain.
packages=(containerd runc containernetworking-plugins util-linux iproute2 iptables
          busybox-static docker-registry zstd apache2-utils openssl gcc make libc6-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: system packages present"
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
echo "setup: building (proto types, TypeScript, native helper)"
npm run --silent build
if [ -f native/Makefile ]; then make -s -C native; fi

# A default pod network for a node that has none (tests use their own conf dirs).
if [ "$write_cni" = 1 ] && ! ls /etc/cni/net.d/*.conf* /etc/cni/net.d/*.json >/dev/null 2>&1; then
  echo "setup: writing default CNI network /etc/cni/net.d/10-crisp.conflist (bridge crisp0, 10.85.0.0/16)"
  mkdir -p /etc/cni/net.d
  cat > /etc/cni/net.d/10-crisp.conflist <<'JSON'
{
  "cniVersion": "1.0.0",
  "name": "crisp",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "crisp0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "10.85.0.0/16" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
JSON
fi
echo "setup: done"
