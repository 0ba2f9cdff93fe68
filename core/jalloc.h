/* SPDX-License-Identifier: Apache-2.0 */
/*
 * jalloc: the size-class slab allocator behind jansson (see jalloc.c).
 */
#ifndef AXN_JALLOC_H
#define AXN_JALLOC_H

#include <stddef.h>

struct jalloc_stats {
	size_t chunks;       /* slab chunks mapped, spares included */
	size_t spares;       /* empty chunks kept for reuse */
	size_t small_live;   /* blocks handed out from chunks */
	size_t large_live;   /* blocks handed to malloc (over the largest class) */
	size_t mapped_bytes; /* chunks * JALLOC_CHUNK */
};

#define JALLOC_CHUNK (256u * 1024)
#define JALLOC_MAX_SMALL 512u

void *jalloc_malloc(size_t size);
void jalloc_free(void *p);
void jalloc_get_stats(struct jalloc_stats *st);
/* Make jansson allocate through jalloc; before anything uses jansson. */
void jalloc_install(void);

#endif
