#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# lb-program.sh — time to program N services (1 and 10 backends) from the
# store into the lb maps, side by side with a kube-proxy-style iptables-restore
# of the same N services into a private netns. Prints numbers; asserts nothing.
# Needs root. LB_BENCH: the lb-bench binary (default: the build dir's).
# LB_BASELINE_ONLY=1: only the iptables baselines (run.sh prints lb's own table).
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
BENCH=${LB_BENCH:-$(dirname "$0")/lb-bench}
SIZES=${LB_SIZES:-"10000 100000"}
NS=lbp$$
cleanup() { ip netns del "$NS" 2>/dev/null || true; rm -f "/tmp/$NS.rules"; }
trap cleanup EXIT
ip netns add "$NS"

# kube-proxy's iptables shape: KUBE-SERVICES -> KUBE-SVC-x -> KUBE-SEP-x (DNAT).
rules() { # N B
	awk -v n="$1" -v b="$2" 'BEGIN {
		print "*nat"; print ":KUBE-SERVICES - [0:0]"
		for (i = 0; i < n; i++) { printf ":KUBE-SVC-%d - [0:0]\n", i; for (j = 0; j < b; j++) printf ":KUBE-SEP-%d-%d - [0:0]\n", i, j }
		print "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
		for (i = 0; i < n; i++) {
			a = 10 * 16777216 + 96 * 65536 + i
			printf "-A KUBE-SERVICES -d %d.%d.%d.%d/32 -p tcp -m comment --comment \"bench/svc%d:p\" -m tcp --dport 80 -j KUBE-SVC-%d\n", int(a/16777216), int(a/65536)%256, int(a/256)%256, a%256, i, i
			for (j = 0; j < b; j++) {
				if (j < b - 1) printf "-A KUBE-SVC-%d -m statistic --mode random --probability %.5f -j KUBE-SEP-%d-%d\n", i, 1/(b-j), i, j
				else printf "-A KUBE-SVC-%d -j KUBE-SEP-%d-%d\n", i, i, j
				e = 11 * 16777216 + i * b + j
				printf "-A KUBE-SEP-%d-%d -p tcp -m tcp -j DNAT --to-destination %d.%d.%d.%d:8080\n", i, j, int(e/16777216), int(e/65536)%256, int(e/256)%256, e%256
			}
		}
		print "COMMIT" }'
}
for n in $SIZES; do
	for b in 1 10; do
		[ "${LB_BASELINE_ONLY:-0}" = 1 ] || "$BENCH" program "$n" "$b" | head -1
		rules "$n" "$b" >"/tmp/$NS.rules"
		for tool in iptables-legacy-restore iptables-nft-restore; do
			command -v "$tool" >/dev/null || continue
			t0=$(date +%s%N)
			ip netns exec "$NS" "$tool" <"/tmp/$NS.rules"
			t1=$(date +%s%N)
			echo "  baseline $tool services=$n backends_per_service=$b ms=$(((t1 - t0) / 1000000))"
			ip netns exec "$NS" "$tool" <<<$'*nat\nCOMMIT' >/dev/null 2>&1 || true
			ip netns exec "$NS" iptables-legacy -t nat -F >/dev/null 2>&1 || true
			ip netns exec "$NS" iptables-legacy -t nat -X >/dev/null 2>&1 || true
			ip netns exec "$NS" iptables-nft -t nat -F >/dev/null 2>&1 || true
			ip netns exec "$NS" iptables-nft -t nat -X >/dev/null 2>&1 || true
		done
	done
done
