#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Build and run the whole test suite on a fresh Debian 12 machine (as root for
# the BPF and netns tests; they skip with a reason otherwise).
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
"$top/tools/bootstrap.sh"
cd "$top/_build"
rc=0
make -j"$(nproc)" check || rc=$?
# The same unit, module and BPF tests again under ASAN + UBSAN (the netns lab
# tests ran above; they skip here).
mkdir -p asan
(cd asan && { [ -f Makefile ] || "$top/configure" -q --enable-sanitizers 2>&1 | grep -v "cannot remove 'core'" || true; } &&
	make -j"$(nproc)" >/dev/null && AXN_SKIP_LAB=1 make -j"$(nproc)" check) || rc=$?
# One summary over every suite, as automake's harness wrote them.
pass=0 fail=0 skip=0
while IFS= read -r log; do
	while IFS= read -r line; do
		case "$line" in
		":test-result: PASS"*) pass=$((pass + 1)) ;;
		":test-result: FAIL"* | ":test-result: ERROR"* | ":test-result: XPASS"*) fail=$((fail + 1)) ;;
		":test-result: SKIP"*) skip=$((skip + 1)) ;;
		esac
	done <"$log"
done < <(find . -name '*.trs')
if [ "$fail" -gt 0 ] || [ "$rc" -ne 0 ]; then
	find . -name 'test-suite.log' -exec grep -l '^FAIL\|^ERROR' {} + 2>/dev/null |
		while read -r l; do echo "=== $l"; cat "$l"; done
fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$rc" -eq 0 ] && [ "$fail" -eq 0 ]
