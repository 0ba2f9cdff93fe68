/* SPDX-License-Identifier: Apache-2.0 */
/*
 * core.h - the agent's private structures. Nothing here is SDK: modules
 * see only the SDK headers in sdk/include/axoneme/.
 */
#ifndef AXN_CORE_H
#define AXN_CORE_H

#include "config.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include <jansson.h>
#include <libconfig.h>

#include <axoneme/axoneme.h>

#define AXN_HIDDEN __attribute__((visibility("hidden")))

struct event_base;
struct agent;

/* Module states, as drawn in axoneme/module.h. */
enum mod_state {
	MOD_LOADED,
	MOD_INITIALIZED,
	MOD_UP,
	MOD_STOPPED,
	MOD_FAILED,   /* init/start failed */
	MOD_DISABLED, /* a hard dependency is missing or failed */
};

/* Handle kinds: every resource a module creates through the host. */
enum handle_kind {
	H_TIMER,
	H_IO,
	H_SUB,
	H_API,
	H_METRIC,
	H_HOOK,
	H_MAP,
	H_DEFER,
};

struct module;

/*
 * Every resource a module creates through the host is a handle on its
 * owner's list; the core frees what is left when the module stops and logs
 * it by name, so a module cannot leak a timer past its lifetime.
 */
struct axn_handle {
	enum handle_kind kind;
	struct module *owner;
	char *what; /* for leak reports: "timer hello:tick" */
	void (*destroy)(struct axn_handle *h);
	TAILQ_ENTRY(axn_handle) link;
};
TAILQ_HEAD(handle_list, axn_handle);

/* Per-module handle; `pub` must stay first (modules see it as struct axn_mod). */
struct module {
	struct axn_mod pub;
	struct agent *agent;
	char *name;
	char *path; /* .so path, NULL for built-in */
	void *dl;
	const struct axn_module_desc *desc;
	bool required;
	enum mod_state state;
	uint32_t health; /* AXN_STATE_* */
	char *health_reason;
	char *fail_reason;
	void *conf; /* desc->conf_size bytes, filled from the conf file */
	struct handle_list handles;
	TAILQ_ENTRY(module) link;
	int order; /* position in start order */
	bool source; /* registered as a resource source */
	bool synced;
};
TAILQ_HEAD(module_list, module);

/* Agent-wide options from the `agent` group of the conf file. */
struct agent_conf {
	const char *node_name;
	const char *bpffs;     /* per-agent pin directory (on a bpffs) */
	const char *rundir;    /* api socket, pid file, state */
	const char *moduledir;
	const char *cgroup;    /* the node's cgroup v2 directory */
	const char *api_socket;
	const char *metrics;   /* "host:port" or "" to disable */
	const char *log_level;
};

struct agent {
	struct event_base *base;
	const char *conf_path;
	struct agent_conf conf;
	struct module_list modules; /* in start order */
	struct module *core_mod;    /* pseudo-module owning core resources */
	bool log_level_fixed; /* --log-level given: reloads keep it */
	bool stopping;
	bool ready;
	uint64_t start_ns;
	uint64_t ready_ns;
	struct store *store;
	struct api *api;
	struct metrics *metrics;
	struct maps *maps;
	struct hooks *hooks;
};

/* log.c */
void log_set_level(int level);
void log_set_sink(void (*sink)(const char *line, void *arg), void *arg);
int log_level_parse(const char *s);
void log_msg(const char *module, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void log_vmsg(const char *module, int level, const char *fmt, va_list ap);
#define log_err(...) log_msg("core", AXN_LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg("core", AXN_LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg("core", AXN_LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg("core", AXN_LOG_DEBUG, __VA_ARGS__)

/* handle.c */
struct axn_handle *handle_new(struct module *owner, enum handle_kind kind, size_t size,
			      void (*destroy)(struct axn_handle *), const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
void handle_release(struct axn_handle *h);
/* Free every handle the module still holds; returns how many leaked. */
int handles_reclaim(struct module *m, bool report);

/* conf.c: parse + validate. Errors are written to *ret_err as "file:line: msg". */
struct conf_module {
	char *name;
	bool required;
	int line;
};
struct parsed_conf {
	config_t cfg;
	struct agent_conf agent;
	struct conf_module *mods;
	size_t n_mods;
	char **disabled; /* listed with enabled = false */
	size_t n_disabled;
};
int conf_parse(const char *path, struct parsed_conf **ret_pc, char **ret_err);
void conf_free(struct parsed_conf *pc);
/* Fill a module's conf struct from its group; errors name file and line. */
int conf_fill_module(config_t *cfg, const char *path, const struct axn_module_desc *desc,
		     void **ret_conf, char **ret_err);
void conf_free_module(const struct axn_module_desc *desc, void *conf);
bool conf_equal(const struct axn_module_desc *desc, const void *a, const void *b);

/* loader.c */
int loader_open(const char *moduledir, const char *name, void **ret_dl,
		const struct axn_module_desc **ret_desc, char **ret_err);
int loader_check_desc(const struct axn_module_desc *d, const char *name, char **ret_err);
int loader_check_dir(const char *dir, char **ret_err);
/*
 * Order modules by provides/requires/wants (Kahn; ties by conf order).
 * Modules whose hard requirements are unmet are marked DISABLED with a reason;
 * a cycle is an error naming every module on it.
 */
int deps_order(struct module **mods, size_t n, struct module ***ret_order, char **ret_err);
bool deps_provides(const struct module *m, const char *cap);
bool deps_core_has(const char *cap);

/* host.c */
struct agent *agent_new(void);
void agent_free(struct agent *a);
void agent_synced(struct agent *a);
bool agent_is_ready(struct agent *a);
json_t *api_list(void);
int core_register_endpoints(struct agent *a);
const struct axn_host *host_table(void);
struct module *module_new(struct agent *a, const char *name);
int agent_load_modules(struct agent *a, struct parsed_conf *pc, char **ret_err);
int agent_start_modules(struct agent *a);
void agent_stop_modules(struct agent *a);
int agent_reload(struct agent *a);
void module_set_failed(struct module *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *mod_state_name(enum mod_state s);
const char *health_name(uint32_t h);

/* maps.c: the map registry. */
int maps_init(struct agent *a);
void maps_fini(struct agent *a);
int maps_open(struct agent *a, struct module *owner, const char *name,
	      const struct axn_map_spec *spec, int *ret_fd);
json_t *maps_list(struct agent *a);
int maps_dump(struct agent *a, const char *name, json_t **ret, char **ret_err);
int maps_purge(struct agent *a);

/* hooks.c: the hook registry. */
int hooks_init(struct agent *a);
void hooks_fini(struct agent *a);
int hooks_chain_fd(struct agent *a, uint32_t kind, int *ret_fd);
int hooks_attach(struct module *m, const struct axn_hook_spec *spec, int prog_fd,
		 struct axn_handle **ret_h);
int hooks_detach(struct module *m, struct axn_handle *h);
void hooks_prune(struct agent *a);
/*
 * A module is restarted or removed while the agent runs: its programs stay
 * attached until it re-attaches them; whatever it does not re-attach by the
 * end of its start (or, if removed, at once) is dropped.
 */
void hooks_module_restarting(struct agent *a, const char *module);
void hooks_prune_module(struct agent *a, const char *module);
json_t *hooks_list(struct agent *a);
int hooks_purge(struct agent *a);

/* store.c */
int store_init(struct agent *a);
void store_fini(struct agent *a);
void store_fill_host(struct axn_host *h);
void store_start_done(void);
void store_source_gone(struct module *m);
int store_api_resources(const json_t *args, json_t **ret, char **ret_err);
int selector_match_json(const json_t *sel, const json_t *labels);

/* api.c + metrics.c */
int api_init(struct agent *a);
void api_fini(struct agent *a);
int api_register(struct module *m, const char *path, axn_api_cb cb, void *arg,
		 struct axn_handle **ret_h);
int api_alias(struct module *m, const char *alias, const char *path);
int metrics_init(struct agent *a);
void metrics_fini(struct agent *a);
int metric_new(struct module *m, const char *name, uint32_t type, const char *help,
	       struct axn_handle **ret_h);
void metric_add(struct axn_handle *h, double v);
void metric_set(struct axn_handle *h, double v);

uint64_t now_ns(void);

#endif /* AXN_CORE_H */
