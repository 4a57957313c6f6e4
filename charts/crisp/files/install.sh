#!/bin/sh
# The crisp chart's installer (the DaemonSet's init container, privileged, hostPID): installs or
# upgrades the crisp package on the host, puts the chart's config in /etc/crisp/config.toml and
# restarts crisp.service. apt-get, dpkg-query, systemctl and the config check run on the host, in pid
# 1's mount namespace (nsenter); files reach the host through the pod's hostPath mounts.
#
# What it never does: delete node state (/var/lib/crisp, /run/crisp, images, pods), stop a container
# (crisp.service has KillMode=process: a restart signals crispd only), put a config in place that the
# node's crisp refuses, or downgrade the package (apt-get -y refuses that).
#
# Environment (set by the DaemonSet):
#   CRISP_DEB         glob of the package inside this image (exactly one file must match)
#   STAGE_DIR         hostPath mount of HOST_STAGE_DIR
#   HOST_STAGE_DIR    the same directory as the host sees it
#   CONFIG_DIR        hostPath mount of the host's /etc/crisp
#   CONFIG_SOURCE     config.toml rendered from the chart's values; "" = leave the node's config alone
#   HOST_CRISP_LIB    where the package installs crisp on the host (/usr/lib/crisp)
#   APT_UPDATE        1 = apt-get update before installing a version the node does not have
#   APT_LOCK_TIMEOUT  seconds apt-get waits for the dpkg lock
set -eu

log() { echo "crisp-installer: $*"; }
die() {
	echo "crisp-installer: $*" >&2
	exit 1
}
# Runs a command on the host: its mount namespace sees the host's files, binaries and systemd.
host() { nsenter --target 1 --mount -- "$@"; }

: "${CRISP_DEB:?}" "${STAGE_DIR:?}" "${HOST_STAGE_DIR:?}" "${CONFIG_DIR:?}" "${HOST_CRISP_LIB:?}"
CONFIG_SOURCE=${CONFIG_SOURCE:-}
APT_UPDATE=${APT_UPDATE:-1}
APT_LOCK_TIMEOUT=${APT_LOCK_TIMEOUT:-300}
UNIT=crisp.service

host test -d /run/systemd/system || die "the node does not run systemd: $UNIT cannot be managed"
host sh -c 'command -v apt-get >/dev/null && command -v dpkg-query >/dev/null' || die "the node has no apt-get/dpkg: only Debian-family nodes are supported"

# shellcheck disable=SC2086 # the glob is meant to expand
set -- $CRISP_DEB
if [ $# -ne 1 ] || [ ! -f "$1" ]; then
	die "expected one package matching $CRISP_DEB in the image, found: $*"
fi
deb=$1
want=$(dpkg-deb --field "$deb" Version) || die "$deb: not a Debian package"

# 1. The package: installed only when the node does not have this exact version.
installed_now=0
# shellcheck disable=SC2016 # dpkg-query's format, not shell expansions
have=$(host dpkg-query --show --showformat '${db:Status-Status} ${Version}' crisp 2>/dev/null || true)
if [ "$have" = "installed $want" ]; then
	log "crisp $want is installed"
else
	log "installing crisp $want (node has: ${have:-nothing})"
	staged=crisp_${want}.deb
	cp "$deb" "$STAGE_DIR/.$staged.tmp"
	mv -f "$STAGE_DIR/.$staged.tmp" "$STAGE_DIR/$staged"
	if [ "$APT_UPDATE" = 1 ]; then
		host apt-get -o "DPkg::Lock::Timeout=$APT_LOCK_TIMEOUT" update -qq || die "apt-get update failed on the node"
	fi
	# postinst enables crisp.service on a first install and (re)starts it.
	if ! host env DEBIAN_FRONTEND=noninteractive apt-get -o "DPkg::Lock::Timeout=$APT_LOCK_TIMEOUT" install -y --no-install-recommends "$HOST_STAGE_DIR/$staged"; then
		rm -f "$STAGE_DIR/$staged"
		die "apt-get install of crisp $want failed on the node (a downgrade is refused; see the output above)"
	fi
	rm -f "$STAGE_DIR/$staged"
	installed_now=1
fi

# 2. The config: checked by the node's crisp, then swapped in atomically; the previous file is kept.
changed=0
target=$CONFIG_DIR/config.toml
if [ -n "$CONFIG_SOURCE" ]; then
	if [ -f "$target" ] && cmp -s "$CONFIG_SOURCE" "$target"; then
		log "config.toml is up to date"
	else
		cp "$CONFIG_SOURCE" "$STAGE_DIR/config.toml.candidate"
		check='const m = await import(process.argv[1] + "/dist/daemon/config.js"); m.resolveConfig(m.loadConfigFile(process.argv[2], true));'
		if ! host node --input-type=module -e "$check" "$HOST_CRISP_LIB" "$HOST_STAGE_DIR/config.toml.candidate"; then
			rm -f "$STAGE_DIR/config.toml.candidate"
			die "the node's crisp refuses the chart's config (above); /etc/crisp/config.toml is unchanged"
		fi
		rm -f "$STAGE_DIR/config.toml.candidate"
		if [ -f "$target" ]; then
			# The node's own file, the first time the chart replaces it.
			[ -e "$target.before-chart" ] || grep -q 'written by the crisp Helm chart' "$target" || cp -p "$target" "$target.before-chart"
			cp -p "$target" "$STAGE_DIR/config.toml.previous"
		fi
		cp "$CONFIG_SOURCE" "$CONFIG_DIR/.config.toml.chart-new"
		chmod 0644 "$CONFIG_DIR/.config.toml.chart-new"
		mv -f "$CONFIG_DIR/.config.toml.chart-new" "$target"
		changed=1
		log "config.toml updated"
	fi
fi

# 3. The service: restarted for a new config (Type=notify: systemctl waits until crispd is serving,
# and fails when it does not come up); otherwise only started if it is not running.
if [ "$changed" = 1 ]; then
	if ! host systemctl restart "$UNIT"; then
		if [ -f "$STAGE_DIR/config.toml.previous" ]; then
			cp "$STAGE_DIR/config.toml.previous" "$CONFIG_DIR/.config.toml.chart-new"
			mv -f "$CONFIG_DIR/.config.toml.chart-new" "$target"
			rm -f "$STAGE_DIR/config.toml.previous"
			host systemctl restart "$UNIT" || true
			die "$UNIT did not start with the new config; the previous config.toml is back (journalctl -u crisp on the node)"
		fi
		die "$UNIT did not start with the new config (journalctl -u crisp on the node)"
	fi
	log "restarted $UNIT"
elif [ "$installed_now" = 0 ]; then
	host systemctl start "$UNIT" || die "$UNIT does not start (journalctl -u crisp on the node)"
fi
rm -f "$STAGE_DIR/config.toml.previous"
log "crisp $want ready on $(host hostname)"
