// SPDX-License-Identifier: Apache-2.0
/*
 * lb_module.c - the lb module: kube-proxy replacement at the socket layer.
 * Descriptor, options and lifecycle glue only; README.md says what it does,
 * lb.h how the files divide the work.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <linux/bpf.h>

#include "lb.h"
#include "lb_shared.h"

static int lb_init(struct axn_mod *self, const void *conf)
{
	const struct lb_conf *c = conf;
	struct lb *lb;

	if (!lb_alg_parse(c->algorithm)) {
		axn_err(self, "algorithm '%s' is not random or maglev", c->algorithm);
		return -EINVAL;
	}
	lb = calloc(1, sizeof(*lb));
	if (!lb)
		return -ENOMEM;
	lb->self = self;
	lb->conf = c;
	for (int i = 0; i < LBM_N; i++)
		lb->fd[i] = -1;
	self->state = lb;
	return 0;
}

static void lb_release(struct lb *lb)
{
	struct axn_mod *self = lb->self;
	const struct axn_host *h = self->host;
	struct axn_handle **hs[] = {&lb->w_svc, &lb->w_sl, &lb->api_services, &lb->api_bpf,
				    &lb->m_services, &lb->m_frontends, &lb->m_backends, &lb->m_full,
				    &lb->m_refused, &lb->m_writes, &lb->m_flush_ms, &lb->m_retries,
				    &lb->m_udp_closed, &lb->retry_t, &lb->grace_t};

	for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++) {
		h->handle_free(self, *hs[i]);
		*hs[i] = NULL;
	}
	/* Forgetting a hook leaves the program attached: traffic keeps flowing. */
	for (size_t i = 0; i < sizeof(lb->hooks) / sizeof(lb->hooks[0]); i++) {
		h->handle_free(self, lb->hooks[i]);
		lb->hooks[i] = NULL;
	}
	lb_sync_free(lb);
	lb_reaper_free(lb->reaper);
	lb->reaper = NULL;
	/* Map fds belong to the registry's handles, reclaimed by the core. */
	for (int i = 0; i < LBM_N; i++)
		lb->fd[i] = -1;
	lb->synced = 0;
	lb->first_event_us = 0;
	lb->live = lb->flush_pending = lb->prune_pending = false;
	lb->write_err = 0;
	lb->retry_ms = 0;
	lb->n_retries = 0;
}

static int lb_stop(struct axn_mod *self)
{
	lb_release(self->state);
	return 0;
}

static int open_maps(struct lb *lb)
{
	const struct lb_conf *c = lb->conf;
	struct axn_mod *self = lb->self;
	int r;

	lb->max[LBM_SVC4] = lb->max[LBM_SVC6] = (uint32_t)c->services_max;
	lb->max[LBM_SLOTS] = (uint32_t)c->slots_max;
	/* Ids index these arrays and id 0 is never used. */
	lb->max[LBM_BE4] = lb->max[LBM_BE6] = (uint32_t)c->backends_max + 1;
	lb->max[LBM_RN4] = lb->max[LBM_RN6] = (uint32_t)c->revnat_max + 1;
	lb->max[LBM_SK4] = lb->max[LBM_SK6] = (uint32_t)c->sock_revnat_max;
	lb->max[LBM_AFF] = (uint32_t)c->affinity_max;
	for (int i = 0; i < LBM_N; i++) {
		const struct lb_map_def *d = &lb_map_defs[i];
		struct axn_map_spec spec = {
			.size = sizeof(spec),
			.type = d->type,
			.key_size = d->key_size,
			.value_size = d->value_size,
			.max_entries = lb->max[i],
			.map_flags = d->map_flags,
			.layout = LB_MAP_LAYOUT,
			/* A new size needs new maps; the sync after start refills them. */
			.flags = AXN_MAPF_RECREATE,
		};

		r = self->host->map_open(self, d->name, &spec, &lb->fd[i]);
		if (r < 0) {
			axn_err(self, "map %s: open failed: %s", d->name, strerror(-r));
			return r;
		}
	}
	return 0;
}

static int lb_start(struct axn_mod *self)
{
	struct lb *lb = self->state;
	const struct lb_conf *c = lb->conf;
	int r;

	lb->tconf.node_name = self->host->agent_info(self, "node_name");
	lb->tconf.service_proxy_name = c->service_proxy_name;
	lb->tconf.default_algorithm = lb_alg_parse(c->algorithm);
	lb->tconf.algorithm_annotation = c->algorithm_annotation;
	lb->cgroup = c->cgroup && *c->cgroup ? c->cgroup : self->host->agent_info(self, "cgroup");

	if ((r = open_maps(lb)) < 0)
		goto fail;
	if (c->socket_lb) {
		if (!lb->cgroup) {
			axn_err(self, "socket LB: no cgroup (set lb.cgroup or agent.cgroup)");
			r = -EINVAL;
			goto fail;
		}
		if ((r = lb_sock_attach(lb)) < 0)
			goto fail;
		if (c->terminate_udp)
			lb_reap_open(lb);
	}
	if ((r = lb_sync_start(lb)) < 0 || (r = lb_api_start(lb)) < 0)
		goto fail;
	return 0;
fail:
	/* Each step logged its own failure. */
	lb_release(lb);
	return r;
}

static void lb_fini(struct axn_mod *self)
{
	free(self->state);
	self->state = NULL;
}

#define LB_MAX_OPT(key, field, def, help)                                                         \
	{key, AXN_OPT_INT, 0, offsetof(struct lb_conf, field), def, 16, 16777216, help}

static const struct axn_option lb_options[] = {
	{"cgroup", AXN_OPT_STRING, 0, offsetof(struct lb_conf, cgroup), "", 0, 0,
	 "cgroup v2 directory for the socket LB programs; \"\" = agent.cgroup"},
	{"socket_lb", AXN_OPT_BOOL, 0, offsetof(struct lb_conf, socket_lb), "true", 0, 0,
	 "attach the socket LB programs (false: only program the maps)"},
	{"terminate_udp", AXN_OPT_BOOL, 0, offsetof(struct lb_conf, terminate_udp), "true", 0, 0,
	 "close connected UDP sockets whose backend was removed (needs Linux 6.5)"},
	{"algorithm", AXN_OPT_STRING, 0, offsetof(struct lb_conf, algorithm), "random", 0, 0,
	 "default backend selection: random | maglev (maglev: per-packet LB only)"},
	{"algorithm_annotation", AXN_OPT_BOOL, 0, offsetof(struct lb_conf, algorithm_annotation),
	 "true", 0, 0, "honour the service.cilium.io/lb-algorithm annotation"},
	{"service_proxy_name", AXN_OPT_STRING, 0, offsetof(struct lb_conf, service_proxy_name), "",
	 0, 0, "serve services whose service.kubernetes.io/service-proxy-name is this (\"\" = unlabelled)"},
	LB_MAX_OPT("services_max", services_max, "65536",
		   "frontends (entries of lb4_services and of lb6_services)"),
	LB_MAX_OPT("slots_max", slots_max, "262144",
		   "backend slots of all frontends (lb_slots; a frontend takes a power of two)"),
	LB_MAX_OPT("backends_max", backends_max, "65536", "backends per family (lb4_backends, lb6_backends)"),
	LB_MAX_OPT("revnat_max", revnat_max, "65536",
		   "frontends of both families together (rev_nat ids; lb4_revnat, lb6_revnat)"),
	LB_MAX_OPT("affinity_max", affinity_max, "65536", "entries of lb_affinity (LRU)"),
	LB_MAX_OPT("sock_revnat_max", sock_revnat_max, "262144",
		   "entries of lb4_sk_revnat and lb6_sk_revnat (LRU)"),
	AXN_OPTIONS_END,
};

static const char *const lb_requires[] = {"store:Service", "store:EndpointSlice", NULL};
static const char *const lb_provides[] = {"map:lb4_services", "map:lb6_services", "map:lb_slots",
					  "map:lb4_backends", "map:lb6_backends", NULL};

AXN_MODULE_DEFINE(lb, .version = "0.1.0",
		  .description = "service load balancing: socket LB (kube-proxy replacement, part 1)",
		  .provides = lb_provides, .requires = lb_requires, .options = lb_options,
		  .conf_size = sizeof(struct lb_conf), .init = lb_init, .start = lb_start,
		  .stop = lb_stop, .fini = lb_fini)
