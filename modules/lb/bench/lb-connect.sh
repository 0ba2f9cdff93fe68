#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# lb-connect.sh — connect() latency p50/p99 to the *last* of N services
# (1k/10k/100k): the socket LB (lb_connect4 on a private cgroup), no rules at
# all (straight to the backend), and kube-proxy-style iptables DNAT (legacy)
# in a private netns. Prints numbers; asserts nothing. Needs root.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
BENCH=${LB_BENCH:-$(dirname "$0")/lb-bench}
SIZES=${LB_SIZES:-"1000 10000 100000"}
COUNT=${LB_COUNT:-5000}
NS=lbc$$
if [ -e /sys/fs/cgroup/unified/cgroup.procs ]; then CGR=/sys/fs/cgroup/unified; else CGR=/sys/fs/cgroup; fi
CG=$CGR/lbc$$
cleanup() { ip netns del "$NS" 2>/dev/null || true; rmdir "$CG" 2>/dev/null || true; rm -f "/tmp/$NS.rules"; }
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" route add 10.96.0.0/12 dev lo
for n in $SIZES; do
	mkdir "$CG"
	"$BENCH" connect "$n" "$CG"
	rmdir "$CG"
	awk -v n="$n" 'BEGIN {
		print "*nat"; print ":KUBE-SERVICES - [0:0]"
		for (i = 0; i < n; i++) printf ":KUBE-SVC-%d - [0:0]\n:KUBE-SEP-%d - [0:0]\n", i, i
		print "-A OUTPUT -j KUBE-SERVICES"
		for (i = 0; i < n; i++) {
			a = 10 * 16777216 + 96 * 65536 + i
			printf "-A KUBE-SERVICES -d %d.%d.%d.%d/32 -p tcp -m comment --comment \"bench/svc%d:p\" -m tcp --dport 80 -j KUBE-SVC-%d\n", int(a/16777216), int(a/65536)%256, int(a/256)%256, a%256, i, i
			printf "-A KUBE-SVC-%d -j KUBE-SEP-%d\n", i, i
			printf "-A KUBE-SEP-%d -p tcp -m tcp -j DNAT --to-destination 127.0.0.1:18080\n", i
		}
		print "COMMIT" }' >"/tmp/$NS.rules"
	ip netns exec "$NS" iptables-legacy-restore <"/tmp/$NS.rules"
	last=$(awk -v i="$((n - 1))" 'BEGIN { a = 10 * 16777216 + 96 * 65536 + i; printf "%d.%d.%d.%d", int(a/16777216), int(a/65536)%256, int(a/256)%256, a%256 }')
	printf '  iptables-legacy services=%s ' "$n"
	ip netns exec "$NS" "$BENCH" connect-raw "$last" 80 18080 "$COUNT"
	ip netns exec "$NS" iptables-legacy -t nat -F
	ip netns exec "$NS" iptables-legacy -t nat -X
done
