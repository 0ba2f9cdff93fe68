#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Per-packet cost of the hook chain (root + N chained programs vs one program
# attached directly), tc and XDP, via BPF_PROG_TEST_RUN. Prints a table.
#
#   tests/bench/chain.sh [-B builddir] [chain-bench options: -r repeat -n runs]
#
# builddir defaults to $AXN_BUILDDIR, else the current directory if it holds
# tests/bpf/Makefile, else the source tree. The bench is built there
# (make -C tests/bpf chain-bench) and pinned to one CPU when taskset exists.
set -eu

builddir=${AXN_BUILDDIR:-}
if [ "${1:-}" = "-B" ]; then
	builddir=$2
	shift 2
fi
if [ -z "$builddir" ]; then
	if [ -f tests/bpf/Makefile ]; then
		builddir=.
	else
		builddir=$(cd "$(dirname "$0")/../.." && pwd)
	fi
fi
if [ ! -f "$builddir/tests/bpf/Makefile" ]; then
	echo "chain.sh: no configured build in $builddir (run configure, or pass -B builddir)" >&2
	exit 2
fi
if [ "$(id -u)" != 0 ]; then
	echo "chain.sh: BPF_PROG_TEST_RUN needs root" >&2
	exit 77
fi

make -s -C "$builddir/bpf" >/dev/null
make -s -C "$builddir/tests/bpf" chain-bench >/dev/null

pin=""
if command -v taskset >/dev/null 2>&1; then
	pin="taskset -c $(($(nproc) - 1))"
fi
echo "# $(uname -r), $(nproc) CPU(s), load: $(cut -d' ' -f1-3 /proc/loadavg)"
exec $pin "$builddir/tests/bpf/chain-bench" "$@"
