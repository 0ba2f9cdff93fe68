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


static void bd_push(struct lb_buddy *b, uint32_t base, unsigned o)
{
	b->ord[base] = (uint8_t)(o + 1);
	b->prev[base] = LB_NIL;
	b->next[base] = b->head[o];
	if (b->head[o] != LB_NIL)
		b->prev[b->head[o]] = base;
	b->head[o] = base;
	b->n_free += 1u << o;
}

static void bd_unlink(struct lb_buddy *b, uint32_t base, unsigned o)
{
	if (b->prev[base] != LB_NIL)
		b->next[b->prev[base]] = b->next[base];
	else
		b->head[o] = b->next[base];
	if (b->next[base] != LB_NIL)
		b->prev[b->next[base]] = b->prev[base];
	b->ord[base] = 0;
	b->n_free -= 1u << o;
}

int lb_bd_init(struct lb_buddy *b, uint32_t size)
{
	memset(b, 0, sizeof(*b));
	b->size = size;
	for (unsigned o = 0; o <= LB_ORDER_MAX; o++)
		b->head[o] = LB_NIL;
	/* calloc: untouched parts of a large array cost no memory. */
	b->ord = calloc(size ? size : 1, 1);
	b->next = calloc(size ? size : 1, sizeof(*b->next));
	b->prev = calloc(size ? size : 1, sizeof(*b->prev));
	if (!b->ord || !b->next || !b->prev)
		return -ENOMEM;
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
	free(b->ord);
	free(b->next);
	free(b->prev);
}

/* The base of a free range of 1 << order slots, or LB_NIL. */
uint32_t lb_bd_alloc(struct lb_buddy *b, unsigned order)
{
	unsigned o = order;
	uint32_t base;

	while (o <= LB_ORDER_MAX && b->head[o] == LB_NIL)
		o++;
	if (o > LB_ORDER_MAX)
		return LB_NIL;
	base = b->head[o];
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

		if ((uint64_t)buddy + (1u << o) > b->size || b->ord[buddy] != o + 1)
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
		if (b->ord[blk] != o + 1)
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
