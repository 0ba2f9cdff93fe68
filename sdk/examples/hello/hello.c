// SPDX-License-Identifier: Apache-2.0
/*
 * hello: the smallest useful Axoneme module, built out of tree against the
 * installed SDK (see Makefile). It shows every part of the contract: options,
 * a pinned map, a periodic timer, a store subscription, an API endpoint, a
 * metric, health and in-place reconfiguration.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <axoneme/axoneme.h>

struct hello_conf {
	const char *greeting;
	int64_t interval_ms;
};

struct hello {
	const struct hello_conf *conf;
	int map_fd;
	uint64_t ticks;
	size_t services;
	struct axn_handle *timer, *sub, *ep, *metric;
};

static void tick(struct axn_mod *self, void *arg)
{
	struct hello *h = self->state;
	uint32_t key = 0;

	h->ticks++;
	/* The count lives in a pinned map, so it survives an agent restart. */
	if (bpf_map_update_elem(h->map_fd, &key, &h->ticks, BPF_ANY) < 0)
		self->host->set_state(self, AXN_STATE_DEGRADED, "cannot update hello_ticks");
	self->host->metric_add(h->metric, 1);
}

static void on_service(struct axn_mod *self, uint32_t event, struct axn_obj *obj, void *arg)
{
	struct hello *h = self->state;

	if (event == AXN_EV_ADDED)
		h->services++;
	else if (event == AXN_EV_DELETED && h->services)
		h->services--;
	else if (event == AXN_EV_SYNCED)
		axn_info(self, "store synced: %zu service(s)", h->services);
}

static int greet(struct axn_mod *self, const json_t *req, json_t **ret_resp, char **ret_err,
		 void *arg)
{
	struct hello *h = self->state;
	const char *node = self->host->agent_info(self, "node_name");
	json_t *resp;

	resp = json_pack("{s:s++, s:I, s:I}", "greeting", h->conf->greeting, " from ",
			 node ? node : "?", "ticks", (json_int_t)h->ticks, "services",
			 (json_int_t)h->services);
	if (!resp)
		return -ENOMEM;
	*ret_resp = resp;
	return 0;
}

static int hello_init(struct axn_mod *self, const void *conf)
{
	struct hello *h = calloc(1, sizeof(*h));

	if (!h)
		return -ENOMEM;
	h->conf = conf;
	h->map_fd = -1;
	self->state = h;
	return 0;
}

static int hello_start(struct axn_mod *self)
{
	static const struct axn_map_spec spec = {
		.size = sizeof(spec),
		.type = BPF_MAP_TYPE_ARRAY,
		.key_size = sizeof(uint32_t),
		.value_size = sizeof(uint64_t),
		.max_entries = 1,
		.layout = 1,
	};
	const struct axn_host *host = self->host;
	struct hello *h = self->state;
	uint32_t key = 0;
	int r;

	r = host->map_open(self, "hello_ticks", &spec, &h->map_fd);
	if (r < 0)
		return r;
	/* Carry on counting from what the pinned map remembers. */
	(void)bpf_map_lookup_elem(h->map_fd, &key, &h->ticks);

	r = host->timer_add(self, (uint64_t)h->conf->interval_ms, 1, tick, NULL, &h->timer);
	if (r < 0)
		return r;
	r = host->store_watch(self, "Service", on_service, NULL, &h->sub);
	if (r < 0)
		return r;
	r = host->api_register(self, "greet", greet, NULL, &h->ep);
	if (r < 0)
		return r;
	r = host->metric_new(self, "ticks_total", AXN_METRIC_COUNTER, "Timer ticks since start.",
			     &h->metric);
	if (r < 0)
		return r;
	axn_info(self, "%s (ticks so far: %llu)", h->conf->greeting, (unsigned long long)h->ticks);
	return 0;
}

static int hello_reconfigure(struct axn_mod *self, const void *new_conf)
{
	struct hello *h = self->state;
	const struct hello_conf *nc = new_conf;

	/* A new interval needs a new timer; do that by restarting instead. */
	if (nc->interval_ms != h->conf->interval_ms)
		return -EOPNOTSUPP;
	h->conf = nc;
	return 0;
}

static int hello_stop(struct axn_mod *self)
{
	struct hello *h = self->state;

	self->host->handle_free(self, h->timer);
	h->timer = NULL;
	return 0;
}

static void hello_fini(struct axn_mod *self)
{
	free(self->state);
}

static const struct axn_option hello_options[] = {
	{"greeting", AXN_OPT_STRING, 0, offsetof(struct hello_conf, greeting), "hello", 0, 0,
	 "what `axoneme hello greet` says"},
	{"interval_ms", AXN_OPT_INT, 0, offsetof(struct hello_conf, interval_ms), "1000", 10,
	 3600000, "tick period"},
	AXN_OPTIONS_END,
};

static const char *const hello_wants[] = {"mod:statedir", NULL};

AXN_MODULE_DEFINE(hello, .version = "1.0.0", .description = "example module: greets and counts",
		  .wants = hello_wants, .options = hello_options,
		  .conf_size = sizeof(struct hello_conf), .init = hello_init,
		  .start = hello_start, .reconfigure = hello_reconfigure, .stop = hello_stop,
		  .fini = hello_fini)
