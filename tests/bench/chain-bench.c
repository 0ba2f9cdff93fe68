// SPDX-License-Identifier: Apache-2.0
/*
 * chain-bench: what the hook chain costs per packet, via BPF_PROG_TEST_RUN.
 *
 * For tc and XDP it times, on one 54-byte TCP/IPv4 packet:
 *   floor      a program that returns at once (the test-run harness itself)
 *   direct     one program parsing Ethernet + IPv4, attached directly (no chain)
 *   root+N     the core's root (bpf/axn_root.bpf.c) followed by N chained
 *              copies of that program (N = 0, 1, 2, 4), each a separate
 *              program in its own slot, passing the packet on
 * and prints min and median ns/packet over several runs, plus what the root
 * adds over a direct attachment and what each further chained program adds.
 *
 * The maps are made here, unpinned, and the slots are filled the way
 * core/hooks.c fills them. Needs root. Not a test: it prints numbers.
 *
 *   chain-bench [-r repeat] [-n runs]
 */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <axoneme/bpf/chain.h>

#include "axn_root.skel.h"
#include "chain_bench.skel.h"
#include "../bpf/pkt.h"

enum { TC, XDP, KINDS };
#define MAX_LINKS 4
#define MAX_RUNS 99

static const char *const kind_names[KINDS] = {"tc", "xdp"};

static struct {
	int chain[KINDS];
	int bank, pos;
	struct axn_root *root[KINDS];
	struct chain_bench *progs[KINDS][MAX_LINKS]; /* one per slot: distinct programs */
} B;

static struct pkt_tcp4 pkt;

static int setup(void)
{
	int r = 0;

	for (int k = 0; k < KINDS; k++) {
		B.chain[k] = bpf_map_create(BPF_MAP_TYPE_PROG_ARRAY, "b_chain", 4, 4,
					    AXN_CHAIN_ENTRIES, NULL);
		if (B.chain[k] < 0)
			return B.chain[k];
	}
	B.bank =
	    bpf_map_create(BPF_MAP_TYPE_ARRAY, "b_chain_bank", 4, 4, AXN_CHAIN_MAX_HOOKS, NULL);
	B.pos = bpf_map_create(BPF_MAP_TYPE_PERCPU_ARRAY, "b_chain_pos", 4, 4, 1, NULL);
	if (B.bank < 0 || B.pos < 0)
		return -errno;

	for (int k = 0; k < KINDS && !r; k++) {
		struct axn_root *s = axn_root__open();

		if (!s)
			return -errno;
		B.root[k] = s;
		s->rodata->hook_id = (uint32_t)k; /* hook 0: tc, hook 1: XDP */
		r = bpf_program__set_autoload(
		    k == XDP ? s->progs.axn_root_tc : s->progs.axn_root_xdp, false);
		r = r ?: bpf_map__reuse_fd(s->maps.axn_chain, B.chain[k]);
		r = r ?: bpf_map__reuse_fd(s->maps.axn_chain_bank, B.bank);
		r = r ?: bpf_map__reuse_fd(s->maps.axn_chain_pos, B.pos);
		r = r ?: axn_root__load(s);

		for (int i = 0; i < MAX_LINKS && !r; i++) {
			struct chain_bench *p = chain_bench__open();
			struct bpf_program *prog;
			enum bpf_prog_type want =
			    k == XDP ? BPF_PROG_TYPE_XDP : BPF_PROG_TYPE_SCHED_CLS;

			if (!p)
				return -errno;
			B.progs[k][i] = p;
			bpf_object__for_each_program(prog, p->obj)
				if (bpf_program__type(prog) != want)
					r = r ?: bpf_program__set_autoload(prog, false);
			r = r ?: bpf_map__reuse_fd(p->maps.axn_chain, B.chain[k]);
			r = r ?: bpf_map__reuse_fd(p->maps.axn_chain_pos, B.pos);
			r = r ?: chain_bench__load(p);
		}
	}
	return r;
}

static void teardown(void)
{
	for (int k = 0; k < KINDS; k++) {
		for (int i = 0; i < MAX_LINKS; i++)
			chain_bench__destroy(B.progs[k][i]);
		axn_root__destroy(B.root[k]);
		if (B.chain[k] > 0)
			close(B.chain[k]);
	}
	if (B.bank > 0)
		close(B.bank);
	if (B.pos > 0)
		close(B.pos);
}

/* Hook k's bank 0 := n link programs; the rest of the bank empty. */
static int publish(int k, int n)
{
	uint32_t base = (uint32_t)k * 2 * AXN_CHAIN_SLOTS, zero = 0;
	int r;

	for (int i = 0; i < AXN_CHAIN_SLOTS; i++) {
		uint32_t key = base + (uint32_t)i;

		if (i < n) {
			struct chain_bench *p = B.progs[k][i];
			int fd = bpf_program__fd(k == XDP ? p->progs.xdp_link : p->progs.tc_link);

			r = bpf_map_update_elem(B.chain[k], &key, &fd, BPF_ANY);
			if (r)
				return r;
		} else {
			bpf_map_delete_elem(B.chain[k], &key);
		}
	}
	return bpf_map_update_elem(B.bank, &(uint32_t){(uint32_t)k}, &zero, BPF_ANY);
}

/* ns per packet of one BPF_PROG_TEST_RUN with `repeat` repetitions. */
static int time_once(int fd, uint32_t repeat, int want, uint32_t *ret_ns)
{
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = &pkt, .data_size_in = sizeof(pkt),
		    .repeat = repeat);
	int r;

	r = bpf_prog_test_run_opts(fd, &o);
	if (r)
		return r;
	if ((int)o.retval != want)
		return -EPROTO; /* the chain did not do what we think we are timing */
	*ret_ns = o.duration;
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

struct row {
	const char *name;
	uint32_t min, median;
};

static int measure(int fd, uint32_t repeat, int runs, int want, struct row *row)
{
	uint32_t ns[MAX_RUNS], warm;
	int r;

	/* Warm caches and the JIT image before timing. */
	r = time_once(fd, repeat / 10 ? repeat / 10 : 1, want, &warm);
	for (int i = 0; i < runs && !r; i++)
		r = time_once(fd, repeat, want, &ns[i]);
	if (r)
		return r;
	qsort(ns, (size_t)runs, sizeof(ns[0]), cmp_u32);
	row->min = ns[0];
	row->median = ns[runs / 2];
	return 0;
}

int main(int argc, char **argv)
{
	static const int links[] = {0, 1, 2, 4};
	uint32_t repeat = 1000000;
	struct row rows[KINDS][6];
	int runs = 3, c, r;

	while ((c = getopt(argc, argv, "r:n:h")) != -1) {
		switch (c) {
		case 'r':
			repeat = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'n':
			runs = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: %s [-r repeat] [-n runs]\n", argv[0]);
			return c == 'h' ? 0 : 2;
		}
	}
	if (!repeat || runs < 1 || runs > MAX_RUNS) {
		fprintf(stderr, "chain-bench: repeat must be > 0 and runs 1..%d\n", MAX_RUNS);
		return 2;
	}
	if (geteuid() != 0) {
		fprintf(stderr, "chain-bench: needs root (BPF_PROG_TEST_RUN)\n");
		return 77;
	}
	setvbuf(stdout, NULL, _IONBF, 0);
	pkt_tcp4_syn(&pkt);
	r = setup();
	if (r) {
		fprintf(stderr, "chain-bench: setup failed: %s\n", strerror(-r));
		teardown();
		return 1;
	}

	for (int k = 0; k < KINDS && !r; k++) {
		struct chain_bench *p = B.progs[k][0];
		int pass = k == XDP ? 2 /* XDP_PASS */ : 0 /* TC_ACT_OK */;
		int end = k == XDP ? 2 /* XDP_PASS */ : -1 /* TC_ACT_UNSPEC */;
		int root = bpf_program__fd(k == XDP ? B.root[k]->progs.axn_root_xdp
						    : B.root[k]->progs.axn_root_tc);
		int floor_fd = bpf_program__fd(k == XDP ? p->progs.xdp_floor : p->progs.tc_floor);
		int direct_fd =
			bpf_program__fd(k == XDP ? p->progs.xdp_direct : p->progs.tc_direct);

		rows[k][0].name = "floor (return at once)";
		r = measure(floor_fd, repeat, runs, pass, &rows[k][0]);
		rows[k][1].name = "direct (parse, no chain)";
		r = r ?: measure(direct_fd, repeat, runs, pass, &rows[k][1]);
		for (int i = 0; i < 4 && !r; i++) {
			static const char *const names[] = {"root + 0 (empty chain)", "root + 1",
							    "root + 2", "root + 4"};

			rows[k][2 + i].name = names[i];
			r = publish(k, links[i]);
			r = r ?: measure(root, repeat, runs, end, &rows[k][2 + i]);
		}
		if (r)
			fprintf(stderr, "chain-bench: %s: %s\n", kind_names[k], strerror(-r));
	}
	teardown();
	if (r)
		return 1;

	printf("chain-bench: BPF_PROG_TEST_RUN, %zu-byte TCP/IPv4 packet, repeat %u, %d run(s); "
	       "ns per packet\n\n",
	       sizeof(pkt), repeat, runs);
	printf("%-5s %-26s %8s %8s\n", "hook", "case", "min", "median");
	for (int k = 0; k < KINDS; k++)
		for (int i = 0; i < 6; i++)
			printf("%-5s %-26s %8u %8u\n", kind_names[k], rows[k][i].name,
			       rows[k][i].min, rows[k][i].median);
	printf("\nderived from medians:\n");
	for (int k = 0; k < KINDS; k++) {
		double direct = rows[k][1].median, r1 = rows[k][3].median, r4 = rows[k][5].median;

		printf(
		    "%-5s root + 1 over direct: %+.1f ns;  each further chained program: %+.1f ns "
		    "((root+4 - root+1) / 3)\n",
		    kind_names[k], r1 - direct, (r4 - r1) / 3.0);
	}
	return 0;
}
