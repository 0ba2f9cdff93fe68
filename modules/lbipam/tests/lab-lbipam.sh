#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# lab-lbipam.sh — two lab nodes, each running axonemed with statedir, lbipam
# (and lb, when it is staged) on the same manifests: the example pools and
# services of conf/examples, a service of our own and a malformed pool.
# Node 1 is the writer; node 2 a reader that follows node 1's state file and
# publishes what it follows into its own store (reader_status).
#
# Checks: every node shows the same addresses; node 1's status (statedir)
# has them; the malformed pool has a condition and a log line naming it and
# disturbs nothing; a service added later gets the same address on both
# nodes; a restart changes nothing and writes no status; lb (when loaded)
# sees the address as a LoadBalancer frontend. A client reaching the service
# from outside needs lb's north-south part: skipped with a message until then.
#
# Needs root (exit 77 otherwise), jq, and a staged install (make stage).
# Environment: AXN_SRC, AXN_BUILD, AXN_STAGE (set by make check),
# AXN_KEEP_ON_FAIL=1 keeps the lab work dir on failure.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

AXN_SRC=${AXN_SRC:-$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../../.." && pwd -P)}
# shellcheck source=../../../tests/lab/lab.sh
. "$AXN_SRC/tests/lab/lab.sh"
# shellcheck source=../../../tests/lab/check.sh
. "$AXN_SRC/tests/lab/check.sh"

lab_require_root
command -v jq >/dev/null || { echo "SKIP: needs jq"; exit 77; }
if ! LAB_STAGE=$(lab_find_stage); then
	echo "FAIL: no staged install (run 'make stage' in the build dir)" >&2
	exit 99
fi
lab_find_bins

lab_init "lbi$$"
lab_cleanup_trap
t_logs_on_failure 40 1 2

# Addresses per service, as the node's lbipam view has them: "ns/name=ip,ip ..." sorted.
svc_ips() {
	lab_json "$1" lbipam services 2>/dev/null |
		jq -r '[.items[] | "\(.namespace)/\(.name)=\(.ips | join(","))"] | sort | join(" ")' 2>/dev/null
}

# Wait until node N's view says WANT (SECONDS, default 5).
wait_ips() {
	local n=$1 want=$2 deadline=$((SECONDS + ${3:-5})) got
	while :; do
		got=$(svc_ips "$n")
		[ "$got" = "$want" ] && return 0
		[ "$SECONDS" -ge "$deadline" ] && { printf '%s\n' "$got"; return 1; }
		sleep 0.1
	done
}

status_ips() { # N NAME — status.loadBalancer.ingress of default/NAME in node N's store
	lab_json "$1" resources get Service "$2" -n default 2>/dev/null |
		jq -r '[.items[0].status.loadBalancer.ingress[]?.ip] | join(",")' 2>/dev/null
}

metric() { # N NAME — a metric of node N's agent, from its /metrics
	lab_exec "n$1" curl -s --max-time 2 "http://$LAB_METRICS/metrics" 2>/dev/null |
		awk -v m="$2" '$1 == m { print $2 }'
}

echo "stage: $LAB_STAGE"
echo "lab:   $LAB_WORK (prefix $LAB_PREFIX)"

# ---------------------------------------------------------------- nodes and manifests
t_step "two nodes; the same manifests in each state dir"
lab_node 1
lab_node 2
MODS='"statedir", "lbipam"'
WITH_LB=0
if [ -f "$LAB_MODULEDIR/lb.so" ]; then
	MODS="$MODS, \"lb\""
	WITH_LB=1
fi
for n in 1 2; do
	sd=$(lab_statedir "$n")
	cp "$AXN_SRC/conf/examples/lb-ippool.yaml" "$AXN_SRC/conf/examples/service-lb.yaml" \
		"$AXN_SRC/conf/examples/lab-pool.json" "$sd/"
	cat >"$sd/echo.yaml" <<-'EOF'
		apiVersion: v1
		kind: Service
		metadata:
		  name: echo
		  namespace: default
		  labels:
		    pool: json
		spec:
		  type: LoadBalancer
		  loadBalancerClass: io.cilium/l2-announcer
		  ports:
		    - port: 7
	EOF
	cat >"$sd/bad-pool.yaml" <<-'EOF'
		apiVersion: cilium.io/v2alpha1
		kind: CiliumLoadBalancerIPPool
		metadata:
		  name: bad-pool
		spec:
		  blocks:
		    - cidr: "10.99.1.0/33"
	EOF
done
lab_conf 1 - <<EOF
modules = ( $MODS );
statedir: { path = "$(lab_statedir 1)"; };
lbipam: { writer = true; };
EOF
lab_conf 2 - <<EOF
modules = ( $MODS );
statedir: { path = "$(lab_statedir 2)"; };
lbipam: {
  writer = false;                  # node 1 decides
  follow = "$(lab_rundir 1)/lbipam-state.json";
  follow_interval_ms = 200;
  reader_status = true;            # statedir keeps status per agent: publish it here too
};
EOF
t_ok "manifests: lan-pool, internal-pool, json-pool, bad-pool; services web, dns, echo (lb loaded: $WITH_LB)"

t_step "start the agents"
for n in 1 2; do
	if lab_agent_start "$n"; then
		t_ok "node $n agent ready (${LAB_READY_WALL_MS} ms)"
	else
		t_fail "node $n agent ready"
		t_summary || exit 1
	fi
done
for n in 1 2; do
	st=$(lab_json "$n" status)
	t_expect "node $n: lbipam is up" "up" "$(jq -r '.modules[] | select(.name == "lbipam") | .state | ascii_downcase' <<<"$st")"
done

# ---------------------------------------------------------------- allocation, everywhere alike
t_step "a LoadBalancer Service gets an address from the pool, on every node alike"
WANT="default/dns=10.99.0.210 default/echo=10.99.0.230 default/web=10.99.0.200,fd00:99::200"
for n in 1 2; do
	if got=$(wait_ips "$n" "$WANT"); then
		t_ok "node $n: $WANT"
	else
		t_fail "node $n: addresses" "expected: $WANT" "actual:   $got"
	fi
done
t_expect "both nodes agree (axoneme lbipam services -o json)" "$(svc_ips 1)" "$(svc_ips 2)"
t_expect "node 1 is the writer" "writer true" "$(lab_json 1 lbipam services | jq -r '"\(.role) \(.writes_status)"')"
t_expect "node 2 is a reader publishing locally" "reader true" "$(lab_json 2 lbipam services | jq -r '"\(.role) \(.writes_status)"')"

t_step "status in the store (statedir): node 1 wrote it, node 2 published the same"
for n in 1 2; do
	t_expect "node $n: web status.loadBalancer.ingress" "10.99.0.200,fd00:99::200" "$(status_ips "$n" web)"
	cond=$(lab_json "$n" resources get Service web -n default |
		jq -r '.items[0].status.conditions[] | select(.type == "cilium.io/IPAMRequestSatisfied") | "\(.status) \(.reason)"')
	t_expect "node $n: web condition cilium.io/IPAMRequestSatisfied" "True satisfied" "$cond"
done
t_check "node 1 persisted web's status in its status dir" \
	grep -q '10.99.0.200' "$(lab_rundir 1)/statedir-status/Service_default_web.json"
t_check "node 1 wrote its state file" jq -e '.services["default/web"] | index("10.99.0.200")' "$(lab_rundir 1)/lbipam-state.json"
pools=$(lab_json 1 lbipam pools)
t_expect "lan-pool: 3 addresses used (web v4+v6, dns)" 3 "$(jq -r '.items[] | select(.name == "lan-pool") | .ips_used' <<<"$pools")"
t_expect "lan-pool: 30 + 16 addresses in total" 46 "$(jq -r '.items[] | select(.name == "lan-pool") | .ips_total' <<<"$pools")"
avail=$(lab_json 1 resources get CiliumLoadBalancerIPPool lan-pool |
	jq -r '.items[0].status.conditions[] | select(.type == "cilium.io/IPsAvailable") | .message')
t_expect "lan-pool status condition cilium.io/IPsAvailable" 43 "$avail"
out=$(lab_axoneme 1 lbipam services 2>&1) || true
if grep -q 'web' <<<"$out" && grep -q '10.99.0.200' <<<"$out"; then t_ok "human-readable 'axoneme lbipam services'"; else t_fail "human-readable services" "$out"; fi
out=$(lab_axoneme 1 lbipam pools 2>&1) || true
if grep -q 'lan-pool' <<<"$out"; then t_ok "human-readable 'axoneme lbipam pools'"; else t_fail "human-readable pools" "$out"; fi

t_step "the malformed pool: a condition and a log line naming it, nothing else disturbed"
bad=$(jq -c '.items[] | select(.name == "bad-pool") | {valid, message}' <<<"$pools")
t_expect "bad-pool in the view" '{"valid":false,"message":"block 1: bad CIDR '"'"'10.99.1.0/33'"'"'"}' "$bad"
cond=$(lab_json 1 resources get CiliumLoadBalancerIPPool bad-pool |
	jq -r '.items[0].status.conditions[] | select(.type == "axoneme.io/PoolSpecValid") | "\(.status) \(.message)"')
case "$cond" in
"False block 1: bad CIDR '10.99.1.0/33'"*) t_ok "bad-pool status condition: $cond" ;;
*) t_fail "bad-pool status condition axoneme.io/PoolSpecValid False" "$cond" ;;
esac
t_check "node 1 log names the pool and the block" grep -q "pool bad-pool: block 1: bad CIDR '10.99.1.0/33'" "$(lab_log 1)"
health=$(lab_json 1 status | jq -r '.modules[] | select(.name == "lbipam") | "\(.health)|\(.reason)"')
case "$health" in
degraded\|*bad-pool*) t_ok "lbipam health degraded, naming bad-pool" ;;
*) t_fail "lbipam health degraded naming bad-pool" "$health" ;;
esac

if [ "$WITH_LB" = 1 ]; then
	t_step "lb sees the address as a LoadBalancer frontend"
	for n in 1 2; do
		if lbs=$(lab_json "$n" lb services 2>/dev/null); then
			if jq -e '[.items[] | select(.type == "LoadBalancer" and (.frontend | startswith("10.99.0.200:")))] | length > 0' \
				<<<"$lbs" >/dev/null; then
				t_ok "node $n: lb has a LoadBalancer frontend on 10.99.0.200 (from the status lbipam wrote)"
			else
				t_fail "node $n: lb frontend on 10.99.0.200" "$(jq -c . <<<"$lbs" | head -c 600)"
			fi
		else
			echo "lb on node $n: SKIP (lb is not up: $(lab_json "$n" status | jq -r '.modules[] | select(.name == "lb") | "\(.state) \(.reason)"'))"
		fi
	done
fi
echo "client reach: SKIP (lb north-south not implemented yet)"

# ---------------------------------------------------------------- a service added later
t_step "a service added later gets the same address on both nodes"
for n in 1 2; do
	sed -e 's/name: echo/name: late/' -e 's/pool: json/expose: lan/' "$(lab_statedir "$n")/echo.yaml" \
		>"$(lab_statedir "$n")/.late.tmp"
	mv "$(lab_statedir "$n")/.late.tmp" "$(lab_statedir "$n")/late.yaml"
done
WANT2="default/dns=10.99.0.210 default/echo=10.99.0.230 default/late=10.99.0.201 default/web=10.99.0.200,fd00:99::200"
for n in 1 2; do
	if got=$(wait_ips "$n" "$WANT2"); then t_ok "node $n: late = 10.99.0.201"; else t_fail "node $n: late" "$got"; fi
done

# ---------------------------------------------------------------- restart
t_step "restart both agents: nothing moves, no status is written"
for n in 1 2; do
	lab_agent_stop "$n" TERM || true
	t_expect "node $n stopped cleanly" 0 "$LAB_AGENT_RC"
	if lab_agent_start "$n"; then t_ok "node $n agent ready again"; else t_fail "node $n restart"; fi
done
for n in 1 2; do
	if got=$(wait_ips "$n" "$WANT2"); then t_ok "node $n: same addresses after the restart"; else t_fail "node $n after restart" "$got"; fi
done
if lab_exec n1 sh -c 'command -v curl' >/dev/null 2>&1; then
	sleep 0.3
	for n in 1 2; do
		t_expect "node $n: axoneme_lbipam_status_writes after the restart" 0 "$(metric "$n" axoneme_lbipam_status_writes)"
	done
else
	echo "status writes after restart: SKIP (no curl)"
fi

t_step "stop"
for n in 1 2; do
	if lab_agent_stop "$n" TERM; then t_expect "node $n exit status" 0 "$LAB_AGENT_RC"; else t_fail "node $n stops"; fi
done
t_summary || exit 1
