// SPDX-License-Identifier: Apache-2.0
/*
 * bench_lbipam.c - how long lbipam takes to decide for N services across P
 * pools, and how much memory it keeps per service. Not a test: it prints
 * numbers (make -C modules/lbipam bench, or bench/run.sh).
 *
 *   bench_lbipam [services] [pools] [writer|reader]   (default 10000 10, both)
 *
 * The module runs on the testhost, fed as statedir would feed it: every
 * object is in the store before it starts, then SYNCED. Times are wall
 * clock (CLOCK_MONOTONIC) around the testhost's loop, so they include the
 * store deliveries and, for the writer, the status writes into the
 * testhost. Memory is what the module frees when it stops (mallinfo2 in-use
 * bytes), divided by the number of services: the module's own state, not
 * the store's copy of the objects.
 */
#include <errno.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <axoneme/testhost.h>

extern const struct axn_module_desc axn_module_lbipam_desc;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static size_t in_use(void)
{
	return mallinfo2().uordblks;
}

static json_t *pool_doc(int p)
{
	char name[32], cidr[32], cidr6[32], sel[32];

	snprintf(name, sizeof(name), "pool-%02d", p);
	snprintf(cidr, sizeof(cidr), "10.%d.0.0/16", p + 1);
	snprintf(cidr6, sizeof(cidr6), "fd00:0:0:%x::/64", p + 1);
	snprintf(sel, sizeof(sel), "p%d", p);
	return json_pack("{s:s, s:s, s:{s:s}, s:{s:[{s:s}, {s:s}], s:{s:{s:s}}}}", "apiVersion",
			 "cilium.io/v2alpha1", "kind", "CiliumLoadBalancerIPPool", "metadata", "name", name,
			 "spec", "blocks", "cidr", cidr, "cidr", cidr6, "serviceSelector",
			 "matchLabels", "pool", sel);
}

static json_t *svc_doc(int i, int pools)
{
	char name[32], sel[32];

	snprintf(name, sizeof(name), "svc-%05d", i);
	snprintf(sel, sizeof(sel), "p%d", i % pools);
	return json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s, s:s}}, s:{s:s, s:[{s:i, s:s}], s:{s:s}}}",
			 "apiVersion", "v1", "kind", "Service", "metadata", "name", name, "namespace",
			 "bench", "labels", "pool", sel, "app", name, "spec", "type", "LoadBalancer",
			 "ports", "port", 80, "protocol", "TCP", "selector", "app", name);
}

/*
 * The testhost keeps its store in a list: every status write is a linear
 * lookup there. Time spent inside store_set_status is measured apart, so
 * lbipam's own cost can be told from the fake host's.
 */
static const struct axn_host *real_host;
static double in_host_ms;

static int timed_set_status(struct axn_mod *self, const struct axn_obj *obj, const json_t *status)
{
	double t0 = now_ms();
	int r = real_host->store_set_status(self, obj, status);

	in_host_ms += now_ms() - t0;
	return r;
}

static void wrap_host(struct axn_testhost *th)
{
	static struct axn_host wrapped;
	struct axn_mod *mod = axn_testhost_mod(th);

	real_host = mod->host;
	wrapped = *real_host;
	wrapped.store_set_status = timed_set_status;
	mod->host = &wrapped;
}

static double metric(struct axn_testhost *th, const char *name)
{
	double v = 0;

	axn_testhost_metric(th, name, &v);
	return v;
}

struct result {
	double inject_ms, decide_ms, decide_host_ms, event_ms, delete_ms, restart_ms;
	double bytes_per_svc, unsat, writes, restart_writes;
};

/* One run: a writer (status writes into the testhost) or a reader (none). */
static int run(int n, int pools, bool writer, struct result *res)
{
	const char *conf[] = {"writer", writer ? "true" : "false", "state_file", "none", NULL};
	struct axn_testhost *th = axn_testhost_new(&axn_module_lbipam_desc, conf);
	json_t *statuses = json_object();
	size_t before, after;
	double t0;
	int extra = n / 10;

	if (!th || !statuses)
		return -ENOMEM;
	t0 = now_ms();
	for (int p = 0; p < pools; p++)
		axn_testhost_inject(th, AXN_EV_ADDED, pool_doc(p));
	for (int i = 0; i < n; i++)
		axn_testhost_inject(th, AXN_EV_ADDED, svc_doc(i, pools));
	res->inject_ms = now_ms() - t0;
	wrap_host(th);
	if (axn_testhost_init(th) < 0 || axn_testhost_start(th) < 0)
		return -EINVAL;
	axn_testhost_inject(th, AXN_EV_SYNCED, NULL);

	in_host_ms = 0;
	t0 = now_ms();
	axn_testhost_run_pending(th);
	res->decide_ms = now_ms() - t0;
	res->decide_host_ms = in_host_ms;
	res->unsat = metric(th, "unsatisfied");
	res->writes = metric(th, "status_writes");

	/* Incremental: n/10 more services, one event each, then delete them. */
	t0 = now_ms();
	for (int i = n; i < n + extra; i++) {
		axn_testhost_inject(th, AXN_EV_ADDED, svc_doc(i, pools));
		axn_testhost_run_pending(th);
	}
	res->event_ms = (now_ms() - t0) / (extra ? extra : 1);
	t0 = now_ms();
	for (int i = n; i < n + extra; i++) {
		json_t *d = svc_doc(i, pools);

		axn_testhost_inject(th, AXN_EV_DELETED, d);
		axn_testhost_run_pending(th);
	}
	res->delete_ms = (now_ms() - t0) / (extra ? extra : 1);

	/* Keep the status written, for the restart below. */
	for (int i = 0; writer && i < n; i++) {
		char name[32];
		const json_t *st;

		snprintf(name, sizeof(name), "svc-%05d", i);
		if ((st = axn_testhost_status(th, "Service", "bench", name)))
			json_object_set_new(statuses, name, json_deep_copy(st));
	}
	before = in_use();
	axn_testhost_stop(th);
	axn_testhost_fini(th);
	after = in_use();
	res->bytes_per_svc = before > after ? (double)(before - after) / n : 0;
	axn_testhost_free(th);

	/* Restart: the same objects with the status written, all adopted. */
	if (writer) {
		th = axn_testhost_new(&axn_module_lbipam_desc, conf);
		for (int p = 0; p < pools; p++)
			axn_testhost_inject(th, AXN_EV_ADDED, pool_doc(p));
		for (int i = 0; i < n; i++) {
			json_t *d = svc_doc(i, pools);
			char name[32];

			snprintf(name, sizeof(name), "svc-%05d", i);
			json_object_set(d, "status", json_object_get(statuses, name));
			axn_testhost_inject(th, AXN_EV_ADDED, d);
		}
		wrap_host(th);
		axn_testhost_init(th);
		axn_testhost_start(th);
		axn_testhost_inject(th, AXN_EV_SYNCED, NULL);
		t0 = now_ms();
		axn_testhost_run_pending(th);
		res->restart_ms = now_ms() - t0;
		res->restart_writes = metric(th, "status_writes");
		axn_testhost_free(th);
	}
	json_decref(statuses);
	return 0;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 10000, pools = argc > 2 ? atoi(argv[2]) : 10;
	const char *only = argc > 3 ? argv[3] : "";
	struct result w = {0}, r = {0};

	if (n <= 0 || pools <= 0 || pools > 200) {
		fprintf(stderr, "usage: %s [services] [pools (1-200)]\n", argv[0]);
		return 2;
	}
	setenv("AXN_TESTHOST_VERBOSE", "0", 1);
	if ((strcmp(only, "reader") && run(n, pools, true, &w) < 0) ||
	    (strcmp(only, "writer") && run(n, pools, false, &r) < 0)) {
		fprintf(stderr, "bench failed\n");
		return 1;
	}
	printf("lbipam: %d services, %d pools (each an IPv4 /16 and an IPv6 /64, selected by label)\n", n, pools);
	printf("  testhost store fill (not lbipam)     %8.1f ms\n", w.inject_ms);
	printf("  writer: decide all after SYNCED      %8.1f ms   (%g status writes, %g unsatisfied)\n",
	       w.decide_ms, w.writes, w.unsat);
	printf("    of which inside the testhost's store_set_status %8.1f ms (the fake source copies and re-puts each status)\n",
	       w.decide_host_ms);
	printf("    lbipam itself (decisions, status documents) %8.1f ms\n", w.decide_ms - w.decide_host_ms);
	printf("  reader: decide all after SYNCED      %8.1f ms   (no status writes)\n", r.decide_ms);
	printf("  writer: one more service (event)     %8.3f ms\n", w.event_ms);
	printf("  writer: one service deleted (event)  %8.3f ms\n", w.delete_ms);
	printf("  writer: restart, adopt all           %8.1f ms   (%g status writes)\n", w.restart_ms,
	       w.restart_writes);
	printf("  module memory                        %8.0f bytes/service\n", w.bytes_per_svc);
	printf("RESULT decide_ms=%.1f lbipam_ms=%.1f reader_decide_ms=%.1f bytes_per_service=%.0f target_ms=100 target_bytes=2048 %s\n",
	       w.decide_ms, w.decide_ms - w.decide_host_ms, r.decide_ms, w.bytes_per_svc,
	       w.decide_ms - w.decide_host_ms < 100 && w.bytes_per_svc <= 2048 ? "OK" : "OVER");
	return 0;
}
