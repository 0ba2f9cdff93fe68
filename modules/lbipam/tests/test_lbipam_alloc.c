// SPDX-License-Identifier: Apache-2.0
/*
 * test_lbipam_alloc.c - the pure allocator, table by table: address text,
 * pool specs (CIDR, ranges, allowFirstLastIPs, malformed blocks and
 * selectors), lowest-free search, counts and pool conflicts.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lbipam_alloc.h"

static json_t *J(const char *text)
{
	json_error_t je;
	json_t *v = json_loads(text, 0, &je);

	if (!v)
		fail_msg("bad JSON in test: %s: %s", text, je.text);
	return v;
}

static struct lb_ip IP(const char *s)
{
	struct lb_ip ip;

	if (lb_ip_parse(s, &ip) < 0)
		fail_msg("bad address in test: %s", s);
	return ip;
}

/* --- addresses ------------------------------------------------------------------- */

static void test_ip_text(void **state)
{
	static const struct {
		const char *in, *out; /* out NULL: refused */
		int fam;
	} t[] = {
		{"10.0.0.1", "10.0.0.1", LB_V4},
		{"255.255.255.255", "255.255.255.255", LB_V4},
		{"fd00:99::200", "fd00:99::200", LB_V6},
		{"FD00:0099:0000::0200", "fd00:99::200", LB_V6},
		{"::", "::", LB_V6},
		{"::ffff:10.0.0.1", "::ffff:10.0.0.1", LB_V6},
		{"10.0.0.256", NULL, 0},
		{"10.0.0", NULL, 0},
		{" 10.0.0.1", NULL, 0},
		{"fd00::1::2", NULL, 0},
		{"", NULL, 0},
		{"10.0.0.0/24", NULL, 0},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct lb_ip ip;
		char b[LB_IPSTR];
		int r = lb_ip_parse(t[i].in, &ip);

		if (!t[i].out) {
			assert_int_equal(r, -EINVAL);
			continue;
		}
		assert_int_equal(r, 0);
		assert_int_equal(ip.fam, t[i].fam);
		assert_string_equal(lb_ip_str(&ip, b), t[i].out);
	}
}

static void test_u128(void **state)
{
	static const struct {
		uint64_t hi, lo;
		const char *s;
	} t[] = {
		{0, 0, "0"},
		{0, 254, "254"},
		{0, UINT64_MAX, "18446744073709551615"},
		{1, 0, "18446744073709551616"},
		{UINT64_MAX, UINT64_MAX, "340282366920938463463374607431768211455"},
	};
	char b[LB_U128STR];

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		assert_string_equal(lb_u128_str((struct lb_addr){t[i].hi, t[i].lo}, b), t[i].s);
}

/* --- specs ------------------------------------------------------------------------- */

struct rexp {
	const char *first, *last, *afirst, *alast;
};

static void test_spec_parse(void **state)
{
	static const struct {
		const char *spec;
		const char *error; /* substring, or NULL */
		bool selector_bad, disabled, meta;
		size_t n;
		struct rexp r[3];
	} t[] = {
		/* IPAM-03: CIDR, start/stop, start alone; IPv4 and IPv6 in one pool, sorted. */
		{"{\"blocks\":[{\"cidr\":\"fd00::/126\"},{\"start\":\"10.0.0.10\",\"stop\":\"10.0.0.20\"},{\"start\":\"1.2.3.4\"}]}",
		 NULL, false, false, false, 3,
		 {{"1.2.3.4", "1.2.3.4", "1.2.3.4", "1.2.3.4"},
		  {"10.0.0.10", "10.0.0.20", "10.0.0.10", "10.0.0.20"},
		  {"fd00::", "fd00::3", "fd00::", "fd00::3"}}},
		/* IPAM-04: every address by default; No reserves network and broadcast... */
		{"{\"blocks\":[{\"cidr\":\"10.0.10.0/24\"}]}", NULL, false, false, false, 1,
		 {{"10.0.10.0", "10.0.10.255", "10.0.10.0", "10.0.10.255"}}},
		{"{\"allowFirstLastIPs\":\"No\",\"blocks\":[{\"cidr\":\"10.0.10.0/24\"}]}", NULL, false, false, false, 1,
		 {{"10.0.10.0", "10.0.10.255", "10.0.10.1", "10.0.10.254"}}},
		{"{\"allowFirstLastIPs\":false,\"blocks\":[{\"cidr\":\"10.0.10.0/30\"}]}", NULL, false, false, false, 1,
		 {{"10.0.10.0", "10.0.10.3", "10.0.10.1", "10.0.10.2"}}},
		{"{\"allowFirstLastIPs\":\"yes\",\"blocks\":[{\"cidr\":\"10.0.10.0/30\"}]}", NULL, false, false, false, 1,
		 {{"10.0.10.0", "10.0.10.3", "10.0.10.0", "10.0.10.3"}}},
		/* ...but not for /31, /32, /127, /128, nor for ranges. */
		{"{\"allowFirstLastIPs\":\"No\",\"blocks\":[{\"cidr\":\"10.0.0.0/31\"},{\"cidr\":\"10.0.1.1/32\"},{\"start\":\"10.0.2.0\",\"stop\":\"10.0.2.255\"}]}",
		 NULL, false, false, false, 3,
		 {{"10.0.0.0", "10.0.0.1", "10.0.0.0", "10.0.0.1"},
		  {"10.0.1.1", "10.0.1.1", "10.0.1.1", "10.0.1.1"},
		  {"10.0.2.0", "10.0.2.255", "10.0.2.0", "10.0.2.255"}}},
		{"{\"allowFirstLastIPs\":\"No\",\"blocks\":[{\"cidr\":\"fd00::/127\"},{\"cidr\":\"fd00::10/128\"},{\"cidr\":\"fd01::/64\"}]}",
		 NULL, false, false, false, 3,
		 {{"fd00::", "fd00::1", "fd00::", "fd00::1"},
		  {"fd00::10", "fd00::10", "fd00::10", "fd00::10"},
		  {"fd01::", "fd01::ffff:ffff:ffff:ffff", "fd01::1", "fd01::ffff:ffff:ffff:fffe"}}},
		/* Host bits are cleared, as upstream. */
		{"{\"blocks\":[{\"cidr\":\"10.0.0.77/24\"}]}", NULL, false, false, false, 1,
		 {{"10.0.0.0", "10.0.0.255", "10.0.0.0", "10.0.0.255"}}},
		{"{\"disabled\":true,\"blocks\":[{\"cidr\":\"10.0.0.0/24\"}]}", NULL, false, true, false, 1,
		 {{"10.0.0.0", "10.0.0.255", "10.0.0.0", "10.0.0.255"}}},
		/* IPAM-05: a selector using the special metadata keys. */
		{"{\"blocks\":[{\"cidr\":\"10.0.0.0/24\"}],\"serviceSelector\":{\"matchLabels\":{\"io.kubernetes.service.namespace\":\"a\"}}}",
		 NULL, false, false, true, 1, {{"10.0.0.0", "10.0.0.255", "10.0.0.0", "10.0.0.255"}}},
		{"{\"blocks\":[{\"cidr\":\"10.0.0.0/24\"}],\"serviceSelector\":{\"matchExpressions\":[{\"key\":\"io.kubernetes.service.name\",\"operator\":\"In\",\"values\":[\"x\"]}]}}",
		 NULL, false, false, true, 1, {{"10.0.0.0", "10.0.0.255", "10.0.0.0", "10.0.0.255"}}},
		/* Malformed blocks: named, and left out; the good ones stay. */
		{"{\"blocks\":[{\"cidr\":\"10.0.1.0/24\"},{\"cidr\":\"10.0.0.0/33\"}]}", "block 2: bad CIDR '10.0.0.0/33'",
		 false, false, false, 1, {{"10.0.1.0", "10.0.1.255", "10.0.1.0", "10.0.1.255"}}},
		{"{\"blocks\":[{\"cidr\":\"10.0.0.0\"}]}", "block 1: bad CIDR '10.0.0.0'", false, false, false, 0, {{0}}},
		{"{\"blocks\":[{\"cidr\":\"10.0.0.0/x\"}]}", "bad CIDR", false, false, false, 0, {{0}}},
		{"{\"blocks\":[{\"cidr\":\"fd00::/129\"}]}", "bad CIDR 'fd00::/129'", false, false, false, 0, {{0}}},
		{"{\"blocks\":[{\"cidr\":\"fd00::/64\"},{\"start\":\"10.0.0.9\",\"stop\":\"10.0.0.1\"}]}",
		 "block 2: start '10.0.0.9' is after stop '10.0.0.1'", false, false, false, 1,
		 {{"fd00::", "fd00::ffff:ffff:ffff:ffff", "fd00::", "fd00::ffff:ffff:ffff:ffff"}}},
		{"{\"blocks\":[{\"start\":\"10.0.0.1\",\"stop\":\"fd00::1\"}]}",
		 "block 1: start '10.0.0.1' and stop 'fd00::1' are of different families", false, false, false, 0, {{0}}},
		{"{\"blocks\":[{\"start\":\"10.0.0.300\"}]}", "block 1: bad start IP '10.0.0.300'", false, false, false, 0, {{0}}},
		{"{\"blocks\":[{\"cidr\":\"10.0.0.0/24\",\"start\":\"10.0.0.1\"}]}", "has both cidr and start", false, false, false, 0, {{0}}},
		{"{\"blocks\":[{\"stop\":\"10.0.0.1\"}]}", "needs cidr, or start", false, false, false, 0, {{0}}},
		{"{\"blocks\":[]}", "spec.blocks is missing or empty", false, false, false, 0, {{0}}},
		{"{}", "spec.blocks is missing or empty", false, false, false, 0, {{0}}},
		{"{\"allowFirstLastIPs\":\"Maybe\",\"blocks\":[{\"cidr\":\"10.0.0.0/32\"}]}", "allowFirstLastIPs", false, false, false, 1,
		 {{"10.0.0.0", "10.0.0.0", "10.0.0.0", "10.0.0.0"}}},
		{"{\"disabled\":\"yes\",\"blocks\":[{\"cidr\":\"10.0.0.0/32\"}]}", "disabled is not a boolean", false, false, false, 1,
		 {{"10.0.0.0", "10.0.0.0", "10.0.0.0", "10.0.0.0"}}},
		/* Malformed selectors select nobody: a typo must not select everything. */
		{"{\"blocks\":[{\"cidr\":\"10.0.0.0/32\"}],\"serviceSelector\":{\"matchLabel\":{\"a\":\"b\"}}}",
		 "unknown field", true, false, false, 1, {{"10.0.0.0", "10.0.0.0", "10.0.0.0", "10.0.0.0"}}},
		{"{\"blocks\":[{\"cidr\":\"10.0.0.0/32\"}],\"serviceSelector\":{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"In\"}]}}",
		 "In and NotIn need values", true, false, false, 1, {{"10.0.0.0", "10.0.0.0", "10.0.0.0", "10.0.0.0"}}},
		{"{\"blocks\":[{\"cidr\":\"10.0.0.0/32\"}],\"serviceSelector\":{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"Near\",\"values\":[\"b\"]}]}}",
		 "unknown operator", true, false, false, 1, {{"10.0.0.0", "10.0.0.0", "10.0.0.0", "10.0.0.0"}}},
		{"{\"blocks\":[{\"cidr\":\"10.0.0.0/32\"}],\"serviceSelector\":{\"matchLabels\":{\"a\":1}}}",
		 "not a string", true, false, false, 1, {{"10.0.0.0", "10.0.0.0", "10.0.0.0", "10.0.0.0"}}},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		json_t *j = J(t[i].spec);
		struct lb_spec s;

		assert_int_equal(lb_spec_parse(j, &s), 0);
		if (t[i].error) {
			if (!s.error || !strstr(s.error, t[i].error))
				fail_msg("case %zu: error '%s', want '%s'", i, s.error ? s.error : "(none)",
					 t[i].error);
		} else if (s.error) {
			fail_msg("case %zu: unexpected error '%s'", i, s.error);
		}
		assert_int_equal(s.selector_bad, t[i].selector_bad);
		assert_int_equal(s.disabled, t[i].disabled);
		assert_int_equal(s.selector_meta, t[i].meta);
		assert_int_equal(s.n_ranges, t[i].n);
		for (size_t k = 0; k < s.n_ranges; k++) {
			struct lb_range *r = &s.ranges[k];
			struct lb_ip f = IP(t[i].r[k].first), l = IP(t[i].r[k].last);
			struct lb_ip af = IP(t[i].r[k].afirst), al = IP(t[i].r[k].alast);

			assert_int_equal(r->fam, f.fam);
			assert_int_equal(lb_addr_cmp(r->first, f.a), 0);
			assert_int_equal(lb_addr_cmp(r->last, l.a), 0);
			assert_int_equal(lb_addr_cmp(r->afirst, af.a), 0);
			assert_int_equal(lb_addr_cmp(r->alast, al.a), 0);
		}
		lb_spec_free(&s);
		json_decref(j);
	}
}

/* --- sets and lowest free --------------------------------------------------------------- */

static void test_next_free(void **state)
{
	static const struct {
		const char *members[6];
		const char *from, *to;
		const char *want; /* NULL: full */
	} t[] = {
		{{NULL}, "10.0.0.1", "10.0.0.9", "10.0.0.1"},
		{{"10.0.0.1", NULL}, "10.0.0.1", "10.0.0.9", "10.0.0.2"},
		{{"10.0.0.1", "10.0.0.2", "10.0.0.3", NULL}, "10.0.0.1", "10.0.0.9", "10.0.0.4"},
		{{"10.0.0.1", "10.0.0.2", "10.0.0.4", NULL}, "10.0.0.1", "10.0.0.9", "10.0.0.3"},
		{{"10.0.0.2", "10.0.0.3", NULL}, "10.0.0.1", "10.0.0.9", "10.0.0.1"},
		{{"10.0.0.1", "10.0.0.2", "10.0.0.3", NULL}, "10.0.0.1", "10.0.0.3", NULL},
		{{"10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", NULL}, "10.0.0.1", "10.0.0.2", NULL},
		/* Members outside [from, to] (a reserved address still held) do not matter. */
		{{"10.0.0.0", "10.0.0.2", NULL}, "10.0.0.1", "10.0.0.9", "10.0.0.1"},
		{{"10.0.0.255", NULL}, "10.0.0.1", "10.0.0.254", "10.0.0.1"},
		/* Across the 64-bit boundary of an IPv6 address. */
		{{"fd00::ffff:ffff:ffff:fffe", "fd00::ffff:ffff:ffff:ffff", NULL}, "fd00::ffff:ffff:ffff:fffe",
		 "fd00:0:0:1::ff", "fd00:0:0:1::"},
		{{"255.255.255.254", "255.255.255.255", NULL}, "255.255.255.254", "255.255.255.255", NULL},
		{{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", NULL}, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		 "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", NULL},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		/* Every case twice: inserted one by one, and bulk-loaded in reverse. */
		for (int bulk = 0; bulk < 2; bulk++) {
			struct lb_set s = {0};
			struct lb_addr a;
			size_t n = 0;
			int r;

			while (n < 6 && t[i].members[n])
				n++;
			lb_set_bulk(&s, bulk);
			for (size_t k = 0; k < n; k++)
				assert_int_equal(lb_set_add(&s, IP(t[i].members[bulk ? n - 1 - k : k]).a), 0);
			if (bulk && n)
				assert_int_equal(lb_set_add(&s, IP(t[i].members[0]).a), 0); /* a duplicate */
			lb_set_bulk(&s, false);
			assert_int_equal(s.n, n);
			r = lb_set_next_free(&s, IP(t[i].from).a, IP(t[i].to).a, &a);
			if (!t[i].want) {
				assert_int_equal(r, -ENOSPC);
			} else {
				struct lb_ip got = {IP(t[i].from).fam, a};
				char b[LB_IPSTR];

				assert_int_equal(r, 0);
				assert_string_equal(lb_ip_str(&got, b), t[i].want);
			}
			lb_set_clear(&s);
		}
	}
}

/* A thousand addresses in random order: next_free agrees with a linear scan at every step. */
static void test_next_free_random(void **state)
{
	struct lb_set s = {0};
	bool used[1024] = {false};
	unsigned seed = 12345;

	for (int step = 0; step < 3000; step++) {
		unsigned x;
		struct lb_addr a;
		int want = -1;

		seed = seed * 1103515245u + 12345u;
		x = (seed >> 8) % 1024;
		if (used[x])
			lb_set_del(&s, (struct lb_addr){0, x});
		else
			assert_int_equal(lb_set_add(&s, (struct lb_addr){0, x}), 0);
		used[x] = !used[x];
		for (int k = 100; k < 900 && want < 0; k++)
			if (!used[k])
				want = k;
		if (want < 0) {
			assert_int_equal(lb_set_next_free(&s, (struct lb_addr){0, 100}, (struct lb_addr){0, 899}, &a),
					 -ENOSPC);
		} else {
			assert_int_equal(lb_set_next_free(&s, (struct lb_addr){0, 100}, (struct lb_addr){0, 899}, &a), 0);
			assert_int_equal(a.lo, (uint64_t)want);
		}
		assert_int_equal(lb_set_has(&s, (struct lb_addr){0, x}), used[x]);
	}
	lb_set_clear(&s);
}

/* --- pools -------------------------------------------------------------------------------- */

static struct lb_pool *pool(const char *name, const char *spec)
{
	struct lb_pool *p = calloc(1, sizeof(*p));
	json_t *j = J(spec);

	assert_non_null(p);
	p->name = strdup(name);
	assert_int_equal(lb_spec_parse(j, &p->spec), 0);
	json_decref(j);
	return p;
}

static void pool_free(struct lb_pool *p)
{
	lb_spec_free(&p->spec);
	free(p->name);
	free(p->conflict_msg);
	free(p);
}

static void test_pool_alloc_and_counts(void **state)
{
	struct lb_pool *p = pool("blue", "{\"allowFirstLastIPs\":\"No\",\"blocks\":["
					 "{\"cidr\":\"10.0.0.0/30\"},{\"start\":\"10.0.1.5\",\"stop\":\"10.0.1.6\"},"
					 "{\"cidr\":\"fd00::/64\"}]}");
	struct lb_addr total, used, avail;
	char b[LB_IPSTR], t[LB_U128STR], u[LB_U128STR], a[LB_U128STR];
	static const char *const want4[] = {"10.0.0.1", "10.0.0.2", "10.0.1.5", "10.0.1.6"};
	struct lb_ip ip;

	/* Lowest free first, across blocks in address order; /30 minus its first and last. */
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(lb_pool_next_free(p, LB_V4, &ip), 0);
		assert_string_equal(lb_ip_str(&ip, b), want4[i]);
		assert_int_equal(lb_pool_mark(p, &ip, true), 0);
	}
	assert_int_equal(lb_pool_next_free(p, LB_V4, &ip), -ENOSPC);
	assert_int_equal(lb_pool_next_free(p, LB_V6, &ip), 0);
	assert_string_equal(lb_ip_str(&ip, b), "fd00::1");
	/* A held network address (kept from before allowFirstLastIPs: No) counts as used, not as available. */
	ip = IP("10.0.0.0");
	assert_int_equal(lb_pool_mark(p, &ip, true), 0);
	lb_pool_counts(p, &total, &used, &avail);
	assert_string_equal(lb_u128_str(total, t), "18446744073709551618"); /* 2 + 2 + 2^64 - 2 */
	assert_string_equal(lb_u128_str(used, u), "5");
	assert_string_equal(lb_u128_str(avail, a), "18446744073709551614");
	/* Freeing one makes it the lowest free again. */
	ip = IP("10.0.0.2");
	assert_int_equal(lb_pool_mark(p, &ip, false), 0);
	assert_int_equal(lb_pool_next_free(p, LB_V4, &ip), 0);
	assert_string_equal(lb_ip_str(&ip, b), "10.0.0.2");
	assert_non_null(lb_pool_range_of(p, &(struct lb_ip){LB_V4, {0, 0x0a000003}}));
	assert_null(lb_pool_range_of(p, &(struct lb_ip){LB_V4, {0, 0x0a000004}}));
	pool_free(p);

	p = pool("v4only", "{\"blocks\":[{\"cidr\":\"10.0.0.0/32\"}]}");
	assert_int_equal(lb_pool_next_free(p, LB_V6, &ip), -ENOENT);
	pool_free(p);
}

static void test_settle(void **state)
{
	static const struct {
		const char *specs[4]; /* in precedence order: older first */
		bool conflicting[4];
		const char *msg[4];
	} t[] = {
		/* IPAM-06: the same CIDR twice: the younger pool conflicts, with upstream's message. */
		{{"{\"blocks\":[{\"cidr\":\"20.0.10.0/24\"}]}", "{\"blocks\":[{\"cidr\":\"20.0.10.0/24\"}]}"},
		 {false, true},
		 {NULL, "Pool conflicts since range '20.0.10.0/24' overlaps range '20.0.10.0/24' from IP Pool 'p0'"}},
		/* Partial overlap through a range; a third pool after a conflicting one is fine. */
		{{"{\"blocks\":[{\"cidr\":\"10.0.0.0/24\"}]}",
		  "{\"blocks\":[{\"start\":\"10.0.0.250\",\"stop\":\"10.0.1.5\"}]}",
		  "{\"blocks\":[{\"cidr\":\"10.0.1.0/24\"}]}"},
		 {false, true, false},
		 {NULL, "overlaps range '10.0.0.0/24' from IP Pool 'p0'", NULL}},
		/* Families never overlap; adjacent ranges do not either. */
		{{"{\"blocks\":[{\"cidr\":\"10.0.0.0/24\"}]}", "{\"blocks\":[{\"cidr\":\"10.0.1.0/24\"},{\"cidr\":\"::a00:0/120\"}]}"},
		 {false, false},
		 {NULL, NULL}},
		/* A pool overlapping itself conflicts on its own. */
		{{"{\"blocks\":[{\"cidr\":\"10.0.0.0/24\"},{\"start\":\"10.0.0.9\",\"stop\":\"10.0.0.9\"}]}"},
		 {true},
		 {"from IP Pool 'p0'"}},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct lb_pool *ps[4];
		size_t n = 0;

		while (n < 4 && t[i].specs[n]) {
			char name[8];

			snprintf(name, sizeof(name), "p%zu", n);
			ps[n] = pool(name, t[i].specs[n]);
			n++;
		}
		assert_int_equal(lb_pools_settle(ps, n), 0);
		for (size_t k = 0; k < n; k++) {
			if (ps[k]->conflicting != t[i].conflicting[k])
				fail_msg("case %zu: pool %zu conflicting %d", i, k, ps[k]->conflicting);
			if (t[i].msg[k] && (!ps[k]->conflict_msg || !strstr(ps[k]->conflict_msg, t[i].msg[k])))
				fail_msg("case %zu: pool %zu message '%s'", i, k, ps[k]->conflict_msg);
			pool_free(ps[k]);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ip_text),
		cmocka_unit_test(test_u128),
		cmocka_unit_test(test_spec_parse),
		cmocka_unit_test(test_next_free),
		cmocka_unit_test(test_next_free_random),
		cmocka_unit_test(test_pool_alloc_and_counts),
		cmocka_unit_test(test_settle),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
