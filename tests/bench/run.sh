#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# All benchmarks, one after the other (`make bench`). Benchmarks print numbers
# beside their targets; they are not tests and are never run by CI.
#   tests/bench/run.sh [builddir]
set -uo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
build=${1:-$src/_build}
rc=0
for b in "$src"/tests/bench/*.sh "$src"/modules/*/bench/run.sh; do
	[ -x "$b" ] || continue
	case "$b" in */tests/bench/run.sh) continue ;; esac
	echo "=== ${b#"$src"/}"
	AXN_BUILDDIR=$build AXN_BUILD=$build AXN_SRC=$src "$b" || { echo "(exit $?)"; rc=1; }
	echo
done
exit $rc
