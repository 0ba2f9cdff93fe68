// SPDX-License-Identifier: Apache-2.0
/*
 * lbipam_svc.c - what a Service asks of LB IPAM: whether it is ours
 * (type, loadBalancerClass), which families (ipFamilyPolicy, ipFamilies),
 * which addresses (spec.loadBalancerIP, lbipam.cilium.io/ips and the older
 * io.cilium/lb-ipam-ips), and what decides sharing (sharing key,
 * cross-namespace list, ports, traffic policy, pod selector). Pure: jansson
 * only, no host calls.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lbipam.h"

static const char *str_at(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s && *s ? s : NULL;
}

/* The first of two annotations that is set (the current name, then its older alias). */
static const char *annotation(const json_t *doc, const char *key, const char *alias)
{
	const json_t *ann = json_object_get(json_object_get(doc, "metadata"), "annotations");
	const char *v = str_at(ann, key);

	return v ? v : str_at(ann, alias);
}

/* Split a comma list in place: tokens trimmed, empty ones skipped. */
static char *next_token(char **cursor)
{
	char *p = *cursor, *tok, *end;

	while (p && *p) {
		char *comma = strchr(p, ',');

		if (comma)
			*comma = '\0';
		tok = p;
		p = comma ? comma + 1 : NULL;
		while (isspace((unsigned char)*tok))
			tok++;
		end = tok + strlen(tok);
		while (end > tok && isspace((unsigned char)end[-1]))
			*--end = '\0';
		if (*tok) {
			*cursor = p;
			return tok;
		}
	}
	*cursor = NULL;
	return NULL;
}

static int add_ip(struct lb_req *r, const char *text, const char *src)
{
	struct lb_ip ip;
	struct lb_ip *v;

	if (lb_ip_parse(text, &ip) < 0) {
		if (!r->bad_ip) {
			if (!(r->bad_ip = strdup(text)))
				return -ENOMEM;
			r->bad_src = src;
		}
		return 0;
	}
	for (uint16_t i = 0; i < r->n_ips; i++)
		if (!lb_ip_cmp(&r->ips[i], &ip))
			return 0;
	if (r->n_ips >= LB_MAX_REQ_IPS)
		return 0;
	if (!(v = realloc(r->ips, (r->n_ips + 1u) * sizeof(*v))))
		return -ENOMEM;
	r->ips = v;
	r->ips[r->n_ips++] = ip;
	return 0;
}

static int parse_ips(const json_t *doc, const json_t *spec, struct lb_req *r)
{
	const char *single = str_at(spec, "loadBalancerIP");
	const char *list = annotation(doc, LB_ANN_IPS, LB_ANN_IPS_OLD);
	const char *src = str_at(json_object_get(json_object_get(doc, "metadata"), "annotations"),
				 LB_ANN_IPS)
				  ? LB_ANN_IPS
				  : LB_ANN_IPS_OLD;
	char *copy, *cur, *tok;
	int rc = 0;

	if (single && (rc = add_ip(r, single, "spec.loadBalancerIP")) < 0)
		return rc;
	if (!list)
		return 0;
	if (!(copy = strdup(list)))
		return -ENOMEM;
	cur = copy;
	while (rc == 0 && (tok = next_token(&cur)))
		rc = add_ip(r, tok, src);
	free(copy);
	return rc;
}

static int parse_xns(const json_t *doc, struct lb_req *r)
{
	const char *list = annotation(doc, LB_ANN_XNS, LB_ANN_XNS_OLD);
	char *copy, *cur, *tok;

	if (!list)
		return 0;
	if (!(copy = strdup(list)))
		return -ENOMEM;
	cur = copy;
	while ((tok = next_token(&cur))) {
		char **v;

		if (!strcmp(tok, "*")) {
			r->xns_any = true;
			continue;
		}
		if (r->n_xns == UINT16_MAX || !(v = realloc(r->xns, (r->n_xns + 1u) * sizeof(*v))))
			goto nomem;
		r->xns = v;
		if (!(r->xns[r->n_xns] = strdup(tok)))
			goto nomem;
		r->n_xns++;
	}
	free(copy);
	return 0;
nomem:
	free(copy);
	return -ENOMEM;
}

static int port_qcmp(const void *a, const void *b)
{
	return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

static int parse_ports(const json_t *spec, struct lb_req *r)
{
	const json_t *ports = json_object_get(spec, "ports"), *p;
	size_t i, n = json_array_size(ports), w = 0;

	if (!n)
		return 0;
	if (n > UINT16_MAX || !(r->ports = calloc(n, sizeof(*r->ports))))
		return -ENOMEM;
	json_array_foreach(ports, i, p) {
		json_int_t port = json_integer_value(json_object_get(p, "port"));

		if (port > 0 && port <= 65535)
			r->ports[w++] = (uint16_t)port;
	}
	qsort(r->ports, w, sizeof(*r->ports), port_qcmp);
	r->n_ports = 0;
	for (size_t k = 0; k < w; k++)
		if (!r->n_ports || r->ports[r->n_ports - 1] != r->ports[k])
			r->ports[r->n_ports++] = r->ports[k];
	return 0;
}

/* Upstream's serviceIPFamilyRequest, plus: a family the policy needs but the cluster lacks is reported. */
static void parse_families(const json_t *spec, const struct lb_req_opts *o, struct lb_req *r)
{
	const char *policy = str_at(spec, "ipFamilyPolicy");
	const json_t *fams = json_object_get(spec, "ipFamilies");
	const char *first = json_string_value(json_array_get(fams, 0));

	if (policy && !strcmp(policy, "RequireDualStack")) {
		r->v4 = o->ipv4;
		r->v6 = o->ipv6;
		if (!o->ipv4 || !o->ipv6)
			r->family_off = !o->ipv4 ? "IPv4" : "IPv6";
		return;
	}
	if (policy && !strcmp(policy, "PreferDualStack")) {
		r->prefer_dual = true;
		if (json_array_size(fams)) {
			size_t i;
			json_t *f;

			json_array_foreach(fams, i, f) {
				const char *s = json_string_value(f);

				if (s && !strcmp(s, "IPv4"))
					r->v4 = o->ipv4;
				else if (s && !strcmp(s, "IPv6"))
					r->v6 = o->ipv6;
			}
		} else {
			r->v4 = o->ipv4;
			r->v6 = o->ipv6;
		}
		if (!r->v4 && !r->v6)
			r->family_off = o->ipv4 ? "IPv6" : "IPv4";
		return;
	}
	/* SingleStack, or no policy. */
	if (first) {
		bool six = !strcmp(first, "IPv6");

		if (six && o->ipv6)
			r->v6 = true;
		else if (!six && o->ipv4)
			r->v4 = true;
		else
			r->family_off = six ? "IPv6" : "IPv4";
	} else if (o->ipv4) {
		r->v4 = true;
	} else if (o->ipv6) {
		r->v6 = true;
	} else {
		r->family_off = "IPv4";
	}
}

int lb_req_parse(const json_t *doc, const struct lb_req_opts *o, struct lb_req *ret)
{
	const json_t *spec = json_object_get(doc, "spec");
	const char *type = str_at(spec, "type");
	const json_t *cls = json_object_get(spec, "loadBalancerClass");
	struct lb_req r = {0};
	const char *skey;
	int rc;

	if (!type || strcmp(type, "LoadBalancer"))
		goto done;
	if (!cls || json_is_null(cls)) {
		r.ours = o->classless;
	} else if (json_is_string(cls)) {
		/* A class we do not know belongs to another controller: not even a condition. */
		for (const char *const *c = o->classes; c && *c && !r.ours; c++)
			r.ours = !strcmp(*c, json_string_value(cls));
	}
	if (!r.ours)
		goto done;
	parse_families(spec, o, &r);
	if ((rc = parse_ips(doc, spec, &r)) < 0 || (rc = parse_xns(doc, &r)) < 0 ||
	    (rc = parse_ports(spec, &r)) < 0)
		goto fail;
	if ((skey = annotation(doc, LB_ANN_SKEY, LB_ANN_SKEY_OLD)) && !(r.skey = strdup(skey)))
		goto nomem;
	r.etp_local = (type = str_at(spec, "externalTrafficPolicy")) && !strcmp(type, "Local");
	r.selector = json_is_object(json_object_get(spec, "selector"))
			     ? json_object_get(spec, "selector")
			     : NULL;
done:
	*ret = r;
	return 0;
nomem:
	rc = -ENOMEM;
fail:
	lb_req_free(&r);
	return rc;
}

void lb_req_free(struct lb_req *r)
{
	free(r->ips);
	free(r->bad_ip);
	free(r->skey);
	for (uint16_t i = 0; i < r->n_xns; i++)
		free(r->xns[i]);
	free(r->xns);
	free(r->ports);
	*r = (struct lb_req){0};
}

static bool allows_ns(const struct lb_req *r, const char *ns)
{
	if (r->xns_any)
		return true;
	for (uint16_t i = 0; i < r->n_xns; i++)
		if (!strcmp(r->xns[i], ns))
			return true;
	return false;
}

const char *lb_req_incompatible(const struct lb_req *a, const char *ns_a, const struct lb_req *b,
				const char *ns_b)
{
	uint16_t i = 0, j = 0;

	if (!a->skey || !b->skey || strcmp(a->skey, b->skey))
		return "different sharing key";
	/* Another namespace only when both services allow each other's. */
	if (strcmp(ns_a, ns_b) && (!allows_ns(a, ns_b) || !allows_ns(b, ns_a)))
		return "different and not permitted namespace";
	/* Port numbers only, as upstream: its datapath cannot tell protocols apart either. */
	while (i < a->n_ports && j < b->n_ports) {
		if (a->ports[i] == b->ports[j])
			return "same port";
		if (a->ports[i] < b->ports[j])
			i++;
		else
			j++;
	}
	if (a->etp_local != b->etp_local)
		return "different external traffic policy";
	/* Local traffic must reach a node with a backend of both: same pods. */
	if (a->etp_local) {
		if (!json_object_size(a->selector) || !json_object_size(b->selector))
			return "externalTrafficPolicy Local without a pod selector";
		if (!json_equal((json_t *)a->selector, (json_t *)b->selector))
			return "externalTrafficPolicy Local with different pod selectors";
	}
	return NULL;
}

json_t *lb_svc_labels(const json_t *doc, bool meta)
{
	const json_t *md = json_object_get(doc, "metadata");
	json_t *labels = json_object_get(md, "labels"), *out;
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	const char *name = json_string_value(json_object_get(md, "name"));

	if (!meta)
		return json_is_object(labels) ? json_incref(labels) : NULL;
	out = json_is_object(labels) ? json_copy(labels) : json_object();
	if (!out ||
	    json_object_set_new(out, "io.kubernetes.service.namespace", json_string(ns ? ns : "")) ||
	    json_object_set_new(out, "io.kubernetes.service.name", json_string(name ? name : ""))) {
		json_decref(out);
		return NULL;
	}
	return out;
}
