// SPDX-License-Identifier: Apache-2.0
/*
 * jalloc: a size-class slab allocator for jansson, installed process-wide
 * (json_set_alloc_funcs() sets a global in the one shared libjansson, so the
 * modules' trees come here too).
 *
 * Why: the store's documents are parsed into thousands of small jansson
 * blocks that live only for a sync, while modules make long-lived small
 * allocations at the same time. In the glibc heap the two interleave, and a
 * single live module block keeps a page of freed tree memory resident. Here
 * trees get chunks of their own: a chunk serves one size class, and when the
 * last block in it is freed the chunk goes back to the kernel.
 *
 * Chunks are JALLOC_CHUNK bytes, aligned to their size, so free() finds the
 * header by masking. Blocks over JALLOC_MAX_SMALL go to malloc(); free() tells
 * them apart by a bitmap of chunk addresses (a malloc'd block's masked address
 * may not be mapped, so nothing may be read there first).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <jansson.h>

#include "jalloc.h"

#if defined(__SANITIZE_ADDRESS__)
#define JALLOC_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JALLOC_ASAN 1
#endif
#endif
#ifdef JALLOC_ASAN
/*
 * LSan does not scan our mappings; without this, every malloc'd block that
 * only a tree references (long strings, large hashtables) would be a "leak".
 */
#include <sanitizer/lsan_interface.h>
#define chunk_mapped(c) __lsan_register_root_region((c), JALLOC_CHUNK)
#define chunk_unmapped(c) __lsan_unregister_root_region((c), JALLOC_CHUNK)
#else
#define chunk_mapped(c) ((void)(c))
#define chunk_unmapped(c) ((void)(c))
#endif

#define CHUNK_SHIFT 18
_Static_assert(JALLOC_CHUNK == 1u << CHUNK_SHIFT, "JALLOC_CHUNK is 1 << CHUNK_SHIFT");

static const unsigned short class_size[] = {16, 32, 48, 64, 96, 128, 192, 256, 384, 512};
#define NCLASS (sizeof(class_size) / sizeof(class_size[0]))

struct chunk {
	struct chunk *next, *prev; /* in cls->avail while it has room */
	void *free;                /* freed slots, linked through their first word */
	char *bump;                /* never-used slots start here */
	char *end;
	unsigned live;
	unsigned cls;
	int on_avail;
};

#define SLOTS_START(c) ((char *)(c) + ((sizeof(struct chunk) + 15) & ~(size_t)15))

struct size_class {
	struct chunk *avail; /* chunks with a free slot */
	struct chunk *spare; /* one empty chunk, so a class at 0/1 does not map/unmap in a loop */
};

static struct size_class classes[NCLASS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static size_t n_chunks, n_spares, n_small, n_large;

/*
 * Which JALLOC_CHUNK-aligned addresses are our chunks: two levels over the
 * 47-bit user address space (2^29 chunk numbers: 2^15 leaves of 2^14 bits).
 * Leaves are never freed; one covers 4 GiB of address space.
 */
#define CN_BITS 29
#define LEAF_BITS 14
static uint64_t *chunk_map[1u << (CN_BITS - LEAF_BITS)];

static int map_set(uintptr_t addr, int on)
{
	uintptr_t cn = addr >> CHUNK_SHIFT;
	uint64_t **leaf;

	if (cn >> CN_BITS)
		return -ERANGE;
	leaf = &chunk_map[cn >> LEAF_BITS];
	if (!*leaf && !(*leaf = calloc((1u << LEAF_BITS) / 64, sizeof(uint64_t))))
		return -ENOMEM;
	cn &= (1u << LEAF_BITS) - 1;
	if (on)
		(*leaf)[cn / 64] |= 1ull << (cn % 64);
	else
		(*leaf)[cn / 64] &= ~(1ull << (cn % 64));
	return 0;
}

static int map_test(uintptr_t addr)
{
	uintptr_t cn = addr >> CHUNK_SHIFT;
	const uint64_t *leaf;

	if (cn >> CN_BITS)
		return 0;
	leaf = chunk_map[cn >> LEAF_BITS];
	if (!leaf)
		return 0;
	cn &= (1u << LEAF_BITS) - 1;
	return !!(leaf[cn / 64] & (1ull << (cn % 64)));
}

static void avail_add(struct size_class *sc, struct chunk *c)
{
	c->prev = NULL;
	c->next = sc->avail;
	if (sc->avail)
		sc->avail->prev = c;
	sc->avail = c;
	c->on_avail = 1;
}

static void avail_del(struct size_class *sc, struct chunk *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		sc->avail = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = c->prev = NULL;
	c->on_avail = 0;
}

static void chunk_reset(struct chunk *c, unsigned cls)
{
	c->free = NULL;
	c->bump = SLOTS_START(c);
	c->end = (char *)c + JALLOC_CHUNK;
	c->live = 0;
	c->cls = cls;
	c->on_avail = 0;
}

/* mmap twice the size and trim, the only portable way to get the alignment. */
static struct chunk *chunk_map_new(void)
{
	char *p, *a;

	p = mmap(NULL, 2 * (size_t)JALLOC_CHUNK, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	a = (char *)(((uintptr_t)p + JALLOC_CHUNK - 1) & ~(uintptr_t)(JALLOC_CHUNK - 1));
	if (a > p)
		munmap(p, a - p);
	if (p + 2 * (size_t)JALLOC_CHUNK > a + JALLOC_CHUNK)
		munmap(a + JALLOC_CHUNK, p + 2 * (size_t)JALLOC_CHUNK - (a + JALLOC_CHUNK));
	if (map_set((uintptr_t)a, 1) < 0) {
		munmap(a, JALLOC_CHUNK);
		return NULL;
	}
	chunk_mapped(a);
	n_chunks++;
	return (struct chunk *)a;
}

static void chunk_unmap(struct chunk *c)
{
	map_set((uintptr_t)c, 0); /* cannot fail: the leaf exists */
	chunk_unmapped(c);
	munmap(c, JALLOC_CHUNK);
	n_chunks--;
}

static unsigned size_to_class(size_t size)
{
	unsigned i;

	for (i = 0; i < NCLASS; i++)
		if (size <= class_size[i])
			return i;
	return NCLASS;
}

void *jalloc_malloc(size_t size)
{
	struct size_class *sc;
	unsigned cls = size_to_class(size ? size : 1);
	struct chunk *c;
	void *p;

	if (cls == NCLASS) {
		p = malloc(size);
		if (p) {
			pthread_mutex_lock(&lock);
			n_large++;
			pthread_mutex_unlock(&lock);
		}
		return p;
	}
	sc = &classes[cls];
	pthread_mutex_lock(&lock);
	c = sc->avail;
	if (!c) {
		if (sc->spare) {
			c = sc->spare;
			sc->spare = NULL;
			n_spares--;
		} else if (!(c = chunk_map_new())) {
			pthread_mutex_unlock(&lock);
			/* Out of address space: malloc; free() sees it is no chunk. */
			p = malloc(size);
			if (p) {
				pthread_mutex_lock(&lock);
				n_large++;
				pthread_mutex_unlock(&lock);
			}
			return p;
		}
		chunk_reset(c, cls);
		avail_add(sc, c);
	}
	if (c->free) {
		p = c->free;
		c->free = *(void **)p;
	} else {
		p = c->bump;
		c->bump += class_size[cls];
	}
	c->live++;
	n_small++;
	if (!c->free && c->bump + class_size[cls] > c->end)
		avail_del(sc, c);
	pthread_mutex_unlock(&lock);
	return p;
}

void jalloc_free(void *p)
{
	struct chunk *c = (struct chunk *)((uintptr_t)p & ~(uintptr_t)(JALLOC_CHUNK - 1));
	struct size_class *sc;

	if (!p)
		return;
	pthread_mutex_lock(&lock);
	if (!map_test((uintptr_t)c)) {
		n_large--;
		pthread_mutex_unlock(&lock);
		free(p);
		return;
	}
	sc = &classes[c->cls];
	*(void **)p = c->free;
	c->free = p;
	n_small--;
	if (--c->live) {
		if (!c->on_avail)
			avail_add(sc, c);
	} else {
		if (c->on_avail)
			avail_del(sc, c);
		if (!sc->spare) {
			sc->spare = c;
			n_spares++;
			/* Keep the address range, give back the pages. */
			madvise(c, JALLOC_CHUNK, MADV_DONTNEED);
		} else {
			chunk_unmap(c);
		}
	}
	pthread_mutex_unlock(&lock);
}

void jalloc_get_stats(struct jalloc_stats *st)
{
	pthread_mutex_lock(&lock);
	st->chunks = n_chunks;
	st->spares = n_spares;
	st->small_live = n_small;
	st->large_live = n_large;
	st->mapped_bytes = n_chunks * (size_t)JALLOC_CHUNK;
	pthread_mutex_unlock(&lock);
}

void jalloc_install(void)
{
	json_set_alloc_funcs(jalloc_malloc, jalloc_free);
}

struct dumpbuf {
	char *s;
	size_t len, cap;
};

static int dump_append(const char *buf, size_t size, void *data)
{
	struct dumpbuf *d = data;
	size_t cap;
	char *s;

	if (d->len + size + 1 > d->cap) {
		cap = d->cap ? d->cap : 256;
		while (d->len + size + 1 > cap)
			cap *= 2;
		if (!(s = realloc(d->s, cap)))
			return -1;
		d->s = s;
		d->cap = cap;
	}
	memcpy(d->s + d->len, buf, size);
	d->len += size;
	return 0;
}

/*
 * json_dumps(), but the text is malloc'd: jansson's comes from the alloc
 * funcs, and callers here and in modules release it with free(), as
 * jansson's documentation says. Defined in the executable and exported
 * (see core/Makefile.am), it takes the place of libjansson's for the
 * modules too.
 */
__attribute__((visibility("default"))) char *json_dumps(const json_t *json, size_t flags)
{
	struct dumpbuf d = {0};
	char *s;

	if (json_dump_callback(json, dump_append, &d, flags) || !d.s) {
		free(d.s);
		return NULL;
	}
	d.s[d.len] = '\0';
	/* The store keeps its text for the object's life: no doubling slack. */
	s = realloc(d.s, d.len + 1);
	return s ? s : d.s;
}
