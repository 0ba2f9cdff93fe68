// SPDX-License-Identifier: Apache-2.0
/*
 * The hook chain (sdk/include/axoneme/bpf/chain.h) run for real through
 * BPF_PROG_TEST_RUN, without the agent: the core's root program plus test
 * programs (chain_test.bpf.c) sharing maps made here, with slots filled the
 * way core/hooks.c fills them (idle bank, empty slot after the last, flip).
 *
 * Needs root (BPF); exits 77 otherwise.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <axoneme/bpf/chain.h>

#include "axn_root.skel.h"
#include "chain_test.h"
#include "chain_test.skel.h"
#include "pkt.h"

enum { TC, XDP };

/* Hook ids are deliberately not 0, so window arithmetic is exercised. */
#define HOOK_TC 3
#define HOOK_TC2 4
#define HOOK_XDP 7

static struct {
	int chain[2]; /* one PROG_ARRAY per program type, as the core has */
	int bank;
	int pos;
	struct axn_root *root[2]; /* HOOK_TC (tc), HOOK_XDP (xdp) */
	struct axn_root *root_tc2;
	struct chain_test *progs[2];
} F = {.chain = {-1, -1}, .bank = -1, .pos = -1};

static struct pkt_tcp4 pkt;

/* --- setup ------------------------------------------------------------------ */

static int root_open(int kind, uint32_t hook_id, struct axn_root **ret)
{
	struct axn_root *s = axn_root__open();
	int r;

	if (!s)
		return -errno;
	s->rodata->hook_id = hook_id;
	r = bpf_program__set_autoload(kind == XDP ? s->progs.axn_root_tc : s->progs.axn_root_xdp,
				      false);
	if (!r)
		r = bpf_map__reuse_fd(s->maps.axn_chain, F.chain[kind]);
	if (!r)
		r = bpf_map__reuse_fd(s->maps.axn_chain_bank, F.bank);
	if (!r)
		r = bpf_map__reuse_fd(s->maps.axn_chain_pos, F.pos);
	if (!r)
		r = axn_root__load(s);
	if (r) {
		axn_root__destroy(s);
		return r;
	}
	*ret = s;
	return 0;
}

/* One object, loaded once per program type (they cannot share axn_chain). */
static int progs_open(int kind, int trace_fd, struct chain_test **ret)
{
	struct chain_test *s = chain_test__open();
	struct bpf_program *p;
	int r = 0;

	if (!s)
		return -errno;
	bpf_object__for_each_program(p, s->obj)
		if (bpf_program__type(p) !=
		    (kind == XDP ? BPF_PROG_TYPE_XDP : BPF_PROG_TYPE_SCHED_CLS))
			r = r ?: bpf_program__set_autoload(p, false);
	if (!r)
		r = bpf_map__reuse_fd(s->maps.axn_chain, F.chain[kind]);
	if (!r)
		r = bpf_map__reuse_fd(s->maps.axn_chain_pos, F.pos);
	if (!r && trace_fd >= 0)
		r = bpf_map__reuse_fd(s->maps.trace, trace_fd);
	if (!r)
		r = chain_test__load(s);
	if (r) {
		chain_test__destroy(s);
		return r;
	}
	*ret = s;
	return 0;
}

static int group_setup(void **state)
{
	int r;

	pkt_tcp4_syn(&pkt);
	for (int k = TC; k <= XDP; k++) {
		F.chain[k] =
		    bpf_map_create(BPF_MAP_TYPE_PROG_ARRAY, k == TC ? "t_chain_tc" : "t_chain_xdp",
				   4, 4, AXN_CHAIN_ENTRIES, NULL);
		if (F.chain[k] < 0)
			return -1;
	}
	F.bank =
	    bpf_map_create(BPF_MAP_TYPE_ARRAY, "t_chain_bank", 4, 4, AXN_CHAIN_MAX_HOOKS, NULL);
	F.pos = bpf_map_create(BPF_MAP_TYPE_PERCPU_ARRAY, "t_chain_pos", 4, 4, 1, NULL);
	if (F.bank < 0 || F.pos < 0)
		return -1;
	r = root_open(TC, HOOK_TC, &F.root[TC]);
	r = r ?: root_open(TC, HOOK_TC2, &F.root_tc2);
	r = r ?: root_open(XDP, HOOK_XDP, &F.root[XDP]);
	r = r ?: progs_open(TC, -1, &F.progs[TC]);
	r = r ?: progs_open(XDP, bpf_map__fd(F.progs[TC]->maps.trace), &F.progs[XDP]);
	if (r)
		fprintf(stderr, "setup: %s\n", strerror(-r));
	return r ? -1 : 0;
}

static int group_teardown(void **state)
{
	for (int k = TC; k <= XDP; k++) {
		chain_test__destroy(F.progs[k]);
		axn_root__destroy(F.root[k]);
		if (F.chain[k] >= 0)
			close(F.chain[k]);
	}
	axn_root__destroy(F.root_tc2);
	if (F.bank >= 0)
		close(F.bank);
	if (F.pos >= 0)
		close(F.pos);
	return 0;
}

/* --- what the core does ------------------------------------------------------- */

/* Fill one bank of a hook's window and empty every slot after the last. */
static void publish(int kind, uint32_t hook, uint32_t bank, const int *fds, size_t n)
{
	uint32_t base = hook * 2 * AXN_CHAIN_SLOTS + bank * AXN_CHAIN_SLOTS;

	assert_true(n < AXN_CHAIN_SLOTS);
	for (uint32_t i = 0; i < AXN_CHAIN_SLOTS; i++) {
		uint32_t key = base + i;

		if (i < n)
			assert_int_equal(bpf_map_update_elem(F.chain[kind], &key, &fds[i], BPF_ANY),
					 0);
		else
			bpf_map_delete_elem(F.chain[kind], &key);
	}
}

static void flip(uint32_t hook, uint32_t bank)
{
	assert_int_equal(bpf_map_update_elem(F.bank, &hook, &bank, BPF_ANY), 0);
}

static void clear_hook(int kind, uint32_t hook)
{
	publish(kind, hook, 0, NULL, 0);
	publish(kind, hook, 1, NULL, 0);
	flip(hook, 0);
}

static int mark_fd(int kind, int n)
{
	struct chain_test *s = F.progs[kind];
	struct bpf_program *tc[] = {s->progs.tc_mark0, s->progs.tc_mark1, s->progs.tc_mark2,
				    s->progs.tc_mark3};
	struct bpf_program *xdp[] = {s->progs.xdp_mark0, s->progs.xdp_mark1, s->progs.xdp_mark2,
				     s->progs.xdp_mark3};

	return bpf_program__fd(kind == XDP ? xdp[n] : tc[n]);
}

static int drop_fd(int kind)
{
	return bpf_program__fd(kind == XDP ? F.progs[XDP]->progs.xdp_drop
					   : F.progs[TC]->progs.tc_drop);
}

static int root_fd(int kind)
{
	return bpf_program__fd(kind == XDP ? F.root[XDP]->progs.axn_root_xdp
					   : F.root[TC]->progs.axn_root_tc);
}

/* --- running packets ---------------------------------------------------------- */

struct result {
	int verdict;
	uint32_t mark; /* tc only */
	uint32_t n;    /* programs that ran */
	uint32_t who[16];
	uint32_t slot[16];
};

static void trace_clear(void)
{
	int fd = bpf_map__fd(F.progs[TC]->maps.trace);
	uint32_t zero = 0;

	for (uint32_t k = 0; k < TRACE_MAX; k++)
		assert_int_equal(bpf_map_update_elem(fd, &k, &zero, BPF_ANY), 0);
}

static void run(int kind, int prog_fd, struct result *res)
{
	int fd = bpf_map__fd(F.progs[TC]->maps.trace);
	struct __sk_buff skb = {0};
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = &pkt, .data_size_in = sizeof(pkt),
		    .repeat = 1);

	if (kind == TC) {
		/* ctx_out brings skb->mark back: what the marking programs wrote. */
		o.ctx_in = &skb;
		o.ctx_size_in = sizeof(skb);
		o.ctx_out = &skb;
		o.ctx_size_out = sizeof(skb);
	}
	memset(res, 0, sizeof(*res));
	trace_clear();
	assert_int_equal(bpf_prog_test_run_opts(prog_fd, &o), 0);
	res->verdict = (int)o.retval;
	res->mark = skb.mark;
	for (uint32_t k = 0; k < TRACE_MAX; k++) {
		uint32_t v;

		assert_int_equal(bpf_map_lookup_elem(fd, &k, &v), 0);
		if (k == 0)
			res->n = v;
		else if (k <= 16)
			res->who[k - 1] = v;
		else if (k >= TRACE_SLOT && k < TRACE_SLOT + 16)
			res->slot[k - TRACE_SLOT] = v;
	}
}

static uint32_t slot_of(uint32_t hook, uint32_t bank, uint32_t i)
{
	return hook * 2 * AXN_CHAIN_SLOTS + bank * AXN_CHAIN_SLOTS + i;
}

/* --- tc ------------------------------------------------------------------------ */

static void tc_empty_chain_is_unspec(void **state)
{
	struct result r;

	clear_hook(TC, HOOK_TC);
	run(TC, root_fd(TC), &r);
	assert_int_equal(r.verdict, TC_ACT_UNSPEC);
	assert_int_equal(r.n, 0);
	assert_int_equal(r.mark, 0);
}

static void tc_three_run_in_slot_order(void **state)
{
	/* Slot order, not program order: 2, 0, 1. */
	int fds[] = {mark_fd(TC, 2), mark_fd(TC, 0), mark_fd(TC, 1)};
	struct result r;

	clear_hook(TC, HOOK_TC);
	publish(TC, HOOK_TC, 1, fds, 3);
	flip(HOOK_TC, 1);
	run(TC, root_fd(TC), &r);
	assert_int_equal(r.verdict, TC_ACT_UNSPEC); /* fell off the end */
	assert_int_equal(r.mark, 0x7);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.who[0], 2);
	assert_int_equal(r.who[1], 0);
	assert_int_equal(r.who[2], 1);
	for (uint32_t i = 0; i < 3; i++)
		assert_int_equal(r.slot[i], slot_of(HOOK_TC, 1, i));
}

static void tc_drop_ends_the_chain(void **state)
{
	int fds[] = {mark_fd(TC, 0), drop_fd(TC), mark_fd(TC, 2)};
	struct result r;

	clear_hook(TC, HOOK_TC);
	publish(TC, HOOK_TC, 0, fds, 3);
	run(TC, root_fd(TC), &r);
	assert_int_equal(r.verdict, TC_ACT_SHOT);
	assert_int_equal(r.mark, 0x1); /* slot 3 (mark2) did not run */
	assert_int_equal(r.n, 2);
	assert_int_equal(r.who[0], 0);
	assert_int_equal(r.who[1], TRACE_DROP);
}

static void tc_bank_flip_switches_chains(void **state)
{
	int a[] = {mark_fd(TC, 0)}, b[] = {mark_fd(TC, 1), mark_fd(TC, 2)};
	struct result r;

	clear_hook(TC, HOOK_TC);
	publish(TC, HOOK_TC, 0, a, 1);
	publish(TC, HOOK_TC, 1, b, 2);
	run(TC, root_fd(TC), &r);
	assert_int_equal(r.mark, 0x1);
	flip(HOOK_TC, 1);
	run(TC, root_fd(TC), &r);
	assert_int_equal(r.mark, 0x6);
	assert_int_equal(r.n, 2);
	flip(HOOK_TC, 0);
	run(TC, root_fd(TC), &r);
	assert_int_equal(r.mark, 0x1);
}

static void tc_hooks_are_isolated(void **state)
{
	int a[] = {mark_fd(TC, 0)}, b[] = {mark_fd(TC, 3)};
	struct result r;

	clear_hook(TC, HOOK_TC);
	clear_hook(TC, HOOK_TC2);
	publish(TC, HOOK_TC, 0, a, 1);
	publish(TC, HOOK_TC2, 0, b, 1);
	run(TC, root_fd(TC), &r);
	assert_int_equal(r.mark, 0x1);
	run(TC, bpf_program__fd(F.root_tc2->progs.axn_root_tc), &r);
	assert_int_equal(r.mark, 0x8);
	clear_hook(TC, HOOK_TC2);
}

/*
 * A full bank (AXN_CHAIN_SLOTS - 1 programs) runs completely and stops at
 * the empty last slot; it must not run into the other bank, which here
 * holds a program that would leave mark bit 3.
 */
static void tc_full_chain_stops_at_bank_end(void **state)
{
	int fds[AXN_CHAIN_SLOTS - 1], other[] = {mark_fd(TC, 3)};
	struct result r;

	for (size_t i = 0; i < AXN_CHAIN_SLOTS - 1; i++)
		fds[i] = mark_fd(TC, (int)(i % 3));
	clear_hook(TC, HOOK_TC);
	publish(TC, HOOK_TC, 0, fds, AXN_CHAIN_SLOTS - 1);
	publish(TC, HOOK_TC, 1, other, 1);
	run(TC, root_fd(TC), &r);
	assert_int_equal(r.verdict, TC_ACT_UNSPEC);
	assert_int_equal(r.n, AXN_CHAIN_SLOTS - 1);
	assert_int_equal(r.mark, 0x7);
}

/* Why the core keeps one chain map per program type. */
static void chain_map_refuses_other_program_type(void **state)
{
	uint32_t key = slot_of(HOOK_XDP, 0, 0);
	int fd = mark_fd(TC, 0);

	assert_int_equal(bpf_map_update_elem(F.chain[XDP], &key, &fd, BPF_ANY), -EINVAL);
}

/* --- XDP ----------------------------------------------------------------------- */

static void xdp_empty_chain_is_pass(void **state)
{
	struct result r;

	clear_hook(XDP, HOOK_XDP);
	run(XDP, root_fd(XDP), &r);
	assert_int_equal(r.verdict, XDP_PASS);
	assert_int_equal(r.n, 0);
}

static void xdp_three_run_in_slot_order(void **state)
{
	int fds[] = {mark_fd(XDP, 1), mark_fd(XDP, 2), mark_fd(XDP, 0)};
	struct result r;

	clear_hook(XDP, HOOK_XDP);
	publish(XDP, HOOK_XDP, 1, fds, 3);
	flip(HOOK_XDP, 1);
	run(XDP, root_fd(XDP), &r);
	assert_int_equal(r.verdict, XDP_PASS);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.who[0], 1);
	assert_int_equal(r.who[1], 2);
	assert_int_equal(r.who[2], 0);
	for (uint32_t i = 0; i < 3; i++)
		assert_int_equal(r.slot[i], slot_of(HOOK_XDP, 1, i));
}

static void xdp_drop_ends_the_chain(void **state)
{
	int fds[] = {mark_fd(XDP, 0), drop_fd(XDP), mark_fd(XDP, 2)};
	struct result r;

	clear_hook(XDP, HOOK_XDP);
	publish(XDP, HOOK_XDP, 0, fds, 3);
	run(XDP, root_fd(XDP), &r);
	assert_int_equal(r.verdict, XDP_DROP);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.who[1], TRACE_DROP);
}

static void xdp_bank_flip_switches_chains(void **state)
{
	int a[] = {mark_fd(XDP, 0)}, b[] = {mark_fd(XDP, 3), drop_fd(XDP)};
	struct result r;

	clear_hook(XDP, HOOK_XDP);
	publish(XDP, HOOK_XDP, 0, a, 1);
	publish(XDP, HOOK_XDP, 1, b, 2);
	run(XDP, root_fd(XDP), &r);
	assert_int_equal(r.verdict, XDP_PASS);
	assert_int_equal(r.n, 1);
	flip(HOOK_XDP, 1);
	run(XDP, root_fd(XDP), &r);
	assert_int_equal(r.verdict, XDP_DROP);
	assert_int_equal(r.who[0], 3);
	flip(HOOK_XDP, 0);
	run(XDP, root_fd(XDP), &r);
	assert_int_equal(r.verdict, XDP_PASS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tc_empty_chain_is_unspec),
		cmocka_unit_test(tc_three_run_in_slot_order),
		cmocka_unit_test(tc_drop_ends_the_chain),
		cmocka_unit_test(tc_bank_flip_switches_chains),
		cmocka_unit_test(tc_hooks_are_isolated),
		cmocka_unit_test(tc_full_chain_stops_at_bank_end),
		cmocka_unit_test(chain_map_refuses_other_program_type),
		cmocka_unit_test(xdp_empty_chain_is_pass),
		cmocka_unit_test(xdp_three_run_in_slot_order),
		cmocka_unit_test(xdp_drop_ends_the_chain),
		cmocka_unit_test(xdp_bank_flip_switches_chains),
	};

	if (geteuid() != 0) {
		printf("SKIP: test_chain loads BPF programs and needs root\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
