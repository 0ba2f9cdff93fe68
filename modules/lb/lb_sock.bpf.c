// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * lb_sock.bpf.c - socket load balancing: cgroup sock_addr programs that
 * translate a service frontend into a backend when a socket connects
 * (connect4/6) or sends without connecting (sendmsg4/6), and translate the
 * backend back into the frontend for the application (recvmsg4/6,
 * getpeername4/6). Pod-to-service traffic therefore never carries a virtual
 * IP on the wire. Map layouts: lb_shared.h.
 *
 * A frontend without selectable backends refuses: the program returns 0
 * (reject) after bpf_set_retval(-ECONNREFUSED), so connect() and sendmsg()
 * fail with ECONNREFUSED at once instead of hanging on a VIP nobody answers.
 * bpf_set_retval exists from kernel 5.18; older kernels give EPERM (the
 * branch is removed at load time through a CO-RE enum check).
 *
 * A dual-stack AF_INET6 socket that names an IPv4 service as ::ffff:a.b.c.d
 * is translated through the IPv4 maps and gets ::ffff:<backend> (the kernel
 * sends it as IPv4); recvmsg6/getpeername6 reverse it from the IPv4 socket
 * reverse-NAT state. For an unconnected UDP send to a mapped address the
 * kernel hands the datagram to udp_sendmsg(), which runs sendmsg4 on it:
 * that translates it (and is enough: tested with sendmsg6 detached); if
 * sendmsg6 sees it first, translating there too is harmless, as a backend
 * is no frontend. connect6 and the reverse hooks see the mapped address.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "lb_shared.h"

#define ECONNREFUSED 111
#define NSEC_PER_SEC 1000000000ULL
#define SYS_REJECT 0
#define SYS_PROCEED 1

/* Placeholders: the agent points every map at its pinned one before loading. */
#define LB_MAP(_name, _type, _key, _val)                                                          \
	struct {                                                                                   \
		__uint(type, _type);                                                               \
		__uint(max_entries, 1);                                                            \
		__type(key, _key);                                                                 \
		__type(value, _val);                                                               \
	} _name SEC(".maps")

LB_MAP(lb4_services, BPF_MAP_TYPE_HASH, struct lb4_key, struct lb_svc_val);
LB_MAP(lb6_services, BPF_MAP_TYPE_HASH, struct lb6_key, struct lb_svc_val);
LB_MAP(lb_slots, BPF_MAP_TYPE_ARRAY, __u32, struct lb_slot);
LB_MAP(lb4_backends, BPF_MAP_TYPE_ARRAY, __u32, struct lb4_backend);
LB_MAP(lb6_backends, BPF_MAP_TYPE_ARRAY, __u32, struct lb6_backend);
LB_MAP(lb4_sk_revnat, BPF_MAP_TYPE_LRU_HASH, struct lb4_sk_key, struct lb4_sk_val);
LB_MAP(lb6_sk_revnat, BPF_MAP_TYPE_LRU_HASH, struct lb6_sk_key, struct lb6_sk_val);
LB_MAP(lb_affinity, BPF_MAP_TYPE_LRU_HASH, struct lb_aff_key, struct lb_aff_val);

static __always_inline int refuse(void)
{
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_set_retval))
		bpf_set_retval(-ECONNREFUSED);
	return SYS_REJECT;
}

static __always_inline int proto_ok(struct bpf_sock_addr *ctx)
{
	return ctx->protocol == IPPROTO_TCP || ctx->protocol == IPPROTO_UDP;
}

/* The backend id in slot idx of the range at base; 0 if none. */
static __always_inline __u32 slot_get(__u32 base, __u32 idx)
{
	__u32 k = base + idx;
	struct lb_slot *s = bpf_map_lookup_elem(&lb_slots, &k);

	return s ? s->backend_id : 0;
}

/*
 * The affinity entry of (client netns, frontend) if it is fresh and its slot
 * still holds its backend, else 0 (*idx: that slot). Refreshed on every use,
 * as kube-proxy does (SVC-37).
 */
static __always_inline __u32 affinity_get(struct lb_aff_key *ak, const struct lb_svc_val *svc,
					  __u64 now, __u32 *idx)
{
	struct lb_aff_val *av = bpf_map_lookup_elem(&lb_affinity, ak);
	__u32 id, slot;

	if (!av || now - av->last_used_ns > (__u64)svc->affinity_timeout * NSEC_PER_SEC)
		return 0;
	id = av->backend_id;
	slot = av->slot;
	if (slot >= svc->count || slot_get(svc->slot_base, slot) != id)
		return 0;
	*idx = slot;
	return id;
}

static __always_inline void affinity_put(struct lb_aff_key *ak, __u32 id, __u32 idx, __u64 now)
{
	struct lb_aff_val av = {.backend_id = id, .slot = idx, .last_used_ns = now};

	bpf_map_update_elem(&lb_affinity, ak, &av, BPF_ANY);
}

/*
 * The backend pick, the same for both families but for the backends map and
 * its entry type (hence a macro): from the master *svcp, an affinity entry
 * that still holds, else a random slot. Sets be (the backend's entry) and
 * rev_nat_id; makes the caller return refuse() when nothing is selectable.
 */
#define LB_PICK(ctx, svcp, bemap, be, rev_nat_id)                                                 \
	do {                                                                                       \
		struct lb_aff_key ak_ = {};                                                        \
		struct lb_svc_val svc_;                                                            \
		__u32 id_ = 0, idx_ = 0;                                                           \
		__u64 now_ = 0;                                                                    \
                                                                                                   \
		/* One copy of the master: every field from the same version of it. */             \
		__builtin_memcpy(&svc_, svcp, sizeof(svc_));                                       \
		rev_nat_id = svc_.rev_nat_id;                                                      \
		if (svc_.count == 0 ||                                                             \
		    (svc_.slot_order <= 31 && svc_.count > (1u << svc_.slot_order)))               \
			return refuse();                                                           \
		be = NULL;                                                                         \
		if (svc_.flags & LB_F_AFFINITY) {                                                  \
			now_ = bpf_ktime_get_ns();                                                 \
			ak_.netns_cookie = bpf_get_netns_cookie(ctx);                              \
			ak_.rev_nat_id = rev_nat_id;                                               \
			id_ = affinity_get(&ak_, &svc_, now_, &idx_);                              \
			if (id_) {                                                                 \
				be = bpf_map_lookup_elem(bemap, &id_);                             \
				/* Gone or terminating: pick again. */                             \
				if (!be || !be->proto || be->state != LB_BS_ACTIVE)                \
					be = NULL;                                                 \
			}                                                                          \
		}                                                                                  \
		if (!be) {                                                                         \
			idx_ = bpf_get_prandom_u32() % svc_.count;                                 \
			id_ = slot_get(svc_.slot_base, idx_);                                      \
			be = id_ ? bpf_map_lookup_elem(bemap, &id_) : NULL;                        \
			/* No entry: the agent is rewriting this frontend right now. */            \
			if (!be || !be->proto)                                                     \
				return refuse();                                                   \
		}                                                                                  \
		if (svc_.flags & LB_F_AFFINITY)                                                    \
			affinity_put(&ak_, id_, idx_, now_);                                       \
	} while (0)

/* lb4_pick() when the address is not a service: leave the socket alone. */
#define LB_MISS 2

/*
 * The IPv4 service lookup and backend pick for vip:port, shared by AF_INET
 * sockets and by AF_INET6 ones that use an IPv4-mapped address (so both go
 * through the same maps and write the same socket reverse-NAT entry, which
 * recvmsg/getpeername of either family then read). On SYS_PROCEED *out is
 * the backend; otherwise SYS_REJECT or LB_MISS.
 */
static __always_inline int lb4_pick(struct bpf_sock_addr *ctx, __be32 vip, __be16 vport,
				    struct lb4_backend *out)
{
	struct lb4_key key = {
		.addr = vip,
		.port = vport,
		.proto = (__u8)ctx->protocol,
	};
	struct lb_svc_val *svcp;
	struct lb4_backend *be;
	__u32 rev_nat_id;

	svcp = bpf_map_lookup_elem(&lb4_services, &key);
	if (!svcp)
		return LB_MISS;
	LB_PICK(ctx, svcp, &lb4_backends, be, rev_nat_id);

	{
		struct lb4_sk_key sk = {
			.cookie = bpf_get_socket_cookie(ctx),
			.addr = be->addr,
			.port = be->port,
		};
		struct lb4_sk_val sv = {
			.addr = vip,
			.port = vport,
			.rev_nat_id = rev_nat_id,
		};

		bpf_map_update_elem(&lb4_sk_revnat, &sk, &sv, BPF_ANY);
	}
	out->addr = be->addr;
	out->port = be->port;
	return SYS_PROCEED;
}

static __always_inline int xlate4(struct bpf_sock_addr *ctx)
{
	struct lb4_backend be = {};
	int r;

	if (!proto_ok(ctx))
		return SYS_PROCEED;
	r = lb4_pick(ctx, ctx->user_ip4, (__be16)ctx->user_port, &be);
	if (r == LB_MISS)
		return SYS_PROCEED;
	if (r == SYS_PROCEED) {
		ctx->user_ip4 = be.addr;
		ctx->user_port = be.port;
	}
	return r;
}

/* The frontend this socket reached addr:port through, or NULL. */
static __always_inline struct lb4_sk_val *rev4_lookup(struct bpf_sock_addr *ctx, __be32 addr,
						      __be16 port)
{
	struct lb4_sk_key sk = {
		.cookie = bpf_get_socket_cookie(ctx),
		.addr = addr,
		.port = port,
	};

	return bpf_map_lookup_elem(&lb4_sk_revnat, &sk);
}

static __always_inline void rev4(struct bpf_sock_addr *ctx)
{
	struct lb4_sk_val *sv;

	if (!proto_ok(ctx))
		return;
	sv = rev4_lookup(ctx, ctx->user_ip4, (__be16)ctx->user_port);
	if (!sv)
		return;
	ctx->user_ip4 = sv->addr;
	ctx->user_port = sv->port;
}

static __always_inline void ip6_get(struct bpf_sock_addr *ctx, __u32 *w)
{
	w[0] = ctx->user_ip6[0];
	w[1] = ctx->user_ip6[1];
	w[2] = ctx->user_ip6[2];
	w[3] = ctx->user_ip6[3];
}

static __always_inline void ip6_set(struct bpf_sock_addr *ctx, const __u8 *addr)
{
	__u32 w[4];

	__builtin_memcpy(w, addr, 16);
	ctx->user_ip6[0] = w[0];
	ctx->user_ip6[1] = w[1];
	ctx->user_ip6[2] = w[2];
	ctx->user_ip6[3] = w[3];
}

/*
 * ::ffff:a.b.c.d, what a dual-stack AF_INET6 socket (no IPV6_V6ONLY) uses
 * for an IPv4 peer: the kernel sends it as IPv4, so it is looked up in the
 * IPv4 maps (Cilium does the same in its sock6 programs).
 */
static __always_inline int ip6_v4mapped(const __u32 *w)
{
	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff);
}

static __always_inline int xlate6(struct bpf_sock_addr *ctx)
{
	struct lb6_key key = {
		.port = (__be16)ctx->user_port,
		.proto = (__u8)ctx->protocol,
	};
	struct lb_svc_val *svcp;
	struct lb6_backend *be;
	__u32 rev_nat_id, w[4];

	if (!proto_ok(ctx))
		return SYS_PROCEED;
	ip6_get(ctx, w);
	if (ip6_v4mapped(w)) {
		struct lb4_backend be4 = {};
		int r = lb4_pick(ctx, w[3], (__be16)ctx->user_port, &be4);

		if (r == LB_MISS)
			return SYS_PROCEED;
		if (r == SYS_PROCEED) {
			/* Still mapped: the socket is AF_INET6 and stays so. */
			ctx->user_ip6[3] = be4.addr;
			ctx->user_port = be4.port;
		}
		return r;
	}
	__builtin_memcpy(key.addr, w, 16);
	svcp = bpf_map_lookup_elem(&lb6_services, &key);
	if (!svcp)
		return SYS_PROCEED;
	LB_PICK(ctx, svcp, &lb6_backends, be, rev_nat_id);

	{
		struct lb6_sk_key sk = {
			.cookie = bpf_get_socket_cookie(ctx),
			.port = be->port,
		};
		struct lb6_sk_val sv = {
			.port = (__be16)ctx->user_port,
			.rev_nat_id = rev_nat_id,
		};

		__builtin_memcpy(sk.addr, be->addr, 16);
		__builtin_memcpy(sv.addr, w, 16);
		bpf_map_update_elem(&lb6_sk_revnat, &sk, &sv, BPF_ANY);
	}
	ip6_set(ctx, be->addr);
	ctx->user_port = be->port;
	return SYS_PROCEED;
}

static __always_inline void rev6(struct bpf_sock_addr *ctx)
{
	struct lb6_sk_key sk = {
		.cookie = bpf_get_socket_cookie(ctx),
		.port = (__be16)ctx->user_port,
	};
	struct lb6_sk_val *sv;
	__u32 w[4];

	if (!proto_ok(ctx))
		return;
	ip6_get(ctx, w);
	if (ip6_v4mapped(w)) {
		/* Translated by lb4_pick() (connect6/sendmsg6, or sendmsg4,
		 * which the kernel runs for a mapped destination): v4 state. */
		struct lb4_sk_val *sv4 = rev4_lookup(ctx, w[3], (__be16)ctx->user_port);

		if (!sv4)
			return;
		ctx->user_ip6[3] = sv4->addr;
		ctx->user_port = sv4->port;
		return;
	}
	__builtin_memcpy(sk.addr, w, 16);
	sv = bpf_map_lookup_elem(&lb6_sk_revnat, &sk);
	if (!sv)
		return;
	ip6_set(ctx, sv->addr);
	ctx->user_port = sv->port;
}

SEC("cgroup/connect4")
int lb_connect4(struct bpf_sock_addr *ctx)
{
	return xlate4(ctx);
}

SEC("cgroup/sendmsg4")
int lb_sendmsg4(struct bpf_sock_addr *ctx)
{
	return xlate4(ctx);
}

SEC("cgroup/recvmsg4")
int lb_recvmsg4(struct bpf_sock_addr *ctx)
{
	rev4(ctx);
	return SYS_PROCEED; /* recvmsg programs must return 1 */
}

SEC("cgroup/getpeername4")
int lb_getpeername4(struct bpf_sock_addr *ctx)
{
	rev4(ctx);
	return SYS_PROCEED;
}

SEC("cgroup/connect6")
int lb_connect6(struct bpf_sock_addr *ctx)
{
	return xlate6(ctx);
}

SEC("cgroup/sendmsg6")
int lb_sendmsg6(struct bpf_sock_addr *ctx)
{
	return xlate6(ctx);
}

SEC("cgroup/recvmsg6")
int lb_recvmsg6(struct bpf_sock_addr *ctx)
{
	rev6(ctx);
	return SYS_PROCEED;
}

SEC("cgroup/getpeername6")
int lb_getpeername6(struct bpf_sock_addr *ctx)
{
	rev6(ctx);
	return SYS_PROCEED;
}

char _license[] SEC("license") = "Dual BSD/GPL";
