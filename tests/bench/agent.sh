#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# tests/bench/agent.sh — agent start-up time and memory (a benchmark, not a test:
# it reports numbers next to their targets and exits 0 whatever they are).
#
# On an empty lab node (one netns, statedir on an empty dir, plus hello) it
# starts axonemed RUNS times (default 20) and reports, min / median / p90:
#   - ready_ms as the agent logs it on its msg="ready" line;
#   - wall clock from exec until the API socket answers `axoneme status`
#     (polled every ~5 ms, so it includes up to one poll interval + one CLI run);
# then, after one more start and 2 s idle, VmRSS and VmHWM from /proc/PID/status.
# The first start is cold (empty bpffs); the others restart over the pins the
# previous run left, as an upgrade does.
#
# Builds nothing of the tree: it needs the staged install (tools/bootstrap.sh
# or `make stage`). hello is not staged, so it is compiled from the staged SDK
# into the lab's work dir (one file, well under a second), unless
# AXN_HELLO_SO=/path/hello.so is given.
#
#   sudo tests/bench/agent.sh              # RUNS=20
#   sudo RUNS=50 tests/bench/agent.sh
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

AXN_SRC=${AXN_SRC:-$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)}
# shellcheck source=../lab/lab.sh
. "$AXN_SRC/tests/lab/lab.sh"

RUNS=${RUNS:-20}
TARGET_READY_MS=50
TARGET_RSS_KB=$((8 * 1024))
IDLE_S=2

lab_require_root
command -v jq >/dev/null || { echo "SKIP: needs jq (run tools/deps.sh)"; exit 77; }
if ! LAB_STAGE=$(lab_find_stage); then
	echo "agent.sh: no staged install; run tools/bootstrap.sh (or make stage) first" >&2
	exit 1
fi
lab_find_bins
lab_init "axb$$"
lab_cleanup_trap

if [ -n "${AXN_HELLO_SO:-}" ]; then
	hello=$AXN_HELLO_SO
else
	lab_build_hello "$LAB_WORK/build" || exit 1
	hello=$LAB_HELLO_SO
fi
lab_moduledir "$LAB_WORK/modules" "$LAB_MODULEDIR/statedir.so" "$hello"
LAB_MODULEDIR=$LAB_WORK/modules

lab_node 1
lab_conf 1 - <<EOF
modules = ( "statedir", "hello" );
statedir: { path = "$(lab_statedir 1)"; };
hello: { greeting = "bench"; };
EOF

# nearest-rank percentile of the numbers on stdin: pct P
pct() {
	sort -n | awk -v p="$1" '{ v[NR] = $1 } END {
		if (NR == 0) { print "-"; exit }
		i = int((p * NR + 99) / 100); if (i < 1) i = 1; if (i > NR) i = NR; print v[i] }'
}
verdict() { # VALUE TARGET (numbers, may have decimals)
	case "$1" in
	'' | - | *[!0-9.]*) printf 'n/a' ;;
	*) awk -v v="$1" -v t="$2" 'BEGIN { print (v + 0 <= t + 0) ? "ok" : "OVER" }' ;;
	esac
}

ready_log=()
ready_wall=()
failed=0
export LAB_READY_BY=socket
printf 'axonemed start-up: statedir (empty dir) + hello on an empty lab node, %d starts\n' "$RUNS"
printf '%s\n' "agent: $AXONEMED"
for ((i = 1; i <= RUNS; i++)); do
	off=$(lab_log_size 1)
	if ! lab_agent_start 1; then
		failed=$((failed + 1))
		continue
	fi
	wall=$LAB_READY_WALL_MS
	# The ready line may come a moment after the socket answers.
	lab_wait_log 1 'msg="\{0,1\}ready' 5 "$off" || true
	ms=$(tail -c +"$((off + 1))" "$(lab_log 1)" | grep 'msg="\{0,1\}ready' | head -n1 |
		sed -n 's/.*[[:space:]]ready_ms=\([0-9][0-9.]*\).*/\1/p')
	ready_wall+=("$wall")
	[ -n "$ms" ] && ready_log+=("$ms")
	printf '  run %2d: ready_ms=%-4s exec->socket %s ms\n' "$i" "${ms:--}" "$wall"
	lab_agent_stop 1 TERM || true
done

stats() { # LABEL TARGET VALUES...
	local label=$1 target=$2 mn md p9
	shift 2
	if [ $# -eq 0 ]; then
		printf '%-30s %6s %7s %6s   <= %d ms\n' "$label" - - - "$target"
		return
	fi
	mn=$(printf '%s\n' "$@" | pct 0)
	md=$(printf '%s\n' "$@" | pct 50)
	p9=$(printf '%s\n' "$@" | pct 90)
	printf '%-30s %6s %7s %6s   <= %d ms  %s\n' "$label" "$mn" "$md" "$p9" "$target" "$(verdict "$md" "$target")"
}

# Memory: one more start, idle, then read the kernel's numbers.
rss=- hwm=-
if lab_agent_start 1; then
	sleep "$IDLE_S"
	pid=$(lab_agent_pid 1)
	rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
	hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
	lab_agent_stop 1 TERM || true
fi
kb2mb() { case "$1" in '' | -) printf '-' ;; *) awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }' ;; esac; }

echo
printf '%-30s %6s %7s %6s   %s\n' "" min median p90 "target (median)"
stats "ready_ms (agent log), ms" "$TARGET_READY_MS" "${ready_log[@]}"
stats "exec -> socket answers, ms" "$TARGET_READY_MS" "${ready_wall[@]}"
printf '%-30s %6s MB (VmHWM %s MB)   <= %d MB  %s\n' "RSS idle after ${IDLE_S} s" "$(kb2mb "$rss")" "$(kb2mb "$hwm")" \
	"$((TARGET_RSS_KB / 1024))" "$(verdict "$rss" "$TARGET_RSS_KB")"
[ "${#ready_log[@]}" -eq "${#ready_wall[@]}" ] ||
	echo "note: $(( ${#ready_wall[@]} - ${#ready_log[@]} )) ready lines had no ready_ms=N"
[ "$failed" = 0 ] || echo "note: $failed of $RUNS starts failed (see the log above)"
