// SPDX-License-Identifier: Apache-2.0
/* Label selectors, table-driven, with Kubernetes' semantics. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "core.h"

static const struct {
	const char *selector, *labels;
	int want;
} cases[] = {
	{"null", "{\"a\":\"1\"}", 1},
	{"{}", "{\"a\":\"1\"}", 1},
	{"{}", "null", 1},
	{"{\"matchLabels\":{\"a\":\"1\"}}", "{\"a\":\"1\",\"b\":\"2\"}", 1},
	{"{\"matchLabels\":{\"a\":\"1\"}}", "{\"a\":\"2\"}", 0},
	{"{\"matchLabels\":{\"a\":\"1\"}}", "{}", 0},
	{"{\"matchLabels\":{\"a\":\"1\"}}", "null", 0},
	{"{\"matchLabels\":{\"a\":\"1\",\"b\":\"2\"}}", "{\"a\":\"1\"}", 0},
	{"{\"matchExpressions\":[{\"key\":\"env\",\"operator\":\"In\",\"values\":[\"prod\",\"stage\"]}]}",
	 "{\"env\":\"stage\"}", 1},
	{"{\"matchExpressions\":[{\"key\":\"env\",\"operator\":\"In\",\"values\":[\"prod\"]}]}",
	 "{\"env\":\"dev\"}", 0},
	{"{\"matchExpressions\":[{\"key\":\"env\",\"operator\":\"In\",\"values\":[\"prod\"]}]}", "{}", 0},
	{"{\"matchExpressions\":[{\"key\":\"env\",\"operator\":\"NotIn\",\"values\":[\"prod\"]}]}",
	 "{\"env\":\"dev\"}", 1},
	/* NotIn matches objects without the label, as in Kubernetes. */
	{"{\"matchExpressions\":[{\"key\":\"env\",\"operator\":\"NotIn\",\"values\":[\"prod\"]}]}", "{}", 1},
	{"{\"matchExpressions\":[{\"key\":\"env\",\"operator\":\"NotIn\",\"values\":[\"prod\"]}]}",
	 "{\"env\":\"prod\"}", 0},
	{"{\"matchExpressions\":[{\"key\":\"env\",\"operator\":\"Exists\"}]}", "{\"env\":\"\"}", 1},
	{"{\"matchExpressions\":[{\"key\":\"env\",\"operator\":\"Exists\"}]}", "{}", 0},
	{"{\"matchExpressions\":[{\"key\":\"env\",\"operator\":\"DoesNotExist\"}]}", "{}", 1},
	{"{\"matchExpressions\":[{\"key\":\"env\",\"operator\":\"DoesNotExist\"}]}", "{\"env\":\"x\"}", 0},
	/* Both parts are ANDed. */
	{"{\"matchLabels\":{\"a\":\"1\"},\"matchExpressions\":[{\"key\":\"b\",\"operator\":\"Exists\"}]}",
	 "{\"a\":\"1\"}", 0},
	{"{\"matchLabels\":{\"a\":\"1\"},\"matchExpressions\":[{\"key\":\"b\",\"operator\":\"Exists\"}]}",
	 "{\"a\":\"1\",\"b\":\"x\"}", 1},
	/* Bad selectors are errors, not silent matches. */
	{"{\"matchExpressions\":[{\"key\":\"env\",\"operator\":\"Like\",\"values\":[\"x\"]}]}", "{}", -EINVAL},
	{"{\"matchExpressions\":[{\"key\":\"env\",\"operator\":\"In\",\"values\":[]}]}", "{}", -EINVAL},
	{"{\"matchExpressions\":[{\"key\":\"env\",\"operator\":\"Exists\",\"values\":[\"x\"]}]}", "{}", -EINVAL},
	{"{\"matchExpressions\":[{\"operator\":\"Exists\"}]}", "{}", -EINVAL},
	{"{\"matchLabels\":{\"a\":1}}", "{\"a\":\"1\"}", -EINVAL},
	{"{\"matchLabels\":[\"a\"]}", "{}", -EINVAL},
	{"\"app=x\"", "{}", -EINVAL},
	/* A typo is an error, not "select everything". */
	{"{\"matchLabel\":{\"a\":\"1\"}}", "{}", -EINVAL},
	/* A bad term after a mismatching one is still reported. */
	{"{\"matchLabels\":{\"a\":\"1\"},\"matchExpressions\":[{\"key\":\"b\",\"operator\":\"Like\"}]}",
	 "{\"a\":\"2\"}", -EINVAL},
};

static void test_table(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *sel = json_loads(cases[i].selector, JSON_DECODE_ANY, NULL);
		json_t *labels = json_loads(cases[i].labels, JSON_DECODE_ANY, NULL);
		int got = selector_match_json(sel, labels);

		if (got != cases[i].want)
			fail_msg("case %zu: %s on %s: want %d, got %d", i, cases[i].selector,
				 cases[i].labels, cases[i].want, got);
		json_decref(sel);
		json_decref(labels);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_table)};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
