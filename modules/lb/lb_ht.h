/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lb_ht.h - a small chained hash table for the lb module: an entry embeds
 * struct lb_node first; the key is ksz bytes at koff, (ksz == 0) a
 * NUL-terminated string whose pointer is stored at koff, or (ksz ==
 * LB_HT_STR) a NUL-terminated string stored at koff itself (a flexible
 * array member: one allocation, one cache miss less per lookup). Also the
 * page helpers its buckets need (lb_populate*), which the map writer uses
 * for its own large tables.
 */
#ifndef LB_HT_H
#define LB_HT_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lb_thread.h"

#define LB_HT_STR ((size_t)-1)

struct lb_node {
	struct lb_node *next;
	uint32_t h;
};

struct lb_ht {
	struct lb_node **b;
	size_t nb, n, koff, ksz;
};

/*
 * Keys are hashed a word at a time: a sync hashes every backend address
 * (20 bytes) and two or three "ns/name" keys per service, and a byte loop
 * was a visible share of both.
 */
static inline uint32_t lb_hash_words(const void *p, size_t n)
{
	const uint8_t *s = p;
	uint64_t h = 0x9e3779b97f4a7c15ull ^ n, w;

	for (; n >= 8; s += 8, n -= 8) {
		memcpy(&w, s, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdull;
		h ^= h >> 32;
	}
	if (n >= 4) {
		/* The last word of an address key: one round, not four dependent byte rounds. */
		uint32_t w4;

		memcpy(&w4, s, 4);
		h = (h ^ w4) * 0xff51afd7ed558ccdull;
		h ^= h >> 32;
		s += 4;
		n -= 4;
	}
	for (; n; s++, n--)
		h = (h ^ *s) * 0x100000001b3ull;
	h *= 0xc4ceb9fe1a85ec53ull;
	return (uint32_t)(h ^ (h >> 29));
}

static inline uint32_t lb_ht_hash(const struct lb_ht *t, const void *key, size_t len)
{
	(void)t;
	return lb_hash_words(key, len);
}

static inline const void *lb_node_key(const struct lb_ht *t, const struct lb_node *n)
{
	const char *p = (const char *)n + t->koff;

	return t->ksz ? (const void *)p : *(const char *const *)p;
}

static inline size_t lb_key_len(const struct lb_ht *t, const void *key)
{
	return t->ksz && t->ksz != LB_HT_STR ? t->ksz : strlen(key) + 1;
}

/* The hash of a key, for lb_ht_find_h() (pure: another thread may compute it). */
static inline uint32_t lb_ht_key_hash(const struct lb_ht *t, const void *key)
{
	return lb_ht_hash(t, key, lb_key_len(t, key));
}

/* key, whose hash is h. */
static inline struct lb_node *lb_ht_find_h(const struct lb_ht *t, const void *key, uint32_t h)
{
	if (!t->nb)
		return NULL;
	for (struct lb_node *n = t->b[h & (t->nb - 1)]; n; n = n->next)
		if (n->h == h && (t->ksz && t->ksz != LB_HT_STR
					  ? !memcmp(lb_node_key(t, n), key, t->ksz)
					  : !strcmp(lb_node_key(t, n), key)))
			return n;
	return NULL;
}

static inline struct lb_node *lb_ht_find(const struct lb_ht *t, const void *key)
{
	return lb_ht_find_h(t, key, lb_ht_key_hash(t, key));
}

/*
 * A lookup of hash h is coming: its bucket on the way (lb_ht_prefetch), and
 * later, once the bucket is in, the first entry there (lb_ht_prefetch_entry).
 */
static inline void lb_ht_prefetch(const struct lb_ht *t, uint32_t h)
{
	if (t->nb)
		__builtin_prefetch(&t->b[h & (t->nb - 1)]);
}

static inline void lb_ht_prefetch_entry(const struct lb_ht *t, uint32_t h)
{
	const struct lb_node *n = t->nb ? t->b[h & (t->nb - 1)] : NULL;

	if (n)
		__builtin_prefetch(n);
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/*
 * Bring in every page [p, p + len) touches, for writing, without changing
 * what they hold: one call instead of a fault per page, and safe while
 * another thread writes there. The pages at either end count too: a range
 * brought in part by part (lb_maps_prefault) shares a page with the next
 * part at each boundary, and leaving it out left one page in four or five
 * to fault on the claiming thread. -errno if the kernel cannot.
 */
static inline uintptr_t lb_page_size(void)
{
	return (uintptr_t)sysconf(_SC_PAGESIZE); /* 16K and 64K pages exist (arm64) */
}

static inline int lb_populate(void *p, size_t len)
{
	uintptr_t pg = lb_page_size();
	uintptr_t a = (uintptr_t)p & ~(pg - 1);
	uintptr_t e = ((uintptr_t)p + len + pg - 1) & ~(pg - 1);

	if (e <= a)
		return 0;
	return madvise((void *)a, e - a, MADV_POPULATE_WRITE) < 0 ? -errno : 0;
}

/*
 * calloc'd memory that is read before it is written (a hash table's
 * buckets): its pages brought in now. Otherwise a lookup maps the zero
 * page that the first insert replaces -- a second fault per page, and a
 * TLB flush on every CPU the agent's other thread runs on.
 */
static inline void lb_populate_zeroed_1(void *p, size_t len)
{
	if (lb_populate(p, len) < 0)
		for (size_t i = 0, pg = lb_page_size(); i < len; i += pg)
			((volatile char *)p)[i] = 0; /* a plain memset after calloc is optimised away */
}

struct lb_range {
	void *p;
	size_t len;
};

static inline void *lb_populate_worker(void *arg)
{
	struct lb_range *r = arg;

	lb_populate_zeroed_1(r->p, r->len);
	return NULL;
}

/*
 * From this size on, two threads bring a table in: a sync sizes the
 * backend index for all its backends at once (5.3 MB at a million), and a
 * fresh page costs this VM's host a fault too -- tens of milliseconds
 * that the claims would otherwise wait for with the other CPU idle.
 */
#define LB_POPULATE_SPLIT (4u << 20)

static inline void lb_populate_zeroed(void *p, size_t len)
{
	struct lb_range hi = {(char *)p + len / 2, len - len / 2};
	pthread_t t;

	if (len >= LB_POPULATE_SPLIT && lb_thread_spawn(&t, lb_populate_worker, &hi)) {
		lb_populate_zeroed_1(p, len / 2);
		pthread_join(t, NULL);
		return;
	}
	lb_populate_zeroed_1(p, len);
}

/* Rehash into nb buckets (a power of two). */
static inline int lb_ht_resize(struct lb_ht *t, size_t nb)
{
	struct lb_node **b = calloc(nb, sizeof(*b));

	if (!b)
		return -ENOMEM;
	lb_populate_zeroed(b, nb * sizeof(*b));
	for (size_t i = 0; i < t->nb; i++)
		for (struct lb_node *x = t->b[i], *next; x; x = next) {
			next = x->next;
			x->next = b[x->h & (nb - 1)];
			b[x->h & (nb - 1)] = x;
		}
	free(t->b);
	t->b = b;
	t->nb = nb;
	return 0;
}

/*
 * Room for n entries without a rehash on the way: a rehash touches every
 * entry, so a table that grows by many at once (a sync) is sized first.
 */
static inline int lb_ht_reserve(struct lb_ht *t, size_t n)
{
	size_t nb = t->nb ? t->nb : 64;

	while (nb < n)
		nb *= 2;
	return nb > t->nb ? lb_ht_resize(t, nb) : 0;
}

/* n->h already holds its key's hash. */
static inline int lb_ht_insert_h(struct lb_ht *t, struct lb_node *n)
{
	if (t->n + 1 > t->nb && lb_ht_resize(t, t->nb ? t->nb * 2 : 64) < 0)
		return -ENOMEM;
	n->next = t->b[n->h & (t->nb - 1)];
	t->b[n->h & (t->nb - 1)] = n;
	t->n++;
	return 0;
}

static inline int lb_ht_insert(struct lb_ht *t, struct lb_node *n)
{
	if (t->n + 1 > t->nb && lb_ht_resize(t, t->nb ? t->nb * 2 : 64) < 0)
		return -ENOMEM;
	n->h = lb_ht_hash(t, lb_node_key(t, n), lb_key_len(t, lb_node_key(t, n)));
	n->next = t->b[n->h & (t->nb - 1)];
	t->b[n->h & (t->nb - 1)] = n;
	t->n++;
	return 0;
}

static inline void lb_ht_remove(struct lb_ht *t, struct lb_node *n)
{
	struct lb_node **pp;

	if (!t->nb)
		return;
	pp = &t->b[n->h & (t->nb - 1)];
	while (*pp && *pp != n)
		pp = &(*pp)->next;
	if (*pp) {
		*pp = n->next;
		t->n--;
	}
}

#define lb_ht_foreach(t, n, nx)                                                                       \
	for (size_t _i = 0; _i < (t)->nb; _i++)                                                    \
		for (struct lb_node *n = (t)->b[_i], *nx = n ? n->next : NULL; n;                     \
		     n = nx, nx = n ? n->next : NULL)

#endif /* LB_HT_H */
