# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# tests/bench/kubeproxy-rules.sh — N ClusterIP services, written as kube-proxy's
# iptables mode writes them (iptables-restore input), or as the Service +
# EndpointSlice manifests that describe the same services (for the statedir
# module). Used by svc-connect.sh; prints to stdout, touches nothing.
#
# Not executable on purpose: `make bench` runs every executable
# tests/bench/*.sh. Run it with bash:
#
#   bash tests/bench/kubeproxy-rules.sh [options] N BACKEND_IP:PORT
#     -o iptables   iptables-restore input: *filter and *nat (default)
#     -o manifests  one JSON object a line: Service, EndpointSlice, ... (statedir reads that)
#     -k K          endpoints per service (default 1; K > 1 adds kube-proxy's statistic match)
#     -r FROM:TO    manifests only: just services FROM..TO (1-based, inclusive)
#     -c CIDR       cluster CIDR of the "! -s CIDR -j KUBE-MARK-MASQ" rule (default
#                   10.192.0.0/10; "" leaves it out, as kube-proxy without --cluster-cidr)
#     -F            no *filter table (nat only)
#     -p PORT       service port (default 80)
#   bash tests/bench/kubeproxy-rules.sh -a I     # prints the ClusterIP of service I
#
# Address plan (the same for both outputs):
#   service i (1..N): default/bench-i, ClusterIP 10.96.0.0 + 16 + i (in 10.96.0.0/12),
#                     port 80/TCP named "http", target port 8080
#   its endpoints:    10.208.0.0 + (i-1)*K + j + 1, j = 0..K-1 (in 10.208.0.0/12; nothing
#                     answers there), except service N, whose endpoints are all
#                     BACKEND_IP:PORT, the real backend. N*K is at most 1,000,000.
#
# The rules are kube-proxy's (pkg/proxy/iptables/proxier.go, 1.28+) for a ClusterIP service:
#   -A KUBE-SERVICES -m comment --comment "default/bench-i:http cluster IP" -m tcp -p tcp -d VIP --dport 80 -j KUBE-SVC-<16>
#   -A KUBE-SVC-<16> -m comment --comment "default/bench-i:http cluster IP" -m tcp -p tcp -d VIP --dport 80 ! -s CIDR -j KUBE-MARK-MASQ
#   -A KUBE-SVC-<16> -m comment --comment "default/bench-i:http -> EP:PORT" [-m statistic --mode random --probability P] -j KUBE-SEP-<16>
#   -A KUBE-SEP-<16> -m comment --comment default/bench-i:http -s EP/32 -j KUBE-MARK-MASQ
#   -A KUBE-SEP-<16> -m comment --comment default/bench-i:http -m tcp -p tcp -j DNAT --to-destination EP:PORT
# KUBE-SERVICES ends with the KUBE-NODEPORTS (addrtype LOCAL) rule; KUBE-MARK-MASQ and
# KUBE-POSTROUTING (mark 0x4000, MASQUERADE --random-fully); jumps from PREROUTING, OUTPUT and
# POSTROUTING; the filter table has kube-proxy's (empty) chains and their conntrack-state jumps.
# Service N's rule is the last one in KUBE-SERVICES: the worst case of the linear walk.
# Chain-name hashes are pseudo-random base32 (kube-proxy's come from sha256; only their
# length matters here).
set -euo pipefail

usage() {
	sed -n '/^#   bash/,/ClusterIP of service I/p' "${BASH_SOURCE[0]}" | sed 's/^#//' >&2
	exit 2
}
out=iptables k=1 range="" cidr=10.192.0.0/10 filter=1 port=80 addr_of=""
while getopts "o:k:r:c:Fp:a:h" o; do
	case "$o" in
	o) out=$OPTARG ;;
	k) k=$OPTARG ;;
	r) range=$OPTARG ;;
	c) cidr=$OPTARG ;;
	F) filter=0 ;;
	p) port=$OPTARG ;;
	a) addr_of=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))

if [ -n "$addr_of" ]; then
	case "$addr_of" in '' | *[!0-9]*) usage ;; esac
	awk -v i="$addr_of" 'BEGIN { v = 10 * 16777216 + 96 * 65536 + 16 + i
		printf "%d.%d.%d.%d\n", int(v / 16777216), int(v / 65536) % 256, int(v / 256) % 256, v % 256 }'
	exit 0
fi
[ $# -eq 2 ] || usage
n=$1 backend=$2
case "$n" in '' | *[!0-9]*) usage ;; esac
case "$k" in '' | *[!0-9]*) usage ;; esac
case "$port" in '' | *[!0-9]*) usage ;; esac
case "$out" in iptables | manifests) ;; *) usage ;; esac
if [ "$n" -lt 1 ] || [ "$k" -lt 1 ] || [ $((n * k)) -gt 1000000 ]; then
	echo "kubeproxy-rules.sh: need 1 <= N, 1 <= K, N*K <= 1000000" >&2
	exit 2
fi
case "$backend" in *.*.*.*:[0-9]*) ;; *) echo "kubeproxy-rules.sh: BACKEND is IPv4:PORT" >&2; exit 2 ;; esac
from=1 to=$n
if [ -n "$range" ]; then
	from=${range%%:*} to=${range##*:}
	if [ "$from" -lt 1 ] || [ "$to" -gt "$n" ] || [ "$from" -gt "$to" ]; then
		echo "kubeproxy-rules.sh: bad range $range for N=$n" >&2
		exit 2
	fi
fi

exec awk -v n="$n" -v k="$k" -v out="$out" -v from="$from" -v to="$to" -v cidr="$cidr" \
	-v filter="$filter" -v port="$port" -v backend="$backend" '
function ip(v) { return int(v / 16777216) "." int(v / 65536) % 256 "." int(v / 256) % 256 "." v % 256 }
function vip(i) { return ip(VIPBASE + 16 + i) }
function ep(i, j) { return i == n ? BIP : ip(EPBASE + (i - 1) * k + j + 1) }
function epport(i) { return i == n ? BPORT : TPORT }
# 16 base32 characters for a seed: 11 pseudo-random ones (an LCG that stays exact in
# doubles), then 5 that encode the seed one-to-one, so seeds < 2^25 never collide.
function h16(seed,   s, c, r, t) {
	s = (seed * 2654435761 + 97) % 4294967296; r = ""
	for (c = 0; c < 11; c++) {
		s = (s * 69069 + 1) % 4294967296
		r = r substr(B32, int(s / 134217728) + 1, 1)
	}
	t = (seed * 747796405 + 2891336453) % 33554432 # odd multiplier: a bijection mod 2^25
	for (c = 0; c < 5; c++) {
		r = r substr(B32, t % 32 + 1, 1)
		t = int(t / 32)
	}
	return r
}
function svchash(i) { return h16(i) }
function sephash(i, j) { return h16(2000000 + (i - 1) * k + j) }
BEGIN {
	B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	VIPBASE = 10 * 16777216 + 96 * 65536          # 10.96.0.0
	EPBASE = 10 * 16777216 + 208 * 65536          # 10.208.0.0
	TPORT = 8080
	split(backend, bp, ":"); BIP = bp[1]; BPORT = bp[2]
	if (out == "manifests")
		manifests()
	else
		iptables()
	exit
}
function cond() { return "\"conditions\":{\"ready\":true,\"serving\":true,\"terminating\":false}" }
function manifests(   i, j, name, eps) {
	for (i = from; i <= to; i++) {
		name = "bench-" i
		printf "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"%s\",\"namespace\":\"default\"},\"spec\":{\"type\":\"ClusterIP\",\"clusterIP\":\"%s\",\"clusterIPs\":[\"%s\"],\"ports\":[{\"name\":\"http\",\"port\":%d,\"protocol\":\"TCP\",\"targetPort\":%d}]}}\n", \
			name, vip(i), vip(i), port, TPORT
		eps = ""
		# The last service: its K endpoints would all be the one backend; one is enough.
		for (j = 0; j < (i == n ? 1 : k); j++)
			eps = eps (j ? "," : "") "{\"addresses\":[\"" ep(i, j) "\"]," cond() "}"
		printf "{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":{\"name\":\"%s-%s\",\"namespace\":\"default\",\"labels\":{\"kubernetes.io/service-name\":\"%s\"}},\"addressType\":\"IPv4\",\"endpoints\":[%s],\"ports\":[{\"name\":\"http\",\"port\":%d,\"protocol\":\"TCP\"}]}\n", \
			name, tolower(substr(h16(3000000 + i), 1, 5)), name, eps, epport(i)
	}
}
function iptables(   i, j, spn, e) {
	if (filter) {
		print "*filter"
		print ":INPUT ACCEPT [0:0]"
		print ":FORWARD ACCEPT [0:0]"
		print ":OUTPUT ACCEPT [0:0]"
		print ":KUBE-EXTERNAL-SERVICES - [0:0]"
		print ":KUBE-FORWARD - [0:0]"
		print ":KUBE-NODEPORTS - [0:0]"
		print ":KUBE-PROXY-FIREWALL - [0:0]"
		print ":KUBE-SERVICES - [0:0]"
		print "-A INPUT -m comment --comment \"kubernetes health check service ports\" -j KUBE-NODEPORTS"
		print "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES"
		print "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL"
		print "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD"
		print "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
		print "-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES"
		print "-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL"
		print "-A OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
		print "-A KUBE-FORWARD -m conntrack --ctstate INVALID -m comment --comment \"kubernetes forwarding rules\" -j DROP"
		print "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT"
		print "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
		print "COMMIT"
	}
	print "*nat"
	print ":PREROUTING ACCEPT [0:0]"
	print ":INPUT ACCEPT [0:0]"
	print ":OUTPUT ACCEPT [0:0]"
	print ":POSTROUTING ACCEPT [0:0]"
	print ":KUBE-MARK-MASQ - [0:0]"
	print ":KUBE-NODEPORTS - [0:0]"
	print ":KUBE-POSTROUTING - [0:0]"
	print ":KUBE-SERVICES - [0:0]"
	for (i = 1; i <= n; i++) {
		print ":KUBE-SVC-" svchash(i) " - [0:0]"
		for (j = 0; j < k; j++)
			print ":KUBE-SEP-" sephash(i, j) " - [0:0]"
	}
	print "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
	print "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
	print "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING"
	print "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000"
	print "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN"
	print "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000"
	print "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully"
	for (i = 1; i <= n; i++) {
		spn = "default/bench-" i ":http"
		printf "-A KUBE-SERVICES -m comment --comment \"%s cluster IP\" -m tcp -p tcp -d %s --dport %d -j KUBE-SVC-%s\n", spn, vip(i), port, svchash(i)
		if (cidr != "")
			printf "-A KUBE-SVC-%s -m comment --comment \"%s cluster IP\" -m tcp -p tcp -d %s --dport %d ! -s %s -j KUBE-MARK-MASQ\n", svchash(i), spn, vip(i), port, cidr
		for (j = 0; j < k; j++) {
			e = ep(i, j) ":" epport(i)
			if (j < k - 1)
				printf "-A KUBE-SVC-%s -m comment --comment \"%s -> %s\" -m statistic --mode random --probability %0.10f -j KUBE-SEP-%s\n", svchash(i), spn, e, 1.0 / (k - j), sephash(i, j)
			else
				printf "-A KUBE-SVC-%s -m comment --comment \"%s -> %s\" -j KUBE-SEP-%s\n", svchash(i), spn, e, sephash(i, j)
		}
		for (j = 0; j < k; j++) {
			e = ep(i, j) ":" epport(i)
			printf "-A KUBE-SEP-%s -m comment --comment %s -s %s/32 -j KUBE-MARK-MASQ\n", sephash(i, j), spn, ep(i, j)
			printf "-A KUBE-SEP-%s -m comment --comment %s -m tcp -p tcp -j DNAT --to-destination %s\n", sephash(i, j), spn, e
		}
	}
	print "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"
	print "COMMIT"
}'
