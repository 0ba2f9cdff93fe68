// SPDX-License-Identifier: Apache-2.0
/*
 * lb_translate.c - Service + EndpointSlices -> frontends and backends. The
 * rules are listed in lb_translate.h; this file only applies them.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lb_translate.h"

#define ANN_ALGORITHM "service.cilium.io/lb-algorithm"
#define LABEL_PROXY_NAME "service.kubernetes.io/service-proxy-name"

int lb_ip_parse(const char *s, struct lb_ip *ret_ip)
{
	struct lb_ip ip = {0};

	if (!s)
		return -EINVAL;
	if (inet_pton(AF_INET, s, ip.a) == 1)
		ip.family = 4;
	else if (inet_pton(AF_INET6, s, ip.a) == 1)
		ip.family = 6;
	else
		return -EINVAL;
	*ret_ip = ip;
	return 0;
}

const char *lb_addr_format(const struct lb_ip *ip, uint16_t port, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN] = "?";

	inet_ntop(ip->family == 6 ? AF_INET6 : AF_INET, ip->a, a, sizeof(a));
	snprintf(buf, len, ip->family == 6 ? "[%s]:%u" : "%s:%u", a, port);
	return buf;
}

const char *lb_proto_name(uint8_t proto)
{
	return proto == IPPROTO_TCP ? "TCP" : proto == IPPROTO_UDP ? "UDP" : "?";
}

const char *lb_fe_type_name(uint8_t type)
{
	switch (type) {
	case LB_FE_CLUSTERIP:
		return "ClusterIP";
	case LB_FE_EXTERNALIP:
		return "ExternalIP";
	case LB_FE_LOADBALANCER:
		return "LoadBalancer";
	}
	return "?";
}

const char *lb_alg_name(uint8_t alg)
{
	return alg == LB_ALG_MAGLEV ? "maglev" : "random";
}

uint8_t lb_alg_parse(const char *s)
{
	if (!s)
		return 0;
	if (!strcmp(s, "random"))
		return LB_ALG_RANDOM;
	if (!strcmp(s, "maglev"))
		return LB_ALG_MAGLEV;
	return 0;
}

static void fe_free(struct lb_fe *fe)
{
	free(fe->port_name);
	free(fe->be);
}

void lb_svc_free(struct lb_svc *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_fe; i++)
		fe_free(&s->fe[i]);
	free(s->fe);
	free(s->ns);
	free(s->name);
	free(s->skipped);
	free(s->warning);
	free(s);
}

static const char *jstr(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* A condition: JSON true/false, or `def` when absent or null. */
static bool cond(const json_t *conds, const char *key, bool def)
{
	const json_t *v = json_object_get(conds, key);

	return json_is_boolean(v) ? json_is_true(v) : def;
}

static uint8_t proto_parse(const char *s)
{
	if (!s || !strcmp(s, "TCP"))
		return IPPROTO_TCP;
	if (!strcmp(s, "UDP"))
		return IPPROTO_UDP;
	return 0; /* SCTP and anything else: not handled at the socket layer */
}

__attribute__((format(printf, 2, 3))) static int set_msg(char **slot, const char *fmt, ...)
{
	va_list ap;
	char *m;
	int r;

	if (*slot) /* the first problem is the one reported */
		return 0;
	va_start(ap, fmt);
	r = vasprintf(&m, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	*slot = m;
	return 0;
}

/* One candidate endpoint address of a frontend, before selection. */
struct cand {
	struct lb_be be;
	bool ready, serving, terminating;
};

struct cands {
	struct cand *v;
	size_t n, cap;
};

static int cands_add(struct cands *c, const struct cand *x)
{
	/* Duplicates across slices happen during updates: keep the best state. */
	for (size_t i = 0; i < c->n; i++) {
		struct cand *y = &c->v[i];

		if (y->be.port == x->be.port && !memcmp(&y->be.ip, &x->be.ip, sizeof(x->be.ip))) {
			if (x->ready && !y->ready)
				*y = *x;
			return 0;
		}
	}
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 8;
		struct cand *v = realloc(c->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n++] = *x;
	return 0;
}

/* The port number a slice gives for (name, proto), or -1. */
static int slice_port(const json_t *slice, const char *name, uint8_t proto)
{
	const json_t *p;
	size_t i;

	json_array_foreach(json_object_get(slice, "ports"), i, p) {
		const char *pn = jstr(p, "name");
		json_int_t num = json_integer_value(json_object_get(p, "port"));

		if (strcmp(pn ? pn : "", name) || proto_parse(jstr(p, "protocol")) != proto)
			continue;
		if (num < 1 || num > 65535)
			return -1;
		return (int)num;
	}
	return -1;
}

static int collect(const struct lb_translate_conf *conf, const struct lb_fe *fe,
		   const json_t *const *slices, size_t n_slices, bool local_only, struct cands *out)
{
	for (size_t s = 0; s < n_slices; s++) {
		const char *at = jstr(slices[s], "addressType");
		const json_t *ep;
		size_t i;
		int port;

		if (!at || strcmp(at, fe->ip.family == 4 ? "IPv4" : "IPv6"))
			continue;
		port = slice_port(slices[s], fe->port_name, fe->proto);
		if (port < 0)
			continue;
		json_array_foreach(json_object_get(slices[s], "endpoints"), i, ep) {
			const json_t *conds = json_object_get(ep, "conditions"), *a;
			const char *node = jstr(ep, "nodeName");
			struct cand c = {0};
			size_t j;
			int r;

			c.ready = cond(conds, "ready", true);
			c.serving = cond(conds, "serving", c.ready);
			c.terminating = cond(conds, "terminating", false);
			c.be.port = (uint16_t)port;
			c.be.local = node && conf->node_name && !strcmp(node, conf->node_name);
			if (local_only && !c.be.local)
				continue;
			json_array_foreach(json_object_get(ep, "addresses"), j, a) {
				if (lb_ip_parse(json_string_value(a), &c.be.ip) < 0 ||
				    c.be.ip.family != fe->ip.family)
					continue;
				if ((r = cands_add(out, &c)) < 0)
					return r;
			}
		}
	}
	return 0;
}

/* Apply the endpoint-condition rules to the candidates of one frontend. */
static int select_backends(struct lb_fe *fe, const struct cands *c, bool publish_not_ready)
{
	size_t n_ready = 0, k = 0;
	bool fallback;

	fe->be = calloc(c->n ? c->n : 1, sizeof(*fe->be));
	if (!fe->be)
		return -ENOMEM;
	for (size_t i = 0; i < c->n; i++)
		n_ready += c->v[i].ready && !c->v[i].terminating;
	/* Nothing ready: serving endpoints that terminate are better than none. */
	fallback = !publish_not_ready && n_ready == 0;

	for (size_t i = 0; i < c->n; i++) {
		const struct cand *x = &c->v[i];
		bool sel = publish_not_ready || (x->ready && !x->terminating) ||
			   (fallback && x->serving && x->terminating);

		if (!sel)
			continue;
		fe->be[k] = x->be;
		fe->be[k++].state = x->terminating ? LB_BE_TERMINATING : LB_BE_ACTIVE;
	}
	fe->n_sel = k;
	/* Kept for flows that already use them, never picked for new ones. */
	for (size_t i = 0; i < c->n; i++) {
		const struct cand *x = &c->v[i];
		bool sel = publish_not_ready || (x->ready && !x->terminating) ||
			   (fallback && x->serving && x->terminating);

		if (sel || !x->terminating)
			continue;
		fe->be[k] = x->be;
		fe->be[k++].state = LB_BE_TERMINATING;
	}
	fe->n_be = k;
	return 0;
}

struct fe_list {
	struct lb_fe *v;
	size_t n, cap;
};

static int fe_add(struct fe_list *l, const struct lb_ip *ip, uint8_t type, const json_t *port)
{
	json_int_t num = json_integer_value(json_object_get(port, "port"));
	uint8_t proto = proto_parse(jstr(port, "protocol"));
	const char *name = jstr(port, "name");
	struct lb_fe *fe;

	if (!proto || num < 1 || num > 65535)
		return 0; /* SCTP, or a broken port: nothing to do at the socket layer */
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].port == num && l->v[i].proto == proto &&
		    !memcmp(&l->v[i].ip, ip, sizeof(*ip)))
			return 0; /* the same IP listed twice (clusterIP and externalIPs) */
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 4;
		struct lb_fe *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	fe = &l->v[l->n];
	memset(fe, 0, sizeof(*fe));
	fe->ip = *ip;
	fe->port = (uint16_t)num;
	fe->proto = proto;
	fe->type = type;
	fe->port_name = strdup(name ? name : "");
	if (!fe->port_name)
		return -ENOMEM;
	l->n++;
	return 0;
}

static int fe_add_ip(struct lb_svc *s, struct fe_list *l, const char *ipstr, uint8_t type,
		     const json_t *ports)
{
	const json_t *p;
	struct lb_ip ip;
	size_t i;
	int r;

	if (lb_ip_parse(ipstr, &ip) < 0)
		return set_msg(&s->warning, "invalid IP address '%s' ignored", ipstr ? ipstr : "");
	json_array_foreach(ports, i, p)
		if ((r = fe_add(l, &ip, type, p)) < 0)
			return r;
	return 0;
}

static int frontends(struct lb_svc *s, const json_t *spec, const json_t *status,
		     struct fe_list *l)
{
	const json_t *ports = json_object_get(spec, "ports"), *v, *ips;
	size_t i;
	int r;

	ips = json_object_get(spec, "clusterIPs");
	if (json_array_size(ips) == 0) {
		const char *one = jstr(spec, "clusterIP");

		if (one && *one && strcmp(one, "None") && (r = fe_add_ip(s, l, one, LB_FE_CLUSTERIP, ports)) < 0)
			return r;
	}
	json_array_foreach(ips, i, v) {
		const char *ip = json_string_value(v);

		if (ip && *ip && strcmp(ip, "None") &&
		    (r = fe_add_ip(s, l, ip, LB_FE_CLUSTERIP, ports)) < 0)
			return r;
	}
	/* In-cluster clients of an external or LB address go straight to a backend. */
	json_array_foreach(json_object_get(spec, "externalIPs"), i, v)
		if ((r = fe_add_ip(s, l, json_string_value(v), LB_FE_EXTERNALIP, ports)) < 0)
			return r;
	json_array_foreach(json_object_get(json_object_get(status, "loadBalancer"), "ingress"), i, v) {
		const char *ip = jstr(v, "ip");

		if (ip && (r = fe_add_ip(s, l, ip, LB_FE_LOADBALANCER, ports)) < 0)
			return r;
	}
	return 0;
}

/* Why a service is not ours, or NULL. */
static const char *skip_reason(const struct lb_translate_conf *conf, const json_t *svc,
			       const json_t *spec)
{
	const json_t *labels = json_object_get(json_object_get(svc, "metadata"), "labels");
	const char *proxy = jstr(labels, LABEL_PROXY_NAME), *type = jstr(spec, "type");
	const char *want = conf->service_proxy_name ? conf->service_proxy_name : "";

	/* SVC-43: the label names the proxy that owns the service. */
	if (proxy ? strcmp(proxy, want) : *want != '\0')
		return "handled by another service proxy (" LABEL_PROXY_NAME ")";
	if (type && !strcmp(type, "ExternalName"))
		return "ExternalName service";
	return NULL;
}

int lb_translate(const struct lb_translate_conf *conf, const json_t *svc,
		 const json_t *const *slices, size_t n_slices, struct lb_svc **ret_svc)
{
	const json_t *meta = json_object_get(svc, "metadata"), *spec = json_object_get(svc, "spec");
	const json_t *ann = json_object_get(meta, "annotations");
	const char *name = jstr(meta, "name"), *ns = jstr(meta, "namespace"), *v, *why;
	struct fe_list l = {0};
	struct cands c = {0};
	struct lb_svc *s;
	bool pnr;
	int r;

	if (!name || !*name)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->name = strdup(name);
	s->ns = strdup(ns ? ns : "default");
	if (!s->name || !s->ns) {
		r = -ENOMEM;
		goto fail;
	}
	v = jstr(spec, "type");
	snprintf(s->type, sizeof(s->type), "%s", v ? v : "ClusterIP");
	s->algorithm = conf->default_algorithm ? conf->default_algorithm : LB_ALG_RANDOM;

	why = skip_reason(conf, svc, spec);
	if (why) {
		s->skipped = strdup(why);
		if (!s->skipped) {
			r = -ENOMEM;
			goto fail;
		}
		goto out;
	}

	v = jstr(ann, ANN_ALGORITHM);
	if (v && conf->algorithm_annotation) {
		uint8_t alg = lb_alg_parse(v);

		if (alg)
			s->algorithm = alg;
		else if ((r = set_msg(&s->warning, "unknown " ANN_ALGORITHM " '%s' ignored", v)) < 0)
			goto fail;
	}
	v = jstr(spec, "sessionAffinity");
	if (v && !strcmp(v, "ClientIP")) {
		json_int_t t = json_integer_value(json_object_get(
			json_object_get(json_object_get(spec, "sessionAffinityConfig"), "clientIP"),
			"timeoutSeconds"));

		s->flags |= LB_SVCF_AFFINITY;
		/* The API allows 1..86400; anything else falls back to the default. */
		s->affinity_timeout = t >= 1 && t <= 86400 ? (uint32_t)t : LB_AFFINITY_DEFAULT_S;
	}
	v = jstr(spec, "internalTrafficPolicy");
	if (v && !strcmp(v, "Local"))
		s->flags |= LB_SVCF_ITP_LOCAL;
	pnr = json_is_true(json_object_get(spec, "publishNotReadyAddresses"));

	if ((r = frontends(s, spec, json_object_get(svc, "status"), &l)) < 0)
		goto fail;
	s->fe = l.v;
	s->n_fe = l.n;
	l.v = NULL;
	if (s->n_fe == 0 && !s->skipped) {
		const char *cip = jstr(spec, "clusterIP");

		if (cip && !strcmp(cip, "None"))
			s->skipped = strdup("headless service");
		else
			s->skipped = strdup("no TCP or UDP frontend");
		if (!s->skipped) {
			r = -ENOMEM;
			goto fail;
		}
	}
	for (size_t i = 0; i < s->n_fe; i++) {
		struct lb_fe *fe = &s->fe[i];
		bool local = (s->flags & LB_SVCF_ITP_LOCAL) && fe->type == LB_FE_CLUSTERIP;

		c.n = 0;
		if ((r = collect(conf, fe, slices, n_slices, local, &c)) < 0 ||
		    (r = select_backends(fe, &c, pnr)) < 0)
			goto fail;
	}
out:
	free(c.v);
	*ret_svc = s;
	return r;
fail:
	free(c.v);
	for (size_t i = 0; i < l.n; i++)
		fe_free(&l.v[i]);
	free(l.v);
	lb_svc_free(s);
	return r;
}
