# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# tests/lab/check.sh — tiny reporting helpers for lab tests.
#
#   t_step "what the next checks are about"
#   t_check "description" CMD...      pass if CMD exits 0; else show its output
#   t_ok "description" / t_fail "description" [DETAIL...]
#   t_summary                        prints "N passed, N failed"; returns 1 on failure
#
# Every check prints one line: "ok   N  description" or "FAIL N  description"
# followed by the details, indented.

T_PASS=0
T_FAIL=0
T_N=0

t_step() { printf '\n== %s\n' "$*"; }

t_ok() {
	T_N=$((T_N + 1))
	T_PASS=$((T_PASS + 1))
	printf 'ok   %2d  %s\n' "$T_N" "$1"
}

t_fail() {
	T_N=$((T_N + 1))
	T_FAIL=$((T_FAIL + 1))
	printf 'FAIL %2d  %s\n' "$T_N" "$1"
	shift
	if [ $# -gt 0 ]; then
		printf '%s\n' "$@" | sed 's/^/          | /'
	fi
}

# t_check DESC CMD... — CMD's output is shown only when it fails.
t_check() {
	local desc=$1 out rc=0
	shift
	out=$("$@" 2>&1) || rc=$?
	if [ "$rc" = 0 ]; then
		t_ok "$desc"
	else
		t_fail "$desc" "command: $*" "exit $rc" "$out"
	fi
}

# t_expect DESC EXPECTED ACTUAL — equality check with both values shown on failure.
t_expect() {
	if [ "$2" = "$3" ]; then
		t_ok "$1"
	else
		t_fail "$1" "expected: $2" "actual:   $3"
	fi
}

# t_logs_on_failure LINES NODE... — after lab_init: if the run fails, print the
# last LINES lines of each node's agent log at exit (AXN_KEEP_ON_FAIL=1 keeps the lab).
t_logs_on_failure() {
	T_LOG_LINES=$1
	shift
	T_LOG_NODES="$*"
	lab_on_exit _t_report_logs
}

_t_report_logs() {
	[ "$T_FAIL" != 0 ] || [ "${LAB_EXIT_RC:-0}" != 0 ] || return 0
	local n
	for n in $T_LOG_NODES; do
		[ -s "$(lab_log "$n")" ] || continue
		echo "--- node $n agent log (last $T_LOG_LINES lines)"
		tail -n "$T_LOG_LINES" "$(lab_log "$n")"
	done
	[ "${AXN_KEEP_ON_FAIL:-0}" = 1 ] && LAB_KEEP=1
	return 0
}

t_summary() {
	printf '\n%d passed, %d failed\n' "$T_PASS" "$T_FAIL"
	[ "$T_FAIL" = 0 ]
}
