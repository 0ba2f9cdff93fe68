#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# tools/bootstrap.sh — from a fresh checkout to a staged install, from any cwd:
#
#   1. tools/deps.sh               (installs missing Debian packages; needs root then)
#   2. autoreconf -fi              (only if configure is missing or older than
#                                   configure.ac / any Makefile.am / *.am / m4)
#   3. configure out of tree in _build/   (extra args from $AXN_CONFIGURE_ARGS;
#                                   re-run only when the args or configure change)
#   4. make -j$(nproc)
#   5. make stage                  -> _build/stage/usr/local/{sbin/axonemed,bin/axoneme,
#                                     lib/axoneme/modules,include,lib/pkgconfig}
#
# Environment:
#   AXN_CONFIGURE_ARGS   extra configure arguments, e.g. "--enable-sanitizers"
#   AXN_BUILD_DIR        build directory (default: <repo>/_build)
#   AXN_SKIP_DEPS=1      do not run tools/deps.sh
#   AXN_JOBS             parallel jobs (default: nproc)
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
BUILD=${AXN_BUILD_DIR:-$ROOT/_build}
STAGE=$BUILD/stage
JOBS=${AXN_JOBS:-$(nproc)}
# Directories created by `make install` must not be group/world-writable:
# the module loader refuses such a module directory.
umask 022

say() { printf 'bootstrap: %s\n' "$*"; }
die() {
	printf 'bootstrap: error: %s\n' "$*" >&2
	exit 1
}

# 1. packages
if [ "${AXN_SKIP_DEPS:-0}" != 1 ]; then
	"$ROOT/tools/deps.sh"
fi

# 2. autotools. Serialised with a lock so two bootstraps on one tree never
# regenerate at the same time.
if [ -e "$ROOT/config.status" ]; then
	die "$ROOT is configured in-tree; run 'make distclean' there first (bootstrap builds in $BUILD)"
fi
needs_autoreconf() {
	[ -x "$ROOT/configure" ] || return 0
	[ "$ROOT/configure.ac" -nt "$ROOT/configure" ] && return 0
	local newer
	newer=$(cd "$ROOT" && find . \( -path ./.git -o -path ./_build -o -path "./${BUILD#"$ROOT"/}" \) -prune -o \
		\( -name '*.am' -o -path './m4/*.m4' \) -newer configure -print -quit)
	[ -n "$newer" ]
}
if needs_autoreconf; then
	# The lock is on configure.ac itself: no lock file to leave behind.
	exec 9<"$ROOT/configure.ac"
	flock 9
	if needs_autoreconf; then # someone else may have done it meanwhile
		say "autoreconf -fi"
		log=$(mktemp /tmp/axoneme-autoreconf.XXXXXX)
		if ! (cd "$ROOT" && autoreconf -fi) >"$log" 2>&1; then
			cat "$log" >&2
			rm -f "$log"
			die "autoreconf failed"
		fi
		rm -f "$log"
	fi
	exec 9>&-
fi

# 3. configure (out of tree)
mkdir -p "$BUILD"
args=${AXN_CONFIGURE_ARGS:-}
if [ ! -e "$BUILD/config.status" ] || [ "$ROOT/configure" -nt "$BUILD/config.status" ] ||
	[ "$(cat "$BUILD/.axn-configure-args" 2>/dev/null)" != "$args" ]; then
	say "configure ${args:-(default)} in ${BUILD}"
	# shellcheck disable=SC2086 # AXN_CONFIGURE_ARGS is a word list by design
	# (configure's "rm -f core" trips over the core/ directory: drop that line)
	(cd "$BUILD" && "$ROOT/configure" -q $args) 2>&1 | sed -u "/^rm: cannot remove 'core': Is a directory$/d" ||
		die "configure failed (see $BUILD/config.log)"
	printf '%s' "$args" >"$BUILD/.axn-configure-args"
fi

# Quiet make: no "Making all in DIR" lines, no libtool reminders about
# `libtool --finish` (the stage is not a real install). Warnings still show.
quiet() { sed -u -e '/^Making [a-z-]* in /d' -e "/^libtool: warning: remember to run 'libtool --finish/d"; }

# 4. build
say "make -j$JOBS"
make -C "$BUILD" -s -j"$JOBS" 2>&1 | quiet || die "build failed"

# 5. stage. STAGE is passed explicitly so the layout is <build>/stage whatever
# the top-level Makefile's default is.
say "make stage -> $STAGE"
make -C "$BUILD" -s stage STAGE="$STAGE" 2>&1 | quiet || die "make stage failed"

for f in "$STAGE/usr/local/sbin/axonemed" "$STAGE/usr/local/bin/axoneme"; do
	[ -x "$f" ] || die "stage is missing $f"
done
say "ok: $STAGE"
