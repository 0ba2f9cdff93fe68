/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * lb_shared.h - the lb module's map layouts, shared by lb_sock.bpf.c and the
 * agent. Fixed width, explicit padding, sizes locked below: a change here is
 * a new map layout (bump LB_MAP_LAYOUT, which renames the pins).
 *
 * Only the frontends are hashed; everything a frontend points at lives in
 * BPF_F_MMAPABLE arrays that the agent writes through a shared mapping, so
 * programming a service costs one hash-map update however many backends it
 * has (a hash-map update is ~0.45 us of syscall here, a store to the mapping
 * a few ns):
 *
 * Services (lb4_services / lb6_services, HASH): {addr, port, proto} ->
 *   master: rev_nat_id, the frontend's slot range in lb_slots (base and
 *   1 << slot_order slots), count = selectable backends in
 *   lb_slots[base .. base + count), flags, algorithm, affinity timeout.
 *   A frontend with count 0 exists and refuses connections (ECONNREFUSED).
 * Slots (lb_slots, ARRAY, mmapable, both families): backend ids. A range is
 *   rewritten in place when the backends fit it; a frontend that outgrows
 *   its range gets a new one, filled before its master points at it, and
 *   the old range is reused only after a grace period, so a program that
 *   read the old master never reads another frontend's slot.
 * Backends (lb4_backends / lb6_backends, ARRAY, mmapable): backend id (an
 *   index, per family; 0 is never used) -> addr, port, proto, state. proto 0
 *   marks a free entry. Ids are stable across agent restarts and reused
 *   only after the grace period.
 * Reverse NAT (lb4_revnat / lb6_revnat, ARRAY, mmapable): rev_nat_id (one id
 *   space for both families, indexing the frontend's family's array) ->
 *   frontend. For the per-packet datapath (part 2) and for the CLI.
 * Socket reverse NAT (lb4_sk_revnat / lb6_sk_revnat, LRU): {socket cookie,
 *   backend addr, port} -> frontend, written at connect/sendmsg, read by
 *   recvmsg and getpeername so the application sees the address it used.
 * Affinity (lb_affinity, LRU): {netns cookie, rev_nat_id} -> backend id, the
 *   slot it was picked from and when it was last used (SVC-37: the socket
 *   layer keys on the client's network namespace). Honoured only while that
 *   slot of the frontend still holds that backend, so neither a removed
 *   backend nor a reused rev_nat_id can send a client elsewhere.
 *
 * Addresses and ports are in network byte order everywhere. Array values are
 * multiples of 8 bytes: the kernel lays array elements out 8-byte aligned,
 * and the agent's mapping must see the same stride.
 */
#ifndef LB_SHARED_H
#define LB_SHARED_H

#include <linux/types.h>

#define LB_MAP_LAYOUT 2

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
	__u8 proto; /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 pad;
};

struct lb6_key {
	__u8 addr[16];
	__be16 port;
	__u8 proto;
	__u8 pad;
};

/* The slot range holds no slots (a frontend without selectable backends). */
#define LB_SLOT_ORDER_NONE 0xff

struct lb_svc_val {
	__u32 rev_nat_id;
	__u32 slot_base;	/* first slot of the frontend's range in lb_slots */
	__u32 count;		/* selectable backends: lb_slots[slot_base .. +count) */
	__u32 affinity_timeout; /* seconds */
	__u8 flags;		/* LB_F_* */
	__u8 algorithm;		/* LB_A_* */
	__u8 slot_order;	/* the range is 1 << slot_order slots, or LB_SLOT_ORDER_NONE */
	__u8 pad[5];
};

struct lb_slot {
	__u32 backend_id;
	__u32 pad;
};

struct lb4_backend {
	__be32 addr;
	__be16 port;
	__u8 proto; /* 0: a free entry */
	__u8 state; /* LB_BS_* */
};

struct lb6_backend {
	__u8 addr[16];
	__be16 port;
	__u8 proto;
	__u8 state;
	__u32 pad;
};

struct lb4_revnat {
	__be32 addr;
	__be16 port;
	__u8 proto; /* 0: a free entry */
	__u8 pad;
};

struct lb6_revnat {
	__u8 addr[16];
	__be16 port;
	__u8 proto; /* 0: a free entry */
	__u8 pad;
	__u32 pad2;
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
	__u32 slot; /* its index in the frontend's range when it was picked */
	__u64 last_used_ns; /* bpf_ktime_get_ns() */
};

/*
 * A backend whose connected UDP sockets are to be closed (lb_reap.bpf.c):
 * the agent's own map, filled for one run of the reaper, never pinned.
 */
struct lb_reap_key {
	__u8 addr[16]; /* IPv4: the first 4 bytes */
	__be16 port;
	__u8 family; /* 4 or 6 */
	__u8 pad;
};

_Static_assert(sizeof(struct lb4_key) == 8, "lb4_key");
_Static_assert(sizeof(struct lb6_key) == 20, "lb6_key");
_Static_assert(sizeof(struct lb_svc_val) == 24, "lb_svc_val");
_Static_assert(sizeof(struct lb_slot) == 8, "lb_slot");
_Static_assert(sizeof(struct lb4_backend) == 8, "lb4_backend");
_Static_assert(sizeof(struct lb6_backend) == 24, "lb6_backend");
_Static_assert(sizeof(struct lb4_revnat) == 8, "lb4_revnat");
_Static_assert(sizeof(struct lb6_revnat) == 24, "lb6_revnat");
_Static_assert(sizeof(struct lb4_sk_key) == 16, "lb4_sk_key");
_Static_assert(sizeof(struct lb6_sk_key) == 32, "lb6_sk_key");
_Static_assert(sizeof(struct lb4_sk_val) == 12, "lb4_sk_val");
_Static_assert(sizeof(struct lb6_sk_val) == 24, "lb6_sk_val");
_Static_assert(sizeof(struct lb_aff_key) == 16, "lb_aff_key");
_Static_assert(sizeof(struct lb_aff_val) == 16, "lb_aff_val");
_Static_assert(sizeof(struct lb_reap_key) == 20, "lb_reap_key");

#endif /* LB_SHARED_H */
