/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lb_alloc.h - slot ranges and ids for the lb map writer (lb_maps.c).
 *
 * Slot ranges: 1 << order slots of lb_slots at a multiple of their size (a
 * buddy allocator), so that freed neighbours merge again. Ids: backend ids
 * (one space per family) and rev_nat_ids (one space), 1 .. max - 1, lowest
 * free first -- an id indexes its array, and a compact prefix is all the
 * writer maps. Neither knows about the grace period: lb_maps.c frees only
 * what has waited it out.
 */
#ifndef LB_ALLOC_H
#define LB_ALLOC_H

#include <stdbool.h>
#include <stdint.h>

#define LB_NIL UINT32_MAX
#define LB_ORDER_MAX 31

/*
 * Ranges are 1 << order slots at a multiple of their size, so that freed
 * neighbours merge again and churn never leaves the array in pieces too
 * small for a large service. The lowest free block of an order is handed
 * out first (the writer maps only the part of lb_slots in use). Free blocks
 * are bits: bits[o] has one per block of order o, sum[o] one per word of
 * bits[o] that is not zero; lo[o] is the lowest summary word that may be.
 */
struct lb_buddy {
	uint32_t size, n_free;
	uint64_t *bits[LB_ORDER_MAX + 1], *sum[LB_ORDER_MAX + 1];
	uint32_t nblk[LB_ORDER_MAX + 1], cnt[LB_ORDER_MAX + 1], lo[LB_ORDER_MAX + 1];
};

struct lb_ids {
	uint32_t max;	 /* ids 1 .. max - 1 */
	uint32_t fresh;	 /* the lowest id never handed out */
	uint32_t *free;	 /* handed back */
	uint32_t n_free, cap_free, n_used;
	uint8_t *adopted; /* bitmap while adopting, then NULL */
};

int lb_bd_init(struct lb_buddy *b, uint32_t size);
void lb_bd_free_all(struct lb_buddy *b);
/* The base of a free range of 1 << order slots, or LB_NIL. */
uint32_t lb_bd_alloc(struct lb_buddy *b, unsigned order);
void lb_bd_free(struct lb_buddy *b, uint32_t base, unsigned order);
/* Take the given range out of the free blocks (adoption); -EEXIST if some of it is taken. */
int lb_bd_reserve(struct lb_buddy *b, uint32_t base, unsigned order);
/* The smallest order whose range holds n slots. */
unsigned lb_order_for(uint32_t n);

/* A free id, or 0 when all are taken. */
uint32_t lb_ids_alloc(struct lb_ids *x);
int lb_ids_free(struct lb_ids *x, uint32_t id);
/* Adoption: id is in use. false if it was already (or is out of range, or no memory). */
bool lb_ids_adopt(struct lb_ids *x, uint32_t id);
/* After adoption: every id below the highest adopted one that nobody uses is free. */
int lb_ids_adopted(struct lb_ids *x);

#endif /* LB_ALLOC_H */
