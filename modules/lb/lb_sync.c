// SPDX-License-Identifier: Apache-2.0
/*
 * lb_sync.c - Service and EndpointSlice watches -> translation -> maps.
 * The state machine is drawn in lb.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf */
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lb.h"

#define LABEL_SERVICE_NAME "kubernetes.io/service-name"
#define SYNCED_ALL 3

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static char *obj_key(const char *ns, const char *name)
{
	char *k;

	if (asprintf(&k, "%s/%s", ns ? ns : "default", name) < 0)
		return NULL;
	return k;
}

static void sv_dirty(struct lb *lb, struct lb_sv *sv)
{
	if (sv->dirty)
		return;
	sv->dirty = true;
	sv->dnext = lb->dirty;
	lb->dirty = sv;
}

static struct lb_sv *sv_get(struct lb *lb, const char *key, bool create)
{
	struct lb_sv *sv = (struct lb_sv *)lb_ht_find(&lb->svcs, key);

	if (sv || !create)
		return sv;
	sv = calloc(1, sizeof(*sv));
	if (!sv || !(sv->key = strdup(key)) || lb_ht_insert(&lb->svcs, &sv->n) < 0) {
		if (sv)
			free(sv->key);
		free(sv);
		return NULL;
	}
	return sv;
}

static void sv_free(struct lb *lb, struct lb_sv *sv)
{
	lb->self->host->obj_unref(sv->obj);
	lb_svc_free(sv->cur);
	free(sv->error);
	free(sv->sl);
	free(sv->key);
	free(sv);
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
	if (sv->n_sl == sv->cap_sl) {
		size_t cap = sv->cap_sl ? sv->cap_sl * 2 : 2;
		struct lb_sl **v = realloc(sv->sl, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		sv->sl = v;
		sv->cap_sl = cap;
	}
	sv->sl[sv->n_sl++] = sl;
	sl->sv = sv;
	sv_dirty(lb, sv);
	return 0;
}

static void schedule(struct lb *lb);

static void on_service(struct axn_mod *self, uint32_t ev, struct axn_obj *obj, void *arg)
{
	struct lb *lb = arg;
	struct lb_sv *sv;
	char *key;

	if (ev == AXN_EV_SYNCED) {
		lb->synced |= 1;
		schedule(lb);
		return;
	}
	key = obj_key(axn_obj_namespace(self, obj), axn_obj_name(self, obj));
	sv = key ? sv_get(lb, key, ev != AXN_EV_DELETED) : NULL;
	free(key);
	if (!sv) {
		if (ev != AXN_EV_DELETED)
			axn_err(self, "service %s: out of memory", axn_obj_name(self, obj));
		return;
	}
	self->host->obj_unref(sv->obj);
	sv->obj = ev == AXN_EV_DELETED ? NULL : self->host->obj_ref(obj);
	sv_dirty(lb, sv);
	schedule(lb);
}

static void on_slice(struct axn_mod *self, uint32_t ev, struct axn_obj *obj, void *arg)
{
	struct lb *lb = arg;
	const char *ns = axn_obj_namespace(self, obj), *svname;
	struct lb_sl *sl;
	struct lb_sv *sv = NULL;
	char *key, *skey = NULL;

	if (ev == AXN_EV_SYNCED) {
		lb->synced |= 2;
		schedule(lb);
		return;
	}
	key = obj_key(ns, axn_obj_name(self, obj));
	if (!key)
		goto oom;
	sl = (struct lb_sl *)lb_ht_find(&lb->slices, key);
	if (ev == AXN_EV_DELETED) {
		if (sl) {
			sl_detach(lb, sl);
			lb_ht_remove(&lb->slices, &sl->n);
			self->host->obj_unref(sl->obj);
			free(sl->key);
			free(sl);
		}
		free(key);
		schedule(lb);
		return;
	}
	if (!sl) {
		sl = calloc(1, sizeof(*sl));
		if (!sl)
			goto oom;
		sl->key = key;
		key = NULL;
		if (lb_ht_insert(&lb->slices, &sl->n) < 0) {
			free(sl->key);
			free(sl);
			goto oom;
		}
	}
	self->host->obj_unref(sl->obj);
	sl->obj = self->host->obj_ref(obj);
	svname = json_string_value(json_object_get(axn_obj_labels(self, obj), LABEL_SERVICE_NAME));
	if (svname) {
		skey = obj_key(ns, svname);
		sv = skey ? sv_get(lb, skey, true) : NULL;
		free(skey);
		if (!sv)
			goto oom;
	}
	if (sl->sv != sv) {
		sl_detach(lb, sl);
		if (sv && sl_attach(lb, sl, sv) < 0)
			goto oom;
	} else if (sv) {
		sv_dirty(lb, sv);
	}
	free(key);
	schedule(lb);
	return;
oom:
	free(key);
	axn_err(self, "endpointslice %s: out of memory", axn_obj_name(self, obj));
}

static void set_health(struct lb *lb)
{
	struct axn_mod *self = lb->self;
	const char *first = NULL;
	char reason[512];
	size_t n = 0;

	lb_ht_foreach(&lb->svcs, nd, nx) {
		struct lb_sv *sv = (struct lb_sv *)nd;

		(void)nx;
		if (sv->error) {
			n++;
			if (!first)
				first = sv->error;
		}
	}
	lb->n_errors = n;
	if (!n) {
		self->host->set_state(self, AXN_STATE_UP, lb->live ? "in sync" : "waiting for store sync");
		return;
	}
	snprintf(reason, sizeof(reason), "%zu service(s) not programmed; %s", n, first);
	self->host->set_state(self, AXN_STATE_DEGRADED, reason);
}

/* Translate one dirty service and hand it to the map writer. */
static int sv_apply(struct lb *lb, struct lb_sv *sv)
{
	struct axn_mod *self = lb->self;
	const json_t **slices = NULL;
	struct lb_svc *next = NULL;
	char *err = NULL;
	int r;

	if (sv->obj) {
		slices = calloc(sv->n_sl ? sv->n_sl : 1, sizeof(*slices));
		if (!slices)
			return -ENOMEM;
		for (size_t i = 0; i < sv->n_sl; i++)
			slices[i] = self->host->obj_json(sv->sl[i]->obj);
		r = lb_translate(&lb->tconf, self->host->obj_json(sv->obj), slices, sv->n_sl, &next);
		free(slices);
		if (r == -EINVAL) {
			axn_warn(self, "service %s: no metadata.name, ignored", sv->key);
			next = NULL;
		} else if (r < 0) {
			return r;
		}
	}
	r = lb_maps_service_set(lb->maps, sv->key, sv->cur, next, &err);
	if (r < 0) {
		/* Logged once per distinct reason; the old state stays in the maps. */
		if (!sv->error || !err || strcmp(sv->error, err))
			axn_err(self, "service %s: %s", sv->key, err ? err : strerror(-r));
		if (r == -ENOSPC)
			self->host->metric_add(lb->m_full, 1);
		self->host->metric_add(lb->m_refused, 1);
		free(sv->error);
		sv->error = err ? err : strdup(strerror(-r));
		lb_svc_free(next);
		return 0;
	}
	if (sv->error)
		axn_info(self, "service %s: programmed now", sv->key);
	free(sv->error);
	sv->error = NULL;
	if (next && next->warning && (!sv->cur || !sv->cur->warning ||
				      strcmp(sv->cur->warning, next->warning)))
		axn_warn(self, "service %s: %s", sv->key, next->warning);
	lb_svc_free(sv->cur);
	sv->cur = next;
	return 0;
}

static void update_metrics(struct lb *lb)
{
	const struct axn_host *h = lb->self->host;
	size_t nfe = 0, nsv = 0;

	lb_ht_foreach(&lb->svcs, nd, nx) {
		struct lb_sv *sv = (struct lb_sv *)nd;

		(void)nx;
		if (sv->cur && sv->cur->n_fe) {
			nsv++;
			nfe += sv->cur->n_fe;
		}
	}
	h->metric_set(lb->m_services, (double)nsv);
	h->metric_set(lb->m_frontends, (double)nfe);
	h->metric_set(lb->m_backends,
		      (double)(lb_maps_used(lb->maps, LBM_BE4) + lb_maps_used(lb->maps, LBM_BE6)));
}

int lb_sync_flush(struct lb *lb)
{
	struct axn_mod *self = lb->self;
	struct lb_flush_stats st = {0};
	uint64_t t0 = now_us();
	size_t n = 0;
	int r = 0, rr;

	lb->flush_pending = false;
	if (lb->synced != SYNCED_ALL)
		return 0; /* see lb.h: nothing is written before the store synced */
	for (int pass = 0; pass < 2; pass++) {
		struct lb_flush_stats fst = {0};
		struct lb_sv *list = lb->dirty;

		lb->dirty = NULL;
		for (struct lb_sv *sv = list, *next; sv; sv = next) {
			next = sv->dnext;
			sv->dirty = false;
			sv->dnext = NULL;
			if ((rr = sv_apply(lb, sv)) < 0 && !r)
				r = rr;
			n++;
			if (!sv->obj && !sv->n_sl && !sv->cur) {
				lb_ht_remove(&lb->svcs, &sv->n);
				sv_free(lb, sv);
			}
		}
		rr = lb_maps_flush(lb->maps, &fst);
		st.updates += fst.updates;
		st.deletes += fst.deletes;
		st.syscalls += fst.syscalls;
		if (rr < 0) {
			axn_err(self, "writing the lb maps failed: %s", strerror(-rr));
			r = r ? r : rr;
		}
		/* Space or a frontend was freed: refused services get another chance, once. */
		if (pass || !lb_maps_take_released(lb->maps))
			break;
		lb_ht_foreach(&lb->svcs, nd, nx) {
			(void)nx;
			if (((struct lb_sv *)nd)->error)
				sv_dirty(lb, (struct lb_sv *)nd);
		}
		if (!lb->dirty)
			break;
	}
	if (r < 0)
		axn_err(self, "programming services failed: %s", strerror(-r));
	if (!lb->live) {
		struct lb_flush_stats pst = {0};

		/* First flush after the store synced: what nobody claimed is stale now. */
		rr = lb_maps_prune(lb->maps, &pst);
		if (rr < 0) {
			axn_err(self, "pruning the lb maps failed: %s", strerror(-rr));
			r = r ? r : rr;
		}
		st.updates += pst.updates;
		st.deletes += pst.deletes;
		st.syscalls += pst.syscalls;
		lb->live = true;
		axn_info(self, "in sync: %zu services, %u map updates, %u deletes, %u syscalls, %.1f ms",
			 n, st.updates, st.deletes, st.syscalls, (double)(now_us() - t0) / 1000.0);
	}
	lb->last_flush_us = now_us() - t0;
	lb->last_st = st;
	self->host->metric_add(lb->m_writes, st.updates + st.deletes);
	self->host->metric_set(lb->m_flush_ms, (double)lb->last_flush_us / 1000.0);
	update_metrics(lb);
	set_health(lb);
	return r;
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

	lb->svcs.koff = lb->slices.koff = offsetof(struct lb_sv, key);
	lb->svcs.ksz = lb->slices.ksz = 0;
	_Static_assert(offsetof(struct lb_sv, key) == offsetof(struct lb_sl, key), "key offsets");
	if ((r = lb_maps_new(lb->fd, lb->max, &lb->maps)) < 0)
		return r;
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
	    (r = h->metric_new(self, "last_flush_ms", AXN_METRIC_GAUGE, "duration of the last map flush", &lb->m_flush_ms)) < 0)
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
	lb_ht_foreach(&lb->svcs, nd, nx) {
		(void)nx;
		sv_free(lb, (struct lb_sv *)nd);
	}
	lb_ht_foreach(&lb->slices, nd, nx) {
		struct lb_sl *sl = (struct lb_sl *)nd;

		(void)nx;
		lb->self->host->obj_unref(sl->obj);
		free(sl->key);
		free(sl);
	}
	free(lb->svcs.b);
	free(lb->slices.b);
	memset(&lb->svcs, 0, sizeof(lb->svcs));
	memset(&lb->slices, 0, sizeof(lb->slices));
	lb->dirty = NULL;
	lb_maps_free(lb->maps);
	lb->maps = NULL;
}
