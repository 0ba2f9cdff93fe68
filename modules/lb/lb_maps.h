/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lb_maps.h - desired state of the lb maps and the writer that reconciles
 * the pinned maps with it (layouts: lb_shared.h).
 *
 * Services claim frontends (addr, port, proto) and backends (addr, port,
 * proto) here. A claim changes memory only, but everything a claim needs
 * -- a rev_nat_id, backend ids, a slot range in lb_slots -- is allocated
 * right then, so a service that does not fit is refused as a whole, with a
 * message naming it and the map, and keeps its previous state.
 * lb_maps_flush() then writes what changed, in an order that never shows the
 * datapath a slot that points at a missing backend or a master whose range
 * is not filled:
 *
 *   1. backends, reverse NAT and slots: stores to the mmapable arrays
 *   2. master upserts (hash map, batched; two threads when many)
 *   3. masters of removed frontends deleted (batched)
 *   4. what nobody points at any more is cleared; its ids and slot range
 *      are quarantined and reused only after lb_maps_grace() ran twice, so
 *      a program that read an old master never reads a reused slot
 *
 * Restart: lb_maps_adopt() reads what the pinned maps hold, so frontends
 * keep their rev_nat_id (affinity survives), their slot range and their
 * backends' ids; the service sync then rewrites only what differs, and
 * lb_maps_prune() (after the store has synced) removes what no service
 * claimed.
 */
#ifndef LB_MAPS_H
#define LB_MAPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lb_shared.h"
#include "lb_translate.h"

enum lb_map_id {
	LBM_SVC4,
	LBM_SVC6,
	LBM_SLOTS,
	LBM_BE4,
	LBM_BE6,
	LBM_RN4,
	LBM_RN6,
	LBM_SK4,
	LBM_SK6,
	LBM_AFF,
	LBM_N
};

struct lb_map_def {
	const char *name; /* pin name (the registry adds _v<layout>) */
	uint32_t type;	  /* enum bpf_map_type */
	uint32_t key_size, value_size;
	uint32_t map_flags; /* BPF_F_MMAPABLE for the arrays the agent writes directly */
};

extern const struct lb_map_def lb_map_defs[LBM_N];

struct lb_maps;

struct lb_flush_stats {
	uint32_t updates, deletes, syscalls;
};

/*
 * fd[i] are borrowed (the map registry owns them); max[i] their max_entries.
 * The arrays are mapped here (-errno if one cannot be: not mmapable).
 * Backend and reverse-NAT ids index their arrays and 0 is never used: an
 * array of max entries holds max - 1.
 */
int lb_maps_new(const int fd[LBM_N], const uint32_t max[LBM_N], struct lb_maps **ret_m);
void lb_maps_free(struct lb_maps *m);

/* Read the pinned maps. Returns how many frontends were adopted, or -errno. */
int lb_maps_adopt(struct lb_maps *m, uint32_t *ret_backends);

/*
 * Move service `owner` (a stable string, "ns/name") from `old` (what was
 * last set for it successfully, or NULL) to `new` (NULL: the service is
 * gone). -ENOSPC (a map would overflow) or -EADDRINUSE (a frontend belongs
 * to another service): nothing changed, *ret_err says why (malloc'd).
 */
int lb_maps_service_set(struct lb_maps *m, const char *owner, const struct lb_svc *old,
			const struct lb_svc *new, char **ret_err);

/* A hint: s is about to be set; what its claim looks up first is asked for. */
void lb_maps_prefetch(const struct lb_maps *m, const struct lb_svc *s);
/*
 * A hint, nearer to the set: the backend index's slots s's backends will
 * be looked up in (s hashed by lb_maps_hash_backends(); else nothing).
 */
void lb_maps_prefetch_backends(const struct lb_maps *m, const struct lb_svc *s);
/*
 * The writer's hash of each backend of s, worked out ahead (s->be_hashed):
 * pure, for the thread that translated s, so that the claiming thread --
 * which a large sync waits on -- does not.
 */
void lb_maps_hash_backends(struct lb_svc *s);

/* A hint: about n_fe frontends and n_be[0] IPv4, n_be[1] IPv6 backends are about to be claimed. */
void lb_maps_reserve(struct lb_maps *m, size_t n_fe, const size_t n_be[2]);

/*
 * Bring in the memory the claims announced by the last lb_maps_reserve()
 * will write to, without changing it -- the part of it that services
 * [from, to) of n will about take (ids and entries are handed out in claim
 * order). For another thread to call ahead of this one's claims (the only
 * lb_maps call that may run concurrently), so that they do not wait on
 * fresh pages.
 */
void lb_maps_prefault(struct lb_maps *m, size_t from, size_t to, size_t n);

/*
 * Write what is dirty. Only the masters' syscalls can fail (the arrays are
 * memory). On a failed write (-errno of the first) everything of
 * this flush stays dirty, assumed half-written: the next flush writes it all
 * again (lb_sync.c retries with backoff).
 */
int lb_maps_flush(struct lb_maps *m, struct lb_flush_stats *ret_st);

/* Drop adopted entries nobody claimed, then flush. */
int lb_maps_prune(struct lb_maps *m, struct lb_flush_stats *ret_st);

/*
 * The backends a claimed frontend holds, for views (the caller keeps no
 * translation, only what lb_svc_view() makes): *ret_be (malloc'd) has *ret_n, the
 * first *ret_n_sel selectable (in slots), the rest kept for their flows.
 * -ENOENT if no service holds fe, -ENOMEM.
 */
int lb_maps_fe_backends(struct lb_maps *m, const struct lb_fe *fe, struct lb_be **ret_be,
			size_t *ret_n, size_t *ret_n_sel);

/* The frontend's rev_nat_id and the backend id of each backend, for views. 0 if unknown. */
uint32_t lb_maps_fe_id(struct lb_maps *m, const struct lb_fe *fe);
uint32_t lb_maps_be_id(struct lb_maps *m, const struct lb_ip *ip, uint16_t port, uint8_t proto);
/* Entries the maps will hold after the next flush (upper bound). */
uint32_t lb_maps_used(struct lb_maps *m, enum lb_map_id id);
/* Something was released since the last call (a refused service may fit now). */
int lb_maps_take_released(struct lb_maps *m);

/*
 * The UDP backends flushes freed (the entry cleared: no frontend has it any
 * more), for closing the sockets connected to them (lb_reap.h); kept only
 * while tracking is on. take: the list so far, the caller's to free (*ret_n
 * 0: none) -- -ENOMEM when some could not be kept (the rest is there).
 */
void lb_maps_track_freed_udp(struct lb_maps *m, bool on);
int lb_maps_take_freed_udp(struct lb_maps *m, struct lb_reap_key **ret_keys, size_t *ret_n);

/*
 * Quarantine: ids and slot ranges freed by a flush wait until two calls of
 * lb_maps_grace() have passed (the caller calls it every grace period while
 * lb_maps_quarantined() is not 0). Returns how many were released.
 */
size_t lb_maps_grace(struct lb_maps *m);
size_t lb_maps_quarantined(const struct lb_maps *m);

#endif /* LB_MAPS_H */
