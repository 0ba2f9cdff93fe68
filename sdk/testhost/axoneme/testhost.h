/* SPDX-License-Identifier: Apache-2.0 */
/*
 * axoneme/testhost.h - a scriptable fake host for module unit tests
 * (libaxoneme-testhost). No root, no kernel, no event loop: the test drives
 * everything by hand.
 *
 *   struct axn_testhost *th = axn_testhost_new(&axn_module_hello_desc,
 *                                              (const char *[]){"greeting", "hi", NULL});
 *   assert_int_equal(axn_testhost_init(th), 0);
 *   assert_int_equal(axn_testhost_start(th), 0);
 *   axn_testhost_advance(th, 1000);          // fire timers due within 1 s
 *   axn_testhost_run_pending(th);            // defer/post calls and store deliveries
 *   assert_non_null(axn_testhost_log_find(th, "hello"));
 *   assert_int_equal(axn_testhost_free(th), 0); // stops the module; 0 = nothing leaked
 *
 * What the fake does, call by call:
 *  - log/vlog are recorded ("<level>: <message>"); AXN_TESTHOST_VERBOSE=1 in
 *    the environment echoes them to stderr. set_state records the last value.
 *  - Timers run on a fake clock that starts at 0 and moves only with
 *    axn_testhost_advance(). A one-shot timer that fired stays allocated
 *    (disarmed) until the module frees it.
 *  - io_add only records the watch: axn_testhost_io_fire() calls it.
 *  - defer and post queue their call; so does every store delivery. Nothing
 *    runs until axn_testhost_run_pending(), which drains the queue in order.
 *  - The store is real and in memory and follows the core's rules: objects
 *    keyed by kind/namespace/name, one source per object (a put over another
 *    source's object is -EEXIST, its delete -EPERM); store_watch replays
 *    ADDED for what exists, then SYNCED once the module has started and every
 *    source has synced, then ADDED/MODIFIED/DELETED. A put of an equal
 *    document delivers nothing. Kinds are watched bare ("Service", any group)
 *    or with a group ("cilium.io/v2alpha1/CiliumLoadBalancerIPPool": the
 *    group is compared, "" for core kinds).
 *  - The test plays a second source with axn_testhost_inject() (if it
 *    injects before the module starts, SYNCED waits for
 *    axn_testhost_inject(th, AXN_EV_SYNCED, NULL)); status that the module
 *    writes for those objects is recorded (axn_testhost_status()). Status
 *    for the module's own objects goes to its write_status op.
 *  - map_open fails with -EOPNOTSUPP unless axn_testhost_set_map() gave a
 *    fd for the name (the fd stays the test's: the fake never closes it);
 *    hook_* always fail with -EOPNOTSUPP.
 *  - agent_info answers from a table: node_name is "testnode" until
 *    axn_testhost_set_info() says otherwise; the other keys are NULL.
 *
 * Handles the module still holds when it stops (or when the host is freed)
 * are leaks: they are reported on stderr by name and counted, as are objects
 * whose references were not all released.
 */
#ifndef AXONEME_TESTHOST_H
#define AXONEME_TESTHOST_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <axoneme/axoneme.h>

#ifdef __cplusplus
extern "C" {
#endif

struct axn_testhost;

/*
 * A fake host with one module. `conf` is NULL or a NULL-terminated list of
 * "key", "value" pairs overriding the option defaults, as the conf file
 * would (booleans "true"/"false"/"1"/"0", strlists "a,b"). NULL if the
 * descriptor or the conf is bad; the reason is printed on stderr.
 */
struct axn_testhost *axn_testhost_new(const struct axn_module_desc *desc, const char *const *conf);
/* Stop and fini the module if needed, free everything; returns the number of leaks. */
int axn_testhost_free(struct axn_testhost *th);

/* The module's handle (self) and its filled conf struct. */
struct axn_mod *axn_testhost_mod(struct axn_testhost *th);
const void *axn_testhost_conf(struct axn_testhost *th);

/*
 * Lifecycle; each returns the hook's result (0 if the hook is NULL). A failed
 * start is undone as the core does (handles and objects dropped, no leak
 * reported); the module can then only be fini'd.
 */
int axn_testhost_init(struct axn_testhost *th);
int axn_testhost_start(struct axn_testhost *th);
/*
 * As the core: the module's objects are deleted from the store (its source
 * is gone), its errors cleared, queued calls dropped; handles it still holds
 * are reclaimed and reported as leaks.
 */
int axn_testhost_stop(struct axn_testhost *th);
void axn_testhost_fini(struct axn_testhost *th);
/* New overrides: reconfigure in place, or stop/fini/init/start if NULL or -EOPNOTSUPP. */
int axn_testhost_reconfigure(struct axn_testhost *th, const char *const *conf);

/* Agent facts and fake maps. value NULL removes the key. */
int axn_testhost_set_info(struct axn_testhost *th, const char *key, const char *value);
int axn_testhost_set_map(struct axn_testhost *th, const char *name, int fd);

/* Recorded logs: lines are "<err|warn|info|debug>: <message>". substr NULL matches all. */
size_t axn_testhost_log_count(struct axn_testhost *th, const char *substr);
const char *axn_testhost_log_find(struct axn_testhost *th, const char *substr);
const char *axn_testhost_log_line(struct axn_testhost *th, size_t i);
void axn_testhost_log_clear(struct axn_testhost *th);

/* Last set_state (0 if never called); *ret_reason may be NULL. */
uint32_t axn_testhost_state(struct axn_testhost *th, const char **ret_reason);
/* A metric's value by the name the module gave, or -ENOENT. */
int axn_testhost_metric(struct axn_testhost *th, const char *name, double *ret_value);
/*
 * Call an endpoint by "<module>/<path>", bare "<path>", or an alias the
 * module declared with api_alias ("service/list"); args NULL is {}.
 * Returns the handler's result; *ret_resp (new reference) and *ret_err
 * (malloc'd, may be NULL) are written as the handler left them.
 */
int axn_testhost_api_call(struct axn_testhost *th, const char *path, const json_t *args,
			  json_t **ret_resp, char **ret_err);

/* Fake clock and event loop. Each returns how many callbacks ran, or -errno. */
uint64_t axn_testhost_now_ms(struct axn_testhost *th);
int axn_testhost_advance(struct axn_testhost *th, uint64_t ms); /* fires what falls due */
int axn_testhost_fire_timers(struct axn_testhost *th);           /* every armed timer, once */
size_t axn_testhost_timer_count(struct axn_testhost *th);        /* armed timers */
int axn_testhost_io_fire(struct axn_testhost *th, int fd, uint32_t events); /* fd < 0: all */
int axn_testhost_run_pending(struct axn_testhost *th);

/*
 * Play a source: AXN_EV_ADDED or AXN_EV_MODIFIED puts `doc`, AXN_EV_DELETED
 * deletes the object `doc` names, AXN_EV_SYNCED (doc NULL) marks the test's
 * source synced. Takes ownership of doc.
 */
int axn_testhost_inject(struct axn_testhost *th, uint32_t event, json_t *doc);
/* Borrowed document of a stored object, or NULL. ns NULL for cluster-scoped. */
const json_t *axn_testhost_store_doc(struct axn_testhost *th, const char *kind, const char *ns,
				     const char *name);
size_t axn_testhost_store_count(struct axn_testhost *th, const char *kind); /* kind NULL: all */
/*
 * Every put and delete since the last clear, whoever subscribes:
 * [{"event", "kind", "namespace", "name", "object"}], event one of "ADDED",
 * "MODIFIED", "DELETED" or "UNCHANGED" (a put of an equal document, which
 * subscribers do not see: a source re-putting what did not change shows here).
 */
const json_t *axn_testhost_events(struct axn_testhost *th);
/* How many of those match; 0/NULL arguments match anything (UNCHANGED too). */
size_t axn_testhost_events_count(struct axn_testhost *th, uint32_t event, const char *kind,
				 const char *name);
void axn_testhost_events_clear(struct axn_testhost *th);
/* Play a consumer: store_set_status for an object, routed to its source. */
int axn_testhost_set_status(struct axn_testhost *th, const char *kind, const char *ns,
			    const char *name, const json_t *status);
/* The last status the module wrote for an injected object, or NULL. */
const json_t *axn_testhost_status(struct axn_testhost *th, const char *kind, const char *ns,
				  const char *name);
/* Errors the module's source reports now: {"where": "message"}. */
const json_t *axn_testhost_source_errors(struct axn_testhost *th);

#ifdef __cplusplus
}
#endif

#endif /* AXONEME_TESTHOST_H */
