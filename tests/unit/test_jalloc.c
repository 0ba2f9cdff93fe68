// SPDX-License-Identifier: Apache-2.0
/* jalloc: size classes, large blocks, chunk release, jansson through it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "jalloc.h"

static struct jalloc_stats stats(void)
{
	struct jalloc_stats st;

	jalloc_get_stats(&st);
	return st;
}

/* Every class: aligned to 16, usable to its size, no overlap, all freed. */
static void test_classes(void **state)
{
	static const size_t sizes[] = {0, 1, 15, 16, 17, 33, 64, 65, 100, 200, 300, 500, 512};
	struct jalloc_stats base = stats(), st;
	void *p[sizeof(sizes) / sizeof(sizes[0])][50];
	size_t i, j;

	(void)state;
	for (j = 0; j < 50; j++)
		for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			p[i][j] = jalloc_malloc(sizes[i]);
			assert_non_null(p[i][j]);
			assert_int_equal((uintptr_t)p[i][j] % 16, 0);
			memset(p[i][j], (int)(i * 50 + j), sizes[i]);
		}
	for (j = 0; j < 50; j++)
		for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			const unsigned char *b = p[i][j];
			size_t k;

			for (k = 0; k < sizes[i]; k++)
				assert_int_equal(b[k], (unsigned char)(i * 50 + j));
		}
	st = stats();
	assert_int_equal(st.small_live - base.small_live, 50 * sizeof(sizes) / sizeof(sizes[0]));
	assert_int_equal(st.large_live, base.large_live);
	for (j = 0; j < 50; j++)
		for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
			jalloc_free(p[i][j]);
	st = stats();
	assert_int_equal(st.small_live, base.small_live);
	/* Each class keeps at most its one spare. */
	assert_true(st.chunks - st.spares <= base.chunks - base.spares);
	jalloc_free(NULL);
}

static void test_large(void **state)
{
	struct jalloc_stats base = stats(), st;
	void *p[8];
	size_t i;

	(void)state;
	for (i = 0; i < 8; i++) {
		p[i] = jalloc_malloc(513 + i * 100000);
		assert_non_null(p[i]);
		memset(p[i], 0xa5, 513 + i * 100000);
	}
	st = stats();
	assert_int_equal(st.large_live - base.large_live, 8);
	assert_int_equal(st.small_live, base.small_live);
	assert_int_equal(st.chunks, base.chunks);
	for (i = 0; i < 8; i++)
		jalloc_free(p[i]);
	assert_int_equal(stats().large_live, base.large_live);
}

/*
 * Chunks that empty go back to the kernel but for one spare per class, even
 * when frees come in another order than the allocations.
 */
static void test_release(void **state)
{
	enum { N = 40000 }; /* 64-byte blocks: ~10 chunks */
	struct jalloc_stats base = stats(), st;
	void **p = calloc(N, sizeof(*p));
	size_t i;

	(void)state;
	assert_non_null(p);
	for (i = 0; i < N; i++)
		assert_non_null(p[i] = jalloc_malloc(64));
	st = stats();
	assert_true(st.chunks >= base.chunks + N * 64 / JALLOC_CHUNK);
	/* Free every other block: nothing empties. */
	for (i = 0; i < N; i += 2)
		jalloc_free(p[i]);
	assert_int_equal(stats().chunks, st.chunks);
	/* Freed slots are reused before a new chunk is mapped. */
	for (i = 0; i < N; i += 2)
		assert_non_null(p[i] = jalloc_malloc(50));
	assert_int_equal(stats().chunks, st.chunks);
	for (i = N; i-- > 0;)
		jalloc_free(p[i]);
	st = stats();
	assert_int_equal(st.small_live, base.small_live);
	assert_true(st.chunks <= base.chunks + 1);
	assert_true(st.spares <= 10);
	/* The spare is reused. */
	p[0] = jalloc_malloc(64);
	assert_true(stats().chunks <= st.chunks);
	jalloc_free(p[0]);
	free(p);
}

/* jansson's trees come and go through it; json_dumps() text is malloc'd. */
static void test_jansson(void **state)
{
	struct jalloc_stats base, st;
	json_t *v;
	char *s;
	int i;

	(void)state;
	jalloc_install();
	base = stats();
	v = json_array();
	for (i = 0; i < 2000; i++)
		json_array_append_new(v, json_pack("{s:i, s:s, s:[s]}", "i", i, "name",
						   "a-long-enough-name", "l", "x"));
	st = stats();
	assert_true(st.small_live > base.small_live + 2000);
	s = json_dumps(v, JSON_COMPACT);
	assert_non_null(s);
	assert_int_equal(strncmp(s, "[{", 2), 0);
	free(s); /* must be libc's */
	json_decref(v);
	st = stats();
	assert_int_equal(st.small_live, base.small_live);
	assert_int_equal(st.large_live, base.large_live);
	json_set_alloc_funcs(malloc, free);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classes),
		cmocka_unit_test(test_large),
		cmocka_unit_test(test_release),
		cmocka_unit_test(test_jansson),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
