// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Programs for tests/bench/chain-bench: the cheapest realistic module
 * program (parse Ethernet + IPv4, then pass), once standalone ("direct")
 * and once as a chain member ("link"), for tc and XDP. "floor" returns at
 * once: the cost of BPF_PROG_TEST_RUN itself.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include <axoneme/bpf/chain.h>

/* <0: malformed, 0: not IPv4, else the IPv4 protocol. */
static __always_inline int parse(void *data, void *end)
{
	struct ethhdr *eth = data;
	struct iphdr *ip;

	if ((void *)(eth + 1) > end)
		return -1;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->ihl < 5)
		return -1;
	return ip->protocol;
}

SEC("tc")
int tc_floor(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

SEC("tc")
int tc_direct(struct __sk_buff *skb)
{
	return parse((void *)(long)skb->data, (void *)(long)skb->data_end) < 0 ? TC_ACT_SHOT
										 : TC_ACT_OK;
}

SEC("tc")
int tc_link(struct __sk_buff *skb)
{
	if (parse((void *)(long)skb->data, (void *)(long)skb->data_end) < 0)
		return TC_ACT_SHOT;
	return AXN_CHAIN_NEXT(skb);
}

SEC("xdp")
int xdp_floor(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int xdp_direct(struct xdp_md *ctx)
{
	return parse((void *)(long)ctx->data, (void *)(long)ctx->data_end) < 0 ? XDP_DROP
									       : XDP_PASS;
}

SEC("xdp")
int xdp_link(struct xdp_md *ctx)
{
	if (parse((void *)(long)ctx->data, (void *)(long)ctx->data_end) < 0)
		return XDP_DROP;
	return AXN_CHAIN_NEXT(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
