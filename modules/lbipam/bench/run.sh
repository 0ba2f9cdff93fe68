#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# lbipam benchmark: decide for N services across P pools (default 10000 and
# 10), print ms and bytes per service. Not part of `make check`.
#
#   make -C <builddir>/modules/lbipam bench          # builds, then runs this
#   modules/lbipam/bench/run.sh BIN [services] [pools]
#   AXN_BUILD=<builddir> modules/lbipam/bench/run.sh   # as `make bench` runs it
set -eu
if [ $# -gt 0 ]; then
	BIN=$1
	shift
elif [ -n "${AXN_BUILD:-}" ]; then
	make -s -C "$AXN_BUILD/modules/lbipam" bench/bench_lbipam >/dev/null
	BIN=$AXN_BUILD/modules/lbipam/bench/bench_lbipam
else
	BIN=./bench/bench_lbipam
fi
if [ ! -x "$BIN" ]; then
	echo "run.sh: no benchmark binary at $BIN (make -C <builddir>/modules/lbipam bench)" >&2
	exit 2
fi
exec "$BIN" "$@"
