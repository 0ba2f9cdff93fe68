// SPDX-License-Identifier: Apache-2.0
/*
 * lbipam_alloc.c - addresses, pool specs, sets of held addresses, lowest-free
 * search, counts and conflicts. Pure: no host calls, no logging; problems
 * come back as messages for the caller to log once.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lbipam_alloc.h"

/* --- addresses -------------------------------------------------------------- */

int lb_addr_cmp(struct lb_addr x, struct lb_addr y)
{
	if (x.hi != y.hi)
		return x.hi < y.hi ? -1 : 1;
	if (x.lo != y.lo)
		return x.lo < y.lo ? -1 : 1;
	return 0;
}

struct lb_addr lb_addr_add(struct lb_addr x, uint64_t n)
{
	struct lb_addr r = {x.hi, x.lo + n};

	if (r.lo < x.lo)
		r.hi++;
	return r;
}

struct lb_addr lb_addr_sub(struct lb_addr x, struct lb_addr y)
{
	struct lb_addr r = {x.hi - y.hi, x.lo - y.lo};

	if (x.lo < y.lo)
		r.hi--;
	return r;
}

/* x + y, saturating at 2^128 - 1 (only a ::/0 pool gets there). */
static struct lb_addr u128_add_sat(struct lb_addr x, struct lb_addr y)
{
	struct lb_addr r = {x.hi + y.hi, x.lo + y.lo};

	if (r.lo < x.lo)
		r.hi++;
	if (r.hi < x.hi || (r.hi == x.hi && r.lo < x.lo))
		return (struct lb_addr){UINT64_MAX, UINT64_MAX};
	return r;
}

int lb_ip_cmp(const struct lb_ip *x, const struct lb_ip *y)
{
	if (x->fam != y->fam)
		return x->fam < y->fam ? -1 : 1;
	return lb_addr_cmp(x->a, y->a);
}

uint64_t lb_ip_hash(const struct lb_ip *ip)
{
	uint64_t h = ip->a.lo ^ (ip->a.hi * 0x9e3779b97f4a7c15ull) ^ ip->fam;

	/* splitmix64 finaliser: consecutive addresses land far apart. */
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebull;
	return h ^ (h >> 31);
}

int lb_ip_parse(const char *s, struct lb_ip *ret_ip)
{
	unsigned char b[16];
	struct lb_ip ip = {0};

	if (!s)
		return -EINVAL;
	if (inet_pton(AF_INET, s, b) == 1) {
		ip.fam = LB_V4;
		ip.a.lo = (uint64_t)b[0] << 24 | (uint64_t)b[1] << 16 | (uint64_t)b[2] << 8 | b[3];
	} else if (inet_pton(AF_INET6, s, b) == 1) {
		ip.fam = LB_V6;
		for (int i = 0; i < 8; i++) {
			ip.a.hi = ip.a.hi << 8 | b[i];
			ip.a.lo = ip.a.lo << 8 | b[i + 8];
		}
	} else {
		return -EINVAL;
	}
	*ret_ip = ip;
	return 0;
}

const char *lb_ip_str(const struct lb_ip *ip, char buf[LB_IPSTR])
{
	unsigned char b[16];

	if (ip->fam == LB_V4) {
		for (int i = 0; i < 4; i++)
			b[i] = (unsigned char)(ip->a.lo >> (24 - 8 * i));
		return inet_ntop(AF_INET, b, buf, LB_IPSTR) ? buf : strcpy(buf, "?");
	}
	for (int i = 0; i < 8; i++) {
		b[i] = (unsigned char)(ip->a.hi >> (56 - 8 * i));
		b[i + 8] = (unsigned char)(ip->a.lo >> (56 - 8 * i));
	}
	return inet_ntop(AF_INET6, b, buf, LB_IPSTR) ? buf : strcpy(buf, "?");
}

const char *lb_u128_str(struct lb_addr v, char buf[LB_U128STR])
{
	/* Long division by 10 on 32-bit limbs: no __int128 on 32-bit targets. */
	uint32_t limb[4] = {(uint32_t)(v.hi >> 32), (uint32_t)v.hi, (uint32_t)(v.lo >> 32),
			    (uint32_t)v.lo};
	char tmp[LB_U128STR];
	size_t n = 0;

	do {
		uint64_t rem = 0;
		bool zero = true;

		for (int i = 0; i < 4; i++) {
			uint64_t cur = rem << 32 | limb[i];

			limb[i] = (uint32_t)(cur / 10);
			rem = cur % 10;
			zero &= limb[i] == 0;
		}
		tmp[n++] = (char)('0' + rem);
		if (zero)
			break;
	} while (n < LB_U128STR - 1);
	for (size_t i = 0; i < n; i++)
		buf[i] = tmp[n - 1 - i];
	buf[n] = '\0';
	return buf;
}

/* --- sets --------------------------------------------------------------------- */

static int addr_qcmp(const void *x, const void *y)
{
	return lb_addr_cmp(*(const struct lb_addr *)x, *(const struct lb_addr *)y);
}

static void set_sort(struct lb_set *s)
{
	uint32_t w = 0;

	if (!s->unsorted)
		return;
	qsort(s->v, s->n, sizeof(*s->v), addr_qcmp);
	for (uint32_t i = 0; i < s->n; i++)
		if (!w || lb_addr_cmp(s->v[w - 1], s->v[i]))
			s->v[w++] = s->v[i];
	s->n = w;
	s->unsorted = false;
}

/* First index whose member is >= a. */
static uint32_t set_lower(const struct lb_set *s, struct lb_addr a)
{
	uint32_t lo = 0, hi = s->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (lb_addr_cmp(s->v[mid], a) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

void lb_set_clear(struct lb_set *s)
{
	free(s->v);
	*s = (struct lb_set){0};
}

int lb_set_add(struct lb_set *s, struct lb_addr a)
{
	uint32_t i;

	if (s->n == s->cap) {
		uint32_t cap = s->cap ? s->cap * 2 : 4;
		struct lb_addr *v = realloc(s->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	if (!s->n || lb_addr_cmp(s->v[s->n - 1], a) < 0) {
		s->v[s->n++] = a; /* the common case: a new lowest-free past the others */
		return 0;
	}
	if (s->bulk) {
		s->v[s->n++] = a;
		s->unsorted = true;
		return 0;
	}
	set_sort(s);
	i = set_lower(s, a);
	if (i < s->n && !lb_addr_cmp(s->v[i], a))
		return 0;
	memmove(s->v + i + 1, s->v + i, (s->n - i) * sizeof(*s->v));
	s->v[i] = a;
	s->n++;
	return 0;
}

void lb_set_del(struct lb_set *s, struct lb_addr a)
{
	uint32_t i;

	set_sort(s);
	i = set_lower(s, a);
	if (i == s->n || lb_addr_cmp(s->v[i], a))
		return;
	memmove(s->v + i, s->v + i + 1, (s->n - i - 1) * sizeof(*s->v));
	s->n--;
}

bool lb_set_has(struct lb_set *s, struct lb_addr a)
{
	uint32_t i;

	set_sort(s);
	i = set_lower(s, a);
	return i < s->n && !lb_addr_cmp(s->v[i], a);
}

void lb_set_bulk(struct lb_set *s, bool on)
{
	s->bulk = on;
	if (!on)
		set_sort(s);
}

int lb_set_next_free(struct lb_set *s, struct lb_addr from, struct lb_addr to,
		     struct lb_addr *ret_a)
{
	uint32_t i, lo, hi;

	if (lb_addr_cmp(from, to) > 0)
		return -ENOSPC;
	set_sort(s);
	i = set_lower(s, from);
	if (i == s->n || lb_addr_cmp(s->v[i], from)) {
		*ret_a = from;
		return 0;
	}
	/*
	 * from is taken: members are distinct and sorted, so v[j] - v[i] >= j - i,
	 * with equality exactly as long as the run from v[i] has no hole. Find
	 * the end of that run by bisection; the address after it is free.
	 */
	lo = i;
	hi = s->n - 1;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo + 1) / 2;
		struct lb_addr d = lb_addr_sub(s->v[mid], s->v[i]);

		if (d.hi == 0 && d.lo == (uint64_t)(mid - i))
			lo = mid;
		else
			hi = mid - 1;
	}
	if (lb_addr_cmp(s->v[lo], to) >= 0)
		return -ENOSPC;
	*ret_a = lb_addr_add(s->v[lo], 1);
	return 0;
}

size_t lb_set_count_in(struct lb_set *s, struct lb_addr from, struct lb_addr to)
{
	uint32_t a, b;

	if (lb_addr_cmp(from, to) > 0)
		return 0;
	set_sort(s);
	a = set_lower(s, from);
	b = set_lower(s, lb_addr_add(to, 1));
	/* to + 1 wraps for the last address of the IPv6 space: count to the end. */
	if (to.hi == UINT64_MAX && to.lo == UINT64_MAX)
		b = s->n;
	return b > a ? b - a : 0;
}

/* --- pool specs ------------------------------------------------------------------ */

/* Host part mask of a /plen in family fam. */
static struct lb_addr host_mask(uint8_t fam, unsigned plen)
{
	unsigned bits = (fam == LB_V4 ? 32 : 128) - plen;
	struct lb_addr m = {0, 0};

	if (bits >= 64) {
		m.lo = UINT64_MAX;
		m.hi = bits == 128 ? UINT64_MAX : (1ull << (bits - 64)) - 1;
	} else if (bits) {
		m.lo = (1ull << bits) - 1;
	}
	return m;
}

/* "10.0.0.0/24" -> range; 0 or -EINVAL with a message in err. */
static int parse_cidr(const char *text, struct lb_range *r, char *err, size_t errlen)
{
	char buf[LB_IPSTR + 8], *slash, *end;
	struct lb_addr m;
	struct lb_ip ip;
	unsigned long plen;

	if (strlen(text) >= sizeof(buf) || !(slash = strchr(strcpy(buf, text), '/')) ||
	    slash[1] < '0' || slash[1] > '9')
		goto bad;
	*slash = '\0';
	errno = 0;
	plen = strtoul(slash + 1, &end, 10);
	if (errno || *end || lb_ip_parse(buf, &ip) < 0 || plen > (ip.fam == LB_V4 ? 32u : 128u))
		goto bad;
	m = host_mask(ip.fam, (unsigned)plen);
	r->fam = ip.fam;
	r->cidr = true;
	/* Host bits are cleared, as upstream does (netip.Prefix.Masked). */
	r->first = (struct lb_addr){ip.a.hi & ~m.hi, ip.a.lo & ~m.lo};
	r->last = (struct lb_addr){r->first.hi | m.hi, r->first.lo | m.lo};
	if (ip.fam == LB_V4)
		r->last.hi = 0, r->last.lo &= 0xffffffffull;
	return 0;
bad:
	snprintf(err, errlen, "bad CIDR '%s'", text);
	return -EINVAL;
}

static int parse_span(const char *start, const char *stop, struct lb_range *r, char *err,
		      size_t errlen)
{
	struct lb_ip a, b;

	if (lb_ip_parse(start, &a) < 0) {
		snprintf(err, errlen, "bad start IP '%s'", start);
		return -EINVAL;
	}
	if (!stop || !*stop) {
		b = a; /* start alone is one address, as upstream */
	} else if (lb_ip_parse(stop, &b) < 0) {
		snprintf(err, errlen, "bad stop IP '%s'", stop);
		return -EINVAL;
	}
	if (a.fam != b.fam) {
		snprintf(err, errlen, "start '%s' and stop '%s' are of different families", start,
			 stop);
		return -EINVAL;
	}
	if (lb_addr_cmp(a.a, b.a) > 0) {
		snprintf(err, errlen, "start '%s' is after stop '%s'", start, stop);
		return -EINVAL;
	}
	r->fam = a.fam;
	r->cidr = false;
	r->first = a.a;
	r->last = b.a;
	return 0;
}

static int range_qcmp(const void *x, const void *y)
{
	const struct lb_range *a = x, *b = y;

	if (a->fam != b->fam)
		return a->fam < b->fam ? -1 : 1;
	return lb_addr_cmp(a->first, b->first);
}

static bool is_meta_key(const char *k)
{
	return k && (!strcmp(k, "io.kubernetes.service.namespace") ||
		     !strcmp(k, "io.kubernetes.service.name"));
}

const char *lb_selector_problem(const json_t *sel)
{
	const char *k;
	json_t *v, *e;
	size_t i;

	if (!sel || json_is_null(sel))
		return NULL;
	if (!json_is_object(sel))
		return "serviceSelector is not an object";
	json_object_foreach((json_t *)sel, k, v) {
		if (json_is_null(v))
			continue;
		if (!strcmp(k, "matchLabels")) {
			const char *lk;
			json_t *lv;

			if (!json_is_object(v))
				return "serviceSelector.matchLabels is not an object";
			json_object_foreach(v, lk, lv)
				if (!json_is_string(lv))
					return "serviceSelector.matchLabels has a value that is not a string";
		} else if (!strcmp(k, "matchExpressions")) {
			if (!json_is_array(v))
				return "serviceSelector.matchExpressions is not a list";
			json_array_foreach(v, i, e) {
				const char *key = json_string_value(json_object_get(e, "key"));
				const char *op = json_string_value(json_object_get(e, "operator"));
				const json_t *vals = json_object_get(e, "values");
				size_t n = json_array_size(vals), j;
				json_t *x;

				if (!key || !*key)
					return "serviceSelector.matchExpressions: an expression has no key";
				if (vals && !json_is_null(vals) && !json_is_array(vals))
					return "serviceSelector.matchExpressions: values is not a list";
				json_array_foreach(vals, j, x)
					if (!json_is_string(x))
						return "serviceSelector.matchExpressions: a value is not a string";
				if (!op)
					return "serviceSelector.matchExpressions: an expression has no operator";
				if (!strcmp(op, "In") || !strcmp(op, "NotIn")) {
					if (!n)
						return "serviceSelector.matchExpressions: In and NotIn need values";
				} else if (!strcmp(op, "Exists") || !strcmp(op, "DoesNotExist")) {
					if (n)
						return "serviceSelector.matchExpressions: Exists and DoesNotExist take no values";
				} else {
					return "serviceSelector.matchExpressions: unknown operator";
				}
			}
		} else {
			return "serviceSelector has an unknown field (matchLabels, matchExpressions)";
		}
	}
	return NULL;
}

static bool selector_uses_meta(const json_t *sel)
{
	const char *k;
	json_t *v, *e;
	size_t i;

	json_object_foreach(json_object_get(sel, "matchLabels"), k, v)
		if (is_meta_key(k))
			return true;
	json_array_foreach(json_object_get(sel, "matchExpressions"), i, e)
		if (is_meta_key(json_string_value(json_object_get(e, "key"))))
			return true;
	return false;
}

static void spec_error(struct lb_spec *spec, const char *msg)
{
	if (!spec->error)
		spec->error = strdup(msg); /* NULL on ENOMEM: the pool then merely looks valid */
}

/* Yes/No (upstream's enum), or the booleans YAML 1.1 makes of yes/no. */
static int parse_first_last(const json_t *v, bool *ret)
{
	const char *s = json_string_value(v);

	if (!v || json_is_null(v))
		*ret = true; /* upstream default since 1.16 */
	else if (json_is_boolean(v))
		*ret = json_is_true(v);
	else if (s && !strcasecmp(s, "yes"))
		*ret = true;
	else if (s && !strcasecmp(s, "no"))
		*ret = false;
	else
		return -EINVAL;
	return 0;
}

int lb_spec_parse(const json_t *spec, struct lb_spec *ret_spec)
{
	struct lb_spec s = {0};
	const json_t *blocks, *b, *v;
	char err[LB_BLOCKSTR + 96], msg[sizeof(err) + 32];
	size_t i;

	if (!json_is_object(spec)) {
		spec_error(&s, "spec is missing");
		goto done;
	}
	v = json_object_get(spec, "disabled");
	if (v && !json_is_null(v) && !json_is_boolean(v))
		spec_error(&s, "disabled is not a boolean");
	s.disabled = json_is_true(v);
	if (parse_first_last(json_object_get(spec, "allowFirstLastIPs"), &s.allow_first_last) < 0) {
		s.allow_first_last = true;
		spec_error(&s, "allowFirstLastIPs is neither Yes nor No");
	}
	v = json_object_get(spec, "serviceSelector");
	if (v && !json_is_null(v)) {
		const char *p = lb_selector_problem(v);

		if (p) {
			spec_error(&s, p);
			s.selector_bad = true;
		}
		s.selector = json_incref((json_t *)v);
		s.selector_meta = selector_uses_meta(v);
	}
	blocks = json_object_get(spec, "blocks");
	if (!json_is_array(blocks) || !json_array_size(blocks)) {
		spec_error(&s, "spec.blocks is missing or empty");
		goto done;
	}
	s.ranges = calloc(json_array_size(blocks), sizeof(*s.ranges));
	if (!s.ranges)
		goto nomem;
	json_array_foreach(blocks, i, b) {
		const char *cidr = json_string_value(json_object_get(b, "cidr"));
		const char *start = json_string_value(json_object_get(b, "start"));
		const char *stop = json_string_value(json_object_get(b, "stop"));
		struct lb_range *r = &s.ranges[s.n_ranges];
		char text[LB_BLOCKSTR];
		int rc;

		if (!json_is_object(b)) {
			snprintf(err, sizeof(err), "not an object");
			rc = -EINVAL;
		} else if (cidr && (start || stop)) {
			snprintf(err, sizeof(err), "has both cidr and start/stop");
			rc = -EINVAL;
		} else if (cidr) {
			snprintf(text, sizeof(text), "%s", cidr);
			rc = parse_cidr(cidr, r, err, sizeof(err));
		} else if (start) {
			snprintf(text, sizeof(text), stop && *stop ? "%s-%s" : "%s", start, stop);
			rc = parse_span(start, stop, r, err, sizeof(err));
		} else {
			snprintf(err, sizeof(err), "needs cidr, or start (and stop)");
			rc = -EINVAL;
		}
		if (rc < 0) {
			snprintf(msg, sizeof(msg), "block %zu: %s", i + 1, err);
			spec_error(&s, msg);
			memset(r, 0, sizeof(*r));
			continue;
		}
		if (!(r->text = strdup(text)))
			goto nomem;
		r->afirst = r->first;
		r->alast = r->last;
		/* Network and broadcast: only blocks of 4 addresses or more give them up. */
		if (r->cidr && !s.allow_first_last) {
			struct lb_addr size1 = lb_addr_sub(r->last, r->first);

			if (size1.hi || size1.lo >= 3) {
				r->afirst = lb_addr_add(r->first, 1);
				r->alast = lb_addr_sub(r->last, (struct lb_addr){0, 1});
			}
		}
		s.n_ranges++;
	}
	qsort(s.ranges, s.n_ranges, sizeof(*s.ranges), range_qcmp);
done:
	*ret_spec = s;
	return 0;
nomem:
	lb_spec_free(&s);
	return -ENOMEM;
}

void lb_spec_free(struct lb_spec *spec)
{
	for (size_t i = 0; i < spec->n_ranges; i++) {
		free(spec->ranges[i].text);
		lb_set_clear(&spec->ranges[i].used);
	}
	free(spec->ranges);
	json_decref(spec->selector);
	free(spec->error);
	*spec = (struct lb_spec){0};
}

void lb_spec_clear_used(struct lb_spec *spec)
{
	for (size_t i = 0; i < spec->n_ranges; i++)
		spec->ranges[i].used.n = 0, spec->ranges[i].used.unsorted = false;
}

/* --- pools ------------------------------------------------------------------------ */

static bool range_has(const struct lb_range *r, const struct lb_ip *ip)
{
	return r->fam == ip->fam && lb_addr_cmp(r->first, ip->a) <= 0 &&
	       lb_addr_cmp(ip->a, r->last) <= 0;
}

struct lb_range *lb_pool_range_of(struct lb_pool *p, const struct lb_ip *ip)
{
	for (size_t i = 0; i < p->spec.n_ranges; i++)
		if (range_has(&p->spec.ranges[i], ip))
			return &p->spec.ranges[i];
	return NULL;
}

int lb_pool_next_free(struct lb_pool *p, uint8_t fam, struct lb_ip *ret_ip)
{
	bool any = false;

	/* Ranges are sorted and (in a pool that does not conflict) disjoint: the first hit is the lowest. */
	for (size_t i = 0; i < p->spec.n_ranges; i++) {
		struct lb_range *r = &p->spec.ranges[i];
		struct lb_addr a;

		if (r->fam != fam)
			continue;
		any = true;
		if (lb_set_next_free(&r->used, r->afirst, r->alast, &a) == 0) {
			*ret_ip = (struct lb_ip){fam, a};
			return 0;
		}
	}
	return any ? -ENOSPC : -ENOENT;
}

int lb_pool_mark(struct lb_pool *p, const struct lb_ip *ip, bool held)
{
	for (size_t i = 0; i < p->spec.n_ranges; i++) {
		struct lb_range *r = &p->spec.ranges[i];

		if (!range_has(r, ip))
			continue;
		if (!held)
			lb_set_del(&r->used, ip->a);
		else if (lb_set_add(&r->used, ip->a) < 0)
			return -ENOMEM;
	}
	return 0;
}

void lb_pool_bulk(struct lb_pool *p, bool on)
{
	for (size_t i = 0; i < p->spec.n_ranges; i++)
		lb_set_bulk(&p->spec.ranges[i].used, on);
}

void lb_pool_counts(struct lb_pool *p, struct lb_addr *ret_total, struct lb_addr *ret_used,
		    struct lb_addr *ret_avail)
{
	struct lb_addr total = {0, 0}, used = {0, 0}, avail = {0, 0};

	for (size_t i = 0; i < p->spec.n_ranges; i++) {
		struct lb_range *r = &p->spec.ranges[i];
		struct lb_addr size = {0, 0}, free_;
		size_t held_alloc = 0;

		if (lb_addr_cmp(r->afirst, r->alast) <= 0) {
			size = lb_addr_sub(r->alast, r->afirst);
			size = (size.hi == UINT64_MAX && size.lo == UINT64_MAX) ? size
										 : lb_addr_add(size, 1);
			held_alloc = lb_set_count_in(&r->used, r->afirst, r->alast);
		}
		free_ = lb_addr_sub(size, (struct lb_addr){0, held_alloc});
		total = u128_add_sat(total, size);
		avail = u128_add_sat(avail, free_);
		set_sort(&r->used);
		used = u128_add_sat(used, (struct lb_addr){0, r->used.n});
	}
	*ret_total = total;
	*ret_used = used;
	*ret_avail = avail;
}

static bool ranges_overlap(const struct lb_range *a, const struct lb_range *b)
{
	return a->fam == b->fam && lb_addr_cmp(a->first, b->last) <= 0 &&
	       lb_addr_cmp(b->first, a->last) <= 0;
}

static int set_conflict(struct lb_pool *p, const struct lb_range *mine,
			const struct lb_range *theirs, const char *other)
{
	char *msg;

	if (asprintf(&msg, "Pool conflicts since range '%s' overlaps range '%s' from IP Pool '%s'",
		     mine->text, theirs->text, other) < 0)
		return -ENOMEM;
	free(p->conflict_msg);
	p->conflict_msg = msg;
	p->conflicting = true;
	return 0;
}

int lb_pools_settle(struct lb_pool **pools, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct lb_pool *p = pools[i];
		struct lb_spec *s = &p->spec;
		int r = 0;

		p->conflicting = false;
		free(p->conflict_msg);
		p->conflict_msg = NULL;
		/* Sorted ranges: an overlap inside the pool shows between neighbours. */
		for (size_t k = 0; k + 1 < s->n_ranges && !p->conflicting; k++)
			if (ranges_overlap(&s->ranges[k], &s->ranges[k + 1]))
				r = set_conflict(p, &s->ranges[k + 1], &s->ranges[k], p->name);
		for (size_t j = 0; j < i && !p->conflicting && r == 0; j++) {
			struct lb_pool *q = pools[j];

			if (q->conflicting)
				continue;
			for (size_t a = 0; a < s->n_ranges && !p->conflicting && r == 0; a++)
				for (size_t b = 0; b < q->spec.n_ranges; b++)
					if (ranges_overlap(&s->ranges[a], &q->spec.ranges[b])) {
						r = set_conflict(p, &s->ranges[a], &q->spec.ranges[b],
								 q->name);
						break;
					}
		}
		if (r < 0)
			return r;
	}
	return 0;
}
