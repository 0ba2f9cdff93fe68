// SPDX-License-Identifier: Apache-2.0
/*
 * lbipam_module.c - the lbipam module: LoadBalancer IP allocation from
 * CiliumLoadBalancerIPPools. Descriptor and lifecycle glue only; README.md
 * says what it does, lbipam.h where each part lives.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lbipam.h"

static int lbipam_init(struct axn_mod *self, const void *conf)
{
	const struct lbipam_conf *c = conf;
	struct lbipam *l;
	const char *d = c->default_ipam ? c->default_ipam : "lbipam";

	if (strcmp(d, "lbipam") && strcmp(d, "nodeipam") && strcmp(d, "none")) {
		axn_err(self, "default_ipam: '%s' is not lbipam, nodeipam or none", d);
		return -EINVAL;
	}
	if (!(l = calloc(1, sizeof(*l))))
		return -ENOMEM;
	l->self = self;
	l->conf = c;
	/* Class-less services are ours unless they go to another IPAM (upstream's defaultLBServiceIPAM). */
	l->ropts.classless = !c->only_with_class && !strcmp(d, "lbipam");
	l->ropts.classes = c->classes;
	l->ropts.ipv4 = c->ipv4;
	l->ropts.ipv6 = c->ipv6;
	self->state = l;
	return 0;
}

static int lbipam_stop(struct axn_mod *self)
{
	struct lbipam *l = self->state;
	const struct axn_host *h = self->host;

	/* Decisions of the last moments must survive the restart that probably follows. */
	if (l->first_done)
		lbipam_state_save(l);
	lbipam_ctl_stop(l);
	h->handle_free(self, l->api_pools);
	h->handle_free(self, l->api_svcs);
	h->handle_free(self, l->save_timer);
	h->handle_free(self, l->follow_timer);
	h->handle_free(self, l->m_services);
	h->handle_free(self, l->m_unsat);
	h->handle_free(self, l->m_writes);
	h->handle_free(self, l->m_reconciles);
	h->handle_free(self, l->m_pools);
	h->handle_free(self, l->m_conflicts);
	l->api_pools = l->api_svcs = l->save_timer = l->follow_timer = NULL;
	l->m_services = l->m_unsat = l->m_writes = l->m_reconciles = l->m_pools = l->m_conflicts = NULL;
	return 0;
}

/* Where this agent keeps its decisions: "" = <rundir>/lbipam-state.json, "none" = nowhere. */
static int state_path(struct lbipam *l)
{
	const char *opt = l->conf->state_file ? l->conf->state_file : "";
	const char *run = l->self->host->agent_info(l->self, "rundir");

	if (!strcmp(opt, "none"))
		return 0;
	if (*opt)
		return (l->state_path = strdup(opt)) ? 0 : -ENOMEM;
	if (!run) {
		axn_info(l->self, "no rundir: decisions are not kept across restarts beyond status");
		return 0;
	}
	return asprintf(&l->state_path, "%s/lbipam-state.json", run) < 0 ? (l->state_path = NULL, -ENOMEM) : 0;
}

static int lbipam_start(struct axn_mod *self)
{
	struct lbipam *l = self->state;
	const struct lbipam_conf *c = l->conf;
	const struct axn_host *h = self->host;
	const char *node = h->agent_info(self, "node_name");
	const char *step;
	char err[512];
	int r;

	l->writer = c->leader_node && *c->leader_node ? node && !strcmp(node, c->leader_node) : c->writer;
	l->publish = l->writer || c->reader_status;
	step = "state file";
	if ((r = state_path(l)) < 0)
		goto fail;
	if (l->state_path && lbipam_state_read(l->state_path, &l->saved, err, sizeof(err)) < 0)
		axn_warn(self, "state file: %s; starting from status alone", err); /* not fatal */
	if (c->follow && *c->follow) {
		if (l->writer)
			axn_warn(self, "follow is for readers; the writer ignores it");
		else if (!(l->follow_path = strdup(c->follow)))
			goto nomem;
	}
	step = "metrics";
	if ((r = h->metric_new(self, "services", AXN_METRIC_GAUGE, "LoadBalancer services LB IPAM serves",
			       &l->m_services)) < 0 ||
	    (r = h->metric_new(self, "unsatisfied", AXN_METRIC_GAUGE,
			       "services whose request is not satisfied", &l->m_unsat)) < 0 ||
	    (r = h->metric_new(self, "pools", AXN_METRIC_GAUGE, "CiliumLoadBalancerIPPools", &l->m_pools)) < 0 ||
	    (r = h->metric_new(self, "conflicting_pools", AXN_METRIC_GAUGE, "pools that overlap an older one",
			       &l->m_conflicts)) < 0 ||
	    (r = h->metric_new(self, "status_writes", AXN_METRIC_COUNTER, "status documents written",
			       &l->m_writes)) < 0 ||
	    (r = h->metric_new(self, "reconciles", AXN_METRIC_COUNTER, "full decision passes",
			       &l->m_reconciles)) < 0)
		goto fail;
	step = "api";
	if ((r = h->api_register(self, "pools", lbipam_api_pools, l, &l->api_pools)) < 0 ||
	    (r = h->api_register(self, "services", lbipam_api_services, l, &l->api_svcs)) < 0)
		goto fail;
	step = "follow";
	if ((r = lbipam_follow_start(l)) < 0)
		goto fail;
	step = "store_watch";
	if ((r = lbipam_ctl_start(l)) < 0)
		goto fail;
	axn_info(self, "%s%s%s; state file %s%s%s",
		 l->writer ? "writer" : l->publish ? "reader (status in its own store)" : "reader (writes no status)",
		 l->follow_path ? ", following " : "", l->follow_path ? l->follow_path : "",
		 l->state_path ? l->state_path : "none", l->saved ? " (read)" : "",
		 l->ropts.classless ? "" : "; class-less services are not ours");
	return 0;
nomem:
	r = -ENOMEM;
fail:
	axn_err(self, "start: %s failed: %s", step, strerror(-r));
	lbipam_stop(self);
	return r;
}

static void lbipam_fini(struct axn_mod *self)
{
	struct lbipam *l = self->state;

	if (!l)
		return;
	lbipam_ctl_free(l);
	json_decref(l->saved);
	json_decref(l->follow);
	free(l->state_path);
	free(l->follow_path);
	free(l->health);
	free(l);
	self->state = NULL;
}

static const struct axn_option lbipam_options[] = {
	{"writer", AXN_OPT_BOOL, 0, offsetof(struct lbipam_conf, writer), "true", 0, 0,
	 "this agent writes status (one writer per cluster; the others compute the same and read)"},
	{"reader_status", AXN_OPT_BOOL, 0, offsetof(struct lbipam_conf, reader_status), "false", 0, 0,
	 "a reader writes what it computed into its own store (per-agent status: statedir), never with k8s"},
	{"leader_node", AXN_OPT_STRING, 0, offsetof(struct lbipam_conf, leader_node), "", 0, 0,
	 "if set, the agent whose node_name this is writes, whatever `writer` says"},
	{"only_with_class", AXN_OPT_BOOL, 0, offsetof(struct lbipam_conf, only_with_class), "false", 0, 0,
	 "serve only services with a loadBalancerClass from `classes`"},
	{"default_ipam", AXN_OPT_STRING, 0, offsetof(struct lbipam_conf, default_ipam), "lbipam", 0, 0,
	 "who serves class-less services: lbipam, nodeipam or none"},
	{"classes", AXN_OPT_STRLIST, 0, offsetof(struct lbipam_conf, classes),
	 "io.cilium/bgp-control-plane,io.cilium/l2-announcer", 0, 0,
	 "loadBalancerClass values served (others are ignored entirely)"},
	{"ipv4", AXN_OPT_BOOL, 0, offsetof(struct lbipam_conf, ipv4), "true", 0, 0,
	 "IPv4 is enabled in the cluster (ipFamilyPolicy)"},
	{"ipv6", AXN_OPT_BOOL, 0, offsetof(struct lbipam_conf, ipv6), "true", 0, 0,
	 "IPv6 is enabled in the cluster (ipFamilyPolicy)"},
	{"state_file", AXN_OPT_STRING, 0, offsetof(struct lbipam_conf, state_file), "", 0, 0,
	 "this agent's decisions; \"\" = <rundir>/lbipam-state.json, \"none\" = not kept"},
	{"follow", AXN_OPT_STRING, 0, offsetof(struct lbipam_conf, follow), "", 0, 0,
	 "readers: the writer's state file, whose decisions are adopted first"},
	{"follow_interval_ms", AXN_OPT_INT, 0, offsetof(struct lbipam_conf, follow_interval_ms), "1000",
	 20, 3600000, "how often a reader looks at the writer's state file"},
	{"save_delay_ms", AXN_OPT_INT, 0, offsetof(struct lbipam_conf, save_delay_ms), "100", 0, 60000,
	 "the state file is written this long after a change"},
	AXN_OPTIONS_END,
};

static const char *const lbipam_wants[] = {"mod:statedir", "mod:k8s", NULL};
static const char *const lbipam_requires[] = {"store:Service", "store:CiliumLoadBalancerIPPool",
					      NULL};

AXN_MODULE_DEFINE(lbipam, .version = "0.1.0",
		  .description = "LoadBalancer IP allocation from CiliumLoadBalancerIPPools",
		  .requires = lbipam_requires, .wants = lbipam_wants, .options = lbipam_options,
		  .conf_size = sizeof(struct lbipam_conf), .init = lbipam_init,
		  .start = lbipam_start, .stop = lbipam_stop, .fini = lbipam_fini)
