/* SPDX-License-Identifier: Apache-2.0 */
/*
 * axoneme/host.h - the services the core offers a module.
 *
 * The core passes a const struct axn_host (as self->host) to every module;
 * modules never link against the agent. The table only grows at the end:
 * a module built against a newer SDK checks AXN_HOST_HAS(host, fn) before
 * calling a function the running core may not have.
 *
 * Conventions for every function here:
 *  - the first argument is the calling module's handle: the core attributes
 *    logs, metrics and resources to it and reclaims them when it stops;
 *  - errors are negative errno; ret_* out-parameters are written only on
 *    success;
 *  - everything runs on the agent's single loop thread, except post(), which
 *    any thread may call;
 *  - pointers passed to callbacks are borrowed for the duration of the call;
 *  - ret_h is required for io_add, timer_add and metric_new, optional (NULL)
 *    for store_watch and api_register (the core reclaims those at stop);
 *  - a handle may be freed from inside its own callback; a one-shot timer
 *    stays allocated after it fires, until handle_free.
 */
#ifndef AXONEME_HOST_H
#define AXONEME_HOST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <axoneme/module.h>

#ifdef __cplusplus
extern "C" {
#endif

struct axn_handle; /* a timer, fd watch, subscription, endpoint, metric or hook */
struct axn_obj;    /* an immutable, ref-counted resource (see axoneme/store.h) */
struct json_t; /* jansson */

/* Log levels. */
#define AXN_LOG_ERR 3
#define AXN_LOG_WARN 4
#define AXN_LOG_INFO 6
#define AXN_LOG_DEBUG 7

/* Module health, fed into the agent's readiness. */
#define AXN_STATE_UP 1
#define AXN_STATE_DEGRADED 2
#define AXN_STATE_DOWN 3

/* io_add() event bits. */
#define AXN_IO_READ 0x02u
#define AXN_IO_WRITE 0x04u

/* Store events (see axoneme/store.h for delivery order). */
#define AXN_EV_ADDED 1
#define AXN_EV_MODIFIED 2
#define AXN_EV_DELETED 3
#define AXN_EV_SYNCED 4

/* Metric types. */
#define AXN_METRIC_COUNTER 1
#define AXN_METRIC_GAUGE 2

/* Hook kinds (struct axn_hook_spec.kind). */
#define AXN_HOOK_TC_INGRESS 1
#define AXN_HOOK_TC_EGRESS 2
#define AXN_HOOK_XDP 3
#define AXN_HOOK_CGROUP 4

/*
 * Priority bands for programs sharing one hook: lower runs first. A module
 * picks a band for what it does and a priority inside it.
 */
#define AXN_BAND_L2 100      /* ARP/NDP responders */
#define AXN_BAND_SERVICE 200 /* service load balancing */
#define AXN_BAND_POLICY 300  /* egress gateway, policy */
#define AXN_BAND_SHAPING 400 /* bandwidth, EDT */

/* Map registry flags (struct axn_map_spec.flags). */
#define AXN_MAPF_RECREATE 0x1u /* incompatible pin: unpin and create anew (default: refuse) */

/*
 * A map the module wants: the registry pins it as <bpffs>/<name>_v<layout>,
 * reuses a compatible pin after a restart and refuses (or, with
 * AXN_MAPF_RECREATE, recreates) an incompatible one.
 */
struct axn_map_spec {
	uint32_t size;        /* sizeof(struct axn_map_spec) */
	uint32_t type;        /* enum bpf_map_type */
	uint32_t key_size;
	uint32_t value_size;
	uint32_t max_entries;
	uint32_t map_flags;   /* BPF_F_* */
	uint32_t layout;      /* bump when the key/value layout changes */
	uint32_t flags;       /* AXN_MAPF_* */
};

/*
 * Where a program goes. tc and XDP programs join the interface's chain
 * (ordered by band, then prio, then module name); a program that is done
 * with a packet returns its verdict, one that is not calls
 * AXN_CHAIN_NEXT() (see axoneme/bpf/chain.h). cgroup programs attach with
 * BPF_F_ALLOW_MULTI to `cgroup` with `attach_type`.
 */
struct axn_hook_spec {
	uint32_t size;        /* sizeof(struct axn_hook_spec) */
	uint32_t kind;        /* AXN_HOOK_* */
	const char *ifname;   /* tc/XDP: interface in the agent's netns */
	const char *cgroup;   /* cgroup: cgroup v2 directory path */
	uint32_t attach_type; /* cgroup: enum bpf_attach_type */
	uint32_t band;        /* AXN_BAND_* */
	int32_t prio;         /* order inside the band */
	const char *name;     /* unique per module: re-attaching the same name replaces */
};

typedef void (*axn_io_cb)(struct axn_mod *self, int fd, uint32_t events, void *arg);
typedef void (*axn_timer_cb)(struct axn_mod *self, void *arg);
typedef void (*axn_call_cb)(struct axn_mod *self, void *arg);
/* obj is NULL for AXN_EV_SYNCED; for DELETED it is the last known object. */
typedef void (*axn_store_cb)(struct axn_mod *self, uint32_t event, struct axn_obj *obj, void *arg);
/*
 * An API endpoint handler: `req` is the request's "args" object (never NULL),
 * *ret_resp a new JSON value on success. A negative errno becomes an error
 * response; *ret_err, if set, is its message, malloc'd (the core frees it).
 */
typedef int (*axn_api_cb)(struct axn_mod *self, const struct json_t *req, struct json_t **ret_resp,
			  char **ret_err, void *arg);

/* A resource source (statedir, k8s): how status flows back to it. */
struct axn_source_ops {
	uint32_t size; /* sizeof(struct axn_source_ops) */
	/* Persist `status` for the object the source owns. Borrowed. */
	int (*write_status)(struct axn_mod *self, const struct axn_obj *obj, const struct json_t *status,
			    void *arg);
};

struct axn_host {
	uint32_t size; /* sizeof(struct axn_host) of the running core */
	uint32_t abi_minor;

	/* --- logging and health ------------------------------------------------ */
	void (*log)(struct axn_mod *self, int level, const char *fmt, ...)
		__attribute__((format(printf, 3, 4)));
	void (*vlog)(struct axn_mod *self, int level, const char *fmt, va_list ap);
	/* Report health; `reason` is copied. */
	void (*set_state)(struct axn_mod *self, uint32_t state, const char *reason);

	/* --- event loop --------------------------------------------------------- */
	int (*io_add)(struct axn_mod *self, int fd, uint32_t events, axn_io_cb cb, void *arg,
		      struct axn_handle **ret_h);
	/* One-shot (periodic == 0) or periodic timer, first firing after `ms`. */
	int (*timer_add)(struct axn_mod *self, uint64_t ms, int periodic, axn_timer_cb cb,
			 void *arg, struct axn_handle **ret_h);
	/* Run cb on the next loop iteration. */
	int (*defer)(struct axn_mod *self, axn_call_cb cb, void *arg);
	/* The only thread-safe call: run cb on the loop thread soon. */
	int (*post)(struct axn_mod *self, axn_call_cb cb, void *arg);
	/* Release any handle (timer, io, subscription, endpoint, metric, hook). NULL is a no-op. */
	void (*handle_free)(struct axn_mod *self, struct axn_handle *h);

	/* --- BPF map registry --------------------------------------------------- */
	/* Open (create or reuse) a pinned map; the fd belongs to the module's handle. */
	int (*map_open)(struct axn_mod *self, const char *name, const struct axn_map_spec *spec,
			int *ret_fd);

	/* --- datapath hooks ----------------------------------------------------- */
	/* The chain's PROG_ARRAY fd, for bpf_map__reuse_fd() before loading a tc/XDP program. */
	int (*hook_chain_fd)(struct axn_mod *self, uint32_t kind, int *ret_fd);
	int (*hook_attach)(struct axn_mod *self, const struct axn_hook_spec *spec, int prog_fd,
			   struct axn_handle **ret_h);
	/* Detach now (handle_free only forgets: attached programs outlive the agent). */
	int (*hook_detach)(struct axn_mod *self, struct axn_handle *h);

	/* --- resource store ----------------------------------------------------- */
	/*
	 * Subscribe to a kind: "Service", or "group/Kind" to restrict the API
	 * group ("cilium.io/CiliumLoadBalancerIPPool"; a version in between is
	 * accepted and ignored).
	 */
	int (*store_watch)(struct axn_mod *self, const char *kind, axn_store_cb cb, void *arg,
			   struct axn_handle **ret_h);
	/* A new reference to the object, or -ENOENT. ns may be NULL for cluster-scoped kinds. */
	int (*store_get)(struct axn_mod *self, const char *kind, const char *ns, const char *name,
			 struct axn_obj **ret_obj);
	/*
	 * Write status for an object; routed to the source that owns it. `status`
	 * is borrowed. The source's write_status runs synchronously inside this
	 * call and normally re-puts the object, which subscribers then see as
	 * MODIFIED (so write only when the status differs).
	 */
	int (*store_set_status)(struct axn_mod *self, const struct axn_obj *obj,
				const struct json_t *status);

	/* Sources only. */
	int (*source_register)(struct axn_mod *self, const char *name,
			       const struct axn_source_ops *ops, void *arg);
	/*
	 * Add or replace an object; takes ownership of `doc` (a complete
	 * manifest), even when it fails. An equal document is not an event.
	 */
	int (*source_put)(struct axn_mod *self, struct json_t *doc);
	int (*source_delete)(struct axn_mod *self, const char *kind, const char *ns,
			     const char *name);
	/* The source has delivered its initial state. */
	int (*source_synced)(struct axn_mod *self);
	/* Report (msg) or clear (msg == NULL) a problem with input `where` (file:line). */
	int (*source_error)(struct axn_mod *self, const char *where, const char *msg);

	/* Objects. */
	struct axn_obj *(*obj_ref)(struct axn_obj *obj);
	struct axn_obj *(*obj_unref)(struct axn_obj *obj); /* returns NULL */
	/*
	 * The object's document. Valid while you hold a reference (the borrowed
	 * one of a store callback included), not after: the host may keep an
	 * object nobody else holds as compact text and parse it again on demand.
	 */
	const struct json_t *(*obj_json)(const struct axn_obj *obj);

	/*
	 * Label selector ({matchLabels, matchExpressions}) against a labels
	 * object: 1 match, 0 no match, -EINVAL bad selector. A NULL or empty
	 * selector matches everything.
	 */
	int (*selector_match)(struct axn_mod *self, const struct json_t *selector, const struct json_t *labels);

	/* --- local API ----------------------------------------------------------- */
	/* Register "<module>/<path>"; the CLI reaches it as `axoneme <module> <path>`. */
	int (*api_register)(struct axn_mod *self, const char *path, axn_api_cb cb, void *arg,
			    struct axn_handle **ret_h);

	/* --- metrics ------------------------------------------------------------- */
	/* Exposed as axoneme_<module>_<name>; `help` is copied. */
	int (*metric_new)(struct axn_mod *self, const char *name, uint32_t type, const char *help,
			  struct axn_handle **ret_h);
	void (*metric_add)(struct axn_handle *m, double v);
	void (*metric_set)(struct axn_handle *m, double v);

	/* --- agent facts --------------------------------------------------------- */
	/* "node_name", "bpffs", "rundir", "cgroup": NULL if unknown. Valid until the module stops. */
	const char *(*agent_info)(struct axn_mod *self, const char *key);

	/* --- since ABI 1.1 -------------------------------------------------------- */
	/*
	 * Let the CLI reach one of the module's endpoints by another name, e.g.
	 * api_alias(self, "service/list", "services") makes `axoneme service
	 * list` answer as `axoneme <module> services`. Aliases are top-level,
	 * first come first served (-EEXIST); reclaimed when the module stops.
	 */
	int (*api_alias)(struct axn_mod *self, const char *alias, const char *path);
};

#define AXN_HOST_HAS(host, fn)                                                                     \
	((host)->size >= offsetof(struct axn_host, fn) + sizeof((host)->fn) && (host)->fn != NULL)

/* Convenience wrappers; `self` is the module's handle. */
#define axn_log(self, level, ...) (self)->host->log((self), (level), __VA_ARGS__)
#define axn_err(self, ...) axn_log((self), AXN_LOG_ERR, __VA_ARGS__)
#define axn_warn(self, ...) axn_log((self), AXN_LOG_WARN, __VA_ARGS__)
#define axn_info(self, ...) axn_log((self), AXN_LOG_INFO, __VA_ARGS__)
#define axn_debug(self, ...) axn_log((self), AXN_LOG_DEBUG, __VA_ARGS__)

#ifdef __cplusplus
}
#endif

#endif /* AXONEME_HOST_H */
