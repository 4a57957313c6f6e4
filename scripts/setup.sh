#!/usr/bin/env bash
# Installs what crisp needs on a Debian machine (as root) and builds it. Idempotent: it installs only
# what is missing, says what it installs, and never overwrites a file that exists.
#   bash scripts/setup.sh            install + build
#   bash scripts/setup.sh --no-cni   do not write the default CNI network to /etc/cni/net.d
#   bash scripts/setup.sh --cni-only only the CNI step (no packages, no build)
# Environment: CNI_CONF_DIR (default /etc/cni/net.d), APT_LOCK_TIMEOUT (seconds to wait for another
# apt/dpkg to finish, default 300).
set -euo pipefail
cd "$(dirname "$0")/.."

write_cni=1
install_and_build=1
for arg in "$@"; do
  case "$arg" in
    --no-cni) write_cni=0 ;;
    --cni-only) install_and_build=0 ;;
    *) echo "setup: unknown argument $arg" >&2; exit 2 ;;
  esac
done
cni_conf_dir="${CNI_CONF_DIR:-/etc/cni/net.d}"
apt_lock_timeout="${APT_LOCK_TIMEOUT:-300}"

if [ "$(id -u)" != 0 ]; then
  echo "setup: run as root (crisp manages namespaces, mounts and containerd)" >&2
  exit 1
fi

install_packages() {
  # Runtime stack, CNI plugins, test registry and image tools (attr: getfattr for the layer extractor's
  # tests), native helper toolchain and crisp-untar's and crisp-fetch's libraries, and systemd's tools (systemd-analyze
  # checks the unit file). Each is installed only when dpkg says it is missing.
  packages=(containerd runc containernetworking-plugins util-linux iproute2 iptables
            busybox-static docker-registry zstd attr apache2-utils openssl gcc make libc6-dev
            libssl-dev zlib1g-dev libzstd-dev libisal-dev libcurl4-openssl-dev systemd)
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Another apt or dpkg (unattended-upgrades, a second setup) holds the lock: wait for it, do not fail.
    apt_opts=(-o "DPkg::Lock::Timeout=$apt_lock_timeout")
    apt-get "${apt_opts[@]}" update -qq
    apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: system packages present"
  fi
}

build() {
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "setup: npm ci"
    npm ci --no-audit --no-fund --loglevel=error
  fi
  echo "setup: building (proto types, TypeScript, the daemon bundle, native helpers)"
  npm run --silent build
  if [ -f native/Makefile ]; then make -s -C native; fi
}

if [ "$install_and_build" = 1 ]; then
  install_packages
  build
fi

# A default pod network, only for a node that has none: any *.conf, *.conflist or *.json in the conf
# dir is a network (flannel, calico, an earlier run), and an existing file is never overwritten.
has_cni_network() {
  local f
  for f in "$1"/*.conf "$1"/*.conflist "$1"/*.json; do
    if [ -e "$f" ] || [ -L "$f" ]; then return 0; fi
  done
  return 1
}
if [ "$write_cni" = 1 ]; then
  if has_cni_network "$cni_conf_dir"; then
    echo "setup: $cni_conf_dir already has a CNI network; not adding one"
  else
    echo "setup: writing default CNI network $cni_conf_dir/10-crisp.conflist (bridge crisp0, 10.85.0.0/16)"
    mkdir -p "$cni_conf_dir"
    # noclobber: a file that appeared meanwhile is kept (the write fails instead of replacing it).
    if ! (set -o noclobber; cat > "$cni_conf_dir/10-crisp.conflist") 2>/dev/null <<'JSON'
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
    then
      echo "setup: $cni_conf_dir/10-crisp.conflist exists; left as it is"
    fi
  fi
fi
echo "setup: done"
