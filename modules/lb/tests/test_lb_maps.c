// SPDX-License-Identifier: Apache-2.0
/*
 * test_lb_maps.c - the map writer against real (unpinned) BPF maps: layout of
 * what it writes (masters hashed, slots/backends/reverse NAT in mmapable
 * arrays), incremental updates that keep slots, ranges that move and the
 * grace period before anything freed is reused, capacity refusals that name
 * the service and the map, frontend conflicts, adoption after a restart with
 * stable ids and ranges, crash leftovers, and prune. Needs root for the
 * maps; skipped otherwise.
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

/* Map sizes of a fixture: 1024 each unless a test asks for less. */
/*
 * The maps as fx->max says, and a writer told svc_writer masters (0: as
 * many as the kernel's map holds). *state NULL (skipped) without root.
 */
static int fx_start(void **state, struct fx *fx, uint32_t svc_writer)
{
	int r = lbt_maps_create(fx->fd, fx->max);

	if (r < 0) {
		free(fx);
		print_message("cannot create BPF maps (%s): skipped (needs root)\n", strerror(-r));
		*state = NULL;
		return 0;
	}
	if (svc_writer)
		fx->max[LBM_SVC4] = svc_writer;
	assert_int_equal(lb_maps_new(fx->fd, fx->max, &fx->m), 0);
	*state = fx;
	return 0;
}

static int setup_with(void **state, uint32_t svc_max, uint32_t slots_max, uint32_t be_max)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	for (int i = 0; i < LBM_N; i++)
		fx->max[i] = 1024;
	fx->max[LBM_SVC4] = svc_max;
	fx->max[LBM_SLOTS] = slots_max;
	fx->max[LBM_BE4] = be_max;
	return fx_start(state, fx, 0);
}

static int setup(void **state)
{
	return setup_with(state, 1024, 1024, 1024);
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

static struct lb_svc *svc_proto(const char *name, const char *ip, int b, int n, const char *extra,
				const char *proto);

/* Translate a service on ip:80/TCP with n backends 10.1.<b>.<1..n>:8080. */
static struct lb_svc *svc(const char *name, const char *ip, int b, int n, const char *extra)
{
	return svc_proto(name, ip, b, n, extra, "TCP");
}

/* The same on ip:80/proto. */
static struct lb_svc *svc_proto(const char *name, const char *ip, int b, int n, const char *extra,
				const char *proto)
{
	struct lb_translate_conf conf = {.node_name = "node1", .default_algorithm = LB_ALG_RANDOM,
					 .algorithm_annotation = 1};
	char base[32];
	json_t *s = lbt_service("ns", name, ip, 80, proto, extra), *sl;
	const json_t *sls[1];
	struct lb_svc *out;

	snprintf(base, sizeof(base), "10.1.%d.", b);
	if (strchr(ip, ':'))
		snprintf(base, sizeof(base), "fd00:1:%d::", b);
	sl = lbt_slice("ns", name, "sl", strchr(ip, ':') != NULL, base, 1, n, 8080, proto, "node1");
	sls[0] = sl;
	assert_int_equal(lb_translate(&conf, s, sls, 1, &out), 0);
	json_decref(s);
	json_decref(sl);
	return out;
}

static struct lb_svc_val master4(struct fx *fx, const char *ip, int *found)
{
	struct lb4_key k = {.port = htons(80), .proto = IPPROTO_TCP};
	struct lb_svc_val v = {0};

	inet_pton(AF_INET, ip, &k.addr);
	*found = bpf_map_lookup_elem(fx->fd[LBM_SVC4], &k, &v) == 0;
	return v;
}

/* The IPv4 master at ip:80 has count backends (count < 0: there is none). */
static void expect4(struct fx *fx, const char *ip, int count)
{
	int found;
	struct lb_svc_val v = master4(fx, ip, &found);

	if (count < 0) {
		assert_false(found);
		return;
	}
	assert_true(found);
	assert_int_equal(v.count, count);
}

static uint32_t slot_id(struct fx *fx, uint32_t i)
{
	struct lb_slot s = {0};

	assert_int_equal(bpf_map_lookup_elem(fx->fd[LBM_SLOTS], &i, &s), 0);
	return s.backend_id;
}

/* The backend in slot i of the master's range, from the kernel's arrays. */
static struct lb4_backend slot_backend(struct fx *fx, const struct lb_svc_val *v, uint32_t i)
{
	struct lb4_backend be = {0};
	uint32_t id = slot_id(fx, v->slot_base + i);

	assert_int_not_equal(id, 0);
	assert_int_equal(bpf_map_lookup_elem(fx->fd[LBM_BE4], &id, &be), 0);
	return be;
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
	struct lb4_revnat rn;
	int found;

	NEED_ROOT(fx);
	a = svc("a", "10.96.0.1", 1, 3, NULL);
	set_ok(fx, "ns/a", NULL, a);
	assert_int_equal(lb_maps_flush(fx->m, &st), 0);
	/* One hashed entry per frontend; the rest are array elements. */
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 1);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 3);
	assert_int_equal(lbt_count(fx->fd[LBM_RN4]), 1);
	v = master4(fx, "10.96.0.1", &found);
	assert_true(found);
	assert_int_equal(v.count, 3);
	assert_int_equal(v.slot_order, 2); /* 3 backends: a range of 4 */
	assert_int_equal(v.slot_base % 4, 0);
	assert_int_equal(v.algorithm, LB_A_RANDOM);
	assert_int_equal(v.rev_nat_id, lb_maps_fe_id(fx->m, &a->fe[0]));
	assert_int_equal(bpf_map_lookup_elem(fx->fd[LBM_RN4], &v.rev_nat_id, &rn), 0);
	assert_int_equal(ntohs(rn.port), 80);
	assert_int_equal(rn.proto, IPPROTO_TCP);
	for (uint32_t s = 0; s < 3; s++) {
		struct lb4_backend be = slot_backend(fx, &v, s);

		assert_int_equal(ntohs(be.port), 8080);
		assert_int_equal(be.proto, IPPROTO_TCP);
		assert_int_equal(be.state, LB_BS_ACTIVE);
	}
	/* 3 backends + 1 reverse NAT + 3 slots + 1 master; only the master is a syscall. */
	assert_int_equal(st.updates, 8);
	assert_int_equal(st.syscalls, 1);
	lb_svc_free(a);
}

static void test_incremental(void **state)
{
	struct fx *fx = *state;
	struct lb_flush_stats st;
	struct lb_svc *a, *b, *b2, *b3, *a2;
	struct lb_svc_val v, v2;
	uint32_t id_before, kept[2], old_base;
	int found;

	NEED_ROOT(fx);
	a = svc("a", "10.96.0.1", 1, 3, NULL);
	b = svc("b", "10.96.0.2", 2, 3, NULL);
	set_ok(fx, "ns/a", NULL, a);
	set_ok(fx, "ns/b", NULL, b);
	assert_int_equal(lb_maps_flush(fx->m, &st), 0);
	id_before = lb_maps_fe_id(fx->m, &a->fe[0]);
	v = master4(fx, "10.96.0.2", &found);

	/* Scale b down to 2 (10.1.2.1 and .2 stay): they keep their slots; one backend goes. */
	for (uint32_t s = 0; s < 2; s++)
		kept[s] = slot_id(fx, v.slot_base + s);
	b2 = svc("b", "10.96.0.2", 2, 2, NULL);
	set_ok(fx, "ns/b", b, b2);
	assert_int_equal(lb_maps_flush(fx->m, &st), 0);
	assert_int_equal(st.syscalls, 1);  /* the master (count 3 -> 2) */
	assert_int_equal(st.updates, 1);   /* no slot rewritten */
	v2 = master4(fx, "10.96.0.2", &found);
	assert_int_equal(v2.count, 2);
	assert_int_equal(v2.slot_base, v.slot_base);
	for (uint32_t s = 0; s < 2; s++)
		assert_int_equal(slot_id(fx, v2.slot_base + s), kept[s]);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 5);
	assert_int_equal(lb_maps_quarantined(fx->m), 1); /* the backend's id */
	assert_int_equal(lb_maps_used(fx->m, LBM_BE4), 5); /* a waiting id holds no backend */

	/* Up to 5: more than its range of 4 holds, so it moves; the old range waits. */
	b3 = svc("b", "10.96.0.2", 2, 5, NULL);
	set_ok(fx, "ns/b", b2, b3);
	assert_int_equal(lb_maps_flush(fx->m, &st), 0);
	v2 = master4(fx, "10.96.0.2", &found);
	assert_int_equal(v2.count, 5);
	assert_int_equal(v2.slot_order, 3);
	assert_int_not_equal(v2.slot_base, v.slot_base);
	for (uint32_t s = 0; s < 5; s++)
		assert_int_equal(ntohs(slot_backend(fx, &v2, s).port), 8080);
	old_base = v.slot_base;
	assert_int_equal(lb_maps_quarantined(fx->m), 2);
	assert_int_equal(lb_maps_used(fx->m, LBM_SLOTS), 4 + 4 + 8);
	/* Freed things come back only after two grace periods. */
	assert_int_equal(lb_maps_grace(fx->m), 0);
	assert_int_equal(lb_maps_grace(fx->m), 2);
	assert_int_equal(lb_maps_quarantined(fx->m), 0);
	assert_int_equal(lb_maps_used(fx->m, LBM_SLOTS), 4 + 8);
	(void)old_base;

	/* Change a's algorithm and affinity on the live service: only its master is written. */
	a2 = svc("a", "10.96.0.1", 1, 3, "{\"sessionAffinity\": \"ClientIP\"}");
	a2->algorithm = LB_ALG_MAGLEV;
	set_ok(fx, "ns/a", a, a2);
	assert_int_equal(lb_maps_flush(fx->m, &st), 0);
	assert_int_equal(st.updates, 1);
	assert_int_equal(st.deletes, 0);
	v = master4(fx, "10.96.0.1", &found);
	assert_int_equal(v.algorithm, LB_A_MAGLEV);
	assert_int_equal(v.flags & LB_F_AFFINITY, LB_F_AFFINITY);
	assert_int_equal(v.affinity_timeout, 10800);
	assert_int_equal(lb_maps_fe_id(fx->m, &a2->fe[0]), id_before);

	/* Delete a: its master goes, its reverse NAT and backends are cleared; b stays. */
	set_ok(fx, "ns/a", a2, NULL);
	assert_int_equal(lb_maps_flush(fx->m, &st), 0);
	assert_int_equal(st.deletes, 1);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 1);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 5);
	assert_int_equal(lbt_count(fx->fd[LBM_RN4]), 1);
	master4(fx, "10.96.0.1", &found);
	assert_false(found);
	lb_svc_free(a);
	lb_svc_free(a2);
	lb_svc_free(b);
	lb_svc_free(b2);
	lb_svc_free(b3);
}

static void test_shared_backend(void **state)
{
	struct fx *fx = *state;
	struct lb_svc *a, *b;

	NEED_ROOT(fx);
	/*
	 * Two services on the same pods share backend entries (one id each),
	 * whether the claim hashes the backends or finds them hashed (a sync).
	 */
	a = svc("a", "10.96.0.1", 1, 2, NULL);
	b = svc("b", "10.96.0.2", 1, 2, NULL);
	lb_maps_hash_backends(b);
	set_ok(fx, "ns/a", NULL, a);
	set_ok(fx, "ns/b", NULL, b);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 2);
	for (int i = 0; i < 2; i++)
		assert_int_equal(lb_maps_be_id(fx->m, &a->fe[0].be[i].ip, a->fe[0].be[i].port,
					       a->fe[0].proto),
				 lb_maps_be_id(fx->m, &b->fe[0].be[i].ip, b->fe[0].be[i].port,
					       b->fe[0].proto));
	set_ok(fx, "ns/a", a, NULL);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 2); /* still used by b */
	set_ok(fx, "ns/b", b, NULL);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_RN4]), 0);
	lb_svc_free(a);
	lb_svc_free(b);
}

/* The freed UDP backends since the last call: exactly `want` (n of them, "a.b.c.d"). */
static void expect_freed(struct fx *fx, const char *const *want, size_t n)
{
	struct lb_reap_key *keys;
	size_t got;

	assert_int_equal(lb_maps_take_freed_udp(fx->m, &keys, &got), 0);
	assert_int_equal(got, n);
	for (size_t i = 0; i < n; i++) {
		uint8_t a[4];

		inet_pton(AF_INET, want[i], a);
		assert_int_equal(keys[i].family, 4);
		assert_memory_equal(keys[i].addr, a, 4);
		assert_int_equal(ntohs(keys[i].port), 8080);
	}
	free(keys);
}

static void test_freed_udp(void **state)
{
	struct fx *fx = *state;
	struct lb_svc *a, *a1, *b, *c;
	const char *freed3[] = {"10.1.1.3"}, *freed2[] = {"10.1.1.2"};

	NEED_ROOT(fx);
	/*
	 * What the socket reaper gets: UDP backends no frontend has any more --
	 * not one that another service still uses, not TCP ones, and nothing
	 * while tracking is off.
	 */
	lb_maps_track_freed_udp(fx->m, true);
	a = svc_proto("a", "10.96.0.1", 1, 3, NULL, "UDP");
	b = svc_proto("b", "10.96.0.2", 1, 2, NULL, "UDP");
	c = svc("c", "10.96.0.3", 3, 2, NULL);
	set_ok(fx, "ns/a", NULL, a);
	set_ok(fx, "ns/b", NULL, b);
	set_ok(fx, "ns/c", NULL, c);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	expect_freed(fx, NULL, 0);
	a1 = svc_proto("a", "10.96.0.1", 1, 1, NULL, "UDP");
	set_ok(fx, "ns/a", a, a1);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	expect_freed(fx, freed3, 1); /* 10.1.1.2 is b's too */
	set_ok(fx, "ns/c", c, NULL);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	expect_freed(fx, NULL, 0);
	set_ok(fx, "ns/b", b, NULL);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	expect_freed(fx, freed2, 1);
	lb_maps_track_freed_udp(fx->m, false);
	set_ok(fx, "ns/a", a1, NULL);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	expect_freed(fx, NULL, 0);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 0);
	lb_svc_free(a);
	lb_svc_free(a1);
	lb_svc_free(b);
	lb_svc_free(c);
}

/* b is refused naming `map`; nothing of it gets in; a keeps working. */
static void refused(struct fx *fx, struct lb_svc *b, const char *map)
{
	char *err = NULL;

	assert_int_equal(lb_maps_service_set(fx->m, "ns/b", NULL, b, &err), -ENOSPC);
	assert_non_null(err);
	if (!strstr(err, map) || !strstr(err, "ns/b"))
		fail_msg("unexpected error: %s", err);
	free(err);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 1);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 3);
}

static int setup_one_frontend(void **state)
{
	return setup_with(state, 1, 1024, 1024);
}

static int setup_few_slots(void **state)
{
	return setup_with(state, 1024, 4, 1024);
}

static int setup_512_slots(void **state)
{
	return setup_with(state, 1024, 512, 1024);
}

static int setup_few_backends(void **state)
{
	return setup_with(state, 1024, 1024, 4); /* ids 1..3 */
}

static void full_then_fits(void **state, const char *map, int graces)
{
	struct fx *fx = *state;
	struct lb_svc *a, *b;
	char *err = NULL;

	NEED_ROOT(fx);
	a = svc("a", "10.96.0.1", 1, 3, NULL);
	b = svc("b", "10.96.0.2", 2, 2, NULL);
	set_ok(fx, "ns/a", NULL, a);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	refused(fx, b, map);
	/* a goes: b fits once a is out of the map and what it held has been through the grace. */
	set_ok(fx, "ns/a", a, NULL);
	assert_true(lb_maps_take_released(fx->m));
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	for (int i = 0; i < graces; i++) {
		assert_int_equal(lb_maps_service_set(fx->m, "ns/b", NULL, b, &err), -ENOSPC);
		assert_non_null(strstr(err, "grace"));
		free(err);
		lb_maps_grace(fx->m);
	}
	set_ok(fx, "ns/b", NULL, b);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 1);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 2);
	lb_svc_free(a);
	lb_svc_free(b);
}

static void test_full_services(void **state)
{
	/* A master is deleted at once: no grace needed for the hash map. */
	full_then_fits(state, "lb4_services", 0);
}

static void test_full_slots(void **state)
{
	full_then_fits(state, "lb_slots", 2);
}

static void test_full_backends(void **state)
{
	full_then_fits(state, "lb4_backends", 2);
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

/* Services of every size come and go: everything comes back, nothing leaks. */
static void test_churn(void **state)
{
	struct fx *fx = *state;
	struct lb_svc *cur[20] = {0};
	char name[16], ip[32];

	NEED_ROOT(fx);
	for (int round = 0; round < 6; round++) {
		for (int i = 0; i < 20; i++) {
			struct lb_svc *next = NULL;

			snprintf(name, sizeof(name), "s%d", i);
			snprintf(ip, sizeof(ip), "10.96.1.%d", i + 1);
			if ((i + round) % 3)
				next = svc(name, ip, i % 7 + 1, (i * 7 + round * 5) % 7 + 1, NULL);
			set_ok(fx, name, cur[i], next);
			lb_svc_free(cur[i]);
			cur[i] = next;
		}
		assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
		lb_maps_grace(fx->m);
	}
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		set_ok(fx, name, cur[i], NULL);
		lb_svc_free(cur[i]);
	}
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	lb_maps_grace(fx->m);
	lb_maps_grace(fx->m);
	assert_int_equal(lb_maps_quarantined(fx->m), 0);
	assert_int_equal(lb_maps_used(fx->m, LBM_SLOTS), 0);
	assert_int_equal(lb_maps_used(fx->m, LBM_BE4), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_RN4]), 0);
	/* One range as large as the whole array can be had again: nothing is in pieces. */
	{
		struct lb_svc *big = svc("big", "fd00:96::2", 9, 300, NULL);

		set_ok(fx, "big", NULL, big);
		assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
		assert_int_equal(lb_maps_used(fx->m, LBM_SLOTS), 512);
		lb_svc_free(big);
	}
}

static void test_adopt_and_prune(void **state)
{
	struct fx *fx = *state;
	struct lb_flush_stats st;
	struct lb_svc *a, *b, *a2;
	struct lb_svc_val v, v2;
	uint32_t rn_a, be_a, nbe = 0;
	struct lb_ip ip;
	int found;

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
	v = master4(fx, "10.96.0.1", &found);

	/* "Restart": a new writer on the same maps. */
	lb_maps_free(fx->m);
	assert_int_equal(lb_maps_new(fx->fd, fx->max, &fx->m), 0);
	assert_int_equal(lb_maps_adopt(fx->m, &nbe), 2);
	assert_int_equal(nbe, 5);
	assert_int_equal(lb_maps_used(fx->m, LBM_SLOTS), 4 + 2);

	/* The store has a (unchanged) but b is gone: a costs no write, ids and range are kept. */
	a2 = svc("a", "10.96.0.1", 1, 3, NULL);
	set_ok(fx, "ns/a", NULL, a2);
	assert_int_equal(lb_maps_flush(fx->m, &st), 0);
	assert_int_equal(st.updates + st.deletes + st.syscalls, 0);
	assert_int_equal(lb_maps_fe_id(fx->m, &a2->fe[0]), rn_a);
	assert_int_equal(lb_maps_be_id(fx->m, &ip, 8080, IPPROTO_TCP), be_a);
	v2 = master4(fx, "10.96.0.1", &found);
	assert_memory_equal(&v, &v2, sizeof(v));
	/* b's entries are still in place until the prune. */
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 2);
	assert_int_equal(lb_maps_prune(fx->m, &st), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 1);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 3);
	assert_int_equal(lbt_count(fx->fd[LBM_RN4]), 1);
	/* A new backend gets an id no adopted one had (b's wait out their grace). */
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
	struct lb_svc_val v, bad;
	struct lb4_revnat rn = {.port = htons(81), .proto = IPPROTO_TCP};
	struct lb4_backend dup;
	struct lb_svc *a;
	__u32 id = 42, dup_id = 50, be1;
	int found;

	NEED_ROOT(fx);
	/*
	 * What a crash (or another writer) can leave: a master whose range
	 * overlaps a's, with a rev_nat_id of its own; a reverse NAT entry
	 * nobody owns; a second id for one of a's backends.
	 */
	a = svc("a", "10.96.0.1", 1, 1, NULL);
	set_ok(fx, "ns/a", NULL, a);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	v = master4(fx, "10.96.0.1", &found);
	bad = v;
	bad.rev_nat_id = 9;
	inet_pton(AF_INET, "10.96.9.9", &k.addr);
	assert_int_equal(bpf_map_update_elem(fx->fd[LBM_SVC4], &k, &bad, BPF_ANY), 0);
	assert_int_equal(bpf_map_update_elem(fx->fd[LBM_RN4], &id, &rn, BPF_ANY), 0);
	be1 = slot_id(fx, v.slot_base);
	assert_int_equal(bpf_map_lookup_elem(fx->fd[LBM_BE4], &be1, &dup), 0);
	assert_int_equal(bpf_map_update_elem(fx->fd[LBM_BE4], &dup_id, &dup, BPF_ANY), 0);

	lb_maps_free(fx->m);
	assert_int_equal(lb_maps_new(fx->fd, fx->max, &fx->m), 0);
	assert_int_equal(lb_maps_adopt(fx->m, NULL), 2);
	set_ok(fx, "ns/a", NULL, a);
	assert_int_equal(lb_maps_prune(fx->m, NULL), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 1);
	assert_int_equal(lbt_count(fx->fd[LBM_RN4]), 1);
	assert_int_equal(lbt_count(fx->fd[LBM_BE4]), 1);
	/* a still points at a slot with its backend. */
	v = master4(fx, "10.96.0.1", &found);
	assert_true(found);
	assert_int_equal(v.count, 1);
	assert_int_equal(ntohs(slot_backend(fx, &v, 0).port), 8080);
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
	assert_int_equal(lbt_count(fx->fd[LBM_SVC6]), 1);
	assert_int_equal(lbt_count(fx->fd[LBM_BE6]), 2);
	assert_int_equal(lbt_count(fx->fd[LBM_RN6]), 1);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_RN4]), 0);
	set_ok(fx, "ns/a6", a, NULL);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC6]), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_BE6]), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_RN6]), 0);
	lb_svc_free(a);
}

/* --- a random model: many changes, restarts, tight maps ----------------------- */

static uint64_t rnd_state = 88172645463325252ull;

static uint32_t rnd(uint32_t n)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return (uint32_t)(rnd_state % n);
}

#define M_SVCS 48
#define M_VIPS 64 /* frontends collide now and then */
#define M_BES 40  /* backends shared between services */

/*
 * Service i on VIP vip with the backends of mask (a subset of the pool), and
 * most of them on a second VIP too (an externalIP: frontends that a change
 * keeps, adds or drops, and that other services collide with).
 */
static struct lb_svc *model_svc(int i, int vip, uint64_t mask)
{
	int vip2 = (vip * 7 + i + (int)(mask % 3)) % M_VIPS;
	char extra[96], ip2[32];
	struct lb_translate_conf conf = {.default_algorithm = LB_ALG_RANDOM};
	char name[16], ip[32];
	json_t *s, *sl, *eps = json_array();
	const json_t *sls[1];
	struct lb_svc *out;

	bool v6 = i % 3 == 0; /* a third of the services are IPv6 */

	snprintf(name, sizeof(name), "m%d", i);
	snprintf(ip, sizeof(ip), v6 ? "fd00:97::%x" : "10.97.0.%d", vip + 1);
	for (int b = 0; b < M_BES; b++)
		if (mask >> b & 1) {
			char a[32];

			snprintf(a, sizeof(a), v6 ? "fd00:2::%x" : "10.2.0.%d", b + 1);
			json_array_append_new(eps, json_pack("{s:[s]}", "addresses", a));
		}
	snprintf(ip2, sizeof(ip2), v6 ? "fd00:97::%x" : "10.97.0.%d", vip2 + 1);
	snprintf(extra, sizeof(extra), "{\"externalIPs\": [\"%s\"]}", ip2);
	s = lbt_service("ns", name, ip, 80, "TCP", vip2 != vip ? extra : NULL);
	sl = json_pack("{s:{s:s, s:s, s:{s:s}}, s:s, s:[{s:s, s:i, s:s}], s:o}", "metadata",
		       "name", name, "namespace", "ns", "labels", "kubernetes.io/service-name", name,
		       "addressType", v6 ? "IPv6" : "IPv4", "ports", "name", "p", "port", 8080,
		       "protocol", "TCP", "endpoints", eps);
	sls[0] = sl;
	assert_int_equal(lb_translate(&conf, s, sls, 1, &out), 0);
	assert_int_equal(out->n_fe, vip2 != vip ? 2 : 1);
	json_decref(s);
	json_decref(sl);
	return out;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* The pool index of an address of the model (its last byte - 1). */
static int model_be(const uint8_t *a, int v6)
{
	return (v6 ? a[15] : a[3]) - 1;
}

/* fe's master from its family's map into *v: 0, or -1 if it has none. */
static int fe_master(struct fx *fx, const struct lb_fe *fe, struct lb4_key *k4, struct lb6_key *k6,
		     struct lb_svc_val *v)
{
	int f = fe->ip.family == 6;

	*k4 = (struct lb4_key){.port = htons(fe->port), .proto = fe->proto};
	*k6 = (struct lb6_key){.port = htons(fe->port), .proto = fe->proto};
	memcpy(&k4->addr, fe->ip.a, 4);
	memcpy(k6->addr, fe->ip.a, 16);
	if (bpf_map_lookup_elem(fx->fd[f ? LBM_SVC6 : LBM_SVC4], f ? (void *)k6 : (void *)k4, v) < 0)
		return -1;
	return 0;
}

union be_any {
	struct lb4_backend b4;
	struct lb6_backend b6;
};

/* The backend id slot `key` names, and that backend's entry of family f. */
static uint32_t slot_be(struct fx *fx, int f, uint32_t key, union be_any *ret_be)
{
	struct lb_slot sl;

	assert_int_equal(bpf_map_lookup_elem(fx->fd[LBM_SLOTS], &key, &sl), 0);
	assert_int_equal(bpf_map_lookup_elem(fx->fd[f ? LBM_BE6 : LBM_BE4], &sl.backend_id, ret_be),
			 0);
	return sl.backend_id;
}

/* The kernel's maps are exactly what the services that got in want. */
static void model_check(struct fx *fx, struct lb_svc *const *cur, const char *when)
{
	uint32_t masters[2] = {0}, n_used[2] = {0};
	bool used[2][M_BES] = {{false}};

	for (int i = 0; i < M_SVCS; i++) {
		for (size_t j = 0; cur[i] && j < cur[i]->n_fe; j++) {
			const struct lb_fe *fe = &cur[i]->fe[j];
			int f = fe->ip.family == 6;
			struct lb4_key k4;
			struct lb6_key k6;
			uint32_t want[M_BES], got[M_BES];
			struct lb_svc_val v;

			if (fe_master(fx, fe, &k4, &k6, &v) < 0)
				fail_msg("%s: service m%d has no master", when, i);
			masters[f]++;
			if (f) {
				struct lb6_revnat rn;

				assert_int_equal(bpf_map_lookup_elem(fx->fd[LBM_RN6], &v.rev_nat_id, &rn), 0);
				if (memcmp(rn.addr, k6.addr, 16) || rn.port != k6.port)
					fail_msg("%s: m%d's reverse NAT entry %u is another frontend's",
						 when, i, v.rev_nat_id);
			} else {
				struct lb4_revnat rn;

				assert_int_equal(bpf_map_lookup_elem(fx->fd[LBM_RN4], &v.rev_nat_id, &rn), 0);
				if (rn.addr != k4.addr || rn.port != k4.port || rn.proto != k4.proto)
					fail_msg("%s: m%d's reverse NAT entry %u is another frontend's",
						 when, i, v.rev_nat_id);
			}
			for (size_t b = 0; b < fe->n_be; b++) {
				int x = model_be(fe->be[b].ip.a, f);

				if (!used[f][x]) {
					used[f][x] = true;
					n_used[f]++;
				}
			}
			if (v.count != fe->n_sel)
				fail_msg("%s: m%d count %u, wants %zu", when, i, v.count, fe->n_sel);
			for (uint32_t s = 0; s < v.count; s++) {
				union be_any be;
				uint32_t id;

				assert_true(v.slot_order != LB_SLOT_ORDER_NONE);
				assert_true(s < (1u << v.slot_order));
				id = slot_be(fx, f, v.slot_base + s, &be);
				if (!(f ? be.b6.proto : be.b4.proto))
					fail_msg("%s: m%d slot %u names a free backend id %u", when, i, s, id);
				got[s] = (uint32_t)model_be(f ? be.b6.addr : (const uint8_t *)&be.b4.addr, f)
						 << 16 |
					 ntohs(f ? be.b6.port : be.b4.port);
				want[s] = (uint32_t)model_be(fe->be[s].ip.a, f) << 16 | fe->be[s].port;
			}
			qsort(got, v.count, sizeof(got[0]), cmp_u32);
			qsort(want, v.count, sizeof(want[0]), cmp_u32);
			if (v.count && memcmp(got, want, v.count * sizeof(got[0])))
				fail_msg("%s: m%d's slots hold other backends than it wants (base %u order %u)",
					 when, i, v.slot_base, v.slot_order);
		}
	}
	for (int f = 0; f < 2; f++) {
		int svcm = f ? LBM_SVC6 : LBM_SVC4, rnm = f ? LBM_RN6 : LBM_RN4, bem = f ? LBM_BE6 : LBM_BE4;

		if (lbt_count(fx->fd[svcm]) != masters[f])
			fail_msg("%s: %u masters in %s, %u wanted", when, lbt_count(fx->fd[svcm]),
				 lb_map_defs[svcm].name, masters[f]);
		if (lbt_count(fx->fd[rnm]) != masters[f])
			fail_msg("%s: %u entries in %s, %u frontends", when, lbt_count(fx->fd[rnm]),
				 lb_map_defs[rnm].name, masters[f]);
		if (lbt_count(fx->fd[bem]) != n_used[f])
			fail_msg("%s: %u entries in %s, %u backends in use", when,
				 lbt_count(fx->fd[bem]), lb_map_defs[bem].name, n_used[f]);
	}
}

/*
 * Random services -- colliding frontends, shared backends, maps small
 * enough to refuse some -- changed, flushed, graced and restarted over and
 * over: after every flush the maps hold exactly what the accepted services
 * want, and at the end everything comes back.
 */
/* A restart: a new writer adopts the maps, claims what the store has (cur[i] as owner[i]), prunes. */
static void restart(struct fx *fx, struct lb_svc *const *cur, char *const *owner, int n)
{
	lb_maps_free(fx->m);
	assert_int_equal(lb_maps_new(fx->fd, fx->max, &fx->m), 0);
	assert_true(lb_maps_adopt(fx->m, NULL) >= 0);
	for (int i = 0; i < n; i++) {
		char *err = NULL;

		if (cur[i] && lb_maps_service_set(fx->m, owner[i], NULL, cur[i], &err))
			fail_msg("restart: %s no longer fits: %s", owner[i], err ? err : "");
	}
	assert_int_equal(lb_maps_prune(fx->m, NULL), 0);
}

static void test_random_model(void **state)
{
	struct fx *fx = *state;
	/*
	 * cur: what each service wants (the check reads it); kept: the Service
	 * it came from, as lb_sync keeps it, whose view (lb_svc_view: no
	 * backends) is handed back as the old state -- a refused change goes
	 * back without the translation. The writer takes every other one
	 * from a copy, so a translation freed once claimed is not read again.
	 */
	struct lb_svc *cur[M_SVCS] = {0};
	struct lb_svc_spec *kept[M_SVCS] = {0};
	char *owner[M_SVCS];
	int refused = 0, accepted = 0;

	NEED_ROOT(fx);
	/* LB_MODEL_SEED: another sequence (the default is fixed, so a failure repeats). */
	if (getenv("LB_MODEL_SEED"))
		rnd_state = strtoull(getenv("LB_MODEL_SEED"), NULL, 0) * 2 + 1; /* odd, one per seed */
	for (int i = 0; i < M_SVCS; i++)
		assert_int_not_equal(asprintf(&owner[i], "ns/m%d", i), -1);
	for (int round = 0; round < 120; round++) {
		for (int c = 0; c < 8; c++) {
			int i = (int)rnd(M_SVCS);
			struct lb_svc *next = NULL, *copy = NULL, oldv, *old = NULL;
			char *err = NULL;
			int r;

			if (rnd(5)) {
				uint64_t mask = 0;
				int n = (int)rnd(13), vip = (int)rnd(M_VIPS);

				for (int b = 0; b < n; b++)
					mask |= 1ull << rnd(M_BES);
				next = model_svc(i, vip, mask);
				copy = model_svc(i, vip, mask);
				/* Half of them as a sync hands them over: hashed ahead. */
				if (rnd(2))
					lb_maps_hash_backends(copy);
			}
			if (kept[i]) {
				lb_svc_view(kept[i], &oldv);
				old = &oldv;
			}
			r = lb_maps_service_set(fx->m, owner[i], old, copy, &err);
			if (r == -ENOSPC || r == -EADDRINUSE) {
				refused++;
				free(err);
				lb_svc_free(next);
				lb_svc_free(copy);
				continue;
			}
			assert_int_equal(r, 0);
			accepted++;
			lb_svc_free(cur[i]);
			lb_svc_spec_unref(kept[i]);
			cur[i] = next;
			kept[i] = copy ? lb_svc_spec_ref(copy->spec) : NULL;
			lb_svc_free(copy);
		}
		assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
		model_check(fx, cur, "after a flush");
		if (rnd(3) == 0)
			lb_maps_grace(fx->m);
		if (round % 17 == 16) {
			/* A restart: adopt, claim what the store has, prune. */
			restart(fx, cur, owner, M_SVCS);
			model_check(fx, cur, "after a restart");
		}
	}
	print_message("random model: %d changes accepted, %d refused\n", accepted, refused);
	assert_true(refused > 0 && accepted > 0);
	for (int i = 0; i < M_SVCS; i++) {
		struct lb_svc oldv;
		char *err = NULL;

		if (kept[i])
			lb_svc_view(kept[i], &oldv);
		assert_int_equal(
			lb_maps_service_set(fx->m, owner[i], kept[i] ? &oldv : NULL, NULL, &err), 0);
		lb_svc_free(cur[i]);
		lb_svc_spec_unref(kept[i]);
		cur[i] = NULL;
		kept[i] = NULL;
	}
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	lb_maps_grace(fx->m);
	lb_maps_grace(fx->m);
	assert_int_equal(lb_maps_used(fx->m, LBM_SLOTS), 0);
	assert_int_equal(lb_maps_used(fx->m, LBM_BE4), 0);
	assert_int_equal(lb_maps_used(fx->m, LBM_BE6), 0);
	/* lb_slots is left as it was: slots outside every range mean nothing. */
	for (int id = 0; id < LBM_SK4; id++)
		if (id != LBM_SLOTS && lbt_count(fx->fd[id]))
			fail_msg("%s still holds %u entries", lb_map_defs[id].name, lbt_count(fx->fd[id]));
	for (int i = 0; i < M_SVCS; i++)
		free(owner[i]);
}

static int setup_model(void **state)
{
	/* Tight enough that some changes are refused. */
	return setup_with(state, 1024, 256, 48);
}

/*
 * The kernel's lb4_services holds 3 while the writer believes 1024: its
 * capacity check passes and master upserts fail (E2BIG), as after any
 * failed write.
 */
static int setup_tiny_masters(void **state)
{
	struct fx *fx;

	setup_with(state, 3, 1024, 1024);
	if (!(fx = *state))
		return 0;
	lb_maps_free(fx->m);
	fx->max[LBM_SVC4] = 1024;
	assert_int_equal(lb_maps_new(fx->fd, fx->max, &fx->m), 0);
	return 0;
}

/*
 * The same with a flush large enough to write its masters while it plans
 * (8192 dirty frontends and more): the kernel's masters map holds one entry
 * fewer than the writer needs until a removed service's master is deleted.
 */
#define STREAMED_N 8202

static int setup_streamed_tiny(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	for (int i = 0; i < LBM_N; i++)
		fx->max[i] = 32768;
	fx->max[LBM_SVC4] = STREAMED_N; /* the kernel's */
	return fx_start(state, fx, 20000); /* what the writer is told */
}

/* Flush until one gets everything written (at most `tries`); the last result. */
static int flush_until_ok(struct fx *fx, int tries)
{
	int r = -1;

	while (tries-- > 0 && (r = lb_maps_flush(fx->m, NULL)) < 0)
		;
	return r;
}

/*
 * A failed flush still writes some masters. A new frontend whose master got
 * in must be known as written: removed before the retry, its master is
 * deleted -- not left behind to hold capacity and to point at a range and a
 * rev_nat_id that go to other services.
 */
static void test_failed_flush_new_frontend(void **state)
{
	struct fx *fx = *state;
	struct lb_svc *a, *b, *n, *c;

	NEED_ROOT(fx);
	a = svc("a", "10.96.0.1", 1, 1, NULL);
	b = svc("b", "10.96.0.2", 2, 1, NULL);
	n = svc("n", "10.96.0.3", 3, 2, NULL);
	c = svc("c", "10.96.0.4", 4, 2, NULL);
	set_ok(fx, "ns/a", NULL, a);
	set_ok(fx, "ns/b", NULL, b);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	/* n and c in one flush: one master fits, the other does not. */
	set_ok(fx, "ns/n", NULL, n);
	set_ok(fx, "ns/c", NULL, c);
	assert_true(lb_maps_flush(fx->m, NULL) < 0);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 3);
	/* Whichever got in, n goes now: its master must go too, and c gets in. */
	set_ok(fx, "ns/n", n, NULL);
	assert_int_equal(flush_until_ok(fx, 3), 0);
	expect4(fx, "10.96.0.3", -1);
	expect4(fx, "10.96.0.4", 2);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 3);
	assert_int_equal(lbt_count(fx->fd[LBM_RN4]), 3);
	lb_svc_free(a);
	lb_svc_free(b);
	lb_svc_free(n);
	lb_svc_free(c);
}

/*
 * A flush whose upserts fail still runs its deletes. A frontend released in
 * it and claimed again unchanged before the retry must be written again:
 * its master is gone.
 */
static void test_failed_flush_reclaimed(void **state)
{
	struct fx *fx = *state;
	struct lb_svc *a, *b, *c, *d;
	int found;

	NEED_ROOT(fx);
	a = svc("a", "10.96.0.1", 1, 1, NULL);
	b = svc("b", "10.96.0.2", 2, 1, NULL);
	c = svc("c", "10.96.0.3", 3, 1, NULL);
	d = svc("d", "10.96.0.4", 4, 1, NULL);
	set_ok(fx, "ns/a", NULL, a);
	set_ok(fx, "ns/b", NULL, b);
	set_ok(fx, "ns/c", NULL, c);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	/* a goes and d comes: d's upsert fails (full), a's delete runs. */
	set_ok(fx, "ns/a", a, NULL);
	set_ok(fx, "ns/d", NULL, d);
	assert_true(lb_maps_flush(fx->m, NULL) < 0);
	master4(fx, "10.96.0.1", &found);
	assert_false(found);
	/* d gives up, a comes back as it was: a's master is written again. */
	set_ok(fx, "ns/d", d, NULL);
	set_ok(fx, "ns/a", NULL, a);
	assert_int_equal(flush_until_ok(fx, 3), 0);
	assert_int_equal(master4(fx, "10.96.0.1", &found).count, 1);
	assert_true(found);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 3);
	lb_svc_free(a);
	lb_svc_free(b);
	lb_svc_free(c);
	lb_svc_free(d);
}

/*
 * A flush of both families large enough to stream its masters (8192 dirty
 * frontends and more): every master lands in its family's map, pointing at
 * its own backends; then half go and the rest change, in one flush.
 */
#define STREAMED_DUAL 5000 /* services per family */

/* s's frontends have masters whose slots hold exactly its selected backends. */
static void check_backends(struct fx *fx, const struct lb_svc *s)
{
	for (size_t j = 0; j < s->n_fe; j++) {
		const struct lb_fe *fe = &s->fe[j];
		int f = fe->ip.family == 6;
		struct lb4_key k4;
		struct lb6_key k6;
		struct lb_svc_val v;

		if (fe_master(fx, fe, &k4, &k6, &v) < 0)
			fail_msg("%s/%s: no master", s->ns, s->name);
		assert_int_equal(v.count, fe->n_sel);
		for (uint32_t k = 0; k < v.count; k++) {
			union be_any be;
			bool hit = false;

			(void)slot_be(fx, f, v.slot_base + k, &be);
			for (size_t b = 0; b < fe->n_sel && !hit; b++)
				hit = f ? !memcmp(be.b6.addr, fe->be[b].ip.a, 16) &&
						  ntohs(be.b6.port) == fe->be[b].port
					: !memcmp(&be.b4.addr, fe->be[b].ip.a, 4) &&
						  ntohs(be.b4.port) == fe->be[b].port;
			if (!hit)
				fail_msg("%s/%s: slot %u holds a backend it does not want", s->ns, s->name,
					 k);
		}
	}
}

static int setup_streamed_dual(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	for (int i = 0; i < LBM_N; i++)
		fx->max[i] = 65536; /* two generations of slot ranges in one flush */
	return fx_start(state, fx, 0);
}

static void test_streamed_dual_stack(void **state)
{
	struct fx *fx = *state;
	static struct lb_svc *s1[2 * STREAMED_DUAL], *s2[2 * STREAMED_DUAL];
	static char owner[2 * STREAMED_DUAL][32];
	char name[32], ip[64];

	NEED_ROOT(fx);
	for (int i = 0; i < 2 * STREAMED_DUAL; i++) {
		int v6 = i >= STREAMED_DUAL, k = i % STREAMED_DUAL;

		snprintf(name, sizeof(name), "d%d", i);
		snprintf(owner[i], sizeof(owner[i]), "ns/d%d", i);
		if (v6)
			snprintf(ip, sizeof(ip), "fd00:96::%x", k + 1);
		else
			snprintf(ip, sizeof(ip), "10.96.%d.%d", k / 250, k % 250 + 1);
		s1[i] = svc(name, ip, 1, 1 + i % 3, NULL);
		s2[i] = svc(name, ip, 2, 1 + (i + 1) % 3, NULL);
		set_ok(fx, owner[i], NULL, s1[i]);
	}
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), STREAMED_DUAL);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC6]), STREAMED_DUAL);
	for (int i = 0; i < 2 * STREAMED_DUAL; i++)
		check_backends(fx, s1[i]);
	/* Even ones go, odd ones change: one flush of 10000 dirty frontends. */
	for (int i = 0; i < 2 * STREAMED_DUAL; i++)
		set_ok(fx, owner[i], s1[i], i % 2 ? s2[i] : NULL);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), STREAMED_DUAL / 2);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC6]), STREAMED_DUAL / 2);
	for (int i = 1; i < 2 * STREAMED_DUAL; i += 2)
		check_backends(fx, s2[i]);
	for (int i = 0; i < 2 * STREAMED_DUAL; i++) {
		lb_svc_free(s1[i]);
		lb_svc_free(s2[i]);
	}
}

static void test_streamed_failure_deletes(void **state)
{
	struct fx *fx = *state;
	static struct lb_svc *s1[STREAMED_N], *s2[STREAMED_N];
	static char owner[STREAMED_N][32];
	struct lb_svc *d;
	char name[32], ip[32];

	NEED_ROOT(fx);
	for (int i = 0; i < STREAMED_N; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		snprintf(owner[i], sizeof(owner[i]), "ns/s%d", i);
		snprintf(ip, sizeof(ip), "10.96.%d.%d", i / 250, i % 250 + 1);
		s1[i] = svc(name, ip, 1, 1, NULL);
		s2[i] = svc(name, ip, 2, 1, NULL);
		set_ok(fx, owner[i], NULL, s1[i]);
	}
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), STREAMED_N);
	/* s0 goes, d comes (the map is full until s0's delete), 8191 others change. */
	set_ok(fx, owner[0], s1[0], NULL);
	for (int i = 1; i < 8192; i++)
		set_ok(fx, owner[i], s1[i], s2[i]);
	d = svc("d", "10.97.0.1", 3, 1, NULL);
	set_ok(fx, "ns/d", NULL, d);
	/* The first flush may fail (d's upsert); its deletes ran, so a retry gets through. */
	assert_int_equal(flush_until_ok(fx, 3), 0);
	expect4(fx, "10.96.0.1", -1);
	expect4(fx, "10.97.0.1", 1);
	expect4(fx, "10.96.0.2", 1);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), STREAMED_N);
	for (int i = 0; i < STREAMED_N; i++) {
		lb_svc_free(s1[i]);
		lb_svc_free(s2[i]);
	}
	lb_svc_free(d);
}

/*
 * A crash can leave a v4 and a v6 master with one rev_nat_id. Pruned, the
 * id is freed once: two later frontends never share it.
 */
static void test_adopt_shared_revnat(void **state)
{
	struct fx *fx = *state;
	struct lb4_key k4 = {.port = htons(80), .proto = IPPROTO_TCP};
	struct lb6_key k6 = {.port = htons(80), .proto = IPPROTO_TCP};
	struct lb_svc_val v = {.rev_nat_id = 5, .slot_order = LB_SLOT_ORDER_NONE};
	struct lb4_revnat rn4 = {.port = htons(80), .proto = IPPROTO_TCP};
	struct lb6_revnat rn6 = {.port = htons(80), .proto = IPPROTO_TCP};
	struct lb_svc *s[4];
	__u32 id = 5;

	NEED_ROOT(fx);
	inet_pton(AF_INET, "10.96.9.1", &k4.addr);
	inet_pton(AF_INET6, "fd00:96::9", k6.addr);
	rn4.addr = k4.addr;
	memcpy(rn6.addr, k6.addr, 16);
	assert_int_equal(bpf_map_update_elem(fx->fd[LBM_SVC4], &k4, &v, BPF_ANY), 0);
	assert_int_equal(bpf_map_update_elem(fx->fd[LBM_SVC6], &k6, &v, BPF_ANY), 0);
	assert_int_equal(bpf_map_update_elem(fx->fd[LBM_RN4], &id, &rn4, BPF_ANY), 0);
	assert_int_equal(bpf_map_update_elem(fx->fd[LBM_RN6], &id, &rn6, BPF_ANY), 0);
	lb_maps_free(fx->m);
	assert_int_equal(lb_maps_new(fx->fd, fx->max, &fx->m), 0);
	assert_int_equal(lb_maps_adopt(fx->m, NULL), 2);
	assert_int_equal(lb_maps_prune(fx->m, NULL), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_RN4]) + lbt_count(fx->fd[LBM_RN6]), 0);
	lb_maps_grace(fx->m);
	lb_maps_grace(fx->m);
	for (int i = 0; i < 4; i++) {
		char name[8], ip[32];

		snprintf(name, sizeof(name), "s%d", i);
		snprintf(ip, sizeof(ip), "10.96.1.%d", i + 1);
		s[i] = svc(name, ip, i + 1, 1, NULL);
		set_ok(fx, i == 0 ? "s0" : i == 1 ? "s1" : i == 2 ? "s2" : "s3", NULL, s[i]);
	}
	for (int i = 0; i < 4; i++)
		for (int j = i + 1; j < 4; j++)
			assert_int_not_equal(lb_maps_fe_id(fx->m, &s[i]->fe[0]),
					     lb_maps_fe_id(fx->m, &s[j]->fe[0]));
	for (int i = 0; i < 4; i++)
		lb_svc_free(s[i]);
}

/* An adopted master whose reverse NAT entry names another frontend gets its own back. */
static void test_adopt_wrong_revnat(void **state)
{
	struct fx *fx = *state;
	struct lb4_revnat other = {.port = htons(81), .proto = IPPROTO_TCP}, rn;
	struct lb_svc_val v;
	struct lb_svc *a;
	int found;

	NEED_ROOT(fx);
	a = svc("a", "10.96.0.1", 1, 1, NULL);
	set_ok(fx, "ns/a", NULL, a);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	v = master4(fx, "10.96.0.1", &found);
	inet_pton(AF_INET, "10.96.0.99", &other.addr);
	assert_int_equal(bpf_map_update_elem(fx->fd[LBM_RN4], &v.rev_nat_id, &other, BPF_ANY), 0);
	lb_maps_free(fx->m);
	assert_int_equal(lb_maps_new(fx->fd, fx->max, &fx->m), 0);
	assert_int_equal(lb_maps_adopt(fx->m, NULL), 1);
	set_ok(fx, "ns/a", NULL, a);
	assert_int_equal(lb_maps_prune(fx->m, NULL), 0);
	assert_int_equal(bpf_map_lookup_elem(fx->fd[LBM_RN4], &v.rev_nat_id, &rn), 0);
	assert_memory_equal(&rn.addr, a->fe[0].ip.a, 4);
	assert_int_equal(ntohs(rn.port), 80);
	lb_svc_free(a);
}

/*
 * An adopted master that cannot keep its range (here: a count larger than
 * it) still points there until the prune: no new frontend gets those slots
 * before they waited out the grace period.
 */
static void test_adopt_stale_range(void **state)
{
	struct fx *fx = *state;
	struct lb4_key k = {.port = htons(80), .proto = IPPROTO_TCP};
	struct lb_svc_val bad = {.rev_nat_id = 3, .slot_base = 0, .count = 9, .slot_order = 3};
	struct lb_svc_val v;
	struct lb_svc *a;
	int found;

	NEED_ROOT(fx);
	inet_pton(AF_INET, "10.96.9.9", &k.addr);
	assert_int_equal(bpf_map_update_elem(fx->fd[LBM_SVC4], &k, &bad, BPF_ANY), 0);
	lb_maps_free(fx->m);
	assert_int_equal(lb_maps_new(fx->fd, fx->max, &fx->m), 0);
	assert_int_equal(lb_maps_adopt(fx->m, NULL), 1);
	/* A new service before the prune: its range is not in [0, 8). */
	a = svc("a", "10.96.0.1", 1, 4, NULL);
	set_ok(fx, "ns/a", NULL, a);
	assert_int_equal(lb_maps_prune(fx->m, NULL), 0);
	v = master4(fx, "10.96.0.1", &found);
	assert_true(found);
	assert_true(v.slot_base >= 8);
	master4(fx, "10.96.9.9", &found);
	assert_false(found);
	/* After the grace period the slots are free again. */
	lb_maps_grace(fx->m);
	lb_maps_grace(fx->m);
	assert_int_equal(lb_maps_used(fx->m, LBM_SLOTS), 4);
	lb_svc_free(a);
}


/* --- backend index stress (growth, backward-shift removal, adoption) --- */
#define BI_P 6000   /* pool per family */
#define BI_S 40	    /* services */
#define BI_MAXN 700 /* backends per service */

static void bi_addr(char *a, size_t len, int v6, int b)
{
	if (v6)
		snprintf(a, len, "fd00:3::%x:%x", b >> 8, b & 255);
	else
		snprintf(a, len, "10.3.%d.%d", b >> 8, (b & 255));
}

static struct lb_svc *bi_svc(int i, const int *idx, int n, int port)
{
	struct lb_translate_conf conf = {.default_algorithm = LB_ALG_RANDOM};
	char name[16], ip[32];
	json_t *s, *sl, *eps = json_array();
	const json_t *sls[1];
	struct lb_svc *out;
	int v6 = i % 2;

	snprintf(name, sizeof(name), "b%d", i);
	snprintf(ip, sizeof(ip), v6 ? "fd00:98::%x" : "10.98.0.%d", i + 1);
	for (int k = 0; k < n; k++) {
		char a[48];

		bi_addr(a, sizeof(a), v6, idx[k]);
		json_array_append_new(eps, json_pack("{s:[s]}", "addresses", a));
	}
	s = lbt_service("ns", name, ip, 80, "TCP", NULL);
	sl = json_pack("{s:{s:s, s:s, s:{s:s}}, s:s, s:[{s:s, s:i, s:s}], s:o}", "metadata",
		       "name", name, "namespace", "ns", "labels", "kubernetes.io/service-name", name,
		       "addressType", v6 ? "IPv6" : "IPv4", "ports", "name", "p", "port", port,
		       "protocol", "TCP", "endpoints", eps);
	sls[0] = sl;
	assert_int_equal(lb_translate(&conf, s, sls, 1, &out), 0);
	json_decref(s);
	json_decref(sl);
	return out;
}

static void bi_check(struct fx *fx, struct lb_svc *const *cur, const char *when, int round)
{
	static unsigned char ref[2][BI_P][2];
	uint32_t n_ref[2] = {0};

	memset(ref, 0, sizeof(ref));
	for (int i = 0; i < BI_S; i++)
		for (size_t j = 0; cur[i] && j < cur[i]->n_fe; j++)
			for (size_t b = 0; b < cur[i]->fe[j].n_be; b++) {
				const struct lb_be *be = &cur[i]->fe[j].be[b];
				int f = be->ip.family == 6;
				int x = f ? (be->ip.a[13] << 8 | be->ip.a[15]) : (be->ip.a[2] << 8 | be->ip.a[3]);
				int pi = be->port == 8080 ? 0 : 1;

				assert_true(x < BI_P);
				if (!ref[f][x][pi]++)
					n_ref[f]++;
			}
	for (int f = 0; f < 2; f++) {
		for (int x = 0; x < BI_P; x++)
			for (int pi = 0; pi < 2; pi++) {
				char a[48];
				struct lb_ip ip;
				uint32_t id;
				uint16_t port = pi ? 9090 : 8080;

				bi_addr(a, sizeof(a), f, x);
				assert_int_equal(lb_ip_parse(a, &ip), 0);
				id = lb_maps_be_id(fx->m, &ip, port, IPPROTO_TCP);
				if (!ref[f][x][pi]) {
					if (id)
						fail_msg("%s (round %d): %s:%u not used has id %u", when, round, a, port, id);
					continue;
				}
				if (!id)
					fail_msg("%s (round %d): %s:%u used, not found in the index", when, round, a, port);
				if (f) {
					struct lb6_backend v;

					assert_int_equal(bpf_map_lookup_elem(fx->fd[LBM_BE6], &id, &v), 0);
					assert_memory_equal(v.addr, ip.a, 16);
					assert_int_equal(ntohs(v.port), port);
				} else {
					struct lb4_backend v;

					assert_int_equal(bpf_map_lookup_elem(fx->fd[LBM_BE4], &id, &v), 0);
					assert_memory_equal(&v.addr, ip.a, 4);
					assert_int_equal(ntohs(v.port), port);
				}
			}
		if (lbt_count(fx->fd[f ? LBM_BE6 : LBM_BE4]) != n_ref[f])
			fail_msg("%s (round %d): %u entries in backends%d, %u used", when, round,
				 lbt_count(fx->fd[f ? LBM_BE6 : LBM_BE4]), f ? 6 : 4, n_ref[f]);
	}
}

static void test_backend_index_stress(void **state)
{
	struct fx *fx = *state;
	struct lb_svc *cur[BI_S] = {0};
	char *owner[BI_S];
	static int idx[BI_MAXN];

	NEED_ROOT(fx);
	if (getenv("LB_MODEL_SEED"))
		rnd_state = strtoull(getenv("LB_MODEL_SEED"), NULL, 0) * 2 + 1;
	for (int i = 0; i < BI_S; i++)
		assert_int_not_equal(asprintf(&owner[i], "ns/b%d", i), -1);
	for (int round = 0; round < 60; round++) {
		for (int c = 0; c < 8; c++) {
			int i = (int)rnd(BI_S), n = (int)rnd(BI_MAXN);
			struct lb_svc *next = NULL;
			char *err = NULL;

			if (rnd(6)) {
				/* clustered picks: a random window of the pool */
				int base = (int)rnd(BI_P - BI_MAXN);

				for (int k = 0; k < n; k++)
					idx[k] = base + k;
				next = bi_svc(i, idx, n, rnd(4) ? 8080 : 9090);
				if (rnd(2))
					lb_maps_hash_backends(next);
			}
			if (lb_maps_service_set(fx->m, owner[i], cur[i], next, &err))
				fail_msg("set: %s", err ? err : "?");
			lb_svc_free(cur[i]);
			cur[i] = next;
		}
		if (rnd(4) == 0) {
			size_t nb[2] = {rnd(20000), rnd(20000)};

			lb_maps_reserve(fx->m, 0, nb); /* grows the index (rehash from the map entries) */
		}
		assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
		bi_check(fx, cur, "after a flush", round);
		if (rnd(2) == 0)
			lb_maps_grace(fx->m);
		if (round % 9 == 8) {
			/* restart, with a duplicate of some live backends at free ids (crash leftovers) */
			for (int f = 0; f < 2; f++) {
				for (uint32_t id = 1, dups = 0; id < 40000 && dups < 50; id++) {
					union {
						struct lb4_backend b4;
						struct lb6_backend b6;
					} v;
					uint32_t to = 40000 + dups;

					if (bpf_map_lookup_elem(fx->fd[f ? LBM_BE6 : LBM_BE4], &id, &v) ||
					    !(f ? v.b6.proto : v.b4.proto) || rnd(3))
						continue;
					if (rnd(2)) { /* an empty id below it: the copy wins adoption */
						for (uint32_t t = id - 1; t > 0; t--) {
							union {
								struct lb4_backend b4;
								struct lb6_backend b6;
							} w;

							if (bpf_map_lookup_elem(fx->fd[f ? LBM_BE6 : LBM_BE4], &t, &w) == 0 &&
							    !(f ? w.b6.proto : w.b4.proto)) {
								to = t;
								break;
							}
						}
					}
					assert_int_equal(bpf_map_update_elem(fx->fd[f ? LBM_BE6 : LBM_BE4], &to, &v, BPF_ANY), 0);
					dups++;
				}
			}
			restart(fx, cur, owner, BI_S);
			bi_check(fx, cur, "after a restart", round);
		}
	}
	for (int i = 0; i < BI_S; i++) {
		char *err = NULL;

		assert_int_equal(lb_maps_service_set(fx->m, owner[i], cur[i], NULL, &err), 0);
		lb_svc_free(cur[i]);
		cur[i] = NULL;
		free(owner[i]);
	}
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	bi_check(fx, cur, "at the end", -1);
}

static int setup_bi(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	for (int i = 0; i < LBM_N; i++)
		fx->max[i] = 65536;
	fx->max[LBM_SLOTS] = 1 << 20;
	return fx_start(state, fx, 0);
}


/* A streamed flush whose dirty frontends are (almost) all IPv6, twice, with a failed v4 flush between */
static void test_streamed_v6_only(void **state)
{
	struct fx *fx = *state;
	enum { N = 9000 };
	static struct lb_svc *s1[N], *s2[N];
	static char owner[N][32];
	char name[32], ip[64];
	struct lb_svc *v4[20];
	char o4[20][32];

	NEED_ROOT(fx);
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "v%d", i);
		snprintf(owner[i], sizeof(owner[i]), "ns/v%d", i);
		snprintf(ip, sizeof(ip), "fd00:96::%x", i + 1);
		s1[i] = svc(name, ip, 1, 1 + i % 3, NULL);
		s2[i] = svc(name, ip, 2, 1 + (i + 1) % 3, NULL);
		set_ok(fx, owner[i], NULL, s1[i]);
	}
	/* a few v4 ones beyond what the kernel's lb4_services holds: the flush fails */
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		snprintf(o4[i], sizeof(o4[i]), "ns/f%d", i);
		snprintf(ip, sizeof(ip), "10.96.0.%d", i + 1);
		v4[i] = svc(name, ip, 3, 1, NULL);
		set_ok(fx, o4[i], NULL, v4[i]);
	}
	assert_true(lb_maps_flush(fx->m, NULL) < 0);
	/* the v4 ones go, the v6 change: still dirty from the failure, more dirtied */
	for (int i = 0; i < 20; i++)
		set_ok(fx, o4[i], v4[i], NULL);
	for (int i = 0; i < N; i++)
		set_ok(fx, owner[i], s1[i], s2[i]);
	assert_int_equal(flush_until_ok(fx, 3), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC6]), N);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC4]), 0);
	for (int i = 0; i < N; i++)
		check_backends(fx, s2[i]);
	for (int i = 0; i < N; i++)
		set_ok(fx, owner[i], s2[i], i % 2 ? s1[i] : NULL);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	assert_int_equal(lbt_count(fx->fd[LBM_SVC6]), N / 2);
	for (int i = 0; i < N; i++) {
		lb_svc_free(s1[i]);
		lb_svc_free(s2[i]);
	}
	for (int i = 0; i < 20; i++)
		lb_svc_free(v4[i]);
}

static int setup_streamed_v6(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	for (int i = 0; i < LBM_N; i++)
		fx->max[i] = 65536;
	fx->max[LBM_SVC4] = 10; /* the kernel's */
	return fx_start(state, fx, 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_write_layout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_incremental, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shared_backend, setup, teardown),
		cmocka_unit_test_setup_teardown(test_freed_udp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_services, setup_one_frontend, teardown),
		cmocka_unit_test_setup_teardown(test_full_slots, setup_few_slots, teardown),
		cmocka_unit_test_setup_teardown(test_full_backends, setup_few_backends, teardown),
		cmocka_unit_test_setup_teardown(test_conflict, setup, teardown),
		cmocka_unit_test_setup_teardown(test_churn, setup_512_slots, teardown),
		cmocka_unit_test_setup_teardown(test_adopt_and_prune, setup, teardown),
		cmocka_unit_test_setup_teardown(test_adopt_crash_leftovers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dual_stack, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_model, setup_model, teardown),
		cmocka_unit_test_setup_teardown(test_failed_flush_new_frontend, setup_tiny_masters,
						teardown),
		cmocka_unit_test_setup_teardown(test_failed_flush_reclaimed, setup_tiny_masters,
						teardown),
		cmocka_unit_test_setup_teardown(test_streamed_failure_deletes, setup_streamed_tiny,
						teardown),
		cmocka_unit_test_setup_teardown(test_streamed_dual_stack, setup_streamed_dual,
						teardown),
		cmocka_unit_test_setup_teardown(test_adopt_shared_revnat, setup, teardown),
		cmocka_unit_test_setup_teardown(test_adopt_wrong_revnat, setup, teardown),
		cmocka_unit_test_setup_teardown(test_adopt_stale_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backend_index_stress, setup_bi, teardown),
		cmocka_unit_test_setup_teardown(test_streamed_v6_only, setup_streamed_v6, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
