// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * lb_reap.bpf.c - close the connected UDP sockets whose backend is gone.
 *
 * Socket LB translates a connected UDP socket once, at connect(): when its
 * backend goes away the socket keeps sending to an address nobody answers,
 * and UDP never says so. kube-proxy users do not see this (kube-proxy
 * clears the conntrack entries of a removed UDP endpoint, so the next
 * datagram is translated again), nor do Cilium's on kernels with
 * bpf_sock_destroy (6.5+): this is the same. The agent fills lb_reap with
 * the backends a flush freed and runs this iterator in every network
 * namespace; a UDP socket that socket LB connected (it has a socket
 * reverse-NAT entry) to one of them is destroyed: it is disconnected, a
 * recv() fails with ECONNABORTED (a send() with EDESTADDRREQ), and the
 * application connects again, to a backend that exists. TCP is left alone: a dead peer ends a TCP
 * connection by itself.
 */
#include <linux/bpf.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "lb_shared.h"

#define AF_INET 2
#define AF_INET6 10
#define TCP_ESTABLISHED 1 /* a connected UDP socket's state */
#define LB_REAP_MAX 4096

/* The kernel's types, only the fields read here (CO-RE relocates them). */
struct sock_common {
	__be32 skc_daddr;
	__be16 skc_dport;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	struct in6_addr skc_v6_daddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct udp_sock;

struct bpf_iter__udp {
	struct bpf_iter_meta *meta;
	struct udp_sock *udp_sk;
	__u32 uid;
	int bucket;
} __attribute__((preserve_access_index));

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

/* Placeholders: the agent points them at its pinned maps before loading. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, struct lb4_sk_key);
	__type(value, struct lb4_sk_val);
} lb4_sk_revnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, struct lb6_sk_key);
	__type(value, struct lb6_sk_val);
} lb6_sk_revnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_REAP_MAX);
	__type(key, struct lb_reap_key);
	__type(value, __u8);
} lb_reap SEC(".maps");

__u64 reaped = 0; /* sockets destroyed, all runs */

static __always_inline int v4mapped(const struct in6_addr *a)
{
	return a->in6_u.u6_addr32[0] == 0 && a->in6_u.u6_addr32[1] == 0 &&
	       a->in6_u.u6_addr32[2] == bpf_htonl(0xffff);
}

SEC("iter/udp")
int lb_reap_udp(struct bpf_iter__udp *ctx)
{
	struct sock *sk = (struct sock *)ctx->udp_sk;
	struct lb_reap_key rk = {};
	struct in6_addr d6;
	__u64 cookie;
	__be16 port;

	if (!sk || sk->__sk_common.skc_state != TCP_ESTABLISHED)
		return 0;
	port = sk->__sk_common.skc_dport;
	cookie = bpf_get_socket_cookie(sk);
	__builtin_memcpy(&d6, &sk->__sk_common.skc_v6_daddr, sizeof(d6));
	/*
	 * An AF_INET6 socket connected to ::ffff:a.b.c.d went through the IPv4
	 * maps (lb_sock.bpf.c), and its IPv4 peer is in skc_daddr.
	 */
	if (sk->__sk_common.skc_family == AF_INET ||
	    (sk->__sk_common.skc_family == AF_INET6 && v4mapped(&d6))) {
		struct lb4_sk_key k = {
		    .cookie = cookie,
		    .addr = sk->__sk_common.skc_daddr,
		    .port = port,
		};

		if (!bpf_map_lookup_elem(&lb4_sk_revnat, &k))
			return 0; /* not connected through a service */
		__builtin_memcpy(rk.addr, &k.addr, 4);
		rk.family = 4;
	} else if (sk->__sk_common.skc_family == AF_INET6) {
		struct lb6_sk_key k = {.cookie = cookie, .port = port};

		__builtin_memcpy(k.addr, &d6, 16);
		if (!bpf_map_lookup_elem(&lb6_sk_revnat, &k))
			return 0;
		__builtin_memcpy(rk.addr, &d6, 16);
		rk.family = 6;
	} else {
		return 0;
	}
	rk.port = port;
	if (!bpf_map_lookup_elem(&lb_reap, &rk))
		return 0;
	if (bpf_sock_destroy((struct sock_common *)sk) == 0)
		__sync_fetch_and_add(&reaped, 1);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
