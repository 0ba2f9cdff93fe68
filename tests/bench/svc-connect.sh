#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# tests/bench/svc-connect.sh — lb benchmark 2: connect() latency to the LAST of
# N ClusterIP services, N = 1k / 10k / 100k, side by side in one run:
#
#   no rules         straight to the backend pod's IP: no NAT, no BPF (the floor)
#   iptables-nft     kube-proxy's iptables-mode rules for N services (iptables-nft-restore)
#   iptables-legacy  the same rules through iptables-legacy-restore
#   axoneme lb       axonemed with statedir + lb: cgroup connect4 translation, N services
#
# Target (lb issue): axoneme p50 within 3 µs of no rules, flat as N grows.
# A benchmark, not a test: it prints numbers beside the target and exits 0
# whatever they are (77 when it cannot run at all: not root, no compiler).
#
# Lab (tests/lab/lab.sh): three nodes, each with one backend pod answering on
# :8080 (svc-connect-lat.c in server mode, pinned to CPU 0, busy-polling
# accept() while connections come: the handshake's last ACK wakes the server
# from inside the client's connect(), and waking an idle vCPU made p50 jump
# between ~15 and ~30 µs from run to run):
#   node 1: no rules, and axoneme lb (agent with its cgroup programs on node 1's cgroup)
#   node 2: iptables-nft     node 3: iptables-legacy
# Separate nodes keep every mode clean: netfilter tables (and the conntrack they
# turn on) stay in a namespace once loaded. The client (svc-connect-lat.c,
# pinned to the last CPU) runs in the node's namespace, as a host-network
# process: inside node 1's cgroup for axoneme lb, in an empty sibling cgroup for
# everything else. Each sample is one blocking connect() (SYN out, SYN-ACK in);
# sockets are closed with SO_LINGER 0. No rules and axoneme lb, whose
# difference is the point, run in interleaved blocks (ABBA...) and each one's
# samples are pooled, so the machine's drift does not land on one of them.
#
# Rules: kubeproxy-rules.sh (nat KUBE-SERVICES/SVC/SEP/MARK-MASQ/POSTROUTING,
# filter jumps, one endpoint per service; service N, last in KUBE-SERVICES,
# DNATs to the real backend, the others to addresses nothing answers). Each N
# is restored into an emptied table and timed; the node gets a route for
# 10.96.0.0/12 so connect() reaches the OUTPUT hook. axoneme: the same services
# as Service + EndpointSlice JSON manifests in node 1's state dir, in files of
# at most CHUNK services (statedir reads files up to 16 MiB), written under
# hidden names and renamed in; setup = first rename until the lb module's
# axoneme_lb_services gauge (services in the maps) shows N. Between sizes the
# files are removed and the gauge waited down to 0.
#
# Cgroup BPF programs attached above the lab's cgroup (the hierarchy is
# shared with the host) run on every client's socket too; a connect4 one
# rewrites connect()s to the ClusterIPs in its maps before routing and
# netfilter see them. A stopped axonemed whose cgroup was the root (the
# default) leaves its programs there: then a connect to a VIP it knew fails
# with "Network is unreachable" (its backends have no route in the lab) or
# goes elsewhere, and the rules never see it. Such programs are listed with a
# WARNING at the start (and below the table) with the command that removes
# each, and rows they break say so; the benchmark never detaches them itself
# (they are not its own).
#
# axoneme lb runs only when the staged build has lb.so and it works: the agent
# must start with statedir + lb and a connect from node 1's cgroup to a test
# Service's ClusterIP must reach the backend (a banner from a second server);
# otherwise "axoneme lb: SKIP (reason)" and the other modes go on.
#
#   sudo tests/bench/svc-connect.sh
#   sudo SIZES="1000 10000" COUNT=50000 tests/bench/svc-connect.sh
#   sudo MODES="norules lb" tests/bench/svc-connect.sh
#
# Environment:
#   SIZES (1000 10000 100000)   MODES (norules nft legacy lb)
#   COUNT (20000)   connects per mode and size
#   ROUNDS (4)      each mode's connects in that many blocks (no rules and lb interleaved)
#   WARMUP (50)     unrecorded connects at the start of each block
#   MODE_BUDGET_S (10), MIN_COUNT (2000): fewer connects where COUNT would take longer
#                   than the budget (iptables at 100k: ~2 ms a connect), never below MIN_COUNT
#   CHUNK (20000)   services per manifest file (100k services are ~58 MiB of JSON)
#   SETTLE_S (1)    pause after loading or emptying a table, and after the lb sync
#   PIN (1)         pin the servers to CPU 0 and the client to the last CPU
#   SPIN_MS (200)   the servers busy-poll until nothing came for that long (0: sleep in accept)
#   LB_SYNC_TIMEOUT_S (300), AXN_SRC, AXN_BUILD / AXN_STAGE (the staged build, tests/lab/README.md)
# The default run takes 2.5-3.5 min on the 2-vCPU CI VM; iptables-restore of
# 100k services (30-55 s per backend) is most of it.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

AXN_SRC=${AXN_SRC:-$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)}
# shellcheck source=../lab/lab.sh
. "$AXN_SRC/tests/lab/lab.sh"

SIZES=${SIZES:-"1000 10000 100000"}
COUNT=${COUNT:-20000}
WARMUP=${WARMUP:-50}
ROUNDS=${ROUNDS:-4}
MIN_COUNT=${MIN_COUNT:-2000}
MODE_BUDGET_S=${MODE_BUDGET_S:-10}
MODES=${MODES:-"norules nft legacy lb"}
CHUNK=${CHUNK:-20000}
SETTLE_S=${SETTLE_S:-1}
PIN=${PIN:-1}
SPIN_MS=${SPIN_MS:-200}
LB_SYNC_TIMEOUT_S=${LB_SYNC_TIMEOUT_S:-300}
TARGET_DELTA_US=3
BE_PORT=8080     # backend server (the benchmark)
BANNER_PORT=8081 # backend server that says who it is (the lb check)
SVC_PORT=80
CHECK_VIP=10.96.0.10
RULES=$AXN_SRC/tests/bench/kubeproxy-rules.sh
T_START=${EPOCHREALTIME/./}

lab_require_root
for t in cc awk nsenter; do
	command -v "$t" >/dev/null || { echo "SKIP: svc-connect.sh needs $t"; exit 77; }
done
for n in $SIZES; do
	case "$n" in '' | *[!0-9]* | 0*) echo "svc-connect.sh: bad size '$n' in SIZES" >&2; exit 2 ;; esac
	[ "$n" -le 1000000 ] || { echo "svc-connect.sh: sizes up to 1000000" >&2; exit 2; }
done
has_mode() { case " $MODES " in *" $1 "*) return 0 ;; esac; return 1; }

# iptables: both backends come with Debian's iptables package.
IPT_SKIP=""
if has_mode nft || has_mode legacy; then
	if ! command -v iptables-nft-restore >/dev/null || ! command -v iptables-legacy-restore >/dev/null; then
		if command -v apt-get >/dev/null; then
			echo "installing iptables (apt-get, quietly)"
			export DEBIAN_FRONTEND=noninteractive
			apt-get install -y -qq --no-install-recommends iptables >/dev/null 2>&1 ||
				{ apt-get update -qq >/dev/null 2>&1 &&
					apt-get install -y -qq --no-install-recommends iptables >/dev/null 2>&1; } || true
		fi
		command -v iptables-nft-restore >/dev/null && command -v iptables-legacy-restore >/dev/null ||
			IPT_SKIP="iptables-nft-restore / iptables-legacy-restore not installed (apt-get install iptables)"
	fi
fi

lab_init "axsc$$"
lab_cleanup_trap
W=$LAB_WORK
ms_since() { # START_US -> "1.234" seconds
	local now=${EPOCHREALTIME/./}
	awk -v a="$1" -v b="$now" 'BEGIN { printf "%.2f", (b - a) / 1e6 }'
}
say() { printf '%s\n' "$*"; }

# ---------------------------------------------------------------- client/server
CLIENT=$W/svc-connect-lat
if ! cc -O2 -Wall -Wextra -Werror -o "$CLIENT" "$AXN_SRC/tests/bench/svc-connect-lat.c" 2>"$W/cc.log"; then
	cat "$W/cc.log" >&2
	echo "svc-connect.sh: building svc-connect-lat.c failed" >&2
	exit 1
fi
NCPU=$(nproc)
SRV_PIN=() CLI_PIN=()
if [ "$PIN" = 1 ] && [ "$NCPU" -ge 2 ]; then
	SRV_PIN=(-C 0)
	CLI_PIN=(-C "$((NCPU - 1))")
fi

# ---------------------------------------------------------------- lab
say "svc-connect: lab $LAB_PREFIX in $W; $(uname -r), $NCPU CPU(s); sizes: $SIZES; modes: $MODES"
for n in 1 2 3; do
	lab_node "$n"
	lab_pod "$n" "be$n"
	# More ephemeral ports: conntrack keeps closed flows for 10 s.
	lab_exec "$n" sysctl -q -w net.ipv4.ip_local_port_range="1024 65535"
	lab_spawn "be$n" "server$n" "$CLIENT" -s "${SRV_PIN[@]}" -P "$SPIN_MS" 0.0.0.0 "$BE_PORT"
done
BANNER="backend be1 on node 1"
lab_spawn be1 banner "$CLIENT" -s -b "$BANNER" 0.0.0.0 "$BANNER_PORT"
for label in server1 server2 server3 banner; do
	for ((i = 0; i < 500; i++)); do
		grep -q listening "$W/$label.log" 2>/dev/null && break
		_lab_sleep 0.01
	done
	grep -q listening "$W/$label.log" || { echo "svc-connect.sh: $label did not start:" >&2; cat "$W/$label.log" >&2; exit 1; }
done
BE1=$(lab_pod_ip4 be1)
for n in 2 3; do lab_exec "$n" ip route add 10.96.0.0/12 dev eth0; done

# Clients: nsenter (not ip netns exec, which remounts /sys and so hides the
# cgroup tree), moved into CGROUP before exec.
CG_NONE=$LAB_CG/none # no programs attached: no rules, iptables modes
mkdir "$CG_NONE"
client() { # NODE CGROUP ARGS...
	local ns cg=$2
	ns=$(lab_ns "$1")
	shift 2
	# shellcheck disable=SC2016 # $$ and $0 are the inner shell's
	nsenter --net="/run/netns/$ns" sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg" "$CLIENT" "$@"
}

# Cgroup BPF programs from outside the lab. Every cgroup here is below the
# hierarchy's root, so a program attached above the lab (multi, or override
# with nothing below) runs on the clients' sockets in every mode. A
# cgroup_inet4_connect one sees connect() before routing and netfilter and may
# rewrite the destination: an agent whose cgroup was the hierarchy's root
# (axonemed's default) and that exited without detaching (a prog-attach
# outlives its process) keeps turning the ClusterIPs it knew into its old
# backends, and a connect to one of those fails with "Network is unreachable"
# where the lab has no route, before iptables sees a packet. The lab attaches
# nothing to its own cgroup, so whatever is effective there is foreign.
# FOREIGN[]: "ID TYPE NAME CGROUP LOADED HOLDERS" (CGROUP ? when not found above
# the lab, HOLDERS - when no process holds the program).
FOREIGN=() FOREIGN_C4=""
foreign_cgprogs() {
	local d id type name rest loaded pids
	local -A where=()
	FOREIGN=() FOREIGN_C4=""
	command -v bpftool >/dev/null || return 1
	d=$LAB_CG
	while d=$(dirname -- "$d") && [ -e "$d/cgroup.procs" ]; do
		while read -r id rest; do
			[ -n "${where[$id]:-}" ] || where[$id]=$d
		done < <(bpftool cgroup show "$d" 2>/dev/null | awk '$1 ~ /^[0-9]+$/')
		[ "$d" != / ] || break
	done
	while read -r id type name; do
		rest=$(bpftool prog show id "$id" 2>/dev/null) || rest=""
		loaded=$(printf '%s\n' "$rest" | sed -n 's/^[[:space:]]*loaded_at \([^ ]*\).*/\1/p')
		pids=$(printf '%s\n' "$rest" | sed -n 's/^[[:space:]]*pids \(.*\)/\1/p' | tr -d ' ')
		FOREIGN+=("$id $type ${name:--} ${where[$id]:-?} ${loaded:-?} ${pids:--}")
		[ "$type" = cgroup_inet4_connect ] && FOREIGN_C4+="${FOREIGN_C4:+, }${name:-?} (id $id)"
	done < <(bpftool cgroup show "$LAB_CG" effective 2>/dev/null | awk '$1 ~ /^[0-9]+$/ { print $1, $2, (NF > 2 ? $NF : "") }')
	return 0
}
if ! foreign_cgprogs; then
	say "note: no bpftool, so no check for cgroup BPF programs outside the lab (they would run on every client's connect())"
fi
if [ "${#FOREIGN[@]}" -gt 0 ]; then
	say "WARNING: ${#FOREIGN[@]} cgroup BPF program(s) from outside this lab run on every client's socket, in every mode:"
	for f in "${FOREIGN[@]}"; do
		read -r id type name cg loaded pids <<<"$f"
		[ "$pids" = - ] && pids="no process (left attached)"
		say "$(printf '  id %-6s %-26s %-18s at %s, loaded %s, held by %s' "$id" "$type" "$name" "$cg" "$loaded" "$pids")"
	done
	[ -n "$FOREIGN_C4" ] &&
		say "  The cgroup_inet4_connect one(s) rewrite connect()s to the addresses in their maps before routing and netfilter: a ClusterIP there goes to their backend, not through the rules (\"Network is unreachable\" when the lab has no route to it)."
	say "  All of them add their cost to every mode. They are not this benchmark's; remove them and run again:"
	for f in "${FOREIGN[@]}"; do
		read -r id type name cg loaded pids <<<"$f"
		[ "$cg" = "?" ] || say "    bpftool cgroup detach $cg $type id $id"
	done
fi

# measure SPEC...: SPEC = "LABEL NODE CGROUP ADDR PORT". Measures every SPEC in
# ROUNDS blocks, interleaved (A B, B A, A B, ...: slow drift of the machine
# hits all of them alike), and pools each one's samples. Per SPEC index i sets
# M_P50[i] M_P99[i] M_N[i] M_NOTE[i] (M_P50[i]=- when it could not be measured).
measure() {
	local -a s_lab s_node s_cg s_addr s_port s_cnt
	local i j r k out mean per l1 l2 l3 l4 l5
	local -a order
	M_P50=() M_P99=() M_N=() M_NOTE=()
	k=$#
	for ((i = 0; i < k; i++)); do
		read -r l1 l2 l3 l4 l5 <<<"$1"
		s_lab[i]=$l1 s_node[i]=$l2 s_cg[i]=$l3 s_addr[i]=$l4 s_port[i]=$l5
		shift
		M_P50[i]=- M_P99[i]=- M_N[i]=0 M_NOTE[i]=""
		rm -f "$W/samples.$i"
		# One connect first: a mode that does not work costs a second, not 100 timeouts.
		if ! out=$(client "${s_node[i]}" "${s_cg[i]}" -t 1000 -n 1 -w 0 -L "${s_lab[i]}" "${s_addr[i]}" "${s_port[i]}" 2>&1); then
			M_NOTE[i]="connect to ${s_addr[i]}:${s_port[i]} failed: $(printf '%s\n' "$out" | grep -v '^RESULT' | head -n1)"
			[ -z "$FOREIGN_C4" ] ||
				M_NOTE[i]+="; foreign cgroup connect4 program(s) $FOREIGN_C4 ran first (see the WARNING)"
			say "  ${s_lab[i]}: ${M_NOTE[i]}"
			s_cnt[i]=0
			continue
		fi
		# Fewer connects where COUNT would take longer than MODE_BUDGET_S.
		out=$(client "${s_node[i]}" "${s_cg[i]}" "${CLI_PIN[@]}" -n 200 -w 20 -L "${s_lab[i]}" "${s_addr[i]}" "${s_port[i]}" 2>/dev/null) || true
		mean=$(printf '%s\n' "$out" | sed -n 's/^RESULT.* mean_us=\([0-9.]*\).*/\1/p')
		s_cnt[i]=$COUNT
		if [ -n "$mean" ]; then
			# socket() and close() cost about as much again as a fast connect().
			s_cnt[i]=$(awk -v c="$COUNT" -v m="$mean" -v b="$MODE_BUDGET_S" -v lo="$MIN_COUNT" \
				'BEGIN { n = int(b * 1e6 / (m + 15)); if (n < lo) n = lo; if (n > c) n = c; print n }')
		fi
		[ "${s_cnt[i]}" -lt "$COUNT" ] && M_NOTE[i]="fewer connects: ${MODE_BUDGET_S} s budget"
	done
	local -a errs=()
	for ((r = 0; r < ROUNDS; r++)); do
		order=()
		for ((j = 0; j < k; j++)); do
			if ((r % 2 == 0)); then order+=("$j"); else order=("$j" "${order[@]}"); fi
		done
		for i in "${order[@]}"; do
			[ "${s_cnt[i]}" -gt 0 ] || continue
			per=$(((s_cnt[i] + ROUNDS - 1) / ROUNDS))
			out=$(client "${s_node[i]}" "${s_cg[i]}" "${CLI_PIN[@]}" -n "$per" -w "$WARMUP" -o "$W/samples.$i" \
				-L "${s_lab[i]}#$((r + 1))" "${s_addr[i]}" "${s_port[i]}" 2>&1) || true
			printf '%s\n' "$out" | grep '^svc-connect-lat' | sed 's/^/  /' || true
			errs[i]=$((${errs[i]:-0} + $(printf '%s\n' "$out" | sed -n 's/^RESULT.* err=\([0-9]*\).*/\1/p' | head -n1)+0))
		done
	done
	for ((i = 0; i < k; i++)); do
		[ "${s_cnt[i]}" -gt 0 ] || continue
		if ! out=$("$CLIENT" -R -L "${s_lab[i]}" "$W/samples.$i" 2>&1); then
			M_NOTE[i]="${M_NOTE[i]:+${M_NOTE[i]}; }no successful connect"
			continue
		fi
		printf '%s\n' "$out" | grep -v '^RESULT' | sed "s/(pooled)/to ${s_addr[i]}:${s_port[i]}/; s/^/  /" || true
		out=$(printf '%s\n' "$out" | grep '^RESULT')
		M_P50[i]=$(printf '%s\n' "$out" | sed -n 's/.* p50_us=\([0-9.]*\).*/\1/p')
		M_P99[i]=$(printf '%s\n' "$out" | sed -n 's/.* p99_us=\([0-9.]*\).*/\1/p')
		M_N[i]=$(printf '%s\n' "$out" | sed -n 's/.* ok=\([0-9]*\).*/\1/p')
		[ "${errs[i]:-0}" = 0 ] || M_NOTE[i]="${M_NOTE[i]:+${M_NOTE[i]}; }${errs[i]} connects failed"
		out=${out#RESULT }
		out=${out/addr=- port=-/addr=${s_addr[i]} port=${s_port[i]}}
		printf 'SVCCONNECT %s\n' "${out/err=0/err=${errs[i]:-0}}" >>"$W/results"
	done
}

# Results, printed as one table at the end: ROW[i]="N|mode|p50|p99|connects|setup|notes"
ROWS=()
row() { ROWS+=("$1|$2|$3|$4|$5|$6|$7"); }

# ---------------------------------------------------------------- iptables
ipt_restore() { # NODE BACKEND FILE -> seconds on stdout
	local t0
	t0=${EPOCHREALTIME/./}
	nsenter --net="/run/netns/$(lab_ns "$1")" "iptables-$2-restore" -w <"$3" >"$W/ipt-$2.log" 2>&1 || return 1
	ms_since "$t0"
}
ipt_out_pkts() { # NODE BACKEND -> packets through nat OUTPUT's first rule (the KUBE-SERVICES jump)
	nsenter --net="/run/netns/$(lab_ns "$1")" "iptables-$2" -w -t nat -L OUTPUT -v -n -x 2>/dev/null |
		awk 'NR == 3 { print $1; exit }'
}
ipt_empty() { # NODE BACKEND
	printf '*nat\nCOMMIT\n*filter\nCOMMIT\n' >"$W/empty.rules"
	ipt_restore "$1" "$2" "$W/empty.rules" >/dev/null
}
declare -A IPT_OK=() NR_P50=() LB_P50=()
for b in nft legacy; do
	has_mode "$b" || continue
	if [ -n "$IPT_SKIP" ]; then
		say "iptables-$b: SKIP ($IPT_SKIP)"
		continue
	fi
	node=2
	[ "$b" = legacy ] && node=3
	# The kernel must take kube-proxy's matches and targets (comment, statistic, addrtype, MASQUERADE...).
	bash "$RULES" -k 2 2 "$(lab_pod_ip4 "be$node"):$BE_PORT" >"$W/probe.rules"
	if ipt_restore "$node" "$b" "$W/probe.rules" >/dev/null && ipt_empty "$node" "$b"; then
		IPT_OK[$b]=1
	else
		say "iptables-$b: SKIP (iptables-$b-restore failed: $(head -n 2 "$W/ipt-$b.log" | tr '\n' ' '))"
	fi
done

# ---------------------------------------------------------------- axoneme lb
LB_OK="" LB_WHY="" AGENT_PID=""
max_n=0
for n in $SIZES; do [ "$n" -gt "$max_n" ] && max_n=$n; done
SD=$(lab_statedir 1)

# Services in the lb maps: the lb module's axoneme_lb_services gauge (set after
# each flush has written the maps), from the agent's /metrics inside node 1;
# without metrics, `axoneme lb services` (services with a frontend; slow at
# 100k). Fails if neither can be read.
lb_count() {
	local addr=${LAB_METRICS:-}
	# shellcheck disable=SC2016 # the inner bash expands $1
	if [ -n "$addr" ] && nsenter --net="/run/netns/$(lab_ns 1)" bash -c '
		exec 3<>"/dev/tcp/${1%:*}/${1##*:}" || exit 1
		printf "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n" "$1" >&3
		cat <&3' _ "$addr" 2>/dev/null |
		awk '$1 == "axoneme_lb_services" { printf "%d\n", $2 + 0; f = 1 } END { if (!f) exit 1 }'; then
		return 0
	fi
	command -v jq >/dev/null || return 1
	lab_axoneme 1 -o json lb services 2>/dev/null |
		jq -e '[.items[] | select(.frontend != "-" and (.error | not)) | .service] | unique | length'
}
# lb_wait COUNT TIMEOUT_S: wait until the gauge is COUNT; seconds taken on stdout.
lb_wait() {
	local want=$1 t0 deadline c=""
	t0=${EPOCHREALTIME/./}
	deadline=$((t0 + $2 * 1000000))
	while :; do
		c=$(lb_count) || c=""
		[ "$c" = "$want" ] && { ms_since "$t0"; return 0; }
		if [ -n "$AGENT_PID" ] && ! kill -0 "$AGENT_PID" 2>/dev/null; then
			echo "lb: the agent (pid $AGENT_PID) exited; log: $(tail -n 1 "$(lab_log 1)")" >&2
			return 1
		fi
		[ "${EPOCHREALTIME/./}" -lt "$deadline" ] || break
		_lab_sleep 0.02
	done
	echo "lb: gauge axoneme_lb_services is '${c:-unreadable}', waited for $want" >&2
	return 1
}
agent_rss() { # "RSS MB (peak MB)"
	awk '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 } END { printf "%.1f MB (peak %.1f)", r / 1024, h / 1024 }' \
		"/proc/$AGENT_PID/status" 2>/dev/null || printf '?'
}
lb_reason_from_log() {
	grep -E 'level=(error|crit|fatal)|module=lb' "$(lab_log 1)" 2>/dev/null | tail -n 1 | sed 's/^.*msg=//' | cut -c1-160
}

lb_setup() {
	local so
	if ! LAB_STAGE=$(lab_find_stage); then
		LB_WHY="no staged build (make stage in \$AXN_BUILD, or tools/bootstrap.sh)"
		return 1
	fi
	lab_find_bins || { LB_WHY="staged build incomplete"; return 1; }
	so=$LAB_MODULEDIR/lb.so
	[ -f "$so" ] || { LB_WHY="no lb.so in $LAB_MODULEDIR"; return 1; }
	[ -f "$LAB_MODULEDIR/statedir.so" ] || { LB_WHY="no statedir.so in $LAB_MODULEDIR"; return 1; }
	lab_moduledir "$W/modules" "$LAB_MODULEDIR/statedir.so" "$so" || { LB_WHY="module dir"; return 1; }
	LAB_MODULEDIR=$W/modules

	# Services: a master and one slot each; backends and revnat: one each.
	lab_conf 1 - <<-EOF
		modules = ( "statedir", { name = "lb"; required = true; } );
		statedir: { path = "$SD"; };
		lb: {
		  services_max = $((2 * max_n + 64));
		  backends_max = $((max_n + 64));
		  revnat_max = $((max_n + 64));
		};
	EOF
	# The check Service: ClusterIP $CHECK_VIP:80 -> be1:$BANNER_PORT, the banner server.
	cat >"$SD/check.json" <<-EOF
		{"apiVersion":"v1","kind":"Service","metadata":{"name":"axn-check","namespace":"default"},
		 "spec":{"type":"ClusterIP","clusterIP":"$CHECK_VIP","ports":[{"name":"http","port":$SVC_PORT,"protocol":"TCP","targetPort":$BANNER_PORT}]}}
		{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"axn-check-1","namespace":"default",
		 "labels":{"kubernetes.io/service-name":"axn-check"}},"addressType":"IPv4",
		 "endpoints":[{"addresses":["$BE1"],"conditions":{"ready":true}}],"ports":[{"name":"http","port":$BANNER_PORT,"protocol":"TCP"}]}
	EOF
	if ! LAB_AGENT_TIMEOUT=60 lab_agent_start 1 2>"$W/agent-start.err"; then
		LB_WHY="agent with statedir + lb did not start: $(lb_reason_from_log)"
		return 1
	fi
	AGENT_PID=$LAB_AGENT_PID
	if ! lb_wait 1 10 >/dev/null 2>"$W/lbwait.err"; then
		LB_WHY="test Service not in the lb maps after 10 s ($(cat "$W/lbwait.err"); $(lb_reason_from_log))"
		return 1
	fi
	local out
	if ! out=$(client 1 "$(lab_cgroup 1)" -t 2000 -x "$BANNER" "$CHECK_VIP" "$SVC_PORT" 2>&1); then
		LB_WHY="connect from node 1's cgroup to $CHECK_VIP:$SVC_PORT did not reach the backend: $(printf '%s' "$out" | tail -n1)"
		return 1
	fi
	rm -f "$SD/check.json"
	lb_wait 0 30 >/dev/null || { LB_WHY="the test Service did not go away"; return 1; }
	say "axoneme lb: works (agent $AXONEMED, pid $AGENT_PID; test ClusterIP $CHECK_VIP:$SVC_PORT reached be1); RSS $(agent_rss)"
	return 0
}
if has_mode lb; then
	if lb_setup; then
		LB_OK=1
	else
		say "axoneme lb: SKIP ($LB_WHY)"
	fi
fi

# ---------------------------------------------------------------- sizes
read -ra size_list <<<"$SIZES"
last_size=${size_list[${#size_list[@]} - 1]}
for n in $SIZES; do
	vip=$(bash "$RULES" -a "$n")
	say ""
	say "== N = $n services; the last one: default/bench-$n, ClusterIP $vip:$SVC_PORT"

	# axoneme lb first (setup), then no rules and lb measured interleaved.
	lb_ready="" lb_setup_s="" lb_rss=""
	if [ -n "$LB_OK" ]; then
		del_s=""
		if compgen -G "$SD/bench-*.json" >/dev/null; then
			rm -f "$SD"/bench-*.json
			del_s=$(lb_wait 0 "$LB_SYNC_TIMEOUT_S") || del_s="?"
		fi
		files=()
		for ((from = 1, k = 1; from <= n; from += CHUNK, k++)); do
			to=$((from + CHUNK - 1))
			[ "$to" -le "$n" ] || to=$n
			bash "$RULES" -o manifests -r "$from:$to" "$n" "$BE1:$BE_PORT" >"$SD/.bench-$k.json"
			files+=("$k")
		done
		sz=$(cat "$SD"/.bench-*.json | wc -c)
		t0=${EPOCHREALTIME/./}
		for k in "${files[@]}"; do mv "$SD/.bench-$k.json" "$SD/bench-$k.json"; done
		if lb_setup_s=$(lb_wait "$n" "$LB_SYNC_TIMEOUT_S" 2>"$W/lbwait.err"); then
			lb_ready=1
			lb_rss=$(agent_rss)
			say "  axoneme lb: $n Services + $n EndpointSlices ($((sz / 1024)) KiB JSON in ${#files[@]} file(s)) in the maps after $lb_setup_s s; agent RSS $lb_rss${del_s:+; the previous set was removed in $del_s s}"
			_lab_sleep "$SETTLE_S"
		else
			say "  axoneme lb: not all $n services reached the maps in ${LB_SYNC_TIMEOUT_S}s: $(cat "$W/lbwait.err") $(lb_reason_from_log)"
		fi
	fi
	specs=()
	has_mode norules && specs+=("no-rules/$n 1 $CG_NONE $BE1 $BE_PORT")
	[ -n "$lb_ready" ] && specs+=("axoneme-lb/$n 1 $(lab_cgroup 1) $vip $SVC_PORT")
	if [ "${#specs[@]}" -gt 0 ]; then
		measure "${specs[@]}"
	fi
	i=0
	if has_mode norules; then
		row "$n" "no rules" "${M_P50[i]}" "${M_P99[i]}" "${M_N[i]}" "-" "${M_NOTE[i]}"
		NR_P50[$n]=${M_P50[i]}
		i=1
	fi
	if [ -n "$lb_ready" ]; then
		row "$n" "axoneme lb" "${M_P50[i]}" "${M_P99[i]}" "${M_N[i]}" "$lb_setup_s s to maps" "RSS $lb_rss${M_NOTE[i]:+; ${M_NOTE[i]}}"
		LB_P50[$n]=${M_P50[i]}
	elif [ -n "$LB_OK" ]; then
		row "$n" "axoneme lb" - - 0 "> ${LB_SYNC_TIMEOUT_S} s" "not synced; RSS $(agent_rss)"
	elif has_mode lb; then
		row "$n" "axoneme lb" - - 0 - "SKIP: $LB_WHY"
	fi

	for b in nft legacy; do
		has_mode "$b" || continue
		if [ -z "${IPT_OK[$b]:-}" ]; then
			row "$n" "iptables-$b" - - 0 - "SKIP"
			continue
		fi
		node=2
		[ "$b" = legacy ] && node=3
		bash "$RULES" "$n" "$(lab_pod_ip4 "be$node"):$BE_PORT" >"$W/rules-$n"
		nrules=$(grep -c '^-A' "$W/rules-$n")
		ipt_empty "$node" "$b" || true
		if ! rs=$(ipt_restore "$node" "$b" "$W/rules-$n"); then
			say "  iptables-$b: restore failed: $(head -n 3 "$W/ipt-$b.log" | tr '\n' ' ')"
			row "$n" "iptables-$b" - - 0 "restore failed" ""
			continue
		fi
		say "  iptables-$b: iptables-$b-restore of $nrules rules ($n services) took $rs s"
		_lab_sleep "$SETTLE_S"
		pk0=$(ipt_out_pkts "$node" "$b")
		measure "iptables-$b/$n $node $CG_NONE $vip $SVC_PORT"
		# A connect that failed without its SYN passing nat OUTPUT failed before the rules.
		if [ "${M_P50[0]}" = - ] && [ -n "$pk0" ] && [ "$(ipt_out_pkts "$node" "$b")" = "$pk0" ]; then
			M_NOTE[0]+="; nothing reached nat OUTPUT: it failed before the rules"
		fi
		row "$n" "iptables-$b" "${M_P50[0]}" "${M_P99[0]}" "${M_N[0]}" "restore $rs s" "${M_NOTE[0]}"
		# Empty the table again so the next mode runs without this one's
		# teardown (after the last size, deleting the namespace does it).
		[ "$n" = "$last_size" ] && continue
		fs=$(ipt_restore "$node" "$b" "$W/empty.rules") || fs="?"
		say "  iptables-$b: emptied in $fs s"
		_lab_sleep "$SETTLE_S"
	done
	rm -f "$W/rules-$n"
done

if [ -n "$LB_OK" ]; then
	say ""
	rm -f "$SD"/bench-*.json
	if del_s=$(lb_wait 0 "$LB_SYNC_TIMEOUT_S" 2>/dev/null); then
		say "axoneme lb: all services removed in $del_s s; agent RSS afterwards $(agent_rss)"
	fi
	nerr=$(grep -c 'level=error' "$(lab_log 1)" 2>/dev/null) || nerr=0
	[ "$nerr" = 0 ] || say "axoneme lb: the agent logged $nerr error(s), the last: $(grep 'level=error' "$(lab_log 1)" | tail -n 1)"
fi

# ---------------------------------------------------------------- report
say ""
say "connect() latency to the last of N ClusterIP services, µs (each: one blocking connect, SYN to SYN-ACK, client and backend pod on one node)"
printf '%8s  %-16s %9s %9s %9s  %-18s %s\n' N mode p50 p99 connects setup notes
for r in "${ROWS[@]}"; do
	IFS='|' read -r n mode p50 p99 cnt setup note <<<"$r"
	printf '%8s  %-16s %9s %9s %9s  %-18s %s\n' "$n" "$mode" "$p50" "$p99" "$cnt" "$setup" "$note"
done
say ""
if [ "${#FOREIGN[@]}" -gt 0 ]; then
	say "WARNING: ${#FOREIGN[@]} cgroup BPF program(s) from outside this lab ran on every connect above${FOREIGN_C4:+ (connect4: $FOREIGN_C4, which rewrites the addresses it knows)}; see the start of the output."
	say ""
fi
if [ -n "$LB_OK" ] && has_mode norules; then
	first="" last="" firstn="" lastn=""
	for n in $SIZES; do
		av=${LB_P50[$n]:--} bv=${NR_P50[$n]:--}
		if [ "$av" = - ] || [ "$bv" = - ]; then
			printf 'axoneme p50 - no-rules p50, N=%-7s      n/a    (target <= %d µs)\n' "$n" "$TARGET_DELTA_US"
			continue
		fi
		d=$(awk -v a="$av" -v b="$bv" 'BEGIN { printf "%.1f", a - b }')
		printf 'axoneme p50 - no-rules p50, N=%-7s %+6.1f µs    (target <= %d µs: %s)\n' "$n" "$d" "$TARGET_DELTA_US" \
			"$(awk -v d="$d" -v t="$TARGET_DELTA_US" 'BEGIN { print (d <= t) ? "ok" : "OVER" }')"
		[ -n "$first" ] || { first=$d; firstn=$n; }
		last=$d lastn=$n
	done
	# Flat: the gap to no rules should not grow with N. (Raw p50s move with the
	# machine; the gap, measured interleaved, does not.)
	if [ -n "$first" ] && [ "$firstn" != "$lastn" ]; then
		printf 'flat as N grows: the gap at N=%s minus the gap at N=%s: %+.1f µs (target: about 0)\n' \
			"$lastn" "$firstn" "$(awk -v a="$last" -v b="$first" 'BEGIN { print a - b }')"
	fi
elif has_mode lb; then
	say "axoneme lb: SKIP (${LB_WHY:-not measured})"
fi
say "machine-readable lines: SVCCONNECT ... (below); whole run $(ms_since "$T_START") s"
cat "$W/results" 2>/dev/null || true
exit 0
