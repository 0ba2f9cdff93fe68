// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The root of a hook's chain (see sdk/include/axoneme/bpf/chain.h): one copy
 * is loaded per hook with its hook_id in .rodata, attached by the core, and
 * jumps to the first slot of the hook's active bank.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include <axoneme/bpf/chain.h>

const volatile __u32 hook_id;

/* Active bank per hook: 0 or 1. Flipped by the core after it fills the idle bank. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, AXN_CHAIN_MAX_HOOKS);
	__type(key, __u32);
	__type(value, __u32);
} axn_chain_bank SEC(".maps");

static __always_inline __u32 window(void)
{
	__u32 id = hook_id, *bank = bpf_map_lookup_elem(&axn_chain_bank, &id);

	return id * 2 * AXN_CHAIN_SLOTS + (bank && *bank ? AXN_CHAIN_SLOTS : 0);
}

SEC("tc")
int axn_root_tc(struct __sk_buff *skb)
{
	__u32 base = window();

	skb->cb[AXN_CB_POS] = base;
	bpf_tail_call(skb, &axn_chain, base);
	return TC_ACT_UNSPEC; /* empty chain */
}

SEC("xdp")
int axn_root_xdp(struct xdp_md *ctx)
{
	__u32 zero = 0, base = window(), *pos = bpf_map_lookup_elem(&axn_chain_pos, &zero);

	if (!pos)
		return XDP_PASS;
	*pos = base;
	bpf_tail_call(ctx, &axn_chain, base);
	return XDP_PASS; /* empty chain */
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
