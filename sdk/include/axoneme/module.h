/* SPDX-License-Identifier: Apache-2.0 */
/*
 * axoneme/module.h - the module descriptor: what a module is, read by the
 * loader before any module code runs.
 *
 * A module is a shared object that exports exactly one symbol, axn_module_v1,
 * a const struct axn_module_desc. Write it with AXN_MODULE_DEFINE().
 *
 * ABI rule: the loader accepts a module when abi_major equals the host's
 * AXN_ABI_MAJOR and abi_minor <= the host's AXN_ABI_MINOR. Structs in this
 * SDK only grow at the end and carry their size; a function whose signature
 * changes gets a new name. No enums cross the boundary (uint32_t + defines).
 *
 * Module life cycle, driven by the core on its single loop thread:
 *
 *      dlopen + checks        init()            start()
 *   LOADED ---------> LOADED ------> INITIALIZED ------> UP
 *                                        ^                |  reconfigure()
 *                                        |                |<-------------+
 *                               fini()   |       stop()   v              |
 *   (unloaded) <--------------- STOPPED <------------ STOPPING   (0: applied,
 *                                                              -EOPNOTSUPP:
 *                                                               restarted)
 *
 *  - init(self, conf) allocates state from the validated conf; no kernel side
 *    effects, no host resources.
 *  - start(self) opens maps, attaches programs, subscribes to the store and
 *    registers API endpoints. A non-zero return disables the module and every
 *    module that hard-depends on it (unless the conf marks it required).
 *  - reconfigure(self, new_conf) applies a changed option block in place;
 *    return -EOPNOTSUPP (or leave it NULL) to have the core restart the module.
 *  - stop(self) releases what start() took that the core cannot (threads,
 *    external state). Everything created through the host (timers, fds,
 *    subscriptions, endpoints, metrics) is reclaimed by the core afterwards;
 *    leftovers are logged by name. Pinned maps and attached programs stay:
 *    traffic keeps flowing while the agent is down.
 *  - fini(self) frees module state.
 */
#ifndef AXONEME_MODULE_H
#define AXONEME_MODULE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AXN_ABI_MAJOR 1
#define AXN_ABI_MINOR 1

struct axn_mod;
struct axn_host;

/* Option types (struct axn_option.type). */
#define AXN_OPT_BOOL 1    /* int, 0 or 1 */
#define AXN_OPT_INT 2     /* int64_t, within [min, max] */
#define AXN_OPT_STRING 3  /* const char *, owned by the core */
#define AXN_OPT_STRLIST 4 /* const char *const *, NULL-terminated, owned by the core */

/* Option flags. */
#define AXN_OPTF_REQUIRED 0x1u /* no default: the conf must set it */

/*
 * One configuration option: a key in the module's group of the conf file,
 * written into the module's conf struct at `offset`. The core validates type,
 * range and unknown keys for every module before any module code runs, and
 * reports errors with file and line.
 */
struct axn_option {
	const char *key;  /* [a-z0-9_]+ */
	uint32_t type;    /* AXN_OPT_* */
	uint32_t flags;   /* AXN_OPTF_* */
	size_t offset;    /* offsetof(struct your_conf, field) */
	const char *def;  /* default as text ("1", "true", "x", "a,b"); NULL = zero/NULL */
	int64_t min, max; /* AXN_OPT_INT bounds (both 0: unbounded) */
	const char *help; /* one line, shown by `axonemed --list-options` */
};

#define AXN_OPTIONS_END {NULL, 0, 0, 0, NULL, 0, 0, NULL}

/* Module descriptor. Field order is ABI: never reorder, append only. */
struct axn_module_desc {
	uint32_t abi_major;
	uint32_t abi_minor;
	uint32_t desc_size; /* sizeof(struct axn_module_desc) at build time */
	uint32_t abi_fingerprint; /* AXN_ABI_FINGERPRINT at build time */

	const char *name;        /* [a-z0-9_]+, equal to the file stem and conf group */
	const char *version;     /* informational */
	const char *description; /* one line */

	/*
	 * Capabilities as namespaced strings ("mod:lb", "map:lb4_services",
	 * "store:Service", "svc:election"), NULL-terminated arrays or NULL.
	 * Every module provides "mod:<name>" implicitly; the core provides
	 * "store:*", "hook:tc", "hook:xdp", "hook:cgroup" and "svc:api".
	 * requires: hard (missing -> module disabled); wants: soft (ordering only).
	 */
	const char *const *provides;
	const char *const *requires;
	const char *const *wants;

	const struct axn_option *options; /* terminated by AXN_OPTIONS_END; may be NULL */
	size_t conf_size;                 /* size of the conf struct the options fill */

	int (*init)(struct axn_mod *self, const void *conf);
	int (*start)(struct axn_mod *self);
	int (*reconfigure)(struct axn_mod *self, const void *new_conf);
	int (*stop)(struct axn_mod *self);
	void (*fini)(struct axn_mod *self);
};

/* Catches a module built for another pointer size or byte order. */
#define AXN_ABI_FINGERPRINT                                                                        \
	((uint32_t)(sizeof(void *) << 8 | sizeof(size_t) << 4 |                                    \
		    (uint32_t)(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)))

/*
 * The handle the core passes to every lifecycle hook. Modules read `host`
 * and own `state`; the core keeps private fields after these two.
 */
struct axn_mod {
	const struct axn_host *host; /* services table, never NULL */
	void *state;                 /* the module's own; the core never touches it */
};

#if defined(__GNUC__)
#define AXN_EXPORT __attribute__((visibility("default")))
#else
#define AXN_EXPORT
#endif

/*
 * AXN_MODULE_DEFINE(name, ...designated initializers...) emits the
 * descriptor as axn_module_<name>_desc and, unless AXN_MODULE_STATIC is
 * defined (a module linked into a test binary), the exported alias
 * axn_module_v1 that the loader looks up.
 */
#ifdef AXN_MODULE_STATIC
#define AXN__MODULE_ALIAS(n)
#else
#define AXN__MODULE_ALIAS(n)                                                                       \
	extern const struct axn_module_desc axn_module_v1                                          \
		__attribute__((alias("axn_module_" #n "_desc"))) AXN_EXPORT;
#endif

#define AXN_MODULE_DEFINE(n, ...)                                                                  \
	const struct axn_module_desc axn_module_##n##_desc = {                                     \
		.abi_major = AXN_ABI_MAJOR,                                                        \
		.abi_minor = AXN_ABI_MINOR,                                                        \
		.desc_size = sizeof(struct axn_module_desc),                                       \
		.abi_fingerprint = AXN_ABI_FINGERPRINT,                                            \
		.name = #n,                                                                        \
		__VA_ARGS__};                                                                      \
	AXN__MODULE_ALIAS(n)

#ifdef __cplusplus
}
#endif

#endif /* AXONEME_MODULE_H */
