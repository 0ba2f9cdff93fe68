/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lbipam_alloc.h - the pure part of LB IPAM: addresses, pool specs, ranges,
 * the sets of addresses in use, lowest-free search, counts and pool
 * conflicts. No host calls (only jansson), so it is tested directly.
 *
 * Addresses of both families live in one 128-bit space (struct lb_addr:
 * hi, lo); an IPv4 address is hi = 0, lo = the 32-bit value, and a family
 * tag travels with it (struct lb_ip). Ranges never mix families.
 *
 * Which addresses are taken is kept per range, as a sorted array of the
 * addresses inside the range that are held (struct lb_set). Finding the
 * lowest free address is a binary search for the first gap, O(log n), for
 * a /30 as for a /64. An address inside two ranges (overlapping pools, of
 * which one is then conflicting) is recorded in both.
 */
#ifndef LBIPAM_ALLOC_H
#define LBIPAM_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <jansson.h>

#define LB_V4 4
#define LB_V6 6

/* Big enough for an address, a CIDR or "start-stop" of two IPv6 addresses. */
#define LB_IPSTR INET6_ADDRSTRLEN
#define LB_BLOCKSTR (2 * INET6_ADDRSTRLEN + 8)
#define LB_U128STR 40 /* 2^128 has 39 digits */

struct lb_addr {
	uint64_t hi, lo;
};

struct lb_ip {
	uint8_t fam; /* LB_V4 or LB_V6 */
	struct lb_addr a;
};

/* Address arithmetic and text. */
int lb_addr_cmp(struct lb_addr x, struct lb_addr y);
struct lb_addr lb_addr_add(struct lb_addr x, uint64_t n);
struct lb_addr lb_addr_sub(struct lb_addr x, struct lb_addr y); /* x - y, x >= y */
int lb_ip_cmp(const struct lb_ip *x, const struct lb_ip *y);     /* family, then address */
uint64_t lb_ip_hash(const struct lb_ip *ip);
/* inet_pton for both families; -EINVAL if `s` is neither. */
int lb_ip_parse(const char *s, struct lb_ip *ret_ip);
/* Canonical text (inet_ntop); returns buf. */
const char *lb_ip_str(const struct lb_ip *ip, char buf[LB_IPSTR]);
/* Decimal text of a 128-bit count; returns buf. */
const char *lb_u128_str(struct lb_addr v, char buf[LB_U128STR]);

/* --- sets of addresses in use ------------------------------------------- */

struct lb_set {
	struct lb_addr *v;
	uint32_t n, cap;
	bool bulk;     /* adding many in any order: append now, sort once later */
	bool unsorted; /* appended out of order while bulk */
};

void lb_set_clear(struct lb_set *s);
/* -ENOMEM; adding an address already there is a no-op. */
int lb_set_add(struct lb_set *s, struct lb_addr a);
void lb_set_del(struct lb_set *s, struct lb_addr a);
bool lb_set_has(struct lb_set *s, struct lb_addr a);
/* Start or end a bulk load (end sorts and removes duplicates). */
void lb_set_bulk(struct lb_set *s, bool on);
/* Lowest address in [from, to] not in the set: 0, or -ENOSPC. */
int lb_set_next_free(struct lb_set *s, struct lb_addr from, struct lb_addr to,
		     struct lb_addr *ret_a);
/* How many members lie in [from, to]. */
size_t lb_set_count_in(struct lb_set *s, struct lb_addr from, struct lb_addr to);

/* --- pools ---------------------------------------------------------------- */

/* One block of a pool: a CIDR, or start..stop. */
struct lb_range {
	uint8_t fam;
	bool cidr;                     /* first/last reservation applies */
	struct lb_addr first, last;    /* the whole block */
	struct lb_addr afirst, alast;  /* what may be handed out */
	char *text;                    /* as the user wrote it, for messages */
	struct lb_set used;            /* held addresses inside [first, last] */
};

/* A pool's parsed spec. */
struct lb_spec {
	struct lb_range *ranges; /* sorted by family, then first address */
	size_t n_ranges;
	bool disabled;
	bool allow_first_last;
	json_t *selector;        /* spec.serviceSelector (a reference), or NULL */
	bool selector_meta;      /* uses io.kubernetes.service.{namespace,name} */
	char *error;             /* first problem ("block 2: bad CIDR '...'"), or NULL */
	bool selector_bad;       /* the problem is the selector */
};

/*
 * Parse spec (a CiliumLoadBalancerIPPool spec). Always fills *ret_spec
 * with what could be used; spec->error says what could not (the bad
 * blocks are left out). -ENOMEM only.
 */
int lb_spec_parse(const json_t *spec, struct lb_spec *ret_spec);
void lb_spec_free(struct lb_spec *spec);
/* Forget every held address (before re-adopting everything). */
void lb_spec_clear_used(struct lb_spec *spec);

/* Checks a label selector's shape as the API server would; NULL if fine, else a static message. */
const char *lb_selector_problem(const json_t *sel);

struct lb_pool {
	char *name;          /* "blue", or "ns/blue" for a namespaced manifest */
	struct lb_spec spec; /* in effect */
	uint64_t seq;        /* age: lower was there first (conflicts go to the younger) */
	bool was_conflicting;/* conflicting at the last settlement (sticky, as upstream) */
	bool conflicting;
	char *conflict_msg;
};

/* The range of the pool whose whole block contains ip, or NULL. */
struct lb_range *lb_pool_range_of(struct lb_pool *p, const struct lb_ip *ip);
/* Lowest free address of family fam: 0, -ENOSPC (full) or -ENOENT (no block of fam). */
int lb_pool_next_free(struct lb_pool *p, uint8_t fam, struct lb_ip *ret_ip);
/* Record (held = true) or forget an address in every range of p that contains it. */
int lb_pool_mark(struct lb_pool *p, const struct lb_ip *ip, bool held);
void lb_pool_bulk(struct lb_pool *p, bool on);
/* Allocatable total, held, and still available addresses (128-bit counts). */
void lb_pool_counts(struct lb_pool *p, struct lb_addr *ret_total, struct lb_addr *ret_used,
		    struct lb_addr *ret_avail);

/*
 * Decide which pools conflict. pools[] in order of precedence (the
 * caller sorts: previously conflicting last, then by age): a pool whose
 * blocks overlap each other, or overlap a pool before it that does not
 * conflict, conflicts. Sets conflicting and conflict_msg. -ENOMEM only.
 */
int lb_pools_settle(struct lb_pool **pools, size_t n);

#endif /* LBIPAM_ALLOC_H */
