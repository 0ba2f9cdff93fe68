/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lb.h - the lb module's state, shared by its files:
 *   lb_module.c   descriptor, options, lifecycle
 *   lb_sync.c     store watches -> event queue -> parse (a second thread when
 *                 many) -> translation -> map writer, prune after sync
 *   lb_sock.c     loading lb_sock.bpf.c and attaching it to the node cgroup
 *   lb_api.c      the "services" and "bpf" endpoints
 *   lb_translate.c, lb_maps.c   pure logic (see their headers)
 *
 * Sync state machine (per module run):
 *
 *   start: adopt pinned maps --> WAITING (queue the store's replay, write nothing)
 *   WAITING --(Service and EndpointSlice both SYNCED)--> flush all, prune --> LIVE
 *   LIVE: every change is queued; a deferred flush parses and applies the queue
 *         (marking services dirty), then translates and writes the dirty ones
 *   freed ids and slot ranges: quarantined; a timer calls lb_maps_grace()
 *         every LB_GRACE_MS while any wait, and flushes again when that
 *         frees room for a refused service
 *   a failed write (in any flush): what it wrote stays pending in the writer;
 *         a timer flushes again after 100 ms, doubling up to 10 s, until a
 *         flush writes everything (DEGRADED until then)
 *
 * Nothing is written before both kinds synced, so a restarted agent never
 * shows the datapath a service whose slices have not been replayed yet.
 */
#ifndef LB_H
#define LB_H

#include <stdbool.h>
#include <stdint.h>

#include <axoneme/axoneme.h>
#include <axoneme/store.h>

#include "lb_ht.h"
#include "lb_maps.h"
#include "lb_reap.h"
#include "lb_translate.h"

/*
 * How long a freed backend id, rev_nat_id or slot range waits before it is
 * reused (between one and two periods): far longer than any program that
 * read the master pointing at it can still run.
 */
#define LB_GRACE_MS 1000

struct lb_conf {
	const char *cgroup;
	int socket_lb;
	int terminate_udp;
	const char *algorithm;
	int algorithm_annotation;
	const char *service_proxy_name;
	int64_t services_max, slots_max, backends_max, revnat_max, affinity_max, sock_revnat_max;
};

struct lb_sv;
struct lb_ev;

/*
 * An EndpointSlice, keyed "ns/name". Documents are parsed when they arrive
 * and not kept: the store has them, and reading each once, while it is
 * fresh, is what makes a sync of many services cheap.
 */
struct lb_sl {
	struct lb_node n;
	struct lb_slice *data; /* the slice, parsed */
	struct lb_sv *sv;      /* the service its kubernetes.io/service-name label names */
	char key[];
};

/*
 * Why a service's last change was refused, on lb.errs while it is: a
 * record only refused services have (a sync of 100k services allocates
 * none), not three pointers in every service.
 */
struct lb_sverr {
	char *msg;
	struct lb_sv *sv;
	struct lb_sverr *next, *prev;
};

/* A service, keyed "ns/name": exists while its Service or a slice of it does. */
struct lb_sv {
	struct lb_node n;
	struct lb_svc_spec *spec; /* the Service, parsed, or NULL */
	struct lb_sl **sl;	  /* its slices: sl_in while there is one (most services) */
	struct lb_sl *sl_in[1];
	uint32_t n_sl, cap_sl;
	/*
	 * The Service the maps hold a translation of (the last successful set;
	 * a reference), or NULL: lb_svc_view() of it is that translation less
	 * its backends, which the writer holds.
	 */
	struct lb_svc_spec *cur;
	struct lb_sverr *err; /* refused, or NULL */
	bool dirty;	      /* in lb.dirty */
	char key[];
};

/* Why the service's last change was refused, or NULL. */
static inline const char *lb_sv_error(const struct lb_sv *sv)
{
	return sv->err ? sv->err->msg : NULL;
}

struct lb {
	struct axn_mod *self;
	const struct lb_conf *conf;
	struct lb_translate_conf tconf;
	uint32_t max[LBM_N];
	int fd[LBM_N];
	struct lb_maps *maps;

	struct lb_ht svcs, slices;
	struct lb_ev **evb; /* store events not applied yet, in blocks (lb_sync.c) */
	size_t n_evs, n_evb, cap_evb;
	/*
	 * The dirty services, in the order they became dirty: an array with room
	 * for every service there is (grown when one is created), so that
	 * marking one never fails and a flush takes them without walking a list
	 * of cold entries. dirty_spare is the other one, swapped in by a flush.
	 */
	struct lb_sv **dirty, **dirty_spare;
	size_t n_dirty, cap_dirty;
	size_t dirty_be[2]; /* endpoint addresses (IPv4, IPv6) of the slices applied since */
	bool flush_pending, live;
	int synced; /* bit 0: Service, bit 1: EndpointSlice */
	/*
	 * Kept as services change, so that a flush costs what changed, not
	 * what exists: the refused services (retried when room comes back) and
	 * the counts behind the metrics.
	 */
	struct lb_sverr *errs;
	size_t n_errors, n_svc_fe, n_fe;
	size_t n_grace_waits; /* refused in this flush only until the grace period ends */

	/*
	 * A failed map write is retried with backoff (lb_sync.c): the error while
	 * it lasts (DEGRADED), the one-shot retry timer, the next delay; a failed
	 * prune is redone by the retry too.
	 */
	int write_err;
	struct axn_handle *retry_t;
	/* Ticks every LB_GRACE_MS while freed ids and slot ranges wait (lb_maps_grace). */
	struct axn_handle *grace_t;
	uint32_t retry_ms, n_retries;
	bool prune_pending;

	struct axn_handle *w_svc, *w_sl, *api_services, *api_bpf;
	struct axn_handle *m_services, *m_frontends, *m_backends, *m_full, *m_refused, *m_writes,
	    *m_flush_ms, *m_retries, *m_udp_closed;
	struct axn_handle *hooks[8];
	struct lb_reaper *reaper; /* closes UDP sockets to removed backends; NULL: off */
	const char *cgroup;

	/* Last flush, for status and the benchmarks; when the first store event came. */
	uint64_t last_flush_us, first_event_us;
	struct lb_flush_stats last_st;
};

/* lb_sync.c */
int lb_sync_start(struct lb *lb);
void lb_sync_free(struct lb *lb);
/* Flush dirty services now (also the deferred callback's body). */
int lb_sync_flush(struct lb *lb);

/* lb_sock.c */
int lb_sock_attach(struct lb *lb);
/* lb->reaper, or a warning that says why not (the module runs on without it). */
void lb_reap_open(struct lb *lb);

/* lb_api.c */
int lb_api_start(struct lb *lb);

#endif /* LB_H */
