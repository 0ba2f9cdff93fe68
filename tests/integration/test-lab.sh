#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test-lab.sh — the lab builder itself (tests/lab/lab.sh), no agent needed:
# the topology comes up fast, every path in the address plan works over IPv4
# and IPv6, the per-node bpffs is a bpffs even inside `ip netns exec`, and
# lab_down leaves nothing behind. Needs root (exit 77 otherwise) and ping.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

AXN_SRC=${AXN_SRC:-$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)}
# shellcheck source=../lab/lab.sh
. "$AXN_SRC/tests/lab/lab.sh"
# shellcheck source=../lab/check.sh
. "$AXN_SRC/tests/lab/check.sh"

lab_require_root
command -v ping >/dev/null || { echo "SKIP: needs ping (apt-get install iputils-ping, or tools/deps.sh)"; exit 77; }

prefix=axk$$
T0=$(_lab_now_ms)
lab_init "$prefix"
lab_cleanup_trap
lab_node 1
lab_node 2
T1=$(_lab_now_ms)
lab_pod 1 web
lab_pod 2 db
lab_client
T2=$(_lab_now_ms)

t_step "lab up"
t_ok "2 nodes in $((T1 - T0)) ms; 2 pods, router and client in $((T2 - T1)) ms more"
if [ $((T2 - T0)) -lt 1000 ]; then t_ok "whole lab up in under 1 s"; else t_fail "whole lab up in under 1 s" "$((T2 - T0)) ms"; fi

t_step "addresses and routes"
ping_ok() { lab_exec "$1" ping -n -c1 -W1 -q "$2" >/dev/null; }
for path in "n1 $(lab_node_ip4 2)" "n2 $(lab_node_ip6 1)" \
	"web $(lab_pod_ip4 db)" "web $(lab_pod_ip6 db)" "db $(lab_pod_ip4 web)" \
	"n1 $(lab_pod_ip4 db)" "n2 $(lab_pod_ip6 web)" \
	"client $(lab_pod_ip4 web)" "client $(lab_pod_ip6 db)" "web 10.98.0.2" "db fd00:98::2" \
	"router $(lab_node_ip4 1)" "n2 10.99.0.254"; do
	# shellcheck disable=SC2086 # "who address"
	set -- $path
	t_check "$1 -> $2" ping_ok "$1" "$2"
done
t_expect "pod web got the first pod address of node 1" "10.200.1.2 fd00:200:1::2" "$(lab_pod_ip4 web) $(lab_pod_ip6 web)"

t_step "per-node directories"
t_expect "bpffs at \$LAB_WORK/bpf is a bpf filesystem" bpf_fs "$(stat -f -c %T "$LAB_BPF")"
t_expect "node 1's bpffs dir is a bpffs inside its netns too" bpf_fs \
	"$(lab_exec n1 stat -f -c %T "$(lab_bpffs 1)")"
t_check "node cgroups exist under $LAB_CG" test -d "$(lab_cgroup 1)" -a -d "$(lab_cgroup 2)"
t_check "node dirs: run, state, conf" test -d "$(lab_rundir 2)" -a -d "$(lab_statedir 2)" -a -f "$(lab_conf_path 2)"
t_check "node 2's conf names it node2" grep -q "node_name = \"node2\";" "$(lab_conf_path 2)"

t_step "a process started with lab_spawn is stopped by lab_down"
lab_spawn client sleeper sleep 300
SPID=$LAB_SPAWN_PID
t_check "sleeper runs (pid $SPID)" kill -0 "$SPID"

t_step "lab_down leaves nothing behind"
work=$LAB_WORK
cg=$LAB_CG
T3=$(_lab_now_ms)
lab_down
T4=$(_lab_now_ms)
t_ok "down in $((T4 - T3)) ms"
left=$(ip netns list | grep -c "^$prefix-" || true)
t_expect "no namespaces named $prefix-*" 0 "$left"
t_check "work dir removed" test ! -e "$work"
t_check "cgroup removed" test ! -e "$cg"
t_check "bpffs unmounted" sh -c "! grep -q ' $work/bpf ' /proc/mounts"
if kill -0 "$SPID" 2>/dev/null && [ "$(_lab_state "$SPID")" != Z ]; then t_fail "sleeper stopped"; else t_ok "sleeper stopped"; fi

t_summary || exit 1
