#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# tools/deps.sh — install the Debian packages needed to build Axoneme and run
# its tests. Installs only what is missing (checked with dpkg -s), runs
# `apt-get update` at most once, never pulls recommends. Idempotent and quiet:
# prints nothing when everything is present, else the packages it installs.
#
#   tools/deps.sh            install what is missing (needs root)
#   tools/deps.sh --check    list what is missing, exit 1 if anything is
#   AXN_DEPS_EXTRA="bird2 frr" tools/deps.sh   also install these
set -euo pipefail

PACKAGES=(
	# build
	build-essential autoconf automake libtool pkg-config
	libbpf-dev libelf-dev zlib1g-dev bpftool clang llvm
	libconfig-dev libevent-dev libjansson-dev libcmocka-dev libyaml-dev libmnl-dev
	# tests, lab, demo
	iproute2 iputils-ping procps psmisc jq
	# lab peers: pods serve with Debian's python3, clients use curl
	python3 curl
)
# shellcheck disable=SC2206 # word splitting of the extra list is intended
[ -n "${AXN_DEPS_EXTRA:-}" ] && PACKAGES+=(${AXN_DEPS_EXTRA})

check_only=0
case "${1:-}" in
--check) check_only=1 ;;
"") ;;
-h | --help)
	sed -n '3,12p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "usage: $0 [--check]" >&2
	exit 2
	;;
esac

missing=()
for p in "${PACKAGES[@]}"; do
	# dpkg -s exits 0 for packages that were removed but not purged
	# ("deinstall ok config-files"), so look at the Status line too.
	status=$(dpkg -s "$p" 2>/dev/null | sed -n 's/^Status: //p') || status=
	if [ "$status" != "install ok installed" ]; then
		missing+=("$p")
	fi
done

if [ "${#missing[@]}" -eq 0 ]; then
	exit 0
fi

if [ "$check_only" = 1 ]; then
	echo "missing: ${missing[*]}"
	exit 1
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: missing packages: ${missing[*]}" >&2
	echo "deps.sh: run as root (sudo $0) to install them" >&2
	exit 1
fi

echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp /tmp/axn-deps.XXXXXX)
trap 'rm -f "$log"' EXIT
if ! apt-get update -qq >"$log" 2>&1; then
	cat "$log" >&2
	echo "deps.sh: apt-get update failed" >&2
	exit 1
fi
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
	tail -n 30 "$log" >&2
	echo "deps.sh: apt-get install failed" >&2
	exit 1
fi
echo "deps.sh: done"
