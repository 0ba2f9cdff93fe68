// SPDX-License-Identifier: Apache-2.0
/*
 * lb_maps.c - desired state of the lb maps and the writer (see lb_maps.h for
 * the write order, lb_shared.h for the layouts).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "lb_alloc.h"
#include "lb_ht.h"
#include "lb_maps.h"
#include "lb_shared.h"
#include "lb_thread.h"

/*
 * The masters' hash maps are not preallocated: a preallocated hash map hands
 * a replaced element to the next update at once, so a program still reading
 * the old master could see another frontend's count and range mixed into
 * it; without preallocation a replaced element is freed after an RCU grace
 * period, and what a program read stays what it read.
 */
const struct lb_map_def lb_map_defs[LBM_N] = {
	[LBM_SVC4] = {"lb4_services", BPF_MAP_TYPE_HASH, sizeof(struct lb4_key),
		      sizeof(struct lb_svc_val), BPF_F_NO_PREALLOC},
	[LBM_SVC6] = {"lb6_services", BPF_MAP_TYPE_HASH, sizeof(struct lb6_key),
		      sizeof(struct lb_svc_val), BPF_F_NO_PREALLOC},
	[LBM_SLOTS] = {"lb_slots", BPF_MAP_TYPE_ARRAY, sizeof(__u32), sizeof(struct lb_slot),
		       BPF_F_MMAPABLE},
	[LBM_BE4] = {"lb4_backends", BPF_MAP_TYPE_ARRAY, sizeof(__u32), sizeof(struct lb4_backend),
		     BPF_F_MMAPABLE},
	[LBM_BE6] = {"lb6_backends", BPF_MAP_TYPE_ARRAY, sizeof(__u32), sizeof(struct lb6_backend),
		     BPF_F_MMAPABLE},
	[LBM_RN4] = {"lb4_revnat", BPF_MAP_TYPE_ARRAY, sizeof(__u32), sizeof(struct lb4_revnat),
		     BPF_F_MMAPABLE},
	[LBM_RN6] = {"lb6_revnat", BPF_MAP_TYPE_ARRAY, sizeof(__u32), sizeof(struct lb6_revnat),
		     BPF_F_MMAPABLE},
	[LBM_SK4] = {"lb4_sk_revnat", BPF_MAP_TYPE_LRU_HASH, sizeof(struct lb4_sk_key),
		     sizeof(struct lb4_sk_val), 0},
	[LBM_SK6] = {"lb6_sk_revnat", BPF_MAP_TYPE_LRU_HASH, sizeof(struct lb6_sk_key),
		     sizeof(struct lb6_sk_val), 0},
	[LBM_AFF] = {"lb_affinity", BPF_MAP_TYPE_LRU_HASH, sizeof(struct lb_aff_key),
		     sizeof(struct lb_aff_val), 0},
};

#define ORDER_NONE LB_SLOT_ORDER_NONE
#define STALE_ORDER_MAX 16 /* larger stale ranges (a corrupt map) are not reserved */

/* --- entries ---------------------------------------------------------------- */

/* A frontend or backend address: family, proto, port (host order), addr. */
struct l4key {
	uint8_t family;
	uint8_t proto;
	uint16_t port;
	uint8_t addr[16];
};

/*
 * A backend, at index id of its family's array: ids are array indexes, so
 * a backend costs no allocation and its id no lookup. Its address is not
 * kept here: the map's entry, written when the id is handed out (nothing
 * points at a new id yet), holds it -- and its state as written. What only
 * a change needs (the dirty list's links, slot planning's marks) lies in
 * arrays of their own that a sync of new backends never touches. A sync of
 * a million backends then takes 8 bytes of fresh memory per backend here
 * instead of 40, and fresh pages are what a large sync waits on.
 */
struct be_ent {
	uint32_t refs; /* slots and kept references from claimed frontends */
	uint8_t state; /* wanted LB_BS_* */
	bool used, dirty;
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
	uint32_t *bes;	       /* backend ids, each holding a reference (be_ent.refs) */
	uint32_t bes_in[2];    /* bes for up to two backends (most services): no allocation */
	/*
	 * The slot range the map's master points at (order ORDER_NONE: none),
	 * and one allocated for a write that needs more room; written, the
	 * master moves to it and the old range goes to the quarantine.
	 */
	uint32_t base, pbase;
	uint8_t order, porder;
	/* in the map */
	bool in_map, rn_in_map, dirty;
	bool unsure; /* a master write failed: rewrite it */
	struct lb_svc_val wmaster;
	struct fe_ent *dnext;
};

struct be_undo {
	uint32_t id;
	uint8_t f, prev;
};

struct fe_slab {
	struct fe_slab *next;
	size_t cap, used;
	struct fe_ent e[];
};

#define FE_SLAB_MIN 256

/* Freed by a flush, reusable after the grace period (see lb_maps.h). */
enum { Q_SLOTS, Q_BE4, Q_BE6, Q_RN };

struct qent {
	uint32_t v;
	uint8_t kind, order;
};

struct qlist {
	struct qent *v;
	size_t n, cap;
};

struct lb_maps {
	int fd[LBM_N];
	uint32_t max[LBM_N];
	/*
	 * The mmapable arrays, mapped. Mapping an array maps all its pages at
	 * once (they count as the agent's RSS), so only the part in use is
	 * mapped -- ids and slot ranges are handed out lowest first -- and the
	 * window grows as they do (arr_cover).
	 */
	void *arr[LBM_N];
	size_t len[LBM_N];
	uint32_t mapped[LBM_N]; /* elements the window covers */
	struct lb_slot *slots;	/* = arr[LBM_SLOTS], typed */
	struct lb4_backend *be4;
	struct lb6_backend *be6;
	struct lb4_revnat *rn4;
	struct lb6_revnat *rn6;
	uint32_t slots_hw; /* no slot range was ever handed out at or above this */
	uint32_t claim_stores; /* array entries claims wrote, counted in the next flush's stats */
	bool adopted;	       /* adoption found entries the prune has not dealt with yet */
	/* UDP backends freed by flushes, kept while reap_on (lb_maps_take_freed_udp()). */
	bool reap_on, reap_lost;
	struct lb_reap_key *reap;
	size_t n_reap, cap_reap;

	struct lb_ht fes;
	/*
	 * Frontend entries come from slabs (a sync's worth at once, sized by
	 * lb_maps_reserve(), its memory brought in by lb_maps_prefault()); freed
	 * ones wait in fe_spare (linked by dnext) for the next frontend. A slab
	 * is never given back before lb_maps_free(): the frontends a node had
	 * once it will have again.
	 */
	struct fe_slab *slabs;
	struct fe_ent *fe_spare;
	struct be_ent *be[2]; /* per family, indexed by backend id */
	uint32_t *be_dnext[2]; /* the next dirty id of the family after this one, 0: the end */
	uint32_t *be_mark[2];  /* slot planning's marks (plan_slots) */
	/*
	 * Backends by address: open addressing with linear probing; a slot is
	 * tag << 26 | family << 25 | id (0: empty), the tag six bits of the
	 * key's hash that its slot does not depend on. A sync looks up every
	 * backend, most of them new: a miss costs one cache line, and a tag
	 * that matches another backend's (one probe in 64) a look at that
	 * backend's map entry. Four bytes a slot, as a fresh page is what a
	 * large sync waits on (a million backends: 5.3 MB); what needs the
	 * whole hash (growing, removing) works it out from the entry.
	 */
	uint32_t *bi;
	uint32_t bi_cap, bi_n;
	struct lb_ids be_ids[2], rn_ids;
	struct lb_buddy slots_bd;
	struct qlist q[2]; /* [0]: since the last grace, [1]: before it */
	uint32_t q_be[2];  /* backend ids of each family among them (not in the maps any more) */
	struct fe_ent *fdirty;
	uint32_t n_fdirty;	 /* entries on fdirty */
	uint32_t n_fdirty_f[2]; /* of them, per family */
	uint32_t bdirty[2];
	/* Backend state changes of the claim in progress (lb_maps_service_set): undone if it fails. */
	struct be_undo *undo;
	size_t n_undo, cap_undo;
	uint32_t pf_from[2], pf_to[2]; /* backend entries lb_maps_prefault() brings in */
	struct fe_ent *pf_fe;	       /* and frontend entries: [pf_fe, pf_fe + pf_n_fe) */
	size_t pf_n_fe;
	uint32_t mark;
	uint32_t n_fe[2];
	int released, full;
	/* Found at adoption and owned by nobody: cleared by the prune. */
	/*
	 * [0]/[1]: duplicate backend ids per family, [2]: rev_nat_ids, [3]: slot
	 * ranges (base, order pairs) of masters that could not keep them.
	 */
	uint32_t *orphans[4];
	size_t n_orphans[4];
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

static int q_add(struct lb_maps *m, uint8_t kind, uint32_t v, uint8_t order)
{
	struct qlist *q = &m->q[0];

	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 256;
		struct qent *nv = realloc(q->v, cap * sizeof(*nv));

		if (!nv)
			return -ENOMEM; /* lost until a restart: capacity, not state */
		q->v = nv;
		q->cap = cap;
	}
	q->v[q->n++] = (struct qent){.v = v, .kind = kind, .order = order};
	if (kind == Q_BE4 || kind == Q_BE6)
		m->q_be[kind == Q_BE6]++;
	return 0;
}

static void q_release(struct lb_maps *m, const struct qent *e)
{
	switch (e->kind) {
	case Q_SLOTS:
		lb_bd_free(&m->slots_bd, e->v, e->order);
		break;
	case Q_BE4:
	case Q_BE6:
		(void)lb_ids_free(&m->be_ids[e->kind == Q_BE6], e->v);
		m->q_be[e->kind == Q_BE6]--;
		break;
	default:
		(void)lb_ids_free(&m->rn_ids, e->v);
	}
}

size_t lb_maps_grace(struct lb_maps *m)
{
	struct qlist old = m->q[1];

	for (size_t i = 0; i < old.n; i++)
		q_release(m, &old.v[i]);
	m->q[1] = m->q[0];
	m->q[0] = (struct qlist){.v = old.v, .cap = old.cap};
	if (old.n)
		m->released = 1;
	return old.n;
}

size_t lb_maps_quarantined(const struct lb_maps *m)
{
	return m->q[0].n + m->q[1].n;
}

/* A slab of room for n more frontends, now the current one. */
static int fe_slab_add(struct lb_maps *m, size_t n)
{
	struct fe_slab *sl = calloc(1, sizeof(*sl) + n * sizeof(struct fe_ent));

	if (!sl)
		return -ENOMEM;
	/* What the current slab has left is not lost: the spare list hands it out. */
	while (m->slabs && m->slabs->used < m->slabs->cap) {
		struct fe_ent *e = &m->slabs->e[m->slabs->used++];

		e->dnext = m->fe_spare;
		m->fe_spare = e;
	}
	sl->cap = n;
	sl->next = m->slabs;
	m->slabs = sl;
	return 0;
}

/* A zeroed frontend entry, or NULL. */
static struct fe_ent *fe_new(struct lb_maps *m)
{
	struct fe_ent *e = m->fe_spare;

	if (e) {
		m->fe_spare = e->dnext;
		memset(e, 0, sizeof(*e));
		return e;
	}
	if ((!m->slabs || m->slabs->used == m->slabs->cap) && fe_slab_add(m, FE_SLAB_MIN) < 0)
		return NULL;
	return &m->slabs->e[m->slabs->used++];
}

static void fe_free(struct lb_maps *m, struct fe_ent *e)
{
	if (e->bes != e->bes_in)
		free(e->bes);
	e->bes = NULL;
	e->dnext = m->fe_spare;
	m->fe_spare = e;
}

static void fe_dirty(struct lb_maps *m, struct fe_ent *e)
{
	if (e->dirty)
		return;
	e->dirty = true;
	e->dnext = m->fdirty;
	m->fdirty = e;
	m->n_fdirty++;
	m->n_fdirty_f[fam_idx(e->k.family)]++;
}

static void be_dirty(struct lb_maps *m, struct be_ent *b, int f, uint32_t id)
{
	if (b->dirty)
		return;
	b->dirty = true;
	m->be_dnext[f][id] = m->bdirty[f];
	m->bdirty[f] = id;
}


/* The frontend at k, whose hash in m->fes is h; created (unclaimed) if asked. */
static struct fe_ent *fe_get_h(struct lb_maps *m, const struct l4key *k, uint32_t h, bool create)
{
	struct fe_ent *e = (struct fe_ent *)lb_ht_find_h(&m->fes, k, h);
	uint32_t id;

	if (e || !create)
		return e;
	id = lb_ids_alloc(&m->rn_ids);
	if (!id) {
		m->full = k->family == 6 ? LBM_RN6 : LBM_RN4;
		return NULL;
	}
	e = fe_new(m);
	if (!e) {
		(void)lb_ids_free(&m->rn_ids, id);
		return NULL;
	}
	e->k = *k;
	e->n.h = h;
	e->rev_nat_id = id;
	e->order = e->porder = ORDER_NONE;
	if (lb_ht_insert_h(&m->fes, &e->n) < 0) {
		(void)lb_ids_free(&m->rn_ids, id);
		fe_free(m, e);
		return NULL;
	}
	m->n_fe[fam_idx(k->family)]++;
	return e;
}

static struct fe_ent *fe_get(struct lb_maps *m, const struct l4key *k, bool create)
{
	return fe_get_h(m, k, lb_ht_key_hash(&m->fes, k), create);
}

static uint32_t be_hash(const struct l4key *k)
{
	return lb_hash_words(k, sizeof(*k));
}

/* The backend's address, from the map's entry (family f, id in use). */
static void be_key(const struct lb_maps *m, int f, uint32_t id, struct l4key *k)
{
	memset(k, 0, sizeof(*k));
	if (f == 0) {
		k->family = 4;
		memcpy(k->addr, &m->be4[id].addr, 4);
		k->port = ntohs(m->be4[id].port);
		k->proto = m->be4[id].proto;
	} else {
		k->family = 6;
		memcpy(k->addr, m->be6[id].addr, 16);
		k->port = ntohs(m->be6[id].port);
		k->proto = m->be6[id].proto;
	}
}

static bool be_key_eq(const struct lb_maps *m, int f, uint32_t id, const struct l4key *k)
{
	if (f == 0)
		return !memcmp(&m->be4[id].addr, k->addr, 4) && m->be4[id].port == htons(k->port) &&
		       m->be4[id].proto == k->proto;
	return !memcmp(m->be6[id].addr, k->addr, 16) && m->be6[id].port == htons(k->port) &&
	       m->be6[id].proto == k->proto;
}

static uint8_t be_wstate(const struct lb_maps *m, int f, uint32_t id)
{
	return f == 0 ? m->be4[id].state : m->be6[id].state;
}

/*
 * A hash's first slot: the index is sized for its backends (load at most
 * 3/4), not rounded up to a power of two -- a million backends take 5.3 MB
 * of fresh pages, not 8 -- so the slot comes from the hash's high bits.
 */
static inline uint32_t bi_home(uint32_t h, uint32_t cap)
{
	return (uint32_t)(((uint64_t)h * cap) >> 32);
}

static inline uint32_t bi_next(uint32_t i, uint32_t cap)
{
	return i + 1 == cap ? 0 : i + 1;
}

#define BI_ID_BITS 25 /* ids index arrays of at most 1 << 25 entries (lb_maps_new) */
#define BI_ID_MASK ((1u << BI_ID_BITS) - 1)
#define BI_TAG(h) ((uint32_t)(h) & 63u) /* low bits: bi_home() takes the high ones */

static uint32_t bi_slot(uint32_t h, int f, uint32_t id)
{
	return BI_TAG(h) << (BI_ID_BITS + 1) | (uint32_t)f << BI_ID_BITS | id;
}

/* A slot's whole hash, from its backend's map entry (which holds the address). */
static uint32_t bi_slot_hash(const struct lb_maps *m, uint32_t v)
{
	struct l4key k;

	be_key(m, (int)(v >> BI_ID_BITS) & 1, v & BI_ID_MASK, &k);
	return be_hash(&k);
}

/* The id of the backend at k (hash h) in the family's index, or 0. */
static uint32_t bi_find(const struct lb_maps *m, const struct l4key *k, uint32_t h)
{
	int f = fam_idx(k->family);
	uint32_t want = bi_slot(h, f, 0);

	if (!m->bi)
		return 0;
	for (uint32_t i = bi_home(h, m->bi_cap);; i = bi_next(i, m->bi_cap)) {
		uint32_t v = m->bi[i];

		if (!v)
			return 0;
		if ((v & ~BI_ID_MASK) == want && be_key_eq(m, f, v & BI_ID_MASK, k))
			return v & BI_ID_MASK;
	}
}

static void bi_put(uint32_t *bi, uint32_t cap, uint32_t v, uint32_t h)
{
	uint32_t i = bi_home(h, cap);

	while (bi[i])
		i = bi_next(i, cap);
	bi[i] = v;
}

/*
 * Room for n backends at a load of at most 3/4 (probes stay short with a
 * mixing hash): n as asked when that is more than doubling (a sync's
 * reserve), else doubled (one by one).
 */
static int bi_reserve(struct lb_maps *m, size_t n)
{
	size_t cap = m->bi ? m->bi_cap : 0, ncap;
	uint32_t *nb;

	if (cap && cap * 3 >= 4 * n)
		return 0;
	ncap = (4 * n + 2) / 3 + 1;
	if (ncap < 2 * cap)
		ncap = 2 * cap;
	ncap = (ncap + 1023) & ~(size_t)1023; /* whole pages */
	if (ncap > (1ull << 31) || !(nb = calloc(ncap, sizeof(*nb))))
		return -ENOMEM;
	lb_populate_zeroed(nb, ncap * sizeof(*nb));
	for (size_t i = 0; i < cap; i++)
		if (m->bi[i])
			bi_put(nb, (uint32_t)ncap, m->bi[i], bi_slot_hash(m, m->bi[i]));
	free(m->bi);
	m->bi = nb;
	m->bi_cap = (uint32_t)ncap;
	return 0;
}

static int bi_insert(struct lb_maps *m, int f, uint32_t id, uint32_t h)
{
	int r;

	if ((r = bi_reserve(m, (size_t)m->bi_n + 1)) < 0)
		return r;
	bi_put(m->bi, m->bi_cap, bi_slot(h, f, id), h);
	m->bi_n++;
	return 0;
}

/*
 * Linear probing without tombstones: the entries after the hole move back
 * when they may. Before the map's entry is cleared: its address is the key.
 */
static void bi_remove(struct lb_maps *m, int f, uint32_t id)
{
	struct l4key k;
	uint32_t h, i, j, want;

	be_key(m, f, id, &k);
	h = be_hash(&k);
	want = bi_slot(h, f, id);
	i = bi_home(h, m->bi_cap);

	while (m->bi[i] && m->bi[i] != want)
		i = bi_next(i, m->bi_cap);
	if (!m->bi[i])
		return;
	m->bi[i] = 0;
	m->bi_n--;
	for (j = bi_next(i, m->bi_cap); m->bi[j]; j = bi_next(j, m->bi_cap)) {
		uint32_t home = bi_home(bi_slot_hash(m, m->bi[j]), m->bi_cap);

		/* Moves into the hole unless its home lies cyclically in (i, j]. */
		if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
			m->bi[i] = m->bi[j];
			m->bi[j] = 0;
			i = j;
		}
	}
}

static void bi_prefetch(const struct lb_maps *m, uint32_t h)
{
	if (m->bi)
		__builtin_prefetch(&m->bi[bi_home(h, m->bi_cap)]);
}

static int arr_cover(struct lb_maps *m, int id, uint32_t n);
static void be_store(struct lb_maps *m, int f, uint32_t id, const struct l4key *k, uint8_t state);

/*
 * The id of the backend at k (hash h); with create, a new one if it has
 * none: its map entry is written at once (nothing points at a new id).
 * 0: not found, or (create) m->full says which map is full, else no memory.
 */
static uint32_t be_get(struct lb_maps *m, const struct l4key *k, uint32_t h, bool create,
		       bool *ret_created)
{
	uint32_t id = bi_find(m, k, h);
	int f = fam_idx(k->family);

	if (id || !create)
		return id;
	id = lb_ids_alloc(&m->be_ids[f]);
	if (!id) {
		m->full = f ? LBM_BE6 : LBM_BE4;
		return 0;
	}
	if (arr_cover(m, f ? LBM_BE6 : LBM_BE4, id + 1) < 0 || bi_insert(m, f, id, h) < 0) {
		(void)lb_ids_free(&m->be_ids[f], id);
		return 0;
	}
	memset(&m->be[f][id], 0, sizeof(m->be[f][id]));
	m->be[f][id].used = true;
	be_store(m, f, id, k, LB_BS_ACTIVE);
	m->claim_stores++;
	if (ret_created)
		*ret_created = true;
	return id;
}

static const int arrays[] = {LBM_SLOTS, LBM_BE4, LBM_BE6, LBM_RN4, LBM_RN6};

static size_t arr_stride(int id)
{
	/* The kernel lays array elements out 8-byte aligned. */
	return (lb_map_defs[id].value_size + 7) & ~(size_t)7;
}

static void arr_typed(struct lb_maps *m)
{
	m->slots = m->arr[LBM_SLOTS];
	m->be4 = m->arr[LBM_BE4];
	m->be6 = m->arr[LBM_BE6];
	m->rn4 = m->arr[LBM_RN4];
	m->rn6 = m->arr[LBM_RN6];
}

/* Map elements [0, n) of array id (n <= max), replacing the current window. */
static int arr_map(struct lb_maps *m, int id, uint32_t n)
{
	long pg = sysconf(_SC_PAGESIZE);
	size_t len = ((size_t)n * arr_stride(id) + (size_t)pg - 1) & ~((size_t)pg - 1);
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd[id], 0);

	if (p == MAP_FAILED)
		return -errno;
	if (m->arr[id])
		munmap(m->arr[id], m->len[id]);
	m->arr[id] = p;
	m->len[id] = len;
	/* What the pages hold, up to the array's end. */
	m->mapped[id] = (uint32_t)(len / arr_stride(id) < m->max[id] ? len / arr_stride(id) : m->max[id]);
	arr_typed(m);
	return 0;
}

/*
 * The window of array id covers elements [0, n): grown if it does not, by a
 * quarter more than asked (its pages are RSS: doubling would map up to twice
 * what is used; a remap costs little).
 */
static int arr_cover(struct lb_maps *m, int id, uint32_t n)
{
	uint64_t want;

	if (n > m->max[id])
		n = m->max[id];
	if (n <= m->mapped[id])
		return 0; /* also nothing to map yet (n 0) */
	want = (uint64_t)n + n / 4;
	return arr_map(m, id, (uint32_t)(want < m->max[id] ? want : m->max[id]));
}

/* Before a flush writes: every id and slot range handed out is in a window. */
static int arr_cover_all(struct lb_maps *m)
{
	int r;

	if ((r = arr_cover(m, LBM_SLOTS, m->slots_hw)) < 0 ||
	    (r = arr_cover(m, LBM_BE4, m->be_ids[0].fresh)) < 0 ||
	    (r = arr_cover(m, LBM_BE6, m->be_ids[1].fresh)) < 0 ||
	    (r = arr_cover(m, LBM_RN4, m->rn_ids.fresh)) < 0 ||
	    (r = arr_cover(m, LBM_RN6, m->rn_ids.fresh)) < 0)
		return r;
	return 0;
}

/* How large the kernel made the array (what it holds decides the ids and ranges there are). */
static int arr_size(struct lb_maps *m, int id)
{
	struct bpf_map_info info = {0};
	__u32 ilen = sizeof(info);

	if (m->fd[id] < 0 || bpf_obj_get_info_by_fd(m->fd[id], &info, &ilen) < 0)
		return -EINVAL;
	if (info.type != BPF_MAP_TYPE_ARRAY || !(info.map_flags & BPF_F_MMAPABLE) ||
	    !info.max_entries || info.value_size != lb_map_defs[id].value_size)
		return -EINVAL;
	m->max[id] = info.max_entries;
	return 0;
}

/*
 * An array of n zeroed elements whose pages are brought in only as they are
 * written: mapped, not calloc'd -- calloc hands out heap memory it clears
 * (every page resident) once malloc's mmap threshold has grown past the
 * size, as it does when the agent frees a large block. Sized for the
 * maps' max_entries, these arrays are mostly never touched (so no swap or
 * commit is reserved for all of them: MAP_NORESERVE).
 */
static void *zarray(size_t n, size_t esz)
{
	void *p = mmap(NULL, n * esz, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static void zarray_free(void *p, size_t n, size_t esz)
{
	if (p)
		munmap(p, n * esz);
}

int lb_maps_new(const int fd[LBM_N], const uint32_t max[LBM_N], struct lb_maps **ret_m)
{
	struct lb_maps *m = calloc(1, sizeof(*m));
	uint32_t rn_max;
	int r;

	if (!m)
		return -ENOMEM;
	memcpy(m->fd, fd, sizeof(m->fd));
	memcpy(m->max, max, sizeof(m->max));
	m->fes.koff = sizeof(struct lb_node);
	m->fes.ksz = sizeof(struct l4key);
	m->full = -1;
	for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++)
		if ((r = arr_size(m, arrays[i])) < 0)
			goto fail;
	/* The backend index keeps ids in BI_ID_BITS (backends_max is at most 1 << 24). */
	r = -E2BIG;
	if (m->max[LBM_BE4] > BI_ID_MASK + 1u || m->max[LBM_BE6] > BI_ID_MASK + 1u)
		goto fail;
	r = -ENOMEM;
	for (int f = 0; f < 2; f++) {
		uint32_t n = m->max[f ? LBM_BE6 : LBM_BE4];

		if (!(m->be[f] = zarray(n, sizeof(*m->be[f]))) ||
		    !(m->be_dnext[f] = zarray(n, sizeof(*m->be_dnext[f]))) ||
		    !(m->be_mark[f] = zarray(n, sizeof(*m->be_mark[f]))))
			goto fail;
	}
	m->be_ids[0] = (struct lb_ids){.max = m->max[LBM_BE4], .fresh = 1};
	m->be_ids[1] = (struct lb_ids){.max = m->max[LBM_BE6], .fresh = 1};
	/* One rev_nat_id space: an id indexes the array of its frontend's family. */
	rn_max = m->max[LBM_RN4] < m->max[LBM_RN6] ? m->max[LBM_RN4] : m->max[LBM_RN6];
	m->rn_ids = (struct lb_ids){.max = rn_max, .fresh = 1};
	if ((r = lb_bd_init(&m->slots_bd, m->max[LBM_SLOTS])) < 0)
		goto fail;
	*ret_m = m;
	return 0;
fail:
	lb_maps_free(m);
	return r;
}


void lb_maps_free(struct lb_maps *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++)
		if (m->arr[arrays[i]])
			munmap(m->arr[arrays[i]], m->len[arrays[i]]);
	lb_ht_foreach(&m->fes, n, nx) fe_free(m, (struct fe_ent *)n);
	while (m->slabs) {
		struct fe_slab *sl = m->slabs;

		m->slabs = sl->next;
		free(sl);
	}
	free(m->fes.b);
	free(m->bi);
	free(m->reap);
	for (int f = 0; f < 2; f++) {
		zarray_free(m->be[f], m->max[f ? LBM_BE6 : LBM_BE4], sizeof(*m->be[f]));
		zarray_free(m->be_dnext[f], m->max[f ? LBM_BE6 : LBM_BE4], sizeof(*m->be_dnext[f]));
		zarray_free(m->be_mark[f], m->max[f ? LBM_BE6 : LBM_BE4], sizeof(*m->be_mark[f]));
		free(m->be_ids[f].free);
		free(m->be_ids[f].adopted);
	}
	free(m->rn_ids.free);
	free(m->rn_ids.adopted);
	lb_bd_free_all(&m->slots_bd);
	free(m->q[0].v);
	free(m->q[1].v);
	free(m->undo);
	for (int i = 0; i < 4; i++)
		free(m->orphans[i]);
	free(m);
}

/* --- adoption ---------------------------------------------------------------- */

/*
 * Every entry of a hash map, in batches (BPF_MAP_LOOKUP_BATCH: a handful of
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

	(void)vsz;
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

/* orphans[2]: a rev_nat_id with these bits. */
#define ORPHAN_V6 0x80000000u	 /* the entry is in lb6_revnat */
#define ORPHAN_OWNED 0x40000000u /* an adopted frontend (of the other family) has the id */

static int orphan_add(struct lb_maps *m, int which, uint32_t v)
{
	uint32_t *nv = realloc(m->orphans[which], (m->n_orphans[which] + 1) * sizeof(*nv));

	if (!nv)
		return -ENOMEM;
	m->orphans[which] = nv;
	nv[m->n_orphans[which]++] = v;
	return 0;
}

/* A backend found in its array: adopted with its id, or (a second id for it) an orphan. */
static int adopt_backends(struct lb_maps *m, int f)
{
	for (uint32_t id = 1; id < m->be_ids[f].max; id++) {
		struct l4key k = {.family = f ? 6 : 4};
		struct be_ent *b;
		uint8_t state;

		if (f == 0) {
			const struct lb4_backend *v = &m->be4[id];

			if (!v->proto)
				continue;
			memcpy(k.addr, &v->addr, 4);
			k.port = ntohs(v->port);
			k.proto = v->proto;
			state = v->state;
		} else {
			const struct lb6_backend *v = &m->be6[id];

			if (!v->proto)
				continue;
			memcpy(k.addr, v->addr, 16);
			k.port = ntohs(v->port);
			k.proto = v->proto;
			state = v->state;
		}
		if (!lb_ids_adopt(&m->be_ids[f], id))
			return -ENOMEM;
		if (bi_find(m, &k, be_hash(&k))) {
			int r = orphan_add(m, f, id);

			if (r < 0)
				return r;
			continue;
		}
		b = &m->be[f][id];
		b->used = true;
		b->state = state;
		if (bi_insert(m, f, id, be_hash(&k)) < 0)
			return -ENOMEM;
	}
	return 0;
}

static int adopt_masters_cb(struct lb_maps *m, int fam, const void *keys, const void *vals,
			    uint32_t n)
{
	const struct lb_svc_val *v = vals;

	for (uint32_t i = 0; i < n; i++) {
		struct l4key k = {.family = (uint8_t)fam};
		struct fe_ent *e;

		if (fam == 4) {
			const struct lb4_key *k4 = (const struct lb4_key *)keys + i;

			memcpy(k.addr, &k4->addr, 4);
			k.port = ntohs(k4->port);
			k.proto = k4->proto;
		} else {
			const struct lb6_key *k6 = (const struct lb6_key *)keys + i;

			memcpy(k.addr, k6->addr, 16);
			k.port = ntohs(k6->port);
			k.proto = k6->proto;
		}
		e = fe_new(m);
		if (!e)
			return -ENOMEM;
		e->k = k;
		e->in_map = true;
		e->wmaster = v[i];
		e->order = e->porder = ORDER_NONE;
		/* A duplicate or impossible id gets a new one once all are known. */
		e->rev_nat_id = lb_ids_adopt(&m->rn_ids, v[i].rev_nat_id) ? v[i].rev_nat_id : 0;
		/* Its reverse NAT entry counts only if it names this frontend (rewritten if not). */
		if (e->rev_nat_id) {
			uint32_t id = e->rev_nat_id;

			e->rn_in_map =
				fam == 4 ? !memcmp(&m->rn4[id].addr, k.addr, 4) &&
						   m->rn4[id].port == htons(k.port) && m->rn4[id].proto == k.proto
					 : !memcmp(m->rn6[id].addr, k.addr, 16) &&
						   m->rn6[id].port == htons(k.port) && m->rn6[id].proto == k.proto;
		}
		/*
		 * Its slot range, unless it overlaps another one or does not fit
		 * (the map was written by something else): then the next write
		 * gives it a new range.
		 */
		if (v[i].slot_order != ORDER_NONE &&
		    (v[i].count > (1ull << (v[i].slot_order & 31)) ||
		     lb_bd_reserve(&m->slots_bd, v[i].slot_base, v[i].slot_order) < 0)) {
			e->unsure = true;
			/* Until its master is rewritten it points there: see stale_reserve(). */
			if (v[i].slot_order <= STALE_ORDER_MAX &&
			    orphan_add(m, 3, v[i].slot_base) == 0 &&
			    orphan_add(m, 3, v[i].slot_order) < 0)
				m->n_orphans[3]--;
		} else if (v[i].slot_order != ORDER_NONE) {
			e->base = v[i].slot_base;
			e->order = v[i].slot_order;
			if (e->base + (1u << e->order) > m->slots_hw)
				m->slots_hw = e->base + (1u << e->order);
		}
		if (lb_ht_insert(&m->fes, &e->n) < 0) {
			fe_free(m, e);
			return -ENOMEM;
		}
		m->n_fe[fam == 6]++;
	}
	return 0;
}

/*
 * Reverse NAT entries: the owner's, or left by a crash between writes (no
 * frontend has the id, or one of the other family has it): cleared by the
 * prune. owner[id] is 4 or 6 for an adopted frontend's id.
 */
static int adopt_revnat(struct lb_maps *m, const uint8_t *owner)
{
	int r;

	for (uint32_t id = 1; id < m->rn_ids.max; id++) {
		bool v4 = m->rn4[id].proto != 0, v6 = m->rn6[id].proto != 0;
		uint32_t owned = owner[id] ? ORPHAN_OWNED : 0;

		if (!owner[id] && (v4 || v6) && !lb_ids_adopt(&m->rn_ids, id))
			return -ENOMEM;
		if (v4 && owner[id] != 4 && (r = orphan_add(m, 2, id | owned)) < 0)
			return r;
		if (v6 && owner[id] != 6 && (r = orphan_add(m, 2, id | owned | ORPHAN_V6)) < 0)
			return r;
	}
	return 0;
}

/*
 * A master that could not keep its range (it overlaps another's, or its
 * count exceeds it) still points at it until it is rewritten or pruned: the
 * free slots in it are taken now and wait out a grace period, so no new
 * frontend is given a slot the old master can still read. Done after all
 * masters are read, so a valid range never loses to a stale one.
 */
static void stale_reserve(struct lb_maps *m)
{
	for (size_t i = 0; i + 1 < m->n_orphans[3]; i += 2) {
		uint32_t base = m->orphans[3][i], order = m->orphans[3][i + 1];

		for (uint64_t s = base; s < (uint64_t)base + (1u << order) && s < m->slots_bd.size;
		     s++)
			if (lb_bd_reserve(&m->slots_bd, (uint32_t)s, 0) == 0) {
				(void)q_add(m, Q_SLOTS, (uint32_t)s, 0);
				if (s + 1 > m->slots_hw)
					m->slots_hw = (uint32_t)s + 1;
			}
	}
	free(m->orphans[3]);
	m->orphans[3] = NULL;
	m->n_orphans[3] = 0;
}

int lb_maps_adopt(struct lb_maps *m, uint32_t *ret_backends)
{
	uint8_t *owner = calloc(m->rn_ids.max ? m->rn_ids.max : 1, 1);
	int r;

	if (!owner)
		return -ENOMEM;
	/* The arrays whole while they are read; only what is in use stays mapped. */
	for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++)
		if ((r = arr_map(m, arrays[i], m->max[arrays[i]])) < 0)
			goto out;
	if ((r = adopt_backends(m, 0)) < 0 || (r = adopt_backends(m, 1)) < 0 ||
	    (r = map_walk(m, LBM_SVC4, 4, adopt_masters_cb)) < 0 ||
	    (r = map_walk(m, LBM_SVC6, 6, adopt_masters_cb)) < 0)
		goto out;
	lb_ht_foreach(&m->fes, n, nx) {
		struct fe_ent *e = (struct fe_ent *)n;

		(void)nx;
		if (e->rev_nat_id)
			owner[e->rev_nat_id] = e->k.family;
	}
	stale_reserve(m);
	if ((r = adopt_revnat(m, owner)) < 0 || (r = lb_ids_adopted(&m->be_ids[0])) < 0 ||
	    (r = lb_ids_adopted(&m->be_ids[1])) < 0 || (r = lb_ids_adopted(&m->rn_ids)) < 0)
		goto out;
	lb_ht_foreach(&m->fes, n, nx) {
		struct fe_ent *e = (struct fe_ent *)n;

		(void)nx;
		if (!e->rev_nat_id) {
			e->rev_nat_id = lb_ids_alloc(&m->rn_ids);
			e->unsure = true;
		}
	}
	for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++) {
		int id = arrays[i];
		uint32_t n = id == LBM_SLOTS ? m->slots_hw
			     : id == LBM_BE4 ? m->be_ids[0].fresh
			     : id == LBM_BE6 ? m->be_ids[1].fresh
					     : m->rn_ids.fresh;

		/* A window that cannot shrink stays whole: memory, not state. */
		(void)arr_map(m, id, n ? n : 1);
	}
	if (ret_backends)
		*ret_backends = m->be_ids[0].n_used + m->be_ids[1].n_used;
	m->adopted = m->fes.n || m->be_ids[0].n_used || m->be_ids[1].n_used;
	r = (int)m->fes.n;
out:
	free(owner);
	return r;
}

/* --- claims ------------------------------------------------------------------- */

static void fe_release(struct lb_maps *m, struct fe_ent *e)
{
	for (uint32_t i = 0; i < e->n_all; i++) {
		int f = fam_idx(e->k.family);
		struct be_ent *b = &m->be[f][e->bes[i]];

		if (b->refs && --b->refs == 0)
			be_dirty(m, b, f, e->bes[i]);
	}
	e->n_all = e->n_sel = 0;
	e->owner = NULL;
	m->released = 1;
	fe_dirty(m, e);
}

/*
 * A pending range goes back. One that a failed flush may have written a
 * master to (the frontend is unsure) waits out the grace period like any
 * range a master pointed at; otherwise nothing ever read it.
 */
static void pending_free(struct lb_maps *m, struct fe_ent *e)
{
	if (e->porder == ORDER_NONE)
		return;
	if (e->unsure)
		(void)q_add(m, Q_SLOTS, e->pbase, e->porder);
	else
		lb_bd_free(&m->slots_bd, e->pbase, e->porder);
	e->porder = ORDER_NONE;
}

static uint32_t range_cap(uint8_t order)
{
	return order == ORDER_NONE ? 0 : 1u << order;
}

/*
 * Room for n_sel slots: the range in the map if it is large enough, else a
 * pending one (allocated now, so that a service that does not fit is
 * refused before anything is written).
 */
static int fe_room(struct lb_maps *m, struct fe_ent *e)
{
	unsigned o;
	uint32_t base;

	if (e->n_sel <= range_cap(e->order) || e->n_sel <= range_cap(e->porder))
		return 0;
	o = lb_order_for(e->n_sel);
	base = lb_bd_alloc(&m->slots_bd, o);
	if (base == LB_NIL) {
		m->full = LBM_SLOTS;
		return -ENOSPC;
	}
	/* A smaller pending range: never written to the map, unless a flush failed. */
	pending_free(m, e);
	e->pbase = base;
	e->porder = (uint8_t)o;
	if (base + (1u << o) > m->slots_hw)
		m->slots_hw = base + (1u << o);
	return 0;
}

/* A backend's wanted state, as a claim sets it: undone if the claim is. */
static int be_set_state(struct lb_maps *m, int f, uint32_t id, uint8_t state)
{
	struct be_ent *b = &m->be[f][id];

	if (b->state == state)
		return 0;
	if (m->n_undo == m->cap_undo) {
		size_t cap = m->cap_undo ? m->cap_undo * 2 : 64;
		struct be_undo *u = realloc(m->undo, cap * sizeof(*u));

		if (!u)
			return -ENOMEM;
		m->undo = u;
		m->cap_undo = cap;
	}
	m->undo[m->n_undo++] = (struct be_undo){id, (uint8_t)f, b->state};
	b->state = state;
	if (be_wstate(m, f, id) != state)
		be_dirty(m, b, f, id);
	return 0;
}

static void undo_states(struct lb_maps *m)
{
	while (m->n_undo) {
		const struct be_undo *u = &m->undo[--m->n_undo];
		struct be_ent *b = &m->be[u->f][u->id];

		b->state = u->prev;
		if (be_wstate(m, u->f, u->id) != b->state)
			be_dirty(m, b, u->f, u->id);
	}
}

#define CLAIM_GROUP 16

/* A frontend's key and its hash in m->fes, worked out once per change (lb_maps_service_set). */
struct fe_look {
	struct l4key k;
	uint32_t h;
};

static void fe_look_make(const struct lb_maps *m, const struct lb_fe *fe, struct fe_look *l)
{
	l4key_make(&l->k, &fe->ip, fe->port, fe->proto);
	l->h = lb_ht_key_hash(&m->fes, &l->k);
}

/* l: fe's key and hash, or NULL to work them out. */
static int fe_claim(struct lb_maps *m, const char *owner, const struct lb_svc *s,
		    const struct lb_fe *fe, const struct fe_look *l)
{
	struct fe_look own;
	struct fe_ent *e;
	uint32_t *bes;
	int f;

	if (!l) {
		fe_look_make(m, fe, &own);
		l = &own;
	}
	e = fe_get_h(m, &l->k, l->h, true);
	if (!e)
		return m->full >= 0 ? -ENOSPC : -ENOMEM;
	/* Dirty before anything can fail: a new entry nobody ends up owning is freed by the flush. */
	fe_dirty(m, e);
	f = fam_idx(l->k.family);
	if (fe->n_be <= sizeof(e->bes_in) / sizeof(e->bes_in[0])) {
		if (e->bes != e->bes_in)
			free(e->bes);
		e->bes = e->bes_in;
	} else {
		bes = realloc(e->bes == e->bes_in ? NULL : e->bes, fe->n_be * sizeof(*bes));
		if (!bes)
			return -ENOMEM;
		e->bes = bes;
	}
	e->owner = owner;
	e->n_all = e->n_sel = 0;
	/*
	 * Backends in groups: hash the group and prefetch its index slots, then
	 * look each up -- the cache misses of a group overlap instead of
	 * adding up.
	 */
	for (size_t g = 0; g < fe->n_be; g += CLAIM_GROUP) {
		size_t n = fe->n_be - g < CLAIM_GROUP ? fe->n_be - g : CLAIM_GROUP;
		struct l4key keys[CLAIM_GROUP];
		uint32_t hs[CLAIM_GROUP];

		for (size_t i = 0; i < n; i++) {
			const struct lb_be *be = &fe->be[g + i];

			l4key_make(&keys[i], &be->ip, be->port, fe->proto);
			hs[i] = s->be_hashed ? be->hash : be_hash(&keys[i]);
			bi_prefetch(m, hs[i]);
		}
		for (size_t i = 0; i < n; i++) {
			const struct lb_be *be = &fe->be[g + i];
			uint32_t id = be_get(m, &keys[i], hs[i], true, NULL);
			struct be_ent *b;

			if (!id)
				return m->full >= 0 ? -ENOSPC : -ENOMEM;
			b = &m->be[f][id];
			b->refs++;
			e->bes[e->n_all++] = id;
			if (be_set_state(m, f, id,
					 be->state == LB_BE_TERMINATING ? LB_BS_TERMINATING
									: LB_BS_ACTIVE) < 0)
				return -ENOMEM;
			if (g + i < fe->n_sel)
				e->n_sel++;
		}
	}
	e->flags = (s->flags & LB_SVCF_AFFINITY ? LB_F_AFFINITY : 0) |
		   (s->flags & LB_SVCF_ITP_LOCAL ? LB_F_ITP_LOCAL : 0);
	e->alg = s->algorithm == LB_ALG_MAGLEV ? LB_A_MAGLEV : LB_A_RANDOM;
	e->timeout = s->flags & LB_SVCF_AFFINITY ? s->affinity_timeout : 0;
	return fe_room(m, e);
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

/* look[i]: frontend i's key and hash, for the first n_look of them. */
static int svc_claim(struct lb_maps *m, const char *owner, const struct lb_svc *s,
		     const struct fe_look *look, size_t n_look)
{
	int r;

	for (size_t i = 0; s && i < s->n_fe; i++)
		if ((r = fe_claim(m, owner, s, &s->fe[i], i < n_look ? &look[i] : NULL)) < 0)
			return r;
	return 0;
}

/* The masters map that would overflow (upserts go before deletes), or -1. */
static int over_capacity(const struct lb_maps *m)
{
	if (m->n_fe[0] > m->max[LBM_SVC4])
		return LBM_SVC4;
	if (m->n_fe[1] > m->max[LBM_SVC6])
		return LBM_SVC6;
	return -1;
}

void lb_maps_reserve(struct lb_maps *m, size_t n_fe, const size_t n_be[2])
{
	/* Only a hint: a table that cannot grow now grows later, entry by entry. */
	size_t room = m->slabs ? m->slabs->cap - m->slabs->used : 0;

	(void)lb_ht_reserve(&m->fes, m->fes.n + n_fe);
	(void)bi_reserve(m, (size_t)m->bi_n + n_be[0] + n_be[1]);
	/* More frontends than there are now are new: one slab for them. */
	if (n_fe > m->fes.n && n_fe - m->fes.n > room && n_fe - m->fes.n > FE_SLAB_MIN &&
	    fe_slab_add(m, n_fe - m->fes.n) == 0)
		room = m->slabs->cap;
	m->pf_fe = m->slabs ? &m->slabs->e[m->slabs->used] : NULL;
	m->pf_n_fe = room;
	/*
	 * New backends take fresh ids, upward: the entries lb_maps_prefault()
	 * brings in. More backends than the family has now are new (a restart
	 * that adopted them all brings in nothing).
	 */
	for (int f = 0; f < 2; f++) {
		struct lb_ids *x = &m->be_ids[f];
		size_t add = n_be[f] > x->n_used ? n_be[f] - x->n_used : 0;

		m->pf_from[f] = x->fresh;
		m->pf_to[f] = (uint32_t)(add < x->max - x->fresh ? x->fresh + add : x->max);
	}
}

/* [p + len * from / n, p + len * to / n) brought in: part of a range, in proportion. */
static void populate_part(void *p, size_t len, size_t from, size_t to, size_t n)
{
	size_t a = (size_t)((unsigned __int128)len * from / n);
	size_t b = (size_t)((unsigned __int128)len * to / n);

	if (b > a)
		(void)lb_populate((char *)p + a, b - a);
}

void lb_maps_prefault(struct lb_maps *m, size_t from, size_t to, size_t n)
{
	if (!n || from >= to || to > n)
		return;
	if (m->pf_fe)
		populate_part(m->pf_fe, m->pf_n_fe * sizeof(*m->pf_fe), from, to, n);
	for (int f = 0; f < 2; f++)
		if (m->pf_to[f] > m->pf_from[f])
			populate_part(&m->be[f][m->pf_from[f]],
				      (size_t)(m->pf_to[f] - m->pf_from[f]) * sizeof(struct be_ent),
				      from, to, n);
}

/*
 * What a claimed frontend held before a service's change: its backend ids
 * (a copy, allocated before anything changes, so that going back needs no
 * allocation) and settings. The previous translation is not needed for
 * that: the caller may hand it back without its backends (lb_svc_view()).
 */
struct fe_snap {
	struct fe_ent *e;
	uint32_t *bes; /* n_all ids; in[] when there are two or fewer */
	uint32_t in[2];
	uint32_t n_sel, n_all, timeout;
	uint8_t flags, alg;
};

#define SNAP_SMALL 4

static void snap_free(struct fe_snap *v, size_t n, const struct fe_snap *small)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].bes != v[i].in)
			free(v[i].bes);
	if (v != small)
		free(v);
}

/* The frontends of old that owner holds. -ENOMEM: nothing taken. */
static int snap_take(struct lb_maps *m, const char *owner, const struct lb_svc *old,
		     struct fe_snap *small, struct fe_snap **ret_v, size_t *ret_n)
{
	size_t n_fe = old ? old->n_fe : 0, n = 0;
	struct fe_snap *v = n_fe <= SNAP_SMALL ? small : malloc(n_fe * sizeof(*v));

	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n_fe; i++) {
		struct l4key k;
		struct fe_ent *e;
		struct fe_snap *x;

		l4key_make(&k, &old->fe[i].ip, old->fe[i].port, old->fe[i].proto);
		e = fe_get(m, &k, false);
		if (!e || e->owner != owner)
			continue;
		x = &v[n];
		*x = (struct fe_snap){.e = e, .bes = x->in, .n_sel = e->n_sel, .n_all = e->n_all,
				      .timeout = e->timeout, .flags = e->flags, .alg = e->alg};
		if (e->n_all > 2 && !(x->bes = malloc(e->n_all * sizeof(*x->bes)))) {
			snap_free(v, n, small);
			return -ENOMEM;
		}
		memcpy(x->bes, e->bes, e->n_all * sizeof(*x->bes));
		n++;
	}
	*ret_v = v;
	*ret_n = n;
	return 0;
}

/* Undo a failed change (after its frontends were released): each snapshot is held again. */
static void snap_restore(struct lb_maps *m, const char *owner, struct fe_snap *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct fe_snap *x = &v[i];
		struct fe_ent *e = x->e;
		int f = fam_idx(e->k.family);

		if (e->bes != e->bes_in)
			free(e->bes);
		if (x->bes == x->in) {
			memcpy(e->bes_in, x->in, sizeof(x->in));
			e->bes = e->bes_in;
		} else {
			e->bes = x->bes; /* taken over */
			x->bes = x->in;
		}
		for (uint32_t j = 0; j < x->n_all; j++)
			m->be[f][e->bes[j]].refs++;
		e->owner = owner;
		e->n_sel = x->n_sel;
		e->n_all = x->n_all;
		e->timeout = x->timeout;
		e->flags = x->flags;
		e->alg = x->alg;
		fe_dirty(m, e);
	}
}

#define FE_LOOK 8

int lb_maps_service_set(struct lb_maps *m, const char *owner, const struct lb_svc *old,
			const struct lb_svc *new, char **ret_err)
{
	char buf[LB_ADDR_STRLEN + 8], *msg = NULL;
	struct fe_snap small[SNAP_SMALL], *snap;
	/* The keys the check below works out, kept for the claims (most services have few). */
	struct fe_look look[FE_LOOK];
	size_t n_snap, n_look = 0;
	int r, full;

	for (size_t i = 0; new && i < new->n_fe; i++) {
		struct fe_look own, *l = i < FE_LOOK ? &look[n_look++] : &own;
		struct fe_ent *e;

		fe_look_make(m, &new->fe[i], l);
		e = fe_get_h(m, &l->k, l->h, false);
		if (e && e->owner && e->owner != owner) {
			if (asprintf(&msg, "frontend %s is already used by service %s",
				     l4key_str(&l->k, buf, sizeof(buf)), e->owner) < 0)
				msg = NULL;
			*ret_err = msg;
			return -EADDRINUSE;
		}
	}
	if ((r = snap_take(m, owner, old, small, &snap, &n_snap)) < 0) {
		*ret_err = NULL;
		return r;
	}
	m->full = -1;
	m->n_undo = 0;
	svc_release(m, owner, old);
	r = svc_claim(m, owner, new, look, n_look);
	full = r == -ENOSPC ? m->full : r < 0 ? -1 : over_capacity(m);
	if (r < 0 || full >= 0) {
		/*
		 * Back to where we were. That needs no allocation: until a flush,
		 * released frontends and backends keep their ids and ranges, and
		 * the snapshots hold what the frontends had.
		 */
		svc_release(m, owner, new);
		undo_states(m);
		snap_restore(m, owner, snap, n_snap);
		if (full >= 0) {
			uint32_t cap = m->max[full];

			if (full != LBM_SVC4 && full != LBM_SVC6 && full != LBM_SLOTS)
				cap--; /* id 0 is never used */
			if (asprintf(&msg, "map %s is full (max_entries %u%s): service %s not programmed",
				     lb_map_defs[full].name, cap,
				     lb_maps_quarantined(m) ? ", some freed ones in their grace period" : "",
				     owner) < 0)
				msg = NULL;
			r = -ENOSPC;
		}
		*ret_err = msg;
	}
	m->n_undo = 0;
	snap_free(snap, n_snap, small);
	return r < 0 ? r : 0;
}
/* --- the writer ---------------------------------------------------------------- */

/* A growing array of keys (and values) for one map. */
struct ops {
	char *k, *v;
	uint32_t n, cap, ksz, vsz;
	/* Another thread reads k and v (a streamed flush): full is an error, not a move. */
	bool fixed;
};

/* Room for n entries, so that ops_add() moves nothing (another thread reads them). */
static int ops_reserve(struct ops *o, uint32_t n)
{
	char *nk, *nv;

	if (o->cap >= n)
		return 0;
	if (!(nk = realloc(o->k, (size_t)n * o->ksz)))
		return -ENOMEM;
	o->k = nk;
	if (o->vsz) {
		if (!(nv = realloc(o->v, (size_t)n * o->vsz)))
			return -ENOMEM;
		o->v = nv;
	}
	o->cap = n;
	return 0;
}

static int ops_add(struct ops *o, const void *k, const void *v)
{
	int r;

	if (o->n == o->cap) {
		if (o->fixed)
			return -EOVERFLOW;
		if ((r = ops_reserve(o, o->cap ? o->cap * 2 : 256)) < 0)
			return r;
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
	if (total >= STEP_PARALLEL_MIN)
		spawned = lb_thread_spawn(&t, half_run, &b);
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


static void svc_key(const struct l4key *k, struct lb4_key *k4, struct lb6_key *k6)
{
	if (k->family == 4) {
		memset(k4, 0, sizeof(*k4));
		memcpy(&k4->addr, k->addr, 4);
		k4->port = htons(k->port);
		k4->proto = k->proto;
	} else {
		memset(k6, 0, sizeof(*k6));
		memcpy(k6->addr, k->addr, 16);
		k6->port = htons(k->port);
		k6->proto = k->proto;
	}
}

static void be_store(struct lb_maps *m, int f, uint32_t id, const struct l4key *k, uint8_t state)
{
	if (f == 0) {
		struct lb4_backend v = {.port = htons(k->port), .proto = k->proto, .state = state};

		memcpy(&v.addr, k->addr, 4);
		m->be4[id] = v;
	} else {
		struct lb6_backend v = {.port = htons(k->port), .proto = k->proto, .state = state};

		memcpy(v.addr, k->addr, 16);
		m->be6[id] = v;
	}
}

/* A backend's state changes in place: one byte, read by the datapath as old or new. */
static void be_store_state(struct lb_maps *m, int f, uint32_t id, uint8_t state)
{
	if (f == 0)
		__atomic_store_n(&m->be4[id].state, state, __ATOMIC_RELAXED);
	else
		__atomic_store_n(&m->be6[id].state, state, __ATOMIC_RELAXED);
}

static void rn_store(struct lb_maps *m, const struct fe_ent *e)
{
	if (e->k.family == 4) {
		struct lb4_revnat v = {.port = htons(e->k.port), .proto = e->k.proto};

		memcpy(&v.addr, e->k.addr, 4);
		m->rn4[e->rev_nat_id] = v;
	} else {
		struct lb6_revnat v = {.port = htons(e->k.port), .proto = e->k.proto};

		memcpy(v.addr, e->k.addr, 16);
		m->rn6[e->rev_nat_id] = v;
	}
}

static void rn_clear(struct lb_maps *m, uint32_t id, int f)
{
	if (f == 0)
		memset(&m->rn4[id], 0, sizeof(m->rn4[id]));
	else
		memset(&m->rn6[id], 0, sizeof(m->rn6[id]));
}

static void slot_store(struct lb_maps *m, uint32_t i, uint32_t id)
{
	/* One aligned store: a program reading the slot sees the old id or the new one. */
	__atomic_store_n(&m->slots[i].backend_id, id, __ATOMIC_RELAXED);
}

/*
 * Fill the frontend's slots. In its current range a backend that stays
 * keeps its slot (a scale change rewrites only the slots it must, and
 * affinity, which remembers the slot, holds); a new range is filled in
 * order. Returns the slots written.
 */
static uint32_t plan_slots(struct lb_maps *m, struct fe_ent *e, uint32_t base, bool in_place)
{
	int f = fam_idx(e->k.family);
	struct be_ent *bea = m->be[f];
	uint32_t *mark = m->be_mark[f];
	/*
	 * Three marks of this call alone: wanted, in an old slot (placed), and
	 * given its slot (done). The next call starts above done: a backend
	 * done here is not wanted there unless that frontend wants it too.
	 */
	uint32_t wanted, placed, done;
	uint32_t old_n = 0, n = 0, j = 0;

	if (m->mark > UINT32_MAX - 3) {
		/* Wrapping: no old mark may look like a new one. */
		for (int g = 0; g < 2; g++)
			memset(m->be_mark[g], 0, m->be_ids[g].fresh * sizeof(*m->be_mark[g]));
		m->mark = 0;
	}
	wanted = m->mark += 3;
	placed = wanted + 1;
	done = wanted + 2;

	if (!in_place) {
		for (uint32_t s = 0; s < e->n_sel; s++)
			slot_store(m, base + s, e->bes[s]);
		return e->n_sel;
	}
	old_n = e->wmaster.count < range_cap(e->order) ? e->wmaster.count : range_cap(e->order);
	for (uint32_t s = 0; s < e->n_sel; s++)
		mark[e->bes[s]] = wanted;
	for (uint32_t s = 0; s < e->n_sel && s < old_n; s++) {
		uint32_t id = m->slots[base + s].backend_id;

		if (id && id < m->be_ids[f].max && bea[id].used && mark[id] == wanted)
			mark[id] = placed;
	}
	for (uint32_t s = 0; s < e->n_sel; s++) {
		uint32_t id = s < old_n ? m->slots[base + s].backend_id : 0;

		if (id && id < m->be_ids[f].max && bea[id].used && mark[id] == placed) {
			mark[id] = done; /* kept here: not twice */
			continue;
		}
		while (mark[e->bes[j]] != wanted)
			j++;
		mark[e->bes[j]] = done;
		slot_store(m, base + s, e->bes[j]);
		n++;
	}
	return n;
}

struct plan {
	struct ops master_up[2], master_del[2];
};

static void plan_free(struct plan *p)
{
	for (int f = 0; f < 2; f++) {
		ops_free(&p->master_up[f]);
		ops_free(&p->master_del[f]);
	}
}

/* The master a frontend wants: its range is the pending one when it moves. */
static struct lb_svc_val master_val(const struct fe_ent *e, bool move)
{
	struct lb_svc_val v = {.rev_nat_id = e->rev_nat_id, .count = e->n_sel, .flags = e->flags,
			       .algorithm = e->alg, .affinity_timeout = e->timeout,
			       .slot_order = ORDER_NONE};

	if (e->n_sel) {
		v.slot_base = move ? e->pbase : e->base;
		v.slot_order = move ? e->porder : e->order;
	}
	return v;
}

/* Does the frontend move to its pending range in this flush? */
static bool fe_moves(const struct fe_ent *e)
{
	return e->owner && e->n_sel > range_cap(e->order);
}

/* Stage 1 for one frontend: reverse NAT and slots into the arrays, its master into p. */
static int plan_fe(struct lb_maps *m, struct plan *p, struct fe_ent *e, struct lb_flush_stats *st)
{
	int f = fam_idx(e->k.family);
	struct lb4_key k4;
	struct lb6_key k6;
	void *key = f ? (void *)&k6 : (void *)&k4;
	bool move = fe_moves(e);
	struct lb_svc_val v;

	svc_key(&e->k, &k4, &k6);
	if (!e->owner)
		return e->in_map ? ops_add(&p->master_del[f], key, NULL) : 0;
	if (!e->rn_in_map || e->unsure) {
		rn_store(m, e);
		st->updates++;
	}
	if (e->n_sel)
		st->updates += plan_slots(m, e, move ? e->pbase : e->base, !move && !e->unsure);
	v = master_val(e, move);
	if (e->in_map && !e->unsure && !memcmp(&v, &e->wmaster, sizeof(v)))
		return 0;
	return ops_add(&p->master_up[f], key, &v);
}

/*
 * A large flush writes masters while it plans: a second thread takes the
 * masters of frontends already planned (their slots and reverse NAT are
 * stored, published with release) in chunks, and once planning is over
 * this thread takes chunks too. Planning is one thread's work and the
 * masters' syscalls are most of the rest, so the two overlap instead of
 * the second CPU waiting for the planning to end.
 */
#define STREAM_CHUNK 2048   /* masters per batch syscall */
#define STREAM_PUBLISH 256  /* frontends planned between two publications */

struct stream {
	struct lb_maps *m;
	struct plan *p;
	atomic_uint pub[2];  /* master_up[f] entries planned and published */
	atomic_uint next[2]; /* the next chunk of master_up[f] to take */
	atomic_bool done;    /* planning is over: pub[] are final */
	atomic_bool stop;    /* planning failed: take no more */
	pthread_t t;
	struct lb_flush_stats st[2];
	int r[2];
};

/* Take and write one chunk that is published, if any. */
static bool stream_one(struct stream *s, int who)
{
	bool done = atomic_load_explicit(&s->done, memory_order_acquire);

	for (int f = 0; f < 2; f++) {
		uint32_t pub = atomic_load_explicit(&s->pub[f], memory_order_acquire);
		uint32_t k = atomic_load_explicit(&s->next[f], memory_order_relaxed);
		uint32_t from = k * STREAM_CHUNK, to = from + STREAM_CHUNK;

		if (from >= pub || (to > pub && !done))
			continue; /* not published yet (all of it, unless planning is over) */
		if (to > pub)
			to = pub;
		if (!atomic_compare_exchange_strong(&s->next[f], &k, k + 1))
			return true; /* the other thread took it: look again */
		{
			int r = ops_update_range(s->m->fd[f ? LBM_SVC6 : LBM_SVC4], &s->p->master_up[f],
						 from, to, &s->st[who]);

			if (r < 0 && !s->r[who])
				s->r[who] = r;
		}
		return true;
	}
	return false;
}

/* Whether every published chunk is taken and no more will be. */
static bool stream_over(struct stream *s)
{
	if (atomic_load_explicit(&s->stop, memory_order_acquire))
		return true;
	if (!atomic_load_explicit(&s->done, memory_order_acquire))
		return false;
	for (int f = 0; f < 2; f++)
		if (atomic_load_explicit(&s->next[f], memory_order_relaxed) * STREAM_CHUNK <
		    atomic_load_explicit(&s->pub[f], memory_order_relaxed))
			return false;
	return true;
}

static void *stream_worker(void *arg)
{
	struct stream *s = arg;

	/*
	 * Nothing is published yet: meanwhile, bring in the arrays the planning
	 * fills (reserved for every dirty master of each family), so that the
	 * planning thread does not stop at each of their fresh pages.
	 */
	for (int f = 0; f < 2; f++) {
		const struct ops *o = &s->p->master_up[f];

		(void)lb_populate(o->k, (size_t)o->cap * o->ksz);
		(void)lb_populate(o->v, (size_t)o->cap * o->vsz);
	}

	while (!stream_over(s))
		if (!stream_one(s, 1))
			sched_yield(); /* the planning is behind */
	return NULL;
}

static void stream_publish(struct stream *s)
{
	for (int f = 0; f < 2; f++)
		atomic_store_explicit(&s->pub[f], s->p->master_up[f].n, memory_order_release);
}

/*
 * Planning over (ok) or failed: the rest of the masters written on both
 * threads (ok), or none taken any more. The first error of either.
 */
static int stream_end(struct stream *s, bool ok, struct lb_flush_stats *st)
{
	stream_publish(s);
	if (ok) {
		atomic_store_explicit(&s->done, true, memory_order_release);
		while (!stream_over(s))
			if (!stream_one(s, 0))
				sched_yield(); /* the other thread writes the last one */
	} else {
		atomic_store_explicit(&s->stop, true, memory_order_release);
	}
	pthread_join(s->t, NULL);
	for (int i = 0; i < 2; i++) {
		st->updates += s->st[i].updates;
		st->syscalls += s->st[i].syscalls;
	}
	return s->r[0] ? s->r[0] : s->r[1];
}

/* Stage 4 for one frontend, after the masters were written: memory says what the maps hold. */
static void fe_written(struct lb_maps *m, struct fe_ent *e)
{
	int f = fam_idx(e->k.family);

	if (!e->owner) {
		/*
		 * Its master is gone: nothing reads its reverse NAT, slots or id any
		 * more. The entry at its id is its own even when it named another
		 * frontend (adopted from a crash): cleared either way.
		 */
		if (e->rn_in_map || e->in_map)
			rn_clear(m, e->rev_nat_id, f);
		if (e->in_map || e->rn_in_map)
			(void)q_add(m, Q_RN, e->rev_nat_id, 0);
		else
			(void)lb_ids_free(&m->rn_ids, e->rev_nat_id);
		if (e->order != ORDER_NONE)
			(void)q_add(m, Q_SLOTS, e->base, e->order);
		pending_free(m, e);
		lb_ht_remove(&m->fes, &e->n);
		m->n_fe[f]--;
		fe_free(m, e);
		return;
	}
	if (fe_moves(e)) {
		if (e->order != ORDER_NONE)
			(void)q_add(m, Q_SLOTS, e->base, e->order);
		e->base = e->pbase;
		e->order = e->porder;
		e->porder = ORDER_NONE;
	} else {
		/* Allocated for a claim that was undone or shrank. */
		pending_free(m, e);
	}
	e->wmaster = master_val(e, false);
	e->in_map = e->rn_in_map = true;
	e->unsure = false;
}

/*
 * A UDP backend whose entry is about to be cleared, kept for the socket
 * reaper (lb_reap.h): sockets that socket LB connected to it can only fail
 * now. Without memory the note is lost, and lb_maps_take_freed_udp() says so.
 */
static void reap_note(struct lb_maps *m, int f, uint32_t id)
{
	struct lb_reap_key *k;

	if (!m->reap_on || (f == 0 ? m->be4[id].proto : m->be6[id].proto) != IPPROTO_UDP)
		return;
	if (m->n_reap == m->cap_reap) {
		size_t cap = m->cap_reap ? 2 * m->cap_reap : 64;

		if (!(k = realloc(m->reap, cap * sizeof(*k)))) {
			m->reap_lost = true;
			return;
		}
		m->reap = k;
		m->cap_reap = cap;
	}
	k = &m->reap[m->n_reap++];
	memset(k, 0, sizeof(*k));
	if (f == 0) {
		memcpy(k->addr, &m->be4[id].addr, 4);
		k->port = m->be4[id].port;
	} else {
		memcpy(k->addr, m->be6[id].addr, 16);
		k->port = m->be6[id].port;
	}
	k->family = f ? 6 : 4;
}

void lb_maps_track_freed_udp(struct lb_maps *m, bool on)
{
	m->reap_on = on;
}

int lb_maps_take_freed_udp(struct lb_maps *m, struct lb_reap_key **ret_keys, size_t *ret_n)
{
	int r = m->reap_lost ? -ENOMEM : 0;

	*ret_keys = m->reap;
	*ret_n = m->n_reap;
	m->reap = NULL;
	m->n_reap = m->cap_reap = 0;
	m->reap_lost = false;
	return r;
}

/* Stage 4 for one backend: unreferenced ones are cleared, their id quarantined. */
static void be_written(struct lb_maps *m, int f, uint32_t id)
{
	struct be_ent *b = &m->be[f][id];

	b->dirty = false;
	if (b->refs)
		return;
	bi_remove(m, f, id); /* while the entry still holds the address */
	reap_note(m, f, id);
	b->used = false;
	if (f == 0)
		memset(&m->be4[id], 0, sizeof(m->be4[id]));
	else
		memset(&m->be6[id], 0, sizeof(m->be6[id]));
	(void)q_add(m, f ? Q_BE6 : Q_BE4, id, 0);
}

int lb_maps_flush(struct lb_maps *m, struct lb_flush_stats *ret_st)
{
	struct lb_flush_stats st = {0};
	struct fe_ent *fes = m->fdirty;
	struct plan p;
	struct stream s;
	bool streaming = false;
	uint32_t planned = 0;
	int r = 0, r2, rp = 0;

	memset(&p, 0, sizeof(p));
	for (int f = 0; f < 2; f++) {
		uint32_t ksz = f ? sizeof(struct lb6_key) : sizeof(struct lb4_key);

		p.master_up[f] = (struct ops){.ksz = ksz, .vsz = sizeof(struct lb_svc_val)};
		p.master_del[f] = (struct ops){.ksz = ksz};
	}
	st.updates = m->claim_stores;
	m->claim_stores = 0;
	if ((r = arr_cover_all(m)) < 0)
		goto out;
	/* 1. Backends, then what points at them: reverse NAT and slots. Memory only. */
	for (int f = 0; f < 2; f++)
		for (uint32_t id = m->bdirty[f]; id; id = m->be_dnext[f][id]) {
			struct be_ent *b = &m->be[f][id];

			if (b->refs && be_wstate(m, f, id) != b->state) {
				be_store_state(m, f, id, b->state);
				st.updates++;
			}
		}
	/* Many frontends: their masters are written while the rest is planned (struct stream). */
	if (m->n_fdirty >= STEP_PARALLEL_MIN &&
	    ops_reserve(&p.master_up[0], m->n_fdirty_f[0]) == 0 &&
	    ops_reserve(&p.master_up[1], m->n_fdirty_f[1]) == 0) {
		memset(&s, 0, sizeof(s));
		s.m = m;
		s.p = &p;
		streaming = lb_thread_spawn(&s.t, stream_worker, &s);
		/* Reserved for every dirty frontend of the family: never moved while streamed. */
		p.master_up[0].fixed = p.master_up[1].fixed = streaming;
	}
	for (struct fe_ent *e = fes; e; e = e->dnext) {
		if ((rp = plan_fe(m, &p, e, &st)) < 0)
			break;
		if (streaming && ++planned % STREAM_PUBLISH == 0)
			stream_publish(&s); /* release: the stores above before those masters */
	}
	/* The stores above are visible before any master that points at them. */
	atomic_thread_fence(memory_order_release);
	if (streaming)
		r = stream_end(&s, rp == 0, &st);
	if (rp < 0) {
		/* Nothing is written yet when planning fails without a stream. */
		if (!streaming) {
			r = rp;
			goto out;
		}
		if (!r)
			r = rp;
	} else {
		/*
		 * 2. Masters (unless streamed); 3. masters of removed frontends, even
		 * when upserts failed: the deletes are often what makes room for them.
		 * The first error is kept.
		 */
		struct step steps[2];

		memset(steps, 0, sizeof(steps));
		for (int f = 0; f < 2; f++) {
			if (!streaming) /* streamed: written already */
				step_add(&steps[0], m->fd[f ? LBM_SVC6 : LBM_SVC4], &p.master_up[f],
					 false);
			step_add(&steps[1], m->fd[f ? LBM_SVC6 : LBM_SVC4], &p.master_del[f], true);
		}
		for (int k = 0; k < 2; k++)
			if ((r2 = step_run(&steps[k], &st)) < 0 && !r)
				r = r2;
	}
	if (r < 0) {
		/*
		 * Any master of this flush may hold the old value or the new one, or
		 * be missing: all stay dirty and are written again by the next flush
		 * (the module's retry, or the next change). Nothing is freed, so
		 * whatever a master points at still exists.
		 */
		for (struct fe_ent *e = fes; e; e = e->dnext) {
			e->unsure = true;
			if (e->owner) {
				/* Its master may be in the map now, and plan_fe wrote its reverse NAT. */
				e->in_map = e->rn_in_map = true;
			}
		}
		goto out;
	}

	/* 4. What nothing points at any more. */
	m->fdirty = NULL;
	m->n_fdirty = m->n_fdirty_f[0] = m->n_fdirty_f[1] = 0;
	for (struct fe_ent *e = fes, *next; e; e = next) {
		next = e->dnext;
		e->dirty = false;
		e->dnext = NULL;
		fe_written(m, e);
	}
	for (int f = 0; f < 2; f++) {
		uint32_t id = m->bdirty[f];

		m->bdirty[f] = 0;
		while (id) {
			uint32_t next = m->be_dnext[f][id];

			m->be_dnext[f][id] = 0;
			be_written(m, f, id);
			id = next;
		}
	}
out:
	plan_free(&p);
	if (ret_st)
		*ret_st = st;
	return r;
}

/* Entries found at adoption that nobody owns (a crash between writes): cleared. */
static void prune_orphans(struct lb_maps *m)
{
	for (int f = 0; f < 2; f++) {
		for (size_t i = 0; i < m->n_orphans[f]; i++) {
			uint32_t id = m->orphans[f][i];

			reap_note(m, f, id);
			if (f == 0)
				memset(&m->be4[id], 0, sizeof(m->be4[id]));
			else
				memset(&m->be6[id], 0, sizeof(m->be6[id]));
			(void)q_add(m, f ? Q_BE6 : Q_BE4, id, 0);
		}
	}
	for (size_t i = 0; i < m->n_orphans[2]; i++) {
		uint32_t v = m->orphans[2][i], id = v & ~(ORPHAN_OWNED | ORPHAN_V6);

		rn_clear(m, id, !!(v & ORPHAN_V6));
		/* Free unless a frontend (of the other family) had it at adoption: it frees it. */
		if (!(v & ORPHAN_OWNED))
			(void)q_add(m, Q_RN, id, 0);
	}
	for (int i = 0; i < 3; i++) {
		free(m->orphans[i]);
		m->orphans[i] = NULL;
		m->n_orphans[i] = 0;
	}
}

int lb_maps_prune(struct lb_maps *m, struct lb_flush_stats *ret_st)
{
	int r;

	/*
	 * Only adopted entries can be unowned and not dirty (a claim that was
	 * released made its entries dirty): on a first start there is nothing
	 * to walk.
	 */
	if (m->adopted) {
		lb_ht_foreach(&m->fes, n, nx) {
			struct fe_ent *e = (struct fe_ent *)n;

			(void)nx;
			if (!e->owner)
				fe_dirty(m, e);
		}
		for (int f = 0; f < 2; f++)
			for (uint32_t id = 1; id < m->be_ids[f].fresh; id++)
				if (m->be[f][id].used && !m->be[f][id].refs)
					be_dirty(m, &m->be[f][id], f, id);
	}
	r = lb_maps_flush(m, ret_st);
	if (!r)
		m->adopted = false;
	if (!r)
		prune_orphans(m);
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

void lb_maps_prefetch(const struct lb_maps *m, const struct lb_svc *s)
{
	for (size_t i = 0; i < s->n_fe && i < 4; i++) {
		struct l4key k;

		l4key_make(&k, &s->fe[i].ip, s->fe[i].port, s->fe[i].proto);
		lb_ht_prefetch(&m->fes, lb_ht_key_hash(&m->fes, &k));
	}
}

void lb_maps_prefetch_backends(const struct lb_maps *m, const struct lb_svc *s)
{
	if (!s->be_hashed)
		return;
	for (size_t i = 0; i < s->n_fe && i < 4; i++)
		for (size_t j = 0; j < s->fe[i].n_be && j < CLAIM_GROUP; j++)
			bi_prefetch(m, s->fe[i].be[j].hash);
}

void lb_maps_hash_backends(struct lb_svc *s)
{
	for (size_t i = 0; i < s->n_fe; i++) {
		struct lb_fe *fe = &s->fe[i];

		for (size_t j = 0; j < fe->n_be; j++) {
			struct l4key k;

			l4key_make(&k, &fe->be[j].ip, fe->be[j].port, fe->proto);
			fe->be[j].hash = be_hash(&k);
		}
	}
	s->be_hashed = true;
}

int lb_maps_fe_backends(struct lb_maps *m, const struct lb_fe *fe, struct lb_be **ret_be,
			size_t *ret_n, size_t *ret_n_sel)
{
	struct l4key k;
	struct fe_ent *e;
	struct lb_be *v;
	int f;

	l4key_make(&k, &fe->ip, fe->port, fe->proto);
	e = fe_get(m, &k, false);
	if (!e || !e->owner)
		return -ENOENT;
	f = fam_idx(k.family);
	if (!(v = calloc(e->n_all ? e->n_all : 1, sizeof(*v))))
		return -ENOMEM;
	for (uint32_t i = 0; i < e->n_all; i++) {
		struct l4key bk;

		be_key(m, f, e->bes[i], &bk);
		v[i].ip.family = bk.family;
		memcpy(v[i].ip.a, bk.addr, sizeof(v[i].ip.a));
		v[i].port = bk.port;
		v[i].state = m->be[f][e->bes[i]].state == LB_BS_TERMINATING ? LB_BE_TERMINATING
									    : LB_BE_ACTIVE;
	}
	*ret_be = v;
	*ret_n = e->n_all;
	*ret_n_sel = e->n_sel;
	return 0;
}

uint32_t lb_maps_be_id(struct lb_maps *m, const struct lb_ip *ip, uint16_t port, uint8_t proto)
{
	struct l4key k;

	l4key_make(&k, ip, port, proto);
	return be_get(m, &k, be_hash(&k), false, NULL);
}

uint32_t lb_maps_used(struct lb_maps *m, enum lb_map_id id)
{
	switch (id) {
	case LBM_SVC4:
	case LBM_SVC6:
		return m->n_fe[id == LBM_SVC6];
	case LBM_SLOTS:
		return m->slots_bd.size - m->slots_bd.n_free;
	case LBM_BE4:
	case LBM_BE6:
		/* Quarantined ids are taken but hold no backend. */
		return m->be_ids[id == LBM_BE6].n_used - m->q_be[id == LBM_BE6];
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
