// SPDX-License-Identifier: Apache-2.0
/*
 * testhost.c - libaxoneme-testhost: a fake struct axn_host that records what
 * a module does and lets a test drive its timers, fds, deferred calls and
 * store by hand. See axoneme/testhost.h for the behaviour of each call.
 *
 * Everything except post() runs on the test's thread; post() and the queue
 * it feeds are the only shared state, guarded by one mutex.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* vasprintf */
#endif
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <axoneme/testhost.h>

/*
 * advance() gives up after this many callbacks, run_pending() after this many
 * more than were queued when it was called: a loop.
 */
#define TH_MAX_CALLBACKS 100000

enum th_kind { TH_TIMER, TH_IO, TH_SUB, TH_API, TH_METRIC, TH_ALIAS };
static const char *const th_kind_name[] = {"timer", "io watch", "subscription", "endpoint",
					   "metric", "alias"};

enum th_lc { LC_LOADED, LC_INIT, LC_UP, LC_STOPPED };

struct axn_handle {
	enum th_kind kind;
	struct axn_testhost *th;
	TAILQ_ENTRY(axn_handle) link;
	unsigned mark; /* pass marker: fire each handle at most once per pass */
	void *arg;
	char *name; /* subscription kind, endpoint path or metric name */
	union {
		struct {
			uint64_t due, period;
			bool armed;
			axn_timer_cb cb;
		} timer;
		struct {
			int fd;
			uint32_t events;
			axn_io_cb cb;
		} io;
		struct {
			axn_store_cb cb;
		} sub;
		struct {
			axn_api_cb cb;
		} api;
		struct {
			char *target; /* the endpoint path (without the module name) */
		} alias;
		struct {
			double value;
		} metric;
	};
};

/* `mine`: put by the module's source; otherwise injected by the test. */
struct axn_obj {
	int refs;
	json_t *doc;
	const char *kind, *group; /* interned: kind and apiVersion's group ("" for core kinds) */
	bool mine;
	struct axn_testhost *th;
	TAILQ_ENTRY(axn_obj) link;
};

/*
 * A stored object: in th->store (insertion order), in its kind's list (the
 * same order: a watch replays only its kind, as the core's kind tables do)
 * and in th->index (by key).
 */
struct th_entry {
	char *key;
	uint64_t hash;
	struct axn_obj *obj;
	struct th_entry *hnext;
	struct th_objkind *k;
	TAILQ_ENTRY(th_entry) link, klink;
};

struct th_objkind {
	const char *kind; /* interned */
	TAILQ_HEAD(, th_entry) list;
};

/* A queued call: defer/post (call != NULL) or a store delivery to `sub`. */
struct th_item {
	axn_call_cb call;
	void *arg;
	struct axn_handle *sub;
	uint32_t event;
	struct axn_obj *obj;
};

#define TH_QBLK 1024

struct th_qblk {
	struct th_qblk *next;
	size_t head, tail; /* it[head .. tail) are queued (or dropped: no call, no sub) */
	struct th_item it[TH_QBLK];
};

/* Allocations owned by one conf struct: strings and strlist arrays. */
struct th_blk {
	struct th_blk *next;
	char data[];
};

struct th_conf {
	void *data;
	struct th_blk *blks;
};

struct axn_testhost {
	struct axn_mod mod;
	const struct axn_module_desc *desc;
	enum th_lc lc;
	struct th_conf *conf;
	bool verbose;
	int leaks;
	TAILQ_HEAD(, axn_handle) handles;
	TAILQ_HEAD(, axn_obj) objs;
	TAILQ_HEAD(, th_entry) store;
	struct th_entry **index; /* hash chains over store, nindex a power of two */
	size_t nindex, nstore;
	char **interned; /* kinds and groups (see intern()) */
	size_t n_interned;
	struct th_objkind **kinds; /* one list per kind stored */
	size_t n_kinds;
	/*
	 * Queued items, by value in blocks freed as they are run: a replay
	 * queues one per object, and an allocation each put them between the
	 * documents -- a cache miss per delivery that the module's benchmarks
	 * counted as the module's time -- while one array for all of them
	 * would keep its memory until the last one ran, where freed blocks
	 * are memory the module's next allocations reuse.
	 */
	struct th_qblk *q_first, *q_last;
	size_t n_queue; /* items queued and not dropped */
	pthread_mutex_t lock;
	char **logs;
	size_t n_logs;
	uint32_t state;
	char *reason;
	uint64_t now;
	unsigned gen;
	json_t *info, *maps, *events, *errors, *statuses;
	bool started, src_registered, src_synced, test_used, test_synced, synced;
	const struct axn_source_ops *src_ops;
	void *src_arg;
};

static struct axn_testhost *th_of(struct axn_mod *self)
{
	return (struct axn_testhost *)((char *)self - offsetof(struct axn_testhost, mod));
}

/* ---- configuration ------------------------------------------------------- */

static void *blk_alloc(struct th_conf *c, size_t n)
{
	struct th_blk *b = calloc(1, sizeof(*b) + n);

	if (!b)
		return NULL;
	b->next = c->blks;
	c->blks = b;
	return b->data;
}

static void conf_free(struct th_conf *c)
{
	if (!c)
		return;
	while (c->blks) {
		struct th_blk *b = c->blks;

		c->blks = b->next;
		free(b);
	}
	free(c);
}

static char *blk_strdup(struct th_conf *c, const char *s)
{
	char *d = blk_alloc(c, strlen(s) + 1);

	return d ? strcpy(d, s) : NULL;
}

static int conf_set(struct th_conf *c, const struct axn_option *o, const char *v)
{
	char *p = (char *)c->data + o->offset;
	char *end;

	switch (o->type) {
	case AXN_OPT_BOOL:
		if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes"))
			*(int *)p = 1;
		else if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no"))
			*(int *)p = 0;
		else
			return -EINVAL;
		return 0;
	case AXN_OPT_INT: {
		long long n;

		errno = 0;
		n = strtoll(v, &end, 0);
		if (errno || end == v || *end)
			return -EINVAL;
		if ((o->min || o->max) && (n < o->min || n > o->max))
			return -ERANGE;
		*(int64_t *)p = n;
		return 0;
	}
	case AXN_OPT_STRING:
		*(const char **)p = blk_strdup(c, v);
		return *(const char **)p ? 0 : -ENOMEM;
	case AXN_OPT_STRLIST: {
		size_t n = 1, i = 0;
		const char **list;
		char *copy, *tok, *save = NULL;

		for (const char *s = v; *s; s++)
			n += *s == ',';
		list = blk_alloc(c, (n + 1) * sizeof(*list));
		copy = blk_strdup(c, v);
		if (!list || !copy)
			return -ENOMEM;
		for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
			list[i++] = tok;
		*(const char *const **)p = list;
		return 0;
	}
	}
	return -EINVAL;
}

static const struct axn_option *conf_option(const struct axn_module_desc *d, const char *key)
{
	for (const struct axn_option *o = d->options; o && o->key; o++)
		if (!strcmp(o->key, key))
			return o;
	return NULL;
}

static int conf_build(const struct axn_module_desc *d, const char *const *kv, struct th_conf **ret)
{
	struct th_conf *c = calloc(1, sizeof(*c));
	int r = -ENOMEM;

	if (!c || !(c->data = blk_alloc(c, d->conf_size ? d->conf_size : 1)))
		goto fail;
	for (const struct axn_option *o = d->options; o && o->key; o++) {
		bool given = false;

		for (size_t i = 0; kv && kv[i] && kv[i + 1]; i += 2)
			given |= !strcmp(kv[i], o->key);
		if ((o->flags & AXN_OPTF_REQUIRED) && !given) {
			fprintf(stderr, "axn_testhost: %s: option %s is required\n", d->name,
				o->key);
			r = -EINVAL;
			goto fail;
		}
		if (o->def && (r = conf_set(c, o, o->def)) < 0) {
			fprintf(stderr, "axn_testhost: %s: bad default for %s\n", d->name, o->key);
			goto fail;
		}
	}
	for (size_t i = 0; kv && kv[i]; i += 2) {
		const struct axn_option *o = conf_option(d, kv[i]);

		r = -EINVAL;
		if (!o || !kv[i + 1]) {
			fprintf(stderr, "axn_testhost: %s: %s %s\n", d->name,
				o ? "no value for" : "unknown option", kv[i]);
			goto fail;
		}
		if ((r = conf_set(c, o, kv[i + 1])) < 0) {
			fprintf(stderr, "axn_testhost: %s: bad value for %s: %s\n", d->name, kv[i],
				kv[i + 1]);
			goto fail;
		}
	}
	*ret = c;
	return 0;
fail:
	conf_free(c);
	return r;
}

/* ---- handles and the queue ---------------------------------------------- */

static struct axn_handle *handle_new(struct axn_testhost *th, enum th_kind kind, void *arg,
				     const char *name)
{
	struct axn_handle *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->kind = kind;
	h->th = th;
	h->arg = arg;
	if (name && !(h->name = strdup(name))) {
		free(h);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&th->handles, h, link);
	return h;
}

static struct axn_obj *th_obj_unref(struct axn_obj *obj);

/* A copy of *it queued; -ENOMEM (nothing queued). */
static int queue_push(struct axn_testhost *th, const struct th_item *it)
{
	struct th_qblk *b;
	int r = 0;

	pthread_mutex_lock(&th->lock);
	b = th->q_last;
	if (!b || b->tail == TH_QBLK) {
		if (!(b = malloc(sizeof(*b)))) {
			r = -ENOMEM;
			goto out;
		}
		b->next = NULL;
		b->head = b->tail = 0;
		if (th->q_last)
			th->q_last->next = b;
		else
			th->q_first = b;
		th->q_last = b;
	}
	b->it[b->tail++] = *it;
	th->n_queue++;
out:
	pthread_mutex_unlock(&th->lock);
	return r;
}

/* The oldest item into *ret; false when there is none. Blocks are freed once run. */
static bool queue_pop(struct axn_testhost *th, struct th_item *ret)
{
	bool got = false;

	pthread_mutex_lock(&th->lock);
	while (!got && th->q_first) {
		struct th_qblk *b = th->q_first;

		if (b->head < b->tail) {
			*ret = b->it[b->head++];
			got = ret->call || ret->sub; /* else dropped */
			continue;
		}
		if (b->tail < TH_QBLK)
			break; /* the last block, room left: kept for what comes next */
		th->q_first = b->next;
		if (!th->q_first)
			th->q_last = NULL;
		free(b);
	}
	if (got)
		th->n_queue--;
	pthread_mutex_unlock(&th->lock);
	return got;
}

static void item_release(struct th_item *it)
{
	th_obj_unref(it->obj);
}

/* Drop queued deliveries to `sub` (or every queued item if sub is NULL). */
static void queue_drop(struct axn_testhost *th, struct axn_handle *sub)
{
	pthread_mutex_lock(&th->lock);
	for (struct th_qblk *b = th->q_first; b; b = b->next)
		for (size_t i = b->head; i < b->tail; i++) {
			struct th_item *it = &b->it[i];

			if ((!it->call && !it->sub) || (sub && it->sub != sub))
				continue;
			item_release(it);
			*it = (struct th_item){0}; /* skipped by queue_pop */
			th->n_queue--;
		}
	if (!sub) {
		while (th->q_first) {
			struct th_qblk *b = th->q_first;

			th->q_first = b->next;
			free(b);
		}
		th->q_last = NULL;
	}
	pthread_mutex_unlock(&th->lock);
}

static void handle_destroy(struct axn_handle *h)
{
	TAILQ_REMOVE(&h->th->handles, h, link);
	if (h->kind == TH_SUB)
		queue_drop(h->th, h);
	if (h->kind == TH_ALIAS)
		free(h->alias.target);
	free(h->name);
	free(h);
}

/* Free what the module still holds, reporting each handle as a leak. */
static int reclaim(struct axn_testhost *th, const char *when)
{
	struct axn_handle *h;
	int n = 0;

	while ((h = TAILQ_FIRST(&th->handles))) {
		/* Aliases have no handle a module could free: the core reclaims them. */
		if (h->kind == TH_ALIAS) {
			handle_destroy(h);
			continue;
		}
		fprintf(stderr, "axn_testhost: %s: leaked %s%s%s %s\n", th->desc->name,
			th_kind_name[h->kind], h->name ? " " : "", h->name ? h->name : "", when);
		handle_destroy(h);
		n++;
	}
	th->leaks += n;
	return n;
}

/* ---- logging, health, loop ---------------------------------------------- */

__attribute__((format(printf, 3, 0))) static void th_vlog(struct axn_mod *self, int level,
							   const char *fmt, va_list ap)
{
	struct axn_testhost *th = th_of(self);
	const char *lvl = level <= AXN_LOG_ERR    ? "err"
			  : level <= AXN_LOG_WARN ? "warn"
			  : level <= AXN_LOG_INFO ? "info"
						  : "debug";
	char *msg = NULL, *line = NULL, **logs;

	if (vasprintf(&msg, fmt, ap) < 0)
		return;
	if (asprintf(&line, "%s: %s", lvl, msg) < 0)
		goto out;
	logs = realloc(th->logs, (th->n_logs + 1) * sizeof(*logs));
	if (!logs) {
		free(line);
		goto out;
	}
	th->logs = logs;
	th->logs[th->n_logs++] = line;
	if (th->verbose)
		fprintf(stderr, "[%s] %s\n", th->desc->name, line);
out:
	free(msg);
}

__attribute__((format(printf, 3, 4))) static void th_log(struct axn_mod *self, int level,
							  const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	th_vlog(self, level, fmt, ap);
	va_end(ap);
}

static void th_set_state(struct axn_mod *self, uint32_t state, const char *reason)
{
	struct axn_testhost *th = th_of(self);

	th->state = state;
	free(th->reason);
	th->reason = reason ? strdup(reason) : NULL;
}

static int th_io_add(struct axn_mod *self, int fd, uint32_t events, axn_io_cb cb, void *arg,
		     struct axn_handle **ret_h)
{
	struct axn_handle *h;

	if (fd < 0 || !events || !cb || !ret_h)
		return -EINVAL;
	if (!(h = handle_new(th_of(self), TH_IO, arg, NULL)))
		return -ENOMEM;
	h->io.fd = fd;
	h->io.events = events;
	h->io.cb = cb;
	*ret_h = h;
	return 0;
}

static int th_timer_add(struct axn_mod *self, uint64_t ms, int periodic, axn_timer_cb cb, void *arg,
			struct axn_handle **ret_h)
{
	struct axn_testhost *th = th_of(self);
	struct axn_handle *h;

	if (!cb || !ret_h || (periodic && !ms))
		return -EINVAL;
	if (!(h = handle_new(th, TH_TIMER, arg, NULL)))
		return -ENOMEM;
	h->timer.due = th->now + ms;
	h->timer.period = periodic ? ms : 0;
	h->timer.armed = true;
	h->timer.cb = cb;
	*ret_h = h;
	return 0;
}

static int th_defer(struct axn_mod *self, axn_call_cb cb, void *arg)
{
	struct th_item it = {.call = cb, .arg = arg};

	if (!cb)
		return -EINVAL;
	return queue_push(th_of(self), &it);
}

static void th_handle_free(struct axn_mod *self, struct axn_handle *h)
{
	struct axn_testhost *th = th_of(self);
	struct axn_handle *x;

	if (!h)
		return;
	TAILQ_FOREACH(x, &th->handles, link)
		if (x == h)
			break;
	if (!x) {
		/* Double free or a handle of another host: a bug worth failing on. */
		fprintf(stderr, "axn_testhost: %s: handle_free of an unknown handle\n",
			th->desc->name);
		th->leaks++;
		return;
	}
	handle_destroy(h);
}

/* ---- maps and hooks: not without a kernel -------------------------------- */

static int th_map_open(struct axn_mod *self, const char *name, const struct axn_map_spec *spec,
		       int *ret_fd)
{
	json_t *fd;

	if (!name || !spec || !ret_fd)
		return -EINVAL;
	if (!(fd = json_object_get(th_of(self)->maps, name)))
		return -EOPNOTSUPP;
	*ret_fd = (int)json_integer_value(fd);
	return 0;
}

static int th_hook_chain_fd(struct axn_mod *self, uint32_t kind, int *ret_fd)
{
	return -EOPNOTSUPP;
}

static int th_hook_attach(struct axn_mod *self, const struct axn_hook_spec *spec, int prog_fd,
			  struct axn_handle **ret_h)
{
	return -EOPNOTSUPP;
}

static int th_hook_detach(struct axn_mod *self, struct axn_handle *h)
{
	return -EOPNOTSUPP;
}

/* ---- objects and the store ---------------------------------------------- */

static struct axn_obj *th_obj_ref(struct axn_obj *obj)
{
	if (obj)
		obj->refs++;
	return obj;
}

static struct axn_obj *th_obj_unref(struct axn_obj *obj)
{
	if (obj && --obj->refs == 0) {
		TAILQ_REMOVE(&obj->th->objs, obj, link);
		json_decref(obj->doc);
		free(obj);
	}
	return NULL;
}

static const json_t *th_obj_json(const struct axn_obj *obj)
{
	return obj ? obj->doc : NULL;
}

static const char *bare_kind(const char *kind)
{
	const char *slash = strrchr(kind, '/');

	return slash ? slash + 1 : kind;
}

static char *make_key(const char *kind, const char *ns, const char *name)
{
	char *key;

	if (asprintf(&key, "%s/%s/%s", bare_kind(kind), ns ? ns : "", name) < 0)
		return NULL;
	return key;
}

/* Kind, namespace and name of a document, or -EINVAL if it has none. */
static int doc_id(const json_t *doc, const char **kind, const char **ns, const char **name)
{
	const json_t *meta = json_object_get(doc, "metadata");
	const json_t *jns = json_object_get(meta, "namespace");

	*kind = json_string_value(json_object_get(doc, "kind"));
	*name = json_string_value(json_object_get(meta, "name"));
	*ns = json_string_value(jns);
	if (!*kind || !**kind || !*name || !**name || (jns && !json_is_null(jns) && !*ns))
		return -EINVAL;
	if (*ns && !**ns)
		*ns = NULL;
	return 0;
}

static uint64_t key_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static struct th_entry *store_find(struct axn_testhost *th, const char *key)
{
	uint64_t h = key_hash(key);

	if (!th->nindex)
		return NULL;
	for (struct th_entry *e = th->index[h & (th->nindex - 1)]; e; e = e->hnext)
		if (e->hash == h && !strcmp(e->key, key))
			return e;
	return NULL;
}

/* Index a new entry (its key set); -ENOMEM leaves it unindexed and the store unchanged. */
static int index_add(struct axn_testhost *th, struct th_entry *e)
{
	if (th->nstore + 1 > th->nindex / 2) {
		size_t n = th->nindex ? th->nindex * 2 : 64;
		struct th_entry **b = calloc(n, sizeof(*b));

		if (!b)
			return -ENOMEM;
		for (size_t i = 0; i < th->nindex; i++)
			for (struct th_entry *x = th->index[i], *next; x; x = next) {
				next = x->hnext;
				x->hnext = b[x->hash & (n - 1)];
				b[x->hash & (n - 1)] = x;
			}
		free(th->index);
		th->index = b;
		th->nindex = n;
	}
	e->hash = key_hash(e->key);
	e->hnext = th->index[e->hash & (th->nindex - 1)];
	th->index[e->hash & (th->nindex - 1)] = e;
	th->nstore++;
	return 0;
}

static void index_remove(struct axn_testhost *th, struct th_entry *e)
{
	struct th_entry **pp;

	if (!th->nindex)
		return;
	for (pp = &th->index[e->hash & (th->nindex - 1)]; *pp; pp = &(*pp)->hnext)
		if (*pp == e) {
			*pp = e->hnext;
			th->nstore--;
			return;
		}
}

static struct th_entry *store_lookup(struct axn_testhost *th, const char *kind, const char *ns,
				     const char *name)
{
	char *key = make_key(kind, ns, name);
	struct th_entry *e = key ? store_find(th, key) : NULL;

	free(key);
	return e;
}

/*
 * As the core: "Service" matches the kind in any group; "cilium.io/v2/Kind"
 * or "cilium.io/Kind" also the apiVersion's group ("" for core kinds).
 */
static bool kind_match(const char *want, const struct axn_obj *obj)
{
	const char *wslash = strchr(want, '/');

	if (strcmp(bare_kind(want), obj->kind))
		return false;
	return !wslash || ((size_t)(wslash - want) == strlen(obj->group) &&
			   !strncmp(want, obj->group, (size_t)(wslash - want)));
}

/*
 * The few distinct kinds and groups, kept once: matching a watch against
 * every stored object (a replay) then reads hot strings, not the documents.
 */
static const char *intern(struct axn_testhost *th, const char *s, size_t n)
{
	char **v;

	for (size_t i = 0; i < th->n_interned; i++)
		if (!strncmp(th->interned[i], s, n) && !th->interned[i][n])
			return th->interned[i];
	v = realloc(th->interned, (th->n_interned + 1) * sizeof(*v));
	if (!v)
		return NULL;
	th->interned = v;
	if (!(v[th->n_interned] = strndup(s, n)))
		return NULL;
	return v[th->n_interned++];
}

/* The list of an interned kind, created on first use; NULL without memory. */
static struct th_objkind *kind_get(struct axn_testhost *th, const char *kind)
{
	struct th_objkind **v, *k;

	for (size_t i = 0; i < th->n_kinds; i++)
		if (th->kinds[i]->kind == kind)
			return th->kinds[i];
	if (!(v = realloc(th->kinds, (th->n_kinds + 1) * sizeof(*v))))
		return NULL;
	th->kinds = v;
	if (!(k = calloc(1, sizeof(*k))))
		return NULL;
	k->kind = kind;
	TAILQ_INIT(&k->list);
	return v[th->n_kinds++] = k;
}

static void deliver(struct axn_testhost *th, struct axn_handle *sub, uint32_t event,
		    struct axn_obj *obj)
{
	struct th_item it = {.sub = sub, .event = event, .obj = th_obj_ref(obj)};

	if (queue_push(th, &it) < 0) {
		fprintf(stderr, "axn_testhost: out of memory, delivery lost\n");
		item_release(&it);
	}
}

static const char *event_name(uint32_t event)
{
	static const char *const names[] = {"", "ADDED", "MODIFIED", "DELETED", "SYNCED"};

	return event <= AXN_EV_SYNCED ? names[event] : "";
}

/* Deliver a change and journal it; event 0 journals an unchanged put, delivering nothing. */
static void publish(struct axn_testhost *th, uint32_t event, struct axn_obj *obj)
{
	const char *kind, *ns, *name;
	struct axn_handle *h;

	TAILQ_FOREACH(h, &th->handles, link)
		if (event && h->kind == TH_SUB && kind_match(h->name, obj))
			deliver(th, h, event, obj);
	doc_id(obj->doc, &kind, &ns, &name);
	json_array_append_new(th->events, json_pack("{s:s, s:s, s:s?, s:s, s:O}", "event",
						    event ? event_name(event) : "UNCHANGED", "kind",
						    kind, "namespace", ns, "name", name, "object",
						    obj->doc));
}

/* SYNCED goes out once every source (the module's, the test's) has synced. */
static void check_synced(struct axn_testhost *th)
{
	struct axn_handle *h;

	if (th->synced || !th->started || (th->src_registered && !th->src_synced) ||
	    (th->test_used && !th->test_synced))
		return;
	th->synced = true;
	TAILQ_FOREACH(h, &th->handles, link)
		if (h->kind == TH_SUB)
			deliver(th, h, AXN_EV_SYNCED, NULL);
}

static int store_put(struct axn_testhost *th, json_t *doc, bool mine)
{
	const char *kind, *ns, *name;
	struct axn_obj *obj = NULL;
	struct th_entry *e;
	char *key = NULL;
	int r = -EINVAL;

	if (!json_is_object(doc) || !json_is_string(json_object_get(doc, "apiVersion")) ||
	    doc_id(doc, &kind, &ns, &name) < 0)
		goto fail;
	r = -ENOMEM;
	if (!(key = make_key(kind, ns, name)) || !(obj = calloc(1, sizeof(*obj))))
		goto fail;
	if ((e = store_find(th, key)) && e->obj->mine != mine) {
		/* As the core: one source per object. */
		r = -EEXIST;
		goto fail;
	}
	{
		const char *api = json_string_value(json_object_get(doc, "apiVersion"));
		const char *slash = strchr(api, '/');

		obj->kind = intern(th, kind, strlen(kind));
		obj->group = intern(th, api, slash ? (size_t)(slash - api) : 0);
		if (!obj->kind || !obj->group)
			goto fail;
	}
	obj->refs = 1;
	obj->doc = doc;
	obj->mine = mine;
	obj->th = th;
	TAILQ_INSERT_TAIL(&th->objs, obj, link);
	if (e) {
		free(key);
		if (json_equal(e->obj->doc, doc)) {
			/* No change: journaled, not delivered, as the core does. */
			publish(th, 0, e->obj);
			th_obj_unref(obj);
			return 0;
		}
		publish(th, AXN_EV_MODIFIED, obj);
		th_obj_unref(e->obj);
		e->obj = obj;
		return 0;
	}
	if (!(e = calloc(1, sizeof(*e)))) {
		obj->doc = NULL;
		obj = th_obj_unref(obj);
		goto fail;
	}
	e->key = key;
	e->obj = obj;
	if (!(e->k = kind_get(th, obj->kind)) || index_add(th, e) < 0) {
		free(e);
		obj->doc = NULL;
		obj = th_obj_unref(obj);
		goto fail;
	}
	TAILQ_INSERT_TAIL(&th->store, e, link);
	TAILQ_INSERT_TAIL(&e->k->list, e, klink);
	publish(th, AXN_EV_ADDED, obj);
	return 0;
fail:
	free(key);
	free(obj);
	json_decref(doc);
	return r;
}

static void entry_free(struct axn_testhost *th, struct th_entry *e)
{
	TAILQ_REMOVE(&th->store, e, link);
	TAILQ_REMOVE(&e->k->list, e, klink);
	index_remove(th, e);
	th_obj_unref(e->obj);
	free(e->key);
	free(e);
}

static int store_delete(struct axn_testhost *th, const char *kind, const char *ns,
			const char *name, bool mine)
{
	struct th_entry *e;

	if (!kind || !name)
		return -EINVAL;
	if (!(e = store_lookup(th, kind, ns && *ns ? ns : NULL, name)))
		return -ENOENT;
	if (e->obj->mine != mine)
		return -EPERM;
	publish(th, AXN_EV_DELETED, e->obj);
	entry_free(th, e);
	return 0;
}

static int th_store_watch(struct axn_mod *self, const char *kind, axn_store_cb cb, void *arg,
			  struct axn_handle **ret_h)
{
	struct axn_testhost *th = th_of(self);
	struct axn_handle *h;
	struct th_entry *e;

	if (!kind || !*kind || !cb)
		return -EINVAL;
	if (!(h = handle_new(th, TH_SUB, arg, kind)))
		return -ENOMEM;
	h->sub.cb = cb;
	for (size_t i = 0; i < th->n_kinds; i++)
		if (!strcmp(th->kinds[i]->kind, bare_kind(kind)))
			TAILQ_FOREACH(e, &th->kinds[i]->list, klink)
				if (kind_match(kind, e->obj))
					deliver(th, h, AXN_EV_ADDED, e->obj);
	if (th->synced)
		deliver(th, h, AXN_EV_SYNCED, NULL);
	if (ret_h)
		*ret_h = h;
	return 0;
}

static int th_store_get(struct axn_mod *self, const char *kind, const char *ns, const char *name,
			struct axn_obj **ret_obj)
{
	struct th_entry *e;

	if (!kind || !name || !ret_obj)
		return -EINVAL;
	if (!(e = store_lookup(th_of(self), kind, ns && *ns ? ns : NULL, name)))
		return -ENOENT;
	*ret_obj = th_obj_ref(e->obj);
	return 0;
}

/* To the source that put this version of the object, as the core routes it. */
static int route_status(struct axn_testhost *th, const struct axn_obj *obj, const json_t *status)
{
	const char *kind, *ns, *name;
	json_t *copy;
	char *key;
	int r;

	if (obj->mine) {
		if (!th->src_ops || !th->src_ops->write_status)
			return -EOPNOTSUPP;
		return th->src_ops->write_status(&th->mod, obj, status, th->src_arg);
	}
	doc_id(obj->doc, &kind, &ns, &name);
	if (!(copy = json_deep_copy(status)) || !(key = make_key(kind, ns, name))) {
		json_decref(copy);
		return -ENOMEM;
	}
	r = json_object_set_new(th->statuses, key, copy) ? -ENOMEM : 0;
	free(key);
	return r;
}

static int th_store_set_status(struct axn_mod *self, const struct axn_obj *obj,
			       const json_t *status)
{
	if (!obj || !status)
		return -EINVAL;
	return route_status(th_of(self), obj, status);
}

static int th_source_register(struct axn_mod *self, const char *name,
			      const struct axn_source_ops *ops, void *arg)
{
	struct axn_testhost *th = th_of(self);

	if (!name || !*name || (ops && ops->size < sizeof(ops->size)))
		return -EINVAL;
	if (th->src_registered)
		return -EEXIST;
	th->src_registered = true;
	th->src_ops = ops;
	th->src_arg = arg;
	return 0;
}

static int th_source_put(struct axn_mod *self, json_t *doc)
{
	struct axn_testhost *th = th_of(self);

	if (!th->src_registered) {
		json_decref(doc);
		return -EPERM;
	}
	return store_put(th, doc, true);
}

static int th_source_delete(struct axn_mod *self, const char *kind, const char *ns,
			    const char *name)
{
	struct axn_testhost *th = th_of(self);

	return th->src_registered ? store_delete(th, kind, ns, name, true) : -EPERM;
}

static int th_source_synced(struct axn_mod *self)
{
	struct axn_testhost *th = th_of(self);

	if (!th->src_registered)
		return -EPERM;
	th->src_synced = true;
	check_synced(th);
	return 0;
}

static int th_source_error(struct axn_mod *self, const char *where, const char *msg)
{
	struct axn_testhost *th = th_of(self);

	if (!where || !*where)
		return -EINVAL;
	if (!msg) {
		json_object_del(th->errors, where);
		return 0;
	}
	return json_object_set_new(th->errors, where, json_string(msg)) ? -ENOMEM : 0;
}

/* ---- label selectors (Kubernetes LabelSelector) --------------------------- */

static bool in_values(const json_t *values, const char *v)
{
	size_t i;
	json_t *x;

	json_array_foreach(values, i, x)
		if (!strcmp(json_string_value(x), v))
			return true;
	return false;
}

/* 1 match, 0 no match, -EINVAL: bad expression. */
static int expr_match(const json_t *expr, const json_t *labels)
{
	const char *key = json_string_value(json_object_get(expr, "key"));
	const char *op = json_string_value(json_object_get(expr, "operator"));
	const json_t *values = json_object_get(expr, "values");
	const char *have;
	size_t i, n;
	json_t *x;

	if (!key || !*key || !op || (values && !json_is_null(values) && !json_is_array(values)))
		return -EINVAL;
	json_array_foreach(values, i, x)
		if (!json_is_string(x))
			return -EINVAL;
	n = json_array_size(values);
	have = json_string_value(json_object_get(labels, key));
	if (!strcmp(op, "In") || !strcmp(op, "NotIn")) {
		if (!n)
			return -EINVAL;
		return (have && in_values(values, have)) == !strcmp(op, "In");
	}
	if (!strcmp(op, "Exists") || !strcmp(op, "DoesNotExist")) {
		if (n)
			return -EINVAL;
		return !!have == !strcmp(op, "Exists");
	}
	return -EINVAL;
}

static int th_selector_match(struct axn_mod *self, const json_t *selector, const json_t *labels)
{
	const char *k, *lk;
	json_t *v, *lv;
	size_t i;
	int match = 1, r;

	if (!selector || json_is_null(selector))
		return 1;
	if (!json_is_object(selector) ||
	    (labels && !json_is_null(labels) && !json_is_object(labels)))
		return -EINVAL;
	/* Check every term even after a mismatch: a bad selector is bad whatever the labels. */
	json_object_foreach((json_t *)selector, k, v) {
		if (json_is_null(v))
			continue;
		if (!strcmp(k, "matchLabels") && json_is_object(v)) {
			json_object_foreach(v, lk, lv) {
				const char *have = json_string_value(json_object_get(labels, lk));

				if (!json_is_string(lv))
					return -EINVAL;
				match &= have && !strcmp(have, json_string_value(lv));
			}
		} else if (!strcmp(k, "matchExpressions") && json_is_array(v)) {
			json_array_foreach(v, i, lv) {
				if ((r = expr_match(lv, labels)) < 0)
					return r;
				match &= r;
			}
		} else {
			/* A typo ("matchLabel") must not select everything. */
			return -EINVAL;
		}
	}
	return match;
}

/* ---- API, metrics, agent facts ------------------------------------------- */

static struct axn_handle *find_named(struct axn_testhost *th, enum th_kind kind, const char *name)
{
	struct axn_handle *h;

	TAILQ_FOREACH(h, &th->handles, link)
		if (h->kind == kind && !strcmp(h->name, name))
			return h;
	return NULL;
}

static int th_api_register(struct axn_mod *self, const char *path, axn_api_cb cb, void *arg,
			   struct axn_handle **ret_h)
{
	struct axn_testhost *th = th_of(self);
	struct axn_handle *h;

	if (!path || !*path || !cb)
		return -EINVAL;
	if (find_named(th, TH_API, path))
		return -EEXIST;
	if (!(h = handle_new(th, TH_API, arg, path)))
		return -ENOMEM;
	h->api.cb = cb;
	if (ret_h)
		*ret_h = h;
	return 0;
}

static int th_api_alias(struct axn_mod *self, const char *alias, const char *path)
{
	struct axn_testhost *th = th_of(self);
	struct axn_handle *h;

	if (!alias || !*alias || !path || !*path)
		return -EINVAL;
	if (find_named(th, TH_ALIAS, alias) || find_named(th, TH_API, alias))
		return -EEXIST;
	if (!(h = handle_new(th, TH_ALIAS, NULL, alias)))
		return -ENOMEM;
	if (!(h->alias.target = strdup(path))) {
		handle_destroy(h);
		return -ENOMEM;
	}
	return 0;
}

static int th_metric_new(struct axn_mod *self, const char *name, uint32_t type, const char *help,
			 struct axn_handle **ret_h)
{
	struct axn_testhost *th = th_of(self);
	struct axn_handle *h;

	if (!name || !*name || (type != AXN_METRIC_COUNTER && type != AXN_METRIC_GAUGE) || !ret_h)
		return -EINVAL;
	if (find_named(th, TH_METRIC, name))
		return -EEXIST;
	if (!(h = handle_new(th, TH_METRIC, NULL, name)))
		return -ENOMEM;
	*ret_h = h;
	return 0;
}

static void th_metric_add(struct axn_handle *m, double v)
{
	if (m && m->kind == TH_METRIC)
		m->metric.value += v;
}

static void th_metric_set(struct axn_handle *m, double v)
{
	if (m && m->kind == TH_METRIC)
		m->metric.value = v;
}

static const char *th_agent_info(struct axn_mod *self, const char *key)
{
	return key ? json_string_value(json_object_get(th_of(self)->info, key)) : NULL;
}

static const struct axn_host th_host = {
	.size = sizeof(struct axn_host),
	.abi_minor = AXN_ABI_MINOR,
	.log = th_log,
	.vlog = th_vlog,
	.set_state = th_set_state,
	.io_add = th_io_add,
	.timer_add = th_timer_add,
	.defer = th_defer,
	.post = th_defer, /* the queue is locked: safe from any thread */
	.handle_free = th_handle_free,
	.map_open = th_map_open,
	.hook_chain_fd = th_hook_chain_fd,
	.hook_attach = th_hook_attach,
	.hook_detach = th_hook_detach,
	.store_watch = th_store_watch,
	.store_get = th_store_get,
	.store_set_status = th_store_set_status,
	.source_register = th_source_register,
	.source_put = th_source_put,
	.source_delete = th_source_delete,
	.source_synced = th_source_synced,
	.source_error = th_source_error,
	.obj_ref = th_obj_ref,
	.obj_unref = th_obj_unref,
	.obj_json = th_obj_json,
	.selector_match = th_selector_match,
	.api_register = th_api_register,
	.api_alias = th_api_alias,
	.metric_new = th_metric_new,
	.metric_add = th_metric_add,
	.metric_set = th_metric_set,
	.agent_info = th_agent_info,
};

/* ---- the test's side ------------------------------------------------------ */

struct axn_testhost *axn_testhost_new(const struct axn_module_desc *desc, const char *const *conf)
{
	struct axn_testhost *th;

	if (!desc || desc->abi_major != AXN_ABI_MAJOR || desc->abi_minor > AXN_ABI_MINOR ||
	    desc->desc_size < offsetof(struct axn_module_desc, fini) + sizeof(desc->fini) ||
	    !desc->name) {
		fprintf(stderr, "axn_testhost: bad module descriptor\n");
		return NULL;
	}
	if (!(th = calloc(1, sizeof(*th))))
		return NULL;
	th->mod.host = &th_host;
	th->desc = desc;
	th->verbose = getenv("AXN_TESTHOST_VERBOSE") && *getenv("AXN_TESTHOST_VERBOSE") != '0';
	TAILQ_INIT(&th->handles);
	TAILQ_INIT(&th->objs);
	TAILQ_INIT(&th->store);
	pthread_mutex_init(&th->lock, NULL);
	th->info = json_pack("{s:s}", "node_name", "testnode");
	th->maps = json_object();
	th->events = json_array();
	th->errors = json_object();
	th->statuses = json_object();
	if (!th->info || !th->maps || !th->events || !th->errors || !th->statuses ||
	    conf_build(desc, conf, &th->conf) < 0) {
		axn_testhost_free(th);
		return NULL;
	}
	return th;
}

int axn_testhost_free(struct axn_testhost *th)
{
	struct th_entry *e;
	struct axn_obj *obj;
	int leaks;

	if (!th)
		return 0;
	if (th->lc == LC_UP)
		axn_testhost_stop(th);
	if (th->lc != LC_LOADED)
		axn_testhost_fini(th);
	queue_drop(th, NULL);
	reclaim(th, "at free");
	while ((e = TAILQ_FIRST(&th->store)))
		entry_free(th, e);
	free(th->index);
	while ((obj = TAILQ_FIRST(&th->objs))) {
		const char *kind, *ns, *name;

		doc_id(obj->doc, &kind, &ns, &name);
		fprintf(stderr, "axn_testhost: %s: %d reference(s) to %s %s%s%s never released\n",
			th->desc->name, obj->refs, kind, ns ? ns : "", ns ? "/" : "", name);
		th->leaks++;
		obj->refs = 1;
		th_obj_unref(obj);
	}
	for (size_t i = 0; i < th->n_logs; i++)
		free(th->logs[i]);
	free(th->logs);
	for (size_t i = 0; i < th->n_interned; i++)
		free(th->interned[i]);
	free(th->interned);
	for (size_t i = 0; i < th->n_kinds; i++)
		free(th->kinds[i]);
	free(th->kinds);
	free(th->reason);
	json_decref(th->info);
	json_decref(th->maps);
	json_decref(th->events);
	json_decref(th->errors);
	json_decref(th->statuses);
	conf_free(th->conf);
	pthread_mutex_destroy(&th->lock);
	leaks = th->leaks;
	free(th);
	return leaks;
}

struct axn_mod *axn_testhost_mod(struct axn_testhost *th)
{
	return &th->mod;
}

const void *axn_testhost_conf(struct axn_testhost *th)
{
	return th->conf->data;
}

static int lc_check(struct axn_testhost *th, enum th_lc want, const char *what)
{
	if (th->lc == want)
		return 0;
	fprintf(stderr, "axn_testhost: %s: %s in the wrong state\n", th->desc->name, what);
	return -EINVAL;
}

int axn_testhost_init(struct axn_testhost *th)
{
	int r = lc_check(th, LC_LOADED, "init");

	if (r == 0 && th->desc->init)
		r = th->desc->init(&th->mod, th->conf->data);
	if (r == 0)
		th->lc = LC_INIT;
	return r;
}

/* As the core when a source stops: its objects are no longer backed, its errors moot. */
static void source_gone(struct axn_testhost *th)
{
	struct th_entry *e, *next;

	for (e = TAILQ_FIRST(&th->store); e; e = next) {
		next = TAILQ_NEXT(e, link);
		if (e->obj->mine) {
			publish(th, AXN_EV_DELETED, e->obj);
			entry_free(th, e);
		}
	}
	json_object_clear(th->errors);
	th->src_registered = th->src_synced = false;
	th->src_ops = NULL;
}

int axn_testhost_start(struct axn_testhost *th)
{
	int r = lc_check(th, LC_INIT, "start");

	if (r < 0)
		return r;
	r = th->desc->start ? th->desc->start(&th->mod) : 0;
	if (r < 0) {
		/* As the core: what a failed start registered is undone, silently. */
		source_gone(th);
		queue_drop(th, NULL);
		while (!TAILQ_EMPTY(&th->handles))
			handle_destroy(TAILQ_FIRST(&th->handles));
		th->lc = LC_STOPPED;
		return r;
	}
	th->lc = LC_UP;
	/* The core's "every module has started": SYNCED may go out now. */
	th->started = true;
	check_synced(th);
	return 0;
}

int axn_testhost_stop(struct axn_testhost *th)
{
	int r = lc_check(th, LC_UP, "stop");

	if (r < 0)
		return r;
	r = th->desc->stop ? th->desc->stop(&th->mod) : 0;
	source_gone(th);
	queue_drop(th, NULL);
	reclaim(th, "at stop");
	th->lc = LC_STOPPED;
	return r;
}

void axn_testhost_fini(struct axn_testhost *th)
{
	if (th->lc != LC_INIT && lc_check(th, LC_STOPPED, "fini") < 0)
		return;
	if (th->desc->fini)
		th->desc->fini(&th->mod);
	th->lc = LC_LOADED;
}

int axn_testhost_reconfigure(struct axn_testhost *th, const char *const *conf)
{
	struct th_conf *nc, *old = th->conf;
	int r = lc_check(th, LC_UP, "reconfigure");

	if (r < 0 || (r = conf_build(th->desc, conf, &nc)) < 0)
		return r;
	r = th->desc->reconfigure ? th->desc->reconfigure(&th->mod, nc->data) : -EOPNOTSUPP;
	if (r == 0 || r != -EOPNOTSUPP) {
		/* Applied in place, or refused: the module keeps running either way. */
		th->conf = r == 0 ? nc : old;
		conf_free(r == 0 ? old : nc);
		return r;
	}
	axn_testhost_stop(th);
	axn_testhost_fini(th);
	th->conf = nc;
	conf_free(old);
	if ((r = axn_testhost_init(th)) < 0)
		return r;
	return axn_testhost_start(th);
}

int axn_testhost_set_info(struct axn_testhost *th, const char *key, const char *value)
{
	if (!key)
		return -EINVAL;
	if (!value)
		return json_object_del(th->info, key) ? -ENOENT : 0;
	return json_object_set_new(th->info, key, json_string(value)) ? -ENOMEM : 0;
}

int axn_testhost_set_map(struct axn_testhost *th, const char *name, int fd)
{
	if (!name || fd < 0)
		return -EINVAL;
	return json_object_set_new(th->maps, name, json_integer(fd)) ? -ENOMEM : 0;
}

size_t axn_testhost_log_count(struct axn_testhost *th, const char *substr)
{
	size_t n = 0;

	for (size_t i = 0; i < th->n_logs; i++)
		n += !substr || strstr(th->logs[i], substr);
	return n;
}

const char *axn_testhost_log_find(struct axn_testhost *th, const char *substr)
{
	for (size_t i = 0; i < th->n_logs; i++)
		if (!substr || strstr(th->logs[i], substr))
			return th->logs[i];
	return NULL;
}

const char *axn_testhost_log_line(struct axn_testhost *th, size_t i)
{
	return i < th->n_logs ? th->logs[i] : NULL;
}

void axn_testhost_log_clear(struct axn_testhost *th)
{
	for (size_t i = 0; i < th->n_logs; i++)
		free(th->logs[i]);
	th->n_logs = 0;
}

uint32_t axn_testhost_state(struct axn_testhost *th, const char **ret_reason)
{
	if (ret_reason)
		*ret_reason = th->reason;
	return th->state;
}

int axn_testhost_metric(struct axn_testhost *th, const char *name, double *ret_value)
{
	struct axn_handle *h = name ? find_named(th, TH_METRIC, name) : NULL;

	if (!h)
		return -ENOENT;
	if (ret_value)
		*ret_value = h->metric.value;
	return 0;
}

int axn_testhost_api_call(struct axn_testhost *th, const char *path, const json_t *args,
			  json_t **ret_resp, char **ret_err)
{
	size_t n = strlen(th->desc->name);
	json_t *empty = NULL, *resp = NULL;
	struct axn_handle *h;
	char *err = NULL;
	int r;

	if (!path)
		return -EINVAL;
	if (!strncmp(path, th->desc->name, n) && path[n] == '/' && !find_named(th, TH_API, path))
		path += n + 1;
	/* An alias the module declared ("service/list") stands for one of its endpoints. */
	if (!find_named(th, TH_API, path) && (h = find_named(th, TH_ALIAS, path)))
		path = h->alias.target;
	if (!(h = find_named(th, TH_API, path)))
		return -ENOENT;
	if (!args && !(args = empty = json_object()))
		return -ENOMEM;
	r = h->api.cb(&th->mod, args, &resp, &err, h->arg);
	json_decref(empty);
	if (ret_resp)
		*ret_resp = resp;
	else
		json_decref(resp);
	if (ret_err)
		*ret_err = err;
	else
		free(err);
	return r;
}

uint64_t axn_testhost_now_ms(struct axn_testhost *th)
{
	return th->now;
}

static void timer_fire(struct axn_handle *h)
{
	struct axn_testhost *th = h->th;
	axn_timer_cb cb = h->timer.cb;
	void *arg = h->arg;

	/* Update the timer before the call: the callback may free it. */
	if (!h->timer.period)
		h->timer.armed = false;
	cb(&th->mod, arg);
}

int axn_testhost_advance(struct axn_testhost *th, uint64_t ms)
{
	uint64_t target = th->now + ms;
	int n = 0;

	for (;;) {
		struct axn_handle *h, *next = NULL;

		TAILQ_FOREACH(h, &th->handles, link)
			if (h->kind == TH_TIMER && h->timer.armed && h->timer.due <= target &&
			    (!next || h->timer.due < next->timer.due))
				next = h;
		if (!next)
			break;
		if (++n > TH_MAX_CALLBACKS)
			return -ELOOP;
		if (next->timer.due > th->now)
			th->now = next->timer.due;
		next->timer.due += next->timer.period;
		timer_fire(next);
	}
	th->now = target;
	return n;
}

/* Call each handle of `kind` that was marked at the start of the pass once. */
static struct axn_handle *next_marked(struct axn_testhost *th, enum th_kind kind)
{
	struct axn_handle *h;

	TAILQ_FOREACH(h, &th->handles, link)
		if (h->kind == kind && h->mark == th->gen) {
			h->mark = 0;
			return h;
		}
	return NULL;
}

int axn_testhost_fire_timers(struct axn_testhost *th)
{
	struct axn_handle *h;
	int n = 0;

	th->gen++;
	TAILQ_FOREACH(h, &th->handles, link)
		if (h->kind == TH_TIMER && h->timer.armed)
			h->mark = th->gen;
	while ((h = next_marked(th, TH_TIMER))) {
		h->timer.due = th->now + h->timer.period;
		timer_fire(h);
		n++;
	}
	return n;
}

size_t axn_testhost_timer_count(struct axn_testhost *th)
{
	struct axn_handle *h;
	size_t n = 0;

	TAILQ_FOREACH(h, &th->handles, link)
		n += h->kind == TH_TIMER && h->timer.armed;
	return n;
}

int axn_testhost_io_fire(struct axn_testhost *th, int fd, uint32_t events)
{
	struct axn_handle *h;
	int n = 0;

	th->gen++;
	TAILQ_FOREACH(h, &th->handles, link)
		if (h->kind == TH_IO && (fd < 0 || h->io.fd == fd) && (h->io.events & events))
			h->mark = th->gen;
	while ((h = next_marked(th, TH_IO))) {
		h->io.cb(&th->mod, h->io.fd, h->io.events & events, h->arg);
		n++;
	}
	return n ? n : -ENOENT;
}

int axn_testhost_run_pending(struct axn_testhost *th)
{
	struct th_item it;
	long limit = TH_MAX_CALLBACKS;
	int n = 0;

	/* What is queued now runs whatever its size (a big replay); a loop is what comes after. */
	pthread_mutex_lock(&th->lock);
	limit += (long)th->n_queue;
	pthread_mutex_unlock(&th->lock);
	for (;;) {
		if (!queue_pop(th, &it))
			return n;
		if (++n > limit || n == INT_MAX) {
			item_release(&it);
			return -ELOOP;
		}
		if (it.call)
			it.call(&th->mod, it.arg);
		else
			it.sub->sub.cb(&th->mod, it.event, it.obj, it.sub->arg);
		item_release(&it);
	}
}

int axn_testhost_inject(struct axn_testhost *th, uint32_t event, json_t *doc)
{
	const char *kind, *ns, *name;
	int r;

	th->test_used = true;
	switch (event) {
	case AXN_EV_ADDED:
	case AXN_EV_MODIFIED:
		return store_put(th, doc, false);
	case AXN_EV_DELETED:
		r = doc_id(doc, &kind, &ns, &name);
		if (r == 0)
			r = store_delete(th, kind, ns, name, false);
		json_decref(doc);
		return r;
	case AXN_EV_SYNCED:
		json_decref(doc);
		th->test_synced = true;
		check_synced(th);
		return 0;
	}
	json_decref(doc);
	return -EINVAL;
}

const json_t *axn_testhost_store_doc(struct axn_testhost *th, const char *kind, const char *ns,
				     const char *name)
{
	struct th_entry *e = kind && name ? store_lookup(th, kind, ns, name) : NULL;

	return e ? e->obj->doc : NULL;
}

size_t axn_testhost_store_count(struct axn_testhost *th, const char *kind)
{
	struct th_entry *e;
	size_t n = 0;

	TAILQ_FOREACH(e, &th->store, link)
		n += !kind || kind_match(kind, e->obj);
	return n;
}

const json_t *axn_testhost_events(struct axn_testhost *th)
{
	return th->events;
}

size_t axn_testhost_events_count(struct axn_testhost *th, uint32_t event, const char *kind,
				 const char *name)
{
	size_t i, n = 0;
	json_t *ev;

	json_array_foreach(th->events, i, ev) {
		const char *e = json_string_value(json_object_get(ev, "event"));
		const char *k = json_string_value(json_object_get(ev, "kind"));
		const char *nm = json_string_value(json_object_get(ev, "name"));

		n += (!event || !strcmp(e, event_name(event))) && (!kind || !strcmp(k, kind)) &&
		     (!name || !strcmp(nm, name));
	}
	return n;
}

void axn_testhost_events_clear(struct axn_testhost *th)
{
	json_array_clear(th->events);
}

int axn_testhost_set_status(struct axn_testhost *th, const char *kind, const char *ns,
			    const char *name, const json_t *status)
{
	struct th_entry *e;

	if (!kind || !name || !status)
		return -EINVAL;
	if (!(e = store_lookup(th, kind, ns, name)))
		return -ENOENT;
	return route_status(th, e->obj, status);
}

const json_t *axn_testhost_status(struct axn_testhost *th, const char *kind, const char *ns,
				  const char *name)
{
	char *key = kind && name ? make_key(kind, ns, name) : NULL;
	const json_t *st = key ? json_object_get(th->statuses, key) : NULL;

	free(key);
	return st;
}

const json_t *axn_testhost_source_errors(struct axn_testhost *th)
{
	return th->errors;
}
