#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Each public header compiles on its own as strict C99 and as C++11.
set -eu
inc=${SDK_INCLUDE:?}
tmp=$(mktemp -d /tmp/axn-hdr-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
for h in module.h host.h store.h axoneme.h; do
	printf '#include <axoneme/%s>\nint axn_header_probe;\n' "$h" >"$tmp/t.c"
	if ${CC:-cc} -std=c99 -pedantic-errors -Wall -Wextra -Werror -I"$inc" $JANSSON_CFLAGS \
		-c "$tmp/t.c" -o "$tmp/t.o"; then
		pass=$((pass + 1))
	else
		echo "FAIL: axoneme/$h as C99"; fail=$((fail + 1))
	fi
	cp "$tmp/t.c" "$tmp/t.cc"
	if ${CXX:-c++} -std=c++11 -Wall -Wextra -Werror -I"$inc" $JANSSON_CFLAGS \
		-c "$tmp/t.cc" -o "$tmp/t.o"; then
		pass=$((pass + 1))
	else
		echo "FAIL: axoneme/$h as C++11"; fail=$((fail + 1))
	fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
