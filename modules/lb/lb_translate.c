// SPDX-License-Identifier: Apache-2.0
/*
 * lb_translate.c - Service + EndpointSlices -> frontends and backends. The
 * rules are listed in lb_translate.h; this file only applies them.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lb_translate.h"

#define ANN_ALGORITHM "service.cilium.io/lb-algorithm"
#define LABEL_PROXY_NAME "service.kubernetes.io/service-proxy-name"

/*
 * Dotted-quad IPv4 as inet_pton(AF_INET) reads it, without its call and
 * generality: four decimal octets of 0..255, no leading zero, nothing
 * around them. False for anything else, which inet_pton then decides: this
 * only ever accepts what inet_pton accepts, with the same result.
 */
static bool ip4_parse(const char *s, uint8_t a[4])
{
	for (int i = 0; i < 4; i++) {
		unsigned v;

		if (i && *s++ != '.')
			return false;
		if (*s < '0' || *s > '9')
			return false;
		v = (unsigned)(*s++ - '0');
		if (v && *s >= '0' && *s <= '9') {
			v = v * 10 + (unsigned)(*s++ - '0');
			if (*s >= '0' && *s <= '9')
				v = v * 10 + (unsigned)(*s++ - '0');
		}
		/* A fourth digit, or a digit after a leading zero: refused as not "." or the end. */
		if (v > 255)
			return false;
		a[i] = (uint8_t)v;
	}
	return *s == '\0';
}

/* lb_ip_parse, inlined where a slice's addresses are read. */
static inline int ip_parse(const char *s, struct lb_ip *ret_ip)
{
	struct lb_ip ip = {0};

	if (!s)
		return -EINVAL;
	if (ip4_parse(s, ip.a) || inet_pton(AF_INET, s, ip.a) == 1)
		ip.family = 4;
	else if (inet_pton(AF_INET6, s, ip.a) == 1)
		ip.family = 6;
	else
		return -EINVAL;
	*ret_ip = ip;
	return 0;
}

int lb_ip_parse(const char *s, struct lb_ip *ret_ip)
{
	return ip_parse(s, ret_ip);
}

const char *lb_addr_format(const struct lb_ip *ip, uint16_t port, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN] = "?";

	inet_ntop(ip->family == 6 ? AF_INET6 : AF_INET, ip->a, a, sizeof(a));
	snprintf(buf, len, ip->family == 6 ? "[%s]:%u" : "%s:%u", a, port);
	return buf;
}

const char *lb_proto_name(uint8_t proto)
{
	return proto == IPPROTO_TCP ? "TCP" : proto == IPPROTO_UDP ? "UDP" : "?";
}

const char *lb_fe_type_name(uint8_t type)
{
	switch (type) {
	case LB_FE_CLUSTERIP:
		return "ClusterIP";
	case LB_FE_EXTERNALIP:
		return "ExternalIP";
	case LB_FE_LOADBALANCER:
		return "LoadBalancer";
	}
	return "?";
}

const char *lb_alg_name(uint8_t alg)
{
	return alg == LB_ALG_MAGLEV ? "maglev" : "random";
}

uint8_t lb_alg_parse(const char *s)
{
	if (!s)
		return 0;
	if (!strcmp(s, "random"))
		return LB_ALG_RANDOM;
	if (!strcmp(s, "maglev"))
		return LB_ALG_MAGLEV;
	return 0;
}

/*
 * Parsing. Each document is walked once, key by key, rather than looked up
 * key by key: a walk touches each member once, where every lookup of a
 * present or absent key costs its own cache misses, and that is most of the
 * time a large sync takes (by the time the store delivers them, its
 * documents are cold). What is kept lands in one allocation per document.
 */

/*
 * The walk: json_object_foreach goes from the key back to the iterator for
 * each member (five calls a member); this follows the iterator (four, one of
 * them for the key's length), so that a key is told from another by its
 * length and a compare the compiler inlines, not a strcmp call each (the
 * same answer: jansson's parser refuses a NUL in a key). NULL or a
 * non-object walks nothing, as with json_object_foreach.
 */
#if JANSSON_VERSION_HEX >= 0x020e00
#define ITER_KEY_LEN(it, k) json_object_iter_key_len(it)
#else
#define ITER_KEY_LEN(it, k) strlen(k)
#endif

#define OBJ_WALK(obj, k, kl, v)                                                         \
	for (void *it_ = json_object_iter((json_t *)(obj));                             \
	     it_ && ((k) = json_object_iter_key(it_), (kl) = ITER_KEY_LEN(it_, k),      \
		     (v) = json_object_iter_value(it_), 1);                             \
	     it_ = json_object_iter_next((json_t *)(obj), it_))

/* k, kl bytes long, is the literal lit. */
#define KEY(k, kl, lit) ((kl) == sizeof(lit) - 1 && !memcmp((k), (lit), sizeof(lit) - 1))

/* json_array_foreach without a size call per element. */
#define ARR_WALK(arr, i, n, v)                                   \
	for (size_t i = 0, n = json_array_size(arr);             \
	     i < n && ((v) = json_array_get((arr), i)); i++)

/*
 * A document that jansson built in one go (a parser, json_pack) lies mostly
 * in the few KB of heap after its root. Asking for that range up front turns
 * the walk's chain of dependent cache misses into misses served in parallel.
 * A wrong guess only costs memory bandwidth: prefetches never fault.
 */
#define DOC_PREFETCH_BYTES 4096

/*
 * Always inlined: GCC takes a function that only prefetches for one without
 * effects (const) and drops the calls to it when it is not inlined.
 */
static inline __attribute__((always_inline)) void prefetch_fwd(const void *p, size_t bytes)
{
	if (!p)
		return;
	for (size_t off = 0; off < bytes; off += 64)
		__builtin_prefetch((const char *)p + off);
}

static inline __attribute__((always_inline)) void doc_prefetch(const json_t *doc)
{
	prefetch_fwd(doc, DOC_PREFETCH_BYTES);
}

/*
 * The same, for a member's value the moment a walk meets it: its own
 * members follow it in memory (jansson allocates an object or array before
 * what it holds, parsing or packing), and are read only once the walk of
 * its parent is over.
 */
#define SUB_PREFETCH_BYTES 512

/* A growable array that starts in a caller's buffer. */
struct vec {
	void *v;
	size_t n, cap, esz;
	void *small;
};

static void vec_init(struct vec *x, void *small, size_t cap, size_t esz)
{
	*x = (struct vec){.v = small, .cap = cap, .esz = esz, .small = small};
}

static void *vec_push(struct vec *x)
{
	if (x->n == x->cap) {
		size_t cap = x->cap ? x->cap * 2 : 8;
		void *v = x->v == x->small ? malloc(cap * x->esz) : realloc(x->v, cap * x->esz);

		if (!v)
			return NULL;
		if (x->v == x->small)
			memcpy(v, x->small, x->n * x->esz);
		x->v = v;
		x->cap = cap;
	}
	return (char *)x->v + x->n++ * x->esz;
}

static void vec_free(struct vec *x)
{
	if (x->v != x->small)
		free(x->v);
}

/* Copy s into the string pool at *pool; NULL stays NULL. */
static char *pool_put(char **pool, const char *s)
{
	size_t n;
	char *d;

	if (!s)
		return NULL;
	n = strlen(s) + 1;
	d = memcpy(*pool, s, n);
	*pool += n;
	return d;
}

static size_t slen(const char *s)
{
	return s ? strlen(s) + 1 : 0;
}

/* A Service as parsed: what lb_translate_parsed() needs from it, in one block. */
struct lb_svc_spec {
	/*
	 * Atomic: a sync frees translations (each holding a reference) on its
	 * second thread while this one takes references for what it keeps.
	 */
	atomic_uint refs;
	uint32_t n_fe;
	char *ns, *name;     /* in the block */
	const char *skipped; /* a constant string */
	char *warning;	     /* malloc'd */
	uint32_t flags, affinity_timeout;
	char type[LB_SVC_TYPE_LEN];
	uint8_t algorithm;
	bool publish_not_ready;
	/*
	 * Then, in the block, the n_fe frontends (spec_fe(): no backends -- be
	 * NULL, n_be 0 -- port_name in the block) and the names. A node keeps
	 * one of these per Service: packed, no pointer kept to what follows.
	 */
};

#define LB_SPEC_FE_OFF                                                                    \
	((sizeof(struct lb_svc_spec) + _Alignof(struct lb_fe) - 1) & ~(_Alignof(struct lb_fe) - 1))

static inline struct lb_fe *spec_fe(const struct lb_svc_spec *spec)
{
	return (struct lb_fe *)((char *)spec + LB_SPEC_FE_OFF);
}

/* One port of a slice: name NULL when unnamed; port 0 when the number is invalid. */
struct lb_slice_port {
	const char *name;
	uint16_t port;
	uint8_t proto; /* 0: neither TCP nor UDP */
};

/* One endpoint address of a slice, of the slice's family. */
struct lb_slice_addr {
	struct lb_ip ip;
	uint8_t ready : 1, serving : 1, terminating : 1, local : 1;
};

/*
 * In one block: the struct, ports, the addresses (alen bytes each: 4 or
 * 16), their conditions (a byte each, LB_SA_*), port names. Packed, as a
 * node keeps every slice parsed: a million IPv4 endpoints take 5 MB, not
 * the 18 of a struct lb_slice_addr each.
 */
struct lb_slice {
	uint8_t family; /* 4, 6, or 0 (FQDN or unknown: never used) */
	uint8_t alen;
	/* The API allows 100 ports and 1000 endpoints a slice. */
	uint32_t n_ports, n_addrs, pad;
	/* Then, in the block: ports, addresses, conditions (sl_ports() ...), no pointers kept. */
};

static inline struct lb_slice_port *sl_ports(const struct lb_slice *sl)
{
	return (struct lb_slice_port *)(sl + 1);
}

static inline uint8_t *sl_addr(const struct lb_slice *sl)
{
	return (uint8_t *)(sl_ports(sl) + sl->n_ports);
}

static inline uint8_t *sl_cond(const struct lb_slice *sl)
{
	return sl_addr(sl) + (size_t)sl->n_addrs * sl->alen;
}

_Static_assert(sizeof(struct lb_slice) % _Alignof(struct lb_slice_port) == 0,
	       "the ports follow the header");

#define LB_SA_READY 0x1u
#define LB_SA_SERVING 0x2u
#define LB_SA_TERMINATING 0x4u
#define LB_SA_LOCAL 0x8u

/* Address i of a parsed slice, unpacked. */
static void slice_addr(const struct lb_slice *sl, size_t i, struct lb_slice_addr *a)
{
	uint8_t c = sl_cond(sl)[i];

	memset(&a->ip, 0, sizeof(a->ip));
	a->ip.family = sl->family;
	memcpy(a->ip.a, sl_addr(sl) + i * sl->alen, sl->alen);
	a->ready = !!(c & LB_SA_READY);
	a->serving = !!(c & LB_SA_SERVING);
	a->terminating = !!(c & LB_SA_TERMINATING);
	a->local = !!(c & LB_SA_LOCAL);
}

struct lb_svc_spec *lb_svc_spec_ref(struct lb_svc_spec *spec)
{
	if (spec)
		atomic_fetch_add_explicit(&spec->refs, 1, memory_order_relaxed);
	return spec;
}

const char *lb_svc_spec_ns(const struct lb_svc_spec *spec)
{
	return spec->ns;
}

const char *lb_svc_spec_name(const struct lb_svc_spec *spec)
{
	return spec->name;
}

void lb_svc_spec_unref(struct lb_svc_spec *spec)
{
	if (spec && atomic_fetch_sub_explicit(&spec->refs, 1, memory_order_acq_rel) == 1) {
		free(spec->warning);
		free(spec);
	}
}

void lb_svc_view(const struct lb_svc_spec *spec, struct lb_svc *ret)
{
	*ret = (struct lb_svc){
		.ns = spec->ns,
		.name = spec->name,
		.algorithm = spec->algorithm,
		.flags = spec->flags,
		.affinity_timeout = spec->affinity_timeout,
		.skipped = (char *)spec->skipped,
		.warning = spec->warning,
		.n_fe = spec->n_fe,
		.fe = spec_fe(spec), /* as translated, less the backends (be NULL, n_be 0) */
		.spec = (struct lb_svc_spec *)spec,
	};
	memcpy(ret->type, spec->type, sizeof(ret->type));
}

void lb_svc_free(struct lb_svc *s)
{
	/* Two blocks: the struct with its frontends, and every frontend's backends. */
	if (!s)
		return;
	lb_svc_spec_unref(s->spec);
	free(s->be_all);
	free(s);
}

void lb_slice_free(struct lb_slice *sl)
{
	free(sl);
}

size_t lb_slice_addrs(const struct lb_slice *sl)
{
	return sl->n_addrs;
}

uint8_t lb_slice_family(const struct lb_slice *sl)
{
	return sl->family;
}

static const char *jstr(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static uint8_t proto_parse(const char *s)
{
	if (!s || !strcmp(s, "TCP"))
		return IPPROTO_TCP;
	if (!strcmp(s, "UDP"))
		return IPPROTO_UDP;
	return 0; /* SCTP and anything else: not handled at the socket layer */
}

__attribute__((format(printf, 2, 3))) static int set_msg(char **slot, const char *fmt, ...)
{
	va_list ap;
	char *m;
	int r;

	if (*slot) /* the first problem is the one reported */
		return 0;
	va_start(ap, fmt);
	r = vasprintf(&m, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	*slot = m;
	return 0;
}

/* --- EndpointSlice -------------------------------------------------------------- */

#define LABEL_SERVICE_NAME "kubernetes.io/service-name"

static void slice_port_parse(struct lb_slice_port *sp, json_t *p)
{
	const char *k, *pn = NULL;
	json_int_t num = 0;
	size_t kl;
	json_t *v;

	sp->proto = IPPROTO_TCP; /* the default, as for a missing protocol */
	OBJ_WALK(p, k, kl, v) {
		if (KEY(k, kl, "name"))
			pn = json_string_value(v);
		else if (KEY(k, kl, "port"))
			num = json_integer_value(v);
		else if (KEY(k, kl, "protocol"))
			sp->proto = proto_parse(json_string_value(v));
	}
	sp->port = num >= 1 && num <= 65535 ? (uint16_t)num : 0;
	sp->name = pn && *pn ? pn : NULL; /* borrowed until the slice is built */
}

static int slice_ep_parse(const struct lb_translate_conf *conf, uint8_t family, struct vec *addrs,
			  json_t *ep)
{
	const json_t *conds = NULL, *as = NULL, *a;
	const char *k, *node = NULL;
	struct lb_slice_addr x = {0}, *y;
	size_t kl;
	int ready = -1, serving = -1, terminating = -1;
	json_t *v;

	OBJ_WALK(ep, k, kl, v) {
		if (KEY(k, kl, "addresses"))
			as = v;
		else if (KEY(k, kl, "conditions"))
			conds = v;
		else if (KEY(k, kl, "nodeName"))
			node = json_string_value(v);
	}
	OBJ_WALK(conds, k, kl, v) {
		int b = json_is_boolean(v) ? json_is_true(v) : -1;

		if (KEY(k, kl, "ready"))
			ready = b;
		else if (KEY(k, kl, "serving"))
			serving = b;
		else if (KEY(k, kl, "terminating"))
			terminating = b;
	}
	/* Missing (or null) ready/serving mean true, terminating false (API semantics). */
	x.ready = ready < 0 ? 1 : ready;
	x.serving = serving < 0 ? x.ready : serving;
	x.terminating = terminating < 0 ? 0 : terminating;
	x.local = node && conf->node_name && !strcmp(node, conf->node_name);
	ARR_WALK(as, j, n, a) {
		if (ip_parse(json_string_value(a), &x.ip) < 0 || x.ip.family != family)
			continue;
		if (!(y = vec_push(addrs)))
			return -ENOMEM;
		*y = x;
	}
	return 0;
}

/*
 * An endpoint is a dozen small blocks or more (its object, the members, the
 * addresses array, strings, the conditions, a targetRef: 1 to 2.5 KB) that
 * jansson allocated right after the endpoint's object, whether a parser or
 * json_pack built it. Asking for the next endpoint's while this one is read
 * overlaps their misses with the work instead of taking them one after the
 * other. Measured on small and on API-server-sized endpoints: asking further
 * ahead, or for the exact span up to the endpoint after, was no quicker.
 */
#define EP_PREFETCH_BYTES 2560

int lb_slice_parse(const struct lb_translate_conf *conf, const json_t *slice,
		   struct lb_slice **ret_slice, struct lb_slice_meta *ret_meta)
{
	const json_t *ports = NULL, *eps = NULL, *meta = NULL;
	struct lb_slice_port port_buf[8];
	struct lb_slice_addr addr_buf[32];
	struct vec vp, va;
	struct lb_slice *sl = NULL;
	const char *k, *at = NULL;
	uint8_t family, alen;
	size_t i, kl, n_eps, names = 0;
	char *pool;
	json_t *v, *next;
	int r = -ENOMEM;

	vec_init(&vp, port_buf, sizeof(port_buf) / sizeof(port_buf[0]), sizeof(port_buf[0]));
	vec_init(&va, addr_buf, sizeof(addr_buf) / sizeof(addr_buf[0]), sizeof(addr_buf[0]));
	doc_prefetch(slice);
	OBJ_WALK(slice, k, kl, v) {
		switch (k[0]) {
		case 'a':
			if (KEY(k, kl, "addressType"))
				at = json_string_value(v);
			break;
		case 'e':
			if (KEY(k, kl, "endpoints")) {
				eps = v;
				/* Its first endpoint, while the rest of the document is read. */
				prefetch_fwd(json_array_get(eps, 0), EP_PREFETCH_BYTES);
			}
			break;
		case 'm':
			if (KEY(k, kl, "metadata")) {
				meta = v;
				prefetch_fwd(meta, SUB_PREFETCH_BYTES);
			}
			break;
		case 'p':
			if (KEY(k, kl, "ports")) {
				ports = v;
				prefetch_fwd(ports, SUB_PREFETCH_BYTES);
			}
			break;
		}
	}
	if (ret_meta) {
		memset(ret_meta, 0, sizeof(*ret_meta));
		OBJ_WALK(meta, k, kl, v) {
			if (KEY(k, kl, "name"))
				ret_meta->name = json_string_value(v);
			else if (KEY(k, kl, "namespace"))
				ret_meta->ns = json_string_value(v);
			else if (KEY(k, kl, "labels"))
				ret_meta->service =
					json_string_value(json_object_get(v, LABEL_SERVICE_NAME));
		}
	}
	family = !at ? 0 : !strcmp(at, "IPv4") ? 4 : !strcmp(at, "IPv6") ? 6 : 0;
	/* FQDN (family 0): nothing the socket layer can use, the slice stays empty. */
	ARR_WALK(family ? ports : NULL, j, n, v) {
		struct lb_slice_port *sp = vec_push(&vp);

		if (!sp)
			goto out;
		slice_port_parse(sp, v);
		names += slen(sp->name);
	}
	n_eps = family ? json_array_size(eps) : 0;
	next = n_eps ? json_array_get(eps, 0) : NULL;
	for (i = 0; i < n_eps && (v = next); i++) {
		next = i + 1 < n_eps ? json_array_get(eps, i + 1) : NULL;
		prefetch_fwd(next, EP_PREFETCH_BYTES);
		if (slice_ep_parse(conf, family, &va, v) < 0)
			goto out;
	}
	alen = family == 6 ? 16 : 4;
	if (vp.n > UINT32_MAX || va.n > UINT32_MAX) /* nothing the API lets through */
		goto out;
	sl = malloc(sizeof(*sl) + vp.n * sizeof(struct lb_slice_port) + va.n * (alen + 1u) + names);
	if (!sl)
		goto out;
	sl->family = family;
	sl->alen = alen;
	sl->n_ports = (uint32_t)vp.n;
	sl->n_addrs = (uint32_t)va.n;
	memcpy(sl_ports(sl), vp.v, vp.n * sizeof(struct lb_slice_port));
	for (i = 0; i < va.n; i++) {
		const struct lb_slice_addr *a = (const struct lb_slice_addr *)va.v + i;

		memcpy(sl_addr(sl) + i * alen, a->ip.a, alen);
		sl_cond(sl)[i] = (uint8_t)((a->ready ? LB_SA_READY : 0) | (a->serving ? LB_SA_SERVING : 0) |
					(a->terminating ? LB_SA_TERMINATING : 0) |
					(a->local ? LB_SA_LOCAL : 0));
	}
	pool = (char *)(sl_cond(sl) + va.n);
	for (i = 0; i < vp.n; i++)
		sl_ports(sl)[i].name = pool_put(&pool, sl_ports(sl)[i].name);
	*ret_slice = sl;
	r = 0;
out:
	vec_free(&vp);
	vec_free(&va);
	return r;
}

/* --- Service -------------------------------------------------------------------- */

/* A port of spec.ports, read once for all the service's addresses. */
struct svc_port {
	const char *name;
	json_int_t num;
	uint8_t proto;
};

/* Frontends being collected: port_name borrowed from the document until the spec is built. */
static int fe_add(struct vec *l, const struct lb_ip *ip, uint8_t type, const struct svc_port *p)
{
	struct lb_fe *fe, *v = l->v;

	if (!p->proto || p->num < 1 || p->num > 65535)
		return 0; /* SCTP, or a broken port: nothing to do at the socket layer */
	for (size_t i = 0; i < l->n; i++)
		if (v[i].port == p->num && v[i].proto == p->proto && !memcmp(&v[i].ip, ip, sizeof(*ip)))
			return 0; /* the same IP listed twice (clusterIP and externalIPs) */
	if (!(fe = vec_push(l)))
		return -ENOMEM;
	memset(fe, 0, sizeof(*fe));
	fe->ip = *ip;
	fe->port = (uint16_t)p->num;
	fe->proto = p->proto;
	fe->type = type;
	fe->port_name = (char *)(p->name ? p->name : "");
	return 0;
}

static int fe_add_ip(char **warning, struct vec *l, const char *ipstr, uint8_t type,
		     const struct svc_port *ports, size_t n_ports)
{
	struct lb_ip ip;
	int r;

	if (lb_ip_parse(ipstr, &ip) < 0)
		return set_msg(warning, "invalid IP address '%s' ignored", ipstr ? ipstr : "");
	for (size_t i = 0; i < n_ports; i++)
		if ((r = fe_add(l, &ip, type, &ports[i])) < 0)
			return r;
	return 0;
}

static void port_parse(struct svc_port *p, json_t *port)
{
	const char *k;
	size_t kl;
	json_t *v;

	p->name = NULL;
	p->num = 0;
	p->proto = IPPROTO_TCP;
	OBJ_WALK(port, k, kl, v) {
		if (KEY(k, kl, "port"))
			p->num = json_integer_value(v);
		else if (KEY(k, kl, "protocol"))
			p->proto = proto_parse(json_string_value(v));
		else if (KEY(k, kl, "name"))
			p->name = json_string_value(v);
	}
}

static int frontends(char **warning, const char *cip, const json_t *cips, const json_t *eips,
		     const json_t *jports, const json_t *status, struct vec *l)
{
	struct svc_port small[8], *ports = small;
	size_t i, n = json_array_size(jports);
	const json_t *v;
	int r = 0;

	if (n > sizeof(small) / sizeof(small[0]) && !(ports = malloc(n * sizeof(*ports))))
		return -ENOMEM;
	json_array_foreach(jports, i, v)
		port_parse(&ports[i], (json_t *)v);
	if (json_array_size(cips) == 0 && cip && *cip && strcmp(cip, "None") &&
	    (r = fe_add_ip(warning, l, cip, LB_FE_CLUSTERIP, ports, n)) < 0)
		goto out;
	json_array_foreach(cips, i, v) {
		const char *ip = json_string_value(v);

		if (ip && *ip && strcmp(ip, "None") &&
		    (r = fe_add_ip(warning, l, ip, LB_FE_CLUSTERIP, ports, n)) < 0)
			goto out;
	}
	/* In-cluster clients of an external or LB address go straight to a backend. */
	json_array_foreach(eips, i, v)
		if ((r = fe_add_ip(warning, l, json_string_value(v), LB_FE_EXTERNALIP, ports, n)) < 0)
			goto out;
	json_array_foreach(json_object_get(json_object_get(status, "loadBalancer"), "ingress"), i, v) {
		const char *ip = jstr(v, "ip");

		if (ip && (r = fe_add_ip(warning, l, ip, LB_FE_LOADBALANCER, ports, n)) < 0)
			goto out;
	}
out:
	if (ports != small)
		free(ports);
	return r;
}

/* Why a service is not ours, or NULL. */
static const char *skip_reason(const struct lb_translate_conf *conf, const json_t *labels,
			       const char *type)
{
	const char *proxy = jstr(labels, LABEL_PROXY_NAME);
	const char *want = conf->service_proxy_name ? conf->service_proxy_name : "";

	/* SVC-43: the label names the proxy that owns the service. */
	if (proxy ? strcmp(proxy, want) : *want != '\0')
		return "handled by another service proxy (" LABEL_PROXY_NAME ")";
	if (type && !strcmp(type, "ExternalName"))
		return "ExternalName service";
	return NULL;
}

int lb_service_parse(const struct lb_translate_conf *conf, const json_t *svc,
		     struct lb_svc_spec **ret_spec)
{
	const json_t *meta = NULL, *spec = NULL, *status = NULL, *ann = NULL, *labels = NULL;
	const json_t *ports = NULL, *cips = NULL, *eips = NULL, *aff_conf = NULL;
	const char *name = NULL, *ns = NULL, *type = NULL, *cip = NULL, *aff = NULL, *itp = NULL;
	const char *k, *v, *skipped;
	struct lb_fe fe_buf[8], *fes;
	struct lb_svc_spec *s;
	struct vec l;
	char *warning = NULL, *pool;
	uint8_t algorithm = conf->default_algorithm ? conf->default_algorithm : LB_ALG_RANDOM;
	uint32_t flags = 0, timeout = 0;
	size_t kl, names;
	bool pnr = false;
	json_t *x;
	int r;

	doc_prefetch(svc);
	OBJ_WALK(svc, k, kl, x) {
		switch (k[0]) {
		case 'm':
			if (KEY(k, kl, "metadata")) {
				meta = x;
				prefetch_fwd(meta, SUB_PREFETCH_BYTES);
			}
			break;
		case 's':
			if (KEY(k, kl, "spec")) {
				spec = x;
				prefetch_fwd(spec, 2 * SUB_PREFETCH_BYTES);
			} else if (KEY(k, kl, "status")) {
				status = x;
			}
			break;
		}
	}
	OBJ_WALK(meta, k, kl, x) {
		if (KEY(k, kl, "name"))
			name = json_string_value(x);
		else if (KEY(k, kl, "namespace"))
			ns = json_string_value(x);
		else if (KEY(k, kl, "labels"))
			labels = x;
		else if (KEY(k, kl, "annotations"))
			ann = x;
	}
	if (!name || !*name)
		return -EINVAL;
	OBJ_WALK(spec, k, kl, x) {
		switch (k[0]) {
		case 'c':
			if (KEY(k, kl, "clusterIP"))
				cip = json_string_value(x);
			else if (KEY(k, kl, "clusterIPs"))
				cips = x;
			break;
		case 'e':
			if (KEY(k, kl, "externalIPs"))
				eips = x;
			break;
		case 'i':
			if (KEY(k, kl, "internalTrafficPolicy"))
				itp = json_string_value(x);
			break;
		case 'p':
			if (KEY(k, kl, "ports")) {
				ports = x;
				prefetch_fwd(ports, SUB_PREFETCH_BYTES);
			} else if (KEY(k, kl, "publishNotReadyAddresses"))
				pnr = json_is_true(x);
			break;
		case 's':
			if (KEY(k, kl, "sessionAffinity"))
				aff = json_string_value(x);
			else if (KEY(k, kl, "sessionAffinityConfig"))
				aff_conf = x;
			break;
		case 't':
			if (KEY(k, kl, "type"))
				type = json_string_value(x);
			break;
		}
	}
	vec_init(&l, fe_buf, sizeof(fe_buf) / sizeof(fe_buf[0]), sizeof(fe_buf[0]));
	skipped = skip_reason(conf, labels, type);
	if (!skipped) {
		v = jstr(ann, ANN_ALGORITHM);
		if (v && conf->algorithm_annotation) {
			uint8_t alg = lb_alg_parse(v);

			if (alg)
				algorithm = alg;
			else if ((r = set_msg(&warning, "unknown " ANN_ALGORITHM " '%s' ignored",
					      v)) < 0)
				goto fail;
		}
		if (aff && !strcmp(aff, "ClientIP")) {
			json_int_t t = json_integer_value(json_object_get(
				json_object_get(aff_conf, "clientIP"), "timeoutSeconds"));

			flags |= LB_SVCF_AFFINITY;
			/* The API allows 1..86400; anything else falls back to the default. */
			timeout = t >= 1 && t <= 86400 ? (uint32_t)t : LB_AFFINITY_DEFAULT_S;
		}
		if (itp && !strcmp(itp, "Local"))
			flags |= LB_SVCF_ITP_LOCAL;
		if ((r = frontends(&warning, cip, cips, eips, ports, status, &l)) < 0)
			goto fail;
		if (!l.n)
			skipped = cip && !strcmp(cip, "None") ? "headless service"
							      : "no TCP or UDP frontend";
	}
	names = slen(name) + slen(ns ? ns : "default");
	for (size_t i = 0; i < l.n; i++)
		names += slen(((struct lb_fe *)l.v)[i].port_name);
	if (l.n > UINT32_MAX) { /* frontends = addresses x ports: nothing a Service can have */
		r = -ENOMEM;
		goto fail;
	}
	s = malloc(LB_SPEC_FE_OFF + l.n * sizeof(struct lb_fe) + names);
	if (!s) {
		r = -ENOMEM;
		goto fail;
	}
	memset(s, 0, sizeof(*s));
	atomic_init(&s->refs, 1);
	s->n_fe = (uint32_t)l.n;
	fes = spec_fe(s);
	memcpy(fes, l.v, l.n * sizeof(*fes));
	pool = (char *)(fes + l.n);
	s->name = pool_put(&pool, name);
	s->ns = pool_put(&pool, ns ? ns : "default");
	for (size_t i = 0; i < l.n; i++)
		fes[i].port_name = pool_put(&pool, fes[i].port_name);
	/* As snprintf "%s" would (cut to fit), without its cost. */
	type = type ? type : "ClusterIP";
	memcpy(s->type, type, strnlen(type, sizeof(s->type) - 1));
	s->algorithm = algorithm;
	s->flags = flags;
	s->affinity_timeout = timeout;
	s->publish_not_ready = pnr;
	s->skipped = skipped;
	s->warning = warning;
	vec_free(&l);
	*ret_spec = s;
	return 0;
fail:
	vec_free(&l);
	free(warning);
	return r;
}

/* --- Service + slices -> backends ------------------------------------------------ */

/* One candidate endpoint address of a frontend, before selection. */
struct cand {
	struct lb_be be;
	bool ready, serving, terminating;
};

/*
 * The candidates of one frontend, deduplicated by address and port: by a
 * scan while they are few, through an index (open addressing, slot = i + 1)
 * once there are more.
 */
#define CANDS_SCAN 32

struct cands {
	struct vec v;
	uint32_t *idx;
	size_t idx_size; /* a power of two, at least twice the candidates */
};

static uint32_t cand_hash(const struct lb_ip *ip, uint16_t port)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < sizeof(ip->a); i++)
		h = (h ^ ip->a[i]) * 16777619u;
	h = (h ^ port) * 16777619u;
	return h ^ (h >> 16);
}

static bool cand_same(const struct cand *y, const struct lb_ip *ip, uint16_t port)
{
	uint64_t a[2], b[2];

	/* The address as two words: no memcmp call in the scan, the hottest loop here. */
	memcpy(a, y->be.ip.a, sizeof(a));
	memcpy(b, ip->a, sizeof(b));
	return ((a[0] ^ b[0]) | (a[1] ^ b[1])) == 0 && y->be.port == port &&
	       y->be.ip.family == ip->family;
}

/*
 * Field by field, from the parsed slice: a candidate built on the stack and
 * then copied whole (or read back as words) stalls on store forwarding.
 */
static void cand_set(struct cand *y, const struct lb_slice_addr *a, uint16_t port)
{
	memset(&y->be, 0, sizeof(y->be)); /* its padding too, as a zeroed copy had it */
	y->be.ip = a->ip;
	y->be.port = port;
	y->be.local = a->local;
	y->ready = a->ready;
	y->serving = a->serving;
	y->terminating = a->terminating;
}

static void cands_index_put(struct cands *c, size_t i)
{
	const struct cand *v = c->v.v;
	size_t m = c->idx_size - 1, h = cand_hash(&v[i].be.ip, v[i].be.port) & m;

	while (c->idx[h])
		h = (h + 1) & m;
	c->idx[h] = (uint32_t)i + 1;
}

/* Endpoint address a on port as a candidate. */
static int cands_add(struct cands *c, const struct lb_slice_addr *a, uint16_t port)
{
	struct cand *v = c->v.v, *y = NULL;

	/* Duplicates across slices happen during updates: keep the best state. */
	if (c->idx) {
		size_t m = c->idx_size - 1;

		for (size_t h = cand_hash(&a->ip, port) & m; c->idx[h]; h = (h + 1) & m)
			if (cand_same(&v[c->idx[h] - 1], &a->ip, port)) {
				y = &v[c->idx[h] - 1];
				break;
			}
	} else {
		for (size_t i = 0; i < c->v.n && !y; i++)
			if (cand_same(&v[i], &a->ip, port))
				y = &v[i];
	}
	if (y) {
		if (a->ready && !y->ready)
			cand_set(y, a, port);
		return 0;
	}
	if (!(y = vec_push(&c->v)))
		return -ENOMEM;
	cand_set(y, a, port);
	if (c->v.n > CANDS_SCAN && c->v.n * 2 > c->idx_size) {
		size_t size = c->idx_size ? c->idx_size * 2 : 4 * CANDS_SCAN;
		uint32_t *idx = calloc(size, sizeof(*idx));

		if (!idx)
			return -ENOMEM;
		free(c->idx);
		c->idx = idx;
		c->idx_size = size;
		for (size_t i = 0; i < c->v.n; i++)
			cands_index_put(c, i);
	} else if (c->idx) {
		cands_index_put(c, c->v.n - 1);
	}
	return 0;
}

static void cands_reset(struct cands *c)
{
	c->v.n = 0;
	free(c->idx);
	c->idx = NULL;
	c->idx_size = 0;
}

/* The port number a slice gives for (name, proto), or -1. */
static int slice_port(const struct lb_slice *sl, const char *name, uint8_t proto)
{
	for (size_t i = 0; i < sl->n_ports; i++) {
		const struct lb_slice_port *p = &sl_ports(sl)[i];

		if (p->proto != proto || strcmp(p->name ? p->name : "", name))
			continue;
		return p->port ? p->port : -1;
	}
	return -1;
}

static int collect(const struct lb_fe *fe, const struct lb_slice *const *slices, size_t n_slices,
		   bool local_only, struct cands *out)
{
	for (size_t s = 0; s < n_slices; s++) {
		const struct lb_slice *sl = slices[s];
		int port, r;

		if (sl->family != fe->ip.family)
			continue;
		port = slice_port(sl, fe->port_name, fe->proto);
		if (port < 0)
			continue;
		for (size_t i = 0; i < sl->n_addrs; i++) {
			struct lb_slice_addr a;

			if (local_only && !(sl_cond(sl)[i] & LB_SA_LOCAL))
				continue;
			slice_addr(sl, i, &a);
			if ((r = cands_add(out, &a, (uint16_t)port)) < 0)
				return r;
		}
	}
	return 0;
}

/*
 * Apply the endpoint-condition rules to the candidates of one frontend:
 * append its selectable backends, then the kept ones, to `out`.
 */
static int select_backends(struct lb_fe *fe, const struct cands *c, bool publish_not_ready,
			   struct vec *out)
{
	const struct cand *v = c->v.v;
	size_t n_ready = 0, first = out->n;
	struct lb_be *be;
	bool fallback;

	for (size_t i = 0; i < c->v.n; i++)
		n_ready += v[i].ready && !v[i].terminating;
	/* Nothing ready: serving endpoints that terminate are better than none. */
	fallback = !publish_not_ready && n_ready == 0;

	for (int kept = 0; kept < 2; kept++) {
		for (size_t i = 0; i < c->v.n; i++) {
			const struct cand *x = &v[i];
			bool sel = publish_not_ready || (x->ready && !x->terminating) ||
				   (fallback && x->serving && x->terminating);

			/* Kept: for flows that already use them, never picked for new ones. */
			if (kept ? sel || !x->terminating : !sel)
				continue;
			if (!(be = vec_push(out)))
				return -ENOMEM;
			*be = x->be;
			be->state = x->terminating ? LB_BE_TERMINATING : LB_BE_ACTIVE;
		}
		if (!kept)
			fe->n_sel = out->n - first;
	}
	fe->n_be = out->n - first;
	return 0;
}

/* A parsed spec or slice with a few frontends or endpoints: one block of about this size. */
#define PARSED_PREFETCH_BYTES 256

int lb_translate_parsed(const struct lb_svc_spec *spec, const struct lb_slice *const *slices,
			size_t n_slices, struct lb_svc **ret_svc)
{
	struct cand cand_buf[16];
	struct lb_be be_buf[32];
	struct lb_fe fe_buf[8], *fe = fe_buf;
	struct cands c = {0};
	struct vec bes;
	struct lb_svc *s = NULL;
	struct lb_be *be;
	int r = 0;

	/*
	 * The spec and the slices were parsed long before (a sync translates
	 * once every document is read): ask for all of them at once rather than
	 * miss on each in turn.
	 */
	prefetch_fwd(spec, PARSED_PREFETCH_BYTES);
	for (size_t i = 0; i < n_slices; i++)
		prefetch_fwd(slices[i], PARSED_PREFETCH_BYTES);
	vec_init(&c.v, cand_buf, sizeof(cand_buf) / sizeof(cand_buf[0]), sizeof(cand_buf[0]));
	vec_init(&bes, be_buf, sizeof(be_buf) / sizeof(be_buf[0]), sizeof(be_buf[0]));
	if (spec->n_fe > sizeof(fe_buf) / sizeof(fe_buf[0]) &&
	    !(fe = malloc(spec->n_fe * sizeof(*fe)))) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < spec->n_fe; i++) {
		bool local = (spec->flags & LB_SVCF_ITP_LOCAL) && spec_fe(spec)[i].type == LB_FE_CLUSTERIP;

		fe[i] = spec_fe(spec)[i];
		cands_reset(&c);
		if ((r = collect(&fe[i], slices, n_slices, local, &c)) < 0 ||
		    (r = select_backends(&fe[i], &c, spec->publish_not_ready, &bes)) < 0)
			goto out;
	}
	/*
	 * Two blocks: the service and its frontends; every frontend's backends
	 * in turn.
	 */
	s = malloc(sizeof(*s) + spec->n_fe * sizeof(*s->fe));
	be = bes.n ? malloc(bes.n * sizeof(*be)) : NULL;
	if (!s || (bes.n && !be)) {
		free(s);
		free(be);
		r = -ENOMEM;
		goto out;
	}
	memset(s, 0, sizeof(*s));
	s->be_all = be;
	s->spec = lb_svc_spec_ref((struct lb_svc_spec *)spec);
	s->ns = spec->ns;
	s->name = spec->name;
	memcpy(s->type, spec->type, sizeof(s->type));
	s->algorithm = spec->algorithm;
	s->flags = spec->flags;
	s->affinity_timeout = spec->affinity_timeout;
	s->skipped = (char *)spec->skipped;
	s->warning = spec->warning;
	s->n_fe = spec->n_fe;
	s->fe = (struct lb_fe *)(s + 1);
	if (bes.n)
		memcpy(be, bes.v, bes.n * sizeof(*be));
	for (size_t i = 0; i < s->n_fe; i++) {
		s->fe[i] = fe[i];
		s->fe[i].be = be;
		be += fe[i].n_be;
	}
	*ret_svc = s;
out:
	cands_reset(&c);
	vec_free(&c.v);
	vec_free(&bes);
	if (fe != fe_buf)
		free(fe);
	return r;
}

int lb_translate(const struct lb_translate_conf *conf, const json_t *svc,
		 const json_t *const *slices, size_t n_slices, struct lb_svc **ret_svc)
{
	struct lb_slice **sl = NULL;
	struct lb_svc_spec *spec;
	size_t n = 0;
	int r;

	if ((r = lb_service_parse(conf, svc, &spec)) < 0)
		return r;
	if (n_slices && !(sl = calloc(n_slices, sizeof(*sl))))
		r = -ENOMEM;
	for (; !r && n < n_slices; n++)
		r = lb_slice_parse(conf, slices[n], &sl[n], NULL);
	if (!r)
		r = lb_translate_parsed(spec, (const struct lb_slice *const *)sl, n_slices, ret_svc);
	while (n-- > 0)
		lb_slice_free(sl[n]);
	free(sl);
	lb_svc_spec_unref(spec);
	return r;
}
