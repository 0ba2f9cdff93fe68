// SPDX-License-Identifier: Apache-2.0
/*
 * test_lb_maps.c - the map writer against real (unpinned) BPF maps: layout of
 * what it writes, incremental updates, capacity refusals that name the
 * service, frontend conflicts, adoption after a restart with stable ids, and
 * prune. Needs root for the maps; skipped otherwise.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "lb_shared.h"
#include "lb_test.h"
#include "lb_translate.h"

struct fx {
	int fd[LBM_N];
	uint32_t max[LBM_N];
	struct lb_maps *m;
};

static int setup_max(void **state, uint32_t svc_max)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	int r;

	for (int i = 0; i < LBM_N; i++)
		fx->max[i] = 1024;
	fx->max[LBM_SVC4] = svc_max;
	r = lbt_maps_create(fx->fd, fx->max);
	if (r < 0) {
		free(fx);
		print_message("cannot create BPF maps (%s): skipped (needs root)\n", strerror(-r));
		*state = NULL;
		return 0;
	}
	assert_int_equal(lb_maps_new(fx->fd, fx->max, &fx->m), 0);
	*state = fx;
	return 0;
}

static int setup(void **state)
{
	return setup_max(state, 1024);
}

static int setup_small(void **state)
{
	return setup_max(state, 5);
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	if (!fx)
		return 0;
	lb_maps_free(fx->m);
	lbt_maps_close(fx->fd);
	free(fx);
	return 0;
}

#define NEED_ROOT(fx)                                                                              \
	do {                                                                                       \
		if (!(fx))                                                                         \
			skip();                                                                    \
	} while (0)

/* Translate a service on ip:80/TCP with n backends 10.1.<b>.<1..n>:8080. */
static struct lb_svc *svc(const char *name, const char *ip, int b, int n, const char *extra)
{
	struct lb_translate_conf conf = {.node_name = "node1", .default_algorithm = LB_ALG_RANDOM,
					 .algorithm_annotation = 1};
	char base[32];
	json_t *s = lbt_service("ns", name, ip, 80, "TCP", extra), *sl;
	const json_t *sls[1];
	struct lb_svc *out;

	snprintf(base, sizeof(base), "%s%d.", strchr(ip, ':') ? "fd00:1:" : "10.1.", b);
	if (strchr(ip, ':'))
		snprintf(base, sizeof(base), "fd00:1:%d::", b);
	sl = lbt_slice("ns", name, "sl", strchr(ip, ':') != NULL, base, 1, n, 8080, "TCP", "node1");
	sls[0] = sl;
	assert_int_equal(lb_translate(&conf, s, sls, 1, &out), 0);
	json_decref(s);
	json_decref(sl);
	return out;
}

static struct lb_svc_val master4(struct fx *fx, const char *ip, uint16_t slot, int *found)
{
	struct lb4_key k = {.port = htons(80), .proto = IPPROTO_TCP, .slot = slot};
	struct lb_svc_val v = {0};

	inet_pton(AF_INET, ip, &k.addr);
	*found = bpf_map_lookup_elem(fx->fd[LBM_SVC4], &k, &v) == 0;
	return v;
}

static void set_ok(struct fx *fx, const char *owner, struct lb_svc *old, struct lb_svc *new)
{
	char *err = NULL;
	int r = lb_maps_service_set(fx->m, owner, old, new, &err);

	if (r)
		fail_msg("service_set %s: %d %s", owner, r, err ? err : "");
}

static void test_write_layout(void **state)
{
	struct fx *fx = *state;
	struct lb_flush_stats st;
	struct lb_svc *a;
	struct lb_svc_val v;
	int found;

	NEED_ROOT(fx);
	a = svc("a", "10.96.0.1", 1, 3, NULL);
	set_ok(fx, "ns/a", NULL, a);
	assert_int_equal(lb_maps_flush(fx->m, &st), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 4);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 3);
	assert_int_equal(lbt_count(fx->fd[LBM_RN4]), 1);
	v = master4(fx, "10.96.0.1", 0, &found);
	assert_true(found);
	assert_int_equal(v.count, 3);
	assert_int_equal(v.algorithm, LB_A_RANDOM);
	assert_int_equal(v.rev_nat_id, lb_maps_fe_id(fx->m, &a->fe[0]));
	for (uint16_t s = 1; s <= 3; s++) {
		struct lb_svc_val sv = master4(fx, "10.96.0.1", s, &found);
		struct lb4_backend be;

		assert_true(found);
		assert_int_equal(sv.rev_nat_id, v.rev_nat_id);
		assert_int_equal(bpf_map_lookup_elem(fx->fd[LBM_BE4], &sv.backend_id, &be), 0);
		assert_int_equal(ntohs(be.port), 8080);
		assert_int_equal(be.state, LB_BS_ACTIVE);
	}
	/* Bulk writes are batched: 3 backends + 1 revnat + 3 slots + 1 master in 4 calls. */
	assert_int_equal(st.updates, 8);
	assert_int_equal(st.syscalls, 4);
	lb_svc_free(a);
}

static void test_incremental(void **state)
{
	struct fx *fx = *state;
	struct lb_flush_stats st;
	struct lb_svc *a, *b, *b2, *a2;
	struct lb_svc_val v;
	uint32_t id_before, id_after;
	int found;

	NEED_ROOT(fx);
	a = svc("a", "10.96.0.1", 1, 3, NULL);
	b = svc("b", "10.96.0.2", 2, 3, NULL);
	set_ok(fx, "ns/a", NULL, a);
	set_ok(fx, "ns/b", NULL, b);
	assert_int_equal(lb_maps_flush(fx->m, &st), 0);
	id_before = lb_maps_fe_id(fx->m, &a->fe[0]);

	/* Scale b down to 2: the master is rewritten, one slot and one backend go; a is untouched. */
	b2 = svc("b", "10.96.0.2", 2, 2, NULL);
	set_ok(fx, "ns/b", b, b2);
	assert_int_equal(lb_maps_flush(fx->m, &st), 0);
	assert_int_equal(st.updates, 1);
	assert_int_equal(st.deletes, 2);
	v = master4(fx, "10.96.0.2", 0, &found);
	assert_int_equal(v.count, 2);
	master4(fx, "10.96.0.2", 3, &found);
	assert_false(found);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 5);

	/* Change a's algorithm on the live service: only its master is written. */
	a2 = svc("a", "10.96.0.1", 1, 3, "{\"sessionAffinity\": \"ClientIP\"}");
	a2->algorithm = LB_ALG_MAGLEV;
	set_ok(fx, "ns/a", a, a2);
	assert_int_equal(lb_maps_flush(fx->m, &st), 0);
	assert_int_equal(st.updates, 1);
	assert_int_equal(st.deletes, 0);
	v = master4(fx, "10.96.0.1", 0, &found);
	assert_int_equal(v.algorithm, LB_A_MAGLEV);
	assert_int_equal(v.flags & LB_F_AFFINITY, LB_F_AFFINITY);
	assert_int_equal(v.affinity_timeout, 10800);
	id_after = lb_maps_fe_id(fx->m, &a2->fe[0]);
	assert_int_equal(id_before, id_after);

	/* Delete a: its master, slots, revnat and backends go; b stays. */
	set_ok(fx, "ns/a", a2, NULL);
	assert_int_equal(lb_maps_flush(fx->m, &st), 0);
	assert_int_equal(st.deletes, 1 + 3 + 1 + 3);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 3);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 2);
	assert_int_equal(lbt_count(fx->fd[LBM_RN4]), 1);
	lb_svc_free(a);
	lb_svc_free(a2);
	lb_svc_free(b);
	lb_svc_free(b2);
}

static void test_shared_backend(void **state)
{
	struct fx *fx = *state;
	struct lb_svc *a, *b;

	NEED_ROOT(fx);
	/* Two services on the same pods share backend entries (one id each). */
	a = svc("a", "10.96.0.1", 1, 2, NULL);
	b = svc("b", "10.96.0.2", 1, 2, NULL);
	set_ok(fx, "ns/a", NULL, a);
	set_ok(fx, "ns/b", NULL, b);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 2);
	set_ok(fx, "ns/a", a, NULL);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 2); /* still used by b */
	set_ok(fx, "ns/b", b, NULL);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 0);
	lb_svc_free(a);
	lb_svc_free(b);
}

static void test_full_map(void **state)
{
	struct fx *fx = *state;
	struct lb_svc *a, *b;
	char *err = NULL;

	NEED_ROOT(fx);
	/* lb4_services holds 5: a takes 4 (master + 3), b would need 3 more. */
	a = svc("a", "10.96.0.1", 1, 3, NULL);
	b = svc("b", "10.96.0.2", 2, 2, NULL);
	set_ok(fx, "ns/a", NULL, a);
	assert_int_equal(lb_maps_service_set(fx->m, "ns/b", NULL, b, &err), -ENOSPC);
	assert_non_null(err);
	assert_non_null(strstr(err, "lb4_services"));
	assert_non_null(strstr(err, "ns/b"));
	free(err);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 4);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 3); /* nothing of b leaked in */
	assert_int_equal(lb_maps_used(fx->m, LBM_SVC4), 4);
	/* a goes: b fits once a's entries are out of the map (upserts go before deletes). */
	set_ok(fx, "ns/a", a, NULL);
	assert_true(lb_maps_take_released(fx->m));
	assert_int_equal(lb_maps_service_set(fx->m, "ns/b", NULL, b, &err), -ENOSPC);
	free(err);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	set_ok(fx, "ns/b", NULL, b);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 3);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 2);
	lb_svc_free(a);
	lb_svc_free(b);
}

static void test_conflict(void **state)
{
	struct fx *fx = *state;
	struct lb_svc *a, *b;
	char *err = NULL;

	NEED_ROOT(fx);
	a = svc("a", "10.96.0.1", 1, 1, NULL);
	b = svc("b", "10.96.0.1", 2, 1, NULL);
	set_ok(fx, "ns/a", NULL, a);
	assert_int_equal(lb_maps_service_set(fx->m, "ns/b", NULL, b, &err), -EADDRINUSE);
	assert_non_null(strstr(err, "ns/a"));
	free(err);
	lb_svc_free(a);
	lb_svc_free(b);
}

static void test_adopt_and_prune(void **state)
{
	struct fx *fx = *state;
	struct lb_flush_stats st;
	struct lb_svc *a, *b, *a2;
	uint32_t rn_a, be_a, nbe = 0;
	struct lb_ip ip;

	NEED_ROOT(fx);
	a = svc("a", "10.96.0.1", 1, 3, NULL);
	b = svc("b", "10.96.0.2", 2, 2, NULL);
	set_ok(fx, "ns/a", NULL, a);
	set_ok(fx, "ns/b", NULL, b);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	rn_a = lb_maps_fe_id(fx->m, &a->fe[0]);
	lb_ip_parse("10.1.1.2", &ip);
	be_a = lb_maps_be_id(fx->m, &ip, 8080, IPPROTO_TCP);
	assert_int_not_equal(be_a, 0);

	/* "Restart": a new writer on the same maps. */
	lb_maps_free(fx->m);
	assert_int_equal(lb_maps_new(fx->fd, fx->max, &fx->m), 0);
	assert_int_equal(lb_maps_adopt(fx->m, &nbe), 2);
	assert_int_equal(nbe, 5);

	/* The store has a (unchanged) but b is gone: a costs no write, ids are kept. */
	a2 = svc("a", "10.96.0.1", 1, 3, NULL);
	set_ok(fx, "ns/a", NULL, a2);
	assert_int_equal(lb_maps_flush(fx->m, &st), 0);
	assert_int_equal(st.updates + st.deletes, 0);
	assert_int_equal(lb_maps_fe_id(fx->m, &a2->fe[0]), rn_a);
	assert_int_equal(lb_maps_be_id(fx->m, &ip, 8080, IPPROTO_TCP), be_a);
	/* b's entries are still in place until the prune. */
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 7);
	assert_int_equal(lb_maps_prune(fx->m, &st), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 4);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 3);
	assert_int_equal(lbt_count(fx->fd[LBM_RN4]), 1);
	/* A new backend gets an id no adopted one had. */
	lb_svc_free(a);
	a = svc("a", "10.96.0.1", 1, 4, NULL);
	set_ok(fx, "ns/a", a2, a);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	lb_ip_parse("10.1.1.4", &ip);
	assert_true(lb_maps_be_id(fx->m, &ip, 8080, IPPROTO_TCP) > 5);
	lb_svc_free(a);
	lb_svc_free(a2);
	lb_svc_free(b);
}

static void test_adopt_crash_leftovers(void **state)
{
	struct fx *fx = *state;
	struct lb4_key k = {.port = htons(80), .proto = IPPROTO_TCP};
	struct lb_svc_val v = {.backend_id = 77, .rev_nat_id = 9};
	struct lb4_revnat rn = {0};
	struct lb_svc *a;
	__u32 id = 42;

	NEED_ROOT(fx);
	/* A slot past its master's count, an orphan slot and an orphan revnat entry. */
	a = svc("a", "10.96.0.1", 1, 1, NULL);
	set_ok(fx, "ns/a", NULL, a);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	inet_pton(AF_INET, "10.96.0.1", &k.addr);
	k.slot = 5;
	assert_int_equal(bpf_map_update_elem(fx->fd[LBM_SVC4], &k, &v, BPF_ANY), 0);
	inet_pton(AF_INET, "10.96.9.9", &k.addr);
	k.slot = 1;
	assert_int_equal(bpf_map_update_elem(fx->fd[LBM_SVC4], &k, &v, BPF_ANY), 0);
	assert_int_equal(bpf_map_update_elem(fx->fd[LBM_RN4], &id, &rn, BPF_ANY), 0);

	lb_maps_free(fx->m);
	assert_int_equal(lb_maps_new(fx->fd, fx->max, &fx->m), 0);
	assert_true(lb_maps_adopt(fx->m, NULL) >= 1);
	set_ok(fx, "ns/a", NULL, a);
	assert_int_equal(lb_maps_prune(fx->m, NULL), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 2);
	assert_int_equal(lbt_count(fx->fd[LBM_RN4]), 1);
	lb_svc_free(a);
}

static void test_dual_stack(void **state)
{
	struct fx *fx = *state;
	struct lb_svc *a;

	NEED_ROOT(fx);
	a = svc("a6", "fd00:96::1", 1, 2, NULL);
	set_ok(fx, "ns/a6", NULL, a);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC6]), 3);
	assert_int_equal(lbt_count(fx->fd[LBM_BE6]), 2);
	assert_int_equal(lbt_count(fx->fd[LBM_RN6]), 1);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 0);
	set_ok(fx, "ns/a6", a, NULL);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC6]), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_BE6]), 0);
	lb_svc_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_write_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_incremental, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shared_backend, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_map, setup_small, teardown),
		cmocka_unit_test_setup_teardown(test_conflict, setup, teardown),
		cmocka_unit_test_setup_teardown(test_adopt_and_prune, setup, teardown),
		cmocka_unit_test_setup_teardown(test_adopt_crash_leftovers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dual_stack, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
