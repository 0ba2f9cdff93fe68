// SPDX-License-Identifier: Apache-2.0
/*
 * test_lb_alloc.c - the slot-range buddy allocator and the id allocator
 * against a plain model: a byte per slot, an owner per id.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lb_alloc.h"

struct range {
	uint32_t base;
	unsigned order;
};

/* Every slot of [base, base + 2^order) free in the model? */
static bool model_free(const uint8_t *used, uint32_t base, unsigned order)
{
	for (uint32_t i = 0; i < 1u << order; i++)
		if (used[base + i])
			return false;
	return true;
}

static void model_set(uint8_t *used, uint32_t base, unsigned order, uint8_t v)
{
	memset(used + base, v, 1u << order);
}

/* Sizes that are not a power of two leave tail blocks of smaller orders. */
static void run_buddy(uint32_t size, unsigned seed)
{
	struct lb_buddy b;
	uint8_t *used = calloc(size, 1);
	struct range *own = calloc(size, sizeof(*own));
	size_t n_own = 0;
	uint32_t n_used = 0;

	srand(seed);
	assert_non_null(used);
	assert_int_equal(lb_bd_init(&b, size), 0);
	assert_int_equal(b.n_free, size);
	for (int step = 0; step < 20000; step++) {
		int op = rand() % 10;

		if (op < 5) {
			unsigned o = (unsigned)(rand() % 6);
			uint32_t base = lb_bd_alloc(&b, o);

			if (base == LB_NIL) {
				/* Refused only when no aligned block of that order is free. */
				for (uint32_t x = 0; x + (1u << o) <= size; x += 1u << o)
					assert_false(model_free(used, x, o));
				continue;
			}
			assert_int_equal(base & ((1u << o) - 1), 0);
			assert_true(base + (1u << o) <= size);
			assert_true(model_free(used, base, o));
			model_set(used, base, o, 1);
			own[n_own++] = (struct range){base, o};
			n_used += 1u << o;
		} else if (op < 9 && n_own) {
			size_t k = (size_t)rand() % n_own;

			lb_bd_free(&b, own[k].base, own[k].order);
			model_set(used, own[k].base, own[k].order, 0);
			n_used -= 1u << own[k].order;
			own[k] = own[--n_own];
		} else {
			/* Adoption: a given range, taken iff all of it is free. */
			unsigned o = (unsigned)(rand() % 5);
			uint32_t base = ((uint32_t)rand() % size) & ~((1u << o) - 1);
			int r;

			if (base + (1u << o) > size)
				continue;
			r = lb_bd_reserve(&b, base, o);
			if (model_free(used, base, o)) {
				assert_int_equal(r, 0);
				model_set(used, base, o, 1);
				own[n_own++] = (struct range){base, o};
				n_used += 1u << o;
			} else {
				assert_int_equal(r, -EEXIST);
			}
		}
		assert_int_equal(b.n_free, size - n_used);
	}
	/* Everything back: the neighbours merged, the largest block is whole again. */
	while (n_own) {
		n_own--;
		lb_bd_free(&b, own[n_own].base, own[n_own].order);
	}
	assert_int_equal(b.n_free, size);
	{
		unsigned top = 0;

		while (top < LB_ORDER_MAX && (1u << (top + 1)) <= size)
			top++;
		assert_int_equal(lb_bd_alloc(&b, top), 0);
	}
	lb_bd_free_all(&b);
	free(used);
	free(own);
}

static void test_buddy_model(void **state)
{
	(void)state;
	run_buddy(1024, 1);
	run_buddy(1000, 2);
	run_buddy(4096 + 64 + 3, 3);
	run_buddy(70000, 4); /* more than one summary word at order 0 */
}

/* Lowest first: the writer maps only the prefix of lb_slots in use. */
static void test_buddy_lowest_first(void **state)
{
	struct lb_buddy b;

	(void)state;
	assert_int_equal(lb_bd_init(&b, 1u << 20), 0);
	for (uint32_t i = 0; i < 1000; i++)
		assert_int_equal(lb_bd_alloc(&b, 4), i * 16);
	lb_bd_free(&b, 16 * 7, 4);
	lb_bd_free(&b, 16 * 500, 4);
	assert_int_equal(lb_bd_alloc(&b, 4), 16 * 7);
	assert_int_equal(lb_bd_alloc(&b, 4), 16 * 500);
	assert_int_equal(lb_bd_alloc(&b, 4), 16 * 1000);
	assert_int_equal(lb_bd_alloc(&b, 31), LB_NIL);
	lb_bd_free_all(&b);
}

static void test_ids(void **state)
{
	struct lb_ids x = {.max = 5, .fresh = 1};

	(void)state;
	assert_int_equal(lb_ids_alloc(&x), 1);
	assert_int_equal(lb_ids_alloc(&x), 2);
	assert_int_equal(lb_ids_alloc(&x), 3);
	assert_int_equal(lb_ids_alloc(&x), 4);
	assert_int_equal(lb_ids_alloc(&x), 0); /* ids 1 .. max - 1 */
	assert_int_equal(lb_ids_free(&x, 2), 0);
	assert_int_equal(lb_ids_alloc(&x), 2);
	assert_int_equal(x.n_used, 4);
	free(x.free);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buddy_model),
		cmocka_unit_test(test_buddy_lowest_first),
		cmocka_unit_test(test_ids),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
