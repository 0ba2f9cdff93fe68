/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lb_translate.h - Service + EndpointSlices -> frontends and backends.
 *
 * Pure: JSON in, a struct lb_svc out. No host, no maps, no kernel; every
 * Kubernetes rule the lb module honours is decided here so that it can be
 * tested on its own (tests/test_lb_translate.c):
 *
 *  - frontends: every IP of spec.clusterIPs (or spec.clusterIP), then
 *    spec.externalIPs and status.loadBalancer.ingress[].ip, times every
 *    TCP/UDP port of spec.ports. Headless ("None"), ExternalName and
 *    services of another proxy (service.kubernetes.io/service-proxy-name)
 *    have none: the service is "skipped" with a reason.
 *  - backends of a frontend: the endpoints of the service's slices whose
 *    addressType matches the frontend's family, on the slice port with the
 *    service port's name and protocol (so named target ports resolve per
 *    slice), deduplicated by address and port.
 *  - conditions: ready endpoints are selectable; when none is, serving and
 *    terminating ones are (SVC-36); terminating endpoints are otherwise kept
 *    (state TERMINATING, not selectable) so existing flows keep their
 *    backend; not-ready ones are dropped. publishNotReadyAddresses makes
 *    every endpoint selectable. ready/serving default to true, terminating
 *    to false, as the API says.
 *  - internalTrafficPolicy Local: ClusterIP frontends keep only endpoints
 *    whose nodeName is this node (SVC-08); no local endpoint = no backend.
 *  - sessionAffinity ClientIP (+ sessionAffinityConfig timeout, default
 *    10800 s) and the service.cilium.io/lb-algorithm annotation.
 */
#ifndef LB_TRANSLATE_H
#define LB_TRANSLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define LB_ALG_RANDOM 1
#define LB_ALG_MAGLEV 2

/* struct lb_fe.type */
#define LB_FE_CLUSTERIP 1
#define LB_FE_EXTERNALIP 2
#define LB_FE_LOADBALANCER 3

/* struct lb_be.state */
#define LB_BE_ACTIVE 0
#define LB_BE_TERMINATING 1

/* struct lb_svc.flags */
#define LB_SVCF_AFFINITY 0x1u
#define LB_SVCF_ITP_LOCAL 0x2u

#define LB_AFFINITY_DEFAULT_S 10800
#define LB_SVC_TYPE_LEN 16

struct lb_ip {
	uint8_t family; /* 4 or 6 */
	uint8_t a[16];  /* network order; IPv4 in a[0..3], the rest zero */
};

struct lb_be {
	struct lb_ip ip;
	uint16_t port; /* host order */
	uint8_t state; /* LB_BE_* */
	uint8_t local; /* nodeName is this node */
	/* Not the translation's: the map writer's, with lb_svc.be_hashed (lb_maps_hash_backends). */
	uint32_t hash;
};

struct lb_fe {
	struct lb_ip ip;
	uint16_t port;	 /* host order */
	uint8_t proto;	 /* IPPROTO_TCP or IPPROTO_UDP */
	uint8_t type;	 /* LB_FE_* */
	char *port_name; /* "" when unnamed */
	/* be[0..n_sel) are selectable (in slots); be[n_sel..n_be) only kept. */
	size_t n_be, n_sel;
	struct lb_be *be;
};

struct lb_svc_spec;

struct lb_svc {
	char *ns, *name;
	char type[LB_SVC_TYPE_LEN]; /* spec.type: ClusterIP, NodePort, ... */
	uint8_t algorithm;	    /* LB_ALG_* */
	uint32_t flags;		    /* LB_SVCF_* */
	uint32_t affinity_timeout;  /* seconds, with LB_SVCF_AFFINITY */
	char *skipped;		    /* why the service has no frontends, or NULL */
	char *warning;		    /* a problem with the service that did not stop it, or NULL */
	size_t n_fe;
	struct lb_fe *fe;
	struct lb_be *be_all; /* the block every fe's be points into (NULL: none, or a view) */
	bool be_hashed;	      /* every be's hash is set (translation leaves it false) */
	/* The strings above (and each fe's port_name) belong to this parsed Service. */
	struct lb_svc_spec *spec;
};

struct lb_translate_conf {
	const char *node_name;		/* for internalTrafficPolicy Local; NULL = unknown */
	const char *service_proxy_name; /* NULL or "": only services without the label */
	uint8_t default_algorithm;	/* LB_ALG_* */
	int algorithm_annotation;	/* honour service.cilium.io/lb-algorithm */
};

/*
 * Translation in two steps, so that each document is read once, when it
 * arrives, and no JSON is kept:
 *
 *   lb_service_parse()  a Service -> its frontends and settings (a spec)
 *   lb_slice_parse()    an EndpointSlice -> its family, ports and endpoints
 *   lb_translate_parsed()  a spec + the parsed slices of the service -> lb_svc
 *
 * lb_translate() does the three at once, from JSON.
 */
/* -EINVAL if the Service has no metadata.name, -ENOMEM. */
int lb_service_parse(const struct lb_translate_conf *conf, const json_t *svc,
		     struct lb_svc_spec **ret_spec);
struct lb_svc_spec *lb_svc_spec_ref(struct lb_svc_spec *spec);
/* metadata.namespace ("default" when it has none) and metadata.name. */
const char *lb_svc_spec_ns(const struct lb_svc_spec *spec);
const char *lb_svc_spec_name(const struct lb_svc_spec *spec);
void lb_svc_spec_unref(struct lb_svc_spec *spec);

struct lb_slice;
/* What names a slice and its service; borrowed from the document. */
struct lb_slice_meta {
	const char *ns, *name; /* metadata.namespace (NULL if none), metadata.name */
	const char *service;   /* its kubernetes.io/service-name label, or NULL */
};
/*
 * -ENOMEM only: whatever the slice holds that is of no use is left out.
 * ret_meta (may be NULL) is valid as long as the document is.
 */
int lb_slice_parse(const struct lb_translate_conf *conf, const json_t *slice,
		   struct lb_slice **ret_slice, struct lb_slice_meta *ret_meta);
void lb_slice_free(struct lb_slice *sl);
/* Endpoint addresses the parsed slice holds (an upper bound of its backends). */
size_t lb_slice_addrs(const struct lb_slice *sl);
/* 4, 6, or 0 (FQDN or unknown: no backends). */
uint8_t lb_slice_family(const struct lb_slice *sl);

/* `slices` may be NULL when n_slices is 0. 0 and a new lb_svc, or -ENOMEM. */
int lb_translate_parsed(const struct lb_svc_spec *spec, const struct lb_slice *const *slices,
			size_t n_slices, struct lb_svc **ret_svc);

/*
 * Translate one Service and the EndpointSlices that belong to it (the caller
 * matches kubernetes.io/service-name). `slices` may be NULL when n_slices is
 * 0. Returns 0 and a new lb_svc (free with lb_svc_free), -EINVAL if the
 * Service has no metadata.name, -ENOMEM.
 */
int lb_translate(const struct lb_translate_conf *conf, const json_t *svc,
		 const json_t *const *slices, size_t n_slices, struct lb_svc **ret_svc);
void lb_svc_free(struct lb_svc *s);
/*
 * What a translation of spec is without its backends (every fe's be NULL,
 * n_be and n_sel 0), filled into *ret, which borrows spec (no reference:
 * valid while the caller holds one; not for lb_svc_free). Once the map
 * writer has claimed a translation it holds the backends, so this is all
 * of it a node needs to keep: the old state of the next change, the views.
 */
void lb_svc_view(const struct lb_svc_spec *spec, struct lb_svc *ret);

/* "10.0.0.1" / "fd00::1" -> lb_ip; -EINVAL if it is neither. */
int lb_ip_parse(const char *s, struct lb_ip *ret_ip);
/* "10.0.0.1:80" / "[fd00::1]:80" into buf (at least LB_ADDR_STRLEN). */
#define LB_ADDR_STRLEN 56
const char *lb_addr_format(const struct lb_ip *ip, uint16_t port, char *buf, size_t len);
const char *lb_proto_name(uint8_t proto);
const char *lb_fe_type_name(uint8_t type);
const char *lb_alg_name(uint8_t alg);
/* "random" / "maglev" -> LB_ALG_*, 0 if unknown. */
uint8_t lb_alg_parse(const char *s);

#endif /* LB_TRANSLATE_H */
