/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lb_maps.h - desired state of the lb maps and the writer that reconciles
 * the pinned maps with it.
 *
 * Services claim frontends (addr, port, proto) and backends (addr, port,
 * proto) here; claiming only changes memory and marks entries dirty.
 * lb_maps_flush() then writes what changed, in an order that never shows
 * the datapath a slot that points at a missing backend or a master whose
 * count covers a missing slot:
 *
 *   1. backend upserts, reverse-NAT upserts, slot upserts   (batched)
 *   2. master upserts                                       (batched)
 *   3. masters of removed frontends deleted, then surplus slots
 *   4. backends no frontend references any more deleted
 *
 * Restart: lb_maps_adopt() reads what the pinned maps hold, so frontends
 * keep their rev_nat_id (affinity survives) and backends their id; the
 * service sync then rewrites only what differs, and lb_maps_prune() (after
 * the store has synced) removes what no service claimed.
 *
 * Capacity: every claim is accounted against max_entries before anything
 * is written; a service that does not fit is refused as a whole with a
 * message naming it and keeps its previous state in the maps.
 */
#ifndef LB_MAPS_H
#define LB_MAPS_H

#include <stddef.h>
#include <stdint.h>

#include "lb_translate.h"

enum lb_map_id {
	LBM_SVC4,
	LBM_SVC6,
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
};

extern const struct lb_map_def lb_map_defs[LBM_N];

struct lb_maps;

struct lb_flush_stats {
	uint32_t updates, deletes, syscalls;
};

/* fd[i] are borrowed (the map registry owns them); max[i] their max_entries. */
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

/* A hint: about n_fe frontends and n_be backends are about to be claimed. */
void lb_maps_reserve(struct lb_maps *m, size_t n_fe, size_t n_be);

/*
 * Write what is dirty. On a failed write (-errno of the first) everything of
 * this flush stays dirty, assumed half-written: the next flush writes it all
 * again (lb_sync.c retries with backoff).
 */
int lb_maps_flush(struct lb_maps *m, struct lb_flush_stats *ret_st);

/* Drop adopted entries nobody claimed, then flush. */
int lb_maps_prune(struct lb_maps *m, struct lb_flush_stats *ret_st);

/* The frontend's rev_nat_id and the backend id of each backend, for views. 0 if unknown. */
uint32_t lb_maps_fe_id(struct lb_maps *m, const struct lb_fe *fe);
uint32_t lb_maps_be_id(struct lb_maps *m, const struct lb_ip *ip, uint16_t port, uint8_t proto);
/* Entries the maps will hold after the next flush (upper bound). */
uint32_t lb_maps_used(struct lb_maps *m, enum lb_map_id id);
/* Something was released since the last call (a refused service may fit now). */
int lb_maps_take_released(struct lb_maps *m);

#endif /* LB_MAPS_H */
