// SPDX-License-Identifier: Apache-2.0
/*
 * lbipam_status.c - the status documents lbipam writes (Service: ingress and
 * the cilium.io/IPAMRequestSatisfied condition; pool: counts, conflict and
 * spec validity conditions) and the `axoneme lbipam pools|services` views.
 *
 * A status is built from the current one, replacing only what lbipam owns,
 * and a condition keeps its lastTransitionTime while its status stays: the
 * same decision always gives the same document, so writing is idempotent and
 * the MODIFIED that a write causes changes nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lbipam.h"

#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

void lb_now(char buf[32])
{
	time_t t = time(NULL);
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
		strcpy(buf, "1970-01-01T00:00:00Z");
}

uint64_t lb_json_hash(const json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	uint64_t h = s ? lb_str_hash(s) : 0;

	free(s);
	return h ? h : 1;
}

/*
 * Set condition `type` in the array conds. now "" leaves lastTransitionTime
 * out unless the existing condition has the same status (used for hashing).
 */
static int cond_set(json_t *conds, const char *type, const char *status, const char *reason,
		    const char *msg, json_int_t gen, const char *now)
{
	const char *ltt = now;
	size_t i, at = json_array_size(conds);
	json_t *c, *old = NULL;

	json_array_foreach(conds, i, c) {
		const char *t = json_string_value(json_object_get(c, "type"));

		if (t && !strcmp(t, type)) {
			old = c;
			at = i;
			break;
		}
	}
	if (old) {
		const char *ost = json_string_value(json_object_get(old, "status"));
		const char *ot = json_string_value(json_object_get(old, "lastTransitionTime"));

		if (ost && !strcmp(ost, status) && ot)
			ltt = ot;
	}
	c = json_pack("{s:s, s:s, s:s, s:s}", "type", type, "status", status, "reason", reason,
		      "message", msg ? msg : "");
	if (!c || (*ltt && json_object_set_new(c, "lastTransitionTime", json_string(ltt))) ||
	    (gen >= 0 && json_object_set_new(c, "observedGeneration", json_integer(gen)))) {
		json_decref(c);
		return -ENOMEM;
	}
	return at < json_array_size(conds) ? json_array_set_new(conds, at, c)
					    : json_array_append_new(conds, c);
}

static void cond_del(json_t *conds, const char *type)
{
	size_t i;
	json_t *c;

	json_array_foreach(conds, i, c) {
		const char *t = json_string_value(json_object_get(c, "type"));

		if (t && !strcmp(t, type)) {
			json_array_remove(conds, i);
			return;
		}
	}
}

/* A private copy of cur (an object) and its conditions array, created if needed. */
static json_t *status_copy(const json_t *cur, json_t **ret_conds)
{
	json_t *st = json_is_object(cur) ? json_deep_copy(cur) : json_object();
	json_t *conds = st ? json_object_get(st, "conditions") : NULL;

	if (st && !json_is_array(conds)) {
		conds = json_array();
		if (!conds || json_object_set_new(st, "conditions", conds)) {
			json_decref(st);
			return NULL;
		}
	}
	*ret_conds = conds;
	return st;
}

/* The existing ingress entry for ip (other fields, such as ipMode, are kept). */
static json_t *ingress_entry(const json_t *old, const struct lb_ip *ip)
{
	size_t i;
	json_t *e;

	json_array_foreach(old, i, e) {
		struct lb_ip x;

		if (lb_ip_parse(json_string_value(json_object_get(e, "ip")), &x) == 0 &&
		    !lb_ip_cmp(&x, ip))
			return json_incref(e);
	}
	return NULL;
}

json_t *lb_status_service(const json_t *cur, const struct lb_ip *ips, size_t n, int cond,
			  const char *reason, const char *msg, json_int_t generation,
			  const char *now)
{
	json_t *conds, *st = status_copy(cur, &conds), *lb, *ing;

	if (!st)
		return NULL;
	lb = json_object_get(st, "loadBalancer");
	if (!json_is_object(lb)) {
		if (!(lb = json_object()) || json_object_set_new(st, "loadBalancer", lb))
			goto fail;
	}
	if (cond < 0) {
		/* No longer ours: leave the service clean for whoever takes it. */
		json_object_del(lb, "ingress");
		cond_del(conds, LB_COND_SVC);
	} else {
		const json_t *old = json_object_get(lb, "ingress");

		if (!(ing = json_array()))
			goto fail;
		for (size_t i = 0; i < n; i++) {
			json_t *e = ingress_entry(old, &ips[i]);
			char b[LB_IPSTR];

			if (!e)
				e = json_pack("{s:s}", "ip", lb_ip_str(&ips[i], b));
			if (!e || json_array_append_new(ing, e)) {
				json_decref(ing);
				goto fail;
			}
		}
		if (!n) {
			json_decref(ing);
			json_object_del(lb, "ingress"); /* pending: no ingress, as Kubernetes shows it */
		} else if (json_object_set_new(lb, "ingress", ing)) {
			goto fail;
		}
		if (cond_set(conds, LB_COND_SVC, cond ? "True" : "False", reason, msg, generation, now) < 0)
			goto fail;
	}
	if (!json_array_size(conds))
		json_object_del(st, "conditions");
	return st;
fail:
	json_decref(st);
	return NULL;
}

bool lb_status_says(const json_t *cur, const struct lb_ip *ips, size_t n, int cond,
		    const char *reason, const char *msg, json_int_t generation)
{
	const json_t *ing = json_object_get(json_object_get(cur, "loadBalancer"), "ingress");
	const json_t *c = NULL, *e;
	size_t i;

	if (json_array_size(ing) != (cond < 0 ? 0 : n))
		return false;
	json_array_foreach(ing, i, e) {
		struct lb_ip x;

		if (lb_ip_parse(json_string_value(json_object_get(e, "ip")), &x) < 0 || lb_ip_cmp(&x, &ips[i]))
			return false;
	}
	json_array_foreach(json_object_get(cur, "conditions"), i, e) {
		const char *t = json_string_value(json_object_get(e, "type"));

		if (t && !strcmp(t, LB_COND_SVC)) {
			c = e;
			break;
		}
	}
	if (cond < 0)
		return !c;
	if (!c || !json_is_string(json_object_get(c, "lastTransitionTime")) ||
	    !json_is_object(json_object_get(cur, "loadBalancer")))
		return false;
	e = json_object_get(c, "observedGeneration");
	if (generation >= 0 ? !json_is_integer(e) || json_integer_value(e) != generation : e != NULL)
		return false;
	return !strcmp(json_string_value(json_object_get(c, "status")) ?: "", cond ? "True" : "False") &&
	       !strcmp(json_string_value(json_object_get(c, "reason")) ?: "", reason) &&
	       !strcmp(json_string_value(json_object_get(c, "message")) ?: "", msg ? msg : "");
}

static json_t *count_json(struct lb_addr v)
{
	char b[LB_U128STR];

	/* JSON numbers where they fit a signed 64-bit integer; a /64 does not. */
	if (!v.hi && v.lo <= (uint64_t)INT64_MAX)
		return json_integer((json_int_t)v.lo);
	return json_string(lb_u128_str(v, b));
}

json_t *lb_status_pool(const json_t *cur, struct lbp *p, json_int_t generation, const char *now)
{
	struct lb_addr total, used, avail;
	char t[LB_U128STR], u[LB_U128STR], a[LB_U128STR], *msg = NULL;
	json_t *conds, *st = status_copy(cur, &conds);
	int r;

	if (!st)
		return NULL;
	lb_pool_counts(&p->p, &total, &used, &avail);
	r = cond_set(conds, LB_COND_TOTAL, "Unknown", "noreason", lb_u128_str(total, t), generation, now);
	r = r ?: cond_set(conds, LB_COND_AVAIL, "Unknown", "noreason", lb_u128_str(avail, a), generation, now);
	r = r ?: cond_set(conds, LB_COND_USED, "Unknown", "noreason", lb_u128_str(used, u), generation, now);
	r = r ?: p->p.conflicting
		     ? cond_set(conds, LB_COND_CONFLICT, "True", "cidr_overlap", p->p.conflict_msg,
				generation, now)
		     : cond_set(conds, LB_COND_CONFLICT, "False", "resolved", "", generation, now);
	if (p->error && asprintf(&msg, "%s; %s", p->error,
				 p->rejected ? "the previous spec stays in effect"
					     : p->p.spec.selector_bad ? "the pool selects no service"
								      : "the other blocks are in effect") < 0)
		msg = NULL, r = -ENOMEM;
	r = r ?: p->error ? cond_set(conds, LB_COND_VALID, "False",
				     p->rejected ? "spec_rejected" : "spec_partly_invalid", msg, generation, now)
			  : cond_set(conds, LB_COND_VALID, "True", "valid", "", generation, now);
	free(msg);
	if (r < 0) {
		json_decref(st);
		return NULL;
	}
	return st;
}

const char *lb_reason_name(const struct lb_svc *s)
{
	switch (s->reason) {
	case LB_R_SATISFIED: return "satisfied";
	case LB_R_NO_POOL: return "no_pool";
	case LB_R_OUT_OF_IPS: return "out_of_ips";
	case LB_R_REQ_NO_POOL: return "no_pool";
	case LB_R_REQ_SELECTOR: return "pool_selector_mismatch";
	case LB_R_REQ_TAKEN: return "already_allocated";
	case LB_R_REQ_INCOMPAT: return "already_allocated_incompatible_service";
	case LB_R_REQ_RESERVED: return "reserved_ip";
	case LB_R_REQ_DISABLED: return "pool_disabled";
	case LB_R_REQ_CONFLICT: return "pool_conflicting";
	case LB_R_BAD_REQ: return "invalid_request";
	case LB_R_FAMILY: return "family_disabled";
	default: return "pending";
	}
}

char *lb_reason_msg(const struct lb_svc *s)
{
	const char *pool = s->why_pool ? s->why_pool->p.name : "?";
	const char *fam = s->req.v4 && s->req.v6 ? (s->why_fam == LB_V6 ? " (IPv6)" : " (IPv4)") : "";
	char ip[LB_IPSTR], *m = NULL;
	int r;

	lb_ip_str(&s->why_ip, ip);
	switch (s->reason) {
	case LB_R_SATISFIED:
		return strdup("");
	case LB_R_NO_POOL:
		r = asprintf(&m, "There are no enabled CiliumLoadBalancerIPPools that match this service%s", fam);
		break;
	case LB_R_OUT_OF_IPS:
		r = asprintf(&m, "All enabled CiliumLoadBalancerIPPools that match this service ran out of allocatable IPs%s",
			     fam);
		break;
	case LB_R_REQ_NO_POOL:
		r = asprintf(&m, "No pool exists with a CIDR containing '%s'", ip);
		break;
	case LB_R_REQ_SELECTOR:
		r = asprintf(&m, "The pool with the CIDR containing '%s', doesn't select this service", ip);
		break;
	case LB_R_REQ_TAKEN:
		r = asprintf(&m, "The IP '%s' is already allocated to another service", ip);
		break;
	case LB_R_REQ_INCOMPAT:
		r = asprintf(&m, "The IP '%s' is already allocated to an incompatible service. Reason: %s", ip,
			     s->why ? s->why : "?");
		break;
	case LB_R_REQ_RESERVED:
		r = asprintf(&m, "The IP '%s' is the first or last address of a CIDR of pool '%s', which reserves them (allowFirstLastIPs: No)",
			     ip, pool);
		break;
	case LB_R_REQ_DISABLED:
		r = asprintf(&m, "The pool '%s' containing '%s' is disabled", pool, ip);
		break;
	case LB_R_REQ_CONFLICT:
		r = asprintf(&m, "The pool '%s' containing '%s' conflicts with another pool", pool, ip);
		break;
	case LB_R_BAD_REQ:
		r = asprintf(&m, "'%s' in %s is not an IP address", s->req.bad_ip ? s->req.bad_ip : "?",
			     s->req.bad_src ? s->req.bad_src : "?");
		break;
	case LB_R_FAMILY:
		r = asprintf(&m, "The service needs %s, which is disabled in LB IPAM", s->req.family_off);
		break;
	default:
		r = asprintf(&m, "Waiting for the store to sync, or for a CiliumLoadBalancerIPPool");
		break;
	}
	return r < 0 ? NULL : m;
}

/* --- views ------------------------------------------------------------------------------- */

static const char *arg_str(const json_t *req, const char *key)
{
	return json_string_value(json_object_get(req, key));
}

int lbipam_api_pools(struct axn_mod *self, const json_t *req, json_t **ret_resp, char **ret_err,
		     void *arg)
{
	struct lbipam *l = arg;
	const char *want = arg_str(req, "name");
	json_t *items = json_array(), *resp;
	size_t *held = calloc(l->n_pools + 1, sizeof(*held));

	if (!items || !held)
		goto nomem;
	/* Services per pool: one pass over the addresses in use. */
	lb_htab_foreach(&l->ents, i, node) {
		struct lb_ent *e = container_of(node, struct lb_ent, hn);

		for (size_t k = 0; k < l->n_pools; k++)
			if (l->pools[k] == e->pool)
				held[k] += e->n_holders;
	}
	for (size_t k = 0; k < l->n_pools; k++) {
		struct lbp *p = l->pools[k];
		struct lb_addr total, used, avail;
		json_t *blocks = json_array(), *it;
		const char *msg = p->p.conflicting ? p->p.conflict_msg : p->error ? p->error : "";

		if (want && strcmp(want, p->p.name))
			continue;
		for (size_t r = 0; blocks && r < p->p.spec.n_ranges; r++)
			json_array_append_new(blocks, json_string(p->p.spec.ranges[r].text));
		lb_pool_counts(&p->p, &total, &used, &avail);
		it = json_pack("{s:s, s:b, s:b, s:b, s:o, s:o, s:o, s:o, s:I, s:s}", "name", p->p.name,
			       "disabled", p->p.spec.disabled, "conflicting", p->p.conflicting, "valid",
			       !p->error, "blocks", blocks ? blocks : json_array(), "ips_total",
			       count_json(total), "ips_used", count_json(used), "ips_available",
			       count_json(avail), "services", (json_int_t)held[k], "message", msg);
		if (!it || json_array_append_new(items, it))
			goto nomem;
	}
	free(held);
	resp = json_pack("{s:o}", "items", items);
	if (!resp)
		return -ENOMEM;
	*ret_resp = resp;
	return 0;
nomem:
	free(held);
	json_decref(items);
	return -ENOMEM;
}

static int svc_qcmp(const void *a, const void *b)
{
	return strcmp((*(struct lb_svc *const *)a)->key, (*(struct lb_svc *const *)b)->key);
}

static json_t *svc_item(const struct lb_svc *s)
{
	json_t *ips = json_array(), *pools = json_array(), *it;
	const char *name = strchr(s->key, '/') + 1;
	char *msg = lb_reason_msg(s);

	for (uint8_t i = 0; ips && pools && i < s->n_ips; i++) {
		char b[LB_IPSTR];
		const char *pn = s->ips[i]->pool ? s->ips[i]->pool->p.name : "";
		bool dup = false;
		size_t k;
		json_t *x;

		json_array_append_new(ips, json_string(lb_ip_str(&s->ips[i]->ip, b)));
		json_array_foreach(pools, k, x)
			dup |= !strcmp(json_string_value(x), pn);
		if (!dup)
			json_array_append_new(pools, json_string(pn));
	}
	if (!ips || !pools || !msg) {
		json_decref(ips);
		json_decref(pools);
		free(msg);
		return NULL;
	}
	it = json_pack("{s:s, s:s, s:o, s:o, s:b, s:s, s:s, s:s?}", "namespace", s->ns, "name", name,
		       "ips", ips, "pools", pools, "satisfied", s->satisfied, "reason",
		       lb_reason_name(s), "message", msg, "sharing_key", s->req.skey);
	free(msg);
	return it;
}

int lbipam_api_services(struct axn_mod *self, const json_t *req, json_t **ret_resp,
			char **ret_err, void *arg)
{
	struct lbipam *l = arg;
	const char *ns = arg_str(req, "namespace"), *name = arg_str(req, "name");
	struct lb_svc **v = calloc(l->svcs.n + 1, sizeof(*v));
	json_t *items = json_array(), *resp;
	const char *node = self->host->agent_info(self, "node_name");
	size_t n = 0;

	if (!v || !items)
		goto nomem;
	lb_htab_foreach(&l->svcs, i, hn) {
		struct lb_svc *s = container_of(hn, struct lb_svc, hn);

		if (!s->req.ours || (ns && strcmp(ns, s->ns)) || (name && strcmp(name, strchr(s->key, '/') + 1)))
			continue;
		v[n++] = s;
	}
	qsort(v, n, sizeof(*v), svc_qcmp);
	for (size_t i = 0; i < n; i++) {
		json_t *it = svc_item(v[i]);

		if (!it || json_array_append_new(items, it))
			goto nomem;
	}
	free(v);
	resp = json_pack("{s:o, s:s, s:b, s:s?, s:b}", "items", items, "role", l->writer ? "writer" : "reader",
			 "writes_status", l->publish, "node", node, "dormant", !l->awake);
	if (!resp)
		return -ENOMEM;
	*ret_resp = resp;
	return 0;
nomem:
	free(v);
	json_decref(items);
	return -ENOMEM;
}
