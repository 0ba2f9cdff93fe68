/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lbipam.h - internals of the lbipam module, shared by its files:
 *
 *   lbipam_module.c  descriptor, options, lifecycle glue
 *   lbipam_alloc.c   pure allocator (lbipam_alloc.h)
 *   lbipam_svc.c     Service -> request (class, families, IPs, sharing)
 *   lbipam_ctl.c     the controller: store events, adoption, allocation
 *   lbipam_status.c  status documents (services, pools), API views
 *   lbipam_state.c   the state file: own allocations, and the writer's
 *
 * Controller life, on the loop thread:
 *
 *   start --> RECORDING (store replay: objects kept, nothing decided)
 *                 | both kinds SYNCED
 *                 v
 *             DORMANT (no pool)  <--- last pool deleted (allocations dropped)
 *                 | a pool exists                 ^
 *                 v                               |
 *             AWAKE: reconcile_all() once (adopt existing allocations in
 *             priority order, then allocate the rest in name order), then
 *             one service event = one incremental update; a pool event,
 *             or a changed writer state file (readers) = reconcile_all().
 */
#ifndef LBIPAM_H
#define LBIPAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <axoneme/axoneme.h>

#include "lbipam_alloc.h"

#define LB_COND_SVC "cilium.io/IPAMRequestSatisfied"
#define LB_COND_TOTAL "cilium.io/IPsTotal"
#define LB_COND_AVAIL "cilium.io/IPsAvailable"
#define LB_COND_USED "cilium.io/IPsUsed"
#define LB_COND_CONFLICT "cilium.io/PoolConflict"
#define LB_COND_VALID "axoneme.io/PoolSpecValid"

/* More requested addresses than this are ignored (a Service has one or two). */
#define LB_MAX_REQ_IPS 64

#define LB_ANN_IPS "lbipam.cilium.io/ips"
#define LB_ANN_IPS_OLD "io.cilium/lb-ipam-ips"
#define LB_ANN_SKEY "lbipam.cilium.io/sharing-key"
#define LB_ANN_SKEY_OLD "io.cilium/lb-ipam-sharing-key"
#define LB_ANN_XNS "lbipam.cilium.io/sharing-cross-namespace"
#define LB_ANN_XNS_OLD "io.cilium/lb-ipam-sharing-cross-namespace"

struct lbipam_conf {
	int writer;
	int reader_status;
	const char *leader_node;
	int only_with_class;
	const char *default_ipam;
	const char *const *classes;
	int ipv4, ipv6;
	const char *state_file;
	const char *follow;
	int64_t follow_interval_ms;
	int64_t save_delay_ms;
};

/* --- a small intrusive hash table ----------------------------------------- */

struct lb_hnode {
	struct lb_hnode *next;
	uint64_t hash;
};

struct lb_htab {
	struct lb_hnode **b;
	size_t nb, n;
};

uint64_t lb_str_hash(const char *s);
int lb_htab_add(struct lb_htab *t, struct lb_hnode *node, uint64_t hash);
void lb_htab_del(struct lb_htab *t, struct lb_hnode *node);
/* First node of hash's chain; walk on with ->next, comparing ->hash and the key. */
struct lb_hnode *lb_htab_chain(const struct lb_htab *t, uint64_t hash);
void lb_htab_free(struct lb_htab *t);
#define lb_htab_foreach(t, i, n)                                                                   \
	for (size_t i = 0; i < (t)->nb; i++)                                                       \
		for (struct lb_hnode *n = (t)->b[i], *n##_next = n ? n->next : NULL; n;           \
		     n = n##_next, n##_next = n ? n->next : NULL)

/* --- service requests (lbipam_svc.c) ----------------------------------------- */

struct lb_req_opts {
	bool classless;             /* class-less services are ours */
	const char *const *classes; /* loadBalancerClass values we serve */
	bool ipv4, ipv6;            /* families enabled in the cluster */
};

/* What a Service asks of LB IPAM. */
struct lb_req {
	bool ours;             /* type LoadBalancer, and a class we serve */
	bool v4, v6;           /* families wanted (when no address is requested) */
	bool prefer_dual;      /* PreferDualStack: one family is enough */
	const char *family_off;/* a family the policy needs is disabled: "IPv4"/"IPv6" */
	struct lb_ip *ips;     /* requested addresses, in order, without duplicates */
	uint16_t n_ips;
	char *bad_ip;          /* first requested address that does not parse */
	const char *bad_src;   /* where it was written */
	char *skey;            /* sharing key */
	char **xns;            /* namespaces it may share with */
	uint16_t n_xns;
	bool xns_any;          /* "*" */
	uint16_t *ports;       /* port numbers, sorted, distinct */
	uint16_t n_ports;
	bool etp_local;        /* externalTrafficPolicy: Local */
	const json_t *selector;/* spec.selector, borrowed from the object */
};

/* Fill *ret from a Service document; -ENOMEM only. */
int lb_req_parse(const json_t *doc, const struct lb_req_opts *o, struct lb_req *ret);
void lb_req_free(struct lb_req *r);
/* NULL if services a (in ns_a) and b (in ns_b) may share an address, else why not. */
const char *lb_req_incompatible(const struct lb_req *a, const char *ns_a, const struct lb_req *b,
				const char *ns_b);
/* Labels for pool selectors: metadata.labels plus, if meta, the io.kubernetes.service.* keys. */
json_t *lb_svc_labels(const json_t *doc, bool meta);

/* --- the controller (lbipam_ctl.c) ------------------------------------------- */

struct lb_svc;

/* An address in use, by one service or a sharing group. */
struct lb_ent {
	struct lb_hnode hn;
	struct lb_ip ip;
	struct lb_svc **holders;
	uint32_t n_holders, cap;
	struct lb_skey *skey;  /* the sharing key whose set it is in, or NULL */
	struct lbp *pool;      /* the pool it counts against */
};

/* The addresses of one sharing key, sorted. */
struct lb_skey {
	struct lb_hnode hn;
	char *key;
	struct lb_ent **ents;
	uint32_t n, cap;
};

/* Outcome of a service's request, for its condition. */
enum lb_reason {
	LB_R_NONE,       /* not decided yet */
	LB_R_SATISFIED,
	LB_R_NO_POOL,
	LB_R_OUT_OF_IPS,
	LB_R_REQ_NO_POOL,
	LB_R_REQ_SELECTOR,
	LB_R_REQ_TAKEN,
	LB_R_REQ_INCOMPAT,
	LB_R_REQ_RESERVED,
	LB_R_REQ_DISABLED,
	LB_R_REQ_CONFLICT,
	LB_R_BAD_REQ,
	LB_R_FAMILY,
};

struct lb_svc {
	struct lb_hnode hn;
	char *key;             /* "namespace/name" */
	char *ns;              /* namespace (own copy) */
	struct axn_obj *obj;   /* the latest object */
	struct lb_req req;
	struct lb_ent **ips;   /* held addresses */
	uint8_t n_ips, cap_ips;
	uint8_t reason;        /* enum lb_reason */
	uint8_t why_fam;       /* family a generic failure is about */
	struct lb_ip why_ip;   /* the address a failure is about */
	const char *why;       /* incompatibility reason (static) */
	struct lbp *why_pool;  /* the pool a failure is about */
	bool complete;         /* nothing more to try */
	struct lb_svc *inext, **iprev; /* on the list of services still waiting (!complete) */
	bool satisfied;
	bool managed;          /* our ingress/condition may be in its status */
	bool write_failed;     /* the last status write failed (logged once) */
	bool counted, counted_unsat; /* as counted in l->n_ours, l->n_unsat */
	uint64_t status_hash;  /* of the last status written */
	uint64_t auth_hash;    /* of the writer's answer last acted on (readers) */
};

/* A pool as the controller knows it. */
struct lbp {
	struct lb_pool p;      /* name, spec in effect, seq, conflicts */
	char *key;             /* "namespace/name", or "name" when cluster-scoped */
	struct axn_obj *obj;
	bool has_spec;         /* a spec was accepted in this run */
	bool rejected;         /* the latest spec was refused; the previous one is in effect */
	char *error;           /* the latest spec's problem, or NULL */
	uint64_t status_hash;
};

struct lbipam {
	struct axn_mod *self;
	const struct lbipam_conf *conf;
	struct lb_req_opts ropts;
	bool writer;
	bool publish;          /* writes status: the writer, or a reader with reader_status */
	char *state_path;      /* own state file, or NULL */
	char *follow_path;     /* the writer's state file (readers), or NULL */

	struct axn_handle *sub_svc, *sub_pool, *api_pools, *api_svcs, *save_timer, *follow_timer;
	struct axn_handle *m_services, *m_unsat, *m_writes, *m_reconciles, *m_pools, *m_conflicts;

	bool svc_synced, pool_synced, synced, awake, first_done, bulk;
	struct lb_htab svcs, ents, skeys;
	struct lbp **pools;    /* by name */
	size_t n_pools, cap_pools;
	uint64_t max_seq;
	bool flush_queued;     /* pool statuses, metrics and the save are due */
	bool need_retry;       /* an address was freed or a sharing set grew */
	struct lb_svc *incomplete; /* services that may take more when addresses free up */
	size_t n_incomplete, n_ours, n_unsat;
	bool retrying;
	json_t *saved;         /* own state file read at start, until the first reconcile */
	json_t *follow;        /* the writer's state file (readers) */
	struct {
		dev_t dev;
		ino_t ino;
		off_t size;
		struct timespec mtime;
		bool seen;
	} follow_id;
	bool save_failed, save_dirty, save_fired, follow_failed;
	uint64_t saved_hash;   /* of the state file last written */
	uint64_t writes, reconciles;
	/* Labels of one service for selectors, kept while it is being decided. */
	const struct lb_svc *lbl_svc;
	bool lbl_meta;
	json_t *lbl;
	char *health;          /* last reason reported */
};

int lbipam_ctl_start(struct lbipam *l);
void lbipam_ctl_stop(struct lbipam *l);
void lbipam_ctl_free(struct lbipam *l);
/* Decide everything again (pools changed, or the writer's state file did). */
void lbipam_reconcile_all(struct lbipam *l, const char *why);
/* The pool and the service a display needs. */
struct lbp *lbipam_pool_find(struct lbipam *l, const char *key);

/* --- status and views (lbipam_status.c) ------------------------------------- */

/*
 * The status a service should have: `cur` with loadBalancer.ingress and our
 * condition replaced (cond < 0: both removed). lastTransitionTime is kept
 * while the condition's status stays, so the same decision gives the same
 * document. New reference, or NULL on ENOMEM.
 */
json_t *lb_status_service(const json_t *cur, const struct lb_ip *ips, size_t n, int cond,
			  const char *reason, const char *msg, json_int_t generation,
			  const char *now);
/* Does cur already say this (ingress in this order, our condition as given)? Saves building it. */
bool lb_status_says(const json_t *cur, const struct lb_ip *ips, size_t n, int cond,
		    const char *reason, const char *msg, json_int_t generation);
json_t *lb_status_pool(const json_t *cur, struct lbp *p, json_int_t generation, const char *now);
/* Cilium's reason and our message for a service's outcome; msg is malloc'd. */
const char *lb_reason_name(const struct lb_svc *s);
char *lb_reason_msg(const struct lb_svc *s);
/* Views: lbipam/pools, lbipam/services. */
int lbipam_api_pools(struct axn_mod *self, const json_t *req, json_t **ret_resp, char **ret_err,
		     void *arg);
int lbipam_api_services(struct axn_mod *self, const json_t *req, json_t **ret_resp,
			char **ret_err, void *arg);
/* "2024-01-02T03:04:05Z" for now. */
void lb_now(char buf[32]);
uint64_t lb_json_hash(const json_t *v);

/* --- the state file (lbipam_state.c) ---------------------------------------- */

/* The document: {"version", "node", "writer", "services": {key: [ip]}, "pools": {name: {...}}}. */
json_t *lbipam_state_build(struct lbipam *l);
/* Atomically replace path with text; -errno. */
int lbipam_state_write(const char *path, const char *text);
/* Read path: 0 and *ret_doc (NULL if the file does not exist), or -errno (err says why). */
int lbipam_state_read(const char *path, json_t **ret_doc, char *err, size_t errlen);
/* Schedule a save (debounced) / save now. */
void lbipam_state_touch(struct lbipam *l);
void lbipam_state_save(struct lbipam *l);
/* Readers: look at the writer's file; 1 if it changed (and was reloaded). */
int lbipam_follow_poll(struct lbipam *l);
int lbipam_follow_start(struct lbipam *l);

#endif /* LBIPAM_H */
