// SPDX-License-Identifier: Apache-2.0
/*
 * test_lbipam.c - lbipam on the testhost, scenario by scenario. Each
 * scenario is a table of steps: put or delete pools and services, sync,
 * restart (with or without status, with or without the state file), and
 * check addresses (status and view), conditions, pool counts, logs, health
 * and the number of status writes. Feature ids (IPAM-nn) refer to
 * reference/features.md.
 */
#include "lbt.h"

/* Steps name only the arguments they use. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

enum op {
	END,
	POOL,    /* a name, b spec, c metadata extras, d apiVersion */
	POOLDEL, /* a name */
	SVC,     /* a ns/name, b spec (NULL: LoadBalancer, port 80), c metadata extras */
	SVCDEL,  /* a ns/name */
	SYNC,
	RESTART, /* a: "" | "nostatus" | "nostate" | "nothing" */
	IPS,     /* a ns/name, b "ip,ip" in status (writer) and view */
	COND,    /* a ns/name, b status or NULL (absent), c reason, d message part */
	NOST,    /* a ns/name: no status was ever written */
	PST,     /* a pool, b "total/used/available", c PoolConflict status, d its message part */
	PVALID,  /* a pool, b status, c reason, d message part */
	LOG,     /* a: a log line contains it */
	NOLOG,   /* a: no log line contains it */
	LOGCLR,
	WRITES,  /* a: status writes so far in this run of the module */
	HEALTH,  /* a "up"/"degraded", b reason part */
};

struct step {
	enum op op;
	const char *a, *b, *c, *d;
};

struct scenario {
	const char *name;
	const char *const *conf;
	struct step steps[64];
};

#define LB "{'type':'LoadBalancer','ports':[{'port':80}]}"
#define LBP(port) "{'type':'LoadBalancer','ports':[{'port':" #port "}]}"

static void split_key(const char *key, char *ns, char *name)
{
	const char *slash = strchr(key, '/');

	assert_non_null(slash);
	snprintf(ns, 128, "%.*s", (int)(slash - key), key);
	snprintf(name, 128, "%s", slash + 1);
}

static void merge_meta(json_t *md, const char *extra)
{
	json_t *x;

	if (!extra)
		return;
	x = lbt_json(extra);
	json_object_update(md, x);
	json_decref(x);
}

static void put_pool(struct lbt *t, const struct step *s)
{
	json_t *md = json_pack("{s:s}", "name", s->a);

	merge_meta(md, s->c);
	lbt_put(t, json_pack("{s:s, s:s, s:o, s:o}", "apiVersion", s->d ? s->d : "cilium.io/v2alpha1",
			     "kind", "CiliumLoadBalancerIPPool", "metadata", md, "spec", lbt_json(s->b)));
}

static void put_svc(struct lbt *t, const struct step *s)
{
	char ns[128], name[128];
	json_t *md;

	split_key(s->a, ns, name);
	md = json_pack("{s:s, s:s}", "name", name, "namespace", ns);
	merge_meta(md, s->c);
	lbt_put(t, json_pack("{s:s, s:s, s:o, s:o}", "apiVersion", "v1", "kind", "Service", "metadata",
			     md, "spec", lbt_json(s->b ? s->b : LB)));
}

static bool is_writer(struct lbt *t)
{
	json_t *resp = NULL;
	char *err = NULL;
	bool w;

	assert_int_equal(axn_testhost_api_call(t->th, "lbipam/services", NULL, &resp, &err), 0);
	w = json_is_true(json_object_get(resp, "writes_status"));
	json_decref(resp);
	free(err);
	return w;
}

static void check(const struct scenario *sc, size_t i, struct lbt *t)
{
	const struct step *s = &sc->steps[i];
	char ns[128], name[128];

	switch (s->op) {
	case IPS: {
		char *v, *st;

		split_key(s->a, ns, name);
		v = lbt_view_ips(t, ns, name);
		if (strcmp(v, s->b))
			fail_msg("%s, step %zu: %s has %s in the view, want %s", sc->name, i, s->a, v, s->b);
		if (is_writer(t)) {
			st = lbt_status_ips(t, ns, name);
			if (strcmp(st, s->b))
				fail_msg("%s, step %zu: %s has %s in status, want %s", sc->name, i, s->a, st,
					 s->b);
			free(st);
		}
		free(v);
		break;
	}
	case COND: {
		const json_t *c;

		split_key(s->a, ns, name);
		c = lbt_cond(lbt_status(t, "Service", ns, name), "cilium.io/IPAMRequestSatisfied");
		if (!s->b) {
			if (c)
				fail_msg("%s, step %zu: %s still has a condition", sc->name, i, s->a);
			break;
		}
		if (!c)
			fail_msg("%s, step %zu: %s has no condition", sc->name, i, s->a);
		if (strcmp(json_string_value(json_object_get(c, "status")), s->b) ||
		    strcmp(json_string_value(json_object_get(c, "reason")), s->c) ||
		    (s->d && !strstr(json_string_value(json_object_get(c, "message")), s->d)))
			fail_msg("%s, step %zu: %s condition %s", sc->name, i, s->a,
				 json_dumps(c, JSON_COMPACT));
		if (!json_is_string(json_object_get(c, "lastTransitionTime")))
			fail_msg("%s, step %zu: no lastTransitionTime", sc->name, i);
		break;
	}
	case NOST:
		split_key(s->a, ns, name);
		if (lbt_status(t, "Service", ns, name))
			fail_msg("%s, step %zu: %s got a status", sc->name, i, s->a);
		break;
	case PST: {
		const json_t *st = lbt_status(t, "CiliumLoadBalancerIPPool", NULL, s->a);
		const json_t *tot = lbt_cond(st, "cilium.io/IPsTotal"), *used = lbt_cond(st, "cilium.io/IPsUsed");
		const json_t *av = lbt_cond(st, "cilium.io/IPsAvailable"), *cf = lbt_cond(st, "cilium.io/PoolConflict");
		char got[256];

		if (!tot || !used || !av || !cf)
			fail_msg("%s, step %zu: pool %s status incomplete", sc->name, i, s->a);
		snprintf(got, sizeof(got), "%s/%s/%s", json_string_value(json_object_get(tot, "message")),
			 json_string_value(json_object_get(used, "message")),
			 json_string_value(json_object_get(av, "message")));
		if (strcmp(got, s->b))
			fail_msg("%s, step %zu: pool %s counts %s, want %s", sc->name, i, s->a, got, s->b);
		if (strcmp(json_string_value(json_object_get(cf, "status")), s->c) ||
		    (s->d && !strstr(json_string_value(json_object_get(cf, "message")), s->d)))
			fail_msg("%s, step %zu: pool %s conflict %s", sc->name, i, s->a,
				 json_dumps(cf, JSON_COMPACT));
		break;
	}
	case PVALID: {
		const json_t *c = lbt_cond(lbt_status(t, "CiliumLoadBalancerIPPool", NULL, s->a),
					   "axoneme.io/PoolSpecValid");

		if (!c || strcmp(json_string_value(json_object_get(c, "status")), s->b) ||
		    strcmp(json_string_value(json_object_get(c, "reason")), s->c) ||
		    (s->d && !strstr(json_string_value(json_object_get(c, "message")), s->d)))
			fail_msg("%s, step %zu: pool %s validity %s", sc->name, i, s->a,
				 c ? json_dumps(c, JSON_COMPACT) : "(none)");
		break;
	}
	case LOG:
		if (!axn_testhost_log_find(t->th, s->a))
			fail_msg("%s, step %zu: no log line with '%s'", sc->name, i, s->a);
		break;
	case NOLOG:
		if (axn_testhost_log_find(t->th, s->a))
			fail_msg("%s, step %zu: log line '%s'", sc->name, i, axn_testhost_log_find(t->th, s->a));
		break;
	case WRITES:
		if (lbt_metric(t, "status_writes") != atof(s->a))
			fail_msg("%s, step %zu: %g status writes, want %s", sc->name, i,
				 lbt_metric(t, "status_writes"), s->a);
		break;
	case HEALTH: {
		const char *why = NULL;
		uint32_t st = axn_testhost_state(t->th, &why);

		if (st != (strcmp(s->a, "up") ? AXN_STATE_DEGRADED : AXN_STATE_UP) ||
		    (s->b && (!why || !strstr(why, s->b))))
			fail_msg("%s, step %zu: health %u '%s'", sc->name, i, st, why ? why : "");
		break;
	}
	default:
		break;
	}
}

static void play(const struct scenario *sc)
{
	struct lbt *t = lbt_new(sc->conf);

	for (size_t i = 0; sc->steps[i].op != END; i++) {
		const struct step *s = &sc->steps[i];
		char ns[128], name[128];

		switch (s->op) {
		case POOL:
			put_pool(t, s);
			break;
		case POOLDEL:
			lbt_delete(t, "CiliumLoadBalancerIPPool", NULL, s->a);
			break;
		case SVC:
			put_svc(t, s);
			break;
		case SVCDEL:
			split_key(s->a, ns, name);
			lbt_delete(t, "Service", ns, name);
			break;
		case SYNC:
			lbt_sync(t);
			continue;
		case RESTART:
			lbt_restart(t, s->a);
			break;
		case LOGCLR:
			axn_testhost_log_clear(t->th);
			break;
		default:
			check(sc, i, t);
			continue;
		}
		lbt_run(t);
	}
	lbt_free(t);
}

/* --- the scenarios -------------------------------------------------------------------------- */

static const char *const conf_v4only[] = {"ipv6", "false", NULL};
static const char *const conf_class_only[] = {"only_with_class", "true", NULL};
static const char *const conf_nodeipam[] = {"default_ipam", "nodeipam", NULL};
static const char *const conf_classes[] = {"classes", "example.com/lb", NULL};
static const char *const conf_reader[] = {"writer", "false", NULL};
static const char *const conf_reader_status[] = {"writer", "false", "reader_status", "true", NULL};

static const struct scenario scenarios[] = {
	{"IPAM-01 seed 001: a pool and services", NULL, {
		{POOL, "first-pool", "{'blocks':[{'start':'10.0.0.100','stop':'10.0.0.200'}]}",
		 "{'namespace':'kube-system'}"},
		{SVC, "example/service-blue", "{'type':'LoadBalancer','ports':[{'port':1234}]}",
		 "{'labels':{'color':'blue'},'annotations':{'io.cilium/lb-ipam-ips':'20.0.10.100,20.0.10.200'}}"},
		{SVC, "default/web"},
		{NOST, "default/web"}, /* nothing is decided before the store has synced */
		{SYNC},
		{IPS, "default/web", "10.0.0.100"},
		{COND, "default/web", "True", "satisfied"},
		{IPS, "example/service-blue", ""},
		{COND, "example/service-blue", "False", "no_pool", "No pool exists with a CIDR containing '20.0.10.100'"},
		{SVC, "default/second"},
		{IPS, "default/second", "10.0.0.101"},
		{HEALTH, "up"},
		{END}}},

	{"IPAM-02 dormant until the first pool", NULL, {
		{SVC, "default/a"},
		{SYNC},
		{LOG, "dormant"},
		{NOST, "default/a"},
		{WRITES, "0"},
		{POOL, "blue", "{'blocks':[{'cidr':'10.0.0.0/30'}]}"},
		{IPS, "default/a", "10.0.0.0"},
		{POOLDEL, "blue"},
		{IPS, "default/a", ""},
		{COND, "default/a", "False", "no_pool"},
		{LOG, "no pool left: dormant"},
		{SVC, "default/b"},
		{NOST, "default/b"},
		{END}}},

	{"IPAM-03 blocks: CIDR, start/stop, start alone, both families, cilium.io/v2", NULL, {
		{POOL, "mix", "{'blocks':[{'cidr':'fd00:99::/126'},{'start':'10.0.0.10','stop':'10.0.0.11'},{'start':'10.0.0.5'}]}",
		 NULL, "cilium.io/v2"},
		{SVC, "default/a", "{'type':'LoadBalancer','ipFamilyPolicy':'PreferDualStack'}"},
		{SVC, "default/b"}, {SVC, "default/c"}, {SVC, "default/d"},
		{SYNC},
		{IPS, "default/a", "10.0.0.5,fd00:99::"},
		{IPS, "default/b", "10.0.0.10"},
		{IPS, "default/c", "10.0.0.11"},
		{IPS, "default/d", ""},
		{COND, "default/d", "False", "out_of_ips", "ran out of allocatable IPs"},
		{PST, "mix", "7/4/3", "False"},
		{PVALID, "mix", "True", "valid"},
		{END}}},

	{"IPAM-04/15 allowFirstLastIPs: reserved, requested, switched", NULL, {
		{POOL, "blue", "{'allowFirstLastIPs':'No','blocks':[{'cidr':'10.0.0.0/30'}]}"},
		{SVC, "default/a"}, {SVC, "default/b"}, {SVC, "default/c"},
		{SVC, "default/r", LB, "{'annotations':{'lbipam.cilium.io/ips':'10.0.0.3'}}"},
		{SYNC},
		{IPS, "default/a", "10.0.0.1"},
		{IPS, "default/b", "10.0.0.2"},
		{IPS, "default/c", ""},
		{COND, "default/c", "False", "out_of_ips"},
		{COND, "default/r", "False", "reserved_ip", "'10.0.0.3' is the first or last address"},
		{PST, "blue", "2/2/0", "False"},
		{POOL, "blue", "{'allowFirstLastIPs':'Yes','blocks':[{'cidr':'10.0.0.0/30'}]}"},
		{IPS, "default/a", "10.0.0.1"},
		{IPS, "default/b", "10.0.0.2"},
		{IPS, "default/c", "10.0.0.0"},
		{IPS, "default/r", "10.0.0.3"},
		{LOG, "default/r: requested 10.0.0.3 is the first or last address of 10.0.0.0/30 in pool blue"},
		/* Back to No: the holders of .0 and .3 keep them (nothing moves on an edit). */
		{POOL, "blue", "{'allowFirstLastIPs':'No','blocks':[{'cidr':'10.0.0.0/30'}]}"},
		{IPS, "default/c", "10.0.0.0"},
		{IPS, "default/r", "10.0.0.3"},
		{PST, "blue", "2/4/0", "False"},
		{RESTART, ""},
		{IPS, "default/c", "10.0.0.0"},
		{IPS, "default/r", "10.0.0.3"},
		{WRITES, "0"},
		{END}}},

	{"IPAM-05 selectors: labels, expressions, namespace and name keys, none", NULL, {
		{POOL, "blue", "{'blocks':[{'cidr':'10.0.1.0/24'}],'serviceSelector':{'matchExpressions':[{'key':'color','operator':'In','values':['blue','cyan']}]}}"},
		{POOL, "red", "{'blocks':[{'cidr':'10.0.2.0/24'}],'serviceSelector':{'matchLabels':{'color':'red'}}}"},
		{POOL, "tenant", "{'blocks':[{'cidr':'10.0.3.0/24'}],'serviceSelector':{'matchLabels':{'io.kubernetes.service.namespace':'tenant-a'}}}"},
		{POOL, "named", "{'blocks':[{'cidr':'10.0.4.0/24'}],'serviceSelector':{'matchExpressions':[{'key':'io.kubernetes.service.name','operator':'In','values':['special']}]}}"},
		{SVC, "default/b1", LB, "{'labels':{'color':'cyan'}}"},
		{SVC, "default/r1", LB, "{'labels':{'color':'red'}}"},
		{SVC, "tenant-a/x"},
		{SVC, "default/special"},
		{SVC, "default/nolabel"},
		{SYNC},
		{IPS, "default/b1", "10.0.1.0"},
		{IPS, "default/r1", "10.0.2.0"},
		{IPS, "tenant-a/x", "10.0.3.0"},
		{IPS, "default/special", "10.0.4.0"},
		{IPS, "default/nolabel", ""},
		{COND, "default/nolabel", "False", "no_pool", "no enabled CiliumLoadBalancerIPPools that match"},
		/* A pool without a selector serves anybody; nobody else moves. */
		{POOL, "any", "{'blocks':[{'cidr':'10.0.9.0/24'}]}"},
		{IPS, "default/nolabel", "10.0.9.0"},
		{IPS, "default/b1", "10.0.1.0"},
		{IPS, "tenant-a/x", "10.0.3.0"},
		{END}}},

	{"IPAM-06/19 overlapping pools: the younger conflicts, allocates nothing, is reported", NULL, {
		{POOL, "blue", "{'blocks':[{'cidr':'20.0.10.0/24'}],'serviceSelector':{'matchExpressions':[{'key':'color','operator':'NotIn','values':['red']}]}}"},
		{SVC, "default/a"},
		{SYNC},
		{IPS, "default/a", "20.0.10.0"},
		{POOL, "red", "{'blocks':[{'cidr':'20.0.10.0/24'}],'serviceSelector':{'matchLabels':{'color':'red'}}}"},
		{PST, "red", "256/1/255", "True", "Pool conflicts since range '20.0.10.0/24' overlaps range '20.0.10.0/24' from IP Pool 'blue'"},
		{PST, "blue", "256/1/255", "False"},
		{LOG, "pool red: Pool conflicts since range"},
		{HEALTH, "degraded", "pool red: Pool conflicts"},
		{SVC, "default/b", LB, "{'labels':{'color':'red'}}"},
		{COND, "default/b", "False", "no_pool"},
		{IPS, "default/a", "20.0.10.0"},
		{RESTART, ""}, /* still conflicting after a restart, though nothing is older by name */
		{PST, "red", "256/1/255", "True"},
		{WRITES, "0"},
		{RESTART, "nostatus"}, /* the state file remembers it too */
		{PST, "red", "256/1/255", "True"},
		{POOLDEL, "blue"},
		{LOG, "pool red: conflict resolved"},
		{PST, "red", "256/1/255", "False"},
		{IPS, "default/a", ""},
		{IPS, "default/b", "20.0.10.0"},
		{HEALTH, "up"},
		{END}}},

	{"IPAM-06 stickiness: the conflicting pool sorts first by name and stays the loser", NULL, {
		{POOL, "zeta", "{'blocks':[{'cidr':'10.5.0.0/29'}]}"},
		{SVC, "default/a"}, {SVC, "default/b"},
		{SYNC},
		{SVCDEL, "default/a"},
		{POOL, "alpha", "{'blocks':[{'cidr':'10.5.0.0/29'}]}"},
		{PST, "alpha", "8/1/7", "True", "from IP Pool 'zeta'"},
		{IPS, "default/b", "10.5.0.1"},
		{RESTART, "nostate"},
		{PST, "alpha", "8/1/7", "True"},
		{PST, "zeta", "8/1/7", "False"},
		{IPS, "default/b", "10.5.0.1"},
		{WRITES, "0"},
		{END}}},

	{"IPAM-07 disabled: keeps what it has, across restarts too, gives nothing new", NULL, {
		{POOL, "blue", "{'blocks':[{'cidr':'10.0.0.0/30'}]}"},
		{SVC, "default/a"},
		{SYNC},
		{IPS, "default/a", "10.0.0.0"},
		{POOL, "blue", "{'disabled':true,'blocks':[{'cidr':'10.0.0.0/30'}]}"},
		{IPS, "default/a", "10.0.0.0"},
		{SVC, "default/b"},
		{COND, "default/b", "False", "no_pool"},
		{SVC, "default/c", LB, "{'annotations':{'lbipam.cilium.io/ips':'10.0.0.2'}}"},
		{COND, "default/c", "False", "pool_disabled", "The pool 'blue' containing '10.0.0.2' is disabled"},
		{RESTART, ""},
		{IPS, "default/a", "10.0.0.0"},
		{WRITES, "0"},
		{RESTART, "nostatus"},
		{IPS, "default/a", "10.0.0.0"},
		{POOL, "blue", "{'disabled':false,'blocks':[{'cidr':'10.0.0.0/30'}]}"},
		{IPS, "default/a", "10.0.0.0"},
		{IPS, "default/b", "10.0.0.1"},
		{IPS, "default/c", "10.0.0.2"},
		{END}}},

	{"IPAM-08 counts: IPv6 /64 and mixed blocks", NULL, {
		{POOL, "big", "{'blocks':[{'cidr':'fd00::/64'},{'cidr':'10.0.0.0/24'}]}"},
		{SVC, "default/a", "{'type':'LoadBalancer','ipFamilyPolicy':'RequireDualStack'}"},
		{SYNC},
		{PST, "big", "18446744073709551872/2/18446744073709551870", "False"},
		{END}}},

	{"IPAM-10 label change: allocated once a pool selects it, released when not", NULL, {
		{POOL, "blue", "{'blocks':[{'cidr':'10.0.0.0/30'}],'serviceSelector':{'matchLabels':{'color':'blue'}}}"},
		{SVC, "default/a"},
		{SYNC},
		{COND, "default/a", "False", "no_pool"},
		{SVC, "default/a", LB, "{'labels':{'color':'blue'}}"},
		{IPS, "default/a", "10.0.0.0"},
		{COND, "default/a", "True", "satisfied"},
		{SVC, "default/a", LB, "{'labels':{'color':'green'}}"},
		{IPS, "default/a", ""},
		{COND, "default/a", "False", "no_pool"},
		{END}}},

	{"IPAM-11 families: policy and ipFamilies", NULL, {
		{POOL, "dual", "{'blocks':[{'cidr':'10.0.0.0/28'},{'cidr':'fd00::/124'}],'serviceSelector':{'matchExpressions':[{'key':'role','operator':'NotIn','values':['v4only']}]}}"},
		{POOL, "v4only", "{'blocks':[{'cidr':'10.1.0.0/28'}],'serviceSelector':{'matchLabels':{'role':'v4only'}}}"},
		{SVC, "default/a-single"},
		{SVC, "default/b-six", "{'type':'LoadBalancer','ipFamilies':['IPv6']}"},
		{SVC, "default/c-prefer", "{'type':'LoadBalancer','ipFamilyPolicy':'PreferDualStack'}"},
		{SVC, "default/d-require", "{'type':'LoadBalancer','ipFamilyPolicy':'RequireDualStack'}"},
		{SVC, "default/e-order", "{'type':'LoadBalancer','ipFamilyPolicy':'PreferDualStack','ipFamilies':['IPv6','IPv4']}"},
		{SVC, "default/f-single6", "{'type':'LoadBalancer','ipFamilyPolicy':'SingleStack','ipFamilies':['IPv6','IPv4']}"},
		{SVC, "default/g-prefer4", "{'type':'LoadBalancer','ipFamilyPolicy':'PreferDualStack'}", "{'labels':{'role':'v4only'}}"},
		{SVC, "default/h-require4", "{'type':'LoadBalancer','ipFamilyPolicy':'RequireDualStack'}", "{'labels':{'role':'v4only'}}"},
		{SYNC},
		{IPS, "default/a-single", "10.0.0.0"},
		{IPS, "default/b-six", "fd00::"},
		{IPS, "default/c-prefer", "10.0.0.1,fd00::1"},
		{IPS, "default/d-require", "10.0.0.2,fd00::2"},
		{IPS, "default/e-order", "10.0.0.3,fd00::3"},
		{IPS, "default/f-single6", "fd00::4"},
		{IPS, "default/g-prefer4", "10.1.0.0"},
		{COND, "default/g-prefer4", "True", "satisfied"},
		{IPS, "default/h-require4", "10.1.0.1"},
		{COND, "default/h-require4", "False", "no_pool", "(IPv6)"},
		/* A family dropped from the spec is released; a family added is allocated. */
		{SVC, "default/c-prefer", "{'type':'LoadBalancer','ipFamilyPolicy':'SingleStack','ipFamilies':['IPv6']}"},
		{IPS, "default/c-prefer", "fd00::1"},
		{SVC, "default/a-single", "{'type':'LoadBalancer','ipFamilyPolicy':'RequireDualStack'}"},
		{IPS, "default/a-single", "10.0.0.0,fd00::5"},
		{END}}},

	{"IPAM-11 RequireDualStack with IPv6 disabled is unsatisfied", conf_v4only, {
		{POOL, "dual", "{'blocks':[{'cidr':'10.0.0.0/28'},{'cidr':'fd00::/124'}]}"},
		{SVC, "default/a", "{'type':'LoadBalancer','ipFamilyPolicy':'RequireDualStack'}"},
		{SVC, "default/b", "{'type':'LoadBalancer','ipFamilyPolicy':'PreferDualStack'}"},
		{SVC, "default/c", "{'type':'LoadBalancer','ipFamilies':['IPv6']}"},
		{SYNC},
		{IPS, "default/a", "10.0.0.0"},
		{COND, "default/a", "False", "family_disabled", "needs IPv6"},
		{IPS, "default/b", "10.0.0.1"},
		{COND, "default/b", "True", "satisfied"},
		{IPS, "default/c", ""},
		{COND, "default/c", "False", "family_disabled"},
		{END}}},

	{"IPAM-12 loadBalancerClass: unset and Cilium's classes served, others ignored", NULL, {
		{POOL, "blue", "{'blocks':[{'cidr':'10.0.0.0/24'}]}"},
		{SVC, "default/a-none"},
		{SVC, "default/b-l2", "{'type':'LoadBalancer','loadBalancerClass':'io.cilium/l2-announcer'}"},
		{SVC, "default/c-bgp", "{'type':'LoadBalancer','loadBalancerClass':'io.cilium/bgp-control-plane'}"},
		{SVC, "default/d-node", "{'type':'LoadBalancer','loadBalancerClass':'io.cilium/node'}"},
		{SVC, "default/e-other", "{'type':'LoadBalancer','loadBalancerClass':'example.com/lb'}"},
		{SVC, "default/f-cip", "{'type':'ClusterIP'}"},
		{SYNC},
		{IPS, "default/a-none", "10.0.0.0"},
		{IPS, "default/b-l2", "10.0.0.1"},
		{IPS, "default/c-bgp", "10.0.0.2"},
		{NOST, "default/d-node"},
		{NOST, "default/e-other"},
		{NOST, "default/f-cip"},
		/* Handed to another controller: ingress and condition taken back, address freed. */
		{SVC, "default/b-l2", "{'type':'LoadBalancer','loadBalancerClass':'example.com/lb'}"},
		{IPS, "default/b-l2", ""},
		{COND, "default/b-l2", NULL},
		{SVC, "default/a-none", "{'type':'NodePort'}"},
		{IPS, "default/a-none", ""},
		{COND, "default/a-none", NULL},
		{SVC, "default/g"},
		{IPS, "default/g", "10.0.0.0"},
		{END}}},

	{"IPAM-13 only_with_class", conf_class_only, {
		{POOL, "blue", "{'blocks':[{'cidr':'10.0.0.0/24'}]}"},
		{SVC, "default/a-none"},
		{SVC, "default/b-l2", "{'type':'LoadBalancer','loadBalancerClass':'io.cilium/l2-announcer'}"},
		{SYNC},
		{NOST, "default/a-none"},
		{IPS, "default/b-l2", "10.0.0.0"},
		{END}}},

	{"IPAM-13 default_ipam nodeipam", conf_nodeipam, {
		{POOL, "blue", "{'blocks':[{'cidr':'10.0.0.0/24'}]}"},
		{SVC, "default/a-none"},
		{SVC, "default/b-bgp", "{'type':'LoadBalancer','loadBalancerClass':'io.cilium/bgp-control-plane'}"},
		{SYNC},
		{NOST, "default/a-none"},
		{IPS, "default/b-bgp", "10.0.0.0"},
		{END}}},

	{"IPAM-12 classes option", conf_classes, {
		{POOL, "blue", "{'blocks':[{'cidr':'10.0.0.0/24'}]}"},
		{SVC, "default/a-other", "{'type':'LoadBalancer','loadBalancerClass':'example.com/lb'}"},
		{SVC, "default/b-l2", "{'type':'LoadBalancer','loadBalancerClass':'io.cilium/l2-announcer'}"},
		{SYNC},
		{IPS, "default/a-other", "10.0.0.0"},
		{NOST, "default/b-l2"},
		{END}}},

	{"IPAM-14 requested addresses: field, annotations, selector, conflicts, typos", NULL, {
		{POOL, "web", "{'blocks':[{'cidr':'10.0.0.0/24'}],'serviceSelector':{'matchLabels':{'tier':'web'}}}"},
		{POOL, "open", "{'blocks':[{'cidr':'10.1.0.0/24'}]}"},
		{SVC, "default/lbip", "{'type':'LoadBalancer','loadBalancerIP':'10.1.0.7'}"},
		{SVC, "default/ann", LB, "{'annotations':{'lbipam.cilium.io/ips':'10.1.0.8, 10.1.0.9'}}"},
		{SVC, "default/old", LB, "{'annotations':{'io.cilium/lb-ipam-ips':'10.1.0.10'}}"},
		{SVC, "default/both", LB, "{'annotations':{'lbipam.cilium.io/ips':'10.1.0.11','io.cilium/lb-ipam-ips':'10.1.0.12'}}"},
		{SVC, "default/sel", LB, "{'annotations':{'lbipam.cilium.io/ips':'10.0.0.5'}}"},
		{SVC, "default/web", LB, "{'labels':{'tier':'web'},'annotations':{'lbipam.cilium.io/ips':'10.0.0.5'}}"},
		{SVC, "default/nopool", LB, "{'annotations':{'lbipam.cilium.io/ips':'192.168.0.1'}}"},
		{SVC, "default/taken", "{'type':'LoadBalancer','loadBalancerIP':'10.1.0.7'}"},
		{SVC, "default/bad", LB, "{'annotations':{'lbipam.cilium.io/ips':'10.1.0.300'}}"},
		{SVC, "default/gen"},
		{SYNC},
		{IPS, "default/lbip", "10.1.0.7"},
		{IPS, "default/ann", "10.1.0.8,10.1.0.9"},
		{IPS, "default/old", "10.1.0.10"},
		{IPS, "default/both", "10.1.0.11"},
		{IPS, "default/sel", ""},
		{COND, "default/sel", "False", "pool_selector_mismatch", "containing '10.0.0.5', doesn't select this service"},
		{IPS, "default/web", "10.0.0.5"},
		{COND, "default/nopool", "False", "no_pool", "No pool exists with a CIDR containing '192.168.0.1'"},
		{COND, "default/taken", "False", "already_allocated", "The IP '10.1.0.7' is already allocated to another service"},
		{IPS, "default/bad", ""},
		{COND, "default/bad", "False", "invalid_request", "'10.1.0.300' in lbipam.cilium.io/ips is not an IP address"},
		{IPS, "default/gen", "10.1.0.0"},
		/* The request changes: the service moves to what it asks for; the old address is free. */
		{SVC, "default/lbip", "{'type':'LoadBalancer','loadBalancerIP':'10.1.0.20'}"},
		{IPS, "default/lbip", "10.1.0.20"},
		{IPS, "default/taken", "10.1.0.7"},
		{COND, "default/taken", "True", "satisfied"},
		{LOG, "default/lbip: addresses 10.1.0.7 -> 10.1.0.20"},
		{END}}},

	{"IPAM-16 sharing keys: ports, traffic policy, requested address", NULL, {
		{POOL, "blue", "{'blocks':[{'cidr':'10.0.0.0/24'}]}"},
		{SVC, "default/a", LBP(80), "{'annotations':{'lbipam.cilium.io/sharing-key':'k'}}"},
		{SVC, "default/b", LBP(443), "{'annotations':{'lbipam.cilium.io/sharing-key':'k'}}"},
		{SVC, "default/c", LBP(80), "{'annotations':{'lbipam.cilium.io/sharing-key':'k'}}"},
		{SVC, "default/d", LBP(8080), "{'annotations':{'lbipam.cilium.io/sharing-key':'k','lbipam.cilium.io/ips':'10.0.0.9'}}"},
		{SVC, "default/e", "{'type':'LoadBalancer','ports':[{'port':53}],'externalTrafficPolicy':'Local','selector':{'app':'x'}}",
		 "{'annotations':{'lbipam.cilium.io/sharing-key':'k'}}"},
		{SVC, "default/f"},
		{SYNC},
		{IPS, "default/a", "10.0.0.0"},
		{IPS, "default/b", "10.0.0.0"},
		{IPS, "default/c", "10.0.0.1"},
		{IPS, "default/d", "10.0.0.9"},
		{IPS, "default/e", "10.0.0.2"},
		{IPS, "default/f", "10.0.0.3"},
		{PST, "blue", "256/5/251", "False"},
		{SVC, "default/g", LBP(9090), "{'annotations':{'lbipam.cilium.io/sharing-key':'k'}}"},
		{IPS, "default/g", "10.0.0.0"},
		{SVCDEL, "default/a"},
		{IPS, "default/b", "10.0.0.0"},
		{SVC, "default/h", LBP(80), "{'annotations':{'lbipam.cilium.io/sharing-key':'k','lbipam.cilium.io/ips':'10.0.0.0'}}"},
		{IPS, "default/h", "10.0.0.0"},
		{SVC, "default/i", LBP(80), "{'annotations':{'lbipam.cilium.io/ips':'10.0.0.1'}}"},
		{COND, "default/i", "False", "already_allocated"},
		{SVC, "default/j", LBP(80), "{'annotations':{'lbipam.cilium.io/sharing-key':'k','lbipam.cilium.io/ips':'10.0.0.1'}}"},
		{COND, "default/j", "False", "already_allocated_incompatible_service", "Reason: same port"},
		{SVC, "default/l", "{'type':'LoadBalancer','ports':[{'port':54}],'externalTrafficPolicy':'Local','selector':{'app':'x'}}",
		 "{'annotations':{'lbipam.cilium.io/sharing-key':'k'}}"},
		{IPS, "default/l", "10.0.0.2"},
		/* c takes a port b... no: c now clashes with h on .0? c stays where it is. */
		{SVC, "default/c", LBP(81), "{'annotations':{'lbipam.cilium.io/sharing-key':'k'}}"},
		{IPS, "default/c", "10.0.0.1"},
		/* b changes its key: it leaves the shared address for a new one. */
		{SVC, "default/b", LBP(443), "{'annotations':{'lbipam.cilium.io/sharing-key':'other'}}"},
		{IPS, "default/b", "10.0.0.4"},
		/* f, alone on .3, takes a key: its address is now in that key's set and a partner joins it. */
		{SVC, "default/f", LBP(80), "{'annotations':{'lbipam.cilium.io/sharing-key':'fkey'}}"},
		{IPS, "default/f", "10.0.0.3"},
		{SVC, "default/m", LBP(81), "{'annotations':{'lbipam.cilium.io/sharing-key':'fkey'}}"},
		{IPS, "default/m", "10.0.0.3"},
		{RESTART, "nostatus"},
		{IPS, "default/g", "10.0.0.0"},
		{IPS, "default/h", "10.0.0.0"},
		{IPS, "default/b", "10.0.0.4"},
		{IPS, "default/l", "10.0.0.2"},
		{END}}},

	{"IPAM-17 sharing across namespaces: both must allow it", NULL, {
		{POOL, "blue", "{'blocks':[{'cidr':'10.0.0.0/24'}]}"},
		{SVC, "ns1/a", LBP(80), "{'annotations':{'lbipam.cilium.io/sharing-key':'k'}}"},
		{SVC, "ns2/b", LBP(443), "{'annotations':{'lbipam.cilium.io/sharing-key':'k'}}"},
		{SVC, "ns3/c", LBP(81), "{'annotations':{'lbipam.cilium.io/sharing-key':'k','lbipam.cilium.io/sharing-cross-namespace':'ns4'}}"},
		{SVC, "ns4/d", LBP(82), "{'annotations':{'lbipam.cilium.io/sharing-key':'k','lbipam.cilium.io/sharing-cross-namespace':'ns9, ns3'}}"},
		{SVC, "ns5/e", LBP(83), "{'annotations':{'lbipam.cilium.io/sharing-key':'k','lbipam.cilium.io/sharing-cross-namespace':'*'}}"},
		{SVC, "ns6/f", LBP(84), "{'annotations':{'lbipam.cilium.io/sharing-key':'k'}}"},
		{SVC, "ns7/g", LBP(1), "{'annotations':{'lbipam.cilium.io/sharing-key':'m','lbipam.cilium.io/sharing-cross-namespace':'*'}}"},
		{SVC, "ns8/h", LBP(2), "{'annotations':{'lbipam.cilium.io/sharing-key':'m','lbipam.cilium.io/sharing-cross-namespace':'*'}}"},
		{SYNC},
		{IPS, "ns1/a", "10.0.0.0"},
		{IPS, "ns2/b", "10.0.0.1"},
		{IPS, "ns3/c", "10.0.0.2"},
		{IPS, "ns4/d", "10.0.0.2"},
		{IPS, "ns5/e", "10.0.0.3"},
		{IPS, "ns6/f", "10.0.0.4"},
		{IPS, "ns7/g", "10.0.0.5"},
		{IPS, "ns8/h", "10.0.0.5"},
		{END}}},

	{"IPAM-18 restarts: history-dependent allocations come back the same", NULL, {
		{POOL, "blue", "{'blocks':[{'cidr':'10.0.0.0/24'},{'cidr':'fd00::/120'}]}"},
		{SVC, "default/a"}, {SVC, "default/b"}, {SVC, "default/c"},
		{SVC, "default/x", "{'type':'LoadBalancer','ipFamilyPolicy':'PreferDualStack'}"},
		{SYNC},
		{IPS, "default/a", "10.0.0.0"},
		{IPS, "default/b", "10.0.0.1"},
		{IPS, "default/c", "10.0.0.2"},
		{SVCDEL, "default/a"},
		{SVC, "default/d"},
		{IPS, "default/d", "10.0.0.0"},
		{SVC, "default/aa"}, /* sorts before b: a fresh pass in name order would give it .1 */
		{IPS, "default/aa", "10.0.0.4"},
		{RESTART, ""},
		{IPS, "default/aa", "10.0.0.4"},
		{IPS, "default/b", "10.0.0.1"},
		{IPS, "default/c", "10.0.0.2"},
		{IPS, "default/d", "10.0.0.0"},
		{IPS, "default/x", "10.0.0.3,fd00::"},
		{WRITES, "0"},
		{RESTART, "nostatus"}, /* status lost: the state file has it */
		{IPS, "default/aa", "10.0.0.4"},
		{IPS, "default/d", "10.0.0.0"},
		{IPS, "default/x", "10.0.0.3,fd00::"},
		{RESTART, "nostate"}, /* state file lost: status has it */
		{IPS, "default/aa", "10.0.0.4"},
		{IPS, "default/d", "10.0.0.0"},
		{WRITES, "0"},
		{RESTART, "nothing"}, /* both lost: recomputed, in name order */
		{IPS, "default/aa", "10.0.0.0"},
		{IPS, "default/b", "10.0.0.1"},
		{END}}},

	{"IPAM-18 pool edits: shrink moves only the outsiders, grow moves nobody (#40358)", NULL, {
		{POOL, "blue", "{'blocks':[{'cidr':'10.0.0.0/24'}]}"},
		{SVC, "default/a"}, {SVC, "default/b"}, {SVC, "default/c"}, {SVC, "default/d"},
		{SYNC},
		{IPS, "default/d", "10.0.0.3"},
		{POOL, "blue", "{'blocks':[{'cidr':'10.0.0.0/23'}]}"}, /* upstream drops every allocation here */
		{IPS, "default/a", "10.0.0.0"},
		{IPS, "default/d", "10.0.0.3"},
		{NOLOG, "addresses"},
		{POOL, "blue", "{'blocks':[{'cidr':'10.0.0.0/23'},{'cidr':'fd00::/120'}]}"},
		{IPS, "default/a", "10.0.0.0"},
		{POOL, "blue", "{'blocks':[{'start':'10.0.0.2','stop':'10.0.0.100'}]}"},
		{IPS, "default/a", "10.0.0.4"},
		{IPS, "default/b", "10.0.0.5"},
		{IPS, "default/c", "10.0.0.2"},
		{IPS, "default/d", "10.0.0.3"},
		{LOG, "default/a: addresses 10.0.0.0 -> 10.0.0.4"},
		/* Split into two pools: the addresses re-home, nobody moves. */
		{POOL, "upper", "{'blocks':[{'start':'10.0.0.51','stop':'10.0.0.100'}]}"},
		{PST, "upper", "50/0/50", "True"},
		{POOL, "blue", "{'blocks':[{'start':'10.0.0.2','stop':'10.0.0.50'}]}"},
		{PST, "upper", "50/0/50", "False"},
		{SVC, "default/e", LB, "{'annotations':{'lbipam.cilium.io/ips':'10.0.0.60'}}"},
		{IPS, "default/e", "10.0.0.60"},
		{POOL, "blue", "{'blocks':[{'start':'10.0.0.2','stop':'10.0.0.49'}]}"},
		{IPS, "default/e", "10.0.0.60"},
		{PST, "upper", "50/1/49", "False"},
		{IPS, "default/a", "10.0.0.4"},
		{END}}},

	{"Malformed pools: condition, log line naming them, nothing else disturbed", NULL, {
		{POOL, "bad1", "{'blocks':[{'cidr':'10.9.0.0/33'},{'cidr':'10.9.1.0/24'}],'serviceSelector':{'matchLabels':{'p':'bad1'}}}"},
		{POOL, "bad2", "{'blocks':[{'start':'10.8.0.9','stop':'10.8.0.1'}]}"},
		{POOL, "bad3", "{'blocks':[{'start':'10.7.0.1','stop':'fd00::1'}]}"},
		{POOL, "bad4", "{'blocks':[{'cidr':'10.6.0.0/24'}],'serviceSelector':{'matchLabel':{'a':'b'}}}"},
		{POOL, "good", "{'blocks':[{'cidr':'10.0.0.0/24'}]}"},
		{SVC, "default/a"},
		{SVC, "default/b", LB, "{'labels':{'p':'bad1'},'annotations':{'lbipam.cilium.io/ips':'10.9.1.5'}}"},
		{SYNC},
		{LOG, "pool bad1: block 1: bad CIDR '10.9.0.0/33'; using the other blocks"},
		{LOG, "pool bad2: block 1: start '10.8.0.9' is after stop '10.8.0.1'"},
		{LOG, "pool bad3: block 1: start '10.7.0.1' and stop 'fd00::1' are of different families"},
		{LOG, "pool bad4: serviceSelector has an unknown field"},
		{PVALID, "bad1", "False", "spec_partly_invalid", "block 1: bad CIDR '10.9.0.0/33'"},
		{PVALID, "bad2", "False", "spec_partly_invalid", "start '10.8.0.9' is after stop"},
		{PVALID, "bad3", "False", "spec_partly_invalid", "different families"},
		{PVALID, "bad4", "False", "spec_partly_invalid", "selects no service"},
		{PVALID, "good", "True", "valid"},
		{IPS, "default/a", "10.0.0.0"},
		{IPS, "default/b", "10.9.1.5"},
		{HEALTH, "degraded", "pool bad1: block 1: bad CIDR"},
		/* A typo in a good pool: the previous spec stays; nobody moves. */
		{POOL, "good", "{'blocks':[{'cidr':'10.0.0.0/33'}]}"},
		{LOG, "pool good: block 1: bad CIDR '10.0.0.0/33'; keeping the previous spec"},
		{PVALID, "good", "False", "spec_rejected", "the previous spec stays in effect"},
		{IPS, "default/a", "10.0.0.0"},
		{SVC, "default/c"},
		{IPS, "default/c", "10.0.0.1"},
		{POOL, "good", "{'blocks':[{'cidr':'10.0.0.0/24'}]}"},
		{PVALID, "good", "True", "valid"},
		{LOG, "pool good: spec fixed"},
		{POOL, "bad1", "{'blocks':[{'cidr':'10.9.1.0/24'}],'serviceSelector':{'matchLabels':{'p':'bad1'}}}"},
		{IPS, "default/b", "10.9.1.5"},
		{END}}},

	{"Reader with reader_status: its own store gets the status (per-agent status, statedir)", conf_reader_status, {
		{POOL, "blue", "{'blocks':[{'cidr':'10.0.0.0/24'}]}"},
		{SVC, "default/a"},
		{SYNC},
		{IPS, "default/a", "10.0.0.0"},
		{COND, "default/a", "True", "satisfied"},
		{PST, "blue", "256/1/255", "False"},
		{RESTART, ""},
		{IPS, "default/a", "10.0.0.0"},
		{WRITES, "0"},
		{END}}},

	{"Reader: computes the same, writes nothing", conf_reader, {
		{POOL, "blue", "{'blocks':[{'cidr':'10.0.0.0/24'}]}"},
		{SVC, "default/a"}, {SVC, "default/b"},
		{SYNC},
		{IPS, "default/a", "10.0.0.0"},
		{IPS, "default/b", "10.0.0.1"},
		{NOST, "default/a"},
		{WRITES, "0"},
		{RESTART, ""}, /* its own state file keeps it stable */
		{IPS, "default/b", "10.0.0.1"},
		{END}}},
};

static void test_scenario(void **state)
{
	play(*state);
}

/* --- what the table cannot say --------------------------------------------------------------- */

static void put_simple(struct lbt *t, const char *kind, const char *name, const char *spec, const char *meta)
{
	struct step s = {kind[0] == 'S' ? SVC : POOL, name, spec, meta, NULL};

	if (s.op == SVC)
		put_svc(t, &s);
	else
		put_pool(t, &s);
}

/*
 * One writer, two readers. The writer sees a history (a, b, c; a goes; d
 * comes and takes a's address). A reader started later sees only the
 * result: following the writer's state file it agrees; on its own it
 * would decide in name order and differ.
 */
static void test_writer_readers(void **state)
{
	static const char *const wconf[] = {"save_delay_ms", "0", NULL};
	struct lbt *w = lbt_new(wconf), *r1, *r2;
	char follow[160];
	const char *r1conf[] = {"writer", "false", "follow", follow, "follow_interval_ms", "100", NULL};
	char *ips;
	json_t *resp = NULL;
	char *err = NULL;

	put_simple(w, "Pool", "blue", "{'blocks':[{'cidr':'10.0.0.0/24'}]}", NULL);
	put_simple(w, "Svc", "default/a", NULL, NULL);
	put_simple(w, "Svc", "default/b", NULL, NULL);
	put_simple(w, "Svc", "default/c", NULL, NULL);
	lbt_sync(w);
	lbt_delete(w, "Service", "default", "a");
	put_simple(w, "Svc", "default/d", NULL, NULL);
	lbt_run(w);
	ips = lbt_status_ips(w, "default", "d");
	assert_string_equal(ips, "10.0.0.0");
	free(ips);
	snprintf(follow, sizeof(follow), "%s/lbipam-state.json", w->run);

	r1 = lbt_new(r1conf);
	r2 = lbt_new(conf_reader);
	for (struct lbt **r = (struct lbt *[]){r1, r2, NULL}; *r; r++) {
		/* The readers' state dirs hold the same manifests, without any status. */
		put_simple(*r, "Pool", "blue", "{'blocks':[{'cidr':'10.0.0.0/24'}]}", NULL);
		put_simple(*r, "Svc", "default/b", NULL, NULL);
		put_simple(*r, "Svc", "default/c", NULL, NULL);
		put_simple(*r, "Svc", "default/d", NULL, NULL);
		lbt_sync(*r);
	}
	static const char *const names[] = {"b", "c", "d"}, *const want[] = {"10.0.0.1", "10.0.0.2", "10.0.0.0"},
				 *const alone[] = {"10.0.0.0", "10.0.0.1", "10.0.0.2"};
	for (size_t i = 0; i < 3; i++) {
		ips = lbt_view_ips(r1, "default", names[i]);
		assert_string_equal(ips, want[i]);
		free(ips);
		ips = lbt_view_ips(r2, "default", names[i]);
		assert_string_equal(ips, alone[i]);
		free(ips);
		assert_null(axn_testhost_status(r1->th, "Service", "default", names[i]));
	}
	assert_non_null(axn_testhost_log_find(r1->th, "following the decisions of testnode"));

	/* Live: the writer takes a new service; the follower shows the writer's choice. */
	put_simple(w, "Svc", "default/e", NULL, NULL);
	lbt_run(w);
	put_simple(r1, "Svc", "default/e", NULL, NULL);
	lbt_run(r1);
	ips = lbt_view_ips(r1, "default", "e");
	assert_string_equal(ips, "10.0.0.3");
	free(ips);

	/* The writer decides otherwise than the reader would (b leaves and comes back). */
	lbt_delete(w, "Service", "default", "b");
	put_simple(w, "Svc", "default/f", NULL, NULL);
	lbt_run(w);
	put_simple(w, "Svc", "default/b", NULL, NULL);
	lbt_run(w);
	ips = lbt_status_ips(w, "default", "b");
	assert_string_equal(ips, "10.0.0.4");
	free(ips);
	put_simple(r1, "Svc", "default/f", NULL, NULL); /* r1 never saw b go */
	lbt_run(r1);
	ips = lbt_view_ips(r1, "default", "f");
	assert_string_equal(ips, "10.0.0.1");
	free(ips);
	ips = lbt_view_ips(r1, "default", "b");
	assert_string_equal(ips, "10.0.0.4");
	free(ips);
	assert_int_equal(lbt_metric(r1, "status_writes"), 0);

	/* The services view, as the CLI shows it with -o json. */
	assert_int_equal(axn_testhost_api_call(r1->th, "lbipam/services", NULL, &resp, &err), 0);
	assert_string_equal(json_string_value(json_object_get(resp, "role")), "reader");
	assert_int_equal(json_array_size(json_object_get(resp, "items")), 5);
	json_decref(resp);
	lbt_free(r2);
	lbt_free(r1);
	lbt_free(w);
}

/* A reader fed status written by the writer (as the k8s source would) shows the writer's decision. */
static void test_reader_follows_status(void **state)
{
	struct lbt *t = lbt_new(conf_reader);
	char *ips;

	put_simple(t, "Pool", "blue", "{'blocks':[{'cidr':'10.0.0.0/24'}]}", NULL);
	lbt_put(t, lbt_json("{'apiVersion':'v1','kind':'Service','metadata':{'name':'a','namespace':'default'},"
			    "'spec':{'type':'LoadBalancer'},'status':{'loadBalancer':{'ingress':[{'ip':'10.0.0.7'}]}}}"));
	put_simple(t, "Svc", "default/b", NULL, NULL);
	lbt_sync(t);
	ips = lbt_view_ips(t, "default", "a");
	assert_string_equal(ips, "10.0.0.7");
	free(ips);
	/* Later the writer moves a (status changes under the reader): the reader follows. */
	lbt_put(t, lbt_json("{'apiVersion':'v1','kind':'Service','metadata':{'name':'a','namespace':'default'},"
			    "'spec':{'type':'LoadBalancer'},'status':{'loadBalancer':{'ingress':[{'ip':'10.0.0.0'}]}}}"));
	lbt_run(t);
	ips = lbt_view_ips(t, "default", "a");
	assert_string_equal(ips, "10.0.0.0");
	free(ips);
	ips = lbt_view_ips(t, "default", "b");
	assert_string_equal(ips, "10.0.0.1");
	free(ips);
	lbt_free(t);
}

static void test_leader_node(void **state)
{
	static const char *const conf[] = {"leader_node", "node1", NULL};
	struct lbt *t = lbt_new(conf);

	lbt_start(t);
	assert_false(is_writer(t)); /* testnode is not node1 */
	{
		struct axn_testhost *th = t->th;

		t->th = NULL;
		assert_int_equal(axn_testhost_free(th), 0);
	}
	t->node = "node1";
	lbt_boot(t);
	assert_true(is_writer(t));
	lbt_free(t);
}

static void test_bad_options(void **state)
{
	static const char *const conf[] = {"default_ipam", "magic", NULL};
	struct axn_testhost *th = axn_testhost_new(&axn_module_lbipam_desc, conf);

	assert_non_null(th);
	assert_int_equal(axn_testhost_init(th), -EINVAL);
	assert_non_null(axn_testhost_log_find(th, "default_ipam: 'magic'"));
	assert_int_equal(axn_testhost_free(th), 0);
}

/* The pools view with -o json, and a status write that would loop if it were not idempotent. */
static void test_views(void **state)
{
	struct lbt *t = lbt_new(NULL);
	json_t *resp = NULL, *it;
	char *err = NULL;

	put_simple(t, "Pool", "blue", "{'blocks':[{'cidr':'10.0.0.0/30'},{'cidr':'fd00::/64'}]}", NULL);
	put_simple(t, "Svc", "default/a", NULL, "{'annotations':{'lbipam.cilium.io/sharing-key':'k'}}");
	lbt_sync(t);
	assert_int_equal(axn_testhost_api_call(t->th, "lbipam/pools", NULL, &resp, &err), 0);
	it = json_array_get(json_object_get(resp, "items"), 0);
	assert_string_equal(json_string_value(json_object_get(it, "name")), "blue");
	assert_int_equal(json_integer_value(json_object_get(it, "ips_used")), 1);
	assert_string_equal(json_string_value(json_object_get(it, "ips_total")), "18446744073709551620");
	assert_int_equal(json_integer_value(json_object_get(it, "services")), 1);
	assert_true(json_is_false(json_object_get(it, "conflicting")));
	assert_string_equal(json_string_value(json_array_get(json_object_get(it, "blocks"), 1)), "fd00::/64");
	json_decref(resp);
	resp = lbt_view_svc(t, "default", "a");
	it = json_array_get(json_object_get(resp, "items"), 0);
	assert_string_equal(json_string_value(json_object_get(it, "sharing_key")), "k");
	assert_string_equal(json_string_value(json_array_get(json_object_get(it, "pools"), 0)), "blue");
	assert_true(json_is_true(json_object_get(it, "satisfied")));
	json_decref(resp);
	/* Objects modified in ways that do not matter (a label nobody selects) write nothing. */
	{
		double before = lbt_metric(t, "status_writes");
		const char *k;
		json_t *doc;

		json_object_foreach(t->docs, k, doc) {
			json_t *md = json_object_get(doc, "metadata");

			json_object_set_new(md, "labels", json_pack("{s:s}", "touched", "yes"));
			assert_int_equal(axn_testhost_inject(t->th, AXN_EV_MODIFIED, json_deep_copy(doc)), 0);
		}
		lbt_run(t);
		assert_true(lbt_metric(t, "status_writes") == before);
	}
	lbt_free(t);
}

int main(void)
{
	size_t n = sizeof(scenarios) / sizeof(scenarios[0]);
	struct CMUnitTest *tests = calloc(n + 6, sizeof(*tests));
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		tests[k++] = (struct CMUnitTest){scenarios[i].name, test_scenario, NULL, lbt_teardown,
						 (void *)&scenarios[i]};
	tests[k++] = (struct CMUnitTest)cmocka_unit_test_teardown(test_writer_readers, lbt_teardown);
	tests[k++] = (struct CMUnitTest)cmocka_unit_test_teardown(test_reader_follows_status, lbt_teardown);
	tests[k++] = (struct CMUnitTest)cmocka_unit_test_teardown(test_leader_node, lbt_teardown);
	tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_bad_options);
	tests[k++] = (struct CMUnitTest)cmocka_unit_test_teardown(test_views, lbt_teardown);
	int r = _cmocka_run_group_tests("lbipam", tests, k, NULL, NULL);

	free(tests);
	return r;
}
