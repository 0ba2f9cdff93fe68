// SPDX-License-Identifier: Apache-2.0
/*
 * test_lb_module.c - the lb module on the testhost: store events in, real
 * (unpinned) BPF maps out, socket LB off (the testhost has no hooks). Covers
 * "nothing before sync", updates and deletes, a slice moving between
 * services, a live lb-algorithm change, a full map (health, metric, the
 * services view), a restart that adopts the maps, and syncs big enough for
 * the second threads (parsing, map writes). Needs root for the
 * maps; skipped otherwise.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <cmocka.h>

#include <axoneme/testhost.h>

#include "lb.h" /* LB_GRACE_MS */
#include "lb_shared.h"
#include "lb_test.h"

extern const struct axn_module_desc axn_module_lb_desc;

struct fx {
	int fd[LBM_N];
	uint32_t max[LBM_N];
	struct axn_testhost *th;
};

/*
 * The maps as the module's configuration asks for them, except svc4_real:
 * max_entries of the real lb4_services map when not what the module is
 * told (0: as told).
 */
static int setup_n(void **state, const char *svc_max, const char *slots_max, uint32_t svc4_real)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	const char *conf[] = {"socket_lb", "false", "services_max", svc_max, "slots_max", slots_max,
			      NULL};
	int r;

	fx->max[LBM_SVC4] = fx->max[LBM_SVC6] = (uint32_t)atoi(svc_max);
	fx->max[LBM_SLOTS] = (uint32_t)atoi(slots_max);
	fx->max[LBM_BE4] = fx->max[LBM_BE6] = fx->max[LBM_RN4] = fx->max[LBM_RN6] = 65537;
	fx->max[LBM_SK4] = fx->max[LBM_SK6] = 262144;
	fx->max[LBM_AFF] = 65536;
	if (svc4_real)
		fx->max[LBM_SVC4] = svc4_real;
	r = lbt_maps_create(fx->fd, fx->max);
	if (r < 0) {
		print_message("cannot create BPF maps (%s): skipped (needs root)\n", strerror(-r));
		free(fx);
		*state = NULL;
		return 0;
	}
	fx->th = axn_testhost_new(&axn_module_lb_desc, conf);
	assert_non_null(fx->th);
	for (int i = 0; i < LBM_N; i++)
		assert_int_equal(axn_testhost_set_map(fx->th, lb_map_defs[i].name, fx->fd[i]), 0);
	assert_int_equal(axn_testhost_init(fx->th), 0);
	*state = fx;
	return 0;
}

static int setup(void **state)
{
	return setup_n(state, "1024", "4096", 0);
}

/*
 * The module believes lb4_services holds 1024 (services_max) but the map it
 * gets holds 1: its capacity check passes and the kernel refuses the write
 * -- a failed map write as any other.
 */
static int setup_tiny_services(void **state)
{
	return setup_n(state, "1024", "4096", 1);
}

static int setup_few_slots(void **state)
{
	return setup_n(state, "1024", "16", 0);
}

static int setup_big(void **state)
{
	return setup_n(state, "65536", "65536", 0);
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	if (!fx)
		return 0;
	assert_int_equal(axn_testhost_free(fx->th), 0); /* no leaked handles or objects */
	lbt_maps_close(fx->fd);
	free(fx);
	return 0;
}

#define NEED_ROOT(fx)                                                                              \
	do {                                                                                       \
		if (!(fx))                                                                         \
			skip();                                                                    \
	} while (0)

static struct lb_svc_val master(struct fx *fx, const char *ip, int *found)
{
	struct lb4_key k = {.port = htons(80), .proto = IPPROTO_TCP};
	struct lb_svc_val v = {0};

	inet_pton(AF_INET, ip, &k.addr);
	*found = bpf_map_lookup_elem(fx->fd[LBM_SVC4], &k, &v) == 0;
	return v;
}

/* The backend id in slot i of a master's range (asserting it names a live backend). */
static uint32_t slot_backend(struct fx *fx, const struct lb_svc_val *v, uint32_t i)
{
	struct lb_slot sl = {0};
	struct lb4_backend be = {0};
	uint32_t k = v->slot_base + i;

	assert_true(i < v->count);
	assert_int_equal(bpf_map_lookup_elem(fx->fd[LBM_SLOTS], &k, &sl), 0);
	assert_int_equal(bpf_map_lookup_elem(fx->fd[LBM_BE4], &sl.backend_id, &be), 0);
	assert_int_not_equal(be.proto, 0);
	return sl.backend_id;
}

static void put(struct fx *fx, json_t *doc)
{
	assert_int_equal(axn_testhost_inject(fx->th, AXN_EV_MODIFIED, doc), 0);
}

static void del(struct fx *fx, json_t *doc)
{
	assert_int_equal(axn_testhost_inject(fx->th, AXN_EV_DELETED, doc), 0);
}

static void run(struct fx *fx)
{
	while (axn_testhost_run_pending(fx->th) > 0)
		;
}

static bool has_string(const json_t *arr, const char *want)
{
	size_t i;
	const json_t *v;

	json_array_foreach(arr, i, v)
		if (json_is_string(v) && !strcmp(json_string_value(v), want))
			return true;
	return false;
}

static void test_store_to_maps(void **state)
{
	struct fx *fx = *state;
	json_t *resp = NULL;
	char *err = NULL;
	int found;

	NEED_ROOT(fx);
	put(fx, lbt_service("ns", "web", "10.96.0.10", 80, "TCP", NULL));
	put(fx, lbt_slice("ns", "web", "web-a", 0, "10.200.1.", 2, 2, 8080, "TCP", "testnode"));
	put(fx, lbt_slice("ns", "web", "web-b", 0, "10.200.2.", 2, 1, 8080, "TCP", "node2"));
	assert_int_equal(axn_testhost_start(fx->th), 0);
	run(fx);
	/* Not synced yet: nothing written (a restart never shows a half-replayed store). */
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 0);
	assert_int_equal(axn_testhost_inject(fx->th, AXN_EV_SYNCED, NULL), 0);
	run(fx);
	assert_int_equal(master(fx, "10.96.0.10", &found).count, 3);
	assert_true(found);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 3);
	assert_non_null(axn_testhost_log_find(fx->th, "in sync"));
	assert_int_equal(axn_testhost_state(fx->th, NULL), AXN_STATE_UP);

	/* The services view. */
	assert_int_equal(axn_testhost_api_call(fx->th, "lb/services", NULL, &resp, &err), 0);
	{
		const json_t *items = json_object_get(resp, "items"), *it = json_array_get(items, 0);

		assert_int_equal(json_array_size(items), 1);
		assert_string_equal(json_string_value(json_object_get(it, "frontend")), "10.96.0.10:80/TCP");
		assert_string_equal(json_string_value(json_object_get(it, "service")), "ns/web");
		assert_string_equal(json_string_value(json_object_get(it, "type")), "ClusterIP");
		assert_int_equal(json_array_size(json_object_get(it, "backends")), 3);
		/* From the writer: what the node keeps has no backends (lb_svc_view). */
		assert_true(has_string(json_object_get(it, "backends"), "10.200.1.2:8080 (active)"));
		assert_true(has_string(json_object_get(it, "backends"), "10.200.1.3:8080 (active)"));
		assert_true(has_string(json_object_get(it, "backends"), "10.200.2.2:8080 (active)"));
	}
	json_decref(resp);
	assert_int_equal(axn_testhost_api_call(fx->th, "lb/bpf", NULL, &resp, &err), 0);
	assert_int_equal(json_array_size(json_object_get(resp, "items")), 1);
	json_decref(resp);
	/* Cilium's spellings reach the same views. */
	assert_int_equal(axn_testhost_api_call(fx->th, "service/list", NULL, &resp, &err), 0);
	assert_int_equal(json_array_size(json_object_get(resp, "items")), 1);
	json_decref(resp);
	assert_int_equal(axn_testhost_api_call(fx->th, "bpf/lb/list", NULL, &resp, &err), 0);
	assert_int_equal(json_array_size(json_object_get(resp, "items")), 1);
	json_decref(resp);

	/* Scale down: slice b goes. */
	del(fx, lbt_slice("ns", "web", "web-b", 0, "10.200.2.", 2, 1, 8080, "TCP", "node2"));
	run(fx);
	assert_int_equal(master(fx, "10.96.0.10", &found).count, 2);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 2);
	/* Scale up: slice a grows. */
	put(fx, lbt_slice("ns", "web", "web-a", 0, "10.200.1.", 2, 4, 8080, "TCP", "testnode"));
	run(fx);
	assert_int_equal(master(fx, "10.96.0.10", &found).count, 4);

	/* ITP Local on the live service: only this node's (testnode) endpoints. */
	put(fx, lbt_slice("ns", "web", "web-b", 0, "10.200.2.", 2, 1, 8080, "TCP", "node2"));
	run(fx);
	assert_int_equal(master(fx, "10.96.0.10", &found).count, 5);
	put(fx, lbt_service("ns", "web", "10.96.0.10", 80, "TCP", "{\"internalTrafficPolicy\": \"Local\"}"));
	run(fx);
	assert_int_equal(master(fx, "10.96.0.10", &found).count, 4);

	/* The service goes: everything of it goes. */
	del(fx, lbt_service("ns", "web", "10.96.0.10", 80, "TCP", NULL));
	run(fx);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_RN4]), 0);
	assert_int_equal(axn_testhost_stop(fx->th), 0);
}

static void test_slice_moves_and_algorithm(void **state)
{
	struct fx *fx = *state;
	json_t *svc;
	int found;

	NEED_ROOT(fx);
	assert_int_equal(axn_testhost_start(fx->th), 0);
	assert_int_equal(axn_testhost_inject(fx->th, AXN_EV_SYNCED, NULL), 0);
	put(fx, lbt_service("ns", "a", "10.96.0.1", 80, "TCP", NULL));
	put(fx, lbt_service("ns", "b", "10.96.0.2", 80, "TCP", NULL));
	put(fx, lbt_slice("ns", "a", "s1", 0, "10.200.1.", 2, 2, 8080, "TCP", "testnode"));
	run(fx);
	assert_int_equal(master(fx, "10.96.0.1", &found).count, 2);
	assert_int_equal(master(fx, "10.96.0.2", &found).count, 0);
	assert_true(found); /* a frontend without backends exists: it refuses connections */
	/* The slice's label now names b. */
	put(fx, lbt_slice("ns", "b", "s1", 0, "10.200.1.", 2, 2, 8080, "TCP", "testnode"));
	run(fx);
	assert_int_equal(master(fx, "10.96.0.1", &found).count, 0);
	assert_int_equal(master(fx, "10.96.0.2", &found).count, 2);

	/* lb-algorithm changes on the live service: no recreation needed (SVC-17). */
	svc = lbt_service("ns", "b", "10.96.0.2", 80, "TCP", NULL);
	json_object_set_new(json_object_get(svc, "metadata"), "annotations",
			    json_pack("{s:s}", "service.cilium.io/lb-algorithm", "maglev"));
	put(fx, svc);
	run(fx);
	assert_int_equal(master(fx, "10.96.0.2", &found).algorithm, LB_A_MAGLEV);
	assert_int_equal(master(fx, "10.96.0.2", &found).count, 2);
	assert_int_equal(axn_testhost_stop(fx->th), 0);
}

/* Started and synced, with service a (12 backends) holding all 16 slots of lb_slots. */
static void start_with_a(struct fx *fx)
{
	assert_int_equal(axn_testhost_start(fx->th), 0);
	assert_int_equal(axn_testhost_inject(fx->th, AXN_EV_SYNCED, NULL), 0);
	put(fx, lbt_service("ns", "a", "10.96.0.1", 80, "TCP", NULL));
	put(fx, lbt_slice("ns", "a", "sa", 0, "10.200.1.", 2, 12, 8080, "TCP", "testnode"));
	run(fx);
}

static void test_full_map(void **state)
{
	struct fx *fx = *state;
	const char *reason = NULL;
	json_t *resp = NULL;
	char *err = NULL;
	double v = 0;
	int found;

	NEED_ROOT(fx);
	/* lb_slots holds 16: a takes all of them (12 backends), b (3) does not fit. */
	start_with_a(fx);
	put(fx, lbt_service("ns", "b", "10.96.0.2", 80, "TCP", NULL));
	put(fx, lbt_slice("ns", "b", "sb", 0, "10.200.2.", 2, 3, 8080, "TCP", "testnode"));
	run(fx);
	assert_int_equal(axn_testhost_state(fx->th, &reason), AXN_STATE_DEGRADED);
	assert_non_null(strstr(reason, "ns/b"));
	assert_non_null(strstr(reason, "lb_slots"));
	assert_non_null(axn_testhost_log_find(fx->th, "err: service ns/b: map lb_slots is full"));
	assert_int_equal(axn_testhost_metric(fx->th, "map_full_errors_total", &v), 0);
	assert_true(v >= 1);
	master(fx, "10.96.0.2", &found);
	assert_false(found);
	assert_int_equal(axn_testhost_api_call(fx->th, "lb/services", NULL, &resp, &err), 0);
	assert_int_equal(json_integer_value(json_object_get(resp, "refused")), 1);
	{
		char *dump = json_dumps(resp, 0);

		assert_non_null(strstr(dump, "is full"));
		free(dump);
	}
	json_decref(resp);

	/*
	 * a goes. Its slots are reused only after the grace period (a program
	 * may still read them); then b is retried, fits, and health comes back.
	 */
	del(fx, lbt_service("ns", "a", "10.96.0.1", 80, "TCP", NULL));
	run(fx);
	master(fx, "10.96.0.1", &found);
	assert_false(found);
	master(fx, "10.96.0.2", &found);
	assert_false(found);
	assert_int_equal(axn_testhost_state(fx->th, NULL), AXN_STATE_DEGRADED);
	/* One line says why, not an error per waiting service. */
	assert_non_null(axn_testhost_log_find(fx->th, "warn: 1 service(s) wait for map entries freed"));
	assert_int_equal(axn_testhost_log_count(fx->th, "err: service ns/b"), 1);
	assert_int_equal(axn_testhost_advance(fx->th, 2 * LB_GRACE_MS), 2);
	assert_int_equal(master(fx, "10.96.0.2", &found).count, 3);
	assert_true(found);
	assert_int_equal(axn_testhost_state(fx->th, NULL), AXN_STATE_UP);
	/* Nothing waits any more: the grace timer is gone. */
	assert_int_equal(axn_testhost_advance(fx->th, 2 * LB_GRACE_MS), 0);
	assert_int_equal(axn_testhost_stop(fx->th), 0);
}

/* A map write that fails is retried with backoff until it gets through. */
static void test_write_retry(void **state)
{
	struct fx *fx = *state;
	const char *reason = NULL;
	double v = 0;
	int found;

	NEED_ROOT(fx);
	assert_int_equal(axn_testhost_start(fx->th), 0);
	assert_int_equal(axn_testhost_inject(fx->th, AXN_EV_SYNCED, NULL), 0);
	put(fx, lbt_service("ns", "a", "10.96.0.1", 80, "TCP", NULL));
	put(fx, lbt_slice("ns", "a", "sa", 0, "10.200.1.", 2, 3, 8080, "TCP", "testnode"));
	run(fx);
	assert_int_equal(axn_testhost_state(fx->th, NULL), AXN_STATE_UP);
	assert_int_equal(axn_testhost_timer_count(fx->th), 0);

	/* b's master does not fit beside a's: the kernel refuses it. */
	put(fx, lbt_service("ns", "b", "10.96.0.2", 80, "TCP", NULL));
	put(fx, lbt_slice("ns", "b", "sb", 0, "10.200.2.", 2, 3, 8080, "TCP", "testnode"));
	run(fx);
	assert_int_equal(axn_testhost_state(fx->th, &reason), AXN_STATE_DEGRADED);
	assert_non_null(strstr(reason, "writing the lb maps failed"));
	assert_non_null(axn_testhost_log_find(fx->th, "err: writing the lb maps failed"));
	assert_non_null(axn_testhost_log_find(fx->th, "retrying in 100 ms"));
	assert_int_equal(axn_testhost_timer_count(fx->th), 1);

	/* Still too small: the retry fails, and the next waits twice as long. */
	assert_int_equal(axn_testhost_advance(fx->th, 99), 0);
	assert_int_equal(axn_testhost_advance(fx->th, 1), 1);
	assert_int_equal(axn_testhost_metric(fx->th, "map_write_retries_total", &v), 0);
	assert_true(v == 1);
	assert_int_equal(axn_testhost_state(fx->th, &reason), AXN_STATE_DEGRADED);
	assert_non_null(strstr(reason, "in 200 ms"));
	assert_int_equal(axn_testhost_advance(fx->th, 199), 0);
	assert_int_equal(axn_testhost_advance(fx->th, 1), 1);
	assert_int_equal(axn_testhost_metric(fx->th, "map_write_retries_total", &v), 0);
	assert_true(v == 2);
	assert_int_equal(axn_testhost_log_count(fx->th, "err: writing the lb maps failed"), 1);

	/*
	 * a goes. Its flush still fails (b's master is written before a's is
	 * deleted) but leaves room; the retry then writes b completely.
	 */
	del(fx, lbt_service("ns", "a", "10.96.0.1", 80, "TCP", NULL));
	del(fx, lbt_slice("ns", "a", "sa", 0, "10.200.1.", 2, 3, 8080, "TCP", "testnode"));
	run(fx);
	master(fx, "10.96.0.1", &found);
	assert_false(found);
	assert_int_equal(axn_testhost_state(fx->th, NULL), AXN_STATE_DEGRADED);
	assert_int_equal(axn_testhost_advance(fx->th, 400), 1);
	assert_int_equal(axn_testhost_state(fx->th, &reason), AXN_STATE_UP);
	/* No retry waits; the one timer left is the grace period of a's ids and slots. */
	assert_int_equal(axn_testhost_timer_count(fx->th), 1);
	assert_int_equal(axn_testhost_advance(fx->th, 2 * LB_GRACE_MS), 2);
	assert_int_equal(axn_testhost_timer_count(fx->th), 0);
	assert_non_null(axn_testhost_log_find(fx->th, "info: lb maps written after 3 retries"));
	assert_int_equal(axn_testhost_metric(fx->th, "map_write_retries_total", &v), 0);
	assert_true(v == 3);
	{
		struct lb_svc_val mv = master(fx, "10.96.0.2", &found);

		assert_true(found);
		assert_int_equal(mv.count, 3);
		/* Every slot names a backend that exists. */
		for (uint32_t i = 0; i < 3; i++)
			slot_backend(fx, &mv, i);
	}
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 3);

	/* The next failure starts over at 100 ms. */
	put(fx, lbt_service("ns", "c", "10.96.0.3", 80, "TCP", NULL));
	run(fx);
	assert_int_equal(axn_testhost_state(fx->th, &reason), AXN_STATE_DEGRADED);
	assert_non_null(strstr(reason, "in 100 ms"));
	assert_int_equal(axn_testhost_stop(fx->th), 0);
}

static void test_restart_adopts(void **state)
{
	struct fx *fx = *state;
	struct lb4_backend be;
	uint32_t id1 = 0, id2 = 0, rn1, rn2;
	struct lb_svc_val v;
	int found;

	NEED_ROOT(fx);
	assert_int_equal(axn_testhost_start(fx->th), 0);
	assert_int_equal(axn_testhost_inject(fx->th, AXN_EV_SYNCED, NULL), 0);
	put(fx, lbt_service("ns", "a", "10.96.0.1", 80, "TCP", NULL));
	put(fx, lbt_slice("ns", "a", "sa", 0, "10.200.1.", 2, 2, 8080, "TCP", "testnode"));
	put(fx, lbt_service("ns", "gone", "10.96.0.9", 80, "TCP", NULL));
	run(fx);
	v = master(fx, "10.96.0.1", &found);
	id1 = slot_backend(fx, &v, 0);
	rn1 = v.rev_nat_id;
	assert_int_equal(axn_testhost_stop(fx->th), 0);

	/* While "down": the maps still answer; the service "gone" is deleted meanwhile. */
	assert_int_equal(master(fx, "10.96.0.1", &found).count, 2);
	del(fx, lbt_service("ns", "gone", "10.96.0.9", 80, "TCP", NULL));
	axn_testhost_log_clear(fx->th);
	axn_testhost_fini(fx->th);
	assert_int_equal(axn_testhost_init(fx->th), 0);
	assert_int_equal(axn_testhost_start(fx->th), 0);
	assert_non_null(axn_testhost_log_find(fx->th, "adopted 2 frontends and 2 backends"));
	run(fx);
	v = master(fx, "10.96.0.1", &found);
	id2 = slot_backend(fx, &v, 0);
	rn2 = v.rev_nat_id;
	assert_int_equal(id1, id2);
	assert_int_equal(rn1, rn2);
	assert_int_equal(bpf_map_lookup_elem(fx->fd[LBM_BE4], &id2, &be), 0);
	master(fx, "10.96.0.9", &found);
	assert_false(found); /* pruned after the sync */
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 1);
	assert_int_equal(axn_testhost_stop(fx->th), 0);
}

/*
 * Enough objects for the sync's second threads (parsing from 2048 events,
 * map writes from 8192 entries a step), then a batch of changes big enough
 * for them too, whose order matters (a service deleted and added again, at
 * another address, in the same batch).
 */
#define BIG 10000 /* more than STEP_PARALLEL_MIN: the first flush streams its masters */

static json_t *big_slice(int i, int n)
{
	char name[32], svc[32], base[32];

	snprintf(base, sizeof(base), "10.%d.%d.", 100 + i / 256, i % 256);
	snprintf(svc, sizeof(svc), "s%d", i);
	snprintf(name, sizeof(name), "s%d-x", i);
	return lbt_slice("big", svc, name, 0, base, 1, n, 8080, "TCP", "testnode");
}

/* Service i on 10.<net>.<i / 256>.<i % 256>. */
static void big_ip(char *ip, size_t len, int net, int i)
{
	snprintf(ip, len, "10.%d.%d.%d", net, i / 256, i % 256);
}

static json_t *big_service(int i, int net)
{
	char name[32], ip[32];

	big_ip(ip, sizeof(ip), net, i);
	snprintf(name, sizeof(name), "s%d", i);
	return lbt_service("big", name, ip, 80, "TCP", NULL);
}

static uint16_t big_count(struct fx *fx, int i, int net, int *found)
{
	char ip[32];

	big_ip(ip, sizeof(ip), net, i);
	return (uint16_t)master(fx, ip, found).count;
}

static void test_big_sync(void **state)
{
	struct fx *fx = *state;
	int found;

	NEED_ROOT(fx);
	for (int i = 0; i < BIG; i++) {
		put(fx, big_service(i, 96));
		put(fx, big_slice(i, 2));
	}
	assert_int_equal(axn_testhost_inject(fx->th, AXN_EV_SYNCED, NULL), 0);
	assert_int_equal(axn_testhost_start(fx->th), 0);
	run(fx);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), BIG);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), BIG * 2);
	assert_int_equal(lbt_count(fx->fd[LBM_RN4]), BIG);
	for (int i = 0; i < BIG; i += 97) {
		assert_int_equal(big_count(fx, i, 96, &found), 2);
		assert_true(found);
	}

	/* One batch: half the slices grow, one service moves, one loses its slice. */
	for (int i = 0; i < BIG / 2; i++)
		put(fx, big_slice(i, 3));
	del(fx, big_service(BIG - 1, 96));
	put(fx, big_service(BIG - 1, 97));
	del(fx, big_slice(BIG - 2, 2));
	run(fx);
	assert_int_equal(big_count(fx, 0, 96, &found), 3);
	assert_int_equal(big_count(fx, BIG / 2 - 1, 96, &found), 3);
	assert_int_equal(big_count(fx, BIG / 2, 96, &found), 2);
	big_count(fx, BIG - 1, 96, &found);
	assert_false(found);
	assert_int_equal(big_count(fx, BIG - 1, 97, &found), 2);
	assert_true(found);
	assert_int_equal(big_count(fx, BIG - 2, 96, &found), 0);
	assert_true(found);
	/* one master each (the one without a slice too; the moved one at its new address) */
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), BIG);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), (BIG / 2) * 3 + (BIG / 2 - 1) * 2);
	assert_int_equal(lbt_count(fx->fd[LBM_RN4]), BIG);
	assert_int_equal(axn_testhost_state(fx->th, NULL), AXN_STATE_UP);
	assert_int_equal(axn_testhost_stop(fx->th), 0);
}


/* Several refused services; the middle one's record goes with it; the rest at teardown */
static void test_refused_records(void **state)
{
	struct fx *fx = *state;
	const char *reason = NULL;
	json_t *resp = NULL;
	char *err = NULL;

	NEED_ROOT(fx);
	start_with_a(fx);
	for (int i = 0; i < 4; i++) {
		char n[16], ip[32], sl[16], base[32];

		snprintf(n, sizeof(n), "b%d", i);
		snprintf(sl, sizeof(sl), "s%d", i);
		snprintf(ip, sizeof(ip), "10.96.1.%d", i + 1);
		snprintf(base, sizeof(base), "10.200.%d.", 10 + i);
		put(fx, lbt_service("ns", n, ip, 80, "TCP", NULL));
		put(fx, lbt_slice("ns", n, sl, 0, base, 2, 3 + i, 8080, "TCP", "testnode"));
	}
	run(fx);
	assert_int_equal(axn_testhost_api_call(fx->th, "lb/services", NULL, &resp, &err), 0);
	assert_int_equal(json_integer_value(json_object_get(resp, "refused")), 4);
	json_decref(resp);
	/* b2 changes (still refused: its record's message is replaced), b1 and b3 go */
	put(fx, lbt_slice("ns", "b2", "s2", 0, "10.200.12.", 2, 9, 8080, "TCP", "testnode"));
	del(fx, lbt_service("ns", "b1", "10.96.1.2", 80, "TCP", NULL));
	del(fx, lbt_slice("ns", "b1", "s1", 0, "10.200.11.", 2, 4, 8080, "TCP", "testnode"));
	del(fx, lbt_service("ns", "b3", "10.96.1.4", 80, "TCP", NULL));
	del(fx, lbt_slice("ns", "b3", "s3", 0, "10.200.13.", 2, 6, 8080, "TCP", "testnode"));
	run(fx);
	assert_int_equal(axn_testhost_api_call(fx->th, "lb/services", NULL, &resp, &err), 0);
	assert_int_equal(json_integer_value(json_object_get(resp, "refused")), 2);
	json_decref(resp);
	assert_int_equal(axn_testhost_state(fx->th, &reason), AXN_STATE_DEGRADED);
	assert_non_null(strstr(reason, "ns/b"));
	assert_int_equal(axn_testhost_stop(fx->th), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_store_to_maps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slice_moves_and_algorithm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_map, setup_few_slots, teardown),
		cmocka_unit_test_setup_teardown(test_refused_records, setup_few_slots, teardown),
		cmocka_unit_test_setup_teardown(test_write_retry, setup_tiny_services, teardown),
		cmocka_unit_test_setup_teardown(test_restart_adopts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_sync, setup_big, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
