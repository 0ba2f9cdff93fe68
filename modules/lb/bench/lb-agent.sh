#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# lb-agent.sh — the lb module in the real agent (a benchmark: numbers next to
# their targets, exit 0 whatever they are). One lab node runs axonemed with
# statedir + lb over a state dir of N Services and N EndpointSlices (B
# backends each, several multi-document files), and reports:
#   - exec -> ready, and exec -> all N services in the maps (the agent's log:
#     lab's start marker to lb's "in sync" line), on a cold start and on a
#     restart over the pinned maps (adoption, nothing to write);
#   - lb's own time from the first store event to the maps holding everything;
#   - VmRSS / VmHWM after sync and IDLE_S seconds idle, with a breakdown:
#     statedir + lb on an empty state dir, statedir alone with the manifests
#     (the store and statedir), lb on top; and what the manifests weigh as
#     jansson trees (lb-bench docmem).
# Needs root and a staged install (make stage; `make bench` does it).
#   LB_AGENT_SERVICES (10000), LB_AGENT_BACKENDS (1), LB_AGENT_FILES (10)
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

AXN_SRC=${AXN_SRC:-$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../../.." && pwd -P)}
# shellcheck source=../../../tests/lab/lab.sh
. "$AXN_SRC/tests/lab/lab.sh"

N=${LB_AGENT_SERVICES:-10000}
B=${LB_AGENT_BACKENDS:-1}
FILES=${LB_AGENT_FILES:-10}
IDLE_S=${IDLE_S:-2}
TARGET_RSS_MB=40
TARGET_SYNC_MS=40

lab_require_root
if ! LAB_STAGE=$(lab_find_stage); then
	echo "lb-agent.sh: no staged install; run 'make stage' (or make bench) first" >&2
	exit 1
fi
lab_find_bins
[ -f "$LAB_MODULEDIR/lb.so" ] || { echo "lb-agent.sh: no lb.so in $LAB_MODULEDIR" >&2; exit 1; }
LB_BENCH=${LB_BENCH:-${AXN_BUILD:+$AXN_BUILD/modules/lb/bench/lb-bench}}

export LAB_AGENT_TIMEOUT=60 LAB_READY_BY=socket
lab_init "axlbb$$"
lab_cleanup_trap

# N Services (ClusterIP 10.96.0.0 + 1 + i, port 80 "http") and their slices
# (B ready endpoints each from 11.0.0.0 + 1 + i*B, port 8080), FILES files.
manifests() { # DIR
	awk -v n="$N" -v b="$B" -v files="$FILES" -v dir="$1" '
	function ip(base, i,  a) { a = base + i; return sprintf("%d.%d.%d.%d", int(a / 16777216), int(a / 65536) % 256, int(a / 256) % 256, a % 256) }
	BEGIN {
		per = int((n + files - 1) / files)
		for (i = 0; i < n; i++) {
			f = sprintf("%s/svc-%03d.json", dir, int(i / per))
			printf "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"svc%d\",\"namespace\":\"bench\"},\"spec\":{\"type\":\"ClusterIP\",\"clusterIP\":\"%s\",\"clusterIPs\":[\"%s\"],\"ports\":[{\"name\":\"http\",\"port\":80,\"protocol\":\"TCP\",\"targetPort\":8080}]}}\n", i, ip(174063616 + 1, i), ip(174063616 + 1, i) > f
			eps = ""
			for (j = 0; j < b; j++)
				eps = eps (j ? "," : "") sprintf("{\"addresses\":[\"%s\"],\"nodeName\":\"node1\",\"conditions\":{\"ready\":true,\"serving\":true,\"terminating\":false}}", ip(184549376 + 1, i * b + j))
			printf "{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":{\"name\":\"svc%d-x1\",\"namespace\":\"bench\",\"labels\":{\"kubernetes.io/service-name\":\"svc%d\"}},\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"http\",\"port\":8080,\"protocol\":\"TCP\"}],\"endpoints\":[%s]}\n", i, i, eps > f
		}
	}'
}

# Milliseconds since the epoch of an ISO timestamp (2026-01-02T03:04:05.678Z).
iso_ms() { date -u -d "$1" +%s%3N; }
# The timestamp of the last lab start marker / of the first line matching PATTERN after it.
start_ts() { grep -- '^--- lab: ' "$(lab_log "$1")" | tail -n 1 | awk '{ print $3 }'; }
line_after() { # N PATTERN
	awk -v pat="$2" '/^--- lab: / { buf = "" } $0 ~ pat && buf == "" { buf = $0 } END { print buf }' "$(lab_log "$1")"
}
ts_of() { sed -n 's/^ts=\([^ ]*\) .*/\1/p' <<<"$1"; }
rss_of() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v + 0 <= t + 0) ? "ok" : "OVER" }'; }

lb_conf() { # NODE STATEDIR [nolb]
	local lbmax=$((N * (B + 1) + 1024)) range=1 slots
	[ "$lbmax" -lt 65536 ] && lbmax=65536
	while [ "$range" -lt "$B" ]; do range=$((range * 2)); done # a frontend's slots: a power of two
	slots=$((N * range + 1024))
	[ "$slots" -lt 262144 ] && slots=262144
	if [ "${3:-}" = nolb ]; then
		lab_conf "$1" - <<-EOF
			modules = ( "statedir" );
			statedir: { path = "$2"; };
		EOF
	else
		lab_conf "$1" - <<-EOF
			modules = ( "statedir", "lb" );
			statedir: { path = "$2"; };
			lb: { services_max = $lbmax; slots_max = $slots; backends_max = $lbmax; revnat_max = $lbmax; };
		EOF
	fi
}

# Start node N's agent, wait until lb is in sync (or, without lb, until
# statedir serves), let it idle, read its memory. Sets RSS HWM READY SYNC LINE.
run_agent() { # NODE WAIT_PATTERN
	local pid t0
	OFF=$(lab_log_size "$1")
	lab_agent_start "$1" || return 1
	READY=$LAB_READY_WALL_MS
	lab_wait_log "$1" "$2" 120 "$OFF" || true
	LINE=$(line_after "$1" "$2")
	t0=$(start_ts "$1")
	SYNC=-
	[ -n "$LINE" ] && [ -n "$t0" ] && SYNC=$(($(iso_ms "$(ts_of "$LINE")") - $(iso_ms "$t0")))
	sleep "$IDLE_S"
	pid=$(lab_agent_pid "$1")
	RSS=$(rss_of "$pid" VmRSS)
	HWM=$(rss_of "$pid" VmHWM)
}

lab_node 1
lab_node 2
mkdir -p "$LAB_WORK/empty"
manifests "$(lab_statedir 1)"

printf 'lb in the real agent: %d Services + %d EndpointSlices (%d backend(s) each) in %d files\n' \
	"$N" "$N" "$B" "$FILES"
printf '%s\n' "agent: $AXONEMED"

# 1. The store and statedir alone with the manifests.
lb_conf 1 "$(lab_statedir 1)" nolb
run_agent 1 'msg="\{0,1\}serving' || exit 1
rss_store=$RSS hwm_store=$HWM
lab_agent_stop 1 TERM >/dev/null || true

# 2. statedir + lb on an empty state dir (another node: its own pins).
lb_conf 2 "$LAB_WORK/empty"
run_agent 2 'in sync' || exit 1
rss_base=$RSS
lab_agent_stop 2 TERM >/dev/null || true

# 3. statedir + lb with the manifests, cold (no pins yet), then a restart over the pins.
lb_conf 1 "$(lab_statedir 1)"
run_agent 1 'in sync' || exit 1
rss_full=$RSS hwm_full=$HWM ready_cold=$READY sync_cold=$SYNC line_cold=$LINE
masters=$(lab_axoneme 1 -o json lb bpf 2>/dev/null | jq '.items | length' 2>/dev/null || echo '?')
lab_agent_stop 1 TERM >/dev/null || true
run_agent 1 'in sync' || exit 1
sync_warm=$SYNC line_warm=$LINE
lab_agent_stop 1 TERM >/dev/null || true

lb_ms() { sed -n 's/.*; \([0-9.]*\) ms since the first store event.*/\1/p' <<<"$1"; }
services() { sed -n 's/.*in sync: \([0-9]*\) services.*/\1/p' <<<"$1"; }
docmem=""
if [ -x "${LB_BENCH:-}" ]; then
	docmem=$("$LB_BENCH" docmem "$(lab_statedir 1)" | sed -n 's/.*rss_kb=\([0-9]*\).*/\1/p')
fi

echo
printf '%-58s %10s\n' "" "measured"
printf '%-58s %7s ms\n' "cold start: exec -> ready (socket answers)" "$ready_cold"
printf '%-58s %7s ms   (%s services in sync, %s masters in lb4_services)\n' \
	"cold start: exec -> all $N services in the maps" "$sync_cold" "$(services "$line_cold")" "$masters"
printf '%-58s %7s ms   target < %d ms  %s\n' "  lb: first store event -> maps hold everything" \
	"$(lb_ms "$line_cold")" "$TARGET_SYNC_MS" "$(verdict "$(lb_ms "$line_cold")" "$TARGET_SYNC_MS")"
printf '%-58s %7s ms\n' "restart over the pins: exec -> in sync (adopted, unchanged)" "$sync_warm"
printf '%-58s %7s ms\n' "  lb: first store event -> in sync" "$(lb_ms "$line_warm")"
printf '%-58s %7s MB   (VmHWM %s MB)   target <= %d MB  %s\n' "RSS after sync, ${IDLE_S} s idle" \
	"$(mb "$rss_full")" "$(mb "$hwm_full")" "$TARGET_RSS_MB" "$(verdict "$(mb "$rss_full")" "$TARGET_RSS_MB")"
echo "  breakdown (VmRSS):"
printf '    %-54s %7s MB\n' "statedir + lb, empty state dir" "$(mb "$rss_base")"
printf '    %-54s %+7.1f MB\n' "+ the manifests in the store and statedir (no lb)" \
	"$(awk -v a="$rss_store" -v b="$rss_base" 'BEGIN { print (a - b) / 1024 }')"
[ -n "$docmem" ] && printf '    %-54s %7s MB\n' "    (the same documents as jansson trees would take)" "$(mb "$docmem")"
printf '    %-54s %+7.1f MB\n' "+ lb with $N services programmed" \
	"$(awk -v a="$rss_full" -v b="$rss_store" 'BEGIN { print (a - b) / 1024 }')"
printf '    %-54s %7s MB\n' "VmHWM: statedir alone / statedir + lb" "$(mb "$hwm_store") / $(mb "$hwm_full")"
echo "  lb: ${line_cold#*msg=}"
