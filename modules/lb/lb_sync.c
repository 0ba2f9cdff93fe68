// SPDX-License-Identifier: Apache-2.0
/*
 * lb_sync.c - Service and EndpointSlice watches -> translation -> maps.
 * The state machine is drawn in lb.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf */
#endif
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lb.h"
#include "lb_thread.h"

#define SYNCED_ALL 3

/*
 * Retrying a failed map write: the writer keeps what did not get written
 * (lb_maps_flush), and a one-shot timer flushes again, first after
 * RETRY_MIN_MS, each further failure doubling the delay up to RETRY_MAX_MS
 * -- soon enough that a transient failure (a map briefly full while another
 * service's deletes land, memory pressure) heals within a second, rare
 * enough that a persistent one costs a few syscalls every 10 s.
 */
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 10000

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* "ns/name" into buf, or malloc'd when it does not fit (*heap set); NULL: out of memory. */
static char *obj_key(char *buf, size_t len, const char *ns, const char *name, char **heap)
{
	size_t a, b;

	ns = ns ? ns : "default";
	name = name ? name : "";
	a = strlen(ns);
	b = strlen(name);
	*heap = NULL;
	if (a + b + 2 > len && !(buf = *heap = malloc(a + b + 2)))
		return NULL;
	memcpy(buf, ns, a);
	buf[a] = '/';
	memcpy(buf + a + 1, name, b + 1);
	return buf;
}

static void sv_dirty(struct lb *lb, struct lb_sv *sv)
{
	if (sv->dirty)
		return;
	sv->dirty = true;
	lb->dirty[lb->n_dirty++] = sv; /* room for every service: sv_insert() */
}

/* Room in both dirty arrays for `want` services. */
static int dirty_room(struct lb *lb, size_t want)
{
	struct lb_sv **a, **b;
	size_t cap;

	if (want <= lb->cap_dirty)
		return 0;
	cap = lb->cap_dirty ? lb->cap_dirty * 2 : 256;
	while (cap < want)
		cap *= 2;
	if (!(a = realloc(lb->dirty, cap * sizeof(*a))))
		return -ENOMEM;
	lb->dirty = a;
	if (!(b = realloc(lb->dirty_spare, cap * sizeof(*b))))
		return -ENOMEM;
	lb->dirty_spare = b;
	lb->cap_dirty = cap;
	return 0;
}

/* A new service into the table (its n.h set: hashed or not). */
static int sv_insert(struct lb *lb, struct lb_sv *sv, bool hashed)
{
	if (dirty_room(lb, lb->svcs.n + 1) < 0)
		return -ENOMEM;
	return hashed ? lb_ht_insert_h(&lb->svcs, &sv->n) : lb_ht_insert(&lb->svcs, &sv->n);
}

static struct lb_sv *sv_get(struct lb *lb, const char *key, bool create)
{
	struct lb_sv *sv = (struct lb_sv *)lb_ht_find(&lb->svcs, key);

	if (sv || !create)
		return sv;
	sv = calloc(1, sizeof(*sv) + strlen(key) + 1);
	if (!sv)
		return NULL;
	strcpy(sv->key, key);
	if (sv_insert(lb, sv, false) < 0) {
		free(sv);
		return NULL;
	}
	return sv;
}

static void sv_free(struct lb *lb, struct lb_sv *sv)
{
	(void)lb;
	lb_svc_spec_unref(sv->spec);
	lb_svc_spec_unref(sv->cur);
	if (sv->err) {
		free(sv->err->msg);
		free(sv->err);
	}
	if (sv->sl != sv->sl_in)
		free(sv->sl);
	free(sv);
}

static void sl_free(struct lb_sl *sl)
{
	lb_slice_free(sl->data);
	free(sl);
}

static void sl_detach(struct lb *lb, struct lb_sl *sl)
{
	struct lb_sv *sv = sl->sv;

	if (!sv)
		return;
	for (size_t i = 0; i < sv->n_sl; i++)
		if (sv->sl[i] == sl) {
			sv->sl[i] = sv->sl[--sv->n_sl];
			break;
		}
	sl->sv = NULL;
	sv_dirty(lb, sv);
}

static int sl_attach(struct lb *lb, struct lb_sl *sl, struct lb_sv *sv)
{
	if (!sv->cap_sl) {
		sv->sl = sv->sl_in;
		sv->cap_sl = 1;
	}
	if (sv->n_sl == sv->cap_sl) {
		size_t cap = sv->cap_sl * 2;
		struct lb_sl **v = malloc(cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		memcpy(v, sv->sl, sv->n_sl * sizeof(*v));
		if (sv->sl != sv->sl_in)
			free(sv->sl);
		sv->sl = v;
		sv->cap_sl = cap;
	}
	sv->sl[sv->n_sl++] = sl;
	sl->sv = sv;
	sv_dirty(lb, sv);
	return 0;
}

static void schedule(struct lb *lb);

static void first_event(struct lb *lb)
{
	if (!lb->first_event_us)
		lb->first_event_us = now_us();
}

/*
 * Store events are queued as they come (a reference to the object, nothing
 * more) and applied at the start of the next flush: parsed -- by two threads
 * when there are many, as after a start, when the store replays every
 * object -- then applied in the order they came. Reading the documents is
 * most of what a large sync costs, and the documents are immutable while we
 * hold them.
 */
#define EV_SLICE 0x1
#define EV_DELETED 0x2
#define PARSE_PARALLEL_MIN 2048 /* events; below that one thread is as quick */

#define EV_SVC_KEY 0x4 /* a slice's candidate holds its service's key too (parse) */
#define EV_SPEC 0x8    /* a parsed Service without its candidate entry (no memory for it) */

/*
 * A queued event (24 bytes: an agent start queues one per object). The
 * parse (either thread) replaces the document with a candidate entry for
 * this thread's tables that holds what was parsed, its key and hash --
 * allocated and formatted there, so that applying an event here is a
 * lookup (whose bucket was asked for ahead) and a link.
 */
struct lb_ev {
	struct axn_obj *obj;
	union {
		const json_t *doc; /* queued */
		struct lb_sv *sv;  /* parsed Service: its entry, the spec in sv->spec; or NULL */
		struct lb_sl *sl;  /* parsed slice: its entry (+ its service's key), sl->data */
		struct lb_svc_spec *spec; /* EV_SPEC: the parsed Service alone */
	};
	uint32_t svh;  /* EV_SVC_KEY: the hash of the service's key */
	int16_t r;     /* the parse's result */
	uint8_t flags; /* EV_* */
};

/*
 * Events are queued in blocks that never move (a second thread parses
 * them while this one applies) and are freed as soon as applied, so the
 * memory of a large queue is reused by what the sync allocates next.
 */
#define EV_BLOCK 4096 /* events; a multiple of PARSE_CHUNK */

static inline struct lb_ev *ev_at(struct lb_ev *const *blk, size_t i)
{
	return &blk[i / EV_BLOCK][i % EV_BLOCK];
}

static void ev_push(struct lb *lb, struct axn_obj *obj, uint8_t flags)
{
	struct axn_mod *self = lb->self;
	struct lb_ev *e;

	if (lb->n_evs == lb->n_evb * EV_BLOCK) {
		struct lb_ev *b = NULL, **v = lb->evb;

		if (lb->n_evb == lb->cap_evb) {
			size_t cap = lb->cap_evb ? lb->cap_evb * 2 : 8;

			v = realloc(lb->evb, cap * sizeof(*v));
			if (v) {
				lb->evb = v;
				lb->cap_evb = cap;
			}
		}
		if (!v || !(b = malloc(EV_BLOCK * sizeof(*b)))) {
			axn_err(self, "%s %s: out of memory, change lost",
				flags & EV_SLICE ? "endpointslice" : "service", axn_obj_name(self, obj));
			return;
		}
		lb->evb[lb->n_evb++] = b;
	}
	e = ev_at(lb->evb, lb->n_evs++);
	e->obj = self->host->obj_ref(obj);
	e->doc = self->host->obj_json(obj);
	e->svh = 0;
	e->r = 0;
	e->flags = flags;
	schedule(lb);
}

static void on_service(struct axn_mod *self, uint32_t ev, struct axn_obj *obj, void *arg)
{
	struct lb *lb = arg;

	(void)self;
	first_event(lb);
	if (ev == AXN_EV_SYNCED) {
		lb->synced |= 1;
		schedule(lb);
		return;
	}
	ev_push(lb, obj, ev == AXN_EV_DELETED ? EV_DELETED : 0);
}

static void on_slice(struct axn_mod *self, uint32_t ev, struct axn_obj *obj, void *arg)
{
	struct lb *lb = arg;

	(void)self;
	first_event(lb);
	if (ev == AXN_EV_SYNCED) {
		lb->synced |= 2;
		schedule(lb);
		return;
	}
	ev_push(lb, obj, EV_SLICE | (ev == AXN_EV_DELETED ? EV_DELETED : 0));
}

/*
 * Parsing runs in chunks of events (lb_pipe: either thread parses, this one
 * applies them in order). The second thread only parses: no host call,
 * nothing shared but the documents (immutable, each held by its event's
 * reference until this thread applied it).
 */
#define PARSE_CHUNK 256
#define EV_PREFETCH_AHEAD 8

/* parse_apply() reads a chunk's events from one block. */
_Static_assert(EV_BLOCK % PARSE_CHUNK == 0, "a chunk of events must lie within one block");

struct parse_ctx {
	const struct lb_translate_conf *conf;
	const struct lb_ht *svcs, *slices; /* only their hash function is used */
	struct lb_ev *const *evb;
};

/* A Service's candidate entry: its key "ns/name" and hash. NULL without memory. */
static struct lb_sv *sv_cand(const struct parse_ctx *c, const char *ns, const char *name)
{
	char kb[320], *heap, *key = obj_key(kb, sizeof(kb), ns, name, &heap);
	struct lb_sv *sv = key ? calloc(1, sizeof(*sv) + strlen(key) + 1) : NULL;

	if (sv) {
		strcpy(sv->key, key);
		sv->n.h = lb_ht_key_hash(c->svcs, sv->key);
	}
	free(heap);
	return sv;
}

/* A slice's candidate entry: "ns/name", then "ns/service" when it names one. */
static struct lb_sl *sl_cand(const struct parse_ctx *c, struct lb_ev *e,
			     const struct lb_slice_meta *meta)
{
	char kb[320], skb[320], *heap, *sheap = NULL, *key, *skey = NULL;
	struct lb_sl *sl = NULL;
	size_t kl, skl = 0;

	key = obj_key(kb, sizeof(kb), meta->ns, meta->name, &heap);
	if (meta->service && !(skey = obj_key(skb, sizeof(skb), meta->ns, meta->service, &sheap)))
		goto out;
	kl = key ? strlen(key) + 1 : 0;
	skl = skey ? strlen(skey) + 1 : 0;
	if (!key || !(sl = calloc(1, sizeof(*sl) + kl + skl)))
		goto out;
	memcpy(sl->key, key, kl);
	sl->n.h = lb_ht_key_hash(c->slices, sl->key);
	if (skey) {
		memcpy(sl->key + kl, skey, skl);
		e->svh = lb_ht_key_hash(c->svcs, skey);
		e->flags |= EV_SVC_KEY;
	}
out:
	free(heap);
	free(sheap);
	return sl;
}

static void parse_range(void *arg, size_t from, size_t to)
{
	struct parse_ctx *c = arg;

	for (size_t i = from; i < to; i++) {
		struct lb_ev *e = ev_at(c->evb, i);
		const json_t *doc = e->doc;
		int r;

		if (e->flags & EV_DELETED) {
			e->sv = NULL;
			continue;
		}
		if (e->flags & EV_SLICE) {
			struct lb_slice_meta meta;
			struct lb_slice *slice = NULL;

			e->sl = NULL;
			r = lb_slice_parse(c->conf, doc, &slice, &meta);
			if (r == 0 && !(e->sl = sl_cand(c, e, &meta)))
				r = -ENOMEM;
			if (e->sl)
				e->sl->data = slice;
			else
				lb_slice_free(slice);
		} else {
			struct lb_svc_spec *spec = NULL;

			e->sv = NULL;
			r = lb_service_parse(c->conf, doc, &spec);
			if (spec && (e->sv = sv_cand(c, lb_svc_spec_ns(spec), lb_svc_spec_name(spec)))) {
				e->sv->spec = spec;
			} else if (spec) {
				/* Applied the slower way, from its names (apply_service). */
				e->spec = spec;
				e->flags |= EV_SPEC;
			}
		}
		e->r = (int16_t)r;
	}
}

/*
 * What the event will look up, asked for ahead (it is parsed): the buckets
 * (entry 0), then the entries they point at (entry 1, some events later).
 */
static void ev_prefetch(const struct lb *lb, const struct lb_ev *e, int entry)
{
	void (*pf)(const struct lb_ht *, uint32_t) = entry ? lb_ht_prefetch_entry : lb_ht_prefetch;

	if (e->flags & EV_DELETED)
		return;
	if (e->flags & EV_SLICE) {
		if (e->sl)
			pf(&lb->slices, e->sl->n.h);
		if (e->flags & EV_SVC_KEY)
			pf(&lb->svcs, e->svh);
	} else if (e->sv) {
		pf(&lb->svcs, e->sv->n.h);
	}
}

static void apply_service(struct lb *lb, struct lb_ev *e);
static void apply_slice(struct lb *lb, struct lb_ev *e);

/*
 * Parse and apply the n events of blocks evb in order, with a second parsing
 * thread when there are many; each block is freed once applied.
 */
static void parse_apply(struct lb *lb, struct lb_ev **evb, size_t n, size_t n_svc, size_t n_sl)
{
	struct parse_ctx c = {.conf = &lb->tconf, .svcs = &lb->svcs, .slices = &lb->slices, .evb = evb};
	struct lb_pipe p;

	lb_pipe_start(&p, n, PARSE_CHUNK, parse_range, &c, n >= PARSE_PARALLEL_MIN, 0);
	/*
	 * Many new objects (a sync): the tables and the dirty arrays sized
	 * once, not by doubling -- while the other thread already parses (it
	 * reads only the tables' key sizes, which this does not change).
	 */
	(void)lb_ht_reserve(&lb->svcs, lb->svcs.n + n_svc);
	(void)lb_ht_reserve(&lb->slices, lb->slices.n + n_sl);
	(void)dirty_room(lb, lb->svcs.n + n_svc);
	for (size_t k = 0; k < p.n_chunks; k++) {
		size_t from, to, m;
		struct lb_ev *evs;

		lb_pipe_wait(&p, k, &from, &to);
		/* A chunk lies within one block: PARSE_CHUNK divides EV_BLOCK. */
		evs = ev_at(evb, from);
		m = to - from;
		for (size_t i = 0; i < m; i++) {
			if (i + EV_PREFETCH_AHEAD < m)
				ev_prefetch(lb, &evs[i + EV_PREFETCH_AHEAD], 0);
			if (i + EV_PREFETCH_AHEAD / 2 < m)
				ev_prefetch(lb, &evs[i + EV_PREFETCH_AHEAD / 2], 1);
			if (evs[i].flags & EV_SLICE)
				apply_slice(lb, &evs[i]);
			else
				apply_service(lb, &evs[i]);
			lb->self->host->obj_unref(evs[i].obj);
			evs[i].obj = NULL;
		}
		/* Its last chunk applied: neither thread reads the block again. */
		if (to % EV_BLOCK == 0 || to == n) {
			free(evb[(to - 1) / EV_BLOCK]);
			evb[(to - 1) / EV_BLOCK] = NULL;
		}
	}
	lb_pipe_end(&p);
}

static void apply_service(struct lb *lb, struct lb_ev *e)
{
	struct axn_mod *self = lb->self;
	struct lb_sv *sv, *cand = e->flags & EV_SPEC ? NULL : e->sv;
	struct lb_svc_spec *spec = e->flags & EV_SPEC ? e->spec : cand ? cand->spec : NULL;
	char kb[320], *heap, *key;

	e->sv = NULL;
	if (cand)
		cand->spec = NULL;
	if (e->r == -EINVAL) {
		axn_warn(self, "service %s: no metadata.name, ignored",
			 axn_obj_name(self, e->obj) ?: "?");
	} else if (e->r < 0) {
		/* The previous state stays until the next change of the Service. */
		axn_err(self, "service %s: out of memory", axn_obj_name(self, e->obj));
		lb_svc_spec_unref(spec);
		free(cand);
		return;
	}
	if (cand) {
		/* Parsed with its key: the entry if there is one, else the candidate. */
		sv = (struct lb_sv *)lb_ht_find_h(&lb->svcs, cand->key, cand->n.h);
		if (!sv && sv_insert(lb, cand, true) == 0)
			sv = cand, cand = NULL;
		free(cand);
	} else {
		/* The parsed Service has its names (ns defaulted as in obj_key). */
		key = spec ? obj_key(kb, sizeof(kb), lb_svc_spec_ns(spec), lb_svc_spec_name(spec),
				     &heap)
			   : obj_key(kb, sizeof(kb), axn_obj_namespace(self, e->obj),
				     axn_obj_name(self, e->obj), &heap);
		sv = key ? sv_get(lb, key, spec != NULL) : NULL;
		free(heap);
	}
	if (!sv) {
		if (spec)
			axn_err(self, "service %s: out of memory", axn_obj_name(self, e->obj));
		lb_svc_spec_unref(spec);
		return;
	}
	lb_svc_spec_unref(sv->spec);
	sv->spec = spec;
	sv_dirty(lb, sv);
}

static void apply_slice(struct lb *lb, struct lb_ev *e)
{
	struct axn_mod *self = lb->self;
	struct lb_sl *sl, *cand = e->sl;
	struct lb_slice *data = cand ? cand->data : NULL;
	struct lb_sv *sv = NULL;
	char kb[320], *heap = NULL, *key;

	e->sl = NULL;
	if (cand)
		cand->data = NULL;
	if (e->flags & EV_DELETED) {
		key = obj_key(kb, sizeof(kb), axn_obj_namespace(self, e->obj),
			      axn_obj_name(self, e->obj), &heap);
		if (!key)
			goto oom;
		sl = (struct lb_sl *)lb_ht_find(&lb->slices, key);
		if (sl) {
			sl_detach(lb, sl);
			lb_ht_remove(&lb->slices, &sl->n);
			sl_free(sl);
		}
		free(heap);
		return;
	}
	if (e->r < 0)
		goto oom;
	/* The parse made the entry, with the slice's key and its service's. */
	if (e->flags & EV_SVC_KEY) {
		const char *skey = cand->key + strlen(cand->key) + 1;

		sv = (struct lb_sv *)lb_ht_find_h(&lb->svcs, skey, e->svh);
		if (!sv && !(sv = sv_get(lb, skey, true)))
			goto oom;
	}
	sl = (struct lb_sl *)lb_ht_find_h(&lb->slices, cand->key, cand->n.h);
	if (!sl) {
		if (lb_ht_insert_h(&lb->slices, &cand->n) < 0)
			goto oom;
		sl = cand;
		cand = NULL;
	}
	free(cand);
	cand = NULL;
	lb_slice_free(sl->data);
	sl->data = data;
	data = NULL;
	lb->dirty_be[lb_slice_family(sl->data) == 6] += lb_slice_addrs(sl->data);
	if (sl->sv != sv) {
		sl_detach(lb, sl);
		if (sv && sl_attach(lb, sl, sv) < 0)
			goto oom;
	} else if (sv) {
		sv_dirty(lb, sv);
	}
	free(heap);
	return;
oom:
	if (sv)
		sv_dirty(lb, sv); /* so that the flush drops it if it holds nothing */
	lb_slice_free(data);
	free(cand);
	free(heap);
	axn_err(self, "endpointslice %s: out of memory", axn_obj_name(self, e->obj));
}

/* Every queued event, in the order it came; the references taken go back. */
static void apply_events(struct lb *lb)
{
	struct lb_ev **evb = lb->evb;
	size_t n = lb->n_evs, n_svc = 0, n_sl = 0;

	if (!n)
		return;
	lb->evb = NULL;
	lb->n_evs = lb->n_evb = lb->cap_evb = 0;
	/* Counted before the parse starts: it sets flags of its own. */
	for (size_t i = 0; i < n; i++) {
		const struct lb_ev *e = ev_at(evb, i);

		if (!(e->flags & EV_DELETED))
			(*(e->flags & EV_SLICE ? &n_sl : &n_svc))++;
	}
	parse_apply(lb, evb, n, n_svc, n_sl); /* frees the blocks */
	free(evb);
}

static void drop_events(struct lb *lb)
{
	/* Queued, not parsed yet: only the references. (A parsed event is applied.) */
	for (size_t i = 0; i < lb->n_evs; i++)
		lb->self->host->obj_unref(ev_at(lb->evb, i)->obj);
	for (size_t b = 0; b < lb->n_evb; b++)
		free(lb->evb[b]);
	free(lb->evb);
	lb->evb = NULL;
	lb->n_evs = lb->n_evb = lb->cap_evb = 0;
}

static void set_health(struct lb *lb)
{
	struct axn_mod *self = lb->self;
	const char *first = lb->errs ? lb->errs->msg : NULL;
	size_t n = lb->n_errors;
	char reason[512];

	if (lb->write_err) {
		/* The maps lag behind what the services want until a retry gets through. */
		int k = snprintf(reason, sizeof(reason),
				 "writing the lb maps failed: %s (retry %u in %u ms)",
				 strerror(-lb->write_err), lb->n_retries + 1, lb->retry_ms);

		if (n && k > 0 && (size_t)k < sizeof(reason))
			snprintf(reason + k, sizeof(reason) - (size_t)k,
				 "; %zu service(s) not programmed; %s", n, first);
		self->host->set_state(self, AXN_STATE_DEGRADED, reason);
		return;
	}
	if (!n) {
		self->host->set_state(self, AXN_STATE_UP, lb->live ? "in sync" : "waiting for store sync");
		return;
	}
	snprintf(reason, sizeof(reason), "%zu service(s) not programmed; %s", n, first);
	self->host->set_state(self, AXN_STATE_DEGRADED, reason);
}

/* What a service adds to the counts (sign +1) or takes away (-1). */
static void sv_account(struct lb *lb, struct lb_sv *sv, int sign)
{
	struct lb_svc v;
	size_t nfe = 0;

	if (sv->cur) {
		lb_svc_view(sv->cur, &v);
		nfe = v.n_fe;
	}

	if (nfe) {
		lb->n_svc_fe += sign > 0 ? 1 : (size_t)-1;
		lb->n_fe += sign > 0 ? nfe : -nfe;
	}
}

/* err (malloc'd, taken) or NULL: the service is refused, or not any more. */
static void sv_set_error(struct lb *lb, struct lb_sv *sv, char *err)
{
	struct lb_sverr *e = sv->err;

	if (!err) {
		if (!e)
			return;
		if (e->prev)
			e->prev->next = e->next;
		else
			lb->errs = e->next;
		if (e->next)
			e->next->prev = e->prev;
		free(e->msg);
		free(e);
		sv->err = NULL;
		lb->n_errors--;
		return;
	}
	if (e) {
		free(e->msg);
		e->msg = err;
		return;
	}
	if (!(e = malloc(sizeof(*e)))) {
		/* Logged by the caller; only the retry when room comes back is lost. */
		axn_err(lb->self, "service %s: out of memory keeping why it was refused", sv->key);
		free(err);
		return;
	}
	*e = (struct lb_sverr){.msg = err, .sv = sv, .next = lb->errs};
	if (lb->errs)
		lb->errs->prev = e;
	lb->errs = e;
	sv->err = e;
	lb->n_errors++;
}

/* A dirty service's Service and slices -> what it wants in the maps (NULL: nothing). Pure. */
static int sv_translate(const struct lb_sv *sv, struct lb_svc **ret_next)
{
	const struct lb_slice *small[8] = {0}, **slices = small;
	struct lb_svc *next = NULL;
	int r;

	if (sv->spec) {
		if (sv->n_sl > sizeof(small) / sizeof(small[0]) &&
		    !(slices = malloc(sv->n_sl * sizeof(*slices))))
			return -ENOMEM;
		for (size_t i = 0; i < sv->n_sl; i++)
			slices[i] = sv->sl[i]->data;
		r = lb_translate_parsed(sv->spec, slices, sv->n_sl, &next);
		if (slices != small)
			free(slices);
		if (r < 0)
			return r;
	}
	*ret_next = next;
	return 0;
}

/*
 * Translation and claims are a pipeline (lb_pipe): the second thread
 * translates chunks of dirty services ahead while this one claims them in
 * order (and translates too whenever the next chunk is not ready). Each
 * translation reads only its own parsed Service and slices, which nothing
 * changes meanwhile; claims and everything else stay on this thread.
 */
#define TRANSLATE_PARALLEL_MIN 1024
#define TRANSLATE_CHUNK 128
/*
 * Chunks the second thread translates ahead of the claims, at most: each
 * translation is freed once claimed, so that the next ones reuse its memory
 * (left unbounded, translation being quicker, all of them would be live).
 */
#define TRANSLATE_WINDOW 8

struct xlate {
	struct lb_sv **svs;
	struct lb_svc **out;
	int *r;
	size_t n;
	struct lb_maps *maps;
	pthread_t self;		 /* the claiming thread */
	atomic_size_t claimed;	 /* out[0 .. claimed) are claimed: to be freed, or NULL */
	size_t dropped;		 /* out[0 .. dropped) are freed (by the second thread) */
	size_t prefaulted;	 /* the share of services [0 .. prefaulted) is brought in */
	/* Per chunk: translated by the claiming thread, which frees it too (NULL: not known). */
	bool *own;
};

/* The second thread brings in memory this many services ahead of what it translates. */
#define PREFAULT_AHEAD (4 * TRANSLATE_CHUNK)

/*
 * Claimed translations out[x->dropped .. upto) freed: the writer holds
 * their backends and the service its Service (sv->cur), which is all the
 * rest. On the second thread, which allocated most of them: the next
 * translations reuse the memory (fresh pages are what a sync waits on),
 * and the claiming thread does not wait on that thread's allocator.
 */
static void xlate_drop(struct xlate *x, size_t upto)
{
	/* NULL: freed by the claiming thread (struct xlate.own). */
	for (; x->dropped < upto; x->dropped++)
		lb_svc_free(x->out[x->dropped]);
}

/*
 * Translation is the quicker of the two, so the second thread also brings
 * in the memory the claims of what it translated will write (new frontend
 * and backend entries): this thread then does not stop at each fresh page.
 */
static void xlate_range(void *arg, size_t from, size_t to)
{
	struct xlate *x = arg;
	bool worker = !pthread_equal(pthread_self(), x->self);

	if (worker)
		xlate_drop(x, atomic_load_explicit(&x->claimed, memory_order_acquire));
	else if (x->own)
		x->own[from / TRANSLATE_CHUNK] = true;
	for (size_t i = from; i < to; i++)
		if ((x->r[i] = sv_translate(x->svs[i], &x->out[i])) == 0 && x->out[i])
			lb_maps_hash_backends(x->out[i]);
	if (worker) {
		/*
		 * Ahead of what it translated too: the claims reach chunks this
		 * thread never translates when it falls behind.
		 */
		size_t upto = to + PREFAULT_AHEAD < x->n ? to + PREFAULT_AHEAD : x->n;

		if (upto > x->prefaulted) {
			lb_maps_prefault(x->maps, x->prefaulted, upto, x->n);
			x->prefaulted = upto;
		}
	}
}

/*
 * The claims read each translation once, cold (the other thread may have
 * written it): a software pipeline over the next ones -- five services
 * ahead the lb_svc, four ahead its frontends, three ahead the writer's
 * buckets for them, two ahead their backends, one ahead the backend index's
 * slots for those (hashed by the translating thread) -- so that the misses
 * overlap with the work on this one.
 */
static void prefetch_lines(const void *p, size_t len, size_t max_lines)
{
	for (size_t off = 0; off < len && max_lines--; off += 64)
		__builtin_prefetch((const char *)p + off);
}

/* out[k + 1 .. n) are translated. */
static void translations_prefetch(const struct lb_maps *maps, struct lb_svc *const *out, size_t k,
				  size_t n)
{
	if (k + 5 < n && out[k + 5])
		__builtin_prefetch(out[k + 5]);
	if (k + 4 < n && out[k + 4] && out[k + 4]->n_fe)
		prefetch_lines(out[k + 4]->fe, out[k + 4]->n_fe * sizeof(struct lb_fe), 4);
	if (k + 3 < n && out[k + 3])
		lb_maps_prefetch(maps, out[k + 3]);
	if (k + 2 < n && out[k + 2])
		for (size_t i = 0; i < out[k + 2]->n_fe && i < 4; i++)
			prefetch_lines(out[k + 2]->fe[i].be,
				       out[k + 2]->fe[i].n_be * sizeof(struct lb_be), 8);
	if (k + 1 < n && out[k + 1])
		lb_maps_prefetch_backends(maps, out[k + 1]);
}

/*
 * Hand a dirty service's translation (rt: its result) to the map writer.
 * *held: the writer took next, which the caller frees (else it was freed,
 * or NULL).
 */
static int sv_apply(struct lb *lb, struct lb_sv *sv, struct lb_svc *next, int rt, bool *held)
{
	struct axn_mod *self = lb->self;
	struct lb_svc oldv, *old = NULL;
	char *err = NULL;
	int r;

	*held = false;
	if (rt < 0)
		return rt;
	if (sv->cur) {
		lb_svc_view(sv->cur, &oldv);
		old = &oldv;
	}
	r = lb_maps_service_set(lb->maps, sv->key, old, next, &err);
	if (r < 0) {
		/*
		 * Logged once per distinct reason; the old state stays in the maps.
		 * A map that is full only until freed entries pass their grace
		 * period (all services replaced at once) is one line per flush,
		 * not one per service: the retry comes by itself.
		 */
		if (r == -ENOSPC && lb_maps_quarantined(lb->maps)) {
			lb->n_grace_waits++;
			axn_log(self, AXN_LOG_DEBUG, "service %s: %s", sv->key, err ? err : "");
		} else if (!lb_sv_error(sv) || !err || strcmp(lb_sv_error(sv), err)) {
			axn_err(self, "service %s: %s", sv->key, err ? err : strerror(-r));
		}
		if (r == -ENOSPC)
			self->host->metric_add(lb->m_full, 1);
		self->host->metric_add(lb->m_refused, 1);
		sv_set_error(lb, sv, err ? err : strdup(strerror(-r)));
		lb_svc_free(next);
		return 0;
	}
	if (sv->err)
		axn_info(self, "service %s: programmed now", sv->key);
	sv_set_error(lb, sv, NULL);
	if (next && next->warning &&
	    (!old || !old->warning || strcmp(old->warning, next->warning)))
		axn_warn(self, "service %s: %s", sv->key, next->warning);
	sv_account(lb, sv, -1);
	lb_svc_spec_unref(sv->cur);
	sv->cur = next ? lb_svc_spec_ref(next->spec) : NULL;
	*held = next != NULL;
	sv_account(lb, sv, +1);
	return 0;
}

/*
 * A dirty service is clean again: its translation applied; gone when nothing
 * is left of it. *held: as sv_apply().
 */
static int sv_settle(struct lb *lb, struct lb_sv *sv, struct lb_svc *next, int rt, bool *held)
{
	int r;

	sv->dirty = false;
	r = sv_apply(lb, sv, next, rt, held);
	if (!sv->spec && !sv->n_sl && !sv->cur) {
		sv_set_error(lb, sv, NULL);
		lb_ht_remove(&lb->svcs, &sv->n);
		sv_free(lb, sv);
	}
	return r;
}

static void update_metrics(struct lb *lb)
{
	const struct axn_host *h = lb->self->host;

	h->metric_set(lb->m_services, (double)lb->n_svc_fe);
	h->metric_set(lb->m_frontends, (double)lb->n_fe);
	h->metric_set(lb->m_backends,
		      (double)(lb_maps_used(lb->maps, LBM_BE4) + lb_maps_used(lb->maps, LBM_BE6)));
}

static void retry_cb(struct axn_mod *self, void *arg)
{
	struct lb *lb = arg;

	/* One-shot and done: the flush arms the next one if this one fails too. */
	self->host->handle_free(self, lb->retry_t);
	lb->retry_t = NULL;
	lb->n_retries++;
	self->host->metric_add(lb->m_retries, 1);
	(void)lb_sync_flush(lb);
}

/* After a flush: wr is its first failed write (0: everything is written). */
static void retry_update(struct lb *lb, int wr)
{
	struct axn_mod *self = lb->self;
	const struct axn_host *h = self->host;
	uint32_t ms;
	int r;

	if (!wr) {
		if (lb->write_err)
			axn_info(self, "lb maps written after %u retr%s", lb->n_retries,
				 lb->n_retries == 1 ? "y" : "ies");
		/* A change's flush may get through before the timer: it is not needed then. */
		h->handle_free(self, lb->retry_t);
		lb->retry_t = NULL;
		lb->write_err = 0;
		lb->retry_ms = 0;
		lb->n_retries = 0;
		return;
	}
	if (lb->retry_t) {
		/* A change's flush failed while a retry waits: keep that one and its delay. */
		lb->write_err = wr;
		return;
	}
	ms = lb->retry_ms ? lb->retry_ms * 2 : RETRY_MIN_MS;
	if (ms > RETRY_MAX_MS)
		ms = RETRY_MAX_MS;
	/* The first failure is news; each retry that fails again is not. */
	axn_log(self, lb->write_err ? AXN_LOG_DEBUG : AXN_LOG_ERR,
		"writing the lb maps failed: %s; retrying in %u ms", strerror(-wr), ms);
	lb->write_err = wr;
	r = h->timer_add(self, ms, 0, retry_cb, lb, &lb->retry_t);
	if (r < 0) {
		/* The next change's flush writes the pending state too. */
		axn_err(self, "cannot arm the map write retry: %s", strerror(-r));
		lb->retry_t = NULL;
		return;
	}
	lb->retry_ms = ms;
}

static void grace_arm(struct lb *lb);

static void grace_cb(struct axn_mod *self, void *arg)
{
	struct lb *lb = arg;

	self->host->handle_free(self, lb->grace_t);
	lb->grace_t = NULL;
	/* Room came back: a refused service may fit now (the flush retries them). */
	if (lb_maps_grace(lb->maps) && lb->n_errors)
		(void)lb_sync_flush(lb);
	else if (lb_maps_quarantined(lb->maps))
		grace_arm(lb);
}

/* While anything is quarantined, a grace period ticks. */
static void grace_arm(struct lb *lb)
{
	struct axn_mod *self = lb->self;
	int r;

	if (lb->grace_t || !lb_maps_quarantined(lb->maps))
		return;
	r = self->host->timer_add(self, LB_GRACE_MS, 0, grace_cb, lb, &lb->grace_t);
	if (r < 0) {
		/* The next flush arms it again; until then freed ids wait. */
		axn_warn(self, "cannot arm the grace timer: %s", strerror(-r));
		lb->grace_t = NULL;
	}
}

/*
 * Backends this flush freed: the connected UDP sockets that socket LB
 * pointed at them are closed (lb_reap.h), now that the masters no longer
 * lead there, so that their applications connect again to one that exists.
 */
static void reap_freed(struct lb *lb)
{
	struct axn_mod *self = lb->self;
	struct lb_reap_key *keys;
	uint64_t closed = 0;
	uint32_t n_ns = 0;
	size_t n;
	int r;

	if (!lb->reaper)
		return;
	if (lb_maps_take_freed_udp(lb->maps, &keys, &n) < 0)
		axn_warn(self,
			 "out of memory: some connected UDP sockets of removed backends stay open");
	if (!n)
		goto out;
	if ((r = lb_reaper_run(lb->reaper, keys, n, &closed, &n_ns)) < 0) {
		axn_warn(self,
			 "closing the connected UDP sockets of %zu removed backend(s) failed: %s",
			 n, strerror(-r));
		goto out;
	}
	axn_log(self, closed ? AXN_LOG_INFO : AXN_LOG_DEBUG,
		"closed %llu connected UDP socket(s) of %zu removed backend(s) in %u network "
		"namespace(s)",
		(unsigned long long)closed, n, n_ns);
	self->host->metric_add(lb->m_udp_closed, (double)closed);
out:
	free(keys);
}

int lb_sync_flush(struct lb *lb)
{
	struct axn_mod *self = lb->self;
	struct lb_flush_stats st = {0};
	uint64_t t0 = now_us(), t_apply = 0, t_events = 0;
	size_t n = 0;
	int r = 0, rr, wr = 0;

	lb->flush_pending = false;
	if (lb->synced != SYNCED_ALL)
		return 0; /* see lb.h: nothing is written before the store synced */
	apply_events(lb);
	t_events = now_us() - t0;
	for (int pass = 0; pass < 2; pass++) {
		struct lb_flush_stats fst = {0};
		struct lb_sv **svs = lb->dirty;
		size_t n_fe = lb->n_dirty, k = n_fe;
		uint64_t t1 = now_us();

		/*
		 * About what the dirty services will claim (the slices applied since
		 * the last flush), so the writer sizes its tables once.
		 */
		lb_maps_reserve(lb->maps, n_fe, lb->dirty_be);
		lb->dirty_be[0] = lb->dirty_be[1] = 0;
		/* Services that become dirty meanwhile (a retry) go to the other array. */
		lb->dirty = lb->dirty_spare;
		lb->dirty_spare = svs;
		lb->n_dirty = 0;
		{
			struct lb_svc **out = calloc(n_fe ? n_fe : 1, sizeof(*out));
			int *res = calloc(n_fe ? n_fe : 1, sizeof(*res));
			bool *own = calloc(n_fe / TRANSLATE_CHUNK + 1, sizeof(*own));
			struct xlate x = {svs, out, res, n_fe, lb->maps, pthread_self(), 0, 0, 0, own};
			struct lb_pipe p;

			if (!out || !res) {
				/* No memory for the arrays: each service translated as it is applied. */
				free(out);
				free(res);
				free(own);
				for (size_t i = 0; i < k; i++) {
					struct lb_sv *sv = svs[i];
					struct lb_svc *nx = NULL;
					int rt = sv_translate(sv, &nx);
					bool held;

					/* sv_settle() may free sv, and nx. */
					if ((rr = sv_settle(lb, sv, nx, rt, &held)) < 0 && !r)
						r = rr;
					if (held)
						lb_svc_free(nx);
					n++;
				}
				goto translated;
			}
			lb_pipe_start(&p, k, TRANSLATE_CHUNK, xlate_range, &x,
				      k >= TRANSLATE_PARALLEL_MIN, TRANSLATE_WINDOW);
			for (size_t c = 0; c < p.n_chunks; c++) {
				size_t from, to;

				lb_pipe_wait(&p, c, &from, &to);
				for (size_t i = from; i < to; i++) {
					bool held;

					translations_prefetch(lb->maps, out, i, to);
					/* sv_settle() leaves out[i] to xlate_drop(), or frees it (and maybe sv). */
					if ((rr = sv_settle(lb, svs[i], out[i], res[i], &held)) < 0 && !r)
						r = rr;
					if (!held)
						out[i] = NULL;
					n++;
				}
				/*
				 * Translated here: freed here, into this thread's arena. The
				 * other thread freeing them took this arena's lock, which the
				 * claims' allocations then waited on.
				 */
				if (own && own[c])
					for (size_t i = from; i < to; i++) {
						lb_svc_free(out[i]);
						out[i] = NULL;
					}
				atomic_store_explicit(&x.claimed, to, memory_order_release);
			}
			lb_pipe_end(&p);
			xlate_drop(&x, k); /* what the second thread did not get to */
			free(out);
			free(res);
			free(own);
		}
translated:
		t_apply += now_us() - t1;
		rr = lb_maps_flush(lb->maps, &fst);
		st.updates += fst.updates;
		st.deletes += fst.deletes;
		st.syscalls += fst.syscalls;
		/*
		 * A failed write leaves all it had dirty, so a later flush's result
		 * (pass 1, the prune) is the one that counts. Reported and retried
		 * by retry_update().
		 */
		wr = rr < 0 ? rr : 0;
		/* Space or a frontend was freed: refused services get another chance, once. */
		if (pass || !lb_maps_take_released(lb->maps))
			break;
		for (struct lb_sverr *e = lb->errs; e; e = e->next)
			sv_dirty(lb, e->sv);
		if (!lb->n_dirty)
			break;
	}
	if (r < 0)
		axn_err(self, "programming services failed: %s", strerror(-r));
	if (lb->n_grace_waits) {
		axn_warn(self, "%zu service(s) wait for map entries freed in the last %u-%u ms (their "
			       "grace period); retried when it ends",
			 lb->n_grace_waits, LB_GRACE_MS, 2 * LB_GRACE_MS);
		lb->n_grace_waits = 0;
	}
	if (!lb->live || lb->prune_pending) {
		struct lb_flush_stats pst = {0};

		/*
		 * First flush after the store synced: what nobody claimed is stale
		 * now. A prune that failed is done again by the next flush.
		 */
		rr = lb_maps_prune(lb->maps, &pst);
		lb->prune_pending = rr < 0;
		wr = rr < 0 ? rr : 0; /* its flush wrote whatever was still pending */
		st.updates += pst.updates;
		st.deletes += pst.deletes;
		st.syscalls += pst.syscalls;
	}
	reap_freed(lb);
	{
		uint64_t t = now_us();
		char since[64] = "";

		/* Deliveries + the first flush: how long the maps took to catch up with the store. */
		if (!lb->live && lb->first_event_us)
			snprintf(since, sizeof(since), "; %.1f ms since the first store event",
				 (double)(t - lb->first_event_us) / 1000.0);
		/* The first flush after the store synced is news (info), later ones are not. */
		axn_log(self, lb->live ? AXN_LOG_DEBUG : AXN_LOG_INFO,
			"%s: %zu services, %u map updates, %u deletes, %u syscalls, %.1f ms "
			"(read %.1f ms, translate %.1f ms, write %.1f ms%s)",
			lb->live ? "flush" : "in sync", n, st.updates, st.deletes, st.syscalls,
			(double)(t - t0) / 1000.0, (double)t_events / 1000.0,
			(double)t_apply / 1000.0, (double)(t - t0 - t_apply - t_events) / 1000.0,
			since);
		/*
		 * The initial sync read every object at once (the core trims at ready,
		 * which comes before this flush): give that transient memory back.
		 */
		if (!lb->live && n >= 1000)
			malloc_trim(0);
		lb->live = true;
	}
	lb->last_flush_us = now_us() - t0;
	lb->last_st = st;
	self->host->metric_add(lb->m_writes, st.updates + st.deletes);
	self->host->metric_set(lb->m_flush_ms, (double)lb->last_flush_us / 1000.0);
	update_metrics(lb);
	retry_update(lb, wr);
	set_health(lb);
	grace_arm(lb);
	return r ? r : wr;
}

static void flush_cb(struct axn_mod *self, void *arg)
{
	(void)self;
	(void)lb_sync_flush(arg);
}

static void schedule(struct lb *lb)
{
	if (lb->flush_pending || lb->synced != SYNCED_ALL)
		return;
	if (lb->self->host->defer(lb->self, flush_cb, lb) == 0)
		lb->flush_pending = true;
}

int lb_sync_start(struct lb *lb)
{
	struct axn_mod *self = lb->self;
	const struct axn_host *h = self->host;
	uint32_t nbe = 0;
	int r;

	lb->svcs.koff = offsetof(struct lb_sv, key);
	lb->slices.koff = offsetof(struct lb_sl, key);
	lb->svcs.ksz = lb->slices.ksz = LB_HT_STR;
	if ((r = lb_maps_new(lb->fd, lb->max, &lb->maps)) < 0)
		return r;
	lb_maps_track_freed_udp(lb->maps, lb->reaper != NULL);
	r = lb_maps_adopt(lb->maps, &nbe);
	if (r < 0) {
		axn_err(self, "reading the pinned lb maps failed: %s", strerror(-r));
		return r;
	}
	if (r > 0 || nbe)
		axn_info(self, "adopted %d frontends and %u backends from the pinned maps", r, nbe);
	if ((r = h->metric_new(self, "services", AXN_METRIC_GAUGE, "services with frontends in the maps", &lb->m_services)) < 0 ||
	    (r = h->metric_new(self, "frontends", AXN_METRIC_GAUGE, "frontends (IP, port, protocol) in the maps", &lb->m_frontends)) < 0 ||
	    (r = h->metric_new(self, "backends", AXN_METRIC_GAUGE, "backends in the maps", &lb->m_backends)) < 0 ||
	    (r = h->metric_new(self, "map_full_errors_total", AXN_METRIC_COUNTER, "service changes refused because a map was full", &lb->m_full)) < 0 ||
	    (r = h->metric_new(self, "refused_total", AXN_METRIC_COUNTER, "service changes refused (full map, frontend conflict)", &lb->m_refused)) < 0 ||
	    (r = h->metric_new(self, "map_writes_total", AXN_METRIC_COUNTER, "map entries written or deleted", &lb->m_writes)) < 0 ||
	    (r = h->metric_new(self, "last_flush_ms", AXN_METRIC_GAUGE, "duration of the last map flush", &lb->m_flush_ms)) < 0 ||
	    (r = h->metric_new(self, "map_write_retries_total", AXN_METRIC_COUNTER, "flushes retried after a failed map write", &lb->m_retries)) < 0 ||
	    (r = h->metric_new(self, "udp_sockets_closed_total", AXN_METRIC_COUNTER, "connected UDP sockets closed because their backend was removed", &lb->m_udp_closed)) < 0)
		return r;
	h->set_state(self, AXN_STATE_UP, "waiting for store sync");
	if ((r = h->store_watch(self, "Service", on_service, lb, &lb->w_svc)) < 0 ||
	    (r = h->store_watch(self, "EndpointSlice", on_slice, lb, &lb->w_sl)) < 0) {
		axn_err(self, "store_watch failed: %s", strerror(-r));
		return r;
	}
	return 0;
}

void lb_sync_free(struct lb *lb)
{
	drop_events(lb);
	lb_ht_foreach(&lb->svcs, nd, nx) {
		(void)nx;
		sv_free(lb, (struct lb_sv *)nd);
	}
	lb_ht_foreach(&lb->slices, nd, nx) {
		(void)nx;
		sl_free((struct lb_sl *)nd);
	}
	free(lb->svcs.b);
	free(lb->slices.b);
	memset(&lb->svcs, 0, sizeof(lb->svcs));
	memset(&lb->slices, 0, sizeof(lb->slices));
	free(lb->dirty);
	free(lb->dirty_spare);
	lb->dirty = lb->dirty_spare = NULL;
	lb->n_dirty = lb->cap_dirty = 0;
	lb->errs = NULL;
	lb->n_errors = lb->n_svc_fe = lb->n_fe = 0;
	lb_maps_free(lb->maps);
	lb->maps = NULL;
}
