/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * axoneme/bpf/chain.h - BPF side of the hook registry: how several modules'
 * programs share one tc or XDP hook.
 *
 * The core attaches one small root program per hook (interface + direction).
 * Module programs live in a shared PROG_ARRAY, `axn_chain`, in a window of
 * slots per hook. A PROG_ARRAY takes the program type of its first user, so
 * the agent keeps one per type (tc and XDP): a BPF object whose programs call
 * AXN_CHAIN_NEXT holds programs of one type only (or is loaded once per type
 * with the other type's programs switched off by bpf_program__set_autoload). Each window has two banks; the core writes a new order into
 * the idle bank and then flips the hook's active bank with one map update, so
 * every packet sees either the old chain or the new one, never a mix.
 *
 *   root: base = window(hook, active bank); pos = base; tail_call(base)
 *   prog: ... done with the packet?  return verdict
 *         ... not done?              return AXN_CHAIN_NEXT(ctx)
 *
 * The slot position travels in skb->cb[AXN_CB_POS] for tc and in a per-CPU
 * scratch map for XDP (XDP programs run to completion on one CPU). The slot
 * after the last program is always empty, so AXN_CHAIN_NEXT past the end
 * falls through to "continue as if nothing was attached" (TC_ACT_UNSPEC /
 * XDP_PASS).
 *
 * A module program includes this header and, before loading its skeleton,
 * points its axn_chain map at the agent's with
 * bpf_map__reuse_fd(skel->maps.axn_chain, fd) with the fd from
 * host->hook_chain_fd(self, AXN_HOOK_TC_INGRESS or AXN_HOOK_XDP, &fd).
 */
#ifndef AXONEME_BPF_CHAIN_H
#define AXONEME_BPF_CHAIN_H

#define AXN_CHAIN_SLOTS 16      /* slots per bank; at most 15 programs per hook */
#define AXN_CHAIN_MAX_HOOKS 256 /* hooks per agent */
#define AXN_CHAIN_ENTRIES (AXN_CHAIN_MAX_HOOKS * 2 * AXN_CHAIN_SLOTS)
#define AXN_CB_POS 4 /* skb->cb[] word that carries the chain position */

#ifdef __BPF__

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, AXN_CHAIN_ENTRIES);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} axn_chain SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} axn_chain_pos SEC(".maps");

static __always_inline int axn_chain_next_tc(struct __sk_buff *skb)
{
	__u32 pos = skb->cb[AXN_CB_POS] + 1;

	skb->cb[AXN_CB_POS] = pos;
	bpf_tail_call(skb, &axn_chain, pos);
	return -1; /* TC_ACT_UNSPEC: end of chain */
}

static __always_inline int axn_chain_next_xdp(struct xdp_md *ctx)
{
	__u32 zero = 0, *pos = bpf_map_lookup_elem(&axn_chain_pos, &zero);

	if (!pos)
		return 2; /* XDP_PASS */
	*pos += 1;
	bpf_tail_call(ctx, &axn_chain, *pos);
	return 2; /* XDP_PASS: end of chain */
}

#define AXN_CHAIN_NEXT(ctx)                                                                        \
	_Generic((ctx), struct __sk_buff *: axn_chain_next_tc, struct xdp_md *: axn_chain_next_xdp)(ctx)

#endif /* __BPF__ */

#endif /* AXONEME_BPF_CHAIN_H */
