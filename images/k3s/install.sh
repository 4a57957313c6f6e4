#!/bin/sh
# Makes a k3s node (server or agent) run its pods through crisp: installs the crisp package, gives k3s
# crisp's socket (50-crisp.yaml) and orders k3s after crisp.service (after-crisp.conf), then starts
# crisp. Run as root on a Debian-family node, best before k3s first starts there: pods k3s's own
# containerd already runs are not moved (drain the node first). k3s itself is not restarted.
#   sh images/k3s/install.sh build/crisp_0.1.0_amd64.deb
# Never overwrites a file (an existing one with other content stops it) and never deletes node state.
# Untested here (no k3s): checked statically by test/unit/node-images.test.ts.
set -eu

SOCKET=/run/crisp/crisp.sock
CGROUP_DRIVER=cgroupfs
CRISP_LIB=/usr/lib/crisp
K3S_CONFIG_DIR=/etc/rancher/k3s/config.yaml.d
here=$(cd "$(dirname "$0")" && pwd)

die() {
	echo "k3s-crisp: $*" >&2
	exit 1
}

[ $# -eq 1 ] || die "usage: install.sh path/to/crisp_<version>_<arch>.deb"
[ "$(id -u)" = 0 ] || die "run as root"
[ -f "$1" ] || die "$1: no such package"
[ -d /run/systemd/system ] || die "systemd is not running: crisp.service and k3s's units need it"
deb=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")

# A file in place, unless one with other content is there already.
put() {
	if [ -e "$2" ]; then
		cmp -s "$1" "$2" || die "$2 exists with other content: not overwritten (merge $1 into it by hand)"
		return 0
	fi
	mkdir -p "$(dirname "$2")"
	cp "$1" "$2.k3s-crisp-new"
	chmod 0644 "$2.k3s-crisp-new"
	mv "$2.k3s-crisp-new" "$2"
	echo "k3s-crisp: wrote $2"
}

# The package and its Depends (postinst enables and starts crisp.service).
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "$deb"

# k3s is given SOCKET and CGROUP_DRIVER: crisp's configuration must agree.
check='const m = await import(process.argv[1] + "/dist/daemon/config.js"); const c = m.resolveConfig(m.loadConfigFile("/etc/crisp/config.toml", false)); console.log(c.socket, c.cgroup_driver);'
effective=$(node --input-type=module -e "$check" "$CRISP_LIB") || die "crisp's /etc/crisp/config.toml does not load (see above)"
# shellcheck disable=SC2086 # two words: socket and cgroup driver
set -- $effective
[ "$1" = "$SOCKET" ] || die "/etc/crisp/config.toml sets socket = $1; 50-crisp.yaml gives k3s unix://$SOCKET"
[ "$2" = "$CGROUP_DRIVER" ] || die "/etc/crisp/config.toml sets cgroup_driver = $2; 50-crisp.yaml gives kubelet cgroup-driver=$CGROUP_DRIVER: edit one to match"

put "$here/50-crisp.yaml" "$K3S_CONFIG_DIR/50-crisp.yaml"
for unit in k3s k3s-agent; do
	put "$here/after-crisp.conf" "/etc/systemd/system/$unit.service.d/50-crisp.conf"
done
systemctl daemon-reload
systemctl enable --now crisp.service
echo "k3s-crisp: crisp is serving unix://$SOCKET; restart k3s (or k3s-agent) to use it, or install k3s now"
