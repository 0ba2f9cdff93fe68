// SPDX-License-Identifier: Apache-2.0
/*
 * test_lb_translate.c - Service + EndpointSlices -> frontends/backends, table
 * driven. Each case is a Service, its slices and the node, and the expected
 * result in a compact text form (see dump()):
 *
 *   "<frontend>/<proto>[<type>]=<selectable>,... |kept:<kept>,...; <next frontend>"
 *
 * where a selectable backend that is terminating carries a trailing "~".
 * JSON in the table uses ' for " to stay readable.
 */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lb_translate.h"

/* Table rows leave trailing fields out on purpose. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define MAX_SLICES 4

struct tcase {
	const char *name;
	const char *svc;
	const char *slices[MAX_SLICES];
	const char *expect;   /* dump() of the result */
	const char *skipped;  /* substring of lb_svc.skipped, or NULL */
	const char *flags;    /* "alg=.. aff=.. itp=.." or NULL to not check */
	const char *warning;  /* substring of lb_svc.warning, or NULL */
	const char *proxy_name;
	int no_annotation;
};

static json_t *jload(const char *s)
{
	char *q = strdup(s);
	json_error_t err;
	json_t *j;

	for (char *p = q; *p; p++)
		if (*p == '\'')
			*p = '"';
	j = json_loads(q, 0, &err);
	if (!j)
		fail_msg("bad JSON in test (%s): %s", err.text, q);
	free(q);
	return j;
}

static void dump(const struct lb_svc *s, char *out, size_t len)
{
	size_t o = 0;

	out[0] = '\0';
	for (size_t i = 0; i < s->n_fe; i++) {
		const struct lb_fe *fe = &s->fe[i];
		char a[LB_ADDR_STRLEN];

		o += snprintf(out + o, len - o, "%s%s/%s[%s]=", i ? "; " : "",
			      lb_addr_format(&fe->ip, fe->port, a, sizeof(a)), lb_proto_name(fe->proto),
			      lb_fe_type_name(fe->type));
		for (size_t j = 0; j < fe->n_be; j++) {
			const struct lb_be *be = &fe->be[j];

			if (j == fe->n_sel)
				o += snprintf(out + o, len - o, " |kept:");
			else if (j)
				o += snprintf(out + o, len - o, ",");
			o += snprintf(out + o, len - o, "%s%s", lb_addr_format(&be->ip, be->port, a, sizeof(a)),
				      j < fe->n_sel && be->state == LB_BE_TERMINATING ? "~" : "");
		}
	}
}

/* Slices as the EndpointSlice controller writes them. */
#define SLICE4(port_json, eps) \
	"{'metadata':{'name':'s4','namespace':'ns','labels':{'kubernetes.io/service-name':'web'}}," \
	"'addressType':'IPv4','ports':[" port_json "],'endpoints':[" eps "]}"
#define SLICE6(port_json, eps) \
	"{'metadata':{'name':'s6','namespace':'ns','labels':{'kubernetes.io/service-name':'web'}}," \
	"'addressType':'IPv6','ports':[" port_json "],'endpoints':[" eps "]}"
#define EP(ip, node, conds) "{'addresses':['" ip "'],'nodeName':'" node "','conditions':" conds "}"
#define READY "{'ready':true,'serving':true,'terminating':false}"
#define NOTREADY "{'ready':false,'serving':false,'terminating':false}"
#define TERM_SERVING "{'ready':false,'serving':true,'terminating':true}"
#define TERM_GONE "{'ready':false,'serving':false,'terminating':true}"
#define P_HTTP "{'name':'http','port':8080,'protocol':'TCP'}"
#define SVC(extra_meta, spec) \
	"{'apiVersion':'v1','kind':'Service','metadata':{'name':'web','namespace':'ns'" extra_meta "}," \
	"'spec':" spec "}"
#define SPEC_HTTP(extra) \
	"{'clusterIP':'10.96.0.10','clusterIPs':['10.96.0.10'],'ports':[{'name':'http','port':80,'targetPort':'web','protocol':'TCP'}]" extra "}"

static const struct tcase cases[] = {
	{"two ready endpoints on two nodes", SVC("", SPEC_HTTP("")),
	 {SLICE4(P_HTTP, EP("10.200.1.2", "node1", READY) "," EP("10.200.2.2", "node2", READY))},
	 "10.96.0.10:80/TCP[ClusterIP]=10.200.1.2:8080,10.200.2.2:8080", NULL,
	 "alg=random aff=0 itp=0"},
	{"not-ready endpoints are dropped", SVC("", SPEC_HTTP("")),
	 {SLICE4(P_HTTP, EP("10.200.1.2", "node1", READY) "," EP("10.200.2.2", "node2", NOTREADY))},
	 "10.96.0.10:80/TCP[ClusterIP]=10.200.1.2:8080"},
	{"missing conditions mean ready", SVC("", SPEC_HTTP("")),
	 {SLICE4(P_HTTP, EP("10.200.1.2", "node1", "{}") "," "{'addresses':['10.200.1.3']}")},
	 "10.96.0.10:80/TCP[ClusterIP]=10.200.1.2:8080,10.200.1.3:8080"},
	{"terminating kept but not selected while something is ready", SVC("", SPEC_HTTP("")),
	 {SLICE4(P_HTTP, EP("10.200.1.2", "node1", READY) "," EP("10.200.2.2", "node2", TERM_SERVING) ","
		 EP("10.200.2.3", "node2", TERM_GONE))},
	 "10.96.0.10:80/TCP[ClusterIP]=10.200.1.2:8080 |kept:10.200.2.2:8080,10.200.2.3:8080"},
	{"nothing ready: serving terminating endpoints are used (SVC-36)", SVC("", SPEC_HTTP("")),
	 {SLICE4(P_HTTP, EP("10.200.1.2", "node1", NOTREADY) "," EP("10.200.2.2", "node2", TERM_SERVING) ","
		 EP("10.200.2.3", "node2", TERM_GONE))},
	 "10.96.0.10:80/TCP[ClusterIP]=10.200.2.2:8080~ |kept:10.200.2.3:8080"},
	{"publishNotReadyAddresses uses every endpoint",
	 SVC("", SPEC_HTTP(",'publishNotReadyAddresses':true")),
	 {SLICE4(P_HTTP, EP("10.200.1.2", "node1", NOTREADY) "," EP("10.200.2.2", "node2", TERM_SERVING) ","
		 EP("10.200.2.3", "node2", READY))},
	 "10.96.0.10:80/TCP[ClusterIP]=10.200.1.2:8080,10.200.2.2:8080~,10.200.2.3:8080"},
	{"internalTrafficPolicy Local keeps this node's endpoints (SVC-08)",
	 SVC("", SPEC_HTTP(",'internalTrafficPolicy':'Local'")),
	 {SLICE4(P_HTTP, EP("10.200.1.2", "node1", READY) "," EP("10.200.2.2", "node2", READY) ","
		 EP("10.200.1.3", "node1", READY))},
	 "10.96.0.10:80/TCP[ClusterIP]=10.200.1.2:8080,10.200.1.3:8080", NULL, "alg=random aff=0 itp=1"},
	{"internalTrafficPolicy Local without a local endpoint has no backend",
	 SVC("", SPEC_HTTP(",'internalTrafficPolicy':'Local'")),
	 {SLICE4(P_HTTP, EP("10.200.2.2", "node2", READY))},
	 "10.96.0.10:80/TCP[ClusterIP]="},
	{"named target port resolves per slice", SVC("", SPEC_HTTP("")),
	 {SLICE4(P_HTTP, EP("10.200.1.2", "node1", READY)),
	  SLICE4("{'name':'http','port':9090,'protocol':'TCP'}", EP("10.200.2.2", "node2", READY))},
	 "10.96.0.10:80/TCP[ClusterIP]=10.200.1.2:8080,10.200.2.2:9090"},
	{"unnamed single port with a numeric target port",
	 SVC("", "{'clusterIP':'10.96.0.11','ports':[{'port':53,'targetPort':5353,'protocol':'UDP'}]}"),
	 {SLICE4("{'port':5353,'protocol':'UDP'}", EP("10.200.1.2", "node1", READY))},
	 "10.96.0.11:53/UDP[ClusterIP]=10.200.1.2:5353"},
	{"several ports, TCP and UDP, each to its own slice port",
	 SVC("", "{'clusterIP':'10.96.0.12','ports':[{'name':'dns','port':53,'protocol':'UDP'},"
		 "{'name':'dns-tcp','port':53,'protocol':'TCP'},{'name':'metrics','port':9153}]}"),
	 {SLICE4("{'name':'dns','port':1053,'protocol':'UDP'},{'name':'dns-tcp','port':1053,'protocol':'TCP'},"
		 "{'name':'metrics','port':9153,'protocol':'TCP'}",
		 EP("10.200.1.2", "node1", READY) "," EP("10.200.2.2", "node2", READY))},
	 "10.96.0.12:53/UDP[ClusterIP]=10.200.1.2:1053,10.200.2.2:1053; "
	 "10.96.0.12:53/TCP[ClusterIP]=10.200.1.2:1053,10.200.2.2:1053; "
	 "10.96.0.12:9153/TCP[ClusterIP]=10.200.1.2:9153,10.200.2.2:9153"},
	{"protocol must match the slice port", SVC("", SPEC_HTTP("")),
	 {SLICE4("{'name':'http','port':8080,'protocol':'UDP'}", EP("10.200.1.2", "node1", READY))},
	 "10.96.0.10:80/TCP[ClusterIP]="},
	{"SCTP ports are not frontends",
	 SVC("", "{'clusterIP':'10.96.0.13','ports':[{'name':'s','port':7,'protocol':'SCTP'},{'name':'t','port':8}]}"),
	 {SLICE4("{'name':'t','port':8,'protocol':'TCP'}", EP("10.200.1.2", "node1", READY))},
	 "10.96.0.13:8/TCP[ClusterIP]=10.200.1.2:8"},
	{"dual stack: each family gets its own backends",
	 SVC("", "{'clusterIP':'10.96.0.10','clusterIPs':['10.96.0.10','fd00:96::10'],'ipFamilies':['IPv4','IPv6'],"
		 "'ports':[{'name':'http','port':80,'targetPort':8080}]}"),
	 {SLICE4(P_HTTP, EP("10.200.1.2", "node1", READY)),
	  SLICE6(P_HTTP, EP("fd00:200:1::2", "node1", READY) "," EP("fd00:200:2::2", "node2", READY))},
	 "10.96.0.10:80/TCP[ClusterIP]=10.200.1.2:8080; "
	 "[fd00:96::10]:80/TCP[ClusterIP]=[fd00:200:1::2]:8080,[fd00:200:2::2]:8080"},
	{"IPv6 only", SVC("", "{'clusterIPs':['fd00:96::11'],'ports':[{'name':'http','port':80}]}"),
	 {SLICE6(P_HTTP, EP("fd00:200:1::2", "node1", READY))},
	 "[fd00:96::11]:80/TCP[ClusterIP]=[fd00:200:1::2]:8080"},
	{"an address listed in two slices counts once, ready wins", SVC("", SPEC_HTTP("")),
	 {SLICE4(P_HTTP, EP("10.200.1.2", "node1", NOTREADY)), SLICE4(P_HTTP, EP("10.200.1.2", "node1", READY))},
	 "10.96.0.10:80/TCP[ClusterIP]=10.200.1.2:8080"},
	{"no slices: frontend without backends", SVC("", SPEC_HTTP("")), {NULL},
	 "10.96.0.10:80/TCP[ClusterIP]="},
	{"NodePort and LoadBalancer: the ClusterIP, external IPs and LB ingress IPs",
	 "{'kind':'Service','metadata':{'name':'web','namespace':'ns'},'spec':{'type':'LoadBalancer',"
	 "'clusterIP':'10.96.0.20','externalIPs':['192.0.2.7','10.96.0.20'],'ports':[{'name':'http','port':80,'nodePort':30080}]},"
	 "'status':{'loadBalancer':{'ingress':[{'ip':'198.51.100.4'},{'hostname':'lb.example'}]}}}",
	 {SLICE4(P_HTTP, EP("10.200.1.2", "node1", READY))},
	 "10.96.0.20:80/TCP[ClusterIP]=10.200.1.2:8080; 192.0.2.7:80/TCP[ExternalIP]=10.200.1.2:8080; "
	 "198.51.100.4:80/TCP[LoadBalancer]=10.200.1.2:8080"},
	{"ITP Local does not restrict external IPs",
	 "{'kind':'Service','metadata':{'name':'web','namespace':'ns'},'spec':{'type':'NodePort','internalTrafficPolicy':'Local',"
	 "'clusterIP':'10.96.0.21','externalIPs':['192.0.2.8'],'ports':[{'name':'http','port':80}]}}",
	 {SLICE4(P_HTTP, EP("10.200.2.2", "node2", READY))},
	 "10.96.0.21:80/TCP[ClusterIP]=; 192.0.2.8:80/TCP[ExternalIP]=10.200.2.2:8080"},
	{"headless service is skipped", SVC("", "{'clusterIP':'None','ports':[{'name':'http','port':80}]}"),
	 {SLICE4(P_HTTP, EP("10.200.1.2", "node1", READY))}, "", "headless"},
	{"ExternalName is skipped", SVC("", "{'type':'ExternalName','externalName':'example.com'}"), {NULL}, "",
	 "ExternalName"},
	{"service-proxy-name label: another proxy's service is skipped (SVC-43)",
	 SVC(",'labels':{'service.kubernetes.io/service-proxy-name':'other'}", SPEC_HTTP("")),
	 {SLICE4(P_HTTP, EP("10.200.1.2", "node1", READY))}, "", "another service proxy"},
	{"service-proxy-name label: ours when configured",
	 SVC(",'labels':{'service.kubernetes.io/service-proxy-name':'axoneme'}", SPEC_HTTP("")),
	 {SLICE4(P_HTTP, EP("10.200.1.2", "node1", READY))}, "10.96.0.10:80/TCP[ClusterIP]=10.200.1.2:8080",
	 NULL, NULL, NULL, "axoneme"},
	{"service-proxy-name configured: unlabelled services are not ours", SVC("", SPEC_HTTP("")),
	 {NULL}, "", "another service proxy", NULL, NULL, "axoneme"},
	{"lb-algorithm annotation maglev",
	 SVC(",'annotations':{'service.cilium.io/lb-algorithm':'maglev'}", SPEC_HTTP("")), {NULL},
	 "10.96.0.10:80/TCP[ClusterIP]=", NULL, "alg=maglev aff=0 itp=0"},
	{"lb-algorithm annotation unknown: warning, default kept",
	 SVC(",'annotations':{'service.cilium.io/lb-algorithm':'roundrobin'}", SPEC_HTTP("")), {NULL},
	 "10.96.0.10:80/TCP[ClusterIP]=", NULL, "alg=random aff=0 itp=0", "roundrobin"},
	{"lb-algorithm annotation ignored when turned off",
	 SVC(",'annotations':{'service.cilium.io/lb-algorithm':'maglev'}", SPEC_HTTP("")), {NULL},
	 "10.96.0.10:80/TCP[ClusterIP]=", NULL, "alg=random aff=0 itp=0", NULL, NULL, 1},
	{"sessionAffinity ClientIP with the default timeout", SVC("", SPEC_HTTP(",'sessionAffinity':'ClientIP'")),
	 {NULL}, "10.96.0.10:80/TCP[ClusterIP]=", NULL, "alg=random aff=10800 itp=0"},
	{"sessionAffinity ClientIP with a timeout",
	 SVC("", SPEC_HTTP(",'sessionAffinity':'ClientIP','sessionAffinityConfig':{'clientIP':{'timeoutSeconds':60}}")),
	 {NULL}, "10.96.0.10:80/TCP[ClusterIP]=", NULL, "alg=random aff=60 itp=0"},
	{"an invalid cluster IP is a warning", SVC("", "{'clusterIPs':['10.96.0.300','10.96.0.30'],'ports':[{'port':80}]}"),
	 {NULL}, "10.96.0.30:80/TCP[ClusterIP]=", NULL, NULL, "10.96.0.300"},
	{"FQDN slices and wrong-family addresses are ignored", SVC("", SPEC_HTTP("")),
	 {"{'addressType':'FQDN','ports':[" P_HTTP "],'endpoints':[{'addresses':['a.example']}]}",
	  SLICE4(P_HTTP, EP("fd00::1", "node1", READY) "," EP("10.200.1.2", "node1", READY))},
	 "10.96.0.10:80/TCP[ClusterIP]=10.200.1.2:8080"},
};

static void run_case(const struct tcase *t)
{
	struct lb_translate_conf conf = {
		.node_name = "node1",
		.service_proxy_name = t->proxy_name,
		.default_algorithm = LB_ALG_RANDOM,
		.algorithm_annotation = !t->no_annotation,
	};
	const json_t *slices[MAX_SLICES];
	json_t *svc = jload(t->svc), *owned[MAX_SLICES] = {0};
	struct lb_svc *s = NULL;
	char out[2048], flags[64];
	size_t n = 0;

	for (; n < MAX_SLICES && t->slices[n]; n++)
		slices[n] = owned[n] = jload(t->slices[n]);
	assert_int_equal(lb_translate(&conf, svc, n ? slices : NULL, n, &s), 0);
	dump(s, out, sizeof(out));
	if (strcmp(out, t->expect))
		fail_msg("case '%s':\n  expected: %s\n  got:      %s", t->name, t->expect, out);
	if (t->skipped) {
		if (!s->skipped || !strstr(s->skipped, t->skipped))
			fail_msg("case '%s': skipped '%s', expected '%s'", t->name,
				 s->skipped ? s->skipped : "(null)", t->skipped);
	} else if (s->skipped && s->n_fe) {
		fail_msg("case '%s': unexpectedly skipped: %s", t->name, s->skipped);
	}
	if (t->flags) {
		snprintf(flags, sizeof(flags), "alg=%s aff=%u itp=%d", lb_alg_name(s->algorithm),
			 s->flags & LB_SVCF_AFFINITY ? s->affinity_timeout : 0,
			 !!(s->flags & LB_SVCF_ITP_LOCAL));
		if (strcmp(flags, t->flags))
			fail_msg("case '%s': flags '%s', expected '%s'", t->name, flags, t->flags);
	}
	if (t->warning && (!s->warning || !strstr(s->warning, t->warning)))
		fail_msg("case '%s': warning '%s', expected '%s'", t->name,
			 s->warning ? s->warning : "(null)", t->warning);
	assert_string_equal(s->ns, "ns");
	lb_svc_free(s);
	json_decref(svc);
	for (size_t i = 0; i < n; i++)
		json_decref(owned[i]);
}

static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_case(&cases[i]);
	print_message("%zu translation cases\n", sizeof(cases) / sizeof(cases[0]));
}

static void test_no_name(void **state)
{
	struct lb_translate_conf conf = {.default_algorithm = LB_ALG_RANDOM};
	json_t *svc = jload("{'kind':'Service','metadata':{},'spec':{'clusterIP':'10.96.0.1'}}");
	struct lb_svc *s = (void *)0x1;

	(void)state;
	assert_int_equal(lb_translate(&conf, svc, NULL, 0, &s), -EINVAL);
	assert_ptr_equal(s, (void *)0x1); /* ret_ untouched on failure */
	json_decref(svc);
}

static void test_ip_helpers(void **state)
{
	struct lb_ip ip;
	char buf[LB_ADDR_STRLEN];

	(void)state;
	assert_int_equal(lb_ip_parse("10.1.2.3", &ip), 0);
	assert_int_equal(ip.family, 4);
	assert_string_equal(lb_addr_format(&ip, 80, buf, sizeof(buf)), "10.1.2.3:80");
	assert_int_equal(lb_ip_parse("fd00::1", &ip), 0);
	assert_int_equal(ip.family, 6);
	assert_string_equal(lb_addr_format(&ip, 443, buf, sizeof(buf)), "[fd00::1]:443");
	assert_int_equal(lb_ip_parse("nope", &ip), -EINVAL);
	assert_int_equal(lb_ip_parse(NULL, &ip), -EINVAL);
	assert_int_equal(lb_alg_parse("maglev"), LB_ALG_MAGLEV);
	assert_int_equal(lb_alg_parse("random"), LB_ALG_RANDOM);
	assert_int_equal(lb_alg_parse("x"), 0);
}


/* Layouts at the edges: v6 slices with many ports/endpoints, a port-less slice, frontend-less specs */
static void test_layout_edges(void **state)
{
	struct lb_translate_conf conf = {.node_name = "n", .default_algorithm = LB_ALG_RANDOM};
	json_t *ports = json_array(), *sports = json_array(), *eps = json_array(), *svc, *sl, *sl0, *hl;
	struct lb_svc_spec *spec, *hspec;
	struct lb_slice *ps[2];
	struct lb_svc *out;
	size_t total = 0;

	(void)state;
	for (int i = 0; i < 100; i++) {
		char name[16];

		snprintf(name, sizeof(name), "p%d", i);
		json_array_append_new(ports, json_pack("{s:s, s:i, s:s}", "name", name, "port", 1000 + i, "protocol", i % 2 ? "UDP" : "TCP"));
		json_array_append_new(sports, json_pack("{s:s, s:i, s:i, s:s}", "name", name, "port", 80 + i, "targetPort", 1000 + i, "protocol", i % 2 ? "UDP" : "TCP"));
	}
	for (int i = 0; i < 1000; i++) {
		char a[48];

		snprintf(a, sizeof(a), "fd00:1::%x", i + 1);
		json_array_append_new(eps, json_pack("{s:[s], s:{s:b}}", "addresses", a, "conditions", "ready", i % 3 != 0));
	}
	svc = json_pack("{s:{s:s, s:s}, s:{s:s, s:[s], s:o}}", "metadata", "name", "s", "namespace", "ns",
			"spec", "clusterIP", "fd00:96::1", "clusterIPs", "fd00:96::1", "ports", sports);
	sl = json_pack("{s:{s:s, s:s, s:{s:s}}, s:s, s:o, s:o}", "metadata", "name", "a", "namespace", "ns",
		       "labels", "kubernetes.io/service-name", "s", "addressType", "IPv6", "ports", ports, "endpoints", eps);
	sl0 = json_pack("{s:{s:s, s:s, s:{s:s}}, s:s, s:[], s:[{s:[s]}]}", "metadata", "name", "b", "namespace", "ns",
			"labels", "kubernetes.io/service-name", "s", "addressType", "IPv6", "ports", "endpoints", "addresses", "fd00:2::1");
	assert_int_equal(lb_service_parse(&conf, svc, &spec), 0);
	assert_int_equal(lb_slice_parse(&conf, sl, &ps[0], NULL), 0);
	assert_int_equal(lb_slice_parse(&conf, sl0, &ps[1], NULL), 0);
	assert_int_equal(lb_translate_parsed(spec, (const struct lb_slice *const *)ps, 2, &out), 0);
	assert_int_equal(out->n_fe, 100);
	for (size_t i = 0; i < out->n_fe; i++) {
		assert_int_equal(out->fe[i].port, 80 + i);
		assert_string_equal(out->fe[i].port_name, (char[16]){0} + 0 == NULL ? "" : out->fe[i].port_name);
		for (size_t j = 0; j < out->fe[i].n_be; j++) {
			assert_int_equal(out->fe[i].be[j].port, 1000 + i);
			assert_int_equal(out->fe[i].be[j].ip.family, 6);
		}
		total += out->fe[i].n_be;
	}
	print_message("layout edges: %zu backends over %zu frontends\n", total, out->n_fe);
	assert_true(total >= 100 * 666);
	lb_svc_free(out);
	hl = json_pack("{s:{s:s, s:s}, s:{s:s}}", "metadata", "name", "h", "namespace", "ns", "spec", "clusterIP", "None");
	assert_int_equal(lb_service_parse(&conf, hl, &hspec), 0);
	assert_int_equal(lb_translate_parsed(hspec, NULL, 0, &out), 0);
	assert_int_equal(out->n_fe, 0);
	assert_string_equal(out->name, "h");
	assert_string_equal(out->ns, "ns");
	lb_svc_free(out);
	lb_svc_spec_unref(hspec);
	lb_slice_free(ps[0]);
	lb_slice_free(ps[1]);
	lb_svc_spec_unref(spec);
	json_decref(svc);
	json_decref(sl);
	json_decref(sl0);
	json_decref(hl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_no_name),
		cmocka_unit_test(test_ip_helpers),
		cmocka_unit_test(test_layout_edges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
