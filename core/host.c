// SPDX-License-Identifier: Apache-2.0
/*
 * The host: the services table modules call, module life cycle (load, init,
 * start, stop, fini, reload) and the core's own API endpoints.
 */
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "core.h"

/* ------------------------------------------------------------------------- */
/* Logging and health                                                        */

static void h_vlog(struct axn_mod *self, int level, const char *fmt, va_list ap)
{
	log_vmsg(((struct module *)self)->name, level, fmt, ap);
}

static void h_log(struct axn_mod *self, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	h_vlog(self, level, fmt, ap);
	va_end(ap);
}

static void h_set_state(struct axn_mod *self, uint32_t state, const char *reason)
{
	struct module *m = (struct module *)self;

	if (state < AXN_STATE_UP || state > AXN_STATE_DOWN)
		return;
	if (m->health != state || (reason && (!m->health_reason || strcmp(reason, m->health_reason))))
		log_msg(m->name, state == AXN_STATE_UP ? AXN_LOG_INFO : AXN_LOG_WARN,
			"health %s%s%s", health_name(state), reason ? ": " : "",
			reason ? reason : "");
	m->health = state;
	free(m->health_reason);
	m->health_reason = reason ? strdup(reason) : NULL;
}

/* ------------------------------------------------------------------------- */
/* Event loop                                                                */

struct ev_handle {
	struct axn_handle h;
	struct event *ev;
	union {
		axn_io_cb io;
		axn_timer_cb timer;
		axn_call_cb call;
	} cb;
	void *arg;
	int fd;
};

static void ev_destroy(struct axn_handle *h)
{
	struct ev_handle *e = (struct ev_handle *)h;

	if (e->ev)
		event_free(e->ev);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
	struct ev_handle *e = arg;
	uint32_t ev = (what & EV_READ ? AXN_IO_READ : 0) | (what & EV_WRITE ? AXN_IO_WRITE : 0);

	e->cb.io(&e->h.owner->pub, (int)fd, ev, e->arg);
}

static int h_io_add(struct axn_mod *self, int fd, uint32_t events, axn_io_cb cb, void *arg,
		    struct axn_handle **ret_h)
{
	struct module *m = (struct module *)self;
	short what = EV_PERSIST;
	struct ev_handle *e;

	if (fd < 0 || !cb || !ret_h || !(events & (AXN_IO_READ | AXN_IO_WRITE)))
		return -EINVAL;
	what |= (events & AXN_IO_READ ? EV_READ : 0) | (events & AXN_IO_WRITE ? EV_WRITE : 0);
	e = (struct ev_handle *)handle_new(m, H_IO, sizeof(*e), ev_destroy, "fd watch %d", fd);
	if (!e)
		return -ENOMEM;
	e->cb.io = cb;
	e->arg = arg;
	e->ev = event_new(m->agent->base, fd, what, on_io, e);
	if (!e->ev || event_add(e->ev, NULL) < 0) {
		handle_release(&e->h);
		return -ENOMEM;
	}
	*ret_h = &e->h;
	return 0;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct ev_handle *e = arg;

	e->cb.timer(&e->h.owner->pub, e->arg);
}

static int h_timer_add(struct axn_mod *self, uint64_t ms, int periodic, axn_timer_cb cb,
		       void *arg, struct axn_handle **ret_h)
{
	struct module *m = (struct module *)self;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	struct ev_handle *e;

	if (!cb || !ret_h || (periodic && ms == 0))
		return -EINVAL;
	e = (struct ev_handle *)handle_new(m, H_TIMER, sizeof(*e), ev_destroy, "%s timer (%llu ms)",
					   periodic ? "periodic" : "one-shot",
					   (unsigned long long)ms);
	if (!e)
		return -ENOMEM;
	e->cb.timer = cb;
	e->arg = arg;
	e->ev = event_new(m->agent->base, -1, periodic ? EV_PERSIST : 0, on_timer, e);
	if (!e->ev || event_add(e->ev, &tv) < 0) {
		handle_release(&e->h);
		return -ENOMEM;
	}
	*ret_h = &e->h;
	return 0;
}

/* A deferred call is a handle until it has run, so a stopping module's calls are dropped. */
static void on_defer(evutil_socket_t fd, short what, void *arg)
{
	struct ev_handle *e = arg;
	axn_call_cb cb = e->cb.call;
	struct module *m = e->h.owner;
	void *cb_arg = e->arg;

	handle_release(&e->h);
	cb(&m->pub, cb_arg);
}

static int h_defer(struct axn_mod *self, axn_call_cb cb, void *arg)
{
	struct module *m = (struct module *)self;
	struct ev_handle *e;

	if (!cb)
		return -EINVAL;
	e = (struct ev_handle *)handle_new(m, H_DEFER, sizeof(*e), ev_destroy, "deferred call");
	if (!e)
		return -ENOMEM;
	e->cb.call = cb;
	e->arg = arg;
	e->ev = event_new(m->agent->base, -1, 0, on_defer, e);
	if (!e->ev) {
		handle_release(&e->h);
		return -ENOMEM;
	}
	event_active(e->ev, EV_TIMEOUT, 0);
	return 0;
}

struct posted {
	struct module *m;
	axn_call_cb cb;
	void *arg;
};

static void on_post(evutil_socket_t fd, short what, void *arg)
{
	struct posted *p = arg;

	if (p->m->state == MOD_UP)
		p->cb(&p->m->pub, p->arg);
	free(p);
}

/* Thread-safe: libevent is initialised with pthreads support in main(). */
static int h_post(struct axn_mod *self, axn_call_cb cb, void *arg)
{
	struct module *m = (struct module *)self;
	struct timeval zero = {0, 0};
	struct posted *p;

	if (!cb)
		return -EINVAL;
	p = malloc(sizeof(*p));
	if (!p)
		return -ENOMEM;
	*p = (struct posted){m, cb, arg};
	if (event_base_once(m->agent->base, -1, EV_TIMEOUT, on_post, p, &zero) < 0) {
		free(p);
		return -ENOMEM;
	}
	return 0;
}

static void h_handle_free(struct axn_mod *self, struct axn_handle *h)
{
	if (h && h->owner == (struct module *)self)
		handle_release(h);
}

/* ------------------------------------------------------------------------- */
/* Maps, hooks, API, metrics, agent facts                                    */

static int h_map_open(struct axn_mod *self, const char *name, const struct axn_map_spec *spec,
		      int *ret_fd)
{
	struct module *m = (struct module *)self;

	return maps_open(m->agent, m, name, spec, ret_fd);
}

static int h_hook_chain_fd(struct axn_mod *self, uint32_t kind, int *ret_fd)
{
	struct module *m = (struct module *)self;
	int fd, r;

	r = hooks_chain_fd(m->agent, kind, &fd);
	if (r < 0)
		return r;
	fd = dup(fd);
	if (fd < 0)
		return -errno;
	*ret_fd = fd;
	return 0;
}

static int h_hook_attach(struct axn_mod *self, const struct axn_hook_spec *spec, int prog_fd,
			 struct axn_handle **ret_h)
{
	return hooks_attach((struct module *)self, spec, prog_fd, ret_h);
}

static int h_hook_detach(struct axn_mod *self, struct axn_handle *h)
{
	return hooks_detach((struct module *)self, h);
}

static int h_api_register(struct axn_mod *self, const char *path, axn_api_cb cb, void *arg,
			  struct axn_handle **ret_h)
{
	return api_register((struct module *)self, path, cb, arg, ret_h);
}

static int h_api_alias(struct axn_mod *self, const char *alias, const char *path)
{
	return api_alias((struct module *)self, alias, path);
}

static int h_metric_new(struct axn_mod *self, const char *name, uint32_t type, const char *help,
			struct axn_handle **ret_h)
{
	if (!ret_h)
		return -EINVAL;
	return metric_new((struct module *)self, name, type, help, ret_h);
}

static const char *h_agent_info(struct axn_mod *self, const char *key)
{
	struct agent *a = ((struct module *)self)->agent;

	if (!key)
		return NULL;
	if (!strcmp(key, "node_name"))
		return a->conf.node_name;
	if (!strcmp(key, "bpffs"))
		return a->conf.bpffs;
	if (!strcmp(key, "rundir"))
		return a->conf.rundir;
	if (!strcmp(key, "cgroup"))
		return a->conf.cgroup;
	return NULL;
}

static struct axn_host host_rw;

const struct axn_host *host_table(void)
{
	if (!host_rw.size) {
		host_rw.abi_minor = AXN_ABI_MINOR;
		host_rw.log = h_log;
		host_rw.vlog = h_vlog;
		host_rw.set_state = h_set_state;
		host_rw.io_add = h_io_add;
		host_rw.timer_add = h_timer_add;
		host_rw.defer = h_defer;
		host_rw.post = h_post;
		host_rw.handle_free = h_handle_free;
		host_rw.map_open = h_map_open;
		host_rw.hook_chain_fd = h_hook_chain_fd;
		host_rw.hook_attach = h_hook_attach;
		host_rw.hook_detach = h_hook_detach;
		store_fill_host(&host_rw);
		host_rw.api_register = h_api_register;
		host_rw.metric_new = h_metric_new;
		host_rw.metric_add = metric_add;
		host_rw.metric_set = metric_set;
		host_rw.agent_info = h_agent_info;
		host_rw.api_alias = h_api_alias;
		host_rw.size = sizeof(host_rw);
	}
	return &host_rw;
}

/* ------------------------------------------------------------------------- */
/* Module life cycle                                                         */

const char *mod_state_name(enum mod_state s)
{
	static const char *const names[] = {
		[MOD_LOADED] = "loaded",   [MOD_INITIALIZED] = "initialized",
		[MOD_UP] = "up",           [MOD_STOPPED] = "stopped",
		[MOD_FAILED] = "failed",   [MOD_DISABLED] = "disabled",
	};

	return s <= MOD_DISABLED ? names[s] : "?";
}

const char *health_name(uint32_t h)
{
	return h == AXN_STATE_UP ? "up" : h == AXN_STATE_DEGRADED ? "degraded" : "down";
}

struct module *module_new(struct agent *a, const char *name)
{
	struct module *m = calloc(1, sizeof(*m));

	if (!m || !(m->name = strdup(name))) {
		free(m);
		return NULL;
	}
	m->pub.host = host_table();
	m->agent = a;
	m->health = AXN_STATE_UP;
	TAILQ_INIT(&m->handles);
	return m;
}

static void module_free(struct module *m)
{
	if (!m)
		return;
	handles_reclaim(m, false);
	if (m->desc && m->conf)
		conf_free_module(m->desc, m->conf);
	/* The .so stays mapped: code may still be referenced by libevent or libc (atexit). */
	free(m->name);
	free(m->path);
	free(m->health_reason);
	free(m->fail_reason);
	free(m);
}

void module_set_failed(struct module *m, const char *fmt, ...)
{
	va_list ap;

	free(m->fail_reason);
	va_start(ap, fmt);
	if (vasprintf(&m->fail_reason, fmt, ap) < 0)
		m->fail_reason = NULL;
	va_end(ap);
	m->state = MOD_FAILED;
	log_msg(m->name, AXN_LOG_ERR, "%s%s", m->fail_reason ? m->fail_reason : "failed",
		m->required ? " (required module: the agent cannot run without it)" : "");
}

struct agent *agent_new(void)
{
	struct agent *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	TAILQ_INIT(&a->modules);
	a->core_mod = module_new(a, "core");
	if (!a->core_mod) {
		free(a);
		return NULL;
	}
	a->core_mod->state = MOD_UP;
	a->start_ns = now_ns();
	return a;
}

void agent_free(struct agent *a)
{
	struct module *m;

	if (!a)
		return;
	while ((m = TAILQ_FIRST(&a->modules))) {
		TAILQ_REMOVE(&a->modules, m, link);
		module_free(m);
	}
	module_free(a->core_mod);
	free(a);
}

/* Load the .so and validate its options; no module code runs here. */
static int module_prepare(struct agent *a, config_t *cfg, const char *conf_path,
			  const struct conf_module *cm, struct module **ret_m, char **ret_err)
{
	struct module *m;
	int r;

	m = module_new(a, cm->name);
	if (!m)
		return -ENOMEM;
	m->required = cm->required;
	r = loader_open(a->conf.moduledir, cm->name, &m->dl, &m->desc, ret_err);
	if (r < 0) {
		/* A module that cannot load is a runtime failure unless it is required. */
		m->state = MOD_FAILED;
		m->fail_reason = *ret_err;
		*ret_err = NULL;
		if (m->required) {
			if (asprintf(ret_err, "%s:%d: %s", conf_path, cm->line, m->fail_reason) < 0)
				*ret_err = NULL;
			module_free(m);
			return r;
		}
		*ret_m = m;
		return 0;
	}
	if (asprintf(&m->path, "%s/%s.so", a->conf.moduledir, cm->name) < 0)
		m->path = NULL;
	r = conf_fill_module(cfg, conf_path, m->desc, &m->conf, ret_err);
	if (r < 0) {
		module_free(m);
		return r;
	}
	m->state = MOD_LOADED;
	*ret_m = m;
	return 0;
}

static int order_modules(struct agent *a, struct module **mods, size_t n, char **ret_err)
{
	struct module **order = NULL, **loaded;
	size_t k = 0;
	int r;

	loaded = calloc(n + 1, sizeof(*loaded));
	if (!loaded)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (mods[i]->desc)
			loaded[k++] = mods[i];
	r = deps_order(loaded, k, &order, ret_err);
	free(loaded);
	if (r < 0)
		return r;
	for (size_t i = 0; order[i]; i++)
		TAILQ_INSERT_TAIL(&a->modules, order[i], link);
	/* Modules that failed to load or are disabled go last, for status only. */
	for (size_t i = 0; i < n; i++) {
		bool in = false;

		for (size_t j = 0; order[j] && !in; j++)
			in = order[j] == mods[i];
		if (!in)
			TAILQ_INSERT_TAIL(&a->modules, mods[i], link);
	}
	free(order);
	return 0;
}

int agent_load_modules(struct agent *a, struct parsed_conf *pc, char **ret_err)
{
	struct module **mods;
	int r = 0;

	mods = calloc(pc->n_mods + 1, sizeof(*mods));
	if (!mods)
		return -ENOMEM;
	for (size_t i = 0; i < pc->n_mods; i++) {
		r = module_prepare(a, &pc->cfg, a->conf_path, &pc->mods[i], &mods[i], ret_err);
		if (r < 0)
			goto err;
	}
	r = order_modules(a, mods, pc->n_mods, ret_err);
	if (r < 0)
		goto err;
	for (size_t i = 0; i < pc->n_mods; i++)
		if (mods[i]->state == MOD_FAILED)
			log_msg(mods[i]->name, AXN_LOG_ERR, "not loaded: %s", mods[i]->fail_reason);
		else if (mods[i]->state == MOD_DISABLED)
			log_msg(mods[i]->name, AXN_LOG_ERR, "disabled: %s", mods[i]->fail_reason);
	for (size_t i = 0; i < pc->n_mods; i++)
		if (mods[i]->required && mods[i]->state == MOD_DISABLED) {
			if (asprintf(ret_err, "required module %s is disabled: %s", mods[i]->name,
				     mods[i]->fail_reason) < 0)
				*ret_err = NULL;
			free(mods);
			return -ENOENT;
		}
	free(mods);
	return 0;
err:
	for (size_t i = 0; i < pc->n_mods; i++) {
		struct module *m;
		bool listed = false;

		TAILQ_FOREACH(m, &a->modules, link)
			listed |= m == mods[i];
		if (!listed)
			module_free(mods[i]);
	}
	free(mods);
	return r;
}

/* A hard requirement is met by the core or by a module that is up. */
static const char *unmet_requirement(struct agent *a, struct module *m)
{
	for (const char *const *r = m->desc->requires; r && *r; r++) {
		struct module *p;
		bool ok = deps_core_has(*r);

		TAILQ_FOREACH(p, &a->modules, link)
			if (!ok && p != m && p->state == MOD_UP && deps_provides(p, *r))
				ok = true;
		if (!ok)
			return *r;
	}
	return NULL;
}

static void module_stop(struct module *m)
{
	if (m->state == MOD_UP && m->desc->stop) {
		int r = m->desc->stop(&m->pub);

		if (r < 0)
			log_msg(m->name, AXN_LOG_WARN, "stop failed: %s", strerror(-r));
	}
	if (m->source && !m->agent->stopping)
		store_source_gone(m);
	handles_reclaim(m, true); /* reports what the module forgot */
	if (m->state == MOD_UP)
		m->state = MOD_STOPPED;
}

static void module_fini(struct module *m)
{
	if (m->state != MOD_LOADED && m->state != MOD_DISABLED && m->desc && m->desc->fini)
		m->desc->fini(&m->pub);
	m->pub.state = NULL;
}

static int module_start_one(struct agent *a, struct module *m)
{
	const char *unmet;
	int r;

	if (m->state != MOD_LOADED && m->state != MOD_STOPPED)
		return 0;
	unmet = unmet_requirement(a, m);
	if (unmet) {
		free(m->fail_reason);
		if (asprintf(&m->fail_reason, "requires %s, which is not running", unmet) < 0)
			m->fail_reason = NULL;
		m->state = MOD_DISABLED;
		log_msg(m->name, AXN_LOG_ERR, "disabled: %s", m->fail_reason);
		return m->required ? -ENOENT : 0;
	}
	m->health = AXN_STATE_UP;
	r = m->desc->init ? m->desc->init(&m->pub, m->conf) : 0;
	if (r < 0) {
		module_set_failed(m, "init failed: %s", strerror(-r));
		handles_reclaim(m, false);
		return m->required ? r : 0;
	}
	m->state = MOD_INITIALIZED;
	r = m->desc->start ? m->desc->start(&m->pub) : 0;
	if (r < 0) {
		/* Undo what start() registered, then let the module free its state. */
		handles_reclaim(m, false);
		if (m->source)
			store_source_gone(m);
		module_fini(m);
		module_set_failed(m, "start failed: %s", strerror(-r));
		return m->required ? r : 0;
	}
	m->state = MOD_UP;
	log_msg(m->name, AXN_LOG_INFO, "started\tversion=%s", m->desc->version ? m->desc->version : "-");
	return 0;
}

int agent_start_modules(struct agent *a)
{
	struct module *m;
	int r;

	TAILQ_FOREACH(m, &a->modules, link) {
		r = module_start_one(a, m);
		if (r < 0)
			return r;
	}
	if (a->hooks)
		hooks_prune(a);
	store_start_done();
	return 0;
}

void agent_stop_modules(struct agent *a)
{
	struct module *m;

	TAILQ_FOREACH_REVERSE(m, &a->modules, module_list, link)
		module_stop(m);
	TAILQ_FOREACH_REVERSE(m, &a->modules, module_list, link)
		module_fini(m);
}

void agent_synced(struct agent *a)
{
	struct module *m;
	int up = 0;

	if (a->ready)
		return;
	a->ready = true;
	a->ready_ns = now_ns();
	TAILQ_FOREACH(m, &a->modules, link)
		up += m->state == MOD_UP;
	/* The initial sync parsed everything once; give its transient memory back. */
	malloc_trim(0);
	log_info("ready\tready_ms=%.1f modules_up=%d", (double)(a->ready_ns - a->start_ns) / 1e6,
		 up);
}

bool agent_is_ready(struct agent *a)
{
	struct module *m;

	if (!a->ready)
		return false;
	TAILQ_FOREACH(m, &a->modules, link)
		if (m->state != MOD_UP || m->health == AXN_STATE_DOWN)
			return false;
	return true;
}

/* ------------------------------------------------------------------------- */
/* Reload: validate everything first, then apply the difference.             */

static struct module *find_module(struct agent *a, const char *name)
{
	struct module *m;

	TAILQ_FOREACH(m, &a->modules, link)
		if (!strcmp(m->name, name))
			return m;
	return NULL;
}

static bool same_str(const char *x, const char *y)
{
	return (!x && !y) || (x && y && !strcmp(x, y));
}

int agent_reload(struct agent *a)
{
	struct parsed_conf *pc = NULL;
	struct module **next = NULL, **prepared = NULL, *m;
	void **new_confs = NULL;
	struct module_list old_list;
	char *err = NULL;
	size_t n = 0;
	int r;

	r = conf_parse(a->conf_path, &pc, &err);
	if (r < 0)
		goto reject;
	if (!same_str(pc->agent.bpffs, a->conf.bpffs) || !same_str(pc->agent.rundir, a->conf.rundir) ||
	    !same_str(pc->agent.moduledir, a->conf.moduledir) ||
	    !same_str(pc->agent.api_socket, a->conf.api_socket) ||
	    !same_str(pc->agent.metrics, a->conf.metrics) ||
	    !same_str(pc->agent.node_name, a->conf.node_name) ||
	    !same_str(pc->agent.cgroup, a->conf.cgroup)) {
		r = -EINVAL;
		if (asprintf(&err, "%s: agent paths, addresses or node_name changed; restart the agent to apply them",
			     a->conf_path) < 0)
			err = NULL;
		goto reject;
	}
	n = pc->n_mods;
	next = calloc(n + 1, sizeof(*next));
	prepared = calloc(n + 1, sizeof(*prepared));
	new_confs = calloc(n + 1, sizeof(*new_confs));
	if (!next || !prepared || !new_confs) {
		r = -ENOMEM;
		goto reject;
	}
	/* Validate every module's group, loading new modules' descriptors. */
	for (size_t i = 0; i < n; i++) {
		m = find_module(a, pc->mods[i].name);
		if (m && m->desc) {
			r = conf_fill_module(&pc->cfg, a->conf_path, m->desc, &new_confs[i], &err);
			if (r < 0)
				goto reject;
			continue;
		}
		r = module_prepare(a, &pc->cfg, a->conf_path, &pc->mods[i], &prepared[i], &err);
		if (r < 0)
			goto reject;
	}

	/* Check the new dependency graph on throwaway copies of the states. */
	{
		struct module **probe = calloc(n + 1, sizeof(*probe)), **order = NULL;
		enum mod_state *saved = calloc(n + 1, sizeof(*saved));
		size_t k = 0;

		if (!probe || !saved) {
			free(probe);
			free(saved);
			r = -ENOMEM;
			goto reject;
		}
		for (size_t i = 0; i < n; i++) {
			struct module *x = prepared[i] ? prepared[i] : find_module(a, pc->mods[i].name);

			if (x && x->desc) {
				saved[k] = x->state;
				if (x->state == MOD_DISABLED)
					x->state = MOD_LOADED;
				probe[k++] = x;
			}
		}
		r = deps_order(probe, k, &order, &err);
		for (size_t i = 0; i < k; i++)
			probe[i]->state = saved[i];
		free(order);
		free(probe);
		free(saved);
		if (r < 0)
			goto reject;
	}

	/* Valid: apply. The log level takes effect at once (unless --log-level fixed it). */
	if (!a->log_level_fixed)
		log_set_level(log_level_parse(pc->agent.log_level));
	/* Stop modules that are gone, in reverse order. */
	TAILQ_FOREACH_REVERSE(m, &a->modules, module_list, link) {
		bool keep = false;

		for (size_t i = 0; i < n && !keep; i++)
			keep = !strcmp(pc->mods[i].name, m->name);
		if (!keep) {
			log_msg(m->name, AXN_LOG_INFO, "removed by reload; stopping");
			module_stop(m);
			module_fini(m);
			m->state = MOD_STOPPED;
			/* A removed feature takes its programs with it. */
			hooks_module_restarting(a, m->name);
			hooks_prune_module(a, m->name);
		}
	}
	/* Rebuild the module list in the new order. */
	TAILQ_INIT(&old_list);
	TAILQ_CONCAT(&old_list, &a->modules, link);
	for (size_t i = 0; i < n; i++) {
		m = prepared[i];
		if (!m) {
			m = find_module(a, pc->mods[i].name);
			if (!m) {
				TAILQ_FOREACH(m, &old_list, link)
					if (!strcmp(m->name, pc->mods[i].name))
						break;
			}
			TAILQ_REMOVE(&old_list, m, link);
			m->required = pc->mods[i].required;
			if (m->state == MOD_DISABLED || m->state == MOD_FAILED)
				m->state = m->desc ? MOD_LOADED : MOD_FAILED;
		}
		next[i] = m;
	}
	while ((m = TAILQ_FIRST(&old_list))) {
		TAILQ_REMOVE(&old_list, m, link);
		module_free(m);
	}
	r = order_modules(a, next, n, &err);
	if (r < 0) {
		/* Checked above; only memory can fail here. */
		log_err("reload: %s", err ? err : strerror(-r));
		goto out;
	}
	/* Reconfigure or restart kept modules, start new ones, in order. */
	TAILQ_FOREACH(m, &a->modules, link) {
		size_t i;
		void *nc;

		for (i = 0; i < n && strcmp(pc->mods[i].name, m->name); i++)
			;
		nc = i < n ? new_confs[i] : NULL;
		if (i < n)
			new_confs[i] = NULL;
		if (!nc || !m->desc) {
			conf_free_module(m->desc, nc);
		} else if (conf_equal(m->desc, m->conf, nc) && m->state == MOD_UP) {
			conf_free_module(m->desc, nc);
			continue;
		} else if (m->state == MOD_UP && m->desc->reconfigure &&
			   (r = m->desc->reconfigure(&m->pub, nc)) == 0) {
			conf_free_module(m->desc, m->conf);
			m->conf = nc;
			log_msg(m->name, AXN_LOG_INFO, "reconfigured");
			continue;
		} else {
			if (m->state == MOD_UP) {
				log_msg(m->name, AXN_LOG_INFO, "configuration changed; restarting");
				hooks_module_restarting(a, m->name);
				module_stop(m);
				module_fini(m);
				m->state = MOD_LOADED;
			}
			conf_free_module(m->desc, m->conf);
			m->conf = nc;
		}
		if (m->state == MOD_LOADED || m->state == MOD_STOPPED) {
			(void)module_start_one(a, m);
			hooks_prune_module(a, m->name);
		}
	}
	log_info("reload applied\tfile=%s", a->conf_path);
	/* The running configuration's strings are copies; swap the parsed trees. */
	r = 0;
	goto out;

reject:
	log_err("reload rejected, keeping the running configuration: %s",
		err ? err : strerror(-r));
	for (size_t i = 0; prepared && i < n; i++)
		module_free(prepared[i]);
out:
	for (size_t i = 0; new_confs && i < n; i++) {
		m = find_module(a, pc->mods[i].name);
		if (new_confs[i] && m)
			conf_free_module(m->desc, new_confs[i]);
	}
	free(new_confs);
	free(prepared);
	free(next);
	free(err);
	conf_free(pc);
	return r;
}

/* ------------------------------------------------------------------------- */
/* Core API endpoints                                                        */

static json_t *strv_json(const char *const *v)
{
	json_t *a = json_array();

	for (; v && *v; v++)
		json_array_append_new(a, json_string(*v));
	return a;
}

static const char *module_reason(const struct module *m)
{
	if (m->state == MOD_FAILED || m->state == MOD_DISABLED)
		return m->fail_reason ? m->fail_reason : "";
	return m->health_reason ? m->health_reason : "";
}

static const char *module_health(const struct module *m)
{
	return m->state == MOD_UP ? health_name(m->health) : "down";
}

static int api_status(struct axn_mod *self, const json_t *req, json_t **ret, char **ret_err,
		      void *arg)
{
	struct agent *a = arg;
	json_t *mods = json_array();
	struct module *m;

	TAILQ_FOREACH(m, &a->modules, link)
		json_array_append_new(mods, json_pack("{s:s, s:s, s:s, s:s}", "name", m->name,
						      "state", mod_state_name(m->state), "health",
						      module_health(m), "reason", module_reason(m)));
	*ret = json_pack("{s:s, s:s, s:i, s:I, s:b, s:b, s:f, s:o}", "node", a->conf.node_name,
			 "version", PACKAGE_VERSION, "pid", (int)getpid(), "uptime_s",
			 (json_int_t)((now_ns() - a->start_ns) / 1000000000ull), "ready",
			 agent_is_ready(a), "synced", a->ready, "ready_ms",
			 a->ready ? (double)(a->ready_ns - a->start_ns) / 1e6 : -1.0, "modules",
			 mods);
	return *ret ? 0 : -ENOMEM;
}

static int api_modules(struct axn_mod *self, const json_t *req, json_t **ret, char **ret_err,
		       void *arg)
{
	struct agent *a = arg;
	json_t *items = json_array();
	struct module *m;

	TAILQ_FOREACH(m, &a->modules, link)
		json_array_append_new(
			items,
			json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:s, s:o, s:o, s:o}", "name",
				  m->name, "version",
				  m->desc && m->desc->version ? m->desc->version : "-", "state",
				  mod_state_name(m->state), "health", module_health(m), "reason",
				  module_reason(m), "required", m->required, "path",
				  m->path ? m->path : "-", "provides",
				  strv_json(m->desc ? m->desc->provides : NULL), "requires",
				  strv_json(m->desc ? m->desc->requires : NULL), "wants",
				  strv_json(m->desc ? m->desc->wants : NULL)));
	*ret = json_pack("{s:o}", "items", items);
	return 0;
}

static int api_maps(struct axn_mod *self, const json_t *req, json_t **ret, char **ret_err, void *arg)
{
	*ret = maps_list(arg);
	return 0;
}

static int api_map_dump(struct axn_mod *self, const json_t *req, json_t **ret, char **ret_err,
			void *arg)
{
	const char *name = json_string_value(json_object_get(req, "name"));

	if (!name) {
		*ret_err = strdup("map/dump needs {\"name\": ...}");
		return -EINVAL;
	}
	return maps_dump(arg, name, ret, ret_err);
}

static int api_resources(struct axn_mod *self, const json_t *req, json_t **ret, char **ret_err,
			 void *arg)
{
	return store_api_resources(req, ret, ret_err);
}

static int api_hooks(struct axn_mod *self, const json_t *req, json_t **ret, char **ret_err,
		     void *arg)
{
	*ret = hooks_list(arg);
	return *ret ? 0 : -ENOMEM;
}

static int api_endpoints(struct axn_mod *self, const json_t *req, json_t **ret, char **ret_err,
			 void *arg)
{
	*ret = api_list();
	return 0;
}

int core_register_endpoints(struct agent *a)
{
	static const struct {
		const char *path;
		axn_api_cb cb;
	} eps[] = {
		{"status", api_status},       {"modules", api_modules},
		{"maps", api_maps},           {"map/dump", api_map_dump},
		{"resources", api_resources}, {"hooks", api_hooks},
		{"endpoints", api_endpoints},
	};

	for (size_t i = 0; i < sizeof(eps) / sizeof(eps[0]); i++) {
		int r = api_register(a->core_mod, eps[i].path, eps[i].cb, a, NULL);

		if (r < 0)
			return r;
	}
	return 0;
}
