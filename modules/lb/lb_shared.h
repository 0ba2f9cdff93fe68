/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * lb_shared.h - the lb module's map layouts, shared by lb_sock.bpf.c and the
 * agent. Fixed width, explicit padding, sizes locked below: a change here is
 * a new map layout (bump LB_MAP_LAYOUT, which renames the pins).
 *
 * Services (lb4_services / lb6_services, HASH), like Cilium's lbX_services:
 *   key {addr, port, proto, slot}. slot 0 is the master of a frontend:
 *   count = selectable backends, rev_nat_id, flags, algorithm, affinity
 *   timeout. Slots 1..count hold backend ids. A frontend with count 0
 *   exists and refuses connections (ECONNREFUSED).
 * Backends (lb4_backends / lb6_backends, HASH): key = backend id (one id
 *   space for both families, stable across agent restarts) -> addr, port,
 *   proto, state.
 * Reverse NAT (lb4_revnat / lb6_revnat, HASH): rev_nat_id -> frontend.
 *   For the per-packet datapath (part 2) and for the CLI.
 * Socket reverse NAT (lb4_sk_revnat / lb6_sk_revnat, LRU): {socket cookie,
 *   backend addr, port} -> frontend, written at connect/sendmsg, read by
 *   recvmsg and getpeername so the application sees the address it used.
 * Affinity (lb_affinity, LRU): {netns cookie, rev_nat_id} -> backend id and
 *   when it was last used (SVC-37: the socket layer keys on the client's
 *   network namespace).
 *
 * Addresses and ports are in network byte order everywhere.
 */
#ifndef LB_SHARED_H
#define LB_SHARED_H

#include <linux/types.h>

#define LB_MAP_LAYOUT 1

/* lb_svc_val.flags (master) */
#define LB_F_AFFINITY 0x01
#define LB_F_ITP_LOCAL 0x02

/* lb_svc_val.algorithm */
#define LB_A_RANDOM 1
#define LB_A_MAGLEV 2

/* lbX_backend.state */
#define LB_BS_ACTIVE 0
#define LB_BS_TERMINATING 1

struct lb4_key {
	__be32 addr;
	__be16 port;
	__u16 slot; /* 0: master */
	__u8 proto; /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 pad[3];
};

struct lb6_key {
	__u8 addr[16];
	__be16 port;
	__u16 slot;
	__u8 proto;
	__u8 pad[3];
};

struct lb_svc_val {
	__u32 backend_id; /* slot > 0 */
	__u32 rev_nat_id; /* every slot, so a slot alone names its frontend */
	__u16 count;	  /* master: selectable backends in slots 1..count */
	__u8 flags;	  /* master: LB_F_* */
	__u8 algorithm;	  /* master: LB_A_* */
	__u32 affinity_timeout; /* master: seconds */
};

struct lb4_backend {
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 state; /* LB_BS_* */
};

struct lb6_backend {
	__u8 addr[16];
	__be16 port;
	__u8 proto;
	__u8 state;
};

struct lb4_revnat {
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct lb6_revnat {
	__u8 addr[16];
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct lb4_sk_key {
	__u64 cookie; /* socket cookie */
	__be32 addr;  /* backend */
	__be16 port;
	__u16 pad;
};

struct lb6_sk_key {
	__u64 cookie;
	__u8 addr[16];
	__be16 port;
	__u8 pad[6];
};

struct lb4_sk_val {
	__be32 addr; /* frontend */
	__be16 port;
	__u16 pad;
	__u32 rev_nat_id;
};

struct lb6_sk_val {
	__u8 addr[16];
	__be16 port;
	__u16 pad;
	__u32 rev_nat_id;
};

struct lb_aff_key {
	__u64 netns_cookie;
	__u32 rev_nat_id;
	__u32 pad;
};

struct lb_aff_val {
	__u32 backend_id;
	__u32 pad;
	__u64 last_used_ns; /* bpf_ktime_get_ns() */
};

_Static_assert(sizeof(struct lb4_key) == 12, "lb4_key");
_Static_assert(sizeof(struct lb6_key) == 24, "lb6_key");
_Static_assert(sizeof(struct lb_svc_val) == 16, "lb_svc_val");
_Static_assert(sizeof(struct lb4_backend) == 8, "lb4_backend");
_Static_assert(sizeof(struct lb6_backend) == 20, "lb6_backend");
_Static_assert(sizeof(struct lb4_revnat) == 8, "lb4_revnat");
_Static_assert(sizeof(struct lb6_revnat) == 20, "lb6_revnat");
_Static_assert(sizeof(struct lb4_sk_key) == 16, "lb4_sk_key");
_Static_assert(sizeof(struct lb6_sk_key) == 32, "lb6_sk_key");
_Static_assert(sizeof(struct lb4_sk_val) == 12, "lb4_sk_val");
_Static_assert(sizeof(struct lb6_sk_val) == 24, "lb6_sk_val");
_Static_assert(sizeof(struct lb_aff_key) == 16, "lb_aff_key");
_Static_assert(sizeof(struct lb_aff_val) == 16, "lb_aff_val");

#endif /* LB_SHARED_H */
