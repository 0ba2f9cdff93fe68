#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# modules/lb/bench/run.sh — the lb module's benchmarks, as `make bench` runs
# them (tests/bench/run.sh sets AXN_BUILD and AXN_SRC). Numbers next to their
# targets; never a failure because of a number. Needs root (BPF maps, lab).
#
#  1. Programming: N services x B backends from the store into the maps
#     (lb-bench program: the module on the testhost, real BPF maps), the
#     time from the first store event delivered to the module until the maps
#     hold everything -- on a replay (the store holds the objects when the
#     module starts, as at agent start) and incremental (they arrive while
#     the module runs). Median of LB_RUNS runs (LB_RUNS_100K for 100k), with
#     the module's own read / translate / write split.
#  2. The real agent (lb-agent.sh): statedir + lb over 10k Services + 10k
#     EndpointSlices; exec -> all services in the maps, RSS with a breakdown.
#
#  1b. The kube-proxy-style baseline for (1) in the same run: the same
#     services as iptables-restore input into an empty netns (lb-program.sh
#     LB_BASELINE_ONLY=1; 10k by default, LB_BASELINE_SIZES adds 100k).
# Also here, not run by default: lb-connect.sh (connect() latency vs
# iptables DNAT; tests/bench/svc-connect.sh is the one make bench runs).
set -uo pipefail

src=${AXN_SRC:-$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../../.." && pwd -P)}
build=${AXN_BUILD:-$src/_build}
RUNS=${LB_RUNS:-5}
RUNS_100K=${LB_RUNS_100K:-5} # a single 100k run is at the mercy of the VM's fresh-page cost
SIZES=${LB_SIZES:-"10000 100000"}
BACKENDS=${LB_BACKENDS:-"1 10"}

if [ "$(id -u)" != 0 ]; then
	echo "SKIP: the lb benchmarks need root (BPF maps, network namespaces)"
	exit 77
fi
if [ ! -f "$build/modules/lb/Makefile" ]; then
	echo "lb bench: no configured build in $build (set AXN_BUILD)" >&2
	exit 1
fi
make -s -C "$build/modules/lb" bench/lb-bench >/dev/null || exit 1
BENCH=$build/modules/lb/bench/lb-bench
export LB_BENCH=$BENCH

target_ms() { [ "$1" -ge 100000 ] && echo 400 || echo 40; }
# median of the numbers on stdin
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }'; }
# min-max of the numbers on stdin
range() { sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "%s-%s\n", v[1], v[NR]; else print "-" }'; }
field() { sed -n "s/.* $1=\\([^ ]*\\).*/\\1/p"; }

# The machine's speed now (a shared VM's CPU and fresh-page cost vary by minute).
calibrate() { "$BENCH" calibrate 2>/dev/null | sed 's/^calibrate /    machine now: /'; }
echo "lb: programming N services from the store into the BPF maps (first store event -> maps hold all)"
calibrate
echo "    testhost store + the module's code + real maps; median of $RUNS runs ($RUNS_100K at 100k)"
printf '%9s %8s  %-11s %9s %-13s %9s %9s %9s   %-14s %-5s %-20s %-8s %-7s %s\n' services backends mode ms "(min-max)" read translate write target maps "1 update p50/p99 µs" "steal ms" "CPU ms" "faults"
rc=0
for n in $SIZES; do
	runs=$RUNS
	[ "$n" -ge 100000 ] && runs=$RUNS_100K
	for b in $BACKENDS; do
		for mode in replay incremental; do
			out=""
			for ((i = 0; i < runs; i++)); do
				line=$("$BENCH" program "$n" "$b" "$mode" 2>&1 | grep '^program ') || true
				[ -n "$line" ] && out+="$line"$'\n'
			done
			if [ -z "$out" ]; then
				printf '%9s %8s  %-11s %9s\n' "$n" "$b" "$mode" "failed"
				rc=1
				continue
			fi
			ms=$(field ms <<<"$out" | median)
			t=$(target_ms "$n")
			printf '%9s %8s  %-11s %9s %-13s %9s %9s %9s   < %3s ms %-5s %-5s %-20s %-8s %-7s %s\n' "$n" "$b" "$mode" "$ms" \
				"($(field ms <<<"$out" | range))" \
				"$(field read_ms <<<"$out" | median)" "$(field translate_ms <<<"$out" | median)" \
				"$(field write_ms <<<"$out" | median)" "$t" \
				"$(awk -v v="$ms" -v t="$t" 'BEGIN { print (v + 0 < t + 0) ? "ok" : "OVER" }')" \
				"$(field maps <<<"$out" | sort -u | tr -d '\n')" \
				"$(field update_p50_us <<<"$out" | median)/$(field update_p99_us <<<"$out" | median)" \
				"$(field steal_ms <<<"$out" | median)" "$(field cpu_ms <<<"$out" | median)" \
				"$(field faults <<<"$out" | median)"
		done
	done
done
calibrate
echo "    (ms: deliveries + read + translate + write; read = parsing the documents and applying"
echo "     them (a second thread parses from 2048 events); translate: translation on a second"
echo "     thread from 1024 services while this one claims; write = the array stores and the"
echo "     masters' syscalls (2 threads from 8192); 1 update: then 200 times one service's"
echo "     slice changes, delivered and flushed alone; machine now: before and after the table,"
echo "     a fixed CPU loop, the cost of a fresh page and of a cache miss -- on a shared VM"
echo "     they vary by minute; steal ms: CPU time the host took from this VM during the run;"
echo "     CPU ms: of all threads, faults: minor page faults, both in the timed part: the"
echo "     fresh pages a sync touches are the part of its time that varies most here)"
echo
echo "kube-proxy baseline in the same run: the same services as iptables-restore input"
echo "(KUBE-SERVICES -> KUBE-SVC -> KUBE-SEP DNAT), restored into an empty netns"
echo "(${LB_BASELINE_SIZES:=10000} services; LB_BASELINE_SIZES=\"10000 100000\" adds 100k, minutes with nft)"
LB_SIZES=$LB_BASELINE_SIZES LB_BASELINE_ONLY=1 "$src/modules/lb/bench/lb-program.sh" || rc=1
echo

"$src/modules/lb/bench/lb-agent.sh" || rc=1
exit $rc
