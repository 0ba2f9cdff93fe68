// SPDX-License-Identifier: Apache-2.0
/*
 * lb_api.c - the module's endpoints:
 *   lb/services  what the agent wants: per frontend its service, type and
 *                backends with state (`axoneme lb services`, all=1 adds
 *                skipped services)
 *   lb/bpf       what the kernel holds: the services maps read back, each
 *                slot of a master's range resolved through the backends
 *                arrays (`axoneme lb bpf`)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>

#include "lb.h"
#include "lb_shared.h"

/* "addr (state)" */
static json_t *be_json(const char *a, const char *b)
{
	char *s;
	json_t *j;

	if (asprintf(&s, "%s (%s)", a, b) < 0)
		return NULL;
	j = json_string(s);
	free(s);
	return j;
}

static int add_fe(struct lb *lb, struct lb_sv *sv, const struct lb_svc *s, const struct lb_fe *fe,
		  json_t *items)
{
	char a[LB_ADDR_STRLEN], b[LB_ADDR_STRLEN];
	json_t *bes = json_array(), *it;
	struct lb_be *v = NULL;
	size_t n = 0, n_sel = 0;
	int r;

	if (!bes)
		return -ENOMEM;
	/* The writer holds the backends (what the node keeps has none: lb_svc_view). */
	r = lb_maps_fe_backends(lb->maps, fe, &v, &n, &n_sel);
	if (r == -ENOMEM) {
		json_decref(bes);
		return r;
	}
	for (size_t i = 0; i < n; i++) {
		const struct lb_be *be = &v[i];
		const char *st = be->state == LB_BE_TERMINATING ? "terminating" : "active";

		if (i >= n_sel)
			st = "terminating,kept";
		json_array_append_new(bes, be_json(lb_addr_format(&be->ip, be->port, b, sizeof(b)), st));
	}
	free(v);
	snprintf(b, sizeof(b), "%s/%s", lb_addr_format(&fe->ip, fe->port, a, sizeof(a)),
		 lb_proto_name(fe->proto));
	it = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:o}", "frontend", b, "type",
		       lb_fe_type_name(fe->type), "service", sv->key, "id",
		       (json_int_t)lb_maps_fe_id(lb->maps, fe), "algorithm", lb_alg_name(s->algorithm),
		       "port_name", *fe->port_name ? fe->port_name : "-", "backends", bes);
	if (!it)
		return -ENOMEM;
	if (s->flags & LB_SVCF_AFFINITY)
		json_object_set_new(it, "affinity_s", json_integer(s->affinity_timeout));
	if (s->flags & LB_SVCF_ITP_LOCAL)
		json_object_set_new(it, "traffic_policy", json_string("Local"));
	if (lb_sv_error(sv))
		json_object_set_new(it, "error", json_string(lb_sv_error(sv)));
	return json_array_append_new(items, it) ? -ENOMEM : 0;
}

static int api_services(struct axn_mod *self, const json_t *req, json_t **ret_resp, char **ret_err,
			void *arg)
{
	struct lb *lb = arg;
	int all = json_is_true(json_object_get(req, "all")) ||
		  !strcmp(json_string_value(json_object_get(req, "all")) ?: "", "1");
	json_t *items = json_array();
	int r = 0;

	(void)self;
	(void)ret_err;
	if (!items)
		return -ENOMEM;
	lb_ht_foreach(&lb->svcs, nd, nx) {
		struct lb_sv *sv = (struct lb_sv *)nd;
		struct lb_svc v = {0};

		(void)nx;
		if (sv->cur)
			lb_svc_view(sv->cur, &v);
		for (size_t i = 0; i < v.n_fe && !r; i++)
			r = add_fe(lb, sv, &v, &v.fe[i], items);
		/* Refused before it ever got in: still listed, with why. */
		if (!r && lb_sv_error(sv) && !v.n_fe)
			r = json_array_append_new(items, json_pack("{s:s, s:s, s:s}", "frontend", "-",
								  "service", sv->key, "error",
								  lb_sv_error(sv)))
				    ? -ENOMEM
				    : 0;
		if (!r && all && v.skipped)
			r = json_array_append_new(items, json_pack("{s:s, s:s, s:s}", "frontend", "-",
								  "service", sv->key, "skipped",
								  v.skipped))
				    ? -ENOMEM
				    : 0;
		if (r)
			break;
	}
	if (r) {
		json_decref(items);
		return r;
	}
	*ret_resp = json_pack("{s:o, s:b, s:i}", "items", items, "synced", lb->live,
			      "refused", (json_int_t)lb->n_errors);
	return *ret_resp ? 0 : -ENOMEM;
}

static json_t *backend_str(struct lb *lb, int fam, uint32_t id)
{
	char a[LB_ADDR_STRLEN], out[LB_ADDR_STRLEN + 32];
	struct lb_ip ip = {.family = (uint8_t)fam};
	uint16_t port;
	uint8_t state;

	if (fam == 4) {
		struct lb4_backend b;

		if (bpf_map_lookup_elem(lb->fd[LBM_BE4], &id, &b) < 0 || !b.proto)
			goto missing;
		memcpy(ip.a, &b.addr, 4);
		port = ntohs(b.port);
		state = b.state;
	} else {
		struct lb6_backend b;

		if (bpf_map_lookup_elem(lb->fd[LBM_BE6], &id, &b) < 0 || !b.proto)
			goto missing;
		memcpy(ip.a, b.addr, 16);
		port = ntohs(b.port);
		state = b.state;
	}
	snprintf(out, sizeof(out), "%u=%s%s", id, lb_addr_format(&ip, port, a, sizeof(a)),
		 state == LB_BS_TERMINATING ? " (terminating)" : "");
	return json_string(out);
missing:
	snprintf(out, sizeof(out), "%u=(missing)", id);
	return json_string(out);
}

/* One family's services map: each master with the backends of its slots. */
static int dump_services(struct lb *lb, int fam, json_t *items)
{
	int fd = lb->fd[fam == 4 ? LBM_SVC4 : LBM_SVC6];
	union {
		struct lb4_key k4;
		struct lb6_key k6;
	} key, next;
	void *prev = NULL;

	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		char a[LB_ADDR_STRLEN], fe[LB_ADDR_STRLEN + 8], range[32] = "-";
		struct lb_ip ip = {.family = (uint8_t)fam};
		struct lb_svc_val v;
		uint16_t port;
		uint8_t proto;
		json_t *slots, *it;

		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, &v) < 0)
			continue;
		if (fam == 4) {
			memcpy(ip.a, &key.k4.addr, 4);
			port = ntohs(key.k4.port);
			proto = key.k4.proto;
		} else {
			memcpy(ip.a, key.k6.addr, 16);
			port = ntohs(key.k6.port);
			proto = key.k6.proto;
		}
		snprintf(fe, sizeof(fe), "%s/%s", lb_addr_format(&ip, port, a, sizeof(a)),
			 lb_proto_name(proto));
		if (v.slot_order != LB_SLOT_ORDER_NONE)
			snprintf(range, sizeof(range), "%u+%u", v.slot_base, 1u << (v.slot_order & 31));
		slots = json_array();
		for (uint32_t s = 0; slots && s < v.count; s++) {
			struct lb_slot sl;
			uint32_t k = v.slot_base + s;

			if (bpf_map_lookup_elem(lb->fd[LBM_SLOTS], &k, &sl) < 0)
				json_array_append_new(slots, json_string("(missing slot)"));
			else
				json_array_append_new(slots, backend_str(lb, fam, sl.backend_id));
		}
		it = json_pack("{s:s, s:i, s:i, s:s, s:s, s:i, s:s, s:o}", "frontend", fe,
			       "rev_nat_id", (json_int_t)v.rev_nat_id, "count", (json_int_t)v.count,
			       "flags",
			       v.flags & LB_F_AFFINITY ? (v.flags & LB_F_ITP_LOCAL ? "affinity,itp-local" : "affinity")
						       : (v.flags & LB_F_ITP_LOCAL ? "itp-local" : "-"),
			       "algorithm", v.algorithm == LB_A_MAGLEV ? "maglev" : "random",
			       "affinity_s", (json_int_t)v.affinity_timeout, "slots", range, "backends",
			       slots ? slots : json_array());
		if (!it || json_array_append_new(items, it))
			return -ENOMEM;
	}
	return 0;
}

static int api_bpf(struct axn_mod *self, const json_t *req, json_t **ret_resp, char **ret_err,
		   void *arg)
{
	struct lb *lb = arg;
	json_t *items = json_array();
	int r;

	(void)self;
	(void)req;
	(void)ret_err;
	if (!items)
		return -ENOMEM;
	if ((r = dump_services(lb, 4, items)) < 0 || (r = dump_services(lb, 6, items)) < 0) {
		json_decref(items);
		return r;
	}
	*ret_resp = json_pack("{s:o}", "items", items);
	return *ret_resp ? 0 : -ENOMEM;
}

int lb_api_start(struct lb *lb)
{
	struct axn_mod *self = lb->self;
	int r;

	if ((r = self->host->api_register(self, "services", api_services, lb, &lb->api_services)) < 0 ||
	    (r = self->host->api_register(self, "bpf", api_bpf, lb, &lb->api_bpf)) < 0) {
		axn_err(self, "api_register failed: %s", strerror(-r));
		return r;
	}
	/* The names Cilium users type: `axoneme service list`, `axoneme bpf lb list`. */
	if (AXN_HOST_HAS(self->host, api_alias)) {
		if ((r = self->host->api_alias(self, "service/list", "services")) < 0 ||
		    (r = self->host->api_alias(self, "bpf/lb/list", "bpf")) < 0)
			axn_warn(self, "CLI aliases not registered: %s", strerror(-r));
	}
	return 0;
}
