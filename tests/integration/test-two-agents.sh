#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test-two-agents.sh — two lab nodes, each running axonemed with the statedir
# module and the SDK example module hello (built out of tree against the
# staged SDK). Checks status, resources (with a bad document), maps and pins,
# a module endpoint, SIGHUP with broken and with valid confs, SIGTERM leaving
# pins behind, restart reusing them, and --purge.
#
# Needs root (exit 77 otherwise) and a staged install (make stage, or
# tools/bootstrap.sh). Environment: AXN_SRC, AXN_BUILD (set by make check),
# AXN_STAGE (optional), AXN_KEEP_ON_FAIL=1 keeps the lab work dir on failure.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

AXN_SRC=${AXN_SRC:-$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)}
# shellcheck source=../lab/lab.sh
. "$AXN_SRC/tests/lab/lab.sh"
# shellcheck source=../lab/check.sh
. "$AXN_SRC/tests/lab/check.sh"

lab_require_root
for t in jq make cc pkg-config; do
	command -v "$t" >/dev/null || { echo "SKIP: needs $t (run tools/deps.sh)"; exit 77; }
done
if ! LAB_STAGE=$(lab_find_stage); then
	echo "FAIL: no staged install (run 'make stage' in the build dir, or tools/bootstrap.sh)" >&2
	exit 99 # a hard error, not a skip: the build is the thing under test
fi
lab_find_bins

T0=$(_lab_now_ms)
lab_init "axi$$"
lab_cleanup_trap
t_logs_on_failure 30 1 2

echo "stage: $LAB_STAGE"
echo "lab:   $LAB_WORK (prefix $LAB_PREFIX)"

# ---------------------------------------------------------------- 1. hello, out of tree
t_step "build the hello example out of tree against the staged SDK only"
if lab_build_hello "$LAB_WORK/build"; then
	t_ok "make in a copy of sdk/examples/hello produced hello.so"
	case "$LAB_HELLO_CFLAGS" in
	*"-I$LAB_STAGE/usr/local/include"*) t_ok "pkg-config --define-prefix cflags point into the stage ($LAB_HELLO_CFLAGS)" ;;
	*) t_fail "pkg-config cflags point into the stage" "cflags: $LAB_HELLO_CFLAGS" ;;
	esac
	syms=$(nm -D --defined-only "$LAB_HELLO_SO" | awk '$2 ~ /^[TDRBV]$/ { print $3 }' | sort | tr '\n' ' ')
	t_expect "hello.so exports exactly the descriptor" "axn_module_v1 " "$syms"
else
	t_fail "build hello out of tree" "$(tail -n 20 "$LAB_WORK/build/hello-build.log" 2>/dev/null)"
	t_summary || exit 1
fi

MODDIR=$LAB_WORK/modules
lab_moduledir "$MODDIR" "$LAB_HELLO_SO" "$LAB_MODULEDIR/statedir.so"
LAB_MODULEDIR=$MODDIR
t_check "private module dir is root-owned 0755 with statedir.so and hello.so" \
	test "$(stat -c '%u %a' "$MODDIR")" = "0 755" -a -f "$MODDIR/statedir.so" -a -f "$MODDIR/hello.so"

# ---------------------------------------------------------------- 2. lab
t_step "lab: 2 nodes, each with a state dir of example manifests and one bad document"
lab_node 1
lab_node 2

write_conf() { # N GREETING [EXTRA hello OPTION LINE]
	lab_conf "$1" - <<-EOF
		modules = ( "statedir", { name = "hello"; required = true; } );
		statedir: { path = "$(lab_statedir "$1")"; };
		hello: {
		  greeting = "$2";${3:+
		  $3}
		};
	EOF
}

# The bad document starts at line BAD_FROM and ends at BAD_TO of bad.yaml;
# the good document before it must still load.
BAD_FROM=10
BAD_TO=14
for n in 1 2; do
	sd=$(lab_statedir "$n")
	cp "$AXN_SRC/conf/examples/service-lb.yaml" "$AXN_SRC/conf/examples/lb-ippool.yaml" \
		"$AXN_SRC/conf/examples/l2-policy.yaml" "$AXN_SRC/conf/examples/lab-pool.json" "$sd/"
	cat >"$sd/bad.yaml" <<-'EOF'
		# A good document, then a bad one (no kind) starting at line 10.
		apiVersion: v1
		kind: Service
		metadata:
		  name: good-neighbour
		  namespace: default
		spec:
		  type: ClusterIP
		---
		apiVersion: v1
		metadata:
		  name: no-kind
		spec:
		  type: ClusterIP
	EOF
	write_conf "$n" "hello"
done
t_check "node 1 pings node 2 over the LAN" lab_exec n1 ping -c1 -W1 -q "$(lab_node_ip4 2)"

# ---------------------------------------------------------------- 3. agents
t_step "start one axonemed per node (statedir + hello)"
for n in 1 2; do
	if lab_agent_start "$n"; then
		t_ok "node $n agent ready (pid $LAB_AGENT_PID, ${LAB_READY_WALL_MS} ms exec to ready)"
	else
		t_fail "node $n agent ready"
		t_summary || exit 1
	fi
done

t_step "status on each node's own socket"
for n in 1 2; do
	if st=$(lab_json "$n" status 2>&1); then
		t_expect "node $n: status .node" "node$n" "$(jq -r .node <<<"$st")"
		t_expect "node $n: status .ready" "true" "$(jq -r .ready <<<"$st")"
		t_expect "node $n: status .pid is the agent we started" "$(lab_agent_pid "$n")" "$(jq -r .pid <<<"$st")"
		mods=$(jq -r '[.modules[] | "\(.name)=\(.state)" | ascii_downcase] | sort | join(" ")' <<<"$st")
		t_expect "node $n: modules statedir and hello are up" "hello=up statedir=up" "$mods"
		t_expect "node $n: hello is healthy" "up" "$(jq -r '.modules[] | select(.name == "hello") | .health' <<<"$st")"
		# statedir may report the bad document as degraded health; if so, with a reason.
		sh=$(jq -r '.modules[] | select(.name == "statedir") | "\(.health)|\(.reason)"' <<<"$st")
		case "$sh" in
		up\|*) t_ok "node $n: statedir healthy" ;;
		degraded\|?*) t_ok "node $n: statedir degraded by the bad document, with a reason: ${sh#*|}" ;;
		*) t_fail "node $n: statedir health up, or degraded with a reason" "$sh" ;;
		esac
	else
		t_fail "node $n: axoneme -o json status" "$st"
	fi
done
if ms=$(lab_json 1 modules 2>&1); then
	t_expect "modules were loaded from the private module dir" \
		"$MODDIR/hello.so $MODDIR/statedir.so" "$(jq -r '[.items[].path] | sort | join(" ")' <<<"$ms")"
else
	t_fail "axoneme -o json modules" "$ms"
fi
t_check "human-readable status works" lab_axoneme 1 status
t_check "pid file and socket (mode 0660) in the node's run dir" \
	test -f "$(lab_rundir 1)/axonemed.pid" -a "$(stat -c %a "$(lab_sock 1)" 2>/dev/null)" = 660

t_step "resources from the state dir, and the bad document's error with file:line"
if res=$(lab_json 1 resources 2>&1); then
	count() { jq -r --arg k "$1" '[.kinds[] | select(.kind == $k) | .count] | add // 0' <<<"$res"; }
	t_expect "3 Services (web, dns, good-neighbour)" 3 "$(count Service)"
	t_expect "1 EndpointSlice" 1 "$(count EndpointSlice)"
	t_expect "3 CiliumLoadBalancerIPPools (2 YAML + 1 JSON)" 3 "$(count CiliumLoadBalancerIPPool)"
	t_expect "1 CiliumL2AnnouncementPolicy" 1 "$(count CiliumL2AnnouncementPolicy)"
	errs=$(jq -c '.errors' <<<"$res")
	where=$(jq -r '[.errors[] | .where] | join(" ")' <<<"$res")
	line=$(sed -n 's/.*bad\.yaml:\([0-9][0-9]*\).*/\1/p' <<<"$where" | head -n1)
	if [ "$(jq '.errors | length' <<<"$res")" = 1 ] && [ -n "$line" ] && [ "$line" -ge "$BAD_FROM" ] && [ "$line" -le "$BAD_TO" ]; then
		t_ok "one error, at bad.yaml:$line (bad document: lines $BAD_FROM-$BAD_TO): $(jq -r '.errors[0].message' <<<"$res")"
	else
		t_fail "one error at bad.yaml:$BAD_FROM..$BAD_TO" "errors: $errs"
	fi
else
	t_fail "axoneme -o json resources" "$res"
fi
if out=$(lab_axoneme 1 resources 2>&1) && grep -q 'bad\.yaml:[0-9]' <<<"$out" && grep -q CiliumLoadBalancerIPPool <<<"$out"; then
	t_ok "human-readable resources lists kinds and the error with file:line"
else
	t_fail "human-readable resources lists kinds and the error with file:line" "$out"
fi
if out=$(lab_json 1 resources get Service 2>&1); then
	names=$(jq -r '[.items[].metadata.name] | sort | join(" ")' <<<"$out" 2>/dev/null)
	t_expect "resources of kind Service, full objects" "dns good-neighbour web" "$names"
else
	t_fail "axoneme -o json resources get Service" "$out"
fi

t_step "statedir watches its directory: a new file and a removed one apply at once"
svc_count() { lab_json 1 resources 2>/dev/null | jq -r '[.kinds[] | select(.kind == "Service") | .count] | add // 0'; }
wait_count() { # N — poll up to 3 s for N Services on node 1
	local i
	for ((i = 0; i < 150; i++)); do
		[ "$(svc_count)" = "$1" ] && return 0
		_lab_sleep 0.02
	done
	return 1
}
printf '%s\n' "apiVersion: v1" "kind: Service" "metadata:" "  name: extra" "  namespace: default" \
	"spec:" "  type: ClusterIP" >"$(lab_statedir 1)/extra.yaml"
t0=$(_lab_now_ms)
if wait_count 4; then t_ok "new file: 4 Services after $(($(_lab_now_ms) - t0)) ms"; else t_fail "new file seen" "Services: $(svc_count)"; fi
rm -f "$(lab_statedir 1)/extra.yaml"
t0=$(_lab_now_ms)
if wait_count 3; then t_ok "file removed: back to 3 Services after $(($(_lab_now_ms) - t0)) ms"; else t_fail "removed file seen" "Services: $(svc_count)"; fi
t_expect "node 2 unaffected: 3 Services" 3 "$(lab_json 2 resources | jq -r '[.kinds[] | select(.kind == "Service") | .count] | add // 0')"

t_step "maps: hello's pinned map, in each node's own bpffs dir"
for n in 1 2; do
	if maps=$(lab_json "$n" map list 2>&1); then
		path=$(jq -r '.items[] | select(.name == "hello_ticks") | .path' <<<"$maps")
		owner=$(jq -r '.items[] | select(.name == "hello_ticks") | .owner' <<<"$maps")
		t_expect "node $n: map list has hello_ticks owned by hello" hello "$owner"
		case "$path" in
		"$(lab_bpffs "$n")"/*) t_check "node $n: pin $path exists in node $n's bpffs dir" test -e "$path" ;;
		*) t_fail "node $n: hello_ticks pinned under $(lab_bpffs "$n")" "path: $path" ;;
		esac
	else
		t_fail "node $n: axoneme -o json map list" "$maps"
	fi
done
PIN1=$(lab_json 1 map list | jq -r '.items[] | select(.name == "hello_ticks") | .path')
PIN2=$(lab_json 2 map list | jq -r '.items[] | select(.name == "hello_ticks") | .path')
table_has() { # N PATTERN ARGS... — the human-readable output of ARGS matches PATTERN
	local n=$1 pat=$2 out
	shift 2
	out=$(lab_axoneme "$n" "$@" 2>&1) || { printf '%s\n' "$out"; return 1; }
	grep -q -- "$pat" <<<"$out" || { printf '%s\n' "$out"; return 1; }
}
t_check "human-readable map list shows hello_ticks" table_has 1 hello_ticks map list

t_step "module endpoint: axoneme hello greet"
greet() { # N -> greeting
	lab_json "$1" hello greet 2>/dev/null | jq -r .greeting 2>/dev/null
}
for n in 1 2; do
	if g=$(lab_json "$n" hello greet 2>&1); then
		t_expect "node $n: greeting" "hello from node$n" "$(jq -r .greeting <<<"$g")"
		t_check "node $n: ticks is a number" jq -e '.ticks | numbers' <<<"$g"
	else
		t_fail "node $n: axoneme hello greet" "$g"
	fi
done
t_check "human-readable hello greet" table_has 1 'hello from node1' hello greet

# ---------------------------------------------------------------- 4. SIGHUP
modsnap() { lab_json 1 modules | jq -c '[.items[] | {name, state, version, path}]'; }
MODS_BEFORE=$(modsnap)
PID1=$(lab_agent_pid 1)

hup_rejected() { # DESC LINE EXPECT_IN_LOG
	local desc=$1 line=$2 pat=$3 off msg
	off=$(lab_log_size 1)
	lab_agent_signal 1 HUP
	if lab_wait_log 1 'axonemed\.conf:[0-9]' 5 "$off"; then
		msg=$(tail -c +"$((off + 1))" "$(lab_log 1)" | grep 'axonemed\.conf:[0-9]' | head -n1)
		if grep -q "axonemed\.conf:$line\b" <<<"$msg"; then
			t_ok "$desc: log names axonemed.conf:$line: $msg"
		else
			t_fail "$desc: log names axonemed.conf:$line" "$msg"
		fi
		if grep -qi 'reload' <<<"$msg" && grep -qi -- "$pat" <<<"$msg"; then
			t_ok "$desc: the log line says the reload was rejected and names '$pat'"
		else
			t_fail "$desc: log line mentions the reload and '$pat'" "$msg"
		fi
	else
		t_fail "$desc: log reports the rejected reload with file:line" "$(tail -c +"$((off + 1))" "$(lab_log 1)")"
	fi
	sleep 0.2 # let a (wrong) reload finish before looking
	t_check "$desc: agent still runs (same pid)" kill -0 "$PID1"
	t_check "$desc: status still answers" lab_axoneme 1 status
	t_expect "$desc: modules unchanged" "$MODS_BEFORE" "$(modsnap)"
	t_expect "$desc: old greeting still in effect" "hello from node1" "$(greet 1)"
}

t_step "SIGHUP with a conf that has a syntax error: rejected, old config keeps running"
CONF1=$(lab_conf_path 1)
write_conf 1 "syntax error"
printf 'this line is not libconfig\n' >>"$CONF1"
hup_rejected "syntax error" "$(grep -n '^this line is not libconfig' "$CONF1" | cut -d: -f1)" "syntax"

t_step "SIGHUP with an unknown option: rejected, old config keeps running"
write_conf 1 "unknown option" 'no_such_option = 1;'
hup_rejected "unknown option" "$(grep -n 'no_such_option' "$CONF1" | cut -d: -f1)" "no_such_option"

t_step "SIGHUP with a valid changed conf: applied"
write_conf 1 "good morning"
off=$(lab_log_size 1)
lab_agent_signal 1 HUP
ok=0
for _ in $(seq 1 100); do
	[ "$(greet 1)" = "good morning from node1" ] && { ok=1; break; }
	sleep 0.05
done
if [ "$ok" = 1 ]; then t_ok "hello greet now says 'good morning from node1'"; else t_fail "greeting changed after SIGHUP" "greet: $(greet 1)" "$(tail -c +"$((off + 1))" "$(lab_log 1)")"; fi
t_check "same agent process (pid $PID1)" test "$(lab_json 1 status | jq -r .pid)" = "$PID1"
t_expect "node 2 unaffected" "hello from node2" "$(greet 2)"

# ---------------------------------------------------------------- 5. SIGTERM, restart, purge
t_step "SIGTERM: exit 0, pinned map left in place"
map_id() { bpftool -j map show pinned "$1" 2>/dev/null | jq -r .id; }
ID_BEFORE=$(map_id "$PIN1")
if lab_agent_stop 1 TERM; then
	t_expect "node 1 agent exit status" 0 "$LAB_AGENT_RC"
else
	t_fail "node 1 agent exits by itself after SIGTERM" "rc $LAB_AGENT_RC"
fi
t_check "pin $PIN1 still exists" test -e "$PIN1"
t_check "socket and pid file removed on exit" test ! -e "$(lab_sock 1)" -a ! -e "$(lab_rundir 1)/axonemed.pid"
t_expect "node 2 still answers" "hello from node2" "$(greet 2)"

t_step "restart node 1: the pinned map is reused"
if lab_agent_start 1; then
	t_ok "node 1 agent ready again (${LAB_READY_WALL_MS} ms)"
	ID_AFTER=$(map_id "$PIN1")
	if [ -n "$ID_BEFORE" ] && [ "$ID_BEFORE" != null ]; then
		t_expect "hello_ticks is the same kernel map (id) as before the restart" "$ID_BEFORE" "$ID_AFTER"
	else
		t_fail "bpftool map show pinned $PIN1" "no map id"
	fi
	t_expect "greeting from the current conf" "good morning from node1" "$(greet 1)"
	lab_agent_stop 1 TERM || true
	t_expect "node 1 agent exit status after second SIGTERM" 0 "$LAB_AGENT_RC"
else
	t_fail "node 1 agent restarts"
fi

t_step "axonemed --purge removes what the agent left"
out=$(ip netns exec "$(lab_ns 1)" "$AXONEMED" -c "$CONF1" --purge 2>&1) && rc=0 || rc=$?
t_expect "axonemed -c conf --purge exits 0" 0 "$rc"
[ "$rc" = 0 ] || printf '%s\n' "$out" | sed 's/^/          | /'
t_check "pin $PIN1 removed" test ! -e "$PIN1"
left=$(find "$(lab_bpffs 1)" -mindepth 1 2>/dev/null | head -n 5 || true)
t_expect "nothing left in (or the agent removed) node 1's bpffs dir" "" "$left"
t_check "node 2's pin untouched ($PIN2)" test -e "$PIN2"

t_step "a pin of another layout goes when the map is created anew (an upgrade)"
OLD=$(lab_bpffs 1)/hello_ticks_v0
mkdir -p "$(lab_bpffs 1)"
if bpftool map create "$OLD" type array key 4 value 8 entries 1 name hello_old 2>/dev/null; then
	off=$(lab_log_size 1)
	if lab_agent_start 1; then
		t_check "hello_ticks pinned again" test -e "$PIN1"
		t_check "the layout-0 pin is gone" test ! -e "$OLD"
		t_check "the agent says so" grep -q "removed $OLD, a pin of layout 0" \
			<(tail -c +"$((off + 1))" "$(lab_log 1)")
		lab_agent_stop 1 TERM || true
	else
		t_fail "node 1 agent starts after the purge"
	fi
	ip netns exec "$(lab_ns 1)" "$AXONEMED" -c "$CONF1" --purge >/dev/null 2>&1 || true
	rm -f "$OLD"
else
	t_fail "bpftool map create $OLD" "bpftool is in tools/deps.sh; it should work as root"
fi

t_step "axonemed --purge refuses while the agent runs (node 2)"
out=$(ip netns exec "$(lab_ns 2)" "$AXONEMED" -c "$(lab_conf_path 2)" --purge 2>&1) && rc=0 || rc=$?
if [ "$rc" != 0 ]; then t_ok "--purge exits $rc: $(tail -n1 <<<"$out")"; else t_fail "--purge refuses while node 2's agent runs" "exit 0" "$out"; fi
t_check "node 2's pin still there" test -e "$PIN2"
t_expect "node 2 still answers" "hello from node2" "$(greet 2)"

t_step "stop node 2"
if lab_agent_stop 2 TERM; then t_expect "node 2 agent exit status" 0 "$LAB_AGENT_RC"; else t_fail "node 2 exits after SIGTERM"; fi

T1=$(_lab_now_ms)
echo
echo "total $((T1 - T0)) ms"
t_summary || exit 1
