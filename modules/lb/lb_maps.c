// SPDX-License-Identifier: Apache-2.0
/*
 * lb_maps.c - desired state of the lb maps and the writer (see lb_maps.h for
 * the write order and the restart story).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>

#include "lb_ht.h"
#include "lb_maps.h"
#include "lb_shared.h"

const struct lb_map_def lb_map_defs[LBM_N] = {
	[LBM_SVC4] = {"lb4_services", BPF_MAP_TYPE_HASH, sizeof(struct lb4_key),
		      sizeof(struct lb_svc_val)},
	[LBM_SVC6] = {"lb6_services", BPF_MAP_TYPE_HASH, sizeof(struct lb6_key),
		      sizeof(struct lb_svc_val)},
	[LBM_BE4] = {"lb4_backends", BPF_MAP_TYPE_HASH, sizeof(__u32), sizeof(struct lb4_backend)},
	[LBM_BE6] = {"lb6_backends", BPF_MAP_TYPE_HASH, sizeof(__u32), sizeof(struct lb6_backend)},
	[LBM_RN4] = {"lb4_revnat", BPF_MAP_TYPE_HASH, sizeof(__u32), sizeof(struct lb4_revnat)},
	[LBM_RN6] = {"lb6_revnat", BPF_MAP_TYPE_HASH, sizeof(__u32), sizeof(struct lb6_revnat)},
	[LBM_SK4] = {"lb4_sk_revnat", BPF_MAP_TYPE_LRU_HASH, sizeof(struct lb4_sk_key),
		     sizeof(struct lb4_sk_val)},
	[LBM_SK6] = {"lb6_sk_revnat", BPF_MAP_TYPE_LRU_HASH, sizeof(struct lb6_sk_key),
		     sizeof(struct lb6_sk_val)},
	[LBM_AFF] = {"lb_affinity", BPF_MAP_TYPE_LRU_HASH, sizeof(struct lb_aff_key),
		     sizeof(struct lb_aff_val)},
};

/* --- entries ---------------------------------------------------------------- */

/* A frontend or backend address: family, proto, port (host order), addr. */
struct l4key {
	uint8_t family;
	uint8_t proto;
	uint16_t port;
	uint8_t addr[16];
};

struct be_ent {
	struct lb_node n;
	struct l4key k;
	uint32_t id;
	uint32_t refs;	   /* slots and kept references from claimed frontends */
	uint8_t state;	   /* wanted LB_BS_* */
	uint8_t wstate;	   /* in the map, when in_map */
	bool in_map, dirty;
	struct be_ent *dnext;
};

struct fe_ent {
	struct lb_node n;
	struct l4key k;
	uint32_t rev_nat_id;
	const char *owner; /* NULL: adopted and not claimed (yet), or released */
	/* wanted */
	uint8_t flags, alg;
	uint32_t timeout;
	uint32_t n_sel, n_all; /* bes[0..n_sel) in slots; the rest only referenced */
	struct be_ent **bes;   /* each holds a reference (be_ent.refs) */
	/* in the map */
	bool in_map, rn_in_map, dirty;
	bool unsure; /* a write failed: rewrite the master and reverse NAT, slots are unknown */
	struct lb_svc_val wmaster;
	uint32_t n_written; /* slots 1..n_written exist */
	uint32_t *written;  /* their backend ids (0: unknown, adopted) */
	struct fe_ent *dnext;
};

struct lb_maps {
	int fd[LBM_N];
	uint32_t max[LBM_N];
	struct lb_ht fes, bes;
	struct fe_ent *fdirty;
	struct be_ent *bdirty;
	uint32_t next_be_id, next_rn_id;
	uint64_t svc_peak[2]; /* services-map entries after the next flush, per family */
	uint32_t n_fe[2], n_be[2];
	int released;
	/* Reverse NAT entries found at adoption that no frontend owned: removed by the prune. */
	uint32_t *rn_orphans[2];
	size_t n_rn_orphans[2];
};

static int fam_idx(uint8_t family)
{
	return family == 6;
}

static void l4key_make(struct l4key *k, const struct lb_ip *ip, uint16_t port, uint8_t proto)
{
	memset(k, 0, sizeof(*k));
	k->family = ip->family;
	k->proto = proto;
	k->port = port;
	memcpy(k->addr, ip->a, sizeof(k->addr));
}

static const char *l4key_str(const struct l4key *k, char *buf, size_t len)
{
	struct lb_ip ip = {.family = k->family};
	char a[LB_ADDR_STRLEN];

	memcpy(ip.a, k->addr, sizeof(ip.a));
	snprintf(buf, len, "%s/%s", lb_addr_format(&ip, k->port, a, sizeof(a)),
		 lb_proto_name(k->proto));
	return buf;
}

/* Services-map entries a frontend occupies at its peak before the next flush. */
static uint64_t fe_peak(const struct fe_ent *e)
{
	uint32_t slots = e->n_written > e->n_sel ? e->n_written : e->n_sel;

	return 1 + slots;
}

static void fe_dirty(struct lb_maps *m, struct fe_ent *e)
{
	if (e->dirty)
		return;
	e->dirty = true;
	e->dnext = m->fdirty;
	m->fdirty = e;
}

static void be_dirty(struct lb_maps *m, struct be_ent *e)
{
	if (e->dirty)
		return;
	e->dirty = true;
	e->dnext = m->bdirty;
	m->bdirty = e;
}

static struct fe_ent *fe_get(struct lb_maps *m, const struct l4key *k, bool create)
{
	struct fe_ent *e = (struct fe_ent *)lb_ht_find(&m->fes, k);

	if (e || !create)
		return e;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->k = *k;
	e->rev_nat_id = m->next_rn_id++;
	if (lb_ht_insert(&m->fes, &e->n) < 0) {
		free(e);
		return NULL;
	}
	m->n_fe[fam_idx(k->family)]++;
	m->svc_peak[fam_idx(k->family)] += fe_peak(e);
	return e;
}

static struct be_ent *be_get(struct lb_maps *m, const struct l4key *k, bool create)
{
	struct be_ent *e = (struct be_ent *)lb_ht_find(&m->bes, k);

	if (e || !create)
		return e;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->k = *k;
	e->id = m->next_be_id++;
	if (lb_ht_insert(&m->bes, &e->n) < 0) {
		free(e);
		return NULL;
	}
	m->n_be[fam_idx(k->family)]++;
	return e;
}

int lb_maps_new(const int fd[LBM_N], const uint32_t max[LBM_N], struct lb_maps **ret_m)
{
	struct lb_maps *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	memcpy(m->fd, fd, sizeof(m->fd));
	memcpy(m->max, max, sizeof(m->max));
	m->fes.koff = m->bes.koff = sizeof(struct lb_node);
	m->fes.ksz = m->bes.ksz = sizeof(struct l4key);
	m->next_be_id = m->next_rn_id = 1;
	*ret_m = m;
	return 0;
}

static void fe_free(struct fe_ent *e)
{
	free(e->bes);
	free(e->written);
	free(e);
}

void lb_maps_free(struct lb_maps *m)
{
	if (!m)
		return;
	lb_ht_foreach(&m->fes, n, nx) fe_free((struct fe_ent *)n);
	lb_ht_foreach(&m->bes, n, nx) free(n);
	free(m->fes.b);
	free(m->bes.b);
	free(m->rn_orphans[0]);
	free(m->rn_orphans[1]);
	free(m);
}

/* --- adoption ---------------------------------------------------------------- */

static int written_grow(struct fe_ent *e, uint32_t n)
{
	uint32_t *w;

	if (n <= e->n_written)
		return 0;
	w = realloc(e->written, n * sizeof(*w));
	if (!w)
		return -ENOMEM;
	memset(w + e->n_written, 0, (n - e->n_written) * sizeof(*w));
	e->written = w;
	e->n_written = n;
	return 0;
}

/* One services-map entry found at start: a master or a slot. */
static int adopt_svc(struct lb_maps *m, const struct l4key *k, uint16_t slot,
		     const struct lb_svc_val *v)
{
	struct fe_ent *e = fe_get(m, k, false);
	int fi = fam_idx(k->family), r;

	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e)
			return -ENOMEM;
		e->k = *k;
		e->rev_nat_id = v->rev_nat_id;
		if ((r = lb_ht_insert(&m->fes, &e->n)) < 0) {
			free(e);
			return r;
		}
		m->n_fe[fi]++;
		/* An adopted frontend keeps its reverse NAT entry until pruned. */
		e->rn_in_map = true;
		m->svc_peak[fi] += fe_peak(e);
	}
	if (v->rev_nat_id >= m->next_rn_id)
		m->next_rn_id = v->rev_nat_id + 1;
	m->svc_peak[fi] -= fe_peak(e);
	if (slot == 0) {
		e->in_map = true;
		e->wmaster = *v;
		e->rev_nat_id = v->rev_nat_id;
		r = written_grow(e, v->count);
	} else {
		/* Slots past the master's count (a crash mid-update) are removed by the next write. */
		r = written_grow(e, slot);
		if (!r)
			e->written[slot - 1] = v->backend_id;
	}
	m->svc_peak[fi] += fe_peak(e);
	return r;
}

/*
 * Every entry of a map, in batches (BPF_MAP_LOOKUP_BATCH: a handful of
 * syscalls for a full map), or one by one where the kernel has no batch
 * lookup. cb gets `n` keys and values laid out back to back.
 */
typedef int (*walk_cb)(struct lb_maps *m, int fam, const void *keys, const void *vals, uint32_t n);

#define WALK_BATCH 4096

static int walk_one_by_one(struct lb_maps *m, int fd, int fam, uint32_t ksz, uint32_t vsz,
			   void *key, void *val, walk_cb cb)
{
	char *next = malloc(ksz);
	void *prev = NULL;
	int r = 0;

	if (!next)
		return -ENOMEM;
	while (bpf_map_get_next_key(fd, prev, next) == 0) {
		memcpy(key, next, ksz);
		prev = key;
		if (bpf_map_lookup_elem(fd, key, val) < 0)
			continue; /* deleted under us: nothing to adopt */
		if ((r = cb(m, fam, key, val, 1)) < 0)
			break;
	}
	if (!r && errno != ENOENT)
		r = -errno;
	free(next);
	return r;
}

static int map_walk(struct lb_maps *m, int id, int fam, walk_cb cb)
{
	int fd = m->fd[id], r = 0;
	uint32_t ksz = lb_map_defs[id].key_size, vsz = lb_map_defs[id].value_size;
	char *keys, *vals;
	__u64 token = 0;
	bool first = true;

	if (fd < 0)
		return 0;
	keys = malloc((size_t)WALK_BATCH * ksz);
	vals = malloc((size_t)WALK_BATCH * vsz);
	if (!keys || !vals) {
		r = -ENOMEM;
		goto out;
	}
	for (;;) {
		__u32 n = WALK_BATCH;
		LIBBPF_OPTS(bpf_map_batch_opts, opts);
		int e = 0;

		if (bpf_map_lookup_batch(fd, first ? NULL : &token, &token, keys, vals, &n, &opts) < 0)
			e = errno;
		if (e && e != ENOENT) {
			/* No batch lookup here (or not for this map): walk it key by key. */
			if (first && (e == EINVAL || e == ENOTSUP || e == EOPNOTSUPP || e == ENOSYS))
				r = walk_one_by_one(m, fd, fam, ksz, vsz, keys, vals, cb);
			else
				r = -e;
			break;
		}
		first = false;
		if (n > WALK_BATCH)
			n = 0;
		if (n && (r = cb(m, fam, keys, vals, n)) < 0)
			break;
		if (e == ENOENT)
			break; /* the last batch */
	}
out:
	free(keys);
	free(vals);
	return r;
}

static int adopt_services_cb(struct lb_maps *m, int fam, const void *keys, const void *vals,
			     uint32_t n)
{
	const struct lb_svc_val *v = vals;
	int r;

	for (uint32_t i = 0; i < n; i++) {
		struct l4key k = {.family = (uint8_t)fam};
		uint16_t slot;

		if (fam == 4) {
			const struct lb4_key *k4 = (const struct lb4_key *)keys + i;

			memcpy(k.addr, &k4->addr, 4);
			k.port = ntohs(k4->port);
			k.proto = k4->proto;
			slot = k4->slot;
		} else {
			const struct lb6_key *k6 = (const struct lb6_key *)keys + i;

			memcpy(k.addr, k6->addr, 16);
			k.port = ntohs(k6->port);
			k.proto = k6->proto;
			slot = k6->slot;
		}
		if ((r = adopt_svc(m, &k, slot, &v[i])) < 0)
			return r;
	}
	return 0;
}

static int adopt_backends_cb(struct lb_maps *m, int fam, const void *keys, const void *vals,
			     uint32_t n)
{
	const __u32 *ids = keys;
	int r;

	for (uint32_t i = 0; i < n; i++) {
		struct l4key k = {.family = (uint8_t)fam};
		struct be_ent *e;
		uint8_t state;

		if (fam == 4) {
			const struct lb4_backend *b = (const struct lb4_backend *)vals + i;

			memcpy(k.addr, &b->addr, 4);
			k.port = ntohs(b->port);
			k.proto = b->proto;
			state = b->state;
		} else {
			const struct lb6_backend *b = (const struct lb6_backend *)vals + i;

			memcpy(k.addr, b->addr, 16);
			k.port = ntohs(b->port);
			k.proto = b->proto;
			state = b->state;
		}
		if (lb_ht_find(&m->bes, &k))
			continue; /* two ids for one backend: the other one is pruned */
		e = calloc(1, sizeof(*e));
		if (!e)
			return -ENOMEM;
		e->k = k;
		e->id = ids[i];
		e->in_map = true;
		e->state = e->wstate = state;
		if ((r = lb_ht_insert(&m->bes, &e->n)) < 0) {
			free(e);
			return r;
		}
		m->n_be[fam_idx((uint8_t)fam)]++;
		if (ids[i] >= m->next_be_id)
			m->next_be_id = ids[i] + 1;
	}
	return 0;
}

static int u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Reverse NAT ids: the adopted frontends' (sorted), to tell orphans from owned entries. */
struct rn_walk {
	uint32_t *live;
	size_t n_live;
};

static int adopt_revnat_cb(struct lb_maps *m, int fam, const void *keys, const void *vals,
			   uint32_t n)
{
	const __u32 *ids = keys;
	int f = fam_idx((uint8_t)fam);
	uint32_t *v;

	(void)vals;
	v = realloc(m->rn_orphans[f], (m->n_rn_orphans[f] + n) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	m->rn_orphans[f] = v;
	for (uint32_t i = 0; i < n; i++) {
		/* No new frontend may take an id that is in the map (it is pruned later). */
		if (ids[i] >= m->next_rn_id)
			m->next_rn_id = ids[i] + 1;
		v[m->n_rn_orphans[f]++] = ids[i];
	}
	return 0;
}

/* Keep, of the reverse NAT ids read, those no adopted frontend owns. */
static int revnat_orphans(struct lb_maps *m)
{
	uint32_t *live = malloc((m->fes.n ? m->fes.n : 1) * sizeof(*live));
	size_t n = 0;

	if (!live)
		return -ENOMEM;
	lb_ht_foreach(&m->fes, nd, nx) {
		(void)nx;
		live[n++] = ((struct fe_ent *)nd)->rev_nat_id;
	}
	qsort(live, n, sizeof(*live), u32_cmp);
	for (int f = 0; f < 2; f++) {
		size_t k = 0;

		for (size_t i = 0; i < m->n_rn_orphans[f]; i++)
			if (!bsearch(&m->rn_orphans[f][i], live, n, sizeof(*live), u32_cmp))
				m->rn_orphans[f][k++] = m->rn_orphans[f][i];
		m->n_rn_orphans[f] = k;
	}
	free(live);
	return 0;
}

int lb_maps_adopt(struct lb_maps *m, uint32_t *ret_backends)
{
	int r;

	if ((r = map_walk(m, LBM_BE4, 4, adopt_backends_cb)) < 0 ||
	    (r = map_walk(m, LBM_BE6, 6, adopt_backends_cb)) < 0 ||
	    (r = map_walk(m, LBM_SVC4, 4, adopt_services_cb)) < 0 ||
	    (r = map_walk(m, LBM_SVC6, 6, adopt_services_cb)) < 0 ||
	    (r = map_walk(m, LBM_RN4, 4, adopt_revnat_cb)) < 0 ||
	    (r = map_walk(m, LBM_RN6, 6, adopt_revnat_cb)) < 0 || (r = revnat_orphans(m)) < 0)
		return r;
	if (ret_backends)
		*ret_backends = m->n_be[0] + m->n_be[1];
	return (int)m->fes.n;
}

/* --- claims ------------------------------------------------------------------- */

static void fe_release(struct lb_maps *m, struct fe_ent *e)
{
	int fi = fam_idx(e->k.family);

	for (uint32_t i = 0; i < e->n_all; i++) {
		struct be_ent *b = e->bes[i];

		if (b->refs && --b->refs == 0)
			be_dirty(m, b);
	}
	m->svc_peak[fi] -= fe_peak(e);
	e->n_all = e->n_sel = 0;
	e->owner = NULL;
	m->svc_peak[fi] += fe_peak(e);
	m->released = 1;
	fe_dirty(m, e);
}

static int fe_claim(struct lb_maps *m, const char *owner, const struct lb_svc *s,
		    const struct lb_fe *fe)
{
	struct l4key k;
	struct fe_ent *e;
	struct be_ent **bes;
	int fi;

	l4key_make(&k, &fe->ip, fe->port, fe->proto);
	e = fe_get(m, &k, true);
	if (!e)
		return -ENOMEM;
	fi = fam_idx(k.family);
	bes = realloc(e->bes, (fe->n_be ? fe->n_be : 1) * sizeof(*bes));
	if (!bes)
		return -ENOMEM;
	e->bes = bes;
	m->svc_peak[fi] -= fe_peak(e);
	e->owner = owner;
	e->n_all = e->n_sel = 0;
	for (size_t i = 0; i < fe->n_be; i++) {
		const struct lb_be *be = &fe->be[i];
		struct be_ent *b;

		l4key_make(&k, &be->ip, be->port, fe->proto);
		b = be_get(m, &k, true);
		if (!b) {
			m->svc_peak[fi] += fe_peak(e);
			return -ENOMEM;
		}
		b->refs++;
		b->state = be->state == LB_BE_TERMINATING ? LB_BS_TERMINATING : LB_BS_ACTIVE;
		if (!b->in_map || b->wstate != b->state)
			be_dirty(m, b);
		e->bes[e->n_all++] = b;
		if (i < fe->n_sel)
			e->n_sel++;
	}
	e->flags = (s->flags & LB_SVCF_AFFINITY ? LB_F_AFFINITY : 0) |
		   (s->flags & LB_SVCF_ITP_LOCAL ? LB_F_ITP_LOCAL : 0);
	e->alg = s->algorithm == LB_ALG_MAGLEV ? LB_A_MAGLEV : LB_A_RANDOM;
	e->timeout = s->flags & LB_SVCF_AFFINITY ? s->affinity_timeout : 0;
	m->svc_peak[fi] += fe_peak(e);
	fe_dirty(m, e);
	return 0;
}

static void svc_release(struct lb_maps *m, const char *owner, const struct lb_svc *s)
{
	for (size_t i = 0; s && i < s->n_fe; i++) {
		struct l4key k;
		struct fe_ent *e;

		l4key_make(&k, &s->fe[i].ip, s->fe[i].port, s->fe[i].proto);
		e = fe_get(m, &k, false);
		if (e && e->owner == owner)
			fe_release(m, e);
	}
}

static int svc_claim(struct lb_maps *m, const char *owner, const struct lb_svc *s)
{
	int r;

	for (size_t i = 0; s && i < s->n_fe; i++)
		if ((r = fe_claim(m, owner, s, &s->fe[i])) < 0)
			return r;
	return 0;
}

/* The first map that would overflow, or -1. */
static int over_capacity(const struct lb_maps *m)
{
	if (m->svc_peak[0] > m->max[LBM_SVC4])
		return LBM_SVC4;
	if (m->svc_peak[1] > m->max[LBM_SVC6])
		return LBM_SVC6;
	if (m->n_be[0] > m->max[LBM_BE4])
		return LBM_BE4;
	if (m->n_be[1] > m->max[LBM_BE6])
		return LBM_BE6;
	if (m->n_fe[0] > m->max[LBM_RN4])
		return LBM_RN4;
	if (m->n_fe[1] > m->max[LBM_RN6])
		return LBM_RN6;
	return -1;
}

void lb_maps_reserve(struct lb_maps *m, size_t n_fe, size_t n_be)
{
	/* Only a hint: a table that cannot grow now grows later, entry by entry. */
	(void)lb_ht_reserve(&m->fes, m->fes.n + n_fe);
	(void)lb_ht_reserve(&m->bes, m->bes.n + n_be);
}

int lb_maps_service_set(struct lb_maps *m, const char *owner, const struct lb_svc *old,
			const struct lb_svc *new, char **ret_err)
{
	char buf[LB_ADDR_STRLEN + 8], *msg = NULL;
	int r, full;

	for (size_t i = 0; new && i < new->n_fe; i++) {
		struct l4key k;
		struct fe_ent *e;

		l4key_make(&k, &new->fe[i].ip, new->fe[i].port, new->fe[i].proto);
		e = fe_get(m, &k, false);
		if (e && e->owner && e->owner != owner) {
			if (asprintf(&msg, "frontend %s is already used by service %s",
				     l4key_str(&k, buf, sizeof(buf)), e->owner) < 0)
				msg = NULL;
			*ret_err = msg;
			return -EADDRINUSE;
		}
	}
	svc_release(m, owner, old);
	r = svc_claim(m, owner, new);
	full = r < 0 ? -1 : over_capacity(m);
	if (r < 0 || full >= 0) {
		/* Back to where we were: the old claims cannot overflow what they fitted in. */
		svc_release(m, owner, new);
		(void)svc_claim(m, owner, old);
		if (full >= 0) {
			if (asprintf(&msg, "map %s is full (max_entries %u): service %s not programmed",
				     lb_map_defs[full].name, m->max[full], owner) < 0)
				msg = NULL;
			r = -ENOSPC;
		}
		*ret_err = msg;
		return r;
	}
	return 0;
}

/* --- the writer ---------------------------------------------------------------- */

/* A growing array of keys (and values) for one map. */
struct ops {
	char *k, *v;
	uint32_t n, cap, ksz, vsz;
};

static int ops_add(struct ops *o, const void *k, const void *v)
{
	if (o->n == o->cap) {
		uint32_t cap = o->cap ? o->cap * 2 : 256;
		char *nk = realloc(o->k, (size_t)cap * o->ksz), *nv;

		if (!nk)
			return -ENOMEM;
		o->k = nk;
		if (o->vsz) {
			nv = realloc(o->v, (size_t)cap * o->vsz);
			if (!nv)
				return -ENOMEM;
			o->v = nv;
		}
		o->cap = cap;
	}
	memcpy(o->k + (size_t)o->n * o->ksz, k, o->ksz);
	if (o->vsz)
		memcpy(o->v + (size_t)o->n * o->vsz, v, o->vsz);
	o->n++;
	return 0;
}

static void ops_free(struct ops *o)
{
	free(o->k);
	free(o->v);
}

/*
 * Entries [from, to) of o: batched where the kernel can, one by one where it
 * cannot (or for what a batch left).
 */
static int ops_update_range(int fd, struct ops *o, uint32_t from, uint32_t to,
			    struct lb_flush_stats *st)
{
	uint32_t done = from;
	int r = 0;

	while (done < to) {
		__u32 cnt = to - done;
		LIBBPF_OPTS(bpf_map_batch_opts, opts);

		st->syscalls++;
		if (bpf_map_update_batch(fd, o->k + (size_t)done * o->ksz,
					 o->v + (size_t)done * o->vsz, &cnt, &opts) == 0) {
			done += cnt;
			continue;
		}
		if (cnt > to - done)
			cnt = 0;
		done += cnt;
		/* The element that failed, on its own, so its error is the one we report. */
		st->syscalls++;
		if (bpf_map_update_elem(fd, o->k + (size_t)done * o->ksz,
					o->v + (size_t)done * o->vsz, BPF_ANY) < 0 &&
		    !r)
			r = -errno;
		done++;
	}
	st->updates += to - from;
	return r;
}

static int ops_delete_range(int fd, struct ops *o, uint32_t from, uint32_t to,
			    struct lb_flush_stats *st)
{
	uint32_t done = from;
	int r = 0;

	while (done < to) {
		__u32 cnt = to - done;
		LIBBPF_OPTS(bpf_map_batch_opts, opts);

		st->syscalls++;
		if (bpf_map_delete_batch(fd, o->k + (size_t)done * o->ksz, &cnt, &opts) == 0) {
			done += cnt;
			continue;
		}
		if (cnt > to - done)
			cnt = 0;
		done += cnt;
		/* A key already gone (ENOENT) is what we wanted. */
		st->syscalls++;
		if (bpf_map_delete_elem(fd, o->k + (size_t)done * o->ksz) < 0 && errno != ENOENT &&
		    !r)
			r = -errno;
		done++;
	}
	st->deletes += to - from;
	return r;
}

static int ops_update(int fd, struct ops *o, struct lb_flush_stats *st)
{
	return ops_update_range(fd, o, 0, o->n, st);
}

static int ops_delete(int fd, struct ops *o, struct lb_flush_stats *st)
{
	return ops_delete_range(fd, o, 0, o->n, st);
}

/*
 * A step of the write order: lists of operations on different maps (or on
 * different keys of one map) that may run in any order, even at the same
 * time. A big step is cut in two halves, each list at its middle, and a
 * second thread writes one half while this one writes the other: the
 * kernel's hash maps take concurrent updates (the datapath does it on every
 * CPU), and the syscalls are most of what a large sync costs. A thread per
 * big step is a few tens of microseconds next to milliseconds of writes.
 */
#define STEP_MAX 6
#define STEP_PARALLEL_MIN 8192 /* entries; below that one thread is as quick */

struct step {
	int n;
	struct {
		int fd;
		struct ops *o;
		bool del;
	} it[STEP_MAX];
};

struct half {
	const struct step *step;
	bool second;
	struct lb_flush_stats st;
	int r;
};

static void step_add(struct step *s, int fd, struct ops *o, bool del)
{
	if (o->n) {
		s->it[s->n].fd = fd;
		s->it[s->n].o = o;
		s->it[s->n].del = del;
		s->n++;
	}
}

static void *half_run(void *arg)
{
	struct half *h = arg;

	for (int i = 0; i < h->step->n; i++) {
		struct ops *o = h->step->it[i].o;
		uint32_t mid = h->second ? o->n / 2 : 0, end = h->second ? o->n : o->n / 2;
		int r;

		if (h->second && o->n < 2) /* too small to share: the first half has it */
			continue;
		if (!h->second && o->n < 2)
			end = o->n;
		r = h->step->it[i].del ? ops_delete_range(h->step->it[i].fd, o, mid, end, &h->st)
				       : ops_update_range(h->step->it[i].fd, o, mid, end, &h->st);
		if (r < 0 && !h->r)
			h->r = r;
	}
	return NULL;
}

static int step_run(const struct step *s, struct lb_flush_stats *st)
{
	struct half a = {.step = s}, b = {.step = s, .second = true};
	uint64_t total = 0;
	bool spawned = false;
	pthread_t t;

	for (int i = 0; i < s->n; i++)
		total += s->it[i].o->n;
	if (total >= STEP_PARALLEL_MIN) {
		sigset_t all, old;

		/* The agent's signals are for its own thread. */
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		spawned = pthread_create(&t, NULL, half_run, &b) == 0;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	if (!spawned) {
		/* One thread: every list whole, in order. */
		for (int i = 0; i < s->n; i++) {
			int r = s->it[i].del ? ops_delete(s->it[i].fd, s->it[i].o, &a.st)
					     : ops_update(s->it[i].fd, s->it[i].o, &a.st);

			if (r < 0 && !a.r)
				a.r = r;
		}
	} else {
		half_run(&a);
		pthread_join(t, NULL);
	}
	st->updates += a.st.updates + b.st.updates;
	st->deletes += a.st.deletes + b.st.deletes;
	st->syscalls += a.st.syscalls + b.st.syscalls;
	return a.r ? a.r : b.r;
}

static void svc_key(const struct l4key *k, uint16_t slot, struct lb4_key *k4, struct lb6_key *k6)
{
	if (k->family == 4) {
		memset(k4, 0, sizeof(*k4));
		memcpy(&k4->addr, k->addr, 4);
		k4->port = htons(k->port);
		k4->proto = k->proto;
		k4->slot = slot;
	} else {
		memset(k6, 0, sizeof(*k6));
		memcpy(k6->addr, k->addr, 16);
		k6->port = htons(k->port);
		k6->proto = k->proto;
		k6->slot = slot;
	}
}

/*
 * Slot order for a frontend: a backend that stays keeps its slot when the
 * slot still exists, so a scale change rewrites only the slots it must.
 */
static int slot_plan(const struct fe_ent *e, uint32_t *plan)
{
	bool small[256], *used = small;
	uint32_t j = 0;

	if (!e->n_written) {
		/* A new frontend: nothing to keep. */
		for (uint32_t s = 0; s < e->n_sel; s++)
			plan[s] = e->bes[s]->id;
		return 0;
	}
	if (e->n_sel > sizeof(small) && !(used = malloc(e->n_sel * sizeof(*used))))
		return -ENOMEM;
	memset(used, 0, e->n_sel * sizeof(*used));
	for (uint32_t s = 0; s < e->n_sel; s++) {
		plan[s] = 0;
		if (s >= e->n_written || !e->written[s])
			continue;
		for (uint32_t i = 0; i < e->n_sel; i++)
			if (!used[i] && e->bes[i]->id == e->written[s]) {
				used[i] = true;
				plan[s] = e->bes[i]->id;
				break;
			}
	}
	for (uint32_t s = 0; s < e->n_sel; s++) {
		if (plan[s])
			continue;
		while (used[j])
			j++;
		used[j] = true;
		plan[s] = e->bes[j]->id;
	}
	if (used != small)
		free(used);
	return 0;
}

struct plan {
	struct ops be_up[2], rn_up[2], slot_up[2], master_up[2], master_del[2], slot_del[2],
		rn_del[2], be_del[2];
};

static void plan_init(struct plan *p)
{
	memset(p, 0, sizeof(*p));
	for (int f = 0; f < 2; f++) {
		uint32_t sk = f ? sizeof(struct lb6_key) : sizeof(struct lb4_key);
		uint32_t bv = f ? sizeof(struct lb6_backend) : sizeof(struct lb4_backend);
		uint32_t rv = f ? sizeof(struct lb6_revnat) : sizeof(struct lb4_revnat);

		p->be_up[f] = (struct ops){.ksz = sizeof(__u32), .vsz = bv};
		p->rn_up[f] = (struct ops){.ksz = sizeof(__u32), .vsz = rv};
		p->slot_up[f] = (struct ops){.ksz = sk, .vsz = sizeof(struct lb_svc_val)};
		p->master_up[f] = (struct ops){.ksz = sk, .vsz = sizeof(struct lb_svc_val)};
		p->master_del[f] = (struct ops){.ksz = sk};
		p->slot_del[f] = (struct ops){.ksz = sk};
		p->rn_del[f] = (struct ops){.ksz = sizeof(__u32)};
		p->be_del[f] = (struct ops){.ksz = sizeof(__u32)};
	}
}

static void plan_free(struct plan *p)
{
	struct ops *o = (struct ops *)p;

	for (size_t i = 0; i < sizeof(*p) / sizeof(*o); i++)
		ops_free(&o[i]);
}

static int plan_be(struct plan *p, struct be_ent *b)
{
	int f = fam_idx(b->k.family);

	if (b->refs == 0)
		return b->in_map ? ops_add(&p->be_del[f], &b->id, NULL) : 0;
	if (b->in_map && b->wstate == b->state)
		return 0; /* released and claimed again in one batch */
	if (f == 0) {
		struct lb4_backend v = {.port = htons(b->k.port), .proto = b->k.proto,
					.state = b->state};

		memcpy(&v.addr, b->k.addr, 4);
		return ops_add(&p->be_up[0], &b->id, &v);
	} else {
		struct lb6_backend v = {.port = htons(b->k.port), .proto = b->k.proto,
					.state = b->state};

		memcpy(v.addr, b->k.addr, 16);
		return ops_add(&p->be_up[1], &b->id, &v);
	}
}

static int plan_fe(struct plan *p, struct fe_ent *e, uint32_t *slots)
{
	int f = fam_idx(e->k.family), r;
	struct lb4_key k4;
	struct lb6_key k6;
	void *key = f ? (void *)&k6 : (void *)&k4;

	if (!e->owner) {
		/* Gone: the master first, so no connect reads a count over missing slots. */
		if (e->in_map) {
			svc_key(&e->k, 0, &k4, &k6);
			if ((r = ops_add(&p->master_del[f], key, NULL)) < 0)
				return r;
		}
		for (uint32_t s = 1; s <= e->n_written; s++) {
			svc_key(&e->k, (uint16_t)s, &k4, &k6);
			if ((r = ops_add(&p->slot_del[f], key, NULL)) < 0)
				return r;
		}
		if (e->rn_in_map && (r = ops_add(&p->rn_del[f], &e->rev_nat_id, NULL)) < 0)
			return r;
		return 0;
	}
	if (!e->rn_in_map || e->unsure) {
		if (f == 0) {
			struct lb4_revnat v = {.port = htons(e->k.port), .proto = e->k.proto};

			memcpy(&v.addr, e->k.addr, 4);
			r = ops_add(&p->rn_up[0], &e->rev_nat_id, &v);
		} else {
			struct lb6_revnat v = {.port = htons(e->k.port), .proto = e->k.proto};

			memcpy(v.addr, e->k.addr, 16);
			r = ops_add(&p->rn_up[1], &e->rev_nat_id, &v);
		}
		if (r < 0)
			return r;
	}
	if ((r = slot_plan(e, slots)) < 0)
		return r;
	for (uint32_t s = 0; s < e->n_sel; s++) {
		struct lb_svc_val v = {.backend_id = slots[s], .rev_nat_id = e->rev_nat_id};

		if (s < e->n_written && e->written[s] == slots[s])
			continue; /* already there */
		svc_key(&e->k, (uint16_t)(s + 1), &k4, &k6);
		if ((r = ops_add(&p->slot_up[f], key, &v)) < 0)
			return r;
	}
	{
		struct lb_svc_val v = {.rev_nat_id = e->rev_nat_id, .count = (__u16)e->n_sel,
				       .flags = e->flags, .algorithm = e->alg,
				       .affinity_timeout = e->timeout};

		if (!e->in_map || e->unsure || memcmp(&v, &e->wmaster, sizeof(v))) {
			svc_key(&e->k, 0, &k4, &k6);
			if ((r = ops_add(&p->master_up[f], key, &v)) < 0)
				return r;
		}
	}
	for (uint32_t s = e->n_sel + 1; s <= e->n_written; s++) {
		svc_key(&e->k, (uint16_t)s, &k4, &k6);
		if ((r = ops_add(&p->slot_del[f], key, NULL)) < 0)
			return r;
	}
	return 0;
}

/* After the writes: memory says what the maps hold now. */
static int fe_written(struct lb_maps *m, struct fe_ent *e, const uint32_t *slots)
{
	int fi = fam_idx(e->k.family);

	m->svc_peak[fi] -= fe_peak(e);
	if (!e->owner) {
		lb_ht_remove(&m->fes, &e->n);
		m->n_fe[fi]--;
		fe_free(e);
		return 0;
	}
	if (e->n_sel > e->n_written || !e->written) {
		uint32_t *w = realloc(e->written, (e->n_sel ? e->n_sel : 1) * sizeof(*w));

		if (!w)
			return -ENOMEM;
		e->written = w;
	}
	memcpy(e->written, slots, e->n_sel * sizeof(*slots));
	e->n_written = e->n_sel;
	e->in_map = e->rn_in_map = true;
	e->unsure = false;
	e->wmaster = (struct lb_svc_val){.rev_nat_id = e->rev_nat_id, .count = (__u16)e->n_sel,
					 .flags = e->flags, .algorithm = e->alg,
					 .affinity_timeout = e->timeout};
	m->svc_peak[fi] += fe_peak(e);
	return 0;
}

/*
 * After a failed write: any key of this frontend may hold the old or the new
 * value, or be missing. Assume the worst so the next flush (the retry)
 * rewrites all of it: every slot up to the larger count unknown (rewritten
 * or deleted), the master and reverse NAT rewritten -- or, for a removed
 * frontend, all of them deleted again (a missing key is what a delete
 * wants). It stays dirty.
 */
static int fe_unsure(struct lb_maps *m, struct fe_ent *e)
{
	int fi = fam_idx(e->k.family), r;

	if (!e->owner)
		return 0; /* still believed in the map: deleted again */
	m->svc_peak[fi] -= fe_peak(e);
	r = written_grow(e, e->n_sel);
	if (e->n_written)
		memset(e->written, 0, e->n_written * sizeof(*e->written));
	e->in_map = e->rn_in_map = e->unsure = true;
	m->svc_peak[fi] += fe_peak(e);
	return r;
}

/* The same for a backend: upserted again, or deleted again if unreferenced. */
static void be_unsure(struct be_ent *b)
{
	if (b->refs) {
		b->in_map = true;
		b->wstate = 0xff; /* no LB_BS_*: differs from what is wanted */
	}
}

int lb_maps_flush(struct lb_maps *m, struct lb_flush_stats *ret_st)
{
	struct lb_flush_stats st = {0};
	struct fe_ent *fes = m->fdirty;
	struct be_ent *bes = m->bdirty;
	uint32_t *slots = NULL;
	size_t n_slots = 0, off;
	struct plan p;
	int r = 0, r2;

	plan_init(&p);
	/* Every dirty frontend's slot plan, one after the other in one array. */
	for (struct fe_ent *e = fes; e; e = e->dnext)
		n_slots += e->n_sel;
	slots = malloc((n_slots ? n_slots : 1) * sizeof(*slots));
	if (!slots) {
		r = -ENOMEM;
		goto out;
	}
	off = 0;
	for (struct fe_ent *e = fes; e; e = e->dnext) {
		if ((r = plan_fe(&p, e, slots + off)) < 0)
			goto out;
		off += e->n_sel;
	}
	for (struct be_ent *b = bes; b; b = b->dnext)
		if ((r = plan_be(&p, b)) < 0)
			goto out;

	/*
	 * The order of lb_maps.h; the first error is kept, the rest still runs.
	 * Slots only once the backends they name exist: a rewritten slot of a
	 * live frontend is read by the datapath at once.
	 */
	{
		struct step steps[6];

		memset(steps, 0, sizeof(steps));
		for (int f = 0; f < 2; f++) {
			int be = f ? LBM_BE6 : LBM_BE4, rn = f ? LBM_RN6 : LBM_RN4;
			int sv = f ? LBM_SVC6 : LBM_SVC4;

			/* 1. backends and reverse NAT, then slots; 2. masters */
			step_add(&steps[0], m->fd[be], &p.be_up[f], false);
			step_add(&steps[0], m->fd[rn], &p.rn_up[f], false);
			step_add(&steps[1], m->fd[sv], &p.slot_up[f], false);
			step_add(&steps[2], m->fd[sv], &p.master_up[f], false);
			/* 3. masters of removed frontends, then surplus slots and reverse NAT */
			step_add(&steps[3], m->fd[sv], &p.master_del[f], true);
			step_add(&steps[4], m->fd[sv], &p.slot_del[f], true);
			step_add(&steps[4], m->fd[rn], &p.rn_del[f], true);
			/* 4. backends nothing references any more */
			step_add(&steps[5], m->fd[be], &p.be_del[f], true);
		}
		for (int k = 0; k < 6; k++)
			if ((r2 = step_run(&steps[k], &st)) < 0 && !r)
				r = r2;
	}

	/*
	 * A failed write leaves everything of this flush dirty and marked unsure,
	 * so the next flush -- the module's retry, or the next change -- writes
	 * all of it again; which key failed does not matter. The steps above
	 * still ran to the end: the deletes of a later step are often what makes
	 * room for the failed upserts of an earlier one.
	 */
	if (r < 0) {
		/* Out of memory growing `written` costs only precision: the write error is news. */
		for (struct fe_ent *e = fes; e; e = e->dnext)
			(void)fe_unsure(m, e);
		for (struct be_ent *b = bes; b; b = b->dnext)
			be_unsure(b);
		goto out;
	}
	off = 0;
	m->fdirty = NULL;
	for (struct fe_ent *e = fes, *next; e; e = next) {
		uint32_t n_sel = e->n_sel;

		next = e->dnext;
		e->dirty = false;
		e->dnext = NULL;
		if ((r2 = fe_written(m, e, slots + off)) < 0 && !r)
			r = r2;
		off += n_sel;
	}
	m->bdirty = NULL;
	for (struct be_ent *b = bes, *next; b; b = next) {
		next = b->dnext;
		b->dirty = false;
		b->dnext = NULL;
		if (b->refs == 0) {
			lb_ht_remove(&m->bes, &b->n);
			m->n_be[fam_idx(b->k.family)]--;
			free(b);
		} else {
			b->in_map = true;
			b->wstate = b->state;
		}
	}
	fes = NULL;
	bes = NULL;
out:
	free(slots);
	plan_free(&p);
	if (ret_st)
		*ret_st = st;
	return r;
}

/* Reverse NAT entries no frontend owned at adoption (left by a crash between writes). */
static int prune_revnat(struct lb_maps *m, struct lb_flush_stats *st)
{
	int r = 0, r2;

	for (int f = 0; f < 2; f++) {
		struct ops del = {.ksz = sizeof(__u32), .n = (uint32_t)m->n_rn_orphans[f],
				  .cap = (uint32_t)m->n_rn_orphans[f], .k = (char *)m->rn_orphans[f]};

		if (m->fd[f ? LBM_RN6 : LBM_RN4] >= 0 &&
		    (r2 = ops_delete(m->fd[f ? LBM_RN6 : LBM_RN4], &del, st)) < 0) {
			/* Kept for the next prune (the retry): deleting twice is harmless. */
			r = r ? r : r2;
			continue;
		}
		free(m->rn_orphans[f]);
		m->rn_orphans[f] = NULL;
		m->n_rn_orphans[f] = 0;
	}
	return r;
}

int lb_maps_prune(struct lb_maps *m, struct lb_flush_stats *ret_st)
{
	struct lb_flush_stats st = {0}, st2 = {0};
	int r;

	lb_ht_foreach(&m->fes, n, nx) {
		struct fe_ent *e = (struct fe_ent *)n;

		(void)nx;
		if (!e->owner)
			fe_dirty(m, e);
	}
	lb_ht_foreach(&m->bes, n, nx) {
		struct be_ent *b = (struct be_ent *)n;

		(void)nx;
		if (!b->refs)
			be_dirty(m, b);
	}
	r = lb_maps_flush(m, &st);
	if (!r)
		r = prune_revnat(m, &st2);
	if (ret_st) {
		st.updates += st2.updates;
		st.deletes += st2.deletes;
		st.syscalls += st2.syscalls;
		*ret_st = st;
	}
	return r;
}

uint32_t lb_maps_fe_id(struct lb_maps *m, const struct lb_fe *fe)
{
	struct l4key k;
	struct fe_ent *e;

	l4key_make(&k, &fe->ip, fe->port, fe->proto);
	e = fe_get(m, &k, false);
	return e ? e->rev_nat_id : 0;
}

uint32_t lb_maps_be_id(struct lb_maps *m, const struct lb_ip *ip, uint16_t port, uint8_t proto)
{
	struct l4key k;
	struct be_ent *b;

	l4key_make(&k, ip, port, proto);
	b = be_get(m, &k, false);
	return b ? b->id : 0;
}

uint32_t lb_maps_used(struct lb_maps *m, enum lb_map_id id)
{
	switch (id) {
	case LBM_SVC4:
	case LBM_SVC6:
		return (uint32_t)m->svc_peak[id == LBM_SVC6];
	case LBM_BE4:
	case LBM_BE6:
		return m->n_be[id == LBM_BE6];
	case LBM_RN4:
	case LBM_RN6:
		return m->n_fe[id == LBM_RN6];
	default:
		return 0;
	}
}

int lb_maps_take_released(struct lb_maps *m)
{
	int r = m->released;

	m->released = 0;
	return r;
}
