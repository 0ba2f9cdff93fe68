// SPDX-License-Identifier: Apache-2.0
/*
 * lb_alloc.c - what the lb map writer hands out: slot ranges in lb_slots (a
 * buddy allocator) and ids that index the backend and reverse-NAT arrays.
 * Pure bookkeeping; lb_maps.c decides when (see lb_alloc.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lb_alloc.h"

/* --- slot ranges: a buddy allocator over lb_slots ------------------------------ */

/*
 * One bitmap per order: bit i of order o set = the block at i << o is free
 * and whole at that order. A summary word per 64 bitmap words says which
 * are not zero, so the lowest free block is found in a few words even among
 * millions of slots. About a quarter of a byte per slot, where two list
 * links per slot took eight: a sync of a million backends allocates a
 * hundred thousand ranges, and fresh memory is what it waits on.
 */

static bool bd_test(const struct lb_buddy *b, unsigned o, uint32_t base)
{
	uint32_t i = base >> o;

	return i < b->nblk[o] && (b->bits[o][i / 64] >> (i % 64)) & 1;
}

static void bd_push(struct lb_buddy *b, uint32_t base, unsigned o)
{
	uint32_t i = base >> o, w = i / 64;

	b->bits[o][w] |= 1ull << (i % 64);
	b->sum[o][w / 64] |= 1ull << (w % 64);
	if (w / 64 < b->lo[o])
		b->lo[o] = w / 64;
	b->cnt[o]++;
	b->n_free += 1u << o;
}

static void bd_unlink(struct lb_buddy *b, uint32_t base, unsigned o)
{
	uint32_t i = base >> o, w = i / 64;

	b->bits[o][w] &= ~(1ull << (i % 64));
	if (!b->bits[o][w])
		b->sum[o][w / 64] &= ~(1ull << (w % 64));
	b->cnt[o]--;
	b->n_free -= 1u << o;
}

/* The lowest free block of order o (there is one). */
static uint32_t bd_lowest(struct lb_buddy *b, unsigned o)
{
	uint32_t s = b->lo[o], w;

	while (!b->sum[o][s])
		s++;
	b->lo[o] = s; /* every summary word below is zero */
	w = s * 64 + (uint32_t)__builtin_ctzll(b->sum[o][s]);
	return (w * 64 + (uint32_t)__builtin_ctzll(b->bits[o][w])) << o;
}

int lb_bd_init(struct lb_buddy *b, uint32_t size)
{
	memset(b, 0, sizeof(*b));
	b->size = size;
	for (unsigned o = 0; o <= LB_ORDER_MAX; o++) {
		uint32_t nw;

		b->nblk[o] = size >> o;
		nw = (b->nblk[o] + 63) / 64;
		/* calloc: the bitmaps of a large array cost only what is touched. */
		b->bits[o] = calloc(nw ? nw : 1, sizeof(uint64_t));
		b->sum[o] = calloc((nw + 63) / 64 + 1, sizeof(uint64_t));
		if (!b->bits[o] || !b->sum[o]) {
			lb_bd_free_all(b);
			return -ENOMEM;
		}
	}
	for (uint32_t base = 0; base < size;) {
		unsigned o = LB_ORDER_MAX;

		while (o && ((base & ((1u << o) - 1)) || (uint64_t)base + (1u << o) > size))
			o--;
		bd_push(b, base, o);
		base += 1u << o;
	}
	return 0;
}

void lb_bd_free_all(struct lb_buddy *b)
{
	for (unsigned o = 0; o <= LB_ORDER_MAX; o++) {
		free(b->bits[o]);
		free(b->sum[o]);
		b->bits[o] = b->sum[o] = NULL;
	}
}

/* The base of a free range of 1 << order slots, or LB_NIL. */
uint32_t lb_bd_alloc(struct lb_buddy *b, unsigned order)
{
	unsigned o = order;
	uint32_t base;

	while (o <= LB_ORDER_MAX && !b->cnt[o])
		o++;
	if (o > LB_ORDER_MAX)
		return LB_NIL;
	base = bd_lowest(b, o);
	bd_unlink(b, base, o);
	while (o > order) {
		o--;
		bd_push(b, base + (1u << o), o);
	}
	return base;
}

void lb_bd_free(struct lb_buddy *b, uint32_t base, unsigned o)
{
	while (o < LB_ORDER_MAX) {
		uint32_t buddy = base ^ (1u << o);

		if (!bd_test(b, o, buddy))
			break;
		bd_unlink(b, buddy, o);
		base &= ~(1u << o);
		o++;
	}
	bd_push(b, base, o);
}

/* Take the given range out of the free blocks (adoption); -EEXIST if some of it is taken. */
int lb_bd_reserve(struct lb_buddy *b, uint32_t base, unsigned order)
{
	if (order > LB_ORDER_MAX || (base & ((1u << order) - 1)) ||
	    (uint64_t)base + (1u << order) > b->size)
		return -EINVAL;
	for (unsigned o = order; o <= LB_ORDER_MAX; o++) {
		uint32_t blk = base & ~((1u << o) - 1);

		if ((uint64_t)blk + (1u << o) > b->size)
			break;
		if (!bd_test(b, o, blk))
			continue;
		bd_unlink(b, blk, o);
		while (o > order) {
			o--;
			if (base >= blk + (1u << o)) {
				bd_push(b, blk, o);
				blk += 1u << o;
			} else {
				bd_push(b, blk + (1u << o), o);
			}
		}
		return 0;
	}
	return -EEXIST;
}

unsigned lb_order_for(uint32_t n)
{
	unsigned o = 0;

	if (n > 1u << LB_ORDER_MAX)
		return LB_ORDER_MAX + 1; /* more than any range: lb_bd_alloc says no */
	while ((1u << o) < n)
		o++;
	return o;
}

/* --- ids: backend ids (per family) and rev_nat_ids (one space) ----------------- */


uint32_t lb_ids_alloc(struct lb_ids *x)
{
	uint32_t id;

	if (x->n_free)
		id = x->free[--x->n_free];
	else if (x->fresh < x->max)
		id = x->fresh++;
	else
		return 0;
	x->n_used++;
	return id;
}

int lb_ids_free(struct lb_ids *x, uint32_t id)
{
	if (x->n_free == x->cap_free) {
		uint32_t cap = x->cap_free ? x->cap_free * 2 : 256, *v;

		v = realloc(x->free, cap * sizeof(*v));
		if (!v)
			return -ENOMEM; /* the id is lost until a restart: capacity, not state */
		x->free = v;
		x->cap_free = cap;
	}
	x->free[x->n_free++] = id;
	x->n_used--;
	return 0;
}

/* Adoption: id is in use. false if it was already (or is out of range). */
bool lb_ids_adopt(struct lb_ids *x, uint32_t id)
{
	if (!id || id >= x->max)
		return false;
	if (!x->adopted && !(x->adopted = calloc(x->max / 8 + 1, 1)))
		return false;
	if (x->adopted[id / 8] & (1u << (id % 8)))
		return false;
	x->adopted[id / 8] |= (uint8_t)(1u << (id % 8));
	x->n_used++;
	if (id >= x->fresh)
		x->fresh = id + 1;
	return true;
}

/* After adoption: every id below the highest adopted one that nobody uses is free. */
int lb_ids_adopted(struct lb_ids *x)
{
	int r = 0;

	if (!x->adopted)
		return 0;
	for (uint32_t id = x->fresh; id-- > 1;)
		if (!(x->adopted[id / 8] & (1u << (id % 8)))) {
			x->n_used++; /* lb_ids_free() counts it back */
			if ((r = lb_ids_free(x, id)) < 0)
				break;
		}
	free(x->adopted);
	x->adopted = NULL;
	return r;
}
