#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# demo.sh — see Axoneme run, from a fresh Debian 12 checkout:
#
#     sudo ./demo.sh                 # build, run a 2-node lab, show it, tear it down
#     sudo DEMO_KEEP=1 ./demo.sh     # ... and leave the lab running to poke at
#
# It installs the build dependencies (tools/deps.sh), builds and stages the
# tree (tools/bootstrap.sh -> _build/stage), builds the SDK example module
# "hello" out of tree against the staged SDK, then makes two "nodes" out of
# network namespaces on a private bridge and runs one agent in each with the
# statedir module (reading conf/examples/), hello, lbipam and lb. Nothing it sends leaves
# those namespaces; everything it creates is removed at the end.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)

if [ "$(id -u)" -ne 0 ]; then
	echo "demo.sh needs root (it installs packages and creates network namespaces): sudo $0" >&2
	exit 1
fi

bold() { if [ -t 1 ]; then printf '\033[1m%s\033[0m\n' "$*"; else printf '%s\n' "$*"; fi; }
explain() { printf '%s\n' "$@" | fold -s -w 78 | sed 's/^/  /'; }

bold "== 1/4 Build (tools/bootstrap.sh: packages, autoreconf, configure, make, make stage)"
"$ROOT/tools/bootstrap.sh"

export AXN_SRC=$ROOT AXN_STAGE=$ROOT/_build/stage
# shellcheck source=tests/lab/lab.sh
. "$ROOT/tests/lab/lab.sh"
lab_find_bins

lab_init "axd$$"
lab_cleanup_trap

echo
bold "== 2/4 Build the example module 'hello' out of tree, against the installed SDK"
lab_build_hello "$LAB_WORK/build"
explain "SDK headers and pkg-config file from $AXN_STAGE/usr/local; module: $LAB_HELLO_SO"
lab_moduledir "$LAB_WORK/modules" "$LAB_MODULEDIR/statedir.so" "$LAB_MODULEDIR/lbipam.so" \
	"$LAB_MODULEDIR/lb.so" "$LAB_HELLO_SO"
LAB_MODULEDIR=$LAB_WORK/modules

echo
bold "== 3/4 Start a two-node lab"
for n in 1 2; do
	lab_node "$n"
	cp "$ROOT"/conf/examples/*.yaml "$ROOT"/conf/examples/*.json "$(lab_statedir "$n")/"
	if [ "$n" = 1 ]; then
		lbipam="lbipam: { writer = true; };"
	else
		# One writer decides; node 2 follows node 1's decisions.
		lbipam="lbipam: { writer = false; follow = \"$(lab_rundir 1)/lbipam-state.json\"; follow_interval_ms = 200; reader_status = true; };"
	fi
	lab_conf "$n" - <<-EOF
		modules = ( "statedir", "hello", "lbipam", "lb" );
		statedir: { path = "$(lab_statedir "$n")"; };
		hello: { greeting = "hello"; };
		$lbipam
	EOF
done
for n in 1 2; do
	lab_agent_start "$n"
	echo "  node$n: agent pid $LAB_AGENT_PID ready in ${LAB_READY_WALL_MS} ms"
done
explain "" \
	"Each node is a network namespace ($(lab_ns 1), $(lab_ns 2)) with eth0 on a private bridge: node1 is $(lab_node_ip4 1), node2 is $(lab_node_ip4 2). Each runs its own axonemed with its own conf, API socket, bpffs directory and cgroup, the way one agent runs on each host of a cluster."

failed=0
show() { # N HEADING EXPLANATION ARGS...
	local n=$1 heading=$2 text=$3
	shift 3
	echo
	bold "-- node$n: axoneme $* — $heading"
	explain "$text"
	if ! lab_axoneme "$n" "$@" | sed 's/^/    /'; then
		echo "    (failed: axoneme $*)"
		failed=$((failed + 1))
	fi
}

echo
bold "== 4/4 What the agents see"
for n in 1 2; do
	show "$n" "the agent" \
		"Node name, version, uptime, how long start-up took, and the health of each module. 'ready' means every module started and every resource source synced." \
		status
	show "$n" "loaded modules" \
		"Modules are shared objects loaded from the conf's module directory. statedir reads Kubernetes manifests from a directory; hello is the SDK example, just built out of tree with pkg-config. A distribution picks which modules to ship and load." \
		modules
	show "$n" "resources" \
		"What statedir read from $(lab_statedir "$n"): copies of conf/examples — Services of type LoadBalancer, an EndpointSlice, Cilium LB IP pools and an L2 announcement policy, in YAML and JSON. The same files work with kubectl apply on a cluster. Broken documents are listed here with file:line." \
		resources
	show "$n" "BPF maps" \
		"BPF maps the modules opened through the agent's map registry, pinned under this node's bpffs directory ($(lab_bpffs "$n")). Pins outlive the agent, so state survives a restart or an upgrade; 'axonemed --purge' removes them." \
		map list
	show "$n" "a module's own endpoint" \
		"Modules add their own API endpoints and CLI views; hello answers with its configured greeting and a tick counter." \
		hello greet
	show "$n" "LoadBalancer IPs" \
		"lbipam gave each Service of type LoadBalancer an address from the CiliumLoadBalancerIPPools, with Cilium's LB-IPAM rules (requested IPs, sharing keys, selectors). Node 1 decides; node 2 follows, so both show the same addresses." \
		lbipam services
	show "$n" "services in the socket load balancer" \
		"lb turned Services and EndpointSlices into frontends and backends in pinned BPF maps; its cgroup programs translate a ClusterIP or LoadBalancer IP to a backend at connect() time, as Cilium's kube-proxy replacement does. (Cilium's spelling works: axoneme service list.)" \
		service list
done

echo
if [ "$failed" != 0 ]; then
	bold "demo: $failed command(s) failed; agent logs: $(lab_log 1), $(lab_log 2)"
	for n in 1 2; do
		echo "--- node$n log (last 15 lines)"
		tail -n 15 "$(lab_log "$n")"
	done
	exit 1
fi

if [ "${DEMO_KEEP:-0}" = 1 ]; then
	down=$LAB_WORK/down.sh
	cat >"$down" <<-EOF
		#!/usr/bin/env bash
		# Tear down the demo lab $LAB_PREFIX (generated by demo.sh).
		set -euo pipefail
		. "$ROOT/tests/lab/lab.sh"
		LAB_PREFIX=$LAB_PREFIX LAB_WORK=$LAB_WORK LAB_BPF=$LAB_BPF LAB_CG=$LAB_CG
		lab_down && echo "demo lab $LAB_PREFIX removed"
	EOF
	chmod +x "$down"
	trap - EXIT INT TERM
	pin=$(lab_axoneme 1 -o json map list | jq -r '.items[] | select(.name == "hello_ticks") | .path' || true)
	bold "The lab is still running. Poke at it:"
	cat <<-EOF
		  # node1's agent (also: modules, resources, map list, hello greet; add -o json for JSON)
		  $AXONEME -s $(lab_sock 1) status
		  $AXONEME -s $(lab_sock 2) resources
		  # a shell inside node1, and a ping across the lab LAN
		  ip netns exec $(lab_ns 1) bash
		  ip netns exec $(lab_ns 1) ping -c1 $(lab_node_ip4 2)
		  # node1's agent log; its state dir is watched, edits apply at once
		  tail -f $(lab_log 1)
		  \$EDITOR $(lab_statedir 1)/service-lb.yaml
		  # edit the conf, then reload it
		  \$EDITOR $(lab_conf_path 1); kill -HUP $(lab_agent_pid 1)
		  # the pinned maps (paths from 'map list')
		  bpftool map dump pinned $pin
		Tear it down:
		  $down
	EOF
else
	bold "demo: all good. Tearing the lab down (DEMO_KEEP=1 leaves it running)."
fi
