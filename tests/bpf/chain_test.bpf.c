// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Programs for test_chain: module programs as a chain would hold them. Each
 * "mark" program leaves a trace (its number, in call order) and passes the
 * packet on; "drop" ends the chain with a verdict; "count" only counts.
 *
 * tc and XDP programs cannot share one PROG_ARRAY, so the tests load this
 * object once per program type, each time with only that type's programs
 * (axn_chain = that type's chain).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include <axoneme/bpf/chain.h>

#include "chain_test.h"

/* trace[0]: calls; trace[1 + i]: who ran i-th; trace[TRACE_SLOT + i]: from which slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TRACE_MAX);
	__type(key, __u32);
	__type(value, __u32);
} trace SEC(".maps");

static __always_inline void note(__u32 who, __u32 slot)
{
	__u32 zero = 0, *n = bpf_map_lookup_elem(&trace, &zero), k, *v;

	if (!n)
		return;
	k = 1 + (*n & 0xf);
	v = bpf_map_lookup_elem(&trace, &k);
	if (v)
		*v = who;
	k += TRACE_SLOT - 1;
	v = bpf_map_lookup_elem(&trace, &k);
	if (v)
		*v = slot;
	*n += 1;
}

static __always_inline __u32 xdp_slot(void)
{
	__u32 zero = 0, *pos = bpf_map_lookup_elem(&axn_chain_pos, &zero);

	return pos ? *pos : ~0u;
}

#define TC_MARK(n)                                                                                 \
	SEC("tc") int tc_mark##n(struct __sk_buff *skb)                                            \
	{                                                                                          \
		note(n, skb->cb[AXN_CB_POS]);                                                      \
		skb->mark |= 1u << n;                                                              \
		return AXN_CHAIN_NEXT(skb);                                                        \
	}

#define XDP_MARK(n)                                                                                \
	SEC("xdp") int xdp_mark##n(struct xdp_md *ctx)                                             \
	{                                                                                          \
		note(n, xdp_slot());                                                               \
		return AXN_CHAIN_NEXT(ctx);                                                        \
	}

TC_MARK(0)
TC_MARK(1)
TC_MARK(2)
TC_MARK(3)
XDP_MARK(0)
XDP_MARK(1)
XDP_MARK(2)
XDP_MARK(3)

SEC("tc")
int tc_drop(struct __sk_buff *skb)
{
	note(TRACE_DROP, skb->cb[AXN_CB_POS]);
	return TC_ACT_SHOT;
}

SEC("xdp")
int xdp_drop(struct xdp_md *ctx)
{
	note(TRACE_DROP, xdp_slot());
	return XDP_DROP;
}

/* For the registry's cgroup hooks (test_hooks): allow every connect. */
SEC("cgroup/connect4")
int cg_allow_a(struct bpf_sock_addr *ctx)
{
	return 1;
}

SEC("cgroup/connect4")
int cg_allow_b(struct bpf_sock_addr *ctx)
{
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
