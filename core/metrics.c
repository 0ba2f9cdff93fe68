// SPDX-License-Identifier: Apache-2.0
/*
 * Prometheus text exposition on agent.metrics ("host:port"): /metrics,
 * /healthz (the agent's loop answers) and /readyz (every module up and the
 * store synced). Module metrics are axoneme_<module>_<name>.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "core.h"

struct metric {
	struct axn_handle h;
	char *name, *help;
	uint32_t type;
	double value;
	struct metric *next;
};

struct metrics {
	struct agent *agent;
	struct evhttp *http;
	struct metric *head;
};

static struct metrics *M;

static void metric_destroy(struct axn_handle *h)
{
	struct metric *m = (struct metric *)h;

	for (struct metric **pp = &M->head; *pp; pp = &(*pp)->next)
		if (*pp == m) {
			*pp = m->next;
			break;
		}
	free(m->name);
	free(m->help);
}

int metric_new(struct module *mod, const char *name, uint32_t type, const char *help,
	       struct axn_handle **ret_h)
{
	struct metric *m;

	if (!name || !*name || (type != AXN_METRIC_COUNTER && type != AXN_METRIC_GAUGE))
		return -EINVAL;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return -EINVAL;
	m = (struct metric *)handle_new(mod, H_METRIC, sizeof(*m), metric_destroy, "metric %s",
					name);
	if (!m)
		return -ENOMEM;
	if (asprintf(&m->name, "axoneme_%s_%s", mod->name, name) < 0 ||
	    !(m->help = strdup(help ? help : ""))) {
		m->name = NULL;
		handle_release(&m->h);
		return -ENOMEM;
	}
	m->type = type;
	m->next = M->head;
	M->head = m;
	*ret_h = &m->h;
	return 0;
}

void metric_add(struct axn_handle *h, double v)
{
	if (h && h->kind == H_METRIC)
		((struct metric *)h)->value += v;
}

void metric_set(struct axn_handle *h, double v)
{
	if (h && h->kind == H_METRIC)
		((struct metric *)h)->value = v;
}


static void render(struct evbuffer *b)
{
	struct agent *a = M->agent;
	struct module *mod;

	evbuffer_add_printf(b, "# HELP axoneme_agent_ready 1 when every module is up and the store is synced.\n"
			       "# TYPE axoneme_agent_ready gauge\naxoneme_agent_ready %d\n",
			    agent_is_ready(a));
	evbuffer_add_printf(b, "# HELP axoneme_module_health Module health: 1 up, 2 degraded, 3 down.\n"
			       "# TYPE axoneme_module_health gauge\n");
	TAILQ_FOREACH(mod, &a->modules, link)
		evbuffer_add_printf(b, "axoneme_module_health{module=\"%s\",state=\"%s\"} %u\n",
				    mod->name, mod_state_name(mod->state),
				    mod->state == MOD_UP ? mod->health : AXN_STATE_DOWN);
	for (struct metric *m = M->head; m; m = m->next)
		evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", m->name, m->help,
				    m->name, m->type == AXN_METRIC_COUNTER ? "counter" : "gauge",
				    m->name, m->value);
}

static void on_http(struct evhttp_request *req, void *arg)
{
	const char *uri = evhttp_request_get_uri(req);
	struct evbuffer *b = evbuffer_new();
	int code = 200;

	if (!b) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	if (!strcmp(uri, "/metrics")) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
				  "text/plain; version=0.0.4");
		render(b);
	} else if (!strcmp(uri, "/healthz")) {
		evbuffer_add_printf(b, "ok\n");
	} else if (!strcmp(uri, "/readyz")) {
		bool ready = agent_is_ready(M->agent);

		code = ready ? 200 : 503;
		evbuffer_add_printf(b, "%s\n", ready ? "ready" : "not ready");
	} else {
		code = 404;
		evbuffer_add_printf(b, "not found\n");
	}
	evhttp_send_reply(req, code, code == 200 ? "OK" : "Error", b);
	evbuffer_free(b);
}

int metrics_init(struct agent *a)
{
	char host[256];
	const char *colon;
	long port;

	M = calloc(1, sizeof(*M));
	if (!M)
		return -ENOMEM;
	M->agent = a;
	a->metrics = M;
	if (!a->conf.metrics || !*a->conf.metrics)
		return 0;
	colon = strrchr(a->conf.metrics, ':');
	port = colon ? strtol(colon + 1, NULL, 10) : 0;
	if (!colon || port <= 0 || port > 65535 || (size_t)(colon - a->conf.metrics) >= sizeof(host)) {
		log_err("metrics: '%s' is not host:port", a->conf.metrics);
		return -EINVAL;
	}
	snprintf(host, sizeof(host), "%.*s", (int)(colon - a->conf.metrics), a->conf.metrics);
	M->http = evhttp_new(a->base);
	if (!M->http || evhttp_bind_socket(M->http, host, (uint16_t)port) < 0) {
		log_err("metrics: cannot listen on %s", a->conf.metrics);
		return -EADDRINUSE;
	}
	evhttp_set_gencb(M->http, on_http, NULL);
	return 0;
}

void metrics_fini(struct agent *a)
{
	if (!M)
		return;
	if (M->http)
		evhttp_free(M->http);
	free(M);
	M = NULL;
	a->metrics = NULL;
}
