// SPDX-License-Identifier: Apache-2.0
/*
 * The resource store: Kubernetes-shaped objects as immutable, ref-counted
 * JSON, fed by source modules and delivered to subscribers by kind.
 *
 *   store_watch  -> ADDED x existing -> SYNCED (once all sources synced) -> deltas
 *
 * Deliveries are queued and run from a libevent callback, never inside the
 * call that caused them, so a callback may itself put, watch or unwatch.
 * Subscribers are served in module start order: a module sees an event after
 * the modules it depends on.
 *
 * Memory: a document as a jansson tree weighs ~10x its compact JSON text, and
 * most objects are only read while they are delivered. So an object held by
 * the store alone (refcnt 1) once its deliveries are done is compacted: its
 * tree is dumped to compact text and dropped. obj_json() parses the text back
 * on demand and caches the tree until the object is compacted again. Modules
 * are unaffected: compaction happens only from the loop (dispatch), never
 * while a module holds a reference, so a tree stays valid as long as the
 * caller holds one (a callback's borrowed object is held by its queued event).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "core.h"


struct axn_obj {
	int refcnt;
	json_t *doc; /* the tree; NULL while compacted */
	char *text; /* compact JSON of doc, once compacted (kept after a re-parse) */
	bool in_store; /* in a kind table: only then does refcnt 1 mean "nobody else" */
	bool sweep_queued; /* a compaction is queued for it */
	char *key; /* "<ns>/<name>" */
	char *group; /* apiVersion's group ("" for core kinds) */
	struct module *source;
	struct axn_obj *hnext; /* hash chain */
};

struct sub {
	struct axn_handle h;
	struct kind_table *kt;
	char *group; /* NULL = any group */
	axn_store_cb cb;
	void *arg;
	bool synced_sent;
	TAILQ_ENTRY(sub) link;
};

struct kind_table {
	char *kind;
	struct axn_obj **buckets;
	size_t nbuckets, count;
	TAILQ_HEAD(, sub) subs;
	struct kind_table *next;
};

/* An object waiting to be compacted (the sweep queue). */
struct pending {
	struct axn_obj *obj;
	TAILQ_ENTRY(pending) link;
};

/* A queued delivery; sub NULL: its subscription is gone (skipped). */
struct qitem {
	struct sub *sub;
	uint32_t ev;
	struct axn_obj *obj;
};

/*
 * Deliveries are queued by value in blocks, freed as they are delivered:
 * a source's initial list queues one per object and subscriber, and an
 * allocation each put them between the documents (a cache miss per
 * delivery), where a block's memory is reused by what the subscribers
 * allocate next.
 */
#define QBLK 1024

struct qblk {
	struct qblk *next;
	size_t head, tail; /* it[head .. tail) are queued */
	struct qitem it[QBLK];
};

struct source_err {
	char *source, *where, *msg;
	struct source_err *next;
};

struct source {
	struct module *mod;
	struct axn_source_ops ops;
	void *arg;
	bool synced;
	struct source *next;
};

struct store {
	struct agent *agent;
	struct kind_table *kinds;
	struct source *sources;
	struct source_err *errors;
	struct qblk *q_first, *q_last;
	size_t n_queue;
	TAILQ_HEAD(, pending) sweep; /* objects to compact once the queue is empty */
	size_t swept; /* trees dropped since the sweep queue was last empty */
	struct event *dispatch_ev;
	bool synced;
	bool start_done;
};

static struct store *S; /* one store per agent process; host callbacks reach it here */

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static struct kind_table *kind_get(const char *kind, bool create)
{
	struct kind_table *kt;

	for (kt = S->kinds; kt; kt = kt->next)
		if (!strcmp(kt->kind, kind))
			return kt;
	if (!create)
		return NULL;
	kt = calloc(1, sizeof(*kt));
	if (!kt || !(kt->kind = strdup(kind))) {
		free(kt);
		return NULL;
	}
	kt->nbuckets = 64;
	kt->buckets = calloc(kt->nbuckets, sizeof(*kt->buckets));
	if (!kt->buckets) {
		free(kt->kind);
		free(kt);
		return NULL;
	}
	TAILQ_INIT(&kt->subs);
	kt->next = S->kinds;
	S->kinds = kt;
	return kt;
}

static struct axn_obj **slot(struct kind_table *kt, const char *key)
{
	struct axn_obj **p = &kt->buckets[fnv1a(key) & (kt->nbuckets - 1)];

	while (*p && strcmp((*p)->key, key))
		p = &(*p)->hnext;
	return p;
}

static void grow(struct kind_table *kt)
{
	size_t n = kt->nbuckets * 2;
	struct axn_obj **b = calloc(n, sizeof(*b));

	if (!b)
		return; /* keep the longer chains */
	for (size_t i = 0; i < kt->nbuckets; i++)
		for (struct axn_obj *o = kt->buckets[i], *next; o; o = next) {
			size_t k = fnv1a(o->key) & (n - 1);

			next = o->hnext;
			o->hnext = b[k];
			b[k] = o;
		}
	free(kt->buckets);
	kt->buckets = b;
	kt->nbuckets = n;
}

static struct axn_obj *obj_ref(struct axn_obj *o)
{
	if (o)
		o->refcnt++;
	return o;
}

static struct axn_obj *obj_put(struct axn_obj *o)
{
	if (o && --o->refcnt == 0) {
		json_decref(o->doc);
		free(o->text);
		free(o->key);
		free(o->group);
		free(o);
	}
	return NULL;
}

/*
 * Compact it from the loop, once whatever holds it now has returned and the
 * deliveries queued are done (dumping must not delay them).
 */
static void obj_sweep_later(struct axn_obj *o)
{
	struct pending *p;

	if (o->sweep_queued || !o->doc || !o->in_store)
		return;
	p = calloc(1, sizeof(*p));
	if (!p)
		return; /* stays a tree: costs memory, not correctness */
	o->sweep_queued = true;
	p->obj = obj_ref(o);
	TAILQ_INSERT_TAIL(&S->sweep, p, link);
	event_active(S->dispatch_ev, EV_WRITE, 0);
}

/* The host's obj_unref: a module letting go may leave the store the only holder. */
static struct axn_obj *obj_unref(struct axn_obj *o)
{
	if (o && o->refcnt == 2 && o->in_store && o->doc) {
		o->refcnt--;
		obj_sweep_later(o);
		return NULL;
	}
	return obj_put(o);
}

static json_t *text_parse(const char *text)
{
	return json_loads(text, JSON_ALLOW_NUL, NULL);
}

static const json_t *obj_json(const struct axn_obj *co)
{
	/* The tree is a cache of the text: filling it in does not change the object. */
	struct axn_obj *o = (struct axn_obj *)co;

	if (!o)
		return NULL;
	if (!o->doc && o->text) {
		o->doc = text_parse(o->text);
		if (!o->doc)
			log_err("store: cannot parse %s back from its text (out of memory?)",
				o->key);
		else if (o->refcnt == 1)
			obj_sweep_later(o); /* read by the store itself: drop it again later */
	}
	return o->doc;
}

static bool sub_wants(const struct sub *s, const struct axn_obj *o)
{
	return !s->group || !strcmp(s->group, o->group);
}

static void enqueue(struct sub *s, uint32_t ev, struct axn_obj *o)
{
	struct qblk *b = S->q_last;

	if (!b || b->tail == QBLK) {
		if (!(b = malloc(sizeof(*b)))) {
			log_err("store: out of memory queueing an event for %s", s->h.owner->name);
			return;
		}
		b->next = NULL;
		b->head = b->tail = 0;
		if (S->q_last)
			S->q_last->next = b;
		else
			S->q_first = b;
		S->q_last = b;
	}
	b->it[b->tail++] = (struct qitem){.sub = s, .ev = ev, .obj = obj_ref(o)};
	S->n_queue++;
	event_active(S->dispatch_ev, EV_WRITE, 0);
}

/* The oldest queued delivery into *ret; false when there is none. */
static bool dequeue(struct qitem *ret)
{
	struct qblk *b;

	while ((b = S->q_first)) {
		if (b->head < b->tail) {
			*ret = b->it[b->head++];
			S->n_queue--;
			return true;
		}
		if (b->tail < QBLK)
			return false; /* the last block, with room: kept for the next ones */
		S->q_first = b->next;
		if (!S->q_first)
			S->q_last = NULL;
		free(b);
	}
	return false;
}

static void notify(struct kind_table *kt, uint32_t ev, struct axn_obj *o)
{
	struct sub *s;

	TAILQ_FOREACH(s, &kt->subs, link)
		if (sub_wants(s, o))
			enqueue(s, ev, o);
}

/* From this many trees dropped on, the sweep trims the heap when done. */
#define SWEEP_TRIM 256
/* Trees dropped per loop turn: all 20k of an initial load at once blocked it ~250 ms. */
#define SWEEP_BATCH 1024

/*
 * Compact what is queued, a batch at a time so that the socket and timers
 * are served in between. The trees live in jalloc's chunks (jalloc.c), apart
 * from the long-lived heap, so the chunks they leave empty go back to the
 * kernel as they are freed.
 */
static void sweep(void)
{
	struct pending *p;
	size_t n = 0;

	if (S->n_queue)
		return; /* deliveries first; dispatch runs again for them */
	while ((p = TAILQ_FIRST(&S->sweep)) && n < SWEEP_BATCH) {
		struct axn_obj *o = p->obj;

		TAILQ_REMOVE(&S->sweep, p, link);
		o->sweep_queued = false;
		/* Still the store's alone (our ref aside)? A holder's unref queues it again. */
		if (o->refcnt == 2 && o->in_store && o->doc &&
		    (o->text || (o->text = json_dumps(o->doc, JSON_COMPACT)))) {
			json_decref(o->doc);
			o->doc = NULL;
			n++;
		}
		obj_put(o);
		free(p);
	}
	S->swept += n;
	if (!TAILQ_EMPTY(&S->sweep)) {
		/*
		 * Not event_active(): libevent runs what is activated from an
		 * active callback in the same pass, before polling again. A
		 * timeout fires only after the poll, so I/O gets its turn.
		 */
		static const struct timeval now = {0, 0};

		event_add(S->dispatch_ev, &now);
		return;
	}
#ifdef __GLIBC__
	/* The parser's and the sources' buffers leave holes in the heap too. */
	if (S->swept >= SWEEP_TRIM)
		malloc_trim(0);
#endif
	S->swept = 0;
}

static void dispatch(evutil_socket_t fd, short what, void *arg)
{
	/* Only what is queued now: callbacks may queue more, served next round. */
	size_t n = S->n_queue;
	struct qitem q;

	while (n-- && dequeue(&q)) {
		struct axn_obj *o = q.obj;

		/* Still queued until now: a subscription freed meanwhile has set it NULL. */
		if (q.sub)
			q.sub->cb(&q.sub->h.owner->pub, q.ev, o, q.sub->arg);
		/* The last delivery of an object the store alone keeps: compact it later. */
		if (o && o->refcnt == 2)
			obj_sweep_later(o);
		obj_put(o);
	}
	sweep();
}

static void send_synced(void)
{
	for (struct kind_table *kt = S->kinds; kt; kt = kt->next) {
		struct sub *s;

		TAILQ_FOREACH(s, &kt->subs, link)
			if (!s->synced_sent) {
				s->synced_sent = true;
				enqueue(s, AXN_EV_SYNCED, NULL);
			}
	}
}

static void check_synced(void)
{
	if (S->synced || !S->start_done)
		return;
	for (struct source *src = S->sources; src; src = src->next)
		if (!src->synced && src->mod->state == MOD_UP)
			return;
	S->synced = true;
	log_debug("store: all sources synced");
	send_synced();
	agent_synced(S->agent);
}

/* Called by the host once every module has been started. */
void store_start_done(void)
{
	S->start_done = true;
	check_synced();
}


static void sub_destroy(struct axn_handle *h)
{
	struct sub *s = (struct sub *)h;

	TAILQ_REMOVE(&s->kt->subs, s, link);
	for (struct qblk *b = S->q_first; b; b = b->next)
		for (size_t i = b->head; i < b->tail; i++)
			if (b->it[i].sub == s)
				b->it[i].sub = NULL;
	free(s->group);
}

static int split_kind(const char *spec, char **ret_group, const char **ret_kind)
{
	const char *slash = strrchr(spec, '/');
	char *g = NULL;

	if (slash) {
		/* "group/Kind" or "group/version/Kind": keep the group only. */
		const char *first = strchr(spec, '/');

		g = strndup(spec, (size_t)(first - spec));
		if (!g)
			return -ENOMEM;
		*ret_kind = slash + 1;
	} else {
		*ret_kind = spec;
	}
	if (!**ret_kind) {
		free(g);
		return -EINVAL;
	}
	*ret_group = g;
	return 0;
}

static int h_store_watch(struct axn_mod *self, const char *kind, axn_store_cb cb, void *arg,
			 struct axn_handle **ret_h)
{
	struct module *m = (struct module *)self;
	struct kind_table *kt;
	const char *k;
	char *group = NULL;
	struct sub *s, *it;
	int r;

	if (!kind || !cb)
		return -EINVAL;
	r = split_kind(kind, &group, &k);
	if (r < 0)
		return r;
	kt = kind_get(k, true);
	s = kt ? (struct sub *)handle_new(m, H_SUB, sizeof(*s), sub_destroy, "subscription %s",
					  kind)
	       : NULL;
	if (!s) {
		free(group);
		return -ENOMEM;
	}
	s->kt = kt;
	s->group = group;
	s->cb = cb;
	s->arg = arg;
	/* Keep subscribers in module start order. */
	TAILQ_FOREACH(it, &kt->subs, link)
		if (it->h.owner->order > m->order)
			break;
	if (it)
		TAILQ_INSERT_BEFORE(it, s, link);
	else
		TAILQ_INSERT_TAIL(&kt->subs, s, link);
	for (size_t i = 0; i < kt->nbuckets; i++)
		for (struct axn_obj *o = kt->buckets[i]; o; o = o->hnext)
			if (sub_wants(s, o))
				enqueue(s, AXN_EV_ADDED, o);
	if (S->synced) {
		s->synced_sent = true;
		enqueue(s, AXN_EV_SYNCED, NULL);
	}
	if (ret_h)
		*ret_h = &s->h;
	return 0;
}

static int make_key(const char *ns, const char *name, char **ret)
{
	if (asprintf(ret, "%s/%s", ns ? ns : "", name) < 0)
		return -ENOMEM;
	return 0;
}

static int h_store_get(struct axn_mod *self, const char *kind, const char *ns, const char *name,
		       struct axn_obj **ret_obj)
{
	struct kind_table *kt;
	struct axn_obj *o;
	char *key;

	if (!kind || !name || !ret_obj)
		return -EINVAL;
	kt = kind_get(kind, false);
	if (!kt)
		return -ENOENT;
	if (make_key(ns, name, &key) < 0)
		return -ENOMEM;
	o = *slot(kt, key);
	free(key);
	if (!o)
		return -ENOENT;
	*ret_obj = obj_ref(o);
	return 0;
}

static struct source *source_of(const struct module *m)
{
	for (struct source *s = S->sources; s; s = s->next)
		if (s->mod == m)
			return s;
	return NULL;
}

static int h_store_set_status(struct axn_mod *self, const struct axn_obj *obj, const json_t *status)
{
	struct source *src;

	if (!obj || !status)
		return -EINVAL;
	src = source_of(obj->source);
	if (!src || !src->ops.write_status)
		return -EOPNOTSUPP;
	return src->ops.write_status(&src->mod->pub, obj, status, src->arg);
}

static int h_source_register(struct axn_mod *self, const char *name,
			     const struct axn_source_ops *ops, void *arg)
{
	struct module *m = (struct module *)self;
	struct source *src;

	if (source_of(m))
		return -EEXIST;
	src = calloc(1, sizeof(*src));
	if (!src)
		return -ENOMEM;
	src->mod = m;
	if (ops)
		memcpy(&src->ops, ops, ops->size < sizeof(src->ops) ? ops->size : sizeof(src->ops));
	src->arg = arg;
	src->next = S->sources;
	S->sources = src;
	m->source = true;
	return 0;
}

/*
 * Is the new object's document the old one's? Against a compacted object,
 * equal text means equal documents (jansson dumps keys in insertion order);
 * different text may still be an equal document with its keys reordered, so
 * only then is the old text parsed. The new dump is kept for compaction.
 */
static bool doc_unchanged(struct axn_obj *old, struct axn_obj *o)
{
	json_t *t;
	bool eq;

	if (old->doc)
		return json_equal(old->doc, o->doc);
	if (!(o->text = json_dumps(o->doc, JSON_COMPACT)))
		return false; /* out of memory: an event too many is harmless */
	if (!strcmp(o->text, old->text))
		return true;
	if (!(t = text_parse(old->text)))
		return false;
	eq = json_equal(t, o->doc);
	json_decref(t);
	return eq;
}

static int h_source_put(struct axn_mod *self, json_t *doc)
{
	struct module *m = (struct module *)self;
	const char *kind, *name, *ns, *api;
	struct kind_table *kt;
	struct axn_obj **pp, *o, *old;
	const json_t *meta;
	int r = -EINVAL;

	if (!doc)
		return -EINVAL;
	if (!source_of(m)) {
		r = -EPERM;
		goto err;
	}
	meta = json_object_get(doc, "metadata");
	kind = json_string_value(json_object_get(doc, "kind"));
	api = json_string_value(json_object_get(doc, "apiVersion"));
	name = json_string_value(json_object_get(meta, "name"));
	ns = json_string_value(json_object_get(meta, "namespace"));
	if (!kind || !*kind || !api || !name || !*name)
		goto err;
	kt = kind_get(kind, true);
	o = calloc(1, sizeof(*o));
	if (!kt || !o || make_key(ns, name, &o->key) < 0) {
		free(o);
		r = -ENOMEM;
		goto err;
	}
	o->group = strchr(api, '/') ? strndup(api, (size_t)(strchr(api, '/') - api)) : strdup("");
	o->refcnt = 1;
	o->doc = doc;
	o->source = m;
	pp = slot(kt, o->key);
	old = *pp;
	if (old && old->source != m) {
		log_msg(m->name, AXN_LOG_WARN, "%s %s is already provided by source %s; ignored",
			kind, o->key, old->source->name);
		o->doc = NULL;
		obj_put(o);
		r = -EEXIST;
		goto err;
	}
	if (old && doc_unchanged(old, o)) {
		obj_put(o); /* unchanged: no event (drops doc) */
		return 0;
	}
	o->in_store = true;
	if (old) {
		o->hnext = old->hnext;
		*pp = o;
		old->in_store = false;
		notify(kt, AXN_EV_MODIFIED, o);
		obj_put(old);
	} else {
		*pp = o;
		kt->count++;
		if (kt->count > kt->nbuckets)
			grow(kt);
		notify(kt, AXN_EV_ADDED, o);
	}
	/* No subscriber for it (or none yet): compact it all the same. */
	obj_sweep_later(o);
	return 0;
err:
	json_decref(doc);
	return r;
}

static int h_source_delete(struct axn_mod *self, const char *kind, const char *ns, const char *name)
{
	struct kind_table *kt;
	struct axn_obj **pp, *o;
	char *key;

	if (!kind || !name)
		return -EINVAL;
	kt = kind_get(kind, false);
	if (!kt)
		return -ENOENT;
	if (make_key(ns, name, &key) < 0)
		return -ENOMEM;
	pp = slot(kt, key);
	free(key);
	o = *pp;
	if (!o)
		return -ENOENT;
	if (o->source != (struct module *)self)
		return -EPERM;
	*pp = o->hnext;
	o->hnext = NULL;
	o->in_store = false;
	kt->count--;
	notify(kt, AXN_EV_DELETED, o);
	obj_put(o);
	return 0;
}

static int h_source_synced(struct axn_mod *self)
{
	struct source *src = source_of((struct module *)self);

	if (!src)
		return -EPERM;
	src->synced = true;
	check_synced();
	return 0;
}

static int h_source_error(struct axn_mod *self, const char *where, const char *msg)
{
	struct module *m = (struct module *)self;
	struct source_err **pp, *e;

	if (!where)
		return -EINVAL;
	for (pp = &S->errors; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->source, m->name) && !strcmp((*pp)->where, where))
			break;
	e = *pp;
	if (!msg) {
		if (e) {
			*pp = e->next;
			free(e->source);
			free(e->where);
			free(e->msg);
			free(e);
		}
		return 0;
	}
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e || !(e->source = strdup(m->name)) || !(e->where = strdup(where))) {
			if (e)
				free(e->source);
			free(e);
			return -ENOMEM;
		}
		*pp = e;
	}
	free(e->msg);
	e->msg = strdup(msg);
	return e->msg ? 0 : -ENOMEM;
}

static int h_selector_match(struct axn_mod *self, const json_t *sel, const json_t *labels)
{
	return selector_match_json(sel, labels);
}

/* Drop everything a stopped source owned (its objects are no longer backed). */
void store_source_gone(struct module *m)
{
	struct source **pp;

	for (struct kind_table *kt = S->kinds; kt; kt = kt->next)
		for (size_t i = 0; i < kt->nbuckets; i++)
			for (struct axn_obj **p = &kt->buckets[i]; *p;) {
				struct axn_obj *o = *p;

				if (o->source != m) {
					p = &o->hnext;
					continue;
				}
				*p = o->hnext;
				o->in_store = false;
				kt->count--;
				notify(kt, AXN_EV_DELETED, o);
				obj_put(o);
			}
	for (pp = &S->sources; *pp; pp = &(*pp)->next)
		if ((*pp)->mod == m) {
			struct source *s = *pp;

			*pp = s->next;
			free(s);
			break;
		}
	for (struct source_err **e = &S->errors; *e;) {
		struct source_err *x = *e;

		if (strcmp(x->source, m->name)) {
			e = &x->next;
			continue;
		}
		*e = x->next;
		free(x->source);
		free(x->where);
		free(x->msg);
		free(x);
	}
	m->source = false;
}

static json_t *errors_json(void)
{
	json_t *a = json_array();

	for (struct source_err *e = S->errors; e; e = e->next)
		json_array_append_new(a, json_pack("{s:s, s:s, s:s}", "source", e->source, "where",
						   e->where, "message", e->msg));
	return a;
}

static int cmp_obj(const void *a, const void *b)
{
	return strcmp((*(struct axn_obj *const *)a)->key, (*(struct axn_obj *const *)b)->key);
}

/* API "resources": kinds and counts, or the objects of one kind. */
int store_api_resources(const json_t *args, json_t **ret, char **ret_err)
{
	const char *kind = json_string_value(json_object_get(args, "kind"));
	const char *name = json_string_value(json_object_get(args, "name"));
	const char *ns = json_string_value(json_object_get(args, "namespace"));
	struct kind_table *kt;
	struct axn_obj **all;
	json_t *items;
	size_t n = 0;

	if (!kind) {
		json_t *kinds = json_array();

		for (kt = S->kinds; kt; kt = kt->next)
			if (kt->count)
				json_array_append_new(kinds, json_pack("{s:s, s:I}", "kind", kt->kind,
								       "count",
								       (json_int_t)kt->count));
		*ret = json_pack("{s:o, s:o}", "kinds", kinds, "errors", errors_json());
		return 0;
	}
	kt = kind_get(kind, false);
	items = json_array();
	all = kt ? calloc(kt->count + 1, sizeof(*all)) : NULL;
	if (kt && !all) {
		json_decref(items);
		return -ENOMEM;
	}
	for (size_t i = 0; kt && i < kt->nbuckets; i++)
		for (struct axn_obj *o = kt->buckets[i]; o; o = o->hnext) {
			/* The key is "<ns>/<name>": no need to parse a compacted object here. */
			const char *slash = strchr(o->key, '/');

			if (name && strcmp(name, slash + 1))
				continue;
			if (ns && (slash == o->key || strncmp(ns, o->key, (size_t)(slash - o->key)) ||
				   ns[slash - o->key]))
				continue;
			all[n++] = o;
		}
	qsort(all, n, sizeof(*all), cmp_obj);
	for (size_t i = 0; i < n; i++) {
		/* A compacted object's tree is parsed for the reply only, not cached. */
		json_t *doc = all[i]->doc ? json_incref(all[i]->doc) : text_parse(all[i]->text);

		if (!doc || json_array_append_new(items, doc)) {
			free(all);
			json_decref(items);
			return -ENOMEM;
		}
	}
	free(all);
	if (name && !n) {
		json_decref(items);
		if (asprintf(ret_err, "%s %s%s%s not found", kind, ns ? ns : "", ns ? "/" : "",
			     name) < 0)
			*ret_err = NULL;
		return -ENOENT;
	}
	*ret = json_pack("{s:o, s:o}", "items", items, "errors", errors_json());
	return 0;
}

int store_init(struct agent *a)
{
	S = calloc(1, sizeof(*S));
	if (!S)
		return -ENOMEM;
	S->agent = a;
	TAILQ_INIT(&S->sweep);
	S->dispatch_ev = event_new(a->base, -1, 0, dispatch, NULL);
	if (!S->dispatch_ev) {
		free(S);
		S = NULL;
		return -ENOMEM;
	}
	a->store = S;
	return 0;
}

void store_fini(struct agent *a)
{
	struct pending *p;

	if (!S)
		return;
	while (S->q_first) {
		struct qblk *b = S->q_first;

		for (size_t i = b->head; i < b->tail; i++)
			obj_put(b->it[i].obj);
		S->q_first = b->next;
		free(b);
	}
	while ((p = TAILQ_FIRST(&S->sweep))) {
		TAILQ_REMOVE(&S->sweep, p, link);
		obj_put(p->obj);
		free(p);
	}
	for (struct kind_table *kt = S->kinds, *next; kt; kt = next) {
		next = kt->next;
		for (size_t i = 0; i < kt->nbuckets; i++)
			for (struct axn_obj *o = kt->buckets[i], *n2; o; o = n2) {
				n2 = o->hnext;
				o->in_store = false;
				obj_put(o);
			}
		free(kt->buckets);
		free(kt->kind);
		free(kt);
	}
	for (struct source *s = S->sources, *next; s; s = next) {
		next = s->next;
		free(s);
	}
	for (struct source_err *e = S->errors, *next; e; e = next) {
		next = e->next;
		free(e->source);
		free(e->where);
		free(e->msg);
		free(e);
	}
	event_free(S->dispatch_ev);
	free(S);
	S = NULL;
	a->store = NULL;
}

/* The store's part of the host table, filled in host.c. */
void store_fill_host(struct axn_host *h)
{
	h->store_watch = h_store_watch;
	h->store_get = h_store_get;
	h->store_set_status = h_store_set_status;
	h->source_register = h_source_register;
	h->source_put = h_source_put;
	h->source_delete = h_source_delete;
	h->source_synced = h_source_synced;
	h->source_error = h_source_error;
	h->obj_ref = obj_ref;
	h->obj_unref = obj_unref;
	h->obj_json = obj_json;
	h->selector_match = h_selector_match;
}
